"""`ptdit convert-official`: the authors' released pipeline (or only its network) -> a ptdit folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-official",
        help="convert the authors' released pipeline (or PT-DiT weights) to a ptdit folder",
        description="With the reference's whole inference config (inference_model_image.json: predictor, "
        "diffusion, ae, text_encoder, tokenizer sections), writes one self-contained pipeline folder (network, "
        "CausalVAE, T5) that `ptdit sample --checkpoint DIR` uses with no other flag. With only the predictor's "
        "constructor config, writes the network alone. Weights: .safetensors, or .pt/.pth/.ckpt read with "
        "weights_only=True. Nothing is written unless every key and shape fits.",
    )
    p.add_argument("--weights", required=True, help="predictor state dict (.safetensors, .pt, .pth, .ckpt)")
    p.add_argument(
        "--config",
        help="the reference inference config (whole pipeline) or the predictor's constructor config "
        "(default: the safetensors file's metadata, if present)",
    )
    p.add_argument("--vae-weights", help="CausalVAE weights (default: the config's ae.from_pretrained)")
    p.add_argument(
        "--vae-weights-key",
        default="auto",
        help="where a VAE .ckpt keeps its state dict: auto (model, then state_dict, then ema_state_dict), or a key",
    )
    p.add_argument(
        "--text-encoder", help="folder with T5 and its tokenizer (default: the config's text_encoder.from_pretrained)"
    )
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a ptdit checkpoint already at --out")
    p.add_argument("--dtype", choices=("keep", "fp32", "bf16", "fp16"), default="keep", help="cast the weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ptdit.interop.official_pipeline import convert_official_pipeline, is_full_inference_config
    from ptdit.io import check_output_dir

    check_output_dir(args.out, overwrite=args.overwrite)
    dtype = {"keep": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    if args.config and is_full_inference_config(args.config):
        out = convert_official_pipeline(
            args.config, args.weights, args.out, vae_weights=args.vae_weights, text_encoder=args.text_encoder,
            dtype=dtype, vae_weights_key=args.vae_weights_key,
        )  # fmt: skip
        _describe(out)
        print(f'sample it: ptdit sample --checkpoint {out} --prompt "..."')
        return 0
    if args.vae_weights or args.text_encoder:
        raise ValueError(
            "--vae-weights and --text-encoder need the reference's whole inference config as --config "
            "(inference_model_image.json with its ae, text_encoder and tokenizer sections)"
        )
    from ptdit.interop.official import convert_official

    out = convert_official(args.weights, args.config, args.out, dtype=dtype)
    _describe(out)
    print(f"load it with: ptdit.load_model({str(out)!r})")
    return 0


def _describe(out) -> None:
    from ptdit.config import config_from_dict
    from ptdit.models.registry import build_model, count_parameters, read_checkpoint_config

    c = config_from_dict(read_checkpoint_config(out)["model"])
    model = build_model(c, device="meta")
    print(
        f"wrote {out}: PT-DiT depth {c.depth}, width {c.dim}, {count_parameters(model)['total']:,} parameters, "
        f"window {c.window_size}"
    )
