"""`ptdit train`: config file + overrides -> train() (launch with torchrun for several processes)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a config file (configs/*.yaml)",
        description="Trains from a YAML config. Several processes: torchrun --nproc_per_node=N -m ptdit train ...",
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
        type=int,
        help="stop after this many total steps (the LR schedule still spans "
        "train.max_steps, so a later --resume continues the same run)",
    )
    p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl, loss.png, samples/")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptdit.eval.during_training import make_training_evaluator
    from ptdit.eval.previews import write_sample_grid
    from ptdit.train.config import load_train_config
    from ptdit.train.loop import train

    if args.max_steps is not None and args.max_steps < 0:
        raise ValueError(f"--max-steps must be >= 0, got {args.max_steps}")
    cfg = load_train_config(args.config, args.overrides)
    evaluate = make_training_evaluator(cfg) if cfg.train.eval_every else None  # validates before training
    result = train(
        cfg, args.out, resume=args.resume, stop_at=args.max_steps, preview=write_sample_grid, evaluate=evaluate
    )
    if result.checkpoint is not None:
        print(
            f"trained to step {result.steps} ({result.samples_seen} samples, {result.train_seconds:.0f} s); "
            f"final loss {result.final_loss:.4f}; checkpoint {result.checkpoint}"
        )
        print(f"sample it: ptdit sample --checkpoint {result.checkpoint} --prompt '...'")
    return 0
