"""Local weight files of the metric networks (Inception-v3, I3D): finding, reading, exact loading and hashing.

Nothing is ever downloaded: a missing file is one `MissingWeightsError` line that names the file, where to get
it and where to put it. The default folder is torch's hub checkpoint cache (`$TORCH_HOME/hub/checkpoints`,
usually `~/.cache/torch/hub/checkpoints`), where pytorch-fid and torch.hub keep the same files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from ptdit.encoders.hub import MissingWeightsError
from ptdit.io import load_state_dict_file

# BatchNorm's step counter: present or absent depending on the torch version that saved a file, never used.
_IGNORED_SUFFIX = "num_batches_tracked"


def default_weights_dir() -> Path:
    """torch's hub checkpoint folder, read at call time (honours `TORCH_HOME`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def read_weights(
    path: str | Path | None, *, default_name: str, url: str, what: str, flag: str
) -> tuple[dict[str, torch.Tensor], Path]:
    """(state dict, resolved path) of a local weights file.

    Args:
        path: the file, or None for `default_name` in `default_weights_dir()`.
        default_name: the file's published name.
        url: where to download it (for the message only).
        what: the network, for messages.
        flag: the feature-network name of `--features NAME:FILE`, for the message.

    Raises:
        MissingWeightsError: the file does not exist.
    """
    path = Path(path).expanduser() if path else default_weights_dir() / default_name
    if not path.is_file():
        raise MissingWeightsError(
            f"{what} weights not found at {path}: download {default_name} from {url} on a machine with internet "
            f"access, then put it at {default_weights_dir() / default_name} or pass --features {flag}:FILE"
        )
    return load_state_dict_file(path), path


def load_exact(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> nn.Module:
    """Loads `state` into `model`, requiring the same keys and shapes (BatchNorm step counters aside).

    Raises:
        ValueError: naming up to three missing, unexpected or mis-shaped keys.
    """
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith(_IGNORED_SUFFIX)}
    given = {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIX)}
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    shapes = sorted(k for k in expected.keys() & given.keys() if tuple(given[k].shape) != tuple(expected[k]))
    if missing or unexpected or shapes:
        problems = [
            f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
            if names
        ]
        raise ValueError(f"{source} does not match {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(given, strict=False)  # every non-counter key is present (checked above)
    return model


def state_dict_hash(model: nn.Module) -> str:
    """First 16 hex digits of the sha256 of a network's tensors (names, dtypes, shapes and values, in key
    order; BatchNorm step counters excluded): identifies the weights whatever file format they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.endswith(_IGNORED_SUFFIX):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """Full sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["default_weights_dir", "file_sha256", "load_exact", "read_weights", "state_dict_hash"]
