"""Classifier-free guidance: scale 1 is the conditional branch, one batched call, cond / uncond batching."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from ptdit.diffusion import ClassifierFreeGuidance, batch_cond_uncond, cfg_combine
from tests.helpers.diffusion import latents


def _conditional_model(calls: list[int]) -> Callable[..., Tensor]:
    """Output depends on x, t, the context (masked mean) and class labels; records batch sizes."""

    def model(x: Tensor, t: Tensor, *, context: Tensor, context_mask: Tensor, class_labels: Tensor) -> Tensor:
        calls.append(x.shape[0])
        ctx = (context * context_mask[..., None]).sum(dim=(1, 2)) / context_mask.sum(dim=1).clamp(min=1)
        bias = (ctx + class_labels.float() + t / 1000).view(-1, 1, 1, 1, 1)
        return torch.cat([x * 0.3 + bias, x * 0.1 - bias], dim=1)

    return model


def _cond_pair() -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(5)
    cond = {
        "context": torch.randn(2, 6, 3, generator=gen),
        "context_mask": torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool),
        "class_labels": torch.tensor([3, 7]),
    }
    uncond = {
        "context": torch.randn(1, 6, 3, generator=gen),  # one null embedding, expanded to the batch
        "context_mask": torch.tensor([[1, 0, 0, 0, 0, 0]], dtype=torch.bool),
        "class_labels": torch.tensor([1000, 1000]),
    }
    return cond, uncond


def test_cfg_scale_one_equals_conditional() -> None:
    cond_out, uncond_out = latents(0), latents(1)
    torch.testing.assert_close(cfg_combine(cond_out, uncond_out, 1.0), cond_out)
    torch.testing.assert_close(cfg_combine(cond_out, uncond_out, 0.0), uncond_out)
    calls: list[int] = []
    model = _conditional_model(calls)
    cond, uncond = _cond_pair()
    x, t = latents(2), torch.full((2,), 500.0)
    guided = ClassifierFreeGuidance(model, scale=1.0, uncond=uncond)
    assert torch.equal(guided(x, t, **cond), model(x, t, **cond))


def test_cfg_batched_equals_two_calls() -> None:
    calls: list[int] = []
    model = _conditional_model(calls)
    cond, uncond = _cond_pair()
    x, t = latents(2), torch.tensor(640.0)
    guided = ClassifierFreeGuidance(model, scale=4.0, uncond=uncond)
    out = guided(x, t, **cond)
    assert calls == [4]  # one batched call on [x; x]
    t_B = t.expand(2)
    out_cond = model(x, t_B, **cond)
    uncond_full = {k: v.expand(2, *v.shape[1:]) for k, v in uncond.items()}
    out_uncond = model(x, t_B, **uncond_full)
    torch.testing.assert_close(out, out_uncond + 4.0 * (out_cond - out_uncond))


def test_batch_cond_uncond_order_and_errors() -> None:
    cond, uncond = _cond_pair()
    batched = batch_cond_uncond({**cond, "flag": True}, uncond, batch_size=2)
    assert torch.equal(batched["class_labels"], torch.tensor([3, 7, 1000, 1000]))  # conditional first
    assert batched["context"].shape == (4, 6, 3) and batched["flag"] is True
    with pytest.raises(ValueError, match="context_mask"):
        batch_cond_uncond(cond, {"context": uncond["context"], "class_labels": uncond["class_labels"]}, 2)
    with pytest.raises(ValueError, match="lacks"):
        batch_cond_uncond({"context": cond["context"]}, uncond, 2)
    with pytest.raises(ValueError, match="must match"):
        batch_cond_uncond({"class_labels": cond["class_labels"]}, {"class_labels": torch.zeros(3)}, 2)
