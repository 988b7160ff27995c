"""The released text-to-image pipeline at full size, with random weights of the released shapes: time per stage,
peak resident memory, and how close each stage comes to the machine's matmul rate.

Stages, each loaded, run and freed before the next (as `ptdit sample` does):
1. text: a T5-XXL-shaped encoder (24 layers, width 4096, the EasyAnimateV2 / T5 v1.1 XXL encoder) in float32
   encodes the prompt and the empty negative prompt (200 tokens each);
2. denoise: PT-DiT/XL with the released window (1, 8, 8) runs `steps` flow-Euler steps with classifier-free
   guidance (cond and uncond in one batch of 2) at `resolution`;
3. decode: the released CausalVAE decodes the latents (tiled, 512 px tiles, as the release).

The limit of a stage is its FLOPs (counted on the meta device with torch's FlopCounterMode, so exact for the
code that runs) divided by the matmul rate this machine reaches in the same run for the stage's dtype
(`matmul_rate`). The report gives the end-to-end time over the summed limits: 1.0 would mean every FLOP ran at
the speed of a large square matmul.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from ptdit.bench.timing import PeakMemory
from ptdit.precision import DTYPES

T5_XXL = {"vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64}


@dataclasses.dataclass(frozen=True)
class PipelineBenchSettings:
    """What to run. The defaults are the issue's full-size setting: 1024 px, 30 steps, CFG 4, bf16, one image."""

    resolution: int = 1024
    steps: int = 30
    cfg_scale: float = 4.0
    dtype: str = "bf16"  # network and VAE; the text encoder stays float32 as in the release
    text_tokens: int = 200
    model: str = "PT-DiT/XL"
    t5: dict[str, int] = dataclasses.field(default_factory=lambda: dict(T5_XXL))
    vae: dict[str, Any] | None = None  # CausalVAEConfig overrides (None: the released VAE)
    depth: int | None = None  # override the network's depth (quick runs)
    matmul_size: int = 2048

    def __post_init__(self) -> None:
        if self.resolution % 128:
            raise ValueError(f"resolution must be a multiple of 128 px for the released window, got {self.resolution}")
        if self.steps < 1 or self.text_tokens < 1:
            raise ValueError(f"steps and text_tokens must be >= 1, got {self.steps} and {self.text_tokens}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")


def matmul_rate(dtype: torch.dtype, size: int = 2048, repeats: int = 3) -> float:
    """FLOP/s of a (size x size) @ (size x size) matmul in `dtype` on this machine (best of `repeats`)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def count_flops(build: Callable[[], torch.nn.Module], run: Callable[[torch.nn.Module], Any]) -> int:
    """FLOPs of `run(module)` with the module and its inputs on the meta device (nothing is computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ptdit.attention.backends import AttentionBackend, use_attention_backend

    with torch.device("meta"):
        module = build()
    # The CPU flash-attention kernel has no FLOP formula; the reference (MATH) path counts attention exactly.
    with FlopCounterMode(display=False) as counter, use_attention_backend(AttentionBackend.MATH), torch.no_grad():
        run(module)
    return int(counter.get_total_flops())


def _randomize_(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Materialises a meta module in `dtype` with random weights of a sensible scale. The values only need to be
    finite and typical for timing, so one block of random numbers is tiled over each parameter: drawing fresh
    numbers for the 4.8 billion T5-XXL weights would take minutes on a small CPU."""
    module = module.to_empty(device="cpu").to(dtype)
    block = torch.randn(1 << 20, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.no_grad():
        for name, param in module.named_parameters():
            flat = param.view(-1)
            if param.ndim < 2:
                flat.fill_(1.0 if "norm" in name or "layer_norm" in name else 0.0)
                continue
            for start in range(0, flat.numel(), block.numel()):
                part = flat[start : start + block.numel()]
                part.copy_(block[: part.numel()])
            flat.mul_(1 / param.shape[-1] ** 0.5)
    return module.eval()


def build_t5(settings: PipelineBenchSettings) -> torch.nn.Module:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(**settings.t5, feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    with torch.device("meta"):
        return T5EncoderModel(config)


def build_network(settings: PipelineBenchSettings) -> torch.nn.Module:
    from ptdit.config import replace
    from ptdit.models.registry import build_model
    from ptdit.presets.models import get_preset

    config = replace(get_preset(settings.model), window_size=(1, 8, 8), reference_compat=True)
    if settings.depth is not None:
        config = replace(config, depth=settings.depth)
    return build_model(config, device="meta")


def build_vae(settings: PipelineBenchSettings) -> Any:
    from ptdit.encoders.causalvae.config import CausalVAEConfig
    from ptdit.encoders.causalvae.model import CausalVAEModel

    with torch.device("meta"):
        return CausalVAEModel(CausalVAEConfig(**(settings.vae or {})))


def run_pipeline_bench(settings: PipelineBenchSettings, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the three stages one after the other and returns the report (see the module docstring)."""
    dtype = DTYPES[settings.dtype]
    log(f"measuring this machine's matmul rate ({settings.matmul_size}^3, fp32 and {settings.dtype})")
    rates = {
        "fp32": matmul_rate(torch.float32, settings.matmul_size),
        settings.dtype: matmul_rate(dtype, settings.matmul_size),
    }
    stages = [_text_stage(settings, log), *_image_stages(settings, dtype, log)]
    for stage in stages:
        stage["matmul_gflops"] = rates[stage["dtype"]] / 1e9
        stage["limit_seconds"] = stage["flops"] / rates[stage["dtype"]]
        stage["share_of_matmul_rate"] = stage["limit_seconds"] / stage["seconds"]
    total = sum(s["seconds"] for s in stages)
    limit = sum(s["limit_seconds"] for s in stages)
    return {
        "settings": dataclasses.asdict(settings),
        "matmul_gflops": {k: v / 1e9 for k, v in rates.items()},
        "stages": stages,
        "total_seconds": total,
        "limit_seconds": limit,
        "time_over_limit": total / limit,
        # Each stage resets the kernel's peak counter, so the run's peak is the largest stage peak.
        "peak_rss_gib": max((s["peak_rss_gib"] or 0.0) for s in stages),
        "threads": torch.get_num_threads(),
    }


def _text_stage(settings: PipelineBenchSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """T5 in float32 encodes the prompt and the empty negative prompt, one call each (as the pipeline does)."""
    ids = torch.randint(0, settings.t5["vocab_size"], (1, settings.text_tokens))
    mask = torch.ones_like(ids)

    def run(t5: torch.nn.Module) -> list[torch.Tensor]:
        device = next(t5.parameters()).device
        # On the meta device the mask is left out: transformers inspects its values, and it changes no FLOP count.
        given = None if device.type == "meta" else mask
        return [t5(input_ids=ids.to(device), attention_mask=given).last_hidden_state for _ in range(2)]

    flops = count_flops(lambda: build_t5(settings), run)
    log(f"stage text: T5 encoder ({_billions(build_t5(settings))}B parameters, float32)")
    return _timed_stage("text", "fp32", flops, lambda: _randomize_(build_t5(settings), torch.float32), run)


def _image_stages(settings: PipelineBenchSettings, dtype: torch.dtype, log: Callable[[str], None]) -> list[dict]:
    """Denoising with the network, then decoding with the VAE (the VAE is built first: the pipeline's sizes
    come from it)."""
    from ptdit.config import PipelineConfig
    from ptdit.encoders.causalvae.adapter import CausalVAE
    from ptdit.sampling.pipeline import GenerationPipeline

    side = settings.resolution
    config = PipelineConfig(
        text_encoder="none", text_max_length=settings.text_tokens, vae="none", steps=settings.steps,
        cfg_scale=settings.cfg_scale, height=side, width=side, window_size=(1, 8, 8),
    )  # fmt: skip
    vae = CausalVAE(_randomize_(build_vae(settings), dtype))
    network_config = build_network(settings).config
    pipe = GenerationPipeline(None, config, vae, model_config=network_config)
    req = pipe.request()
    width = network_config.context_dim
    cond = {"context": torch.randn(1, settings.text_tokens, width), "context_mask": torch.ones(1, settings.text_tokens)}
    conditions = (cond, {k: v.clone() for k, v in cond.items()})
    latents: dict[str, torch.Tensor] = {}

    def denoise(model: torch.nn.Module) -> None:
        pipe.model = model
        latents["z"] = pipe.sample_latents(conditions=conditions, request=req, progress=True)
        pipe.model = None

    log(f"stage denoise: {settings.model} ({_billions(build_network(settings))}B parameters, {settings.dtype}), "
        f"{settings.steps} steps with CFG at {side} px")  # fmt: skip
    flops = settings.steps * _network_flops(settings, req)
    stages = [
        _timed_stage("denoise", settings.dtype, flops, lambda: _randomize_(build_network(settings), dtype), denoise)
    ]
    log(f"stage decode: CausalVAE ({_billions(vae.model)}B parameters, {settings.dtype}, tiling {vae.use_tiling})")
    z_meta = torch.empty(latents["z"].shape, device="meta", dtype=dtype)
    flops = count_flops(lambda: build_vae(settings), lambda m: CausalVAE(m).decode(z_meta))
    stages.append(_timed_stage("decode", settings.dtype, flops, lambda: vae, lambda v: pipe.decode(latents["z"], req)))
    return stages


def _network_flops(settings: PipelineBenchSettings, req: Any) -> int:
    """FLOPs of one guided network call (cond and uncond in one batch of 2)."""
    shape = (2, *req.latent_shape)
    tokens = settings.text_tokens

    def run(model: torch.nn.Module) -> None:
        x, t = torch.empty(shape, device="meta"), torch.empty(2, device="meta")
        context = torch.empty(2, tokens, model.config.context_dim, device="meta")
        model(x, t, context, None, window_size=(1, 8, 8))  # an all-valid mask: the same FLOPs

    return count_flops(lambda: build_network(settings), run)


def _timed_stage(
    name: str, dtype: str, flops: int, load: Callable[[], Any], run: Callable[[Any], Any]
) -> dict[str, Any]:
    """Loads, runs and frees one stage, measuring run time and the stage's peak resident memory."""
    from ptdit.bench.timing import status_kb
    from ptdit.sampling.pipeline import free_memory

    memory = PeakMemory("cpu")
    memory.start()
    baseline_kb = status_kb("VmRSS")
    start = time.perf_counter()
    component = load()
    loaded = time.perf_counter()
    with torch.no_grad():
        run(component)
    seconds = time.perf_counter() - loaded
    del component
    growth = memory.stop()
    free_memory()
    return {
        "stage": name, "dtype": dtype, "load_seconds": loaded - start, "seconds": seconds, "flops": flops,
        "peak_growth_gib": None if growth is None else growth / 1024,
        "peak_rss_gib": None if growth is None or baseline_kb is None else (baseline_kb / 1024 + growth) / 1024,
    }  # fmt: skip


def _billions(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e9:.2f}"


__all__ = [
    "PipelineBenchSettings",
    "build_network",
    "build_t5",
    "build_vae",
    "count_flops",
    "matmul_rate",
    "run_pipeline_bench",
]
