"""The oracle benchmark: a checkpoint's samples of a fixed prompt suite, scored per GenEval-style category.

Flow (`run_oracle_benchmark`): the suite's prompts are sampled `seeds` times each through `ptdit.eval.generate`
(resumable, shardable over torchrun ranks; sample `r * len(items) + k` is item k's repeat r and uses seed
`seed + r * len(items) + k`, so the samples of `--seeds 1` are the first repeat of `--seeds 2`), every sample
is read back from its lossless PNG and checked (`ptdit.eval.checks`), and the results are written as
`results.jsonl` (one record per sample: prompt, seed, pass / fail per scored attribute and why) and
`summary.json` (accuracy per category and overall, with bootstrap 95% confidence intervals).

Scoring (docs/oracle-benchmark.md): a sample passes its category when every check the category scores passes,
gated checks (their object not drawn) counting as failures. A category's accuracy is the mean over its prompts
of the prompt's pass rate over seeds; the overall accuracy is the mean of the category accuracies (GenEval).
The intervals come from a percentile bootstrap that resamples prompts within each category.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.eval.checks import CHECKERS

NUM_BOOTSTRAP = 1000


def score_sample(suite: dict[str, Any], item: dict[str, Any], frames_FHW3: np.ndarray) -> dict[str, Any]:
    """The benchmark record of one sample.

    Args:
        suite: the suite (`ptdit.eval.suites.load_suite`).
        item: one of its items, plus optionally "seed", "repeat" and "file" (copied into the record).
        frames_FHW3: the sample, (F, H, W, 3) in [0, 1].

    Returns:
        `{"id", "category", "prompt", ..., "passed", "checks": [...scored checks], "found": [...]}`.
    """
    checks, found = CHECKERS[suite["dataset"]](frames_FHW3, item["prompt"])
    tags = suite["categories"][item["category"]]["checks"]
    scored = [c for c in checks if c.tag in tags]
    return {**item, "passed": all(c.passed for c in scored), "checks": [c.to_dict() for c in scored], "found": found}


def _category_units(suite: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per category: each prompt's pass rate over its seeds (the unit the bootstrap resamples)."""
    by_item: dict[str, list[bool]] = {}
    for r in records:
        by_item.setdefault(r["id"], []).append(r["passed"])
    category = {item["id"]: item["category"] for item in suite["items"]}
    units: dict[str, list[float]] = {c: [] for c in suite["categories"]}
    for item_id, passes in by_item.items():
        units[category[item_id]].append(float(np.mean(passes)))
    return {c: np.array(u) for c, u in units.items() if u}


def summarize(
    suite: dict[str, Any], records: list[dict[str, Any]], *, num_bootstrap: int = NUM_BOOTSTRAP, seed: int = 0
) -> dict[str, Any]:
    """Accuracy per category and overall, with percentile-bootstrap 95% intervals.

    Returns:
        `{"suite", "num_samples", "overall": {"accuracy", "ci95"}, "categories": {name: {"accuracy", "ci95",
        "prompts", "samples"}}}`; categories without samples are left out.
    """
    units = _category_units(suite, records)
    if not units:
        raise ValueError("no benchmark records to summarize")
    rng = np.random.default_rng(seed)
    boot = {c: u[rng.integers(len(u), size=(num_bootstrap, len(u)))].mean(axis=1) for c, u in units.items()}
    overall_boot = np.mean(list(boot.values()), axis=0)
    counts = {c: sum(r["category"] == c for r in records) for c in units}

    def interval(values: np.ndarray) -> list[float]:
        return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]

    categories = {
        c: {"accuracy": round(float(u.mean()), 4), "ci95": interval(boot[c]), "prompts": len(u), "samples": counts[c]}
        for c, u in units.items()
    }
    overall = float(np.mean([u.mean() for u in units.values()]))
    return {
        "suite": suite["name"],
        "num_samples": len(records),
        "overall": {"accuracy": round(overall, 4), "ci95": interval(overall_boot)},
        "categories": categories,
    }


def format_table(summary: dict[str, Any]) -> str:
    """A Markdown table: one row per category, then the overall row."""
    lines = ["| category | accuracy | 95% CI | prompts | samples |", "|---|---|---|---|---|"]
    for name, c in summary["categories"].items():
        lo, hi = c["ci95"]
        lines.append(f"| {name} | {c['accuracy']:.3f} | {lo:.3f}-{hi:.3f} | {c['prompts']} | {c['samples']} |")
    lo, hi = summary["overall"]["ci95"]
    total = sum(c["prompts"] for c in summary["categories"].values())
    lines.append(f"| **overall** | **{summary['overall']['accuracy']:.3f}** | {lo:.3f}-{hi:.3f} | {total} | "
                 f"{summary['num_samples']} |")  # fmt: skip
    return "\n".join(lines)


def write_results(out: Path, records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """results.jsonl (one record per sample) and summary.json, each written whole under a temporary name first."""
    from ptdit.sampling.media import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")


def run_oracle_benchmark(
    checkpoint: str | Path,
    *,
    seeds: int = 1,
    task: str | None = None,
    suite: str | None = None,
    out_dir: str | Path | None = None,
    **sampling: Any,
) -> tuple[dict[str, Any], Path] | None:
    """Generates the suite's samples (this rank's share) and, on rank 0, scores them and writes the results.

    Args:
        checkpoint: checkpoint folder, or a training run folder.
        seeds: samples per prompt.
        task: use this task's newest suite (default: the checkpoint's task); `suite` names one instead.
        out_dir: default `CHECKPOINT/eval/oracle-SUITE-sSEEDS`.
        **sampling: `ptdit.eval.generate.plan_generation` settings (seed, steps, cfg_scale, batch_size, ...).

    Returns:
        (summary, output folder) on rank 0; None on the other ranks.
    """
    import torch.distributed as dist

    from ptdit.eval.generate import check_output_folder, generate, plan_generation
    from ptdit.eval.suites import load_suite, suite_for_task
    from ptdit.models.registry import read_checkpoint_config, resolve_checkpoint

    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    folder = resolve_checkpoint(checkpoint)
    config = read_checkpoint_config(folder)
    chosen = load_suite(suite) if suite else suite_for_task(task or (config.get("pipeline") or {}).get("task", ""))
    items = chosen["items"]
    prompts = [item["prompt"] for _ in range(seeds) for item in items]  # sample r * len(items) + k: item k
    pipe, plan = plan_generation(folder, prompts=prompts, source={"suite": chosen["name"], "seeds": seeds}, **sampling)
    out = Path(out_dir) if out_dir else folder / "eval" / f"oracle-{chosen['name']}-s{seeds}"
    check_output_folder(out, plan)
    truncated = count_truncated(pipe, [item["prompt"] for item in items])
    if truncated and (not dist.is_initialized() or dist.get_rank() == 0):
        note = "a model trained on shorter captions cannot see their last objects"
        print(
            f"note: {truncated} of {len(items)} suite prompts exceed the text encoder's length ({note})",
            file=sys.stderr,
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceed max_length.*")  # counted once above
        generate(pipe, plan, out, progress=True)
    if dist.is_initialized() and dist.get_rank() != 0:
        return None
    records = score_generated(chosen, out, plan.seed, seeds, plan.frames)
    summary = summarize(chosen, records)
    summary["generation"] = {
        k: getattr(plan, k) for k in ("checkpoint", "weights", "sampler", "steps", "cfg_scale", "seed", "dtype")
    }
    summary["generation"].update(seeds=seeds, num_samples=plan.num_samples, record=str(out / "generation.json"))
    summary["truncated_prompts"] = truncated
    write_results(out, records, summary)
    return summary, out


def count_truncated(pipe: Any, prompts: list[str]) -> int:
    """Prompts longer than the built-in word encoder's `max_length` (other encoders: 0, not counted)."""
    encoder = pipe.text_encoder
    if getattr(encoder, "kind", None) != "words":
        return 0
    return sum(len(p.split()) + 1 > encoder.max_length for p in prompts)  # words + EOS


def score_generated(suite: dict[str, Any], out: Path, seed: int, seeds: int, frames: int) -> list[dict[str, Any]]:
    """Records of the samples in a generation folder written for `suite` with `seeds` samples per prompt."""
    from ptdit.eval.generate import read_sample, sample_file

    records = []
    items = suite["items"]
    for r in range(seeds):
        for k, item in enumerate(items):
            index = r * len(items) + k
            path = sample_file(out, index)
            frames_FHW3 = read_sample(path, frames).astype(np.float32) / 255.0
            extra = {"seed": seed + index, "repeat": r, "file": str(path.relative_to(out))}
            records.append(score_sample(suite, {**item, **extra}, frames_FHW3))
    return records


def score_real_samples(
    suite: dict[str, Any], *, seeds: int = 1, size: int = 32, frames: int = 8, dataset_seed: int = 0
) -> list[dict[str, Any]]:
    """Records of *real* samples of the suite's prompts (rendered by the dataset): the benchmark's ceiling.

    Sample `r * len(items) + k` renders item k with render seed `r * len(items) + k`, as generated samples are
    numbered. `frames` is the clip length or number of views (ignored for images).
    """
    from ptdit.data import build_dataset
    from ptdit.eval.oracle import to_unit_numpy

    kwargs = {"moving-shapes": {"frames": frames}, "turntable": {"views": frames}}.get(suite["dataset"], {})
    dataset = build_dataset(suite["dataset"], size=size, seed=dataset_seed, **kwargs)
    records = []
    items = suite["items"]
    for r in range(seeds):
        for k, item in enumerate(items):
            index = r * len(items) + k
            pixels = dataset.render_caption(item["prompt"], seed=index)
            records.append(score_sample(suite, {**item, "seed": index}, to_unit_numpy(pixels[None])[0]))
    return records


__all__ = [
    "format_table",
    "run_oracle_benchmark",
    "score_generated",
    "score_real_samples",
    "score_sample",
    "summarize",
    "write_results",
]
