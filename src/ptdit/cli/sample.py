"""`ptdit sample`: generate images, videos or multi-view sets from a checkpoint folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ptdit.cli.args import finite_float
from ptdit.optional import optional


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
    p.add_argument("--cfg", type=finite_float, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--sampler", help="flow-euler | flow-heun | ddim | dpmpp-2m")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    p.add_argument("--height", type=int, help="pixel height")
    p.add_argument("--width", type=int, help="pixel width")
    p.add_argument("--frames", type=int, help="pixel frames (views for multi-view checkpoints)")
    p.add_argument("--batch-size", type=int, default=4, help="samples per forward batch")
    p.add_argument(
        "--out", default="samples", help="output folder; earlier samples there are kept (numbering continues)"
    )
    p.add_argument("--overwrite", action="store_true", help="number from 000 again, replacing earlier samples")
    p.add_argument("--text-encoder", help="override the checkpoint's text encoder (folder or hub id)")
    p.add_argument("--vae", help="override the checkpoint's VAE (folder, hub id or 'identity')")
    p.add_argument("--weights", choices=("auto", "ema", "model"), default="auto", help="which weights to load")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--dtype",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="network and VAE dtype (the text encoder stays fp32); auto: bf16 on GPUs and CPUs with bf16 matrix "
        "units (AMX, AVX512-BF16), where it is measured faster, else fp32",
    )
    p.add_argument(
        "--text-encoder-dtype",
        choices=("fp32", "bf16"),
        default="fp32",
        help="text encoder dtype (fp32 as the reference; bf16 halves T5-XXL's 19 GB)",
    )
    p.add_argument(
        "--latents", help="initial noise as a .safetensors file: one (N, C, F', H', W') tensor, one row per sample"
    )
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
    transformers = optional("transformers")
    if transformers is not None:
        transformers.utils.logging.disable_progress_bar()


def check_args(args: argparse.Namespace) -> None:
    from ptdit.io import check_device, check_writable
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
    check_device(args.device, "--device")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is a file; give a folder for the samples")
    check_writable(out)


def check_media(pipe: Any, args: argparse.Namespace) -> None:
    """--frames > 1 needs a checkpoint trained on clips or views, not on images."""
    if args.frames is not None and args.frames > 1 and pipe.config.frames == 1:
        raise ValueError(
            f"--frames {args.frames}: this {pipe.config.task} checkpoint generates single images (it was trained with "
            "frames=1); use a video or multi-view checkpoint, or leave out --frames"
        )


def run(args: argparse.Namespace) -> int:
    from ptdit.precision import torch_dtype
    from ptdit.recipe import get_task
    from ptdit.sampling.media import write_samples
    from ptdit.sampling.pipeline import GenerationPipeline

    # 1. Validate everything before any work, so bad input leaves no files behind. Only the VAE is loaded now:
    #    the text encoder and the network come one at a time below (a released pipeline would not fit together).
    check_args(args)
    if not sys.stderr.isatty():  # keep logs and one-line errors free of the hub libraries' loading bars
        quiet_hub_progress_bars()
    prompts = read_prompts(args)
    dtype = None if args.dtype == "auto" else torch_dtype(args.dtype)
    weights = {"auto": None, "ema": "ema.safetensors", "model": "model.safetensors"}[args.weights]
    pipe = GenerationPipeline.from_checkpoint(
        args.checkpoint, weights=weights, text_encoder=args.text_encoder, vae=args.vae, device=args.device,
        dtype=dtype, load=(), text_encoder_dtype=torch_dtype(args.text_encoder_dtype),
    )  # fmt: skip
    check_media(pipe, args)
    req = pipe.request(args.height, args.width, args.frames)
    items = sample_items(pipe, args, prompts)
    initial = read_latents(args.latents, len(items), req) if args.latents else None
    cfg = pipe.config
    settings = {
        "steps": cfg.steps if args.steps is None else args.steps,
        "cfg": cfg.cfg_scale if args.cfg is None else args.cfg,
        "sampler": args.sampler or cfg.sampler,
    }

    # 2. Encode, denoise and decode in batches; sample i always uses seed + i.
    pixels = sample_in_stages(pipe, args, items, req, settings, initial)

    # 3. Write files with their metadata.
    media = get_task(cfg.task).media if req.frames > 1 else "image"
    records = sample_records(pipe, args, items, req, settings)
    written = write_samples(pixels, Path(args.out), records, kind=media, fps=cfg.fps, overwrite=args.overwrite)
    print(f"wrote {len(items)} {media} sample(s) to {args.out}/ ({len(written)} files; grid: {written[-1]})")
    return 0


def read_latents(path: str, count: int, req: Any) -> Any:
    """Initial noise from a safetensors file: its only tensor (or the one named `latents`), (N, C, F', H', W')."""
    from ptdit.io import load_safetensors

    tensors = load_safetensors(path)
    if "latents" not in tensors and len(tensors) != 1:
        raise ValueError(f"{path} holds {sorted(tensors)}; expected one tensor, or one named 'latents'")
    latents = tensors.get("latents", next(iter(tensors.values())))
    expected = (count, *req.latent_shape)
    if tuple(latents.shape) != expected:
        raise ValueError(
            f"--latents {path} has shape {tuple(latents.shape)}, expected {expected} (one per sample; channels, "
            f"latent frames, height, width for {req.frames} frame(s) of {req.height}x{req.width})"
        )
    return latents


def sample_items(pipe: Any, args: argparse.Namespace, prompts: list[str]) -> list[Any]:
    """One item per sample: a prompt, a class label (checked before any sampling) or None (unconditional)."""
    task, kind = pipe.config.task, pipe.kind
    if kind == "none":
        return [None] * max(len(prompts), 1)
    items: list[Any] = prompts if kind == "text" else list(args.class_label)
    if not items:
        what = "--prompt or --prompts-file" if kind == "text" else "--class-label"
        raise ValueError(f"this {task} checkpoint needs {what}")
    if kind == "class":
        pipe.check_class_labels(items)
    return items


def sample_in_stages(
    pipe: Any, args: argparse.Namespace, items: list[Any], req: Any, settings: dict[str, Any], initial: Any
) -> Any:
    """(N, 3, F, H, W) pixels. The text encoder encodes every batch and is freed, then the network denoises
    every batch and is freed, then the VAE decodes: one large component in memory at a time."""
    import torch

    batches = [(start, items[start : start + args.batch_size]) for start in range(0, len(items), args.batch_size)]
    kind = pipe.kind
    if kind == "text":
        announce_load("text encoder", pipe.config.text_encoder, args.text_encoder, args.checkpoint)
        pipe.load_text_encoder()
    conditions = [
        pipe.conditioning(part if kind == "text" else None, part if kind == "class" else None, args.negative_prompt)
        for _, part in _bar(batches, "encoding prompts")
    ]
    pipe.release("text_encoder")
    announce_load("network", None, None, args.checkpoint)
    pipe.load_model()
    latents = [
        pipe.sample_latents(
            conditions=cond,
            num_samples=len(part),
            steps=settings["steps"],
            cfg_scale=settings["cfg"],
            sampler=settings["sampler"],
            seed=args.seed + start,
            request=req,
            progress=sys.stderr.isatty(),
            latents=None if initial is None else initial[start : start + len(part)],
        )
        for (start, part), cond in zip(_bar(batches, "denoising"), conditions, strict=True)
    ]
    pipe.release("model")
    return torch.cat([pipe.decode(z, req) for z in _bar(latents, "decoding")])


def _bar(items: list[Any], desc: str) -> Any:
    """A progress bar with ETA over batches (silent for one batch, or when stderr is not a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="batch", disable=len(items) == 1 or not sys.stderr.isatty())


def announce_load(what: str, name: str | None, override: str | None, checkpoint: str) -> None:
    """One line before a large load: what is loaded from where, and how big it is on disk. `name` is the
    component's folder inside the checkpoint; None means the network's weights in the checkpoint itself."""
    from ptdit.models.registry import resolve_checkpoint

    folder = resolve_checkpoint(checkpoint)
    source = Path(override) if override else folder / name if name else folder
    if not source.exists():
        return
    if name is None and not override:
        files = list(folder.glob("*.safetensors"))
    else:
        files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    if size >= 2**30:
        print(f"loading the {what} from {source} ({size / 2**30:.1f} GiB)", file=sys.stderr, flush=True)


def sample_records(
    pipe: Any, args: argparse.Namespace, items: list[Any], req: Any, settings: dict[str, Any]
) -> list[dict[str, Any]]:
    """The metadata written beside each sample (PNG text chunks and JSON sidecars)."""
    from ptdit.sampling.pipeline import resolve_checkpoint

    kind = pipe.kind
    negative = pipe.config.negative_prompt if args.negative_prompt is None else args.negative_prompt
    checkpoint = str(resolve_checkpoint(args.checkpoint).resolve())
    return [
        {
            "prompt": item if kind == "text" else None,
            "class_label": item if kind == "class" else None,
            "negative_prompt": negative if kind != "class" else None,
            "seed": args.seed + i,
            "steps": settings["steps"],
            "cfg": settings["cfg"],
            "sampler": settings["sampler"],
            "height": req.height,
            "width": req.width,
            "frames": req.frames,
            "window_size": list(req.window_size) if req.window_size else None,
            "checkpoint": checkpoint,
        }
        for i, item in enumerate(items)
    ]
