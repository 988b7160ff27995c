"""`ptdit.nn.layers.Linear`: the CPU bf16 fast path (oneDNN, bias and GELU fused) against the reference path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ptdit.models.registry import build_model
from ptdit.nn import layers
from ptdit.nn.layers import Linear
from ptdit.presets.models import get_preset

pytestmark = pytest.mark.skipif(not layers._onednn_linear_available(), reason="this torch build has no oneDNN linear")


def _layer(activation: str | None, bias: bool = True) -> Linear:
    torch.manual_seed(0)
    return Linear(64, 96, bias=bias, activation=activation).to(torch.bfloat16)


def _reference(layer: Linear, x: torch.Tensor) -> torch.Tensor:
    y = F.linear(x, layer.weight, layer.bias)
    return F.gelu(y, approximate="tanh") if layer.activation else y


@pytest.mark.parametrize("bias", [True, False])
def test_the_fast_path_is_taken_and_equals_the_reference_without_activation(bias, monkeypatch):
    layer, x = _layer(None, bias), torch.randn(2, 5, 7, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        assert layer._use_fused(x)
        fast = layer(x)
        monkeypatch.setattr(Linear, "fused_cpu", False)
        assert not layer._use_fused(x)
        reference = layer(x)
    assert torch.equal(fast, reference)  # same oneDNN GEMM; the bias only moves into its epilogue
    assert torch.equal(reference, _reference(layer, x))


def test_the_fused_gelu_is_within_one_bf16_rounding_of_the_reference(monkeypatch):
    layer, x = _layer("gelu_tanh"), torch.randn(4, 33, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        fast = layer(x).float()
        monkeypatch.setattr(Linear, "fused_cpu", False)
        reference = layer(x).float()
        pre = F.linear(x.float(), layer.weight.float(), layer.bias.float())
        exact = F.gelu(pre, approximate="tanh")
    # The reference rounds twice (the linear output, then GELU's), the fused kernel once: both stay within a
    # rounding (2^-8 relative) of each, with GELU's slope (at most 1.13) carrying the first one.
    bound = 2**-8 * (1.13 * pre.abs() + exact.abs()) + 1e-6
    assert ((reference - exact).abs() <= bound).all()
    assert ((fast - exact).abs() <= bound).all()
    assert (fast - exact).abs().mean() <= (reference - exact).abs().mean()  # one rounding, not two


@pytest.mark.parametrize("preset", ["PT-DiT/XL", "DiT-XL/2", "PixArt-alpha-XL/2"])
def test_whole_bf16_networks_agree_with_the_reference_path(preset, monkeypatch):
    """Every Linear of the three networks on the fast path, against all on the reference path."""
    config = get_preset(preset, dim=64, depth=2, num_heads=4)
    torch.manual_seed(0)
    model = build_model(config, dtype=torch.bfloat16).eval()
    for module in model.modules():  # zero-initialised output layers would hide differences
        if isinstance(module, Linear):
            torch.nn.init.normal_(module.weight, std=0.05)
    x = torch.randn(1, config.in_channels, 1, 32, 32, dtype=torch.bfloat16)
    t = torch.tensor([500.0])
    kwargs = {"class_labels": torch.tensor([3])} if config.conditioning == "class" or config.arch == "dit" else {}
    if config.conditioning == "text":
        kwargs = {"context": torch.randn(1, 6, config.context_dim, dtype=torch.bfloat16)}
    with torch.no_grad():
        fast = model(x, t, **kwargs).float()
        monkeypatch.setattr(Linear, "fused_cpu", False)
        reference = model(x, t, **kwargs).float()
    assert not torch.equal(fast, torch.zeros_like(fast))
    torch.testing.assert_close(fast, reference, rtol=0.05, atol=0.05 * reference.abs().max().item())
