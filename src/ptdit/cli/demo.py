"""`ptdit demo`: the main job. Trains a small PT-DiT on a built-in dataset for a few minutes on this machine,
samples with the EMA weights, scores the samples with the dataset's oracle and writes runs/demo/report.html."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a small PT-DiT for ~5 minutes and write an HTML report")
    p.add_argument(
        "--task",
        choices=("t2i", "t2v", "t2mv"),
        default="t2i",
        help="t2i: shapes images; t2v: moving-shapes clips; t2mv: turntable views",
    )
    p.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    p.add_argument("--out", help="run folder (default runs/demo, or runs/demo-TASK)")
    p.add_argument("--processes", type=int, help="training processes (torchrun + DDP, one thread each); default 1")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the demo config (configs/demo-TASK.yaml)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptdit.demo import run_demo

    result = run_demo(
        args.task, minutes=args.minutes, out_dir=args.out, overrides=args.overrides, processes=args.processes
    )
    m = result.metrics
    print(
        f"\noracle caption-adherence accuracy: {m['oracle_accuracy']:.3f} on {m['eval_prompts']} prompts "
        f"({m['steps']} steps in {m['train_seconds']:.0f} s, {m['samples_per_second']:.1f} samples/s, "
        f"{m['parameters']:,} parameters)"
    )
    print(f"report:  {result.report}")
    print(f"metrics: {result.out_dir / 'metrics.json'}")
    print(f'sample more: ptdit sample --checkpoint {m["checkpoint"]} --prompt "{m["example_prompt"]}"')
    return 0
