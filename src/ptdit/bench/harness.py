"""Side-by-side latency benchmarks: PT-DiT against DiT, PixArt-alpha and diffusers' PixArtTransformer2DModel.

Each run builds one network at a given width / depth, feeds it random latents (and 120 random caption tokens
by default, unpadded, no mask), and measures:
* forward latency (no_grad) and training-step latency (forward + MSE loss + backward; the optimizer
  update is excluded since it depends only on the parameter count): every model of a size is built and warmed
  up (max(1, `warmup`) untimed calls), then all are timed in `repeats` interleaved rounds (forward A, B, C, the
  reference matmul, training step A, B, C; again), so a drift of the machine's load hits every model alike;
  median, min, max and quartiles are reported;
* the machine's own matmul rate in the same rounds: a square matmul in the run's dtype whose side is the cube
  root of the largest model GEMM (the FFN's tokens x width x 4 width, within [128, 4096]); each model's
  achieved GFLOP/s over it is its share of the matmul rate;
* peak memory: CUDA `max_memory_allocated`; on CPU the peak resident-set growth of the process over the
  model's build and warm-up (Linux VmHWM after resetting it through /proc/self/clear_refs), weights included;
  None if unavailable;
* forward MACs (ptdit models: `analytic_macs`; diffusers: FlopCounterMode on the meta device).

Derived figures (`add_ratios`), against the first model of a run:
* achieved GFLOP/s = 2 x MAC / time (hardware convention);
* time ratio t / t_first and FLOP ratio f / f_first;
* realised speedup = (t / t_first) / (f / f_first). With PT-DiT first and a baseline in the row this is
  (t_baseline / t_ptdit) / (flops_baseline / flops_ptdit): 1.0 means PT-DiT's FLOP saving is fully turned into
  time, below 1 that part of it is lost to lower hardware efficiency.

Shape legend: B batch, C latent channels, F frames, H/W latent height/width, S text tokens, E caption channels,
M windows, W tokens per window, D width.
"""

from __future__ import annotations

import gc
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ptdit.allocator import allocator_setting
from ptdit.bench.timing import PeakMemory, interleaved_ms, matmul_probe, median_ms, spread
from ptdit.config import ModelConfig, replace
from ptdit.eval.flops import (
    GIGA,
    TEXT_TOKENS,
    analytic_macs,
    count_macs,
    model_window,
    token_grid,
)
from ptdit.optional import require
from ptdit.precision import DTYPES

Size3 = tuple[int, int, int]

DIFFUSERS_PIXART = "diffusers:PixArtTransformer2DModel"


@dataclass(frozen=True)
class BenchSettings:
    """What every model of one benchmark run shares.

    Attributes:
        resolution: image side in pixels (latents are 8x smaller).
        frames: video frames (1 = image; latent frames by docs/decisions.md#latent-frame-rule).
        depth / width / heads: overrides of the presets (None = the preset's); diffusers' model takes them from
            the first ptdit model of the run.
        window: PT-DiT window; None = the paper's for the resolution.
    """

    resolution: int
    frames: int = 1
    depth: int | None = None
    width: int | None = None
    heads: int | None = None
    window: Size3 | None = None
    batch: int = 1
    text_tokens: int = TEXT_TOKENS
    repeats: int = 3
    warmup: int = 1
    forward_only: bool = False
    device: str = "cpu"
    dtype: str = "fp32"

    def validate(self) -> None:
        """Raises ValueError naming the offending setting."""
        for name in ("resolution", "frames", "batch", "text_tokens", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("depth", "width", "heads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                "device 'cuda' needs a CUDA build of torch and a visible GPU (torch.cuda.is_available() is False); "
                "use --device cpu"
            )


# ----------------------------------------------------------------------------------------------------------------
# Models and their inputs
# ----------------------------------------------------------------------------------------------------------------


def bench_config(name: str, settings: BenchSettings) -> ModelConfig:
    """The preset `name` with the run's depth / width / heads overrides applied."""
    from ptdit.presets.models import get_preset

    config = get_preset(name)
    overrides: dict[str, int] = {}
    if settings.depth is not None:
        overrides["depth"] = settings.depth
    if settings.width is not None:
        heads = settings.heads or max(1, round(settings.width / config.head_dim))
        overrides.update(dim=settings.width, num_heads=heads)
    elif settings.heads is not None:
        overrides["num_heads"] = settings.heads
    return replace(config, **overrides) if overrides else config


@dataclass
class Runner:
    """A built network with closures for one forward pass and one training step, and its MAC counts."""

    name: str
    model: nn.Module
    forward: Callable[[], torch.Tensor]
    gmac: float
    gmac_fwd_bwd: float
    tokens: int
    window: Size3 | None
    width: int
    depth: int

    def train_step(self) -> None:
        """Forward + MSE loss on the predicted channels + backward (no optimizer update)."""
        self.model.zero_grad(set_to_none=True)
        out = self.forward()
        pred = out[:, : out.shape[1] // 2].float()
        torch.nn.functional.mse_loss(pred, torch.zeros_like(pred)).backward()


def _ptdit_runner(name: str, settings: BenchSettings) -> Runner:
    """PT-DiT, DiT or PixArt-alpha from ptdit's presets."""
    from ptdit.models.registry import build_model

    config = bench_config(name, settings)
    device, dtype = torch.device(settings.device), DTYPES[settings.dtype]
    grid = token_grid(settings.resolution, settings.frames, patch_size=config.patch_size)
    window = model_window(config, settings.resolution, settings.frames, settings.window)
    model = build_model(config, device=device, dtype=dtype)
    B, p = settings.batch, config.patch_size
    x = torch.randn(B, config.in_channels, grid[0], grid[1] * p, grid[2] * p, device=device, dtype=dtype)
    t = torch.rand(B, device=device) * 1000
    kwargs: dict[str, Any] = {}
    if window is not None:
        kwargs["window_size"] = window
    if config.conditioning == "text":
        kwargs["context"] = torch.randn(B, settings.text_tokens, config.context_dim, device=device, dtype=dtype)
    elif config.arch == "dit" or config.conditioning == "class":
        kwargs["class_labels"] = torch.randint(0, config.num_classes, (B,), device=device)
    macs = analytic_macs(config, grid, window=window, batch=B, text_tokens=settings.text_tokens)
    return Runner(
        name,
        model,
        lambda: model(x, t, **kwargs),
        macs.forward / GIGA,
        macs.forward_backward() / GIGA,
        math.prod(grid),
        window,
        config.dim,
        config.depth,
    )


def _diffusers_class() -> type[nn.Module]:
    return require("diffusers", "hub", purpose=DIFFUSERS_PIXART).PixArtTransformer2DModel


def _diffusers_pixart(config: ModelConfig, sample_size: int, dtype: torch.dtype) -> nn.Module:
    """diffusers' PixArtTransformer2DModel at the width / depth of `config` (T5 captions, no size conditions)."""
    model = _diffusers_class()(
        num_attention_heads=config.num_heads,
        attention_head_dim=config.head_dim,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        num_layers=config.depth,
        cross_attention_dim=config.dim,
        caption_channels=getattr(config, "context_dim", 4096),
        sample_size=sample_size,
        patch_size=config.patch_size,
        use_additional_conditions=False,  # PixArt's resolution / aspect embeddings (1024 px model only)
    )
    # diffusers warns about casting with .to(); harmless here (no fp32-only modules), so only cast when needed.
    return model if dtype == torch.float32 else model.to(dtype)


def _diffusers_runner(settings: BenchSettings, reference: ModelConfig) -> Runner:
    if settings.frames != 1:
        raise ValueError(f"{DIFFUSERS_PIXART} is an image model; drop it for --frames {settings.frames}")
    device, dtype = torch.device(settings.device), DTYPES[settings.dtype]
    grid = token_grid(settings.resolution, patch_size=reference.patch_size)
    latent = grid[1] * reference.patch_size
    B, S = settings.batch, settings.text_tokens
    E = getattr(reference, "context_dim", 4096)

    def inputs(dev: torch.device | str) -> dict[str, Any]:
        return {
            "hidden_states": torch.randn(B, reference.in_channels, latent, latent, device=dev, dtype=dtype),
            "encoder_hidden_states": torch.randn(B, S, E, device=dev, dtype=dtype),
            "timestep": torch.rand(B, device=dev) * 1000,
            "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
            "return_dict": False,
        }

    # Its MACs from torch's FLOP counter on the meta device (no memory, no time).
    with torch.device("meta"):
        meta_model = _diffusers_pixart(reference, latent, dtype)
    meta_inputs = inputs("meta")
    fwd = count_macs(lambda: meta_model(**meta_inputs))
    fwd_bwd = count_macs(lambda: meta_model(**meta_inputs)[0].sum().backward(), split_text=False)

    with torch.device(device):
        model = _diffusers_pixart(reference, latent, dtype)
    real = inputs(device)
    return Runner(
        DIFFUSERS_PIXART,
        model,
        lambda: model(**real)[0][:, :, None],  # (B, C, H, W) -> (B, C, 1, H, W) like ptdit's models
        fwd.total / GIGA,
        fwd_bwd.total / GIGA,
        math.prod(grid),
        None,
        reference.dim,
        reference.depth,
    )


def reference_config(names: Sequence[str], settings: BenchSettings) -> ModelConfig:
    """Width / heads / depth for diffusers' model: the first ptdit model of the run (else PixArt-alpha-XL/2)."""
    ours = [n for n in names if n != DIFFUSERS_PIXART]
    return bench_config(ours[0] if ours else "PixArt-alpha-XL/2", settings)


def build_runner(name: str, settings: BenchSettings, reference: ModelConfig) -> Runner:
    if name == DIFFUSERS_PIXART:
        return _diffusers_runner(settings, reference)
    return _ptdit_runner(name, settings)


# ----------------------------------------------------------------------------------------------------------------
# Timing and memory
# ----------------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------------


def matmul_size(runners: Sequence[Runner], batch: int) -> int:
    """Side of the reference matmul: the cube root of the largest model GEMM (tokens x width x 4 width, the FFN),
    rounded to 64 and kept within [128, 4096], so tiny runs stay fast and full-size runs measure a large GEMM."""
    gemm = max(batch * r.tokens * r.width * 4 * r.width for r in runners)
    return int(min(max(round(gemm ** (1 / 3) / 64) * 64, 128), 4096))


def _warm_up(runner: Runner, settings: BenchSettings) -> None:
    """max(1, warmup) untimed forward passes (and training steps) of a built runner."""
    for _ in range(max(settings.warmup, 1)):
        _forward(runner)()
        if not settings.forward_only:
            _train(runner)()


def _forward(runner: Runner) -> Callable[[], Any]:
    def call() -> None:
        runner.model.eval()
        # no_grad, not inference_mode: layouts cache masks and indices, and inference tensors in those caches would
        # break a later training step in the same process ("Inference tensors cannot be saved for backward").
        with torch.no_grad():
            runner.forward()

    return call


def _train(runner: Runner) -> Callable[[], Any]:
    def call() -> None:
        runner.model.train()
        runner.train_step()

    return call


def build_and_measure(
    names: Sequence[str],
    settings: BenchSettings,
    reference: ModelConfig,
    announce: Callable[[str, int], None] = lambda name, resolution: None,
) -> tuple[list[Runner], list[float | None]]:
    """Builds each model in turn and measures its peak memory over the build and its warm-up calls (the
    first of which is always run); returns (runners, peaks in MiB)."""
    runners, peaks = [], []
    for name in names:
        announce(name, settings.resolution)
        torch.manual_seed(0)
        if name == DIFFUSERS_PIXART:
            _diffusers_class()  # import diffusers before measuring memory: its modules are not the model's memory
        memory = PeakMemory(settings.device)
        memory.start()  # before the build, so the weights count
        runner = build_runner(name, settings, reference)
        _warm_up(runner, settings)
        peaks.append(memory.stop())
        runners.append(runner)
    return runners, peaks


def bench_resolution(
    names: Sequence[str],
    settings: BenchSettings,
    reference: ModelConfig,
    announce: Callable[[str, int], None] = lambda name, resolution: None,
) -> list[dict[str, Any]]:
    """Every model at one size: built and warmed up one after the other, then timed in interleaved rounds
    (forward A, B, C, the reference matmul, then training step A, B, C; repeated), one row per model."""
    runners, peaks = build_and_measure(names, settings, reference, announce)
    size = matmul_size(runners, settings.batch)
    matmul, matmul_flops = matmul_probe(size, DTYPES[settings.dtype], settings.device)
    matmul()  # its warm-up; the models had theirs in build_and_measure
    calls = [_forward(r) for r in runners] + [matmul]
    if not settings.forward_only:
        calls += [_train(r) for r in runners]
    times = interleaved_ms(calls, repeats=settings.repeats, warmup=0, device=settings.device)
    n = len(runners)
    mm = spread(times[n])
    rate = matmul_flops / (mm["median"] / 1000) / 1e9
    rows = []
    for i, (runner, peak) in enumerate(zip(runners, peaks, strict=True)):
        fwd = spread(times[i])
        train = None if settings.forward_only else spread(times[n + 1 + i])
        rows.append(_row(runner, settings, peak, fwd, train, {"size": size, "gflops_per_s": rate, "ms": mm}))
    del runners, calls
    gc.collect()
    return rows


def _row(
    runner: Runner,
    settings: BenchSettings,
    peak: float | None,
    fwd: dict[str, float],
    train: dict[str, float] | None,
    matmul: dict[str, Any],
) -> dict[str, Any]:
    forward_ms, train_ms = fwd["median"], train["median"] if train else None
    forward_rate = 2 * runner.gmac / (forward_ms / 1000)
    train_rate = 2 * runner.gmac_fwd_bwd / (train_ms / 1000) if train_ms else None
    return {
        "model": runner.name,
        "resolution": settings.resolution,
        "frames": settings.frames,
        "tokens": runner.tokens,
        "window": list(runner.window) if runner.window else None,
        "width": runner.width,
        "depth": runner.depth,
        "batch": settings.batch,
        "text_tokens": settings.text_tokens,
        "device": settings.device,
        "dtype": settings.dtype,
        "threads": torch.get_num_threads(),
        "cpu_allocator": allocator_setting(),
        "repeats": settings.repeats,
        "warmup": max(settings.warmup, 1),
        "order": "interleaved",
        "forward_ms": forward_ms,
        "forward_ms_spread": fwd,
        "train_step_ms": train_ms,
        "train_step_ms_spread": train,
        "peak_memory_mb": peak,
        "gmac": runner.gmac,
        "gmac_fwd_bwd": runner.gmac_fwd_bwd,
        "forward_gflops_per_s": forward_rate,
        "train_gflops_per_s": train_rate,
        "matmul_size": matmul["size"],
        "matmul_gflops_per_s": matmul["gflops_per_s"],
        "matmul_ms_spread": matmul["ms"],
        "forward_share_of_matmul": forward_rate / matmul["gflops_per_s"],
        "train_share_of_matmul": train_rate / matmul["gflops_per_s"] if train_rate else None,
        "forward_samples_per_s": settings.batch / (forward_ms / 1000),
        "train_samples_per_s": settings.batch / (train_ms / 1000) if train_ms else None,
    }


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds time / FLOP ratios and the realised speedup against the first row of each (resolution, frames)."""
    firsts: dict[tuple[int, int], dict[str, Any]] = {}
    for row in rows:
        first = firsts.setdefault((row["resolution"], row["frames"]), row)
        row["ratio_to"] = first["model"]
        row["forward_time_ratio"] = row["forward_ms"] / first["forward_ms"]
        row["flop_ratio"] = row["gmac"] / first["gmac"]
        row["forward_realised_speedup"] = row["forward_time_ratio"] / row["flop_ratio"]
        if row["train_step_ms"] and first["train_step_ms"]:
            row["train_time_ratio"] = row["train_step_ms"] / first["train_step_ms"]
            row["train_flop_ratio"] = row["gmac_fwd_bwd"] / first["gmac_fwd_bwd"]
            row["train_realised_speedup"] = row["train_time_ratio"] / row["train_flop_ratio"]
        else:
            row["train_time_ratio"] = row["train_flop_ratio"] = row["train_realised_speedup"] = None
    return rows


def run_benchmarks(
    names: Sequence[str], resolutions: Sequence[int], settings: BenchSettings, *, progress: bool | None = None
) -> list[dict[str, Any]]:
    """Benchmarks every model at every resolution (same settings), rows in (resolution, model) order; at each
    resolution the models are timed in interleaved rounds beside a reference matmul (`bench_resolution`).

    Args:
        names: preset names and/or `DIFFUSERS_PIXART`; ratios are taken against the first.
        resolutions: image sides in pixels.
        settings: shared settings (its `resolution` field is replaced by each of `resolutions`).
        progress: show a tqdm bar; None = a bar on a terminal and one log line per run in a log or pipe.
    """
    from tqdm import tqdm

    settings.validate()
    if not names:
        raise ValueError("give at least one model")
    check_jobs(names, resolutions, settings)
    rows = []
    show = sys.stderr.isatty() if progress is None else progress
    count, total = iter(range(1, len(names) * len(resolutions) + 1)), len(names) * len(resolutions)

    def announce(name: str, resolution: int) -> None:
        if progress is None and not show:  # a log or pipe: one line per model, so long runs show they are alive
            print(f"bench {next(count)}/{total}: {name} at {resolution} px", file=sys.stderr, flush=True)

    for resolution in tqdm(resolutions, desc="bench", unit="size", disable=not show):
        run_settings = replace_settings(settings, resolution=resolution)
        rows.extend(bench_resolution(names, run_settings, reference_config(names, run_settings), announce))
    return add_ratios(rows)


def check_jobs(names: Sequence[str], resolutions: Sequence[int], settings: BenchSettings) -> None:
    """Checks every (model, resolution) before the first, possibly long, run: sizes, windows, frames."""
    if DIFFUSERS_PIXART in names and settings.frames != 1:
        raise ValueError(f"{DIFFUSERS_PIXART} is an image model; drop it for --frames {settings.frames}")
    for resolution in resolutions:
        run_settings = replace_settings(settings, resolution=resolution)
        run_settings.validate()
        for name in names:
            config = (
                reference_config(names, run_settings) if name == DIFFUSERS_PIXART else bench_config(name, run_settings)
            )
            token_grid(resolution, run_settings.frames, patch_size=config.patch_size)
            if name != DIFFUSERS_PIXART:
                model_window(config, resolution, run_settings.frames, run_settings.window)


def replace_settings(settings: BenchSettings, **changes: Any) -> BenchSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def profile_forward(name: str, settings: BenchSettings, *, top: int = 15) -> dict[str, Any]:
    """Where one forward pass (no_grad) of `name` spends its time: torch's profiler over `settings.repeats`
    calls after the warm-up, operators sorted by self CPU time (self = without the operators they call)."""
    from torch.profiler import ProfilerActivity, profile

    runners, _ = build_and_measure([name], replace_settings(settings, forward_only=True), bench_config(name, settings))
    call = _forward(runners[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(settings.repeats):
            call()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    ops = [
        {
            "op": e.key,
            "calls": e.count // settings.repeats,
            "self_ms": e.self_cpu_time_total / 1000 / settings.repeats,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:top]
    ]
    return {
        "model": name,
        "resolution": settings.resolution,
        "frames": settings.frames,
        "dtype": settings.dtype,
        "width": runners[0].width,
        "depth": runners[0].depth,
        "forward_ms": total / 1000 / settings.repeats,
        "ops": ops,
    }


# ----------------------------------------------------------------------------------------------------------------
# Window vs shifted-window attention (the fast masked path)
# ----------------------------------------------------------------------------------------------------------------


def window_attention_report(settings: BenchSettings, *, dim: int, num_heads: int) -> dict[str, Any]:
    """Times one attention module inside windows, in shifted windows (split fast path and all-masked reference
    path) and the roll that re-windows the grid, on random (B, M, W, D) tokens; forward, no_grad."""
    from ptdit.attention.modules import Attention, masked_window_attention
    from ptdit.attention.window import WindowLayout
    from ptdit.recipe.windows import paper_window

    device, dtype = torch.device(settings.device), DTYPES[settings.dtype]
    grid = token_grid(settings.resolution, settings.frames)
    window = tuple(settings.window) if settings.window else paper_window(grid)
    layout = WindowLayout.create(grid, window)
    attn = Attention(dim, num_heads).to(device=device, dtype=dtype).eval()
    x_BMWD = torch.randn(settings.batch, layout.num_windows, layout.window_tokens, dim, device=device, dtype=dtype)
    mask_MWW, split = layout.shift_mask(device), layout.shift_split(device)
    timing = {"repeats": settings.repeats, "warmup": settings.warmup, "device": settings.device}
    cases: dict[str, Callable[[], Any]] = {
        "window_ms": lambda: attn(x_BMWD),
        "shifted_split_ms": lambda: masked_window_attention(attn, x_BMWD, mask_MWW, split),
        "shifted_all_masked_ms": lambda: masked_window_attention(attn, x_BMWD, mask_MWW, None),
        "roll_ms": lambda: layout.roll(x_BMWD),
    }
    with torch.no_grad():  # not inference_mode: see bench_one
        result = {key: median_ms(fn, **timing) for key, fn in cases.items()}
    return {
        "resolution": settings.resolution,
        "frames": settings.frames,
        "tokens": layout.num_tokens,
        "window": list(window),
        "masked_windows": int(split[1].numel()),
        "windows": layout.num_windows,
        "width": dim,
        "heads": num_heads,
        "device": settings.device,
        "dtype": settings.dtype,
        **result,
    }
