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
    "train.eval_prompts=14",  # the demo's oracle benchmark: 2 prompts per category, and a small shapes-FD
    "train.eval_fd_samples=32",
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
    # The oracle benchmark's per-category table and shapes-FD, next to the overall accuracy.
    assert "Oracle benchmark (t2i-v1)" in report and "color_binding" in report and "shapes-FD" in report
    assert set(metrics["benchmark"]["categories"]) >= {"single_object", "counting", "position"}
    assert metrics["shapes_fd"]["num_fake"] == 32 and "oracle benchmark t2i-v1: overall" in out
    assert (tmp_path / "demo" / "benchmark" / "results.jsonl").is_file()
    # a second run replaces the first (a demo always starts from nothing)
    assert main(args) == 0
