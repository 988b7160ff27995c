"""`ptdit train`: config file + overrides -> train() (launch with torchrun for several processes)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ptdit.cli.args import nonnegative_int, ptdit_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a config file (configs/*.yaml)",
        description="Trains from a YAML config. Several processes: torchrun --nproc_per_node=N -m ptdit train ... "
        "Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a checkpoint and exits; --resume continues.",
    )
    p.add_argument("--config", required=True, help="config file, e.g. configs/demo-t2i.yaml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=1e-4 --set model.depth=2 (repeatable)",
    )
    p.add_argument(
        "--max-steps",
        type=nonnegative_int,
        help="stop after this many total steps (the LR schedule still spans "
        "train.max_steps, so a later --resume continues the same run)",
    )
    p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, loss.png, samples/")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue although batch size, data or optimizer settings changed (no longer bit-exact)",
    )
    p.set_defaults(func=run)


def summary(result: Any, cfg: Any) -> list[str]:
    """The lines printed at the end of a run: what was trained, why it stopped, and what to do next."""
    if result.steps == result.start_step:
        return [
            f"nothing to train: the run is already at step {result.steps} (stop step {result.stop_step}); raise "
            "--max-steps, or train.max_steps with --set ... --allow-config-change; checkpoint "
            f"{result.checkpoint}"
        ]
    lines = [
        f"trained to step {result.steps} ({result.samples_seen} samples, {result.train_seconds:.0f} s); "
        f"final loss {result.final_loss:.4f}; checkpoint {result.checkpoint}"
    ]
    if result.stopped_by == "max_minutes":
        lines.append(
            f"stopped at step {result.steps} of {result.stop_step}: the time budget train.max_minutes="
            f"{cfg.train.max_minutes:g} was reached; continue with --resume, or raise it with "
            "--set train.max_minutes=M"
        )
    elif result.stopped_by is not None:
        lines.append(f"stopped at step {result.steps} of {result.stop_step} by {result.stopped_by}; continue with "
                     "--resume")  # fmt: skip
    lines.append(f"sample it: {ptdit_command()} sample --checkpoint {result.checkpoint} --prompt '...'")
    return lines


def run(args: argparse.Namespace) -> int:
    from ptdit.eval.during_training import make_training_evaluator
    from ptdit.eval.previews import write_sample_grid
    from ptdit.train.config import load_train_config
    from ptdit.train.loop import train

    if args.allow_config_change and not args.resume:
        raise ValueError("--allow-config-change only applies with --resume")
    cfg = load_train_config(args.config, args.overrides)
    evaluate = make_training_evaluator(cfg) if cfg.train.eval_every else None  # validates before training
    result = train(
        cfg,
        args.out,
        resume=args.resume,
        stop_at=args.max_steps,
        preview=write_sample_grid,
        evaluate=evaluate,
        allow_config_change=args.allow_config_change,
    )
    if int(os.environ.get("RANK", "0")) == 0 and result.checkpoint is not None:  # one summary under DDP
        for line in summary(result, cfg):
            print(line, file=sys.stdout, flush=True)
    return 0
