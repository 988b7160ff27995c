"""The oracle benchmark and shapes-FD of a pipeline in memory: every `train.eval_every` steps on the EMA weights,
and once after the demo.

The trainer does not import evaluation code (docs/decisions.md#one-place-per-decision): `ptdit train` and
`ptdit demo` hand `make_training_evaluator(cfg)` to `ptdit.train.loop.train` as its `evaluate` callback, which
returns flat metrics that the loop writes to metrics.jsonl.

Samples are quantised to 8 bits before scoring, as the files of `ptdit eval oracle` are, and sample k of the
benchmark uses seed k in batches of 16, so with `train.eval_prompts: 0` (the whole suite) the numbers equal
those of `ptdit eval oracle` on the same weights with its defaults.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ptdit.eval.benchmark import count_truncated, score_sample, summarize
from ptdit.eval.oracle import sample_in_batches


def suite_subset(suite: dict[str, Any], num_prompts: int = 0) -> list[dict[str, Any]]:
    """The first `ceil(num_prompts / categories)` items of every category, in suite order (0: all items)."""
    if num_prompts <= 0 or num_prompts >= len(suite["items"]):
        return list(suite["items"])
    per_category = -(-num_prompts // len(suite["categories"]))
    taken: dict[str, int] = {}
    chosen = []
    for item in suite["items"]:
        if taken.get(item["category"], 0) < per_category:
            taken[item["category"]] = taken.get(item["category"], 0) + 1
            chosen.append(item)
    return chosen


def quantize(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] rounded to the 8-bit values a PNG stores (as `ptdit.sampling.media.to_uint8_frames`)."""
    return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


@torch.no_grad()
def _sample(pipe: Any, prompts: list[str], batch_size: int, progress: Any = None) -> torch.Tensor:
    """(N, 3, F, H, W) quantised samples; sample k uses seed k. `progress`: a `SampleProgress` to advance."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceed max_length.*")  # counted once, in the summary
        return quantize(sample_in_batches(pipe, prompts, batch_size, progress))


def evaluate_pipeline(
    pipe: Any,
    *,
    suite: dict[str, Any],
    options: dict[str, Any],
    num_prompts: int = 0,
    fd_samples: int = 500,
    num_real: int = 5000,
    batch_size: int = 16,
    progress: Any = None,
) -> dict[str, Any]:
    """The oracle benchmark (all or part of `suite`, one seed) and shapes-FD of a text pipeline.

    Args:
        pipe: a `GenerationPipeline` of a model trained on `suite["dataset"]`.
        suite: the task's suite.
        options: the training data's arguments (size, max_objects, frames, ...): the real reference of shapes-FD
            and the caption distribution of its samples.
        num_prompts: benchmark prompts (stratified over categories; 0: the whole suite).
        fd_samples: samples for shapes-FD (0: skip it).
        progress: a `ptdit.eval.progress.SampleProgress` that counts the generated samples (None: silent).

    Returns:
        `{"summary", "records", "pixels" (the benchmark samples), "shapes_fd" (None when skipped), "seconds"}`.
    """
    from ptdit.data import random_captions
    from ptdit.eval.shapes_fd import CAPTION_SEED, shapes_fd

    start = time.perf_counter()
    items = suite_subset(suite, num_prompts)
    pixels = _sample(pipe, [item["prompt"] for item in items], batch_size, progress)
    frames = ((pixels + 1) * 0.5).permute(0, 2, 3, 4, 1).numpy()  # (N, F, H, W, 3) in [0, 1]
    records = [score_sample(suite, {**item, "seed": k}, frames[k]) for k, item in enumerate(items)]
    fd = None
    if fd_samples:
        dataset = suite["dataset"]
        prompts = random_captions(dataset, fd_samples, seed=CAPTION_SEED, **options)
        fd = shapes_fd(_sample(pipe, prompts, batch_size, progress), dataset, num_real=num_real, options=options)
    summary = summarize(suite, records)
    summary["truncated_prompts"] = count_truncated(pipe, [item["prompt"] for item in items])
    return {
        "summary": summary,
        "records": records,
        "pixels": pixels,
        "shapes_fd": fd,
        "seconds": round(time.perf_counter() - start, 1),
    }


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """metrics.jsonl fields of an evaluation: eval/oracle_overall, eval/oracle/CATEGORY, eval/shapes_fd, ..."""
    summary = result["summary"]
    metrics = {"eval/oracle_overall": summary["overall"]["accuracy"]}
    metrics.update({f"eval/oracle/{c}": v["accuracy"] for c, v in summary["categories"].items()})
    if result["shapes_fd"] is not None:
        metrics["eval/shapes_fd"] = result["shapes_fd"]["shapes_fd"]
        metrics["eval/shapes_fd_floor"] = result["shapes_fd"]["real_floor"]
    metrics["eval/seconds"] = result["seconds"]
    return metrics


def check_evaluable(cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(suite, data options) for a training config; ValueError when it cannot be evaluated this way."""
    from ptdit.eval.suites import suite_for_task

    suite = suite_for_task(cfg.pipeline.task)
    if cfg.data.dataset != suite["dataset"]:
        raise ValueError(
            f"train.eval_every: the {suite['name']} suite is written for the {suite['dataset']!r} dataset, but this "
            f"run trains on {cfg.data.dataset!r}; set train.eval_every=0"
        )
    return suite, {"size": cfg.data.size, **cfg.data.options}


def make_training_evaluator(cfg: Any) -> Callable[[Any, dict[str, Any]], dict[str, float]]:
    """The `evaluate` callback of `ptdit.train.loop.train`: benchmark + shapes-FD of the EMA weights.

    Validates the config first, so a run that cannot be evaluated fails before training.
    """
    from ptdit.eval.previews import ema_pipeline

    suite, options = check_evaluable(cfg)

    def evaluate(state: Any, pipeline: dict[str, Any]) -> dict[str, float]:
        result = evaluate_pipeline(
            ema_pipeline(state, pipeline), suite=suite, options=options, num_prompts=cfg.train.eval_prompts,
            fd_samples=cfg.train.eval_fd_samples,
        )  # fmt: skip
        return flat_metrics(result)

    return evaluate


def format_metrics(step: int, metrics: dict[str, float]) -> str:
    """One log line: overall accuracy, shapes-FD and time."""
    fd = f", shapes-FD {metrics['eval/shapes_fd']:.3f}" if "eval/shapes_fd" in metrics else ""
    return f"step {step}: oracle benchmark {metrics['eval/oracle_overall']:.3f}{fd} ({metrics['eval/seconds']:.0f} s)"


__all__ = [
    "check_evaluable",
    "evaluate_pipeline",
    "flat_metrics",
    "format_metrics",
    "make_training_evaluator",
    "quantize",
    "suite_subset",
]
