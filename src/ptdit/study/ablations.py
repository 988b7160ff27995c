"""`ptdit study ablations`: Table 2 of the paper in miniature (docs/study.md#ablations).

Each variant of `ptdit.study.variants.VARIANTS` is trained from scratch, text-conditional, on the built-in shapes
data at the paper's ablation token geometry (16 x 16 tokens, windows (1,2,2) -> 64 windows), with the same
data, steps, optimiser and seeds, then scored with shapes-FD, the oracle benchmark and the grid-artefact ratio.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ptdit.study.measures import grid_artefact_ratio, spearman, spread
from ptdit.study.variants import (
    ABLATION_PROFILES,
    GROUPS,
    PAPER_CLAIMS,
    Profile,
    Variant,
    get_variants,
    group_members,
)

PATCH = 2
SIZE = 32  # 32 px / patch 2 = the 16 x 16 token grid of the paper's 256 px ablations
METRICS = ("shapes_fd", "adherence", "oracle", "final_loss", "grid_artefact", "grid_artefact_rel", "train_seconds")


def ablation_profile(mode: str, *, steps: int | None = None, seeds: list[int] | None = None) -> Profile:
    """The profile of `mode` ("quick" or "full"), with optional step and seed overrides."""
    if mode not in ABLATION_PROFILES:
        raise ValueError(f"unknown study mode {mode!r}; choose one of {sorted(ABLATION_PROFILES)}")
    profile = ABLATION_PROFILES[mode]
    if steps is not None:
        profile = dataclasses.replace(profile, steps=steps, warmup_steps=min(profile.warmup_steps, steps))
    if seeds:
        profile = dataclasses.replace(profile, seeds=tuple(seeds))
    return profile


def variant_config(variant: Variant, profile: Profile, seed: int) -> Any:
    """The TrainConfig of one variant and seed."""
    from ptdit.study.runs import model_fields, train_config

    return train_config(model_fields("ptdit", profile, patch_size=PATCH, **variant.changes), profile, seed, size=SIZE)


def _grid_measure(window: tuple[int, int, int], real: dict[str, float]):
    """Grid-artefact ratio of the shapes-FD samples, raw and relative to real images of the same data."""

    def measure(pipe: Any, record: dict[str, Any]) -> dict[str, Any]:
        ratio = grid_artefact_ratio(record["pixels"], PATCH, window[1:])
        return {"grid_artefact": ratio, "grid_artefact_rel": ratio / real[window_key(window)]}

    return measure


def window_key(window: tuple[int, ...]) -> str:
    return "x".join(map(str, window))


def run_ablations(
    out: Path, profile: Profile, variants: list[Variant] | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Trains and scores every (variant, seed), skipping those whose result.json exists; writes
    `OUT/ablations.json`, plots and `OUT/report.html`. Returns the summary."""
    from tqdm import tqdm

    from ptdit.study.report import write_ablation_report
    from ptdit.study.runs import run_once

    variants = variants or get_variants()
    jobs = [(v, s) for v in variants for s in profile.seeds]
    records: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    real = real_grid_artefacts(variants, profile)
    bar = tqdm(jobs, desc="ablations", unit="run", disable=not progress)
    for variant, seed in bar:
        bar.set_postfix_str(f"{variant.name} seed {seed}")
        cfg = variant_config(variant, profile, seed)
        window = cfg.model_config().window_size
        folder = out / "runs" / variant.name / f"seed-{seed}"
        records[variant.name].append(run_once(folder, cfg, profile, _grid_measure(window, real)))
    summary = summarize(variants, records, profile)
    summary["real_grid_artefact"] = real
    write_ablation_report(out, summary)
    return summary


def real_grid_artefacts(variants: list[Variant], profile: Profile) -> dict[str, float]:
    """The grid-artefact ratio of real training images (as many as shapes-FD samples, at least 64) for each
    window the variants use: what 'no artefact' scores on this data, whose shapes sit at fixed places."""
    import torch

    from ptdit.data import build_dataset
    from ptdit.eval.shapes_fd import REAL_SEED

    cfg = variant_config(variants[0], profile, 0)
    options = {"size": cfg.data.size, **cfg.data.options}
    ds = build_dataset(cfg.data.dataset, seed=REAL_SEED, num_samples=max(profile.fd_samples, 64), **options)
    pixels = torch.stack([ds[i]["pixels"] for i in range(len(ds))])
    windows = {tuple(variant_config(v, profile, 0).model_config().window_size) for v in variants}
    return {window_key(w): grid_artefact_ratio(pixels, PATCH, w[1:]) for w in sorted(windows)}


def summarize(variants: list[Variant], records: dict[str, list[dict[str, Any]]], profile: Profile) -> dict[str, Any]:
    """Per-variant means and spreads over seeds, the rank comparison with the paper and the claims."""
    rows = []
    for v in variants:
        runs = records[v.name]
        row: dict[str, Any] = {"name": v.name, "label": v.label, "groups": list(v.groups), "paper_fid": v.paper_fid}
        row["changes"] = {k: list(x) if isinstance(x, tuple) else x for k, x in v.changes.items()}
        for metric in METRICS:
            values = [r[metric] for r in runs if r.get(metric) is not None]
            row[metric] = spread(values) if values else None
        categories = sorted({c for r in runs for c in r["oracle_categories"]})
        row["oracle_categories"] = {
            c: spread([r["oracle_categories"][c] for r in runs if c in r["oracle_categories"]]) for c in categories
        }
        checks = [r["adherence_checks"] for r in runs if r.get("adherence_checks")]
        row["adherence_checks"] = {c: spread([x[c] for x in checks]) for c in (checks[0] if checks else {})}
        row["parameters"] = runs[0]["parameters"]
        row["train_macs"] = runs[0]["train_macs"]
        row["window_size"] = runs[0]["model"]["window_size"]
        rows.append(row)
    return {
        "study": "ablations",
        "profile": profile.to_dict(),
        "variants": rows,
        "runs": records,
        "rank_correlation": rank_correlations(rows),
        "claims": claims(rows),
    }


def _mean(row: dict[str, Any], metric: str) -> float | None:
    return row[metric]["mean"] if row.get(metric) else None


def rank_correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Spearman correlation of our ordering with the paper's FID ordering, over all variants and per group.

    `shapes_fd`: our mean shapes-FD against FID (both lower is better); `adherence` and `oracle`: minus our mean
    accuracy against FID (so +1 means the same order in both)."""
    scopes = {"overall": rows, **{g: [r for r in rows if g in r["groups"]] for g in GROUPS}}
    result: dict[str, dict[str, float | None]] = {}
    for scope, members in scopes.items():
        entry: dict[str, float | None] = {"variants": len(members)}
        for metric, sign in (("shapes_fd", 1.0), ("adherence", -1.0), ("oracle", -1.0), ("final_loss", 1.0)):
            usable = [r for r in members if _mean(r, metric) is not None]
            ours = [sign * _mean(r, metric) for r in usable]
            entry[metric] = spearman(ours, [r["paper_fid"] for r in usable]) if len(usable) == len(members) else None
        result[scope] = entry
    return result


def claims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each of the paper's Table 2 conclusions, checked on mean shapes-FD, adherence and oracle accuracy.

    `holds` is True when our means order the pair as the paper does; `clear` when the gap exceeds the sum of
    the two seed standard deviations (otherwise the ordering is within the seed spread)."""
    by_name = {r["name"]: r for r in rows}
    out = []
    for statement, better, worse in PAPER_CLAIMS:
        if better not in by_name or worse not in by_name:
            continue
        entry: dict[str, Any] = {"claim": statement, "better": better, "worse": worse}
        for metric, sign in (("shapes_fd", 1.0), ("adherence", -1.0), ("oracle", -1.0)):
            b, w = by_name[better].get(metric), by_name[worse].get(metric)
            if not b or not w:
                entry[metric] = None
                continue
            gap = sign * (w["mean"] - b["mean"])  # > 0: the paper's order
            entry[metric] = {"holds": gap > 0, "clear": abs(gap) > b["std"] + w["std"], "gap": gap}
        out.append(entry)
    return out


def groups_of(variants: list[Variant]) -> dict[str, list[str]]:
    return {g: [v.name for v in group_members(g, variants)] for g in GROUPS}
