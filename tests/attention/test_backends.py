"""Fast paths against their reference paths: FlexAttention vs MATH, per-block torch.compile vs eager, and no
Python loop over windows."""

from __future__ import annotations

import pytest
import torch

from ptdit.attention import AttentionBackend, attention, use_attention_backend
from ptdit.models.registry import build_model
from ptdit.train.parallel import apply_compile
from tests.helpers.models import randomize_, text_inputs, tiny_config

try:
    import torch.nn.attention.flex_attention

    HAS_FLEX = True
except ImportError:  # torch < 2.5
    HAS_FLEX = False
flex_available = pytest.mark.skipif(not HAS_FLEX, reason="torch.nn.attention.flex_attention needs torch >= 2.5")


def _qkv(device, dtype, B=3, N=2, L=40, S=24, K=16, seed=0, grad=False):
    gen = torch.Generator().manual_seed(seed)
    qkv = [torch.randn(B, N, n, K, generator=gen).to(device=device, dtype=dtype) for n in (L, S, S)]
    return [t.requires_grad_(grad) for t in qkv]


def _mask(kind, B=3, N=2, L=40, S=24):
    gen = torch.Generator().manual_seed(1)
    shape = {"none": None, "shared": (1, 1, L, S), "per-sample": (B, 1, L, S), "per-head": (B, N, L, S), "2d": (L, S)}
    if shape[kind] is None:
        return None
    mask = torch.rand(shape[kind], generator=gen) > 0.5
    mask[..., 0] = True  # every query keeps a key
    return mask


@flex_available
@pytest.mark.parametrize("kind", ["none", "shared", "per-sample", "per-head", "2d"])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_flex_matches_math_forward_cpu(kind, dtype, atol):
    """On CPU torch's FlexAttention runs eagerly and has no backward: outputs only (gradients: the gpu test)."""
    q, k, v = _qkv("cpu", dtype)
    mask = _mask(kind)
    with torch.no_grad():
        out = attention(q, k, v, mask, backend=AttentionBackend.FLEX)
        ref = attention(q, k, v, mask, backend="math")
    torch.testing.assert_close(out.float(), ref.float(), atol=atol, rtol=atol)


@flex_available
def test_flex_backward_on_cpu_is_a_clear_error():
    q, k, v = _qkv("cpu", torch.float32, grad=True)
    with pytest.raises(ValueError, match="no backward on CPU"):
        attention(q, k, v, backend="flex")


@flex_available
def test_flex_in_ptdit_matches_math():
    """Whole model: window, masked shifted windows, proxies and padded text through flex == MATH."""
    model = randomize_(build_model(tiny_config())).eval()
    x, t, ctx, mask = text_inputs()
    with torch.no_grad():
        with use_attention_backend("flex"):
            out = model(x, t, ctx, mask)
        with use_attention_backend("math"):
            ref = model(x, t, ctx, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["none", "shared", "per-sample", "per-head"])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 2e-4), (torch.bfloat16, 2e-2)])
def test_flex_matches_math_with_grads_cuda(kind, dtype, atol):
    L, S = 256, 192  # several 128-token blocks, so block sparsity is exercised
    q, k, v = _qkv("cuda", dtype, L=L, S=S, K=64, grad=True)
    mask = _mask(kind, L=L, S=S)
    mask = None if mask is None else mask.cuda()
    outs, grads = [], []
    for backend in ("flex", "math"):
        out = attention(q, k, v, mask, backend=backend)
        grads.append(torch.autograd.grad(out.float().square().sum(), (q, k, v)))
        outs.append(out)
    torch.testing.assert_close(outs[0].float(), outs[1].float(), atol=atol, rtol=atol)
    for ga, gb in zip(*grads, strict=True):
        torch.testing.assert_close(ga.float(), gb.float(), atol=atol * 10, rtol=atol * 10)


def test_no_python_loop_over_windows(monkeypatch):
    """The number of attention kernel calls of a forward is the same for 4 and 64 windows."""
    import ptdit.attention.modules as modules

    calls = []
    original = modules.attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(modules, "attention", counting)
    model = build_model(tiny_config()).eval()
    counts = []
    for size in (16, 64):  # 8 x 8 and 32 x 32 tokens: 4 and 64 windows of (1, 4, 4)
        calls.clear()
        x, t, ctx, mask = text_inputs(size=size)
        with torch.no_grad():
            model(x, t, ctx, mask)
        counts.append(len(calls))
    assert counts[0] == counts[1]


def test_apply_compile_keeps_state_dict_keys():
    model = build_model(tiny_config())
    keys = list(model.state_dict())
    assert apply_compile(model) is model
    assert list(model.state_dict()) == keys
    apply_compile(model)  # idempotent
    assert all(getattr(b, "_ptdit_compiled", False) for b in model.block_list())


@pytest.mark.slow
def test_compile_matches_eager():
    """Per-block torch.compile gives the eager outputs and gradients (CPU inductor: ~1 min of compilation)."""
    eager = randomize_(build_model(tiny_config()))
    compiled = randomize_(build_model(tiny_config()))
    apply_compile(compiled)
    x, t, ctx, mask = text_inputs()
    outs, grads = [], []
    for model in (eager, compiled):
        out = model(x, t, ctx, mask)
        out.square().mean().backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-4, rtol=1e-4, msg=name)
