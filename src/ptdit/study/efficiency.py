"""`ptdit study efficiency`: PT-DiT against DiT and PixArt-alpha at equal width and depth (docs/study.md#efficiency).

At two token counts (one below the crossover where PT-DiT's block costs more than a global-attention block, one
where attention dominates), PT-DiT and PixArt-alpha (both text-conditional) train on the same shapes data with
the same steps and seeds and are evaluated along the way: quality (shapes-FD, oracle) against training MACs
and wall-clock. DiT is class-conditional and the shapes captions are not classes, so it enters with its cost
only (MACs per step and measured seconds per step), which is what "equal width and depth" compares.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.study.variants import Profile

QUALITY_MODELS = ("ptdit", "pixart")  # trained and evaluated
COST_MODELS = ("ptdit", "pixart", "dit")  # MACs and measured seconds per step


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


def _with(scale: Scale, **changes: Any) -> Scale:
    return dataclasses.replace(scale, profile=dataclasses.replace(scale.profile, **changes))


def scale_config(arch: str, scale: Scale, seed: int) -> Any:
    """The TrainConfig of one model at one scale (PT-DiT with the paper's window for its grid)."""
    from ptdit.recipe.windows import paper_window
    from ptdit.study.runs import model_fields, train_config

    changes = {"window_size": paper_window(scale.grid)} if arch == "ptdit" else {}
    if arch == "dit":
        changes = {"input_size": scale.size, "num_classes": 1}
    model = model_fields(arch, scale.profile, patch_size=scale.patch, **changes)
    if arch == "dit":  # cost only: never trained through the text pipeline
        return model
    return train_config(model, scale.profile, seed, size=scale.size)


def seconds_per_step(model_fields: dict[str, Any], scale: Scale, *, steps: int = 3) -> float:
    """Measured seconds of one training step (forward, backward, AdamW) on random data, after one warm-up step;
    the same harness for every architecture, so the ratios are fair."""
    import torch

    from ptdit.config import config_from_dict
    from ptdit.models.registry import build_model

    config = config_from_dict(model_fields)
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


def cost_rows(scale: Scale) -> dict[str, dict[str, Any]]:
    """Per model: parameters, analytic training MACs per step, measured seconds per step."""
    from ptdit.config import config_from_dict
    from ptdit.eval.flops import analytic_macs
    from ptdit.models.registry import build_model, count_parameters

    rows = {}
    for arch in COST_MODELS:
        cfg = scale_config(arch, scale, 0)
        fields = cfg if arch == "dit" else cfg.model
        config = config_from_dict(fields)
        macs = analytic_macs(config, scale.grid, batch=scale.profile.batch_size, text_tokens=12)
        rows[arch] = {
            "parameters": count_parameters(build_model(config, device="meta"))["total"],
            "train_macs_per_step": macs.forward_backward(),
            "attention_share": (macs.attention_total + macs.text_attention) / macs.forward,
            "seconds_per_step": seconds_per_step(fields, scale),
        }
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


def compare(curves: dict[str, list[dict[str, Any]]], x_key: str) -> dict[str, Any]:
    """Compute to reach a fixed shapes-FD (the best that every model reaches) and shapes-FD at a fixed compute
    budget (the smallest of the models' totals), with the ratios PT-DiT / PixArt-alpha."""
    target = max(min(p["shapes_fd"] for p in c) for c in curves.values())
    budget = min(c[-1][x_key] for c in curves.values())
    to_reach = {m: interpolate_x(c, x_key, "shapes_fd", target) for m, c in curves.items()}
    at_budget = {m: interpolate_y(c, x_key, "shapes_fd", budget) for m, c in curves.items()}
    ratio = lambda a, b: a / b if a is not None and b else None  # noqa: E731
    return {
        "target_shapes_fd": target,
        "to_reach": to_reach,
        "budget": budget,
        "shapes_fd_at_budget": at_budget,
        "to_reach_ratio": ratio(to_reach["ptdit"], to_reach["pixart"]),
        "at_budget_ratio": ratio(at_budget["ptdit"], at_budget["pixart"]),
    }


def mean_curve(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pointwise mean over seeds of curves evaluated at the same steps."""
    keys = ("macs", "train_seconds", "shapes_fd", "oracle")
    return [
        {"step": pts[0]["step"], **{k: float(np.mean([p[k] for p in pts])) for k in keys}}
        for pts in zip(*(r["curve"] for r in records), strict=True)
    ]


def run_scale(out: Path, scale: Scale, bar: Any) -> dict[str, Any]:
    from ptdit.study.runs import run_once

    curves, records = {}, {}
    for arch in QUALITY_MODELS:
        records[arch] = []
        for seed in scale.profile.seeds:
            bar.set_postfix_str(f"{scale.name} {arch} seed {seed}")
            folder = out / "runs" / scale.name / arch / f"seed-{seed}"
            records[arch].append(run_once(folder, scale_config(arch, scale, seed), scale.profile, curve=True))
            bar.update()
        curves[arch] = mean_curve(records[arch])
    cost = cost_rows(scale)
    by_macs, by_seconds = compare(curves, "macs"), compare(curves, "train_seconds")
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
    """PT-DiT / baseline: per-step cost for both baselines; compute to reach a quality and quality at a budget
    for PixArt-alpha (the trained baseline)."""
    out: dict[str, dict[str, Any]] = {}
    for m in ("pixart", "dit"):
        out[m] = {
            "macs_per_step": cost["ptdit"]["train_macs_per_step"] / cost[m]["train_macs_per_step"],
            "seconds_per_step": cost["ptdit"]["seconds_per_step"] / cost[m]["seconds_per_step"],
        }
    out["pixart"].update(
        macs_to_reach=by_macs["to_reach_ratio"],
        fd_at_macs=by_macs["at_budget_ratio"],
        seconds_to_reach=by_seconds["to_reach_ratio"],
        fd_at_seconds=by_seconds["at_budget_ratio"],
    )
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
