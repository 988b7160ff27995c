"""`ptdit convert-official`: reference (MindSpeed-MM) weights -> a ptdit checkpoint folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-official",
        help="convert the authors' released PT-DiT weights to config.json + model.safetensors",
        description="Converts a state dict with the reference code's key names (.safetensors, or .pt/.pth read "
        "with weights_only=True) plus the reference constructor config (JSON) into a ptdit checkpoint folder. "
        "Nothing is written unless every key and shape fits.",
    )
    p.add_argument("--weights", required=True, help="reference state dict (.safetensors, .pt, .pth)")
    p.add_argument(
        "--config", help="reference constructor config JSON (default: the safetensors file's metadata, if present)"
    )
    p.add_argument("--out", required=True, help="output checkpoint folder (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a ptdit checkpoint already at --out")
    p.add_argument("--dtype", choices=("keep", "fp32", "bf16", "fp16"), default="keep", help="cast the weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ptdit.config import config_from_dict
    from ptdit.interop.official import convert_official
    from ptdit.io import check_output_dir
    from ptdit.models.registry import build_model, count_parameters, read_checkpoint_config

    check_output_dir(args.out, overwrite=args.overwrite)
    dtype = {"keep": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    out = convert_official(args.weights, args.config, args.out, dtype=dtype)
    c = config_from_dict(read_checkpoint_config(out)["model"])
    model = build_model(c, device="meta")
    print(
        f"wrote {out}/config.json and model.safetensors: PT-DiT depth {c.depth}, width {c.dim}, "
        f"{count_parameters(model)['total']:,} parameters, window {c.window_size}"
    )
    print(f"load it with: ptdit.load_model({str(out)!r})")
    return 0
