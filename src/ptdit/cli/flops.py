"""`ptdit flops`: analytic and counted FLOPs of PT-DiT and its baselines, tables, Eq. 4 and a plot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ptdit.cli.args import AccumulateList

DEFAULT_MODELS = ("PT-DiT/XL", "DiT-XL/2", "PixArt-alpha-XL/2")
DEFAULT_RESOLUTIONS = (256, 512, 1024, 2048)
COUNTER_TOLERANCE = 0.01  # the analytic and counted totals must agree within 1%


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flops",
        help="FLOPs of PT-DiT vs DiT vs PixArt-alpha (analytic per branch, checked by torch's FLOP counter)",
        description="Forward and forward+backward MACs per model, resolution and frame count, with and without "
        "the attention matmuls, in two conventions: MAC (1 multiply-accumulate = 1 FLOP, the DiT / PT-DiT "
        "papers' GFLOPs) and 2 x MAC. Each analytic total is checked against torch's FlopCounterMode run on the "
        "meta device (exits with an error if they differ by more than 1%%). PT-DiT uses the paper's window per "
        "resolution (8 x 8 windows per frame; p_f = 4 for video) unless --window is given; where the window does "
        "not tile the token grid, the grid is padded and the padding tokens and their extra MACs are reported.",
    )
    p.add_argument(
        "--model", nargs="+", action=AccumulateList, default=list(DEFAULT_MODELS), metavar="NAME", help="model presets"
    )
    p.add_argument(
        "--resolution",
        nargs="+",
        action=AccumulateList,
        type=int,
        default=list(DEFAULT_RESOLUTIONS),
        metavar="R",
        help="image side, px",
    )
    p.add_argument(
        "--frames",
        nargs="+",
        action=AccumulateList,
        type=int,
        default=[1],
        metavar="F",
        help="video frames (1 = image); latents 4x shorter",
    )
    p.add_argument("--window", nargs=3, type=int, metavar=("PF", "PH", "PW"), help="PT-DiT window (token units)")
    p.add_argument("--text-tokens", type=int, default=120, help="caption length of text-conditional models")
    p.add_argument("--batch", type=int, default=1, help="samples per forward pass")
    p.add_argument("--no-verify", action="store_true", help="skip the FlopCounterMode cross-check")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per (model, resolution, frames)")
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="write a plot of forward GMACs against resolution: a .png/.svg/.pdf file, or a folder (flops.png in it)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    from ptdit.presets.models import MODEL_PRESETS

    unknown = [m for m in args.model if m not in MODEL_PRESETS]
    if unknown:
        raise ValueError(f"unknown model preset(s) {', '.join(unknown)}; available: {', '.join(MODEL_PRESETS)}")
    for name, values in (("--resolution", args.resolution), ("--frames", args.frames)):
        if any(v < 1 for v in values):
            raise ValueError(f"{name} values must be positive, got {values}")
    if args.window is not None and any(w < 1 for w in args.window):
        raise ValueError(f"--window sizes must be positive, got {args.window}")
    if args.text_tokens < 1 or args.batch < 1:
        raise ValueError(f"--text-tokens and --batch must be positive, got {args.text_tokens} and {args.batch}")


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def plot_path(given: str, overwrite: bool = False, *, stem: str = "flops") -> Path:
    """Where `--plot` writes: inside a folder as `stem`.png (`stem`-N.png if taken), else the file itself, which
    must not exist yet unless `overwrite`."""
    from ptdit.io import check_writable
    from ptdit.optional import require

    path = Path(given)
    if path.is_dir() or given.endswith(("/", "\\")):
        path = path / f"{stem}.png"
        n = 1
        while path.exists():
            path, n = path.with_name(f"{stem}-{n}.png"), n + 1
    elif path.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"--plot {given}: give a file ending in {', '.join(PLOT_SUFFIXES)}, or an existing folder")
    elif path.exists() and not overwrite:
        raise FileExistsError(f"--plot {given} exists; pass --overwrite to replace it, or give another name")
    check_writable(path.parent, "--plot")
    require("matplotlib", "eval", purpose="--plot")
    return path


def compute_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One flops_summary row per (frames, resolution, model); raises if the two counts disagree."""
    from tqdm import tqdm

    from ptdit.eval.flops import flops_summary
    from ptdit.presets.models import get_preset

    jobs = [(f, r, m) for f in args.frames for r in args.resolution for m in args.model]
    rows = []
    for frames, resolution, name in tqdm(jobs, desc="flops", leave=False, disable=not sys.stderr.isatty()):
        window = tuple(args.window) if args.window else None
        row = flops_summary(
            name,
            get_preset(name),
            resolution,
            frames,
            window=window,
            batch=args.batch,
            text_tokens=args.text_tokens,
            verify=not args.no_verify,
        )
        if row.get("counted_rel_diff", 0.0) > COUNTER_TOLERANCE:
            raise ValueError(
                f"{name} at {resolution} px, {frames} frames: analytic {row['gmac']:.3f} GMAC vs counted "
                f"{row['counted_gmac']:.3f} GMAC differ by {row['counted_rel_diff']:.2%} (> 1%)"
            )
        rows.append(row)
    return rows


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"


def print_tables(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    text = f"text tokens {args.text_tokens} (text-conditional models), batch {args.batch}"
    for title, unit, scale in (
        ("MAC convention: 1 multiply-accumulate = 1 FLOP (the DiT / PT-DiT papers' 'GFLOPs')", "GMAC", 1),
        ("2 x MAC convention: FLOPs = 2 x multiply-accumulates", "GFLOP", 2),
    ):
        print(f"\n{title}; {text}")
        header = (
            f"{'res':>5} {'frames':>6} {'tokens':>7} {'model':<18} {'window':<9} {'fwd':>10} {'fwd no-attn':>11} "
            f"{'fwd+bwd':>10} {'f+b no-attn':>11} {'vs first':>8}"
        )
        print(f"{header}   [{unit}]")
        print("-" * (len(header) + len(unit) + 5))
        first: dict[tuple[int, int], float] = {}
        for r in rows:
            key = (r["resolution"], r["frames"])
            first.setdefault(key, r["gmac"])
            window = "x".join(map(str, r["window"])) if r["window"] else "global"
            print(
                f"{r['resolution']:>5} {r['frames']:>6} {r['tokens']:>7} {r['model']:<18} {window:<9} "
                f"{_fmt(scale * r['gmac']):>10} {_fmt(scale * r['gmac_linear']):>11} "
                f"{_fmt(scale * r['gmac_fwd_bwd']):>10} {_fmt(scale * r['gmac_fwd_bwd_linear']):>11} "
                f"{r['gmac'] / first[key]:>7.2f}x"
            )
    if "counted_rel_diff" in rows[0]:
        worst = max(r["counted_rel_diff"] for r in rows)
        print(f"\nFlopCounterMode (meta device, MATH attention) vs analytic totals: max rel. diff {worst:.2e}")


def print_attention_split(rows: list[dict[str, Any]]) -> None:
    print("\nAttention matmuls (QK^T + AV), forward GMAC: visual = every attention except text cross-attention")
    print(f"{'res':>5} {'frames':>6} {'model':<18} {'visual':>11} {'text':>9} {'share of fwd':>12}")
    for r in rows:
        share = (r["gmac_attention"] + r["gmac_text_attention"]) / r["gmac"]
        print(
            f"{r['resolution']:>5} {r['frames']:>6} {r['model']:<18} {_fmt(r['gmac_attention']):>11} "
            f"{_fmt(r['gmac_text_attention']):>9} {share:>11.1%}"
        )


def print_padding(rows: list[dict[str, Any]]) -> None:
    """Rows whose window does not tile the token grid: the padded grid and what its padding costs."""
    padded = [r for r in rows if r.get("padding_tokens")]
    if not padded:
        return
    print("\nPadding: grids the window does not tile run padded up to whole windows, padded tokens masked")
    header = f"{'res':>5} {'frames':>6} {'model':<18} {'window':<9} {'grid':<10} {'padded':<10} {'+tokens':>8}"
    print(f"{header} {'+fwd GMAC':>10}")
    for r in padded:
        window, grid, pad = ("x".join(map(str, r[k])) for k in ("window", "grid", "padded_grid"))
        print(
            f"{r['resolution']:>5} {r['frames']:>6} {r['model']:<18} {window:<9} {grid:<10} {pad:<10} "
            f"{r['padding_tokens'] / r['tokens']:>7.1%} {_fmt(r['gmac_padding']):>10} ({r['padding_share']:.1%} of fwd)"
        )


def print_crossover(args: argparse.Namespace) -> None:
    from ptdit.eval.flops import crossover_resolution
    from ptdit.presets.models import get_preset

    ptdit_names = [m for m in args.model if get_preset(m).arch == "ptdit"]
    baselines = [m for m in args.model if get_preset(m).arch != "ptdit"]
    if not ptdit_names or not baselines:
        return
    pt = get_preset(ptdit_names[0])
    print(f"\nCrossover (forward MACs, paper windows, equal width {pt.dim} / depth {pt.depth}, step 128 px):")
    for frames in args.frames:
        for name in baselines:
            found = crossover_resolution(pt, get_preset(name), frames=frames, text_tokens=args.text_tokens)
            where = f"from {found} px" if found else "never up to 8192 px"
            print(f"  {ptdit_names[0]} is cheaper than {name} ({frames} frame(s)) {where}")


def print_eq4() -> None:
    from ptdit.eval.flops import eq4_rows

    print("\nEq. 4: attention-matrix cost of PT-DiT relative to full self-attention (computed from the code)")
    print(f"{'res':>5} {'window':<9} {'N':>6} {'p':>4} {'ratio':>8} {'1/p^2+1/p+2p/N':>15} {'paper':>7}")
    for r in eq4_rows():
        window = "x".join(map(str, r["window"]))
        print(
            f"{r['resolution']:>5} {window:<9} {r['tokens']:>6} {r['p']:>4} {r['ratio']:>8.2%} "
            f"{r['closed_form']:>15.4f} {r['paper']:>7.1%}"
        )
    print("(the paper prints 2.3% at 2048; Eq. 4 gives 3.5%, docs/flops.md#eq-4-attention-cost)")


def write_plot(rows: list[dict[str, Any]], path: str) -> None:
    """PNG of forward GMACs (MAC convention) against resolution, one line per (model, frames)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["model"] for r in rows):
        for frames in dict.fromkeys(r["frames"] for r in rows):
            pts = sorted((r["resolution"], r["gmac"]) for r in rows if r["model"] == name and r["frames"] == frames)
            label = name if frames == 1 else f"{name}, {frames} frames"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    resolutions = sorted({r["resolution"] for r in rows})
    ax.set_xticks(resolutions, [str(r) for r in resolutions])  # pixel values, not powers of two
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yscale("log")
    ax.set_xlabel("resolution (px)")
    ax.set_ylabel("forward GFLOPs (1 MAC = 1 FLOP)")
    ax.set_title("Forward cost incl. attention matmuls")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    plot = plot_path(args.plot, args.overwrite) if args.plot else None
    rows = compute_rows(args)
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        write_plot(rows, str(plot))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print_tables(rows, args)
    print_attention_split(rows)
    print_padding(rows)
    print_crossover(args)
    print_eq4()
    if plot is not None:
        print(f"\nwrote {plot}")
    return 0
