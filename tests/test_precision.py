"""The default precision (`ptdit.precision`): what "auto" resolves to, and that the sampler and the trainer use it."""

from __future__ import annotations

import pytest
import torch

from ptdit import precision
from ptdit.precision import BF16_CPU_MIN_WIDTH, auto_precision, resolve_precision, torch_dtype
from ptdit.train.config import RunConfig


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) bf16 matrix units."""

    def set_units(present: bool) -> None:
        monkeypatch.setattr(precision, "has_fast_bf16", lambda device: present)

    return set_units


def test_explicit_precisions_pass_through_unchanged():
    for width in (64, 4096):
        for use in ("inference", "training"):
            assert resolve_precision("fp32", width, "cpu", use) == "fp32"
            assert resolve_precision("bf16", width, "cpu", use) == "bf16"


def test_auto_on_a_cpu_with_bf16_units_inference_always_training_from_the_measured_width(bf16_cpu):
    bf16_cpu(True)
    assert auto_precision(32, "cpu", "inference") == "bf16"
    threshold = BF16_CPU_MIN_WIDTH["training"]
    assert auto_precision(threshold - 1, "cpu", "training") == "fp32"
    assert auto_precision(threshold, "cpu", "training") == "bf16"
    assert resolve_precision("auto", 1152, "cpu", "training") == "bf16"
    assert resolve_precision("auto", 128, "cpu", "training") == "fp32"  # the CPU demos' width
    assert auto_precision(32, "cuda", "training") == "bf16"


def test_auto_is_fp32_without_bf16_units(bf16_cpu):
    bf16_cpu(False)
    for use in ("inference", "training"):
        assert auto_precision(1152, "cpu", use) == "fp32"
        assert auto_precision(1152, "cuda", use) == "fp32"


def test_an_unknown_precision_or_use_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        resolve_precision("fp16", 128, "cpu", "training")
    with pytest.raises(ValueError, match="use must be one of inference, training, got 'serving'"):
        auto_precision(128, "cpu", "serving")


def test_torch_dtypes():
    assert torch_dtype("fp32") is torch.float32
    assert torch_dtype("bf16") is torch.bfloat16


def test_the_trainer_defaults_to_auto_and_accepts_it():
    assert RunConfig().precision == "auto"
    assert RunConfig(precision="auto").precision == "auto"
    with pytest.raises(ValueError, match=r"train\.precision must be 'auto', 'fp32' or 'bf16'"):
        RunConfig(precision="fp16")


def _trained_weights(out, precision_name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from ptdit.train.loop import train
    from tests.helpers.train import tiny_train_config

    train(tiny_train_config("train.max_steps=2", f"train.precision={precision_name}"), out)
    return load_file(out / "checkpoints" / "step-0000002" / "model.safetensors")


@pytest.mark.parametrize("resolved", ["fp32", "bf16"])
def test_the_trainer_trains_auto_as_what_it_resolves_to(resolved, monkeypatch, tmp_path):
    explicit = _trained_weights(tmp_path / "explicit", resolved)
    other = _trained_weights(tmp_path / "other", "bf16" if resolved == "fp32" else "fp32")
    monkeypatch.setattr(precision, "auto_precision", lambda width, device, use: resolved)
    auto = _trained_weights(tmp_path / "auto", "auto")
    assert all(torch.equal(auto[k], explicit[k]) for k in explicit)
    assert not all(torch.equal(auto[k], other[k]) for k in other)  # the two precisions do train differently


def test_a_pipeline_loads_in_the_auto_dtype_unless_told(monkeypatch, tmp_path):
    from ptdit.sampling.pipeline import GenerationPipeline

    _trained_weights(tmp_path / "run", "fp32")
    checkpoint = tmp_path / "run" / "checkpoints" / "step-0000002"

    def network_dtype(**kwargs) -> torch.dtype:
        return next(GenerationPipeline.from_checkpoint(checkpoint, **kwargs).model.parameters()).dtype

    monkeypatch.setattr(precision, "auto_precision", lambda width, device, use: "fp32")
    assert network_dtype() is torch.float32
    monkeypatch.setattr(precision, "auto_precision", lambda width, device, use: "bf16")
    assert network_dtype() is torch.bfloat16
    assert network_dtype(dtype=torch.float32) is torch.float32
