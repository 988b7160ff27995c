"""Quick `ptdit demo` runs (a few steps of a tiny model) write a valid report and metrics for every task; the real
demos train a fixed number of steps (configs/demo-TASK.yaml), so their result does not depend on the machine."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptdit.cli.demo import config_path, run_demo
from ptdit.cli.main import main
from ptdit.train.config import load_train_config

TINY = [
    "model.dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "model.context_dim=32",
    "train.batch_size=8",
    "train.max_steps=3",
    "pipeline.steps=3",
    "train.precision=fp32",
    "train.eval_prompts=14",  # the demo's oracle benchmark: 2 prompts per category, and a small shapes-FD
    "train.eval_fd_samples=32",
]


def test_tiny_demo_writes_report(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path / "demo")]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "report:" in out and "oracle caption-adherence accuracy" in out
    assert "depends on this machine's speed" not in captured.err  # no --minutes: no warning
    # The evaluation reports its progress over all its samples: 48 prompts, 14 benchmark prompts, 32 for FD.
    assert "evaluating: 94/94 samples" in captured.err and "ETA" in captured.err
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert {"oracle_accuracy", "train_seconds", "steps", "samples_per_second", "parameters"} <= set(metrics)
    assert 0.0 <= metrics["oracle_accuracy"] <= 1.0 and metrics["steps"] == metrics["max_steps"] == 3
    report = (tmp_path / "demo" / "report.html").read_text()
    assert report.startswith("<!doctype html>") and report.count("<figure>") == 48
    assert "data:image/png;base64," in report and "oracle" in report
    assert "checks passed" in report or "checks failed" in report  # per-sample verdicts
    # The oracle benchmark's per-category table and shapes-FD, next to the overall accuracy.
    assert "Oracle benchmark (t2i-v1)" in report and "color_binding" in report and "shapes-FD" in report
    assert set(metrics["benchmark"]["categories"]) >= {"single_object", "counting", "position"}
    assert metrics["shapes_fd"]["num_fake"] == 32 and "oracle benchmark t2i-v1: overall" in out
    assert (tmp_path / "demo" / "benchmark" / "results.jsonl").is_file()
    # a second run replaces the first (a demo always starts from nothing); --minutes caps it, with a warning
    assert main([*args, "--minutes", "5"]) == 0
    assert "depends on this machine's speed" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_stopped_demo_keeps_its_checkpoint_and_does_not_evaluate(tmp_path, capsys, monkeypatch, name):
    # The signal arrives during step 2 (the test hook of docs/training.md#faults): training finishes the step,
    # writes its checkpoint, and the demo ends with the shell's status for that signal instead of evaluating.
    monkeypatch.setenv("PTDIT_FAULT_AT", f"step:2:{name}")
    args = ["demo", "--out", str(tmp_path / "demo")]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 128 + int(getattr(signal, name))
    err = capsys.readouterr().err
    assert f"training stopped by {name} at step 2 of 3; nothing was evaluated" in err
    assert (tmp_path / "demo" / "checkpoints" / "step-0000002" / "config.json").is_file()
    assert not (tmp_path / "demo" / "metrics.json").exists() and not (tmp_path / "demo" / "report.html").exists()


def test_two_process_demo_stops_when_its_workers_are_signalled(tmp_path, capsys, monkeypatch):
    # The T2V demo trains in two torchrun processes by default; the hook signals both workers during step 2.
    monkeypatch.setenv("PTDIT_FAULT_AT", "step:2:SIGTERM")
    args = ["demo", "--task", "t2v", "--out", str(tmp_path / "demo")]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 128 + signal.SIGTERM
    assert "training stopped by SIGTERM at step 2 of 3; nothing was evaluated" in capsys.readouterr().err
    assert (tmp_path / "demo" / "checkpoints" / "step-0000002" / "config.json").is_file()
    assert not (tmp_path / "demo" / "metrics.json").exists()


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find left-over processes")
def test_sigterm_to_a_two_process_demo_stops_its_workers_after_a_checkpoint(tmp_path):
    # SIGTERM to `ptdit demo` reaches the torchrun workers (which used to train on, orphaned): they finish their
    # step and write a checkpoint, and the demo ends with 143, leaving no process behind.
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "ptdit", "demo", "--task", "t2v", "--out", str(out)]
    for item in [*TINY, "train.max_steps=100000", "train.log_every=1"]:
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any("loss" in line for line in _lines(out / "metrics.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "training stopped by SIGTERM at step" in err and "nothing was evaluated" in err
    assert list((out / "checkpoints").glob("step-*/config.json")) and not (out / "metrics.json").exists()
    assert _processes_mentioning(str(out)) == []


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


@pytest.mark.parametrize("task", ["t2v", "t2mv"])
def test_quick_video_and_multiview_demos_show_gifs_and_views(tmp_path, task):
    overrides = [*TINY[:-2], "train.eval_prompts=4", "train.eval_fd_samples=0", "train.num_sample_prompts=2"]
    result = run_demo(task, out_dir=tmp_path / task, overrides=overrides, eval_prompts=3)
    report = result.report.read_text()
    assert result.metrics["steps"] == 3 and report.count("<figure>") == 3
    # Each sample: its GIF (a valid one) and the row of its 8 frames / views, its prompt and its verdicts.
    gifs = re.findall(r'src="data:image/gif;base64,([^"]+)"', report)
    assert len(gifs) == 3 and all(base64.b64decode(g).startswith(b"GIF8") for g in gifs)
    assert report.count("data:image/png;base64,") >= 3
    assert report.count("the 8 views" if task == "t2mv" else "the 8 frames") == 3
    assert report.count("checks passed") + report.count("checks failed") == 3
    assert f"Oracle benchmark ({task}-v1)" in report
    assert sorted(p.name for p in (tmp_path / task / "samples").glob("*.gif"))[:3] == ["000.gif", "001.gif", "002.gif"]


@pytest.mark.parametrize("name", ["demo-t2i.yaml", "demo-t2v.yaml", "demo-t2mv.yaml"])
def test_demo_config_trains_a_fixed_number_of_steps(name):
    cfg = load_train_config(config_path(name))
    assert cfg.train.max_minutes is None and cfg.train.max_steps > 0
    assert cfg.train.num_threads is not None  # 1 and 2 threads give different weights: pinned
