"""shapes-FD: a Frechet distance for the procedural datasets, in the feature space of a small network trained on them.

FID measures quality in the feature space of an ImageNet classifier, which says little about flat shapes on
black. shapes-FD keeps FID's recipe (Frechet distance between Gaussians fitted to penultimate features,
`ptdit.eval.frechet`) but takes the features from a network that `ptdit` trains itself on each built-in dataset
(`ptdit eval train-features`, deterministic from a seed). The shipped weights live in `ptdit/eval/weights/`.

The network (`ShapesFeatureNet`, ~80k parameters): a 4-layer CNN embeds each 32 x 32 frame; a clip layer maps
the mean frame embedding, the mean frame-to-frame difference (motion, turning) and the mean absolute difference
(temporal consistency) to D = 32 features, which are standardised with the training set's mean and standard
deviation (so every feature counts alike in the distance). Heads on top learn the captioned attributes:
- shapes: per grid cell, empty or (colour, shape, size) (9 x 37 classes);
- moving-shapes: per grid cell, in the first and in the last frame, empty or (colour, shape, direction)
  (18 x 73 classes);
- turntable: kind, main colour and top colour, plus the pose (sin / cos of 4 x azimuth, elevation) by regression.
Training data covers the benchmark's range: 1-4 shapes, 1-2 movers, one-colour turntable objects.

Inputs of another size are resized to 32 px (area averaging) first; any frame count works (the network was
trained on 8 frames / views). docs/oracle-benchmark.md#shapes-fd has the sanity checks.

Shape legend: B batch, F frames, H / W rows / columns, D features; pixels are `(B, 3, F, H, W)` in [-1, 1].
"""

from __future__ import annotations

import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ptdit.data.captions import COLORS, DIRECTIONS, KINDS, POSITIONS, SHAPES, SIZES, moving_objects
from ptdit.eval.frechet import feature_statistics, frechet_distance

FEATURE_DATASETS: dict[str, dict[str, Any]] = {  # training options per dataset (the benchmark's range)
    "shapes": {"max_objects": 4},
    "moving-shapes": {"max_objects": 2, "frames": 8},
    "turntable": {"single_color_fraction": 0.2, "views": 8},
}
FEATURE_VERSION = 1
INPUT_SIZE = 32
_COLORS = list(COLORS)
_TRAIN_SEED = 1000  # dataset seed of the feature networks' training samples
REAL_SEED = 20_000  # dataset seed of the real reference samples (neither training nor demo data)
FLOOR_SEED = 30_000  # dataset seed of the second real set that measures the real-vs-real floor


# --------------------------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------------------------


class ShapesFeatureNet(nn.Module):
    """Per-frame CNN + clip pooling -> standardised features -> attribute heads.

    Args:
        dataset: the dataset it is trained on (sets the heads).
        width: channels of the first convolution (doubled twice).
        dim: feature width D.
    """

    def __init__(self, dataset: str, *, width: int = 16, dim: int = 32) -> None:
        super().__init__()
        self.dataset, self.width, self.dim = dataset, width, dim
        self.frame = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),  # 32 x 32
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),  # 16 x 16
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),  # 8 x 8
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(),  # 4 x 4: keeps where things are
            nn.Flatten(), nn.Linear(4 * width * 16, 2 * dim), nn.ReLU(),
        )  # fmt: skip
        self.clip = nn.Linear(3 * 2 * dim, dim)
        classes, regressions = HEADS[dataset]
        self.head = nn.Linear(dim, sum(classes) + regressions)
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))

    def raw_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> (B, D) unstandardised features."""
        b, c, f, h, w = pixels.shape
        frames = pixels.transpose(1, 2).reshape(b * f, c, h, w).float()
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
        emb_BFE = self.frame(frames).view(b, f, -1)
        diff = emb_BFE[:, 1:] - emb_BFE[:, :-1] if f > 1 else torch.zeros_like(emb_BFE)
        return self.clip(torch.cat([emb_BFE.mean(1), diff.mean(1), diff.abs().mean(1)], dim=1))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> (B, D) standardised penultimate features (what shapes-FD compares)."""
        return (self.raw_features(pixels) - self.feature_mean) / self.feature_std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Head logits and regressions, (B, sum(classes) + regressions)."""
        return self.head(F.relu(self.raw_features(pixels)))


# --------------------------------------------------------------------------------------------------------------
# Training targets per dataset: (class labels per head, regression targets)
# --------------------------------------------------------------------------------------------------------------


def _cell(cx: float, cy: float, size: int) -> int:
    return 3 * min(int(3 * cy / size), 2) + min(int(3 * cx / size), 2)


def _shapes_targets(spec: dict[str, Any], size: int, frames: int) -> tuple[list[int], list[float]]:
    labels = [0] * 9
    for o in spec["objects"]:
        code = (_COLORS.index(o["color"]) * len(SHAPES) + SHAPES.index(o["shape"])) * len(SIZES)
        labels[POSITIONS.index(o["position"])] = 1 + code + SIZES.index(o["size"])
    return labels, []


def _moving_targets(spec: dict[str, Any], size: int, frames: int) -> tuple[list[int], list[float]]:
    from ptdit.data.shapes import DIRECTION_VECTORS, MOVING_TRAVEL

    labels = [0] * 18  # 9 cells in the first frame, 9 in the last
    for m in moving_objects(spec):
        (x0, y0), (dx, dy) = m["start"], DIRECTION_VECTORS[m["direction"]]
        code = (_COLORS.index(m["color"]) * len(SHAPES) + SHAPES.index(m["shape"])) * len(DIRECTIONS)
        code += 1 + DIRECTIONS.index(m["direction"])
        travel = MOVING_TRAVEL * size
        labels[_cell(x0, y0, size)] = code
        labels[9 + _cell(x0 + travel * dx, y0 + travel * dy, size)] = code
    return labels, []


def _turntable_targets(spec: dict[str, Any], size: int, frames: int) -> tuple[list[int], list[float]]:
    turn = np.deg2rad(spec["azimuth"]) * 4  # the objects look the same every 90 degrees
    pose = [float(np.sin(turn)), float(np.cos(turn)), (spec["elevation"] - 17.5) / 7.5]
    return [KINDS.index(spec["kind"]), _COLORS.index(spec["color"]), _COLORS.index(spec["top_color"])], pose


# Per dataset: (number of classes per head, number of regression targets), and the target function.
HEADS: dict[str, tuple[list[int], int]] = {
    "shapes": ([1 + len(_COLORS) * len(SHAPES) * len(SIZES)] * 9, 0),
    "moving-shapes": ([1 + len(_COLORS) * len(SHAPES) * len(DIRECTIONS)] * 18, 0),
    "turntable": ([len(KINDS), len(_COLORS), len(_COLORS)], 3),
}
_TARGETS = {"shapes": _shapes_targets, "moving-shapes": _moving_targets, "turntable": _turntable_targets}


def _check_dataset(dataset: str) -> None:
    if dataset not in FEATURE_DATASETS:
        raise ValueError(f"no shapes-FD network for dataset {dataset!r}; networks exist for {list(FEATURE_DATASETS)}")


def _training_set(dataset: str, num: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pixels (N, 3, F, 32, 32), labels (N, heads), regressions (N, R)) of the first `num` training samples."""
    from ptdit.data import build_dataset

    ds = build_dataset(dataset, size=INPUT_SIZE, seed=_TRAIN_SEED, **FEATURE_DATASETS[dataset])
    pixels, labels, regressions = [], [], []
    for i in range(num):
        spec = ds.sample_spec(i)
        pixels.append(torch.from_numpy(np.ascontiguousarray(ds.render(spec).transpose(3, 0, 1, 2))) * 2 - 1)
        y, r = _TARGETS[dataset](spec, ds.size, pixels[-1].shape[1])
        labels.append(y)
        regressions.append(r)
    return torch.stack(pixels), torch.tensor(labels), torch.tensor(regressions, dtype=torch.float32)


def _loss(net: ShapesFeatureNet, out: torch.Tensor, labels: torch.Tensor, regressions: torch.Tensor) -> torch.Tensor:
    classes, num_regressions = HEADS[net.dataset]
    loss, start = out.new_zeros(()), 0
    for k, n in enumerate(classes):
        loss = loss + F.cross_entropy(out[:, start : start + n], labels[:, k])
        start += n
    if num_regressions:
        loss = loss + F.mse_loss(out[:, start:], regressions)
    return loss


DEFAULT_STEPS = 2000
# Clips and view sets hold 8 frames each: 16 of them per batch (128 frames) keep a run to minutes on 2 cores.
DEFAULT_BATCH = {"shapes": 64, "moving-shapes": 16, "turntable": 16}


def train_feature_network(
    dataset: str,
    *,
    seed: int = 0,
    steps: int | None = None,
    num_train: int = 8192,
    batch_size: int | None = None,
    lr: float = 2e-3,
    progress: bool = False,
) -> tuple[ShapesFeatureNet, str]:
    """Trains the feature network of a dataset (deterministic for a given seed, thread count and machine).

    AdamW with a cosine learning rate over `steps` batches drawn from `num_train` pre-rendered samples; then the
    feature standardisation is fitted on 2048 training samples. Returns (network in eval mode, a report).
    """
    _check_dataset(dataset)
    steps = DEFAULT_STEPS if steps is None else steps
    batch_size = DEFAULT_BATCH[dataset] if batch_size is None else batch_size
    if steps < 1 or num_train < batch_size:
        raise ValueError(f"steps must be >= 1 and num_train >= batch_size, got {steps}, {num_train}, {batch_size}")
    start = time.perf_counter()
    pixels, labels, regressions = _training_set(dataset, num_train)
    with torch.random.fork_rng():  # the global generator is left as it was
        torch.manual_seed(seed)
        net = ShapesFeatureNet(dataset)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * s / steps)))
    batches = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(num_train, (batch_size,), generator=batches)
        loss = _loss(net, net(pixels[idx]), labels[idx], regressions[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress and (step + 1) % max(steps // 10, 1) == 0:
            print(f"{dataset}: step {step + 1}/{steps}, loss {loss.item():.4f}", file=sys.stderr)
    net.eval()
    with torch.no_grad():
        raw = torch.cat([net.raw_features(pixels[i : i + 256]) for i in range(0, min(num_train, 2048), 256)])
        net.feature_mean.copy_(raw.mean(0))
        net.feature_std.copy_(raw.std(0).clamp_min(1e-6))
    net.info = {"steps": steps, "seed": seed, "num_train": num_train, "batch_size": batch_size, "lr": lr,
                "final_loss": round(loss.item(), 5), "threads": torch.get_num_threads(),
                "train_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    return net, f"{steps} steps, loss {loss.item():.4f}, {net.info['train_seconds']:.0f} s"


# --------------------------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------------------------


def weights_folder() -> Path:
    """The package folder of the shipped feature networks."""
    return Path(str(resources.files("ptdit") / "eval" / "weights"))


def weights_name(dataset: str) -> str:
    return f"shapes-fd-{dataset}-v{FEATURE_VERSION}.safetensors"


def save_feature_network(net: ShapesFeatureNet, folder: str | Path) -> Path:
    """Writes `shapes-fd-DATASET-vN.safetensors` with its training record in the file's metadata."""
    from safetensors.torch import save_file

    from ptdit import __version__
    from ptdit.sampling.media import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": net.dataset, "version": FEATURE_VERSION, "width": net.width, "dim": net.dim,
            "options": FEATURE_DATASETS[net.dataset], "train": getattr(net, "info", {}),
            "ptdit_version": __version__}  # fmt: skip
    path = folder / weights_name(net.dataset)
    with atomic_path(path) as tmp:
        state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(tmp), metadata={"shapes_fd": json.dumps(meta)})
        tmp.chmod(0o644)  # a shipped package file, readable by all
    return path


_LOADED: dict[tuple[str, str], ShapesFeatureNet] = {}


def load_feature_network(dataset: str, path: str | Path | None = None) -> ShapesFeatureNet:
    """The shipped (or given) feature network of a dataset, in eval mode; cached per process."""
    from safetensors import safe_open

    _check_dataset(dataset)
    path = Path(path) if path else weights_folder() / weights_name(dataset)
    key = (dataset, str(path))
    if key not in _LOADED:
        if not path.is_file():
            raise FileNotFoundError(
                f"shapes-FD network {path} not found; create it with: ptdit eval train-features --dataset {dataset}"
            )
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("shapes_fd", "{}"))
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        if meta.get("dataset") != dataset:
            raise ValueError(f"{path} holds the network of {meta.get('dataset')!r}, not of {dataset!r}")
        net = ShapesFeatureNet(dataset, width=meta["width"], dim=meta["dim"])
        net.load_state_dict(state)
        net.info = meta.get("train", {})
        _LOADED[key] = net.eval()
    return _LOADED[key]


# --------------------------------------------------------------------------------------------------------------
# Features and distances
# --------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def shapes_features(pixels: torch.Tensor, dataset: str, *, batch_size: int = 256) -> np.ndarray:
    """(N, D) float64 shapes-FD features of (N, 3, F, H, W) pixels in [-1, 1] (square frames)."""
    if pixels.dim() != 5 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be (N, 3, F, H, W), got {tuple(pixels.shape)}")
    net = load_feature_network(dataset)
    chunks = [net.features(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    return torch.cat(chunks).double().numpy()


def real_features(dataset: str, num: int, *, seed: int = REAL_SEED, chunk: int = 512, **options: Any) -> np.ndarray:
    """(num, D) features of real samples 0 .. num - 1 of `build_dataset(dataset, seed=seed, **options)`, rendered
    `chunk` at a time (5000 turntable samples would take 400 MB at once)."""
    from ptdit.data import build_dataset

    ds = build_dataset(dataset, seed=seed, num_samples=max(num, 1), **options)
    chunks = []
    for start in range(0, num, chunk):
        pixels = torch.stack([ds[i]["pixels"] for i in range(start, min(start + chunk, num))])
        chunks.append(shapes_features(pixels, dataset))
    return np.concatenate(chunks)


_REAL_STATS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def real_statistics(
    dataset: str, num: int = 5000, *, seed: int = REAL_SEED, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of the features of `num` real samples; cached per process (in-training evaluation)."""
    key = json.dumps([dataset, num, seed, options], sort_keys=True)
    if key not in _REAL_STATS:
        _REAL_STATS[key] = feature_statistics(real_features(dataset, num, seed=seed, **options))
    return _REAL_STATS[key]


def shapes_fd(
    fake: np.ndarray | torch.Tensor, dataset: str, *, num_real: int = 5000, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """shapes-FD of generated samples against `num_real` real samples, with the real-vs-real floor.

    Args:
        fake: (N, 3, F, H, W) pixels in [-1, 1], or their (N, D) `shapes_features`.
        dataset: the real dataset.
        num_real: reference samples.
        options: the real dataset's arguments (size, max_objects, frames, ...), as in the training config.

    Returns:
        `{"shapes_fd", "real_floor", "num_fake", "num_real", "dataset", "options", "features"}`: real_floor is
        the FD of N further real samples against the same reference, what a perfect generator would score.
    """
    options = dict(options or {})
    features = fake if isinstance(fake, np.ndarray) else shapes_features(fake, dataset)
    if len(features) < 2:
        raise ValueError(f"shapes-FD needs at least 2 samples, got {len(features)}")
    mu, sigma = real_statistics(dataset, num_real, **options)
    fake_mu, fake_sigma = feature_statistics(features)
    floor_mu, floor_sigma = real_statistics(dataset, len(features), seed=FLOOR_SEED, **options)
    return {
        "shapes_fd": round(frechet_distance(mu, sigma, fake_mu, fake_sigma), 4),
        "real_floor": round(frechet_distance(mu, sigma, floor_mu, floor_sigma), 4),
        "num_fake": len(features),
        "num_real": num_real,
        "dataset": dataset,
        "options": options,
        "features": weights_name(dataset),
    }


# --------------------------------------------------------------------------------------------------------------
# Checkpoints and sample folders
# --------------------------------------------------------------------------------------------------------------

CAPTION_SEED = 40_000  # dataset seed of the captions a checkpoint is sampled with for shapes-FD
_FRAMES_OPTION = {"moving-shapes": "frames", "turntable": "views"}


def training_data(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(dataset, options with size) of a checkpoint's training data, from its config.json `train` section."""
    data = (config.get("train") or {}).get("data") or {}
    dataset = data.get("dataset")
    if dataset not in FEATURE_DATASETS:
        raise ValueError(
            f"shapes-FD needs a checkpoint trained on a built-in dataset ({', '.join(FEATURE_DATASETS)}); this one "
            f"names {dataset!r} in its config.json (give --fake with --dataset to compare a sample folder)"
        )
    return dataset, {"size": data.get("size", INPUT_SIZE), **(data.get("options") or {})}


def shapes_fd_of_checkpoint(
    checkpoint: str | Path,
    *,
    num_samples: int = 1000,
    num_real: int = 5000,
    out_dir: str | Path | None = None,
    **sampling: Any,
) -> dict[str, Any] | None:
    """Samples `num_samples` captions of the checkpoint's training distribution (held-out seed) through
    `ptdit.eval.generate` and compares them with real samples. Returns the result on rank 0 (None elsewhere) and
    writes it as `shapes_fd.json` into the generation folder (default CHECKPOINT/eval/shapes-fd-N)."""
    import torch.distributed as dist

    from ptdit.data import random_captions
    from ptdit.eval.generate import check_output_folder, generate, plan_generation
    from ptdit.models.registry import read_checkpoint_config, resolve_checkpoint
    from ptdit.sampling.media import atomic_path

    if num_samples < 2:
        raise ValueError(f"--num-samples must be >= 2, got {num_samples}")
    folder = resolve_checkpoint(checkpoint)
    dataset, options = training_data(read_checkpoint_config(folder))
    prompts = random_captions(dataset, num_samples, seed=CAPTION_SEED, **options)
    source = {"shapes_fd": dataset, "caption_seed": CAPTION_SEED}
    pipe, plan = plan_generation(folder, prompts=prompts, source=source, **sampling)
    out = Path(out_dir) if out_dir else folder / "eval" / f"shapes-fd-{num_samples}"
    check_output_folder(out, plan)
    generate(pipe, plan, out, progress=True)
    if dist.is_initialized() and dist.get_rank() != 0:
        return None
    result = shapes_fd_of_folder(out, dataset=dataset, options=options, num_samples=num_samples, num_real=num_real)
    with atomic_path(out / "shapes_fd.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def shapes_fd_of_folder(
    folder: str | Path,
    *,
    dataset: str | None = None,
    options: dict[str, Any] | None = None,
    num_samples: int = 1000,
    num_real: int = 5000,
) -> dict[str, Any]:
    """shapes-FD of the first `num_samples` samples of a folder: an `eval generate` output (frames and, unless
    given, the dataset come from its generation.json and checkpoint) or a plain folder of PNG images (give the
    dataset). Reads everything before computing, so bad input fails before any work; writes nothing."""
    from ptdit.eval.generate import GENERATION_FILE, sample_file

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"sample folder {folder} not found")
    frames, files = 1, sorted(folder.glob("*.png"))
    record = folder / GENERATION_FILE
    if record.is_file():
        generation = json.loads(record.read_text())
        if not generation.get("complete"):
            raise ValueError(
                f"{folder} holds an unfinished generation; run the same `eval generate` again to finish it"
            )
        frames = generation["frames"]
        files = [sample_file(folder, i) for i in range(generation["num_samples"])]
        if dataset is None:
            from ptdit.models.registry import read_checkpoint_config

            dataset, options = training_data(read_checkpoint_config(generation["checkpoint"]))
    if dataset is None:
        raise ValueError(f"{folder} is a plain image folder: name the real dataset with --dataset")
    _check_dataset(dataset)
    if len(files) < max(num_samples, 2):
        raise ValueError(f"{folder} holds {len(files)} samples, fewer than the {num_samples} required (--num-samples)")
    pixels = _read_pixels(files[:num_samples], frames)
    options = {"size": pixels.shape[-1], **(options or {})}  # real samples of the fake ones' size and length
    if dataset in _FRAMES_OPTION:
        options.setdefault(_FRAMES_OPTION[dataset], frames)
    result = shapes_fd(shapes_features(pixels, dataset), dataset, num_real=num_real, options=options)
    return {**result, "samples": str(folder)}


def _read_pixels(files: list[Path], frames: int) -> torch.Tensor:
    """(N, 3, F, H, W) in [-1, 1] from sample PNGs; one-line errors for unreadable files and mixed sizes."""
    from ptdit.eval.generate import read_sample

    samples = []
    for path in files:
        try:
            sample = read_sample(path, frames)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read sample {path}: {err}") from None
        if samples and sample.shape != samples[0].shape:
            raise ValueError(
                f"samples of mixed sizes: {path} is {sample.shape[1:3]}, {files[0]} is {samples[0].shape[1:3]}"
            )
        samples.append(sample)
    pixels = torch.from_numpy(np.stack(samples)).permute(0, 4, 1, 2, 3)  # (N, F, H, W, 3) -> (N, 3, F, H, W)
    return pixels.float() / 127.5 - 1.0
