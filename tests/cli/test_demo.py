"""A tiny `ptdit demo` run writes a valid report and metrics (the real demo trains for 5 minutes)."""

from __future__ import annotations

import json

from ptdit.cli.main import main

TINY = [
    "model.dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "model.context_dim=32",
    "train.batch_size=8",
    "pipeline.steps=3",
    "train.precision=fp32",
]


def test_tiny_demo_writes_report(tmp_path, capsys):
    args = ["demo", "--minutes", "0.05", "--out", str(tmp_path / "demo")]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "report:" in out and "oracle caption-adherence accuracy" in out
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert {"oracle_accuracy", "train_seconds", "steps", "samples_per_second", "parameters"} <= set(metrics)
    assert 0.0 <= metrics["oracle_accuracy"] <= 1.0 and metrics["steps"] >= 1
    report = (tmp_path / "demo" / "report.html").read_text()
    assert report.startswith("<!doctype html>") and report.count("<figure>") == 48
    assert "data:image/png;base64," in report and "oracle" in report
    # a second run replaces the first (a demo always starts from nothing)
    assert main(args) == 0
