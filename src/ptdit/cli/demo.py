"""`ptdit demo`: build a small PT-DiT and run it on random image, video and multi-view latents.

Until the training loop exists this is the main job: it shows the forward contract (shapes), the parameter
count and CPU timing of window + proxy attention on every kind of input.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a small PT-DiT on random latents and print shapes and timing")
    p.add_argument("--dim", type=int, default=128, help="model width")
    p.add_argument("--depth", type=int, default=4, help="number of PT-Blocks")
    p.add_argument("--repeats", type=int, default=3, help="timed forward passes per input")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ptdit.models.registry import build_model, count_parameters

    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    torch.manual_seed(args.seed)
    model = build_model("PT-DiT/Tiny", dim=args.dim, depth=args.depth, num_heads=max(args.dim // 32, 1)).eval()
    counts = count_parameters(model)
    c = model.config
    print(f"PT-DiT: depth {c.depth}, width {c.dim}, {c.num_heads} heads, {counts['total']:,} parameters")
    # (name, latent shape (B, C, F, H, W), window): images keep 8 x 8 windows; video uses p_f = 4.
    cases = [
        ("image 256px", (2, 4, 1, 32, 32), (1, 2, 2)),
        ("image 512px, non-square", (2, 4, 1, 64, 32), (1, 4, 2)),
        ("video 16 latent frames", (1, 4, 16, 32, 32), (4, 2, 2)),
        ("multi-view, 6 views", (1, 4, 6, 32, 32), (2, 2, 2)),
    ]
    context = torch.randn(2, 12, c.context_dim)
    mask = torch.ones(2, 12)
    mask[1, 8:] = 0
    for name, shape, window in tqdm(cases, desc="demo", unit="input", leave=False, disable=not sys.stderr.isatty()):
        B = shape[0]
        x = torch.randn(shape)
        t = torch.rand(B) * 1000
        layout = model.layout(shape, window)
        with torch.inference_mode():
            model(x, t, context[:B], mask[:B], window_size=window)  # warm-up
            start = time.perf_counter()
            for _ in range(args.repeats):
                out = model(x, t, context[:B], mask[:B], window_size=window)
            ms = (time.perf_counter() - start) / args.repeats * 1000
        tqdm.write(
            f"{name:<26} latents {tuple(shape)} -> output {tuple(out.shape)}; token grid {layout.grid}, "
            f"window {window}: {layout.num_windows} windows x {layout.window_tokens} tokens, "
            f"{layout.num_windows} proxies; {ms:.1f} ms/forward"
        )
    print("next: `ptdit models` lists the paper's presets; `make test` runs the test suite")
    return 0
