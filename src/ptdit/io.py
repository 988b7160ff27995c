"""Checkpoint-folder I/O: atomic writes, safe reads with one-line errors (never unpickles)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@contextlib.contextmanager
def atomic_directory(final_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary sibling folder; on success it replaces `final_dir` in one rename.

    A crash or exception inside the block leaves `final_dir` as it was (the temporary folder is removed).
    """
    final = Path(final_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    # mkdtemp makes the folder private (0700); the finished folder gets the usual permissions instead, so others
    # in a shared group can read checkpoints.
    os.chmod(tmp, 0o777 & ~_current_umask())
    try:
        yield tmp
        _usual_permissions(tmp)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _usual_permissions(folder: Path) -> None:
    """Gives private files written into `folder` (safetensors writes 0600) the umask's usual permissions. Hard
    links are left alone: they share their mode with files outside the folder."""
    mode = 0o666 & ~_current_umask()
    for path in folder.rglob("*"):
        info = path.lstat()
        if path.is_file() and not path.is_symlink() and info.st_nlink == 1 and not info.st_mode & 0o077:
            os.chmod(path, mode)


@contextlib.contextmanager
def atomic_file(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary sibling path (same suffix); on success it replaces `final_path` in one rename.

    A crash or exception inside the block leaves `final_path` as it was (the temporary file is removed).
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{final.stem}.tmp-", suffix=final.suffix, dir=final.parent)
    os.close(handle)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp files are private; the result gets the usual permissions
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not valid JSON ({err}); fix or regenerate it") from None


def load_safetensors(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Reads a safetensors file; a missing, truncated or corrupt file gives a one-line error.

    With `dtype`, floating tensors are converted one at a time as they are read, so a bf16 model loaded from an
    fp32 file never holds a full fp32 copy.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        if dtype is None:
            return load_file(str(path), device=str(device))
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            return {k: _as_dtype(handle.get_tensor(k), dtype) for k in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        raise ValueError(f"weights file {path} is corrupt or truncated ({err}); re-download or re-create it") from None


def _as_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor.to(dtype) if tensor.is_floating_point() else tensor


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads `.safetensors`, or `.pt`/`.pth`/`.bin` with `torch.load(weights_only=True)` (no arbitrary unpickling)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.suffix not in (".pt", ".pth", ".bin", ".ckpt"):
        raise ValueError(f"unsupported weights file {path.name}: expected .safetensors, .pt, .pth, .bin or .ckpt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"cannot read {path} with torch.load(weights_only=True) ({str(err).splitlines()[0]}); "
            "it is corrupt or holds objects other than tensors"
        ) from None
