"""`ptdit study attention`: the window structure of full attention (paper Fig. 2, made quantitative) and the share
of each PT-DiT branch in the residual stream (docs/study.md#attention).

A PixArt-alpha baseline (global self-attention, the same text pipeline) and a PT-DiT are trained on the shapes
data; then real images, noised to several timesteps, go through each with a probe of `ptdit.models.probes`:
per layer and timestep, how alike the attention rows of tokens in one window are (against pairs at the same
offsets across windows), and how much attention stays in a token's own window; for PT-DiT, the relative norm
of each branch's update.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from ptdit.study.measures import in_window_mass, window_row_similarity
from ptdit.study.variants import ABLATION_PROFILES, Profile

SIZE, PATCH = 32, 2
WINDOW = (1, 2, 2)  # the paper's window for the 16 x 16 grid (64 windows)
BRANCHES = ("giim", "window", "shifted_window", "text", "ffn")


@dataclasses.dataclass(frozen=True)
class AttentionSettings:
    profile: Profile  # training of both models
    timesteps: tuple[float, ...]  # network times (1000 = pure noise)
    probe_images: int
    windows: tuple[tuple[int, int, int], ...]  # windows the baseline's attention is measured against


def attention_profile(*, quick: bool = False, steps: int | None = None, seeds: list[int] | None = None):
    """Quick: the ablations' quick profile; full: the ablations' full profile (one seed), so the PT-DiT here is
    the ablation study's full model."""
    profile = ABLATION_PROFILES["quick" if quick else "full"]
    profile = dataclasses.replace(profile, seeds=tuple(seeds or (0,)))
    if steps is not None:
        profile = dataclasses.replace(profile, steps=steps, warmup_steps=min(profile.warmup_steps, steps))
    timesteps = (250.0, 750.0) if quick else (100.0, 300.0, 500.0, 700.0, 900.0)
    return AttentionSettings(profile, timesteps, 4 if quick else 32, (WINDOW, (1, 4, 4)))


def _train(out: Path, arch: str, settings: AttentionSettings) -> Any:
    """Trains (or finds) the model of `arch` for the first seed; returns its EMA pipeline."""
    from ptdit.sampling.pipeline import GenerationPipeline
    from ptdit.study.runs import model_fields, run_once, train_config

    seed = settings.profile.seeds[0]
    changes = {"window_size": WINDOW} if arch == "ptdit" else {}
    cfg = train_config(model_fields(arch, settings.profile, patch_size=PATCH, **changes), settings.profile, seed)
    folder = out / "runs" / arch / f"seed-{seed}"
    run_once(folder, cfg, settings.profile)
    return GenerationPipeline.from_checkpoint(folder / "train", dtype=torch.float32)


def probe_batch(pipe: Any, count: int, timestep: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Real shapes images with their captions, noised to `timestep` with a fixed seed: (x_t, t_B, condition)."""
    from ptdit.data import build_dataset
    from ptdit.eval.shapes_fd import REAL_SEED

    ds = build_dataset("shapes", size=SIZE, seed=REAL_SEED, num_samples=count, max_objects=1)
    items = [ds[i] for i in range(count)]
    device = next(pipe.model.parameters()).device
    x0 = torch.stack([it["pixels"] for it in items]).to(device)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    t_B = torch.full((count,), float(timestep), device=device)
    cond = pipe.conditioner.encode([it["caption"] for it in items], device)
    return pipe.schedule.add_noise(x0, noise, t_B), t_B, cond


@torch.no_grad()
def baseline_rows(pipe: Any, settings: AttentionSettings) -> list[dict[str, Any]]:
    """Per timestep, layer and window: row similarity inside vs across windows, in-window attention mass."""
    from ptdit.models.probes import record_attention

    rows = []
    grid = (SIZE // PATCH, SIZE // PATCH)
    for timestep in settings.timesteps:
        x_t, t_B, cond = probe_batch(pipe, settings.probe_images, timestep)
        with record_attention(pipe.model) as calls:
            pipe.model(x_t, t_B, **cond)
        for layer, probs in enumerate(calls[0]):
            for window in settings.windows:
                sim = window_row_similarity(probs, grid, window[1:])
                rows.append(
                    {
                        "layer": layer,
                        "timestep": timestep,
                        "window": list(window),
                        **sim,
                        "in_window_mass": in_window_mass(probs, grid, window[1:]),
                        "uniform_mass": math.prod(window) / math.prod(grid),
                    }
                )
    return rows


@torch.no_grad()
def branch_rows(pipe: Any, settings: AttentionSettings) -> list[dict[str, Any]]:
    """Per timestep and layer: ||branch update|| / ||residual stream before it|| for each PT-DiT branch."""
    from ptdit.models.probes import record_branches

    rows = []
    for timestep in settings.timesteps:
        x_t, t_B, cond = probe_batch(pipe, settings.probe_images, timestep)
        with record_branches(pipe.model) as norms:
            pipe.model(x_t, t_B, **cond)
        for layer, shares in enumerate(norms.relative()[0]):
            rows.append({"layer": layer, "timestep": timestep, **shares})
    return rows


def run_attention_study(out: Path, settings: AttentionSettings, *, progress: bool = True) -> dict[str, Any]:
    """Trains (or reuses) both models, measures them and writes OUT/attention.json, plots and report.html."""
    from tqdm import tqdm

    from ptdit.study.report import write_attention_report

    with tqdm(total=4, desc="attention", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("train PixArt-alpha")
        pixart = _train(out, "pixart", settings)
        bar.update()
        bar.set_postfix_str("train PT-DiT")
        ptdit = _train(out, "ptdit", settings)
        bar.update()
        bar.set_postfix_str("attention maps")
        layers = baseline_rows(pixart, settings)
        bar.update()
        bar.set_postfix_str("branch updates")
        branches = branch_rows(ptdit, settings)
        bar.update()
    summary = {
        "study": "attention",
        "profile": settings.profile.to_dict(),
        "timesteps": list(settings.timesteps),
        "probe_images": settings.probe_images,
        "baseline": {"model": "pixart", "layers": layers},
        "ptdit": {"branches": branches},
    }
    write_attention_report(out, summary)
    return summary
