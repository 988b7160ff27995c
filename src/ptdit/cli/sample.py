"""`ptdit sample`: generate images, videos or multi-view sets from a checkpoint folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate images / videos / multi-view sets from a checkpoint",
        description="Loads config.json + weights (EMA weights when present) and the text encoder and VAE the "
        "checkpoint names, then samples. Defaults (steps, cfg, sampler, size) come from the checkpoint.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint folder (config.json + weights), or a training run folder (uses its latest)",
    )
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--prompts-file", help="a UTF-8 text file with one prompt per line")
    p.add_argument("--negative-prompt", help="negative prompt for classifier-free guidance (default: empty)")
    p.add_argument("--class-label", type=int, action="append", default=[], help="class label (class models)")
    p.add_argument("--steps", type=int, help="sampling steps")
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--sampler", help="flow-euler | flow-heun | ddim | dpmpp-2m")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    p.add_argument("--height", type=int, help="pixel height")
    p.add_argument("--width", type=int, help="pixel width")
    p.add_argument("--frames", type=int, help="pixel frames (views for multi-view checkpoints)")
    p.add_argument("--batch-size", type=int, default=4, help="samples per forward batch")
    p.add_argument("--out", default="samples", help="output folder")
    p.add_argument("--text-encoder", help="override the checkpoint's text encoder (folder or hub id)")
    p.add_argument("--vae", help="override the checkpoint's VAE (folder, hub id or 'identity')")
    p.add_argument("--weights", choices=("auto", "ema", "model"), default="auto", help="which weights to load")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.set_defaults(func=run)


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt)
    if args.prompts_file:
        path = Path(args.prompts_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(f"prompts file {path} not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read prompts file {path}: {err}") from None
        prompts += [line.strip() for line in lines if line.strip()]
        if not prompts:
            raise ValueError(f"prompts file {path} holds no prompts (one per line)")
    return prompts


def quiet_hub_progress_bars() -> None:
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass


def check_args(args: argparse.Namespace) -> None:
    from ptdit.sampling.solvers import SAMPLERS

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.sampler is not None and args.sampler not in SAMPLERS:
        raise ValueError(f"unknown --sampler {args.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    for name in ("height", "width", "frames"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be positive, got {value}")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ptdit.sampling.media import write_samples
    from ptdit.sampling.pipeline import GenerationPipeline, resolve_checkpoint

    # 1. Validate everything before any work, so bad input leaves no files behind.
    check_args(args)
    if not sys.stderr.isatty():  # keep logs and one-line errors free of the hub libraries' loading bars
        quiet_hub_progress_bars()
    prompts = read_prompts(args)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    weights = {"auto": None, "ema": "ema.safetensors", "model": "model.safetensors"}[args.weights]
    pipe = GenerationPipeline.from_checkpoint(
        args.checkpoint, weights=weights, text_encoder=args.text_encoder, vae=args.vae, device=args.device, dtype=dtype
    )
    cfg = pipe.config
    req = pipe.request(args.height, args.width, args.frames)
    items: list = prompts if cfg.task in ("t2i", "t2v", "t2mv") else list(args.class_label)
    if cfg.task == "uncond":
        items = [None] * max(len(prompts), 1)
    if not items:
        what = "--prompt or --prompts-file" if cfg.task != "class" else "--class-label"
        raise ValueError(f"this {cfg.task} checkpoint needs {what}")
    if cfg.task == "class":
        pipe.check_class_labels(items)  # before any sampling
    steps = cfg.steps if args.steps is None else args.steps
    scale = cfg.cfg_scale if args.cfg is None else args.cfg
    sampler = args.sampler or cfg.sampler

    # 2. Sample in batches; sample i always uses seed + i.
    chunks = []
    batches = range(0, len(items), args.batch_size)
    for start in tqdm(batches, desc="batches", unit="batch", disable=len(batches) == 1 or not sys.stderr.isatty()):
        part = items[start : start + args.batch_size]
        chunks.append(
            pipe(
                part if cfg.task in ("t2i", "t2v", "t2mv") else None,
                class_labels=part if cfg.task == "class" else None,
                negative_prompt=args.negative_prompt,
                steps=steps,
                cfg_scale=scale,
                sampler=sampler,
                seed=args.seed + start,
                height=req.height,
                width=req.width,
                frames=req.frames,
                progress=sys.stderr.isatty(),
            )
        )
    pixels = torch.cat(chunks)

    # 3. Write files with their metadata.
    kind = "image" if req.frames == 1 else ("multiview" if cfg.task == "t2mv" else "video")
    records = [
        {
            "prompt": item if cfg.task in ("t2i", "t2v", "t2mv") else None,
            "class_label": item if cfg.task == "class" else None,
            "negative_prompt": (cfg.negative_prompt if args.negative_prompt is None else args.negative_prompt)
            if cfg.task != "class"
            else None,
            "seed": args.seed + i,
            "steps": steps,
            "cfg": scale,
            "sampler": sampler,
            "height": req.height,
            "width": req.width,
            "frames": req.frames,
            "window_size": list(req.window_size) if req.window_size else None,
            "checkpoint": str(resolve_checkpoint(args.checkpoint).resolve()),
        }
        for i, item in enumerate(items)
    ]
    written = write_samples(pixels, Path(args.out), records, kind=kind, fps=cfg.fps)
    print(f"wrote {len(items)} {kind} sample(s) to {args.out}/ ({len(written)} files; grid: {args.out}/grid.png)")
    return 0
