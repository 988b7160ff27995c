"""Faults during long runs (docs/training.md#faults): SIGKILL at any point, a save included, leaves the last complete
checkpoint loadable and --resume continues bit-exactly; SIGINT / SIGTERM stop cleanly with a checkpoint; a full
disk during a save keeps the previous checkpoint; a second run into the same folder is refused by a lock."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import ptdit
from ptdit.cli.main import main
from ptdit.io import load_safetensors
from ptdit.train.lock import RunFolderBusyError, RunLock
from ptdit.train.loop import train
from ptdit.train.state import FAULT_ENV, CheckpointWriteError, latest_checkpoint
from tests.helpers.train import tiny_train_config, write_tiny_config

SRC = Path(__file__).resolve().parents[2] / "src"
# Six steps, a checkpoint every two, only the newest kept (so the save at step 4 also prunes step 2).
RUN = ("train.max_steps=6", "train.checkpoint_every=2", "train.keep_last=1", "train.num_threads=1")
KILL_POINTS = ["step:3", "save-written:4", "save-renamed:4", "save-pointer:4", "prune:4"]
WEIGHTS = ("model.safetensors", "ema.safetensors", "training_state/optimizer.safetensors")


def _weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_safetensors(folder / name) for name in WEIGHTS}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    for name in WEIGHTS:
        assert wa[name].keys() == wb[name].keys()
        for key in wa[name]:
            assert torch.equal(wa[name][key], wb[name][key]), f"{name}:{key} differs"


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    train(tiny_train_config(*RUN), run, show_progress=False)
    return run


def _train_until_killed(config: Path, run: Path, point: str) -> None:
    os.environ[FAULT_ENV] = point
    # SIGKILL skips the run's TemporaryDirectory cleanup: keep its scratch folder under pytest's tmp, not /tmp.
    scratch = run.parent / f"{run.name}-tmp"
    scratch.mkdir()
    tempfile.tempdir = str(scratch)
    main(["train", "--config", str(config), "--out", str(run)])


@pytest.fixture(scope="module")
def killed(tmp_path_factory, straight) -> dict[str, tuple[Path, int]]:
    """One `ptdit train` process per kill point, run side by side, each killed by SIGKILL at its point. The processes
    are forked from this one, which has imported everything already by training `straight` (a fresh interpreter
    costs seconds each; the slow test below uses one)."""
    import multiprocessing

    root = tmp_path_factory.mktemp("killed")
    config = write_tiny_config(root / "tiny.json", *RUN)
    procs = {}
    for point in KILL_POINTS:
        run = root / point.replace(":", "-")
        procs[point] = (
            run,
            multiprocessing.get_context("fork").Process(target=_train_until_killed, args=(config, run, point)),
        )
        procs[point][1].start()
    for _, proc in procs.values():
        proc.join(timeout=240)
    return {point: (run, proc.exitcode) for point, (run, proc) in procs.items()}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_any_point_then_resume_is_bit_exact(killed, straight, point):
    run, code = killed[point]
    _check_killed_then_resume(run, code, straight, point)


@pytest.mark.slow
def test_sigkill_of_a_fresh_interpreter_during_a_save(tmp_path, straight):
    """The same as above with `python -m ptdit train` started from nothing, killed while writing a checkpoint."""
    config = write_tiny_config(tmp_path / "tiny.json", *RUN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "ptdit", "train", "--config", str(config), "--out", str(tmp_path / "run")]
    code = subprocess.run(cmd, env={**env, FAULT_ENV: "save-written:4"}, stderr=subprocess.DEVNULL).returncode
    _check_killed_then_resume(tmp_path / "run", code, straight, "save-written:4")


def _check_killed_then_resume(run: Path, code: int, straight: Path, point: str) -> None:
    assert code == -signal.SIGKILL, f"the process was not killed at {point} (exit code {code})"
    last = latest_checkpoint(run)
    expected = "step-0000004" if point in ("save-pointer:4", "prune:4") else "step-0000002"  # `latest` names it
    assert last is not None and last.name == expected
    ptdit.load_model(last, weights="ema.safetensors")  # the last complete checkpoint loads
    resumed = train(tiny_train_config(*RUN), run, resume=True, show_progress=False)
    assert resumed.steps == 6
    _assert_same_weights(resumed.checkpoint, latest_checkpoint(straight))
    steps = [r["step"] for r in _records(run)]
    assert steps == sorted(set(steps)) == list(range(1, 7)), "metrics.jsonl repeats or misses steps"
    assert [r["loss"] for r in _records(run)] == [r["loss"] for r in _records(straight)]
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == [], "an interrupted save left temporary folders behind"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signal_finishes_the_step_saves_and_resumes_exactly(tmp_path, straight, signame, monkeypatch, capsys):
    config = write_tiny_config(tmp_path / "tiny.json", *RUN)
    monkeypatch.setenv(FAULT_ENV, f"step:3:{signame}")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr()
    assert f"{signame} received" in out.err
    assert f"stopped at step 3 of 6 by {signame}" in out.out and "step-0000003" in out.out
    assert latest_checkpoint(tmp_path / "run").name == "step-0000003"
    monkeypatch.delenv(FAULT_ENV)
    resumed = train(tiny_train_config(*RUN), tmp_path / "run", resume=True, show_progress=False)
    _assert_same_weights(resumed.checkpoint, latest_checkpoint(straight))


def test_a_second_signal_stops_at_once(tmp_path, monkeypatch):
    import ptdit.train.loop as loop

    original = loop.fault_point

    def twice(point, step):
        if point == "step" and step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        original(point, step)

    monkeypatch.setattr(loop, "fault_point", twice)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(*RUN), tmp_path / "run", show_progress=False)
    assert latest_checkpoint(tmp_path / "run").name == "step-0000002"  # the last complete one is intact
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are restored


def test_full_disk_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    import safetensors.torch

    original, calls = safetensors.torch.save_file, {"n": 0}

    def disk_full_in_second_save(tensors, path, *args, **kwargs):
        calls["n"] += "checkpoints" in str(path)
        if calls["n"] == 5:  # three files per checkpoint: the second one of step 4
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return original(tensors, path, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full_in_second_save)
    config = write_tiny_config(tmp_path / "tiny.json", *RUN)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("ptdit train: error: could not write"), err
    err = err.splitlines()[-1]
    assert "could not write checkpoint" in err and "no space left on device" in err
    assert "step-0000002 is intact" in err and "--resume" in err
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["latest", "step-0000002"]
    ptdit.load_model(latest_checkpoint(tmp_path / "run"))
    with pytest.raises(CheckpointWriteError):
        monkeypatch.setattr(safetensors.torch, "save_file", disk_full_in_second_save)
        calls["n"] = 4
        train(tiny_train_config(*RUN), tmp_path / "run", resume=True, show_progress=False)


def test_a_second_training_into_the_same_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    with RunLock(run), pytest.raises(RunFolderBusyError, match=rf"in use by another training run \(pid {os.getpid()}"):
        train(tiny_train_config("train.max_steps=1"), run, show_progress=False)
    # A lock file left by a process that died (no lock held on it) does not stick.
    (run / ".lock").write_text("pid 999999 on somewhere\n")
    assert train(tiny_train_config("train.max_steps=1"), run, show_progress=False).steps == 1
