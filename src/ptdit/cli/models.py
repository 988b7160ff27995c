"""`ptdit models`: every preset with its parameter count, counted on the meta device (instant, no memory)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model presets and their parameter counts")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def describe_presets() -> list[dict[str, Any]]:
    from ptdit.models.registry import build_model, count_parameters
    from ptdit.presets.models import MODEL_PRESETS, PAPER_PARAMETERS, get_preset

    rows = []
    for name in MODEL_PRESETS:
        config = get_preset(name)
        counts = count_parameters(build_model(config, device="meta"))
        rows.append(
            {
                "name": name,
                "arch": config.arch,
                "total_parameters": counts["total"],
                "trainable_parameters": counts["trainable"],
                "depth": config.depth,
                "width": config.dim,
                "heads": config.num_heads,
                "head_dim": config.head_dim,
                "patch_size": config.patch_size,
                "conditioning": config.conditioning,
                "window_size": list(config.window_size) if hasattr(config, "window_size") else None,
                "paper_parameters": PAPER_PARAMETERS.get(name),
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = describe_presets()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<20} {'params':>15} {'trainable':>15} {'depth':>5} {'width':>5} {'heads':>5}  {'paper':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        paper = f"{r['paper_parameters'] / 1e6:.0f}M" if r["paper_parameters"] else ""
        print(
            f"{r['name']:<20} {r['total_parameters']:>15,} {r['trainable_parameters']:>15,} "
            f"{r['depth']:>5} {r['width']:>5} {r['heads']:>5}  {paper:>8}"
        )
    return 0
