"""The training loop (ptdit.train.loop): overfitting, exact resume, checkpoint layout, NaN handling, grad accumulation,
no overwriting of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ptdit
from ptdit.diffusion.losses import DiffusionLoss, FlowMatchingLoss
from ptdit.diffusion.schedules import FlowSchedule
from ptdit.eval.previews import write_sample_grid
from ptdit.io import load_safetensors
from ptdit.train.loop import NonFiniteLossError, train
from ptdit.train.state import latest_checkpoint
from tests.helpers.train import tiny_train_config


def test_overfit_one_batch_cuts_loss_tenfold():
    torch.manual_seed(0)
    model = ptdit.build_model(
        "PT-DiT/Tiny", dim=32, depth=2, num_heads=2, in_channels=3, out_channels=6, context_dim=8, window_size=(1, 2, 2)
    )
    loss_fn = FlowMatchingLoss(FlowSchedule(shift=None))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 1, 8, 8, generator=gen) * 2 - 1  # 4 x 4 tokens: 4 windows, fast
    cond = {"context": torch.randn(4, 3, 8, generator=gen), "context_mask": torch.ones(4, 3)}
    t, noise = loss_fn.draw(x0.shape, generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        loss = loss_fn.compute(model, x0, cond, t, noise).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def _weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {
        name: load_safetensors(folder / name)
        for name in ("model.safetensors", "ema.safetensors", "training_state/optimizer.safetensors")
    }


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_continues_identically(tmp_path):
    cfg = tiny_train_config("train.max_steps=6", "optim.schedule=cosine")
    straight = train(cfg, tmp_path / "straight", show_progress=False)
    first = train(cfg, tmp_path / "resumed", stop_at=3, show_progress=False)
    assert first.steps == 3 and latest_checkpoint(tmp_path / "resumed").name == "step-0000003"
    resumed = train(cfg, tmp_path / "resumed", resume=True, show_progress=False)
    assert resumed.steps == straight.steps == 6
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}:{key} differs after resume"
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")


def test_checkpoint_layout_and_sampling_from_it(tmp_path):
    from ptdit.cli.main import main

    result = train(
        tiny_train_config("train.max_steps=2", "train.sample_every=2"),
        tmp_path / "run",
        show_progress=False,
        preview=write_sample_grid,
    )
    folder = result.checkpoint
    grid = tmp_path / "run" / "samples" / "step-0000002.png"  # periodic EMA sample grid
    assert grid.is_file() and grid.stat().st_size > 100
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == folder.name == "step-0000002"
    assert {p.name for p in folder.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "ema.safetensors",
        "training_state",
        "text_encoder",
    }
    config = json.loads((folder / "config.json").read_text())
    assert config["pipeline"]["text_encoder"] == "text_encoder" and config["pipeline"]["height"] == 24
    sample = ["sample", "--prompt", "a small red circle at the center", "--out", str(tmp_path / "samples")]
    assert main([*sample, "--checkpoint", str(folder)]) == 0
    assert main([*sample, "--checkpoint", str(tmp_path / "run")]) == 0  # a run folder resolves to its latest
    assert (tmp_path / "samples" / "000-a-small-red-circle-at-the-center.png").is_file()
    assert (tmp_path / "run" / "loss.png").is_file() and (tmp_path / "run" / "metrics.jsonl").is_file()


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_train_config("train.max_steps=5", "train.checkpoint_every=2")
    original, count = DiffusionLoss.compute, {"n": 0}

    def nan_at_step_three(self, *args, **kwargs):
        count["n"] += 1
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if count["n"] == 4 else loss

    monkeypatch.setattr(DiffusionLoss, "compute", nan_at_step_three)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 3.*last good checkpoint .*step-0000002"):
        train(cfg, tmp_path / "run", show_progress=False)
    assert latest_checkpoint(tmp_path / "run").name == "step-0000002"


def test_refuses_to_overwrite_a_run_and_resume_needs_a_checkpoint(tmp_path):
    cfg = tiny_train_config("train.max_steps=1")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(cfg, tmp_path / "run", resume=True, show_progress=False)
    train(cfg, tmp_path / "run", show_progress=False)
    with pytest.raises(ValueError, match="pass --resume"):
        train(cfg, tmp_path / "run", show_progress=False)


def test_grad_accumulation_matches_full_batch(tmp_path):
    full = train(tiny_train_config("train.max_steps=2"), tmp_path / "full", show_progress=False)
    accum = train(tiny_train_config("train.max_steps=2", "optim.grad_accum=2"), tmp_path / "acc", show_progress=False)
    a, b = _weights(full.checkpoint)["model.safetensors"], _weights(accum.checkpoint)["model.safetensors"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
