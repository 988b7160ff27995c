"""`ptdit bench memory`: the fake-tensor estimate of a training step's peak memory against the CPU allocator's
measured peak, exact training-state parts, and the command."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ptdit.bench.memory import LiveBytes, MemorySettings, estimate_training_memory, measure_training_memory
from ptdit.cli.main import main
from ptdit.config import replace
from ptdit.presets.models import get_preset

# The estimate counts every tensor; the allocator also holds kernel workspaces, so the estimate may be a little
# lower (at most 5% in docs/memory.md's validation), never meaningfully higher.
LOW, HIGH = 0.90, 1.02


def _tiny(name: str):
    overrides = {"depth": 1} if name == "PT-DiT/Tiny" else {"depth": 1, "dim": 64, "num_heads": 4}
    return replace(get_preset(name), **overrides)


@pytest.mark.parametrize(
    ("name", "precision", "checkpointing"),
    [
        pytest.param("PT-DiT/Tiny", "bf16", True, marks=pytest.mark.slow),
        ("PT-DiT/Tiny", "fp32", False),
        ("DiT-S/2", "bf16", False),
        ("DiT-S/2", "fp32", True),
    ],
)
def test_estimate_matches_measured_allocator_peak(name, precision, checkpointing):
    config = _tiny(name)
    settings = MemorySettings(
        resolution=256, batch=2, precision=precision, checkpointing=checkpointing, foreach=False, text_tokens=8,
        device="cpu",
    )  # fmt: skip
    estimate = estimate_training_memory(name, config, settings)
    # Run second: a fake run must leave no fake tensor in the constant caches (masks, positional embeddings).
    measured = measure_training_memory(config, settings)["allocator_peak_bytes"]
    assert LOW * measured <= estimate.peak_bytes <= HIGH * measured
    if not checkpointing:  # activations matter here: the check is not only about the weights and AdamW
        assert estimate.saved_activation_bytes > estimate.weight_bytes


def test_training_state_parts_are_exact():
    config = _tiny("PT-DiT/Tiny")
    settings = MemorySettings(resolution=64, checkpointing=True, foreach=True, text_tokens=4)
    estimate = estimate_training_memory("PT-DiT/Tiny", config, settings)
    from ptdit.models.registry import build_model

    model = build_model(config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    tensors = [*model.parameters(), *model.buffers()]
    assert estimate.parameters == sum(p.numel() for p in model.parameters())
    assert estimate.weight_bytes == sum(t.numel() * t.element_size() for t in tensors)
    assert estimate.gradient_bytes == estimate.ema_bytes == 4 * sum(p.numel() for p in trainable)
    optimizer = torch.optim.AdamW(trainable, foreach=True)
    model(torch.randn(1, 4, 1, 8, 8), torch.rand(1), context=torch.randn(1, 4, 64))[:, :4].sum().backward()
    optimizer.step()
    states = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    assert estimate.optimizer_bytes == sum(v.numel() * v.element_size() for v in states)
    # With checkpointing and a small input the peak is the optimizer update: weights, every gradient, states, EMA.
    assert estimate.peak_phase == "optimizer_step"
    assert estimate.at_peak["gradients"] == estimate.gradient_bytes
    assert estimate.at_peak["optimizer"] == estimate.optimizer_bytes


def test_live_bytes_counts_each_storage_once_and_frees():
    with LiveBytes() as tracker:
        a = torch.empty(1000)  # 4000 bytes
        view = a[:10]
        a.add_(1)  # in place: same storage
        b = a * 2  # 4000 more
        del b
        c = torch.empty(250, dtype=torch.float64)  # 2000
    assert tracker.peak == 8000
    assert tracker.current == 6000
    del a, view, c


def test_checkpointing_cuts_saved_activations():
    config = _tiny("DiT-S/2")
    plain, ckpt = (
        estimate_training_memory("DiT-S/2", config, MemorySettings(resolution=128, checkpointing=c, text_tokens=4))
        for c in (False, True)
    )
    assert ckpt.saved_activation_bytes < plain.saved_activation_bytes / 2
    assert ckpt.weight_bytes == plain.weight_bytes and ckpt.optimizer_bytes == plain.optimizer_bytes


def test_bench_memory_cli_json_table_and_plot(capsys, tmp_path):
    tiny = ["--depth", "1", "--width", "64", "--heads", "4", "--text-tokens", "4", "--no-checkpointing"]
    base = ["bench", "memory", "--model", "DiT-S/2", *tiny]
    assert main([*base, "--resolution", "64", "128", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["tokens"] for r in rows] == [16, 64]
    assert all(r["device"] == "cuda" for r in rows)  # the estimate follows an accelerator unless told otherwise
    for r in rows:
        assert r["precision"] == "bf16" and r["checkpointing"] is False and r["fits"] is True
        assert r["peak_bytes"] >= r["weight_bytes"] + r["optimizer_bytes"] + r["ema_bytes"]
        assert r["gmac_step"] > 0
    plot = tmp_path / "memory.png"
    assert main([*base, "--resolution", "64", "128", "--budget", "1e-6", "--plot", str(plot), "--measure"]) == 0
    out = capsys.readouterr().out
    assert "NO" in out and "growth with the token count" in out and "estimate / allocator" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_estimate_follows_the_devices_attention_path():
    """On CPU, short bf16 attention that needs gradients runs in fp32 and saves fp32 copies for the backward pass
    (docs/decisions.md#attention-backward-in-fp32-on-cpu); on an accelerator it stays in bf16."""
    config = _tiny("PT-DiT/Tiny")
    cpu, cuda = (
        estimate_training_memory("PT-DiT/Tiny", config, MemorySettings(resolution=128, text_tokens=4, device=d))
        for d in ("cpu", "cuda")
    )
    assert cpu.saved_activation_bytes > cuda.saved_activation_bytes
    assert cpu.weight_bytes == cuda.weight_bytes and cpu.optimizer_bytes == cuda.optimizer_bytes
    fp32 = MemorySettings(resolution=128, text_tokens=4, precision="fp32")  # nothing to upcast
    assert (
        estimate_training_memory("PT-DiT/Tiny", config, fp32).peak_bytes
        == estimate_training_memory("PT-DiT/Tiny", config, dataclasses.replace(fp32, device="cpu")).peak_bytes
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_measuring_on_cuda_without_a_gpu_is_one_line(capsys):
    assert main(["bench", "memory", "--resolution", "64", "--model", "DiT-S/2", "--measure", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "torch.cuda.is_available() is False" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--model", "diffusers:PixArtTransformer2DModel"], "presets only"), (["--budget", "0"], "--budget")],
)
def test_bench_memory_bad_input(capsys, args, message):
    assert main(["bench", "memory", "--resolution", "64", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_vae_encode_estimate_counts_the_released_vae():
    from ptdit.bench.memory import estimate_vae_encode_memory, vae_encode_frames
    from ptdit.encoders.causalvae.config import CausalVAEConfig
    from ptdit.encoders.causalvae.model import CausalVAEModel

    assert [vae_encode_frames(f) for f in (1, 96, 288, 289)] == [1, 97, 289, 289]
    with torch.device("meta"):
        parameters = sum(p.numel() for p in CausalVAEModel(CausalVAEConfig()).parameters())
    vae = estimate_vae_encode_memory(64)
    assert vae["vae_weight_bytes"] == 2 * parameters  # bf16
    assert vae["vae_encode_peak_bytes"] > vae["vae_weight_bytes"] + 3 * 64 * 64 * 4  # weights, pixels, activations
