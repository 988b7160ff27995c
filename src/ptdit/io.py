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
    """Yields a temporary sibling folder to write into; on success its entries land in `final_dir`.

    - `final_dir` missing or empty: the finished folder is renamed into place in one step.
    - `final_dir` holds other entries: each written entry replaces the entry of the same name (one rename each);
      every other entry of `final_dir` is kept. Callers refuse folders that are not theirs first
      (`check_output_dir`).
    - `final_dir` is a file: FileExistsError, and nothing is written.

    A crash or exception inside the block leaves `final_dir` as it was (the temporary folder is removed; one left
    by a killed process is named `.NAME.tmp-*` and is removed by `remove_stale_temporaries`).
    """
    final = Path(final_dir)
    if final.exists() and not final.is_dir():
        raise FileExistsError(f"{final} exists and is a file, not a folder; choose a folder path")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    # mkdtemp makes the folder private (0700); the finished folder gets the usual permissions instead, so others
    # in a shared group can read checkpoints.
    os.chmod(tmp, 0o777 & ~_current_umask())
    try:
        yield tmp
        _usual_permissions(tmp)
        _sync_tree(tmp)
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        if final.exists():
            _move_entries(tmp, final)
        else:
            os.replace(tmp, final)
        _sync_dir(final.parent)
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


def _move_entries(source: Path, target: Path) -> None:
    """Moves each entry of `source` into `target`, replacing only the entries of the same name."""
    for entry in sorted(source.iterdir()):
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            old = target / f".{entry.name}.old-{os.getpid()}"
            os.replace(dest, old)
            os.replace(entry, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, dest)
    _sync_dir(target)


def _sync_tree(folder: Path) -> None:
    """Flushes every file of `folder` to disk before it is renamed into place, so that a power loss cannot leave
    a complete-looking folder with empty files."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir():
            _sync_dir(path)
    _sync_dir(folder)


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the data itself is synced
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[str]:
    """Removes `.NAME.tmp-*` and `.NAME.old-*` entries under `folder` left by a killed process (call it only while
    no other process writes there, e.g. under `RunLock`); returns their names."""
    removed = []
    for path in sorted(Path(folder).glob(".*")):
        if ".tmp-" in path.name or ".old-" in path.name or path.name.endswith(".tmp"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def is_checkpoint_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder holding a ptdit `config.json`."""
    config = Path(path) / CONFIG_NAME
    try:
        data = json.loads(config.read_text()) if config.is_file() else None
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == "ptdit"


def check_output_dir(path: str | os.PathLike[str], *, flag: str = "--out", overwrite: bool = False) -> Path:
    """Refuses an output folder that would lose data: an existing file, a non-empty folder that is not a ptdit
    checkpoint, or an existing checkpoint unless `overwrite`. Also checks that the location is writable."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{flag} {out} exists and is a file; choose a folder path that does not exist yet")
    if out.is_dir() and any(out.iterdir()):
        if not is_checkpoint_dir(out):
            shown = ", ".join(sorted(p.name for p in out.iterdir())[:5])
            raise FileExistsError(
                f"{flag} {out} is not empty and not a ptdit checkpoint (holds {shown}); "
                "choose a new or empty folder, nothing was written"
            )
        if not overwrite:
            raise FileExistsError(f"{flag} {out} already holds a ptdit checkpoint; pass --overwrite to replace it")
    check_writable(out, flag)
    return out


def check_writable(path: str | os.PathLike[str], flag: str = "--out") -> None:
    """Raises FileExistsError when `path` is a file, and PermissionError when neither `path` (a folder to be) nor
    its nearest existing parent folder can be written."""
    if Path(path).exists() and not Path(path).is_dir():
        raise FileExistsError(f"{flag} {path} exists and is a file; choose a folder path")
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_file():
        raise NotADirectoryError(f"{flag} {path}: {existing} is a file, not a folder; check the path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{flag} {path}: {existing} is not writable (read-only or no permission); choose a writable location"
        )


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


def check_device(device: str | torch.device, flag: str = "device") -> torch.device:
    """The torch device `device` names; ValueError for an unknown name or a device this machine does not have."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown {flag} {str(device)!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{flag} {device}: CUDA is not available on this machine (a CPU-only torch build, or no visible GPU); "
                f"use {flag} cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{flag} {device}: MPS is not available on this machine; use {flag} cpu")
    elif dev.type != "cpu":
        raise ValueError(f"{flag} {device!r} is not supported; use cpu or cuda")
    return dev


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
    check_device(device)
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
