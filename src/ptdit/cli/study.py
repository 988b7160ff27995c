"""`ptdit study ablations | efficiency | attention`: the paper's claims tested in miniature (docs/study.md).

Each writes JSON, PNG plots and report.html under `--out`; `--quick` checks the plumbing in minutes, the default
(full) mode is sized for a 2-core CPU (docs/study.md#time). Finished runs (their result.json) are not redone, so an
interrupted study continues where it stopped when run again with the same `--out`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ptdit.cli.args import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="the paper's claims in miniature: ablations, efficiency, attention")
    studies = p.add_subparsers(dest="study", required=True, metavar="STUDY")
    a = studies.add_parser("ablations", help="Table 2 in miniature: every variant, 2+ seeds, vs the paper's FIDs")
    a.add_argument("--variant", action="append", default=[], help="only this variant (repeatable; default: all)")
    _common(a, "runs/study-ablations")
    a.set_defaults(func=run_ablations)
    e = studies.add_parser("efficiency", help="PT-DiT vs DiT / PixArt-alpha: quality against FLOPs and wall-clock")
    e.add_argument("--profile", choices=["cpu", "gpu"], default="cpu", help="model and step sizes (default cpu)")
    e.add_argument(
        "--scale", action="append", default=[], help="only this token count, e.g. 256-tokens (repeatable; default all)"
    )
    _common(e, "runs/study-efficiency")
    e.set_defaults(func=run_efficiency)
    t = studies.add_parser("attention", help="window structure of full attention (Fig. 2); PT-DiT branch shares")
    _common(t, "runs/study-attention")
    t.set_defaults(func=run_attention)


def _common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--out", default=default_out, help=f"output folder (default {default_out}); reruns resume")
    p.add_argument("--quick", action="store_true", help="tiny sizes and steps: checks the plumbing in minutes")
    p.add_argument("--steps", type=positive_int, help="override the training steps of every run")
    p.add_argument("--seed", type=int, action="append", default=[], help="seed (repeatable; default 0 and 1)")


def run_ablations(args: argparse.Namespace) -> int:
    from ptdit.study.ablations import ablation_profile
    from ptdit.study.ablations import run_ablations as run
    from ptdit.study.variants import get_variants

    profile = ablation_profile("quick" if args.quick else "full", steps=args.steps, seeds=args.seed)
    summary = run(Path(args.out), profile, get_variants(args.variant))
    for row in summary["variants"]:
        fd, acc = row["shapes_fd"], row["oracle"]
        print(f"{row['label']:24s} shapes-FD {fd['mean']:8.3f} +- {fd['std']:.3f}   oracle {acc['mean']:.3f}")
    corr = summary["rank_correlation"]["overall"]
    print(f"Spearman vs paper FID: shapes-FD {corr['shapes_fd']}, oracle {corr['oracle']}")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def run_efficiency(args: argparse.Namespace) -> int:
    from ptdit.study.efficiency import PAIRS, efficiency_profile, select_scales
    from ptdit.study.efficiency import run_efficiency as run

    settings = efficiency_profile(args.profile, quick=args.quick, steps=args.steps, seeds=args.seed)
    summary = run(Path(args.out), select_scales(settings, args.scale))
    for scale in summary["scales"]:
        for base, ratio in scale["ratios"].items():
            shown = ", ".join(f"{k} {v:.3g}" for k, v in ratio.items() if v is not None)
            print(f"{scale['name']}: {PAIRS[base][0]} / {base}: {shown}")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def run_attention(args: argparse.Namespace) -> int:
    from ptdit.study.attention import attention_profile
    from ptdit.study.attention import run_attention_study as run

    summary = run(Path(args.out), attention_profile(quick=args.quick, steps=args.steps, seeds=args.seed))
    for row in summary["baseline"]["layers"]:
        if tuple(row["window"]) != (1, 2, 2):
            continue
        print(
            f"layer {row['layer']} t={row['timestep']:g}: same-window {row['same_window']:.3f} vs cross "
            f"{row['cross_window']:.3f}, in-window mass {row['in_window_mass']:.3f} (uniform {row['uniform_mass']:.3f})"
        )
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0
