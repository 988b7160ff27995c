"""FLOP accounting for PT-DiT and its baselines (docs/flops.md; paper Eq. 3 and 4).

Two independent counts of the multiply-accumulates (MACs) of every matmul-like op (linear, conv, attention
matmuls; norms, softmax and elementwise ops are not counted, as in the DiT and PT-DiT papers):

* `analytic_macs`: closed-form formulas per branch (patch embedding, timestep MLP, adaLN, caption
  projection, proxy self-attention, visual cross-attention, window and shifted-window attention, text
  cross-attention, FFN, final layer), split into linear/conv MACs and attention-matmul MACs (QK^T and AV).
* `counted_macs`: torch's `FlopCounterMode` over a real forward (and backward) pass of the network, run on the
  meta device (shapes only: no memory, no time) with the MATH attention backend, whose QK^T and AV are plain
  `bmm`s the counter sees. `register_cpu_sdpa_flops` also teaches the counter the CPU flash SDPA kernel, so
  real CPU runs are counted too (forward only: the flash backward recomputes and counts 3.5x, not 3x).

Conventions (state them next to every number):
* MAC: one multiply-accumulate = 1 FLOP; what the DiT and PT-DiT papers call "GFLOPs".
* 2 x MAC: one multiply plus one add = 2 FLOPs; what hardware peak rates and `FlopCounterMode` use.
* forward+backward = 3 x forward, except for layers whose input needs no gradient (patch embedding, first
  timestep linear, first caption linear): their backward computes only the weight gradient (2 x forward).

Shape legend: B batch, F/Y/X token grid, L = F Y X tokens, M windows, W tokens per window, P proxy tokens,
S text tokens, E caption channels, D width, H hidden width of the FFN.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from ptdit.attention.window import padded_size
from ptdit.config import DiTConfig, ModelConfig, PixArtConfig, PTDiTConfig, replace
from ptdit.encoders.vae import causal_latent_frames
from ptdit.recipe.windows import has_windows
from ptdit.recipe.windows import paper_window as recipe_paper_window

Size3 = tuple[int, int, int]

TEXT_TOKENS = 120  # caption length used for every count unless stated otherwise (PixArt-alpha uses 120)
VAE_SPATIAL = 8  # latents are 8x smaller than pixels in space ...
VAE_TEMPORAL = 4  # ... and 4x shorter in time (docs/decisions.md#latent-frame-rule)
TIMESTEP_FEATURES = 256  # sinusoidal features fed to the timestep MLP

# Eq. 4 table of the paper: (resolution, window, attention-cost ratio as printed). The printed 2048 value
# (2.3%) contradicts Eq. 4, whose value is 3.5% (docs/flops.md#eq-4-attention-cost); `eq4_rows` reports both.
PAPER_EQ4 = ((256, (1, 2, 2), 0.343), (512, (1, 4, 4), 0.097), (1024, (1, 8, 8), 0.047), (2048, (1, 16, 16), 0.023))


# ----------------------------------------------------------------------------------------------------------------
# Geometry: pixels -> latents -> tokens, and the paper's windows
# ----------------------------------------------------------------------------------------------------------------


def latent_frames(frames: int) -> int:
    """Latent frames of a `frames`-frame clip under the 4x causal VAE, rounded as the reference pipeline does
    (`ptdit.encoders.vae.causal_latent_frames` with strict=False; 96 frames -> 24); 1 for an image."""
    return causal_latent_frames(frames, VAE_TEMPORAL, strict=False)


def token_grid(resolution: int, frames: int = 1, *, patch_size: int = 2) -> Size3:
    """(F, Y, X) token grid of a square `resolution` px image or clip for a network with `patch_size`."""
    step = VAE_SPATIAL * patch_size
    if resolution < step or resolution % step:
        raise ValueError(
            f"resolution must be a positive multiple of {step} px (VAE 8 x patch {patch_size}), got {resolution}"
        )
    side = resolution // step
    return (latent_frames(frames), side, side)


def paper_window(resolution: int, frames: int = 1, *, patch_size: int = 2) -> Size3:
    """The paper's window for a square resolution (`ptdit.recipe.windows.paper_window` on its token grid).

    256 px -> (1, 2, 2), 512 -> (1, 4, 4), 1024 -> (1, 8, 8), 2048 -> (1, 16, 16); video (4, s, s). Below
    128 px (fewer than 8 tokens per side) every token is its own window.
    """
    return recipe_paper_window(token_grid(resolution, frames, patch_size=patch_size))


# ----------------------------------------------------------------------------------------------------------------
# Analytic per-branch formulas (MACs per sample)
# ----------------------------------------------------------------------------------------------------------------


def attention_matmul_macs(queries: int, keys: int, dim: int) -> int:
    """QK^T (queries x keys x dim) plus AV (the same): 2 L S D, summed over heads."""
    return 2 * queries * keys * dim


def attention_projection_macs(queries: int, keys: int, dim: int) -> int:
    """to_q and to_out on the queries, to_k and to_v on the keys (all D x D)."""
    return 2 * queries * dim * dim + 2 * keys * dim * dim


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass, per branch, for the whole batch.

    Attributes:
        linear: branch -> MACs of its linear and conv layers.
        attention: branch -> MACs of its attention matmuls (QK^T and AV).
        no_input_grad: MACs of the layers whose input needs no gradient (their backward computes only the weight
            gradient, see `forward_backward`).
    """

    linear: dict[str, int]
    attention: dict[str, int] = field(default_factory=dict)
    no_input_grad: int = 0

    TEXT_BRANCH = "text_cross_attention"

    @property
    def linear_total(self) -> int:
        return sum(self.linear.values())

    @property
    def attention_total(self) -> int:
        """Attention matmuls of every attention except the text cross-attention."""
        return sum(v for k, v in self.attention.items() if k != self.TEXT_BRANCH)

    @property
    def text_attention(self) -> int:
        return self.attention.get(self.TEXT_BRANCH, 0)

    @property
    def forward(self) -> int:
        """Forward MACs including every attention matmul."""
        return self.linear_total + self.attention_total + self.text_attention

    def forward_backward(self, *, attention: bool = True) -> int:
        """Forward + backward MACs: backward = grad-input + grad-weight = 2x forward for every layer except
        those whose input needs no gradient (grad-weight only)."""
        linear = 3 * self.linear_total - self.no_input_grad
        return linear + (3 * (self.attention_total + self.text_attention) if attention else 0)

    def branches(self) -> dict[str, int]:
        """Branch -> forward MACs (linear + attention matmuls)."""
        names = list(dict.fromkeys([*self.linear, *self.attention]))
        return {name: self.linear.get(name, 0) + self.attention.get(name, 0) for name in names}

    def scaled(self, factor: int) -> MacCount:
        return MacCount(
            {k: v * factor for k, v in self.linear.items()},
            {k: v * factor for k, v in self.attention.items()},
            self.no_input_grad * factor,
        )


def real_proxies(grid: Size3, window: Size3, proxy_window: Size3 | None = None) -> int:
    """Proxies with at least one real token: what GIIM attends over on a padded grid (every proxy otherwise)."""
    return math.prod(-(-g // q) for g, q in zip(grid, proxy_window or window, strict=True))


def _ptdit_block(config: PTDiTConfig, L: int, window: Size3, P: int, text_tokens: int) -> tuple[dict, dict]:
    """(linear, attention) MACs of one PT-Block for one sample on L tokens (of the padded grid) with P proxies."""
    D = config.dim
    W = math.prod(window)  # tokens per window; each query of a window sees its W keys
    linear: dict[str, int] = {}
    attention: dict[str, int] = {}
    if config.use_global_interaction:
        linear["proxy_self_attention"] = attention_projection_macs(P, P, D)
        attention["proxy_self_attention"] = attention_matmul_macs(P, P, D)
        inject = L * D * D  # linear_1_visual
        if config.injection == "cross_attention":
            inject += attention_projection_macs(L, P, D)
            attention["visual_cross_attention"] = attention_matmul_macs(L, P, D)
        elif config.injection == "linear":
            inject += D * P * L  # the (L, P) map along the token axis, for each of the D channels
        linear["visual_cross_attention"] = inject  # "interpolate" upsamples: no MACs
    if config.use_window_attention:
        linear["window_attention"] = attention_projection_macs(L, L, D)
        attention["window_attention"] = attention_matmul_macs(L, W, D)
    if config.use_shifted_window:
        linear["shifted_window_attention"] = attention_projection_macs(L, L, D) + L * D * D  # + linear_2
        attention["shifted_window_attention"] = attention_matmul_macs(L, W, D)
    if config.conditioning == "text":
        linear["text_cross_attention"] = attention_projection_macs(L, text_tokens, D)
        attention["text_cross_attention"] = attention_matmul_macs(L, text_tokens, D)
    linear["ffn"] = 2 * L * D * config.mlp_dim
    return linear, attention


def _global_block(config: DiTConfig | PixArtConfig, grid: Size3, text_tokens: int) -> tuple[dict, dict]:
    """(linear, attention) MACs of one DiT / PixArt-alpha block for one sample."""
    D, L = config.dim, math.prod(grid)
    linear = {"self_attention": attention_projection_macs(L, L, D)}
    attention = {"self_attention": attention_matmul_macs(L, L, D)}
    if config.arch == "pixart":
        linear["text_cross_attention"] = attention_projection_macs(L, text_tokens, D)
        attention["text_cross_attention"] = attention_matmul_macs(L, text_tokens, D)
    else:
        linear["adaln"] = D * 6 * D  # DiT's per-block adaLN-Zero linear on the condition vector
    linear["ffn"] = 2 * L * D * config.mlp_dim
    return linear, attention


def analytic_macs(
    config: ModelConfig,
    grid: Size3,
    *,
    window: Size3 | None = None,
    batch: int = 1,
    text_tokens: int = TEXT_TOKENS,
    unpadded: bool = False,
) -> MacCount:
    """Per-branch forward MACs of a network on a token grid.

    Args:
        config: PT-DiT, DiT or PixArt-alpha config.
        grid: (F, Y, X) token grid (see `token_grid`).
        window: PT-DiT window; None = the config's default. Ignored by the baselines. Where it does not tile
            the grid, the blocks run on the padded grid (docs/architecture.md#padding-and-masking).
        batch: samples per forward pass.
        text_tokens: caption length S (text-conditional models).
        unpadded: count the blocks on the real tokens only, as if padding were free (the difference to the
            default count is the cost of padding, see `padding_macs`).

    Returns:
        The MacCount of one forward pass of `batch` samples.
    """
    D, L, p = config.dim, math.prod(grid), config.patch_size
    if config.arch == "ptdit":
        window = tuple(window or config.window_size)
        block_tokens = L if unpadded else math.prod(padded_size(grid, window))
        proxies = real_proxies(grid, window, config.proxy_window)
        block_linear, block_attention = _ptdit_block(config, block_tokens, window, proxies, text_tokens)
    else:
        block_linear, block_attention = _global_block(config, grid, text_tokens)
    text = config.conditioning == "text"

    # Outside the blocks: patch embedding, timestep MLP, adaLN, captions, final layer.
    patch = L * D * config.in_channels * p * p
    timestep_in = TIMESTEP_FEATURES * D
    caption_in = text_tokens * config.context_dim * D if text else 0
    linear = {"patch_embed": patch, "timestep": timestep_in + D * D}
    linear["adaln"] = D * 2 * D if config.arch == "dit" else D * 6 * D  # DiT: final adaLN; else adaLN-single
    if text:
        linear["caption_projection"] = caption_in + text_tokens * D * D
    linear["final_layer"] = L * D * p * p * config.out_channels
    attention: dict[str, int] = {}
    for name, macs in block_linear.items():
        linear[name] = linear.get(name, 0) + config.depth * macs
    for name, macs in block_attention.items():
        attention[name] = config.depth * macs
    return MacCount(linear, attention, patch + timestep_in + caption_in).scaled(batch)


def padding_macs(config: ModelConfig, grid: Size3, *, window: Size3 | None = None, **kwargs: int) -> int:
    """Forward MACs spent on padding: the count on the padded grid minus the count on the real tokens alone
    (0 where the window tiles the grid, and for the global-attention baselines)."""
    padded = analytic_macs(config, grid, window=window, **kwargs).forward
    return padded - analytic_macs(config, grid, window=window, unpadded=True, **kwargs).forward


def attention_cost_ratio(window: Size3, tokens: int) -> float:
    """Eq. 4: attention-matrix cost of one PT-Block relative to full self-attention over `tokens` tokens.

    Computed from the same per-branch functions as `analytic_macs` (width cancels): proxy self-attention
    2 (N/p)^2 D, visual cross-attention 2 N^2 D / p, window + shifted window 4 p N D, over 2 N^2 D;
    equals 1/p^2 + 1/p + 2p/N.
    """
    p = math.prod(window)
    if tokens % p:
        raise ValueError(f"{tokens} tokens are not a multiple of the window's {p} tokens")
    proxies = tokens // p
    ptdit = (
        attention_matmul_macs(proxies, proxies, 1)
        + attention_matmul_macs(tokens, proxies, 1)
        + 2 * proxies * attention_matmul_macs(p, p, 1)
    )
    return ptdit / attention_matmul_macs(tokens, tokens, 1)


def eq4_rows() -> list[dict]:
    """The paper's Eq. 4 table recomputed: resolution, window, N, p, ratio (code), closed form, printed."""
    rows = []
    for resolution, window, printed in PAPER_EQ4:
        N, p = math.prod(token_grid(resolution)), math.prod(window)
        rows.append(
            {
                "resolution": resolution,
                "window": window,
                "tokens": N,
                "p": p,
                "ratio": attention_cost_ratio(window, N),
                "closed_form": 1 / p**2 + 1 / p + 2 * p / N,
                "paper": printed,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Counter-based count (torch FlopCounterMode)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountedMacs:
    """MACs seen by FlopCounterMode (its FLOPs / 2).

    Attributes:
        total: every counted op.
        attention_all: attention matmuls (QK^T and AV) of every attention, text cross-attention included.
        text_attention: those inside text cross-attention (modules named `attn2`, as in PT-DiT, PixArt-alpha and
            diffusers); None for counts that include a backward pass, see `count_macs`.
    """

    total: int
    attention_all: int
    text_attention: int | None

    @property
    def attention(self) -> int | None:
        """Attention matmuls of every attention except text cross-attention (None when the split is unknown)."""
        return None if self.text_attention is None else self.attention_all - self.text_attention

    def combine(self, other: CountedMacs, a: int, b: int) -> CountedMacs:
        """a * self + b * other, field by field."""
        text = None
        if self.text_attention is not None and other.text_attention is not None:
            text = a * self.text_attention + b * other.text_attention
        return CountedMacs(a * self.total + b * other.total, a * self.attention_all + b * other.attention_all, text)


def register_cpu_sdpa_flops() -> None:
    """Registers FLOP formulas for the CPU flash SDPA kernel, which FlopCounterMode otherwise counts as 0.

    Forward counts 4 B N L S K (exact). The backward formula is torch's generic SDPA backward count, which
    includes the flash kernel's recomputation (3.5x forward in total); count backward with the MATH backend.
    """
    from torch.utils import flop_counter

    aten = torch.ops.aten
    forward_op = aten._scaled_dot_product_flash_attention_for_cpu
    backward_op = aten._scaled_dot_product_flash_attention_for_cpu_backward
    if forward_op not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(forward_op)
        def _forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    if backward_op not in flop_counter.flop_registry:

        @flop_counter.register_flop_formula(backward_op)
        def _backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _is_attention_op(op: object) -> bool:
    """Attention matmuls under the MATH backends are batched matmuls; every linear is an mm / addmm."""
    name = str(op)
    return name.startswith(("aten.bmm", "aten.baddbmm", "aten._scaled_dot_product"))


def count_macs(run: Callable[[], None], *, split_text: bool = True) -> CountedMacs:
    """Runs `run()` under FlopCounterMode with the MATH attention backends and returns its MACs.

    `run` performs a forward (and, to count it, a backward) pass. With `split_text`, attention matmuls inside a
    module whose name ends in `attn2` are reported as text cross-attention. Use it for forward passes only: the
    counter's module tracker leaves a module "entered" in backward until every input gradient is ready, and the
    projected captions feed every block's `attn2`, so later backward ops would be attributed to it.

    Caveat: the MATH path computes attention with einsum, which turns a contraction over a length-1 axis (one
    proxy token, one-token windows) into elementwise ops the counter does not see; such degenerate layouts
    are slightly under-counted.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from ptdit.attention.backends import AttentionBackend, use_attention_backend

    register_cpu_sdpa_flops()
    counter = FlopCounterMode(display=False)
    with use_attention_backend(AttentionBackend.MATH), sdpa_kernel(SDPBackend.MATH), counter:
        run()
    counts = counter.get_flop_counts()
    attention = sum(v for op, v in counts.get("Global", {}).items() if _is_attention_op(op))
    text = sum(
        v
        for module, ops in counts.items()
        if module.rsplit(".", 1)[-1] == "attn2"
        for op, v in ops.items()
        if _is_attention_op(op)
    )
    # FlopCounterMode counts 2 FLOPs per MAC for every matmul-like op.
    return CountedMacs(counter.get_total_flops() // 2, attention // 2, text // 2 if split_text else None)


@contextlib.contextmanager
def _label_lookup_without_checks(model: torch.nn.Module) -> Iterator[None]:
    """Label embedders validate the label range (a data-dependent check the meta device cannot run); a plain
    table lookup has no MACs, so counting replaces them by unchecked lookups."""
    from ptdit.nn.embeddings import LabelEmbedder

    embedders = [m for m in model.modules() if isinstance(m, LabelEmbedder)]
    for m in embedders:
        m.forward = lambda labels, force_drop_mask=None, _m=m: _m.embedding_table(labels.long())
    try:
        yield
    finally:
        for m in embedders:
            del m.forward


def _count_model(
    config: ModelConfig, grid: Size3, window: Size3 | None, batch: int, text_tokens: int, backward: bool
) -> CountedMacs:
    from ptdit.models.registry import build_model

    model = build_model(config, device="meta")
    nf, ny, nx = grid
    p = config.patch_size
    x = torch.empty(batch, config.in_channels, nf, ny * p, nx * p, device="meta")
    t = torch.empty(batch, device="meta")
    kwargs: dict = {}
    if config.arch == "ptdit":
        kwargs["window_size"] = tuple(window or config.window_size)
    if config.conditioning == "text":
        kwargs["context"] = torch.empty(batch, text_tokens, config.context_dim, device="meta")
    elif config.arch == "dit" or config.conditioning == "class":
        kwargs["class_labels"] = torch.zeros(batch, dtype=torch.long, device="meta")

    def run() -> None:
        with torch.set_grad_enabled(backward):
            out = model(x, t, **kwargs)
            if backward:
                out.sum().backward()

    with _label_lookup_without_checks(model):
        return count_macs(run, split_text=not backward)


def counted_macs(
    config: ModelConfig,
    grid: Size3,
    *,
    window: Size3 | None = None,
    batch: int = 1,
    text_tokens: int = TEXT_TOKENS,
    backward: bool = False,
) -> CountedMacs:
    """FlopCounterMode count of a forward (backward=True: forward + backward) pass, on the meta device.

    Blocks are identical, so for depth > 2 the count is extrapolated exactly from depth-1 and depth-2 networks:
    count(depth) = count(1) + (depth - 1) (count(2) - count(1)).
    """
    args = (grid, window, batch, text_tokens, backward)
    if config.depth <= 2:
        return _count_model(config, *args)
    one = _count_model(replace(config, depth=1), *args)
    two = _count_model(replace(config, depth=2), *args)
    return one.combine(two, 2 - config.depth, config.depth - 1)  # one + (depth - 1) (two - one)


# ----------------------------------------------------------------------------------------------------------------
# Model-level summaries (used by `ptdit flops`)
# ----------------------------------------------------------------------------------------------------------------

GIGA = 1e9


def model_window(config: ModelConfig, resolution: int, frames: int, window: Size3 | None) -> Size3 | None:
    """PT-DiT's window for a run: the explicit one, else the paper's for this resolution; None for baselines."""
    if not has_windows(config):
        return None
    return tuple(window) if window is not None else paper_window(resolution, frames, patch_size=config.patch_size)


def flops_summary(
    name: str,
    config: ModelConfig,
    resolution: int,
    frames: int = 1,
    *,
    window: Size3 | None = None,
    batch: int = 1,
    text_tokens: int = TEXT_TOKENS,
    verify: bool = True,
) -> dict:
    """One row of `ptdit flops`: analytic counts in both conventions, and (verify=True) the counter's count.

    Keys ending in `gmac` are MACs / 1e9 (the papers' GFLOPs), keys ending in `gflops` are 2 x MAC / 1e9.
    """
    grid = token_grid(resolution, frames, patch_size=config.patch_size)
    window = model_window(config, resolution, frames, window)
    macs = analytic_macs(config, grid, window=window, batch=batch, text_tokens=text_tokens)
    row = {
        "model": name,
        "resolution": resolution,
        "frames": frames,
        "latent_frames": grid[0],
        "tokens": math.prod(grid),
        "grid": list(grid),
        "window": list(window) if window is not None else None,
        **_padding_fields(config, grid, window, batch, text_tokens, macs.forward),
        "batch": batch,
        "text_tokens": text_tokens if "text_cross_attention" in macs.linear else 0,
        "width": config.dim,
        "depth": config.depth,
        "gmac": macs.forward / GIGA,
        "gmac_linear": macs.linear_total / GIGA,
        "gmac_attention": macs.attention_total / GIGA,
        "gmac_text_attention": macs.text_attention / GIGA,
        "gmac_fwd_bwd": macs.forward_backward() / GIGA,
        "gmac_fwd_bwd_linear": macs.forward_backward(attention=False) / GIGA,
        "gflops": 2 * macs.forward / GIGA,
        "gflops_linear": 2 * macs.linear_total / GIGA,
        "gflops_fwd_bwd": 2 * macs.forward_backward() / GIGA,
        "gflops_fwd_bwd_linear": 2 * macs.forward_backward(attention=False) / GIGA,
        "branches_gmac": {k: v / GIGA for k, v in macs.branches().items()},
    }
    if verify:
        kwargs = {"window": window, "batch": batch, "text_tokens": text_tokens}
        fwd = counted_macs(config, grid, **kwargs)
        fwd_bwd = counted_macs(config, grid, backward=True, **kwargs)
        row["counted_gmac"] = fwd.total / GIGA
        row["counted_gmac_attention"] = fwd.attention / GIGA
        row["counted_gmac_text_attention"] = fwd.text_attention / GIGA
        row["counted_gmac_fwd_bwd"] = fwd_bwd.total / GIGA
        row["counted_rel_diff"] = max(
            abs(fwd.total - macs.forward) / macs.forward,
            abs(fwd_bwd.total - macs.forward_backward()) / macs.forward_backward(),
        )
    return row


def _padding_fields(
    config: ModelConfig, grid: Size3, window: Size3 | None, batch: int, text_tokens: int, forward: int
) -> dict:
    """The padded grid, its padding tokens and the forward MACs they cost (docs/architecture.md#padding-and-masking)."""
    padded = padded_size(grid, window) if window is not None else grid
    extra = padding_macs(config, grid, window=window, batch=batch, text_tokens=text_tokens) if window else 0
    return {
        "padded_grid": list(padded),
        "padding_tokens": math.prod(padded) - math.prod(grid),
        "gmac_padding": extra / GIGA,
        "padding_share": extra / forward,
    }


def crossover_resolution(
    ptdit: PTDiTConfig,
    baseline: ModelConfig,
    *,
    frames: int = 1,
    text_tokens: int = TEXT_TOKENS,
    resolutions: range = range(128, 8192 + 1, 128),
) -> int | None:
    """Smallest resolution (paper windows) from which PT-DiT needs fewer forward MACs than `baseline` rebuilt
    at PT-DiT's width, heads and depth (equal width); None if it never does in `resolutions`."""
    baseline = replace(baseline, dim=ptdit.dim, num_heads=ptdit.num_heads, depth=ptdit.depth)
    for resolution in resolutions:
        grid = token_grid(resolution, frames, patch_size=ptdit.patch_size)
        window = paper_window(resolution, frames, patch_size=ptdit.patch_size)  # padded where it does not tile
        ours = analytic_macs(ptdit, grid, window=window, text_tokens=text_tokens).forward
        theirs = analytic_macs(
            baseline, token_grid(resolution, frames, patch_size=baseline.patch_size), text_tokens=text_tokens
        ).forward
        if ours < theirs:
            return resolution
    return None
