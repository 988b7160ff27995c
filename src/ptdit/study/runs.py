"""One study run: train a model on the built-in shapes data with library functions, evaluate it, and keep the
result as JSON so that an interrupted study resumes where it stopped (docs/study.md#runs).

A run is defined by its model fields, a `Profile` (steps, batch, evaluation sizes) and a seed; the seed sets the
initialisation, the noise and the data order (`train.seed` and `data.seed`), so every variant with seed s sees
exactly the same images in the same order.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptdit.io import atomic_file
from ptdit.study.variants import Profile

TEXT_ENCODER_DIM = 64  # the built-in word encoder's width, as in configs/study-t2i.yaml
RESULT_NAME = "result.json"


def base_config() -> dict[str, Any]:
    """configs/study-t2i.yaml as a mapping: the pipeline (words encoder, identity VAE, rectified flow),
    data (shapes, one object) and optimiser settings, which every study run starts from."""
    import yaml

    text = (resources.files("ptdit") / "configs" / "study-t2i.yaml").read_text()
    return yaml.safe_load(text)


def model_fields(arch: str, profile: Profile, *, patch_size: int = 2, **changes: Any) -> dict[str, Any]:
    """The model section of a study run: pixel space (3 -> 6 channels), the profile's width and depth."""
    fields: dict[str, Any] = {
        "arch": arch,
        "in_channels": 3,
        "out_channels": 6,
        "patch_size": patch_size,
        "dim": profile.dim,
        "depth": profile.depth,
        "num_heads": profile.num_heads,
    }
    if arch in ("ptdit", "pixart") and changes.get("conditioning", "text") == "text":
        fields["context_dim"] = TEXT_ENCODER_DIM
    if arch == "ptdit":
        fields["window_size"] = [1, 2, 2]
    fields.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    return fields


def train_config(model: dict[str, Any], profile: Profile, seed: int, *, size: int = 32) -> Any:
    """The validated TrainConfig of a study run (no previews, no checkpoints but the last, no time limit).

    A class-conditional model (DiT, PT-DiT with `conditioning: class`) trains on the same one-object images with
    their (colour, shape) labels (`class_labels`, `ptdit.data.shapes.SHAPE_CLASSES`) instead of their captions."""
    from ptdit.config import config_from_dict
    from ptdit.data.shapes import SHAPE_CLASSES
    from ptdit.train.config import train_config_from_dict

    data = base_config()
    data["model"] = model
    if config_from_dict(model).conditioning == "class":
        data["model"] = {**model, "num_classes": len(SHAPE_CLASSES)}
        data["pipeline"].update(task="class", text_encoder=None)
        data["data"]["options"] = {**data["data"]["options"], "class_labels": True}
    data["pipeline"]["steps"] = profile.sampling_steps
    data["data"].update(size=size, seed=seed)
    data["optim"].update(lr=profile.lr, warmup_steps=profile.warmup_steps)
    data["train"].update(
        batch_size=profile.batch_size,
        max_steps=profile.steps,
        max_minutes=None,
        seed=seed,
        log_every=math.gcd(10, profile.eval_every) if profile.eval_every else 10,
        checkpoint_every=max(profile.steps, 1),
        keep_last=1,
        num_sample_prompts=4,
        eval_every=profile.eval_every,
        eval_prompts=profile.eval_prompts,
        eval_fd_samples=profile.fd_samples,
        device=profile.device,
    )
    return train_config_from_dict(data)


def training_macs(cfg: Any) -> int:
    """Forward + backward MACs of all training steps (analytic count, docs/flops.md; 1 MAC = the papers' FLOP)."""
    from ptdit.eval.flops import analytic_macs

    model = cfg.model_config()
    p, size = model.patch_size, cfg.data.size
    macs = analytic_macs(
        model, (1, size // p, size // p), batch=cfg.train.batch_size, text_tokens=cfg.pipeline.text_max_length
    )
    return macs.forward_backward() * cfg.train.max_steps


def evaluate(pipe: Any, cfg: Any, profile: Profile) -> dict[str, Any]:
    """Oracle benchmark (overall and per category) and shapes-FD of a pipeline.

    The shapes-FD samples (captions drawn from the training distribution, sample k with seed k, 8-bit
    quantised as `ptdit.eval.during_training` does) are returned as `pixels` for further measures."""
    from ptdit.data import parse_caption
    from ptdit.eval.during_training import check_evaluable, evaluate_pipeline
    from ptdit.eval.shapes_fd import shapes_fd

    if cfg.pipeline.task == "class":
        return evaluate_class(pipe, cfg, profile)
    suite, options = check_evaluable(cfg)
    result = evaluate_pipeline(pipe, suite=suite, options=options, num_prompts=profile.eval_prompts, fd_samples=0)
    start = time.perf_counter()
    prompts, pixels = fd_samples(pipe, suite["dataset"], options, profile.fd_samples)
    fd = shapes_fd(pixels, suite["dataset"], num_real=profile.fd_real, options=options)
    summary = result["summary"]
    return {
        "oracle": summary["overall"]["accuracy"],
        "oracle_categories": {c: v["accuracy"] for c, v in summary["categories"].items()},
        **adherence(pixels, [parse_caption(suite["dataset"], p)["objects"] for p in prompts]),
        "shapes_fd": fd["shapes_fd"],
        "shapes_fd_floor": fd["real_floor"],
        "eval_seconds": round(result["seconds"] + time.perf_counter() - start, 1),
        "pixels": pixels,
    }


def fd_samples(pipe: Any, dataset: str, options: dict[str, Any], num: int) -> tuple[list[str], torch.Tensor]:
    """The shapes-FD samples of a text pipeline: captions drawn from the training distribution, sample k with
    seed k, 8-bit quantised as `ptdit.eval.during_training` does. Returns (captions, pixels)."""
    from ptdit.data import random_captions
    from ptdit.eval.during_training import quantize
    from ptdit.eval.shapes_fd import CAPTION_SEED

    prompts = random_captions(dataset, num, seed=CAPTION_SEED, **options)
    with torch.no_grad():
        pixels = quantize(torch.cat([pipe(prompts[i : i + 16], seed=i) for i in range(0, len(prompts), 16)]))
    return prompts, pixels


def add_adherence(folder: Path, cfg: Any, profile: Profile, record: dict[str, Any]) -> dict[str, Any]:
    """Adds `adherence` to a run's result written before it was measured: the final checkpoint is evaluated
    again exactly as `run_once` does (same seeds, same global generator state, so the same samples: checked
    by shapes-FD and oracle accuracy, which must equal the stored ones). Updates result.json."""
    from ptdit.sampling.pipeline import GenerationPipeline

    pipe = GenerationPipeline.from_checkpoint(folder / "train" / "checkpoints" / "latest", dtype=torch.float32)
    torch.manual_seed(cfg.train.seed)
    evaluation = evaluate(pipe, cfg, profile)
    for key in ("shapes_fd", "oracle"):
        if not math.isclose(evaluation[key], record[key], rel_tol=1e-3, abs_tol=1e-3):
            raise RuntimeError(
                f"{folder}: evaluated again, {key} is {evaluation[key]:.4f}, not the stored {record[key]} (another "
                "torch version or machine?); delete this run folder to train and evaluate it afresh"
            )
    record = {**record, "adherence": evaluation["adherence"], "adherence_checks": evaluation["adherence_checks"]}
    with atomic_file(folder / RESULT_NAME) as tmp:
        Path(tmp).write_text(json.dumps(_jsonable(record), indent=2) + "\n")
    return record


def adherence(pixels: torch.Tensor, objects: list[list[dict[str, str]]]) -> dict[str, Any]:
    """Oracle adherence of the shapes-FD samples to what they were asked for, on one-object data
    (`ptdit.eval.oracle.one_object_checks`): `adherence` is the mean over samples and checks, `adherence_checks`
    the mean per check. Both are None when a sample asks for more than one object.

    Unlike the oracle benchmark, whose suite is mostly two-object prompts, these conditions come from the
    training distribution (docs/study.md#measures)."""
    from ptdit.eval.oracle import one_object_checks

    if any(len(o) != 1 for o in objects):
        return {"adherence": None, "adherence_checks": None}
    checks = one_object_checks(pixels, [o[0] for o in objects])
    means = {k: float(v.float().mean()) for k, v in checks.items()}
    return {"adherence": float(np.mean(list(means.values()))), "adherence_checks": means}


def evaluate_class(pipe: Any, cfg: Any, profile: Profile) -> dict[str, Any]:
    """Class adherence (`ptdit.eval.oracle.score_shape_classes`) and shapes-FD of a class-conditional pipeline on
    one-object shapes: `profile.fd_samples` samples, label k % 18 with seed k (every class equally often, as in
    the data), 8-bit quantised like the text models' samples. Returned like `evaluate`."""
    from ptdit.data.shapes import SHAPE_CLASSES
    from ptdit.eval.during_training import quantize
    from ptdit.eval.oracle import score_shape_classes
    from ptdit.eval.shapes_fd import shapes_fd

    start = time.perf_counter()
    labels = [k % len(SHAPE_CLASSES) for k in range(profile.fd_samples)]
    with torch.no_grad():
        batches = [pipe(class_labels=labels[i : i + 16], seed=i) for i in range(0, len(labels), 16)]
    pixels = quantize(torch.cat(batches))
    accuracy = float(score_shape_classes(pixels, labels).mean())
    options = {"size": cfg.data.size, **cfg.data.options}
    fd = shapes_fd(pixels, cfg.data.dataset, num_real=profile.fd_real, options=options)
    wanted = [[dict(zip(("color", "shape"), SHAPE_CLASSES[k], strict=True))] for k in labels]
    return {
        "oracle": accuracy,
        "oracle_categories": {"class": accuracy},
        **adherence(pixels, wanted),
        "shapes_fd": fd["shapes_fd"],
        "shapes_fd_floor": fd["real_floor"],
        "eval_seconds": round(time.perf_counter() - start, 1),
        "pixels": pixels,
    }


def run_once(
    folder: Path,
    cfg: Any,
    profile: Profile,
    measure: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
    curve: bool = False,
) -> dict[str, Any]:
    """Trains `cfg` in `folder/train`, evaluates the EMA weights and writes `folder/result.json`.

    A folder that already holds a result is not trained again (resumable studies); a half-done one is started
    afresh (the run is defined by its steps and seeds, so the result is the same). `measure(pipe, evaluation)`
    adds fields (e.g. the grid-artefact ratio of the samples). `curve=True` also evaluates every
    `profile.eval_every` steps and records quality against steps, MACs and training seconds.
    """
    from ptdit.models.registry import count_parameters
    from ptdit.sampling.pipeline import GenerationPipeline
    from ptdit.train.loop import train

    done = folder / RESULT_NAME
    if done.is_file():
        record = json.loads(done.read_text())
        return record if "adherence" in record else add_adherence(folder, cfg, profile, record)
    if (folder / "train").exists():
        shutil.rmtree(folder / "train")
    folder.mkdir(parents=True, exist_ok=True)
    points: list[dict[str, Any]] = []
    evaluate_fn = _curve_evaluator(cfg, profile, points) if curve and profile.eval_every else None
    result = train(cfg, folder / "train", show_progress=False, evaluate=evaluate_fn)
    seconds = result.train_seconds - sum(p["eval_seconds"] for p in points)  # the loop's clock, setup excluded
    points = _training_seconds(points, folder / "train" / "metrics.jsonl")
    pipe = GenerationPipeline.from_checkpoint(result.checkpoint, dtype=torch.float32)  # machine-independent
    # Sampling noise has its own seeds; this makes the draws from the global generator (random proxies)
    # reproducible too, whatever ran before in the process.
    torch.manual_seed(cfg.train.seed)
    evaluation = evaluate(pipe, cfg, profile)
    pixels = evaluation.pop("pixels")
    record = {
        "model": cfg.model_config().to_dict(),
        "seed": cfg.train.seed,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "parameters": count_parameters(pipe.model)["total"],
        "train_macs": training_macs(cfg),
        "train_seconds": round(seconds, 2),
        **evaluation,
    }
    if measure is not None:
        record.update(measure(pipe, {"pixels": pixels, **record}))
    if curve:
        per_step = record["train_macs"] / max(cfg.train.max_steps, 1)
        points = [{**p, "macs": p["step"] * per_step} for p in points]
        if not points or points[-1]["step"] != record["steps"]:
            points.append(_final_point(record, per_step))
        record["curve"] = points
    with atomic_file(done) as tmp:
        Path(tmp).write_text(json.dumps(_jsonable(record), indent=2) + "\n")
    return record


def _final_point(record: dict[str, Any], per_step: float) -> dict[str, Any]:
    keys = ("step", "oracle", "adherence", "shapes_fd", "train_seconds")
    point = {k: record[k] for k in keys if k in record} | {"step": record["steps"]}
    return {**point, "macs": record["steps"] * per_step, "eval_seconds": record["eval_seconds"]}


def _curve_evaluator(cfg: Any, profile: Profile, points: list[dict[str, Any]]) -> Callable:
    """The training loop's `evaluate` callback for quality curves: appends a point per evaluation."""
    from ptdit.eval.previews import ema_pipeline

    def evaluate_now(state: Any, pipeline: dict[str, Any]) -> dict[str, float]:
        began = time.perf_counter()
        evaluation = evaluate(ema_pipeline(state, pipeline), cfg, profile)
        evaluation.pop("pixels")
        point = {"step": state.step, **evaluation, "eval_seconds": round(time.perf_counter() - began, 2)}
        points.append(point)
        return {"eval/oracle_overall": point["oracle"], "eval/shapes_fd": point["shapes_fd"]}

    return evaluate_now


def _training_seconds(points: list[dict[str, Any]], metrics: Path) -> list[dict[str, Any]]:
    """Adds each point's training seconds: the loop's `elapsed_seconds` logged at its step (the log record comes
    before that step's evaluation) minus the evaluations before it."""
    from ptdit.train.artifacts import read_metrics

    elapsed = {r["step"]: r["elapsed_seconds"] for r in read_metrics(metrics) if "elapsed_seconds" in r}
    out, spent = [], 0.0
    for point in points:
        out.append({**point, "train_seconds": round(elapsed[point["step"]] - spent, 2)})
        spent += point["eval_seconds"]
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
