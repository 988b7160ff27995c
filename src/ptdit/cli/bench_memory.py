"""`ptdit bench memory`: peak memory of one training step per model, size and frame count, estimated on fake
tensors (nothing is allocated), with and without activation checkpointing; growth with the token count."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def estimate_rows(args: argparse.Namespace, names: list[str]) -> list[dict[str, Any]]:
    """One row per (frames, resolution, model, checkpointing): the estimate plus the step's analytic MACs."""
    from tqdm import tqdm

    from ptdit.bench.harness import BenchSettings, bench_config
    from ptdit.bench.memory import MemorySettings, estimate_training_memory, measure_training_memory
    from ptdit.eval.flops import analytic_macs, model_window, token_grid

    modes = [args.checkpointing] if args.checkpointing is not None else [False, True]
    jobs = [(f, r, n, c) for f in args.frames for r in args.resolution for n in names for c in modes]
    window = tuple(args.window) if args.window else None
    overrides = BenchSettings(resolution=1, depth=args.depth, width=args.width, heads=args.heads)
    device = args.device or ("cpu" if args.measure else "cuda")
    rows = []
    for frames, resolution, name, ckpt in tqdm(jobs, desc="memory", unit="run", disable=not sys.stderr.isatty()):
        config = bench_config(name, overrides)
        settings = MemorySettings(
            resolution=resolution, frames=frames, batch=args.batch or 1, precision=args.precision,
            checkpointing=ckpt, foreach=args.foreach, text_tokens=args.text_tokens, window=window, device=device,
        )  # fmt: skip
        row = estimate_training_memory(name, config, settings).to_dict()
        row["device"] = device
        grid = token_grid(resolution, frames, patch_size=config.patch_size)
        win = model_window(config, resolution, frames, window)
        macs = analytic_macs(config, grid, window=win, batch=args.batch or 1, text_tokens=args.text_tokens)
        # Checkpointing runs each block's forward again in the backward pass.
        row["gmac_step"] = (macs.forward_backward() + (macs.forward if ckpt else 0)) / 1e9
        row["fits"] = row["peak_gib"] <= args.budget
        if args.measure:  # the same steps for real, on `device`: small sizes only
            measured = measure_training_memory(config, settings)
            row.update({f"measured_{k}": v for k, v in measured.items()})
            row["estimate_over_measured"] = row["peak_bytes"] / measured["allocator_peak_bytes"]
        rows.append(row)
    return rows


def series_key(row: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[str, bool, str]:
    """(model, checkpointing, what stays fixed): a series runs over resolutions, or over frames when the rows
    have one resolution and several frame counts."""
    over_frames = len({r["resolution"] for r in rows}) == 1 and len({r["frames"] for r in rows}) > 1
    if over_frames:
        return row["model"], row["checkpointing"], f"{row['resolution']} px"
    return row["model"], row["checkpointing"], "images" if row["frames"] == 1 else f"{row['frames']} frames"


def growth(rows: list[dict[str, Any]], key: str) -> dict[tuple[str, bool, str], dict[str, float]]:
    """Fitted exponent k of `key` ~ tokens^k per series (`series_key`; least squares in log-log), and the local
    exponent between the two largest sizes."""
    groups: dict[tuple[str, bool, str], list[tuple[float, float]]] = {}
    for r in rows:
        groups.setdefault(series_key(r, rows), []).append((r["tokens"], r[key]))
    out = {}
    for group, pts in groups.items():
        pts = sorted(set(pts))
        if len(pts) < 2:
            continue
        xs, ys = [math.log(x) for x, _ in pts], [math.log(max(y, 1e-30)) for _, y in pts]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        fit = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        out[group] = {"fit": fit, "last": (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])}
    return out


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}"


def _print_measured(rows: list[dict[str, Any]]) -> None:
    """The validation columns of --measure: the CPU allocator's and the resident-set peaks against the estimate."""
    print(
        f"{'res':>5} {'frames':>6} {'tokens':>6} {'model':<18} {'ckpt':<4} {'measured: allocator MiB':>24} "
        f"{'RSS MiB':>8} {'estimate MiB':>12} {'estimate / allocator':>20}"
    )
    for r in rows:
        rss = "-" if r["measured_rss_peak_bytes"] is None else f"{r['measured_rss_peak_bytes'] / 2**20:.1f}"
        print(
            f"{r['resolution']:>5} {r['frames']:>6} {r['tokens']:>6} {r['model']:<18} "
            f"{'yes' if r['checkpointing'] else 'no':<4} {r['measured_allocator_peak_bytes'] / 2**20:>24.2f} "
            f"{rss:>8} {r['peak_bytes'] / 2**20:>12.2f} {r['estimate_over_measured']:>20.4f}"
        )


def print_memory_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    r0 = rows[0]
    print(
        f"peak memory of one training step on {r0['device']} (estimated on fake tensors), {r0['precision']}, "
        f"batch {r0['batch']}, AdamW {'multi-tensor' if r0['foreach'] else 'per-tensor'}, EMA; GiB = 2^30 bytes; "
        f"fits = peak <= "
        f"{args.budget:g} GiB"
    )
    header = (
        f"{'res':>5} {'frames':>6} {'tokens':>6} {'model':<18} {'ckpt':<4} {'params':>7} {'state':>6} "
        f"{'saved act':>9} {'peak':>7} {'at':<14} {'TMAC step':>9} {'fits':<4}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        state = r["weight_bytes"] + r["gradient_bytes"] + r["optimizer_bytes"] + r["ema_bytes"]
        print(
            f"{r['resolution']:>5} {r['frames']:>6} {r['tokens']:>6} {r['model']:<18} "
            f"{'yes' if r['checkpointing'] else 'no':<4} {r['parameters'] / 1e9:>6.3f}B {_gib(state):>6} "
            f"{_gib(r['saved_activation_bytes']):>9} {_gib(r['peak_bytes']):>7} {r['peak_phase']:<14} "
            f"{r['gmac_step'] / 1e3:>9.1f} {'yes' if r['fits'] else 'NO':<4}"
        )
    print(
        "\nstate: fp32 weights + gradients + AdamW (2 states) + EMA; saved act: what the forward pass leaves alive "
        "for the backward (bf16 weight copies included under autocast); peak: maximum of live tensor bytes over "
        "two steps; at: the phase of the peak; TMAC step: forward + backward (+ the recomputed forward when "
        "checkpointing)"
    )
    if "estimate_over_measured" in r0:
        print()
        _print_measured(rows)
    exponents = {k: growth(rows, k) for k in ("peak_bytes", "saved_activation_bytes", "gmac_step")}
    if exponents["peak_bytes"]:
        print("\ngrowth with the token count (exponent k of tokens^k: least-squares fit / between the two largest)")
        for (name, ckpt, fixed), peak in exponents["peak_bytes"].items():
            act = exponents["saved_activation_bytes"][(name, ckpt, fixed)]
            macs = exponents["gmac_step"][(name, ckpt, fixed)]
            print(
                f"  {name:<18} ckpt {'yes' if ckpt else 'no ':<3} {fixed:>10}: peak {peak['fit']:.2f} / "
                f"{peak['last']:.2f}, saved activations {act['fit']:.2f} / {act['last']:.2f}, step MACs "
                f"{macs['fit']:.2f} / {macs['last']:.2f}"
            )


def write_memory_plot(rows: list[dict[str, Any]], path: str, budget: float) -> None:
    """Log-log PNG against tokens, one line per series (`series_key`): left the estimated peak (GiB), right the
    step's MACs (forward + backward, + the recomputed forward with checkpointing), the FLOP side of step time."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    fig, (mem, macs) = plt.subplots(1, 2, figsize=(13, 5))
    for name, ckpt, fixed in dict.fromkeys(series_key(r, rows) for r in rows):
        series = sorted((r for r in rows if series_key(r, rows) == (name, ckpt, fixed)), key=lambda r: r["tokens"])
        tokens = [r["tokens"] for r in series]
        style = {"marker": "o", "linestyle": "--" if ckpt else "-", "label": f"{name}{', ckpt' if ckpt else ''}"}
        mem.plot(tokens, [r["peak_bytes"] / 2**30 for r in series], **style)
        macs.plot(tokens, [r["gmac_step"] / 1e3 for r in series], **style)
    mem.axhline(budget, color="grey", linewidth=1)
    mem.text(min(r["tokens"] for r in rows), budget * 1.05, f"{budget:g} GiB", color="grey", fontsize=8)
    fixed = sorted({series_key(r, rows)[2] for r in rows})
    mem.set(ylabel="peak training-step memory, GiB", title=f"Estimated peak memory ({', '.join(fixed)})")
    macs.set(ylabel="TMAC per training step", title=f"Step MACs, the time side ({rows[0]['precision']})")
    for ax in (mem, macs):
        ax.set(xscale="log", yscale="log", xlabel="tokens")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from ptdit.io import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def run_memory(args: argparse.Namespace) -> int:
    from ptdit.cli.bench import MEMORY_MODELS
    from ptdit.presets.models import MODEL_PRESETS

    names = args.model if args.model_given else list(MEMORY_MODELS)
    unknown = [m for m in names if m not in MODEL_PRESETS]
    if unknown:
        raise ValueError(
            f"bench memory takes presets only, not {', '.join(unknown)}; available: {', '.join(MODEL_PRESETS)}"
        )
    if args.budget <= 0:
        raise ValueError(f"--budget must be positive (GiB), got {args.budget}")
    plot = None
    if args.plot:
        from ptdit.cli.flops import plot_path

        plot = str(plot_path(args.plot, args.overwrite, stem="memory"))
    rows = estimate_rows(args, names)
    vae = vae_rows(args) if args.vae else []
    if plot:
        write_memory_plot(rows, plot, args.budget)
        print(f"wrote {plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows + vae, indent=2))
        return 0
    print_memory_table(rows, args)
    for v in vae:
        clip = f" x {v['pixel_frames']} frames" if v["frames"] > 1 else ""
        print(
            f"\nVAE encoding (released CausalVAE, tiled, bf16 weights {_gib(v['vae_weight_bytes'])} GiB) of one "
            f"{v['resolution']} px{clip} sample: peak "
            f"{_gib(v['vae_encode_peak_bytes'])} GiB, before the forward pass (adds to the training state only)"
        )
    return 0


def vae_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The per-step latent encoding's peak for each (resolution, frames) of the run."""
    from ptdit.bench.memory import estimate_vae_encode_memory, vae_encode_frames

    return [
        {"what": "vae_encode", "resolution": r, "frames": f, "pixel_frames": vae_encode_frames(f)}
        | estimate_vae_encode_memory(r, f)
        for f in args.frames
        for r in args.resolution
    ]
