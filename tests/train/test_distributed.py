"""Two CPU processes (gloo) with DDP and FSDP2 give the loss of one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptdit.io import load_safetensors

ARGS = [
    "--set",
    "train.max_steps=3",
    "--set",
    "train.batch_size=4",
    "--set",
    "model.dim=32",
    "--set",
    "model.depth=2",
    "--set",
    "model.num_heads=2",
    "--set",
    "model.context_dim=32",
    "--set",
    "data.size=24",
    "--set",
    "train.precision=fp32",
    "--set",
    "train.log_every=1",
    "--set",
    "train.ema_decay=0.9",
]
CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "demo-t2i.yaml")


def _run(out: Path, nproc: int, strategy: str = "ddp") -> list[float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    base = ["-m", "ptdit", "train", "--config", CONFIG, "--out", str(out), *ARGS, "--set", f"train.parallel={strategy}"]
    if nproc == 1:
        argv = [sys.executable, *base]
    else:
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *base]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    return out, _run(out, 1)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(single, strategy, tmp_path):
    out_single, losses_single = single
    losses = _run(tmp_path / "run", 2, strategy)
    assert len(losses) == len(losses_single) == 3
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(losses_single), atol=1e-5, rtol=1e-4)
    a = load_safetensors(out_single / "checkpoints" / "step-0000003" / "model.safetensors")
    b = load_safetensors(tmp_path / "run" / "checkpoints" / "step-0000003" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
