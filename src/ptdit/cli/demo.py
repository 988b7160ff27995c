"""`ptdit demo`: the main job. Trains a small PT-DiT on a built-in dataset for a fixed number of steps
(`train.max_steps` of configs/demo-TASK.yaml, sized to fit 5 minutes for t2i and 10 for t2v / t2mv on an idle
2-core CPU), samples with the EMA weights, scores the samples with the dataset's oracle and writes
runs/demo/report.html.

The result is a function of the config and its seeds, not of the machine's speed: the number of steps is fixed
and the demo pins its CPU thread count (`train.num_threads`), since 1 and 2 threads give different weights
(reductions are split differently). `--minutes` is an optional cap that breaks this, and says so.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ptdit.cli.args import positive_float, positive_int, ptdit_command

# Demo task -> its config (configs/demo-TASK.yaml) and the number of fixed prompts the oracle scores.
DEMO_CONFIGS = {"t2i": "demo-t2i.yaml", "t2v": "demo-t2v.yaml", "t2mv": "demo-t2mv.yaml"}
NUM_EVAL_PROMPTS = {"t2i": 48, "t2v": 16, "t2mv": 16}
DEMO_MARKER = ".ptdit-demo"  # marks a folder `ptdit demo` made, and so may replace
# Training processes per demo (`--processes` overrides). Two single-threaded DDP processes train the T2V demo
# 1.6x faster than one two-threaded process on the 2-core machines (EVALUATION.md, "Two processes"); the T2I
# demo's small steps gain nothing (1051 vs 1078 steps in 5 minutes: all-reduce and per-process data loading
# eat the gain). Either way the process and thread counts are fixed, so every machine trains the same model.
DEMO_PROCESSES = {"t2i": 1, "t2v": 2, "t2mv": 1}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a small PT-DiT for a fixed number of steps and write an HTML report")
    p.add_argument(
        "--task",
        choices=sorted(DEMO_CONFIGS),
        default="t2i",
        help="t2i: shapes images; t2v: moving-shapes clips; t2mv: turntable views",
    )
    p.add_argument(
        "--minutes",
        type=positive_float,
        help="optional cap on the training time; the demo otherwise trains a fixed number of steps, and with a cap "
        "its result depends on this machine's speed",
    )
    p.add_argument("--out", help="run folder (default runs/demo, or runs/demo-TASK); a previous demo there is replaced")
    p.add_argument(
        "--processes",
        type=positive_int,
        help="training processes (torchrun + DDP, one thread each); default: the task's, measured fastest on 2 "
        f"cores ({', '.join(f'{task}: {n}' for task, n in DEMO_PROCESSES.items())})",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the demo config (configs/demo-TASK.yaml)",
    )
    p.set_defaults(func=run)


def config_path(name: str) -> Path:
    """A config shipped with the package (the repository's configs/ folder points at the same files)."""
    return Path(str(resources.files("ptdit") / "configs" / name))


class DemoStopped(Exception):
    """Training was stopped by SIGINT / SIGTERM: the demo writes its checkpoint and ends without evaluating (the
    evaluation takes minutes, and a user who stops a demo wants it to end)."""

    def __init__(self, signal_name: str, steps: int, max_steps: int, checkpoint: Path) -> None:
        super().__init__(
            f"training stopped by {signal_name} at step {steps} of {max_steps}; nothing was evaluated. Its checkpoint "
            f"is {checkpoint} (sample it with `{ptdit_command()} sample --checkpoint {checkpoint}`); run the demo "
            "again to train it to the end (a demo starts from nothing)"
        )
        self.signal_name = signal_name


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    report: Path
    metrics: dict[str, Any]


def run_demo(
    task: str = "t2i",
    *,
    minutes: float | None = None,
    out_dir: str | Path | None = None,
    overrides: list[str] | None = None,
    eval_prompts: int | None = None,
    processes: int | None = None,
) -> DemoResult:
    """Trains `train.max_steps` steps (at most `minutes`, if given), evaluates with the oracle and writes the
    report. Returns the metrics."""
    import torch

    from ptdit.eval.oracle import evaluate_with_oracle
    from ptdit.eval.previews import sample_prompts
    from ptdit.eval.report import write_report
    from ptdit.sampling.pipeline import GenerationPipeline

    cfg, result, out = train_demo_model(
        task, minutes=minutes, out_dir=out_dir, overrides=overrides, processes=processes
    )
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        raise DemoStopped(result.stopped_by, result.steps, cfg.train.max_steps, result.checkpoint)

    # Evaluate the EMA weights on a fixed prompt set with the oracle
    start = time.perf_counter()
    # ema.safetensors, in fp32 on every machine: the score must not depend on the CPU
    # (docs/decisions.md#default-precision)
    pipe = GenerationPipeline.from_checkpoint(result.checkpoint, dtype=torch.float32)
    prompts = sample_prompts(cfg, eval_prompts or NUM_EVAL_PROMPTS[task], seed=2024)
    progress = evaluation_progress(cfg, len(prompts))
    pixels, scores = evaluate_with_oracle(pipe, cfg.data.dataset, prompts, progress=progress)
    metrics = demo_metrics(task, cfg, result, pipe, prompts, scores, eval_seconds=time.perf_counter() - start)

    # The oracle benchmark (the task's fixed suite, per category) and shapes-FD of the same weights
    metrics.update(run_demo_benchmark(cfg, pipe, out, progress))
    progress.close()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    report = write_report(out, metrics, pixels, prompts, scores, cfg)
    return DemoResult(out_dir=out, report=report, metrics=metrics)


def evaluation_progress(cfg: Any, num_prompts: int) -> Any:
    """One progress report (ETA included) over every sample the demo's evaluation generates: its prompts, the
    benchmark's and shapes-FD's. It takes minutes for the video demos."""
    from ptdit.eval.during_training import check_evaluable, suite_subset
    from ptdit.eval.progress import SampleProgress

    suite, _ = check_evaluable(cfg)
    total = num_prompts + len(suite_subset(suite, cfg.train.eval_prompts)) + cfg.train.eval_fd_samples
    return SampleProgress(total, desc="evaluating")


def run_demo_benchmark(cfg: Any, pipe: Any, out: Path, progress: Any = None) -> dict[str, Any]:
    """Benchmark summary and shapes-FD for metrics.json; per-sample records in OUT/benchmark/results.jsonl.

    `train.eval_prompts` and `train.eval_fd_samples` size it (0 prompts: the whole suite)."""
    from ptdit.eval.benchmark import write_results
    from ptdit.eval.during_training import check_evaluable, evaluate_pipeline

    suite, options = check_evaluable(cfg)
    result = evaluate_pipeline(
        pipe, suite=suite, options=options, num_prompts=cfg.train.eval_prompts, fd_samples=cfg.train.eval_fd_samples,
        progress=progress,
    )  # fmt: skip
    write_results(out / "benchmark", result["records"], result["summary"])
    return {"benchmark": result["summary"], "shapes_fd": result["shapes_fd"], "benchmark_seconds": result["seconds"]}


def train_demo_model(
    task: str, *, minutes: float | None, out_dir: str | Path | None, overrides: list[str] | None, processes: int | None
) -> tuple[Any, Any, Path]:
    """Validates the demo's arguments (before touching any folder), then trains. Returns (config, result, out)."""
    import torch

    from ptdit.eval.during_training import make_training_evaluator
    from ptdit.eval.previews import write_sample_grid
    from ptdit.io import check_writable
    from ptdit.train.config import load_train_config
    from ptdit.train.distributed import DistInfo, check_device
    from ptdit.train.launch import train_in_processes
    from ptdit.train.loop import train
    from ptdit.train.setup import build_dataset, check_batch

    if task not in DEMO_CONFIGS:
        raise ValueError(f"unknown demo task {task!r}; choose one of {sorted(DEMO_CONFIGS)}")
    if minutes is not None and not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"--minutes must be a positive number, got {minutes}")
    out = Path(out_dir or ("runs/demo" if task == "t2i" else f"runs/demo-{task}"))
    processes = DEMO_PROCESSES[task] if processes is None else processes
    if processes < 1:
        raise ValueError(f"--processes must be >= 1, got {processes}")
    overrides = [*([f"train.max_minutes={minutes}"] if minutes is not None else []), *(overrides or [])]
    if processes > 1:
        overrides += ["train.parallel=ddp", "train.num_threads=1"]
    cfg = load_train_config(config_path(DEMO_CONFIGS[task]), overrides)
    check_batch(cfg, DistInfo(rank=0, world_size=processes, local_rank=0, device=torch.device("cpu")))
    build_dataset(cfg)  # checks data.options
    check_device(cfg.train.device)
    check_writable(out)
    _warn_if_machine_dependent(cfg, task, processes)
    # Everything is valid: only now is a previous demo run removed.
    _clear_previous_run(out)
    out.mkdir(parents=True)
    (out / DEMO_MARKER).write_text("made by ptdit demo; `ptdit demo` may replace this folder\n")
    if processes == 1:
        evaluate = make_training_evaluator(cfg) if cfg.train.eval_every else None
        return cfg, train(cfg, out, preview=write_sample_grid, evaluate=evaluate), out
    result = train_in_processes(
        config_path(DEMO_CONFIGS[task]), overrides, out, processes, stop_step=cfg.train.max_steps
    )
    return cfg, result, out


def _warn_if_machine_dependent(cfg: Any, task: str, processes: int) -> None:
    """A time cap makes the demo's result depend on the machine's speed; another process count changes it."""
    if cfg.train.max_minutes is not None:
        warnings.warn(
            f"training stops after {cfg.train.max_minutes:g} minutes if its {cfg.train.max_steps} steps are not "
            "done by then, so the result depends on this machine's speed (without --minutes every machine trains "
            "the same model)",
            stacklevel=2,
        )
    if processes != DEMO_PROCESSES[task]:
        warnings.warn(
            f"{processes} training processes instead of the {task} demo's {DEMO_PROCESSES[task]} round "
            "differently, so the weights (and scores) differ slightly from a default demo's",
            stacklevel=2,
        )


def demo_metrics(
    task: str, cfg: Any, result: Any, pipe: Any, prompts: list[str], scores: Any, *, eval_seconds: float
) -> dict[str, Any]:
    """The demo's metrics.json: oracle accuracy, training and sampling settings."""
    from ptdit.models.registry import count_parameters

    return {
        "task": task,
        "dataset": cfg.data.dataset,
        "oracle_accuracy": round(float(scores.mean()), 4),
        "train_seconds": round(result.train_seconds, 1),
        "max_steps": cfg.train.max_steps,
        "stopped_by": result.stopped_by,
        "steps": result.steps,
        "samples_seen": result.samples_seen,
        "samples_per_second": round(result.samples_seen / max(result.train_seconds, 1e-9), 2),
        "parameters": count_parameters(pipe.model)["total"],
        "final_loss": round(result.final_loss, 5),
        "eval_prompts": len(prompts),
        "eval_seconds": round(eval_seconds, 1),
        "sampler": pipe.config.sampler,
        "sampling_steps": pipe.config.steps,
        "cfg_scale": pipe.config.cfg_scale,
        "checkpoint": str(result.checkpoint),
        "example_prompt": prompts[0],
    }


def _clear_previous_run(out: Path) -> None:
    """A demo always starts from nothing, but only a folder that an earlier `ptdit demo` made is removed: one with
    the demo's marker file or report. Anything else (another training run, other files) is refused."""
    from ptdit.train.lock import check_not_busy

    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is a file; choose another --out")
    if not any(out.iterdir()):
        out.rmdir()
        return
    if not ((out / DEMO_MARKER).is_file() or (out / "report.html").is_file()):
        raise FileExistsError(
            f"--out {out} exists and was not made by `ptdit demo` (a training run or other files); it is kept: "
            "choose another --out, or remove it yourself"
        )
    check_not_busy(out)  # a demo still training there
    shutil.rmtree(out)


def run(args: argparse.Namespace) -> int:
    try:
        result = run_demo(
            args.task, minutes=args.minutes, out_dir=args.out, overrides=args.overrides, processes=args.processes
        )
    except DemoStopped as stop:
        print(f"ptdit demo: {stop}", file=sys.stderr)
        return 128 + int(getattr(signal, stop.signal_name))  # the shell's status for a process ended by it
    m = result.metrics
    print(
        f"\noracle caption-adherence accuracy: {m['oracle_accuracy']:.3f} on {m['eval_prompts']} prompts "
        f"({m['steps']} steps in {m['train_seconds']:.0f} s, {m['samples_per_second']:.1f} samples/s, "
        f"{m['parameters']:,} parameters)"
    )
    if m["stopped_by"] == "max_minutes":
        print(f"training stopped by the --minutes cap after {m['steps']} of {m['max_steps']} steps")
    bench, fd = m["benchmark"], m["shapes_fd"]
    lo, hi = bench["overall"]["ci95"]
    fd_text = f"; shapes-FD {fd['shapes_fd']:.3f} (real-vs-real {fd['real_floor']:.3f})" if fd else ""
    overall = f"overall {bench['overall']['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f})"
    print(f"oracle benchmark {bench['suite']}: {overall}{fd_text}")
    print(f"report:  {result.report}")
    print(f"metrics: {result.out_dir / 'metrics.json'}")
    print(f'sample more: {ptdit_command()} sample --checkpoint {m["checkpoint"]} --prompt "{m["example_prompt"]}"')
    return 0
