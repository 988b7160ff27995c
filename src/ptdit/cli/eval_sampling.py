"""`ptdit eval` commands that sample checkpoints (registered by `ptdit.cli.eval`).

- `generate`: samples for evaluation (PNG / MP4 per sample, ADM-style npz, generation.json), torchrun-sharded
  and resumable (`ptdit.eval.generate`);
- `oracle`: the oracle benchmark of a checkpoint on its task's prompt suite (`ptdit.eval.benchmark`);
- `train-features`: trains the shapes-FD feature networks (`ptdit.eval.shapes_fd`);
- `shapes-fd`: the Frechet distance between a checkpoint's (or a folder's) samples and real dataset samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    """Sampling settings shared by the generating subcommands (defaults come from the checkpoint)."""
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    p.add_argument("--steps", type=int, help="sampling steps")
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--sampler", help="flow-euler | flow-heun | ddim | dpmpp-2m")
    p.add_argument("--negative-prompt", help="negative prompt for classifier-free guidance (default: empty)")
    p.add_argument("--height", type=int, help="pixel height")
    p.add_argument("--width", type=int, help="pixel width")
    p.add_argument("--frames", type=int, help="pixel frames (views for multi-view checkpoints)")
    p.add_argument("--batch-size", type=int, default=16, help="samples per forward batch")
    p.add_argument("--weights", choices=("auto", "ema", "model"), default="auto", help="which weights to load")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torchrun: one GPU per rank)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")


def sampling_kwargs(args: argparse.Namespace, device: str) -> dict:
    """`plan_generation` keyword arguments from the shared sampling flags."""
    return {
        "seed": args.seed, "steps": args.steps, "cfg_scale": args.cfg, "sampler": args.sampler,
        "negative_prompt": args.negative_prompt, "height": args.height, "width": args.width, "frames": args.frames,
        "batch_size": args.batch_size, "dtype": args.dtype, "device": device,
        "weights": {"auto": None, "ema": "ema.safetensors", "model": "model.safetensors"}[args.weights],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# ptdit eval generate
# --------------------------------------------------------------------------------------------------------------


def register_generate(evsub: argparse._SubParsersAction) -> None:
    p = evsub.add_parser(
        "generate",
        help="generate samples for evaluation (one file per sample, npz, generation.json)",
        description="Generates --per-prompt samples per prompt (or class) into --out: samples/NNNNNN.png (frames "
        "side by side for video and multi-view), samples/NNNNNN.mp4 for video, samples.npz (images: uint8 NHWC "
        "under arr_0), samples.jsonl and generation.json. Sample i uses seed + i, so the files do not depend on "
        "the number of ranks: torchrun --nproc_per_node=N -m ptdit eval generate ... shards the samples. "
        "Running the same command again resumes (finished samples are skipped).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, or a training run folder (its latest)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--prompts", help="UTF-8 text file, one prompt per line")
    source.add_argument("--classes", type=int, help="class-conditional checkpoints: labels 0 .. N-1")
    p.add_argument("--per-prompt", type=int, default=1, help="samples per prompt or class")
    p.add_argument("--out", required=True, help="output folder (created; an earlier run of the same command resumes)")
    add_sampling_flags(p)
    p.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from ptdit.eval.generate import check_output_folder, file_sha256, generate, plan_generation, read_prompts_file
    from ptdit.train.distributed import setup_distributed, teardown_distributed

    prompts, labels, source = None, None, {}
    if args.prompts:
        prompts = read_prompts_file(args.prompts)
        source = {"prompts": str(Path(args.prompts).resolve()), "prompts_sha256": file_sha256(args.prompts)}
    elif args.classes is not None:
        if args.classes < 1:
            raise ValueError(f"--classes must be >= 1, got {args.classes}")
        labels, source = list(range(args.classes)), {"classes": args.classes}
    info = setup_distributed(args.device)
    try:
        pipe, plan = plan_generation(
            args.checkpoint, prompts=prompts, class_labels=labels, per_prompt=args.per_prompt, source=source,
            **sampling_kwargs(args, str(info.device)),
        )  # fmt: skip
        out = Path(args.out)
        resumed = check_output_folder(out, plan)
        result = generate(pipe, plan, out, progress=True)
    finally:
        teardown_distributed()
    if info.is_main:
        what = "resumed; " if resumed else ""
        print(
            f"{plan.num_samples} {plan.media} samples in {out}/ ({what}{result.seconds:.0f} s on {result.num_ranks} "
            f"rank(s)); protocol: {out}/generation.json"
        )
    return 0


# --------------------------------------------------------------------------------------------------------------
# ptdit eval oracle
# --------------------------------------------------------------------------------------------------------------


def register_oracle(evsub: argparse._SubParsersAction) -> None:
    p = evsub.add_parser(
        "oracle",
        help="the oracle benchmark: accuracy per GenEval-style category with bootstrap 95%% CIs",
        description="Samples the task's fixed prompt suite (t2i-v1: 224 prompts, t2v-v1: 104, t2mv-v1: 108) "
        "--seeds times each and scores every sample with the dataset oracle. Writes OUT/samples/ (as `eval "
        "generate`; resumable, torchrun-shardable), OUT/results.jsonl (per sample: prompt, seed, pass / fail per "
        "attribute and why) and OUT/summary.json, and prints the table.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, or a training run folder (its latest)")
    p.add_argument("--seeds", type=int, default=1, help="samples per prompt")
    p.add_argument("--task", help="suite of this task (default: the checkpoint's task)")
    p.add_argument("--suite", help="a suite name (t2i-v1, ...) or suite JSON file; overrides --task")
    p.add_argument("--out", help="output folder (default: CHECKPOINT/eval/oracle-SUITE)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    add_sampling_flags(p)
    p.set_defaults(func=run_oracle)


def run_oracle(args: argparse.Namespace) -> int:
    import json

    from ptdit.eval.benchmark import format_table, run_oracle_benchmark
    from ptdit.train.distributed import setup_distributed, teardown_distributed

    info = setup_distributed(args.device)
    try:
        result = run_oracle_benchmark(
            args.checkpoint, seeds=args.seeds, task=args.task, suite=args.suite, out_dir=args.out,
            **sampling_kwargs(args, str(info.device)),
        )  # fmt: skip
    finally:
        teardown_distributed()
    if result is None:  # ranks > 0 only generate
        return 0
    summary, out = result
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    if not args.json:
        print(f"results: {out / 'results.jsonl'}\nsummary: {out / 'summary.json'}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------------------------
# ptdit eval train-features / shapes-fd
# --------------------------------------------------------------------------------------------------------------


def register_train_features(evsub: argparse._SubParsersAction) -> None:
    p = evsub.add_parser(
        "train-features",
        help="train the shapes-FD feature networks (deterministic; the shipped files come from this command)",
    )
    p.add_argument("--dataset", default="all", help="shapes, moving-shapes, turntable or all")
    p.add_argument("--out", help="folder for the .safetensors files (default: the package's eval/weights/)")
    p.add_argument("--steps", type=int, help="training steps (default: the shipped networks' count)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_train_features)


def run_train_features(args: argparse.Namespace) -> int:
    from ptdit.eval.shapes_fd import FEATURE_DATASETS, save_feature_network, train_feature_network, weights_folder

    if args.dataset != "all" and args.dataset not in FEATURE_DATASETS:
        raise ValueError(f"unknown --dataset {args.dataset!r}; choose one of {[*FEATURE_DATASETS, 'all']}")
    names = list(FEATURE_DATASETS) if args.dataset == "all" else [args.dataset]
    folder = Path(args.out) if args.out else weights_folder()
    for name in names:
        net, report = train_feature_network(name, seed=args.seed, steps=args.steps, progress=True)
        path = save_feature_network(net, folder)
        print(f"{name}: {path} ({report})")
    return 0


def register_shapes_fd(evsub: argparse._SubParsersAction) -> None:
    p = evsub.add_parser(
        "shapes-fd",
        help="shapes-FD: Frechet distance to real samples in a feature space trained on the procedural data",
        description="Generates --num-samples samples from the checkpoint for captions of its training data "
        "(or reads a folder of samples written by `eval generate`) and compares their features with those of "
        "real samples of the same dataset and options.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint trained on a built-in dataset")
    source.add_argument("--fake", help="an `eval generate` output folder")
    p.add_argument("--dataset", help="with --fake: the real dataset (default: the folder's checkpoint's)")
    p.add_argument("--num-samples", type=int, default=1000, help="samples generated / required")
    p.add_argument("--out", help="with --checkpoint: generation folder (default: CHECKPOINT/eval/shapes-fd-N)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_sampling_flags(p)
    p.set_defaults(func=run_shapes_fd)


def run_shapes_fd(args: argparse.Namespace) -> int:
    import json

    from ptdit.eval.shapes_fd import shapes_fd_of_checkpoint, shapes_fd_of_folder
    from ptdit.train.distributed import setup_distributed, teardown_distributed

    if args.fake:
        result = shapes_fd_of_folder(args.fake, dataset=args.dataset, num_samples=args.num_samples)
    else:
        info = setup_distributed(args.device)
        try:
            result = shapes_fd_of_checkpoint(
                args.checkpoint, num_samples=args.num_samples, out_dir=args.out,
                **sampling_kwargs(args, str(info.device)),
            )  # fmt: skip
        finally:
            teardown_distributed()
        if result is None:
            return 0
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"shapes-FD {result['shapes_fd']:.3f} ({result['num_fake']} samples vs {result['num_real']} real "
            f"{result['dataset']} samples; real-vs-real floor {result['real_floor']:.3f})"
        )
    return 0


SAMPLING_COMMANDS = [register_generate, register_oracle, register_train_features, register_shapes_fd]
