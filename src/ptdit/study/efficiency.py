"""`ptdit study efficiency`: PT-DiT against DiT and PixArt-alpha at equal width and depth (docs/study.md#efficiency).

At two token counts (one below the crossover where PT-DiT's block costs more than a global-attention block, one
where attention dominates), four models train on the same one-object shapes images with the same steps and seeds
and are evaluated along the way: quality (shapes-FD, oracle) against training MACs and wall-clock. Two pairs
are compared, each under the conditioning its baseline was built for:
- text: PT-DiT against PixArt-alpha, on the captions;
- class: PT-DiT-Class (the paper's S-Class ablation model) against DiT, on (colour, shape) class labels.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.io import atomic_file
from ptdit.study.variants import Profile

QUALITY_MODELS = ("ptdit", "pixart", "ptdit-class", "dit")  # every model is trained and evaluated
# Baseline -> (PT-DiT model, baseline): each baseline is compared with the PT-DiT of its own conditioning.
PAIRS = {"pixart": ("ptdit", "pixart"), "dit": ("ptdit-class", "dit")}


@dataclass(frozen=True)
class Scale:
    """One token count: pixel size, patch (tokens = (size / patch)^2), the model size and steps (a Profile)."""

    name: str
    size: int
    patch: int
    profile: Profile

    @property
    def grid(self) -> tuple[int, int, int]:
        return (1, self.size // self.patch, self.size // self.patch)


def _profile(dim: int, depth: int, heads: int, steps: int, every: int, **kw: Any) -> Profile:
    fields = {
        "seeds": (0,),
        "eval_prompts": 21,
        "fd_samples": 96,
        "fd_real": 2000,
        "sampling_steps": 20,
        "batch_size": 32,
        "warmup_steps": min(100, steps),
    } | kw
    return Profile(dim=dim, depth=depth, num_heads=heads, steps=steps, eval_every=every, **fields)


def efficiency_profile(
    name: str, *, quick: bool = False, steps: int | None = None, seeds: list[int] | None = None
) -> list[Scale]:
    """The scales of profile `name` ("cpu" or "gpu"); `quick` shrinks everything to check the plumbing."""
    if name not in ("cpu", "gpu"):
        raise ValueError(f"unknown efficiency profile {name!r}; choose 'cpu' or 'gpu'")
    if quick:
        tiny = {
            "eval_prompts": 7,
            "fd_samples": 8,
            "fd_real": 32,
            "sampling_steps": 2,
            "batch_size": 4,
            "device": "cuda" if name == "gpu" else "cpu",
        }
        scales = [
            Scale("256-tokens", 32, 2, _profile(32, 1, 2, 4, 2, **tiny)),
            Scale("1024-tokens", 64, 2, _profile(16, 1, 1, 4, 2, **tiny)),
        ]
    elif name == "cpu":  # about 35 minutes on an idle 2-core CPU (docs/study.md#time)
        scales = [
            Scale("256-tokens", 32, 2, _profile(64, 4, 4, 600, 100)),
            Scale("1024-tokens", 64, 2, _profile(32, 4, 2, 400, 50, batch_size=16)),
        ]
    else:  # a single large GPU
        gpu = {"device": "cuda", "batch_size": 64, "fd_samples": 1000, "fd_real": 5000, "eval_prompts": 0}
        scales = [
            Scale("256-tokens", 32, 2, _profile(256, 8, 4, 4000, 500, **gpu)),
            Scale("4096-tokens", 128, 2, _profile(128, 8, 4, 4000, 500, **gpu)),
        ]
    if steps is not None:
        scales = [
            _with(s, steps=steps, eval_every=max(1, steps // 4), warmup_steps=min(s.profile.warmup_steps, steps))
            for s in scales
        ]
    if seeds:
        scales = [_with(s, seeds=tuple(seeds)) for s in scales]
    return scales


def select_scales(scales: list[Scale], names: list[str]) -> list[Scale]:
    """The scales named (all when `names` is empty); ValueError naming an unknown one. Scales are independent, so
    they can run in separate processes with the same output folder, then once more together for the summary."""
    known = [s.name for s in scales]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown scale(s) {unknown}; this profile has {known}")
    return [s for s in scales if not names or s.name in names]


def _with(scale: Scale, **changes: Any) -> Scale:
    return dataclasses.replace(scale, profile=dataclasses.replace(scale.profile, **changes))


def scale_config(model: str, scale: Scale, seed: int) -> Any:
    """The TrainConfig of one model (`QUALITY_MODELS`) at one scale; PT-DiT has the paper's window for its grid."""
    from ptdit.recipe.windows import paper_window
    from ptdit.study.runs import model_fields, train_config

    if model not in QUALITY_MODELS:
        raise ValueError(f"unknown efficiency model {model!r}; choose from {list(QUALITY_MODELS)}")
    changes: dict[str, Any] = {}
    if model.startswith("ptdit"):
        changes["window_size"] = paper_window(scale.grid)
    if model == "ptdit-class":
        changes["conditioning"] = "class"
    if model == "dit":
        changes["input_size"] = scale.size
    arch = "ptdit" if model.startswith("ptdit") else model
    fields = model_fields(arch, scale.profile, patch_size=scale.patch, **changes)
    return train_config(fields, scale.profile, seed, size=scale.size)


def seconds_per_step(config: Any, scale: Scale, *, steps: int = 3) -> float:
    """Measured seconds of one training step (forward, backward, AdamW) on random data, after one warm-up step;
    the same harness for every architecture, so the ratios are fair."""
    import torch

    from ptdit.models.registry import build_model

    device = torch.device(scale.profile.device)
    model = build_model(config).to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    B = scale.profile.batch_size
    x = torch.randn(B, 3, 1, scale.size, scale.size, device=device)
    cond = _random_condition(config, B, device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = model(x, torch.rand(B, device=device) * 1000, **cond)[:, :3].square().mean()
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def _random_condition(config: Any, batch: int, device: Any) -> dict[str, Any]:
    import torch

    if config.conditioning == "text":
        return {"context": torch.randn(batch, 12, config.context_dim, device=device)}
    return {"class_labels": torch.zeros(batch, dtype=torch.long, device=device)}


def cost_rows(scale: Scale, cache: Path | None = None) -> dict[str, dict[str, Any]]:
    """Per model: parameters, analytic training MACs per step, measured seconds per step. Kept in `cache`
    (JSON) once measured, so that rerunning a finished study reports the same numbers."""
    from ptdit.eval.flops import analytic_macs
    from ptdit.models.registry import build_model, count_parameters

    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    rows = {}
    for model in QUALITY_MODELS:
        config = scale_config(model, scale, 0).model_config()
        macs = analytic_macs(config, scale.grid, batch=scale.profile.batch_size, text_tokens=12)
        rows[model] = {
            "parameters": count_parameters(build_model(config, device="meta"))["total"],
            "train_macs_per_step": macs.forward_backward(),
            "attention_share": (macs.attention_total + macs.text_attention) / macs.forward,
            "seconds_per_step": seconds_per_step(config, scale),
        }
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache) as tmp:
            Path(tmp).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def interpolate_x(points: list[dict[str, Any]], x_key: str, y_key: str, target: float) -> float | None:
    """The first x at which the curve's y reaches `target` (y lower is better), linearly interpolated."""
    for a, b in itertools.pairwise(points):
        if a[y_key] <= target:
            return float(a[x_key])
        if b[y_key] <= target:
            return float(np.interp(target, [b[y_key], a[y_key]], [b[x_key], a[x_key]]))
    return float(points[0][x_key]) if points and points[0][y_key] <= target else None


def interpolate_y(points: list[dict[str, Any]], x_key: str, y_key: str, x: float) -> float | None:
    """The curve's y at `x`, linearly interpolated; None before its first point (never extrapolated)."""
    if not points or x < points[0][x_key]:
        return None
    return float(np.interp(x, [p[x_key] for p in points], [p[y_key] for p in points]))


def compare(curves: dict[str, list[dict[str, Any]]], x_key: str, pair: tuple[str, str]) -> dict[str, Any]:
    """For a (PT-DiT model, baseline) pair: compute to reach a fixed shapes-FD (the best that both reach) and
    shapes-FD at a fixed compute budget (the smaller of the two totals), with the ratios PT-DiT / baseline."""
    pair_curves = {m: curves[m] for m in pair}
    target = max(min(p["shapes_fd"] for p in c) for c in pair_curves.values())
    budget = min(c[-1][x_key] for c in pair_curves.values())
    to_reach = {m: interpolate_x(c, x_key, "shapes_fd", target) for m, c in pair_curves.items()}
    at_budget = {m: interpolate_y(c, x_key, "shapes_fd", budget) for m, c in pair_curves.items()}
    ratio = lambda a, b: a / b if a is not None and b else None  # noqa: E731
    ours, base = pair
    return {
        "target_shapes_fd": target,
        "to_reach": to_reach,
        "budget": budget,
        "shapes_fd_at_budget": at_budget,
        "to_reach_ratio": ratio(to_reach[ours], to_reach[base]),
        "at_budget_ratio": ratio(at_budget[ours], at_budget[base]),
    }


def mean_curve(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pointwise mean over seeds of curves evaluated at the same steps."""
    keys = ("macs", "train_seconds", "shapes_fd", "adherence", "oracle")
    return [
        {"step": pts[0]["step"], **{k: float(np.mean([p[k] for p in pts])) for k in keys}}
        for pts in zip(*(r["curve"] for r in records), strict=True)
    ]


def run_scale(out: Path, scale: Scale, bar: Any) -> dict[str, Any]:
    from ptdit.study.runs import run_once

    curves, records = {}, {}
    for model in QUALITY_MODELS:
        records[model] = []
        for seed in scale.profile.seeds:
            bar.set_postfix_str(f"{scale.name} {model} seed {seed}")
            folder = out / "runs" / scale.name / model / f"seed-{seed}"
            records[model].append(run_once(folder, scale_config(model, scale, seed), scale.profile, curve=True))
            bar.update()
        curves[model] = mean_curve(records[model])
    cost = cost_rows(scale, out / "cost" / f"{scale.name}.json")
    by_macs = {base: compare(curves, "macs", pair) for base, pair in PAIRS.items()}
    by_seconds = {base: compare(curves, "train_seconds", pair) for base, pair in PAIRS.items()}
    return {
        "name": scale.name,
        "size": scale.size,
        "patch": scale.patch,
        "tokens": int(np.prod(scale.grid)),
        "profile": scale.profile.to_dict(),
        "curves": curves,
        "cost": cost,
        "by_macs": by_macs,
        "by_seconds": by_seconds,
        "runs": records,
        "ratios": ratios(cost, by_macs, by_seconds),
    }


def ratios(cost: dict[str, Any], by_macs: dict[str, Any], by_seconds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """PT-DiT / baseline for each pair: per-step cost, compute to reach a quality and quality at a budget."""
    out: dict[str, dict[str, Any]] = {}
    for base, (ours, _) in PAIRS.items():
        out[base] = {
            "macs_per_step": cost[ours]["train_macs_per_step"] / cost[base]["train_macs_per_step"],
            "seconds_per_step": cost[ours]["seconds_per_step"] / cost[base]["seconds_per_step"],
            "macs_to_reach": by_macs[base]["to_reach_ratio"],
            "fd_at_macs": by_macs[base]["at_budget_ratio"],
            "seconds_to_reach": by_seconds[base]["to_reach_ratio"],
            "fd_at_seconds": by_seconds[base]["at_budget_ratio"],
        }
    return out


def run_efficiency(out: Path, scales: list[Scale], *, progress: bool = True) -> dict[str, Any]:
    """Runs every scale (resumable per run), writes OUT/efficiency.json, plots and report.html."""
    from tqdm import tqdm

    from ptdit.study.report import write_efficiency_report

    total = sum(len(QUALITY_MODELS) * len(s.profile.seeds) for s in scales)
    with tqdm(total=total, desc="efficiency", unit="run", disable=not progress) as bar:
        results = [run_scale(out, scale, bar) for scale in scales]
    summary = {"study": "efficiency", "scales": results}
    write_efficiency_report(out, summary)
    return summary
