"""Training checkpoints: `OUT/checkpoints/step-NNNNNNN/` with config.json, model.safetensors,
ema.safetensors and training_state/ (optimizer tensors as safetensors, everything else as JSON);
`OUT/checkpoints/latest` names the newest. Folders are written atomically and the pointer is updated last,
so a crash during a save leaves the previous checkpoint loadable, and a failed write (a full disk) leaves it
intact. Any step folder works as `ptdit sample --checkpoint`.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptdit.io import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_directory,
    load_safetensors,
    read_json,
    remove_stale_temporaries,
    write_json,
)
from ptdit.models.registry import checkpoint_config
from ptdit.train.ema import EMA

EMA_NAME = "ema.safetensors"
STATE_DIR = "training_state"
LATEST = "latest"
# Tests set PTDIT_FAULT_AT=POINT:STEP to kill the process with SIGKILL at a named point of step STEP's work, or
# POINT:STEP:SIGNAL (e.g. step:3:SIGTERM) to send it that signal instead (docs/training.md#faults). Points: step
# (after the optimizer update), save-written (checkpoint files written, folder not yet renamed into place),
# save-renamed (before the `latest` pointer), save-pointer (before pruning), prune (an old folder half removed).
FAULT_ENV = "PTDIT_FAULT_AT"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. a full disk); the previous checkpoint is intact."""


def fault_point(point: str, step: int) -> None:
    """Sends this process SIGKILL (or the named signal) when PTDIT_FAULT_AT names this point and step (a test
    hook; a no-op otherwise)."""
    fault = os.environ.get(FAULT_ENV)
    if fault and fault.startswith(f"{point}:{step}") and fault.split(":")[:2] == [point, str(step)]:
        name = fault.split(":")[2] if fault.count(":") == 2 else "SIGKILL"
        os.kill(os.getpid(), getattr(signal, name))


def checkpoint_root(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / "checkpoints"


def step_folder(out_dir: str | os.PathLike[str], step: int) -> Path:
    return checkpoint_root(out_dir) / f"step-{step:07d}"


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full (gathered, CPU) model and optimizer state dicts keyed by parameter names.

    Works for plain, DDP and FSDP2 models; under several processes every rank must call it (collectives).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _flatten_optimizer(optim_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state -> (tensors for safetensors, JSON-able rest)."""
    tensors, scalars = {}, {}
    for name, entries in optim_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{name}/{key}"] = value
    return tensors, {"param_groups": optim_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        name, key = flat.rsplit("/", 1)
        state.setdefault(name, {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_checkpoint(
    out_dir: str | os.PathLike[str],
    *,
    step: int,
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    model_config: Any,
    pipeline: dict[str, Any],
    train_config: dict[str, Any],
    progress: dict[str, Any],
    extra_dirs: dict[str, Path] | None = None,
    keep_last: int = 3,
    is_writer: bool = True,
) -> Path | None:
    """Writes one training checkpoint (rank 0 writes; every rank must call it). Returns its folder.

    Raises CheckpointWriteError when the folder cannot be written; the previous checkpoint is left intact.
    """
    model_state, optim_state = full_state_dicts(model, optimizer)
    ema_state = ema.state_dict(model)
    if not is_writer:
        return None
    config = checkpoint_config(model_config, pipeline)
    config["train"] = train_config
    folder = step_folder(out_dir, step)
    try:
        _write_folder(folder, model_state, ema_state, optim_state, config, step, progress, extra_dirs)
        fault_point("save-renamed", step)
        _write_latest(out_dir, folder.name)
    except OSError as err:
        raise _write_error(out_dir, folder, err) from err
    fault_point("save-pointer", step)
    _prune(out_dir, keep_last, step)
    return folder


def _write_folder(
    folder: Path,
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    config: dict[str, Any],
    step: int,
    progress: dict[str, Any],
    extra_dirs: dict[str, Path] | None,
) -> None:
    """Writes the step folder in a temporary sibling and renames it into place complete. A folder of the same
    step left by an earlier invocation is moved aside first (and removed), never mixed with the new one."""
    from safetensors.torch import save_file

    if folder.exists():
        aside = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
    with atomic_directory(folder) as tmp:
        save_file({k: v.contiguous() for k, v in model_state.items()}, str(tmp / WEIGHTS_NAME))
        save_file(ema_state, str(tmp / EMA_NAME))
        write_json(tmp / CONFIG_NAME, config)
        (tmp / STATE_DIR).mkdir()
        tensors, meta = _flatten_optimizer(optim_state)
        save_file(tensors, str(tmp / STATE_DIR / "optimizer.safetensors"))
        write_json(tmp / STATE_DIR / "optimizer.json", meta)
        write_json(tmp / STATE_DIR / "progress.json", {"step": step, **progress})
        for name, source in (extra_dirs or {}).items():
            shutil.copytree(source, tmp / name)
        fault_point("save-written", step)


def _write_error(out_dir: str | os.PathLike[str], folder: Path, err: OSError) -> CheckpointWriteError:
    previous = latest_checkpoint(out_dir)
    kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
    reason = (err.strerror or str(err)).rstrip(".").lower()
    return CheckpointWriteError(
        f"could not write checkpoint {folder} ({reason}); training stopped and {kept}; "
        "free some space (or fix the folder) and continue with --resume"
    )


def _write_latest(out_dir: str | os.PathLike[str], name: str) -> None:
    root = checkpoint_root(out_dir)
    tmp = root / f".{LATEST}.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, root / LATEST)


def _prune(out_dir: str | os.PathLike[str], keep_last: int, step: int) -> None:
    """Removes all but the newest `keep_last` step folders; each is renamed away first, so a kill during the
    removal never leaves a half-deleted folder under a step name."""
    folders = sorted(p for p in checkpoint_root(out_dir).glob("step-*") if p.is_dir())
    for old in folders[:-keep_last]:
        aside = old.with_name(f".{old.name}.old-{os.getpid()}")
        os.replace(old, aside)
        fault_point("prune", step)
        shutil.rmtree(aside, ignore_errors=True)


def remove_interrupted_saves(out_dir: str | os.PathLike[str]) -> list[str]:
    """Removes temporary folders and files left in OUT/checkpoints by a killed save or prune (call it under the
    run lock); returns their names."""
    root = checkpoint_root(out_dir)
    return remove_stale_temporaries(root) if root.is_dir() else []


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder, or None when the run has none."""
    pointer = checkpoint_root(out_dir) / LATEST
    if pointer.is_file():
        folder = checkpoint_root(out_dir) / pointer.read_text().strip()
        if (folder / STATE_DIR / "progress.json").is_file():
            return folder
    complete = [
        p for p in sorted(checkpoint_root(out_dir).glob("step-*")) if (p / STATE_DIR / "progress.json").is_file()
    ]
    return complete[-1] if complete else None


def checkpoint_step(folder: Path) -> int:
    """The step of a checkpoint folder `step-NNNNNNN`."""
    return int(folder.name.rsplit("-", 1)[1])


def load_training_checkpoint(
    folder: Path, *, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restores model, EMA and optimizer in place (every rank); returns the saved progress record."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    model_state = load_safetensors(folder / WEIGHTS_NAME)
    optim_state = _unflatten_optimizer(
        load_safetensors(folder / STATE_DIR / "optimizer.safetensors"),
        read_json(folder / STATE_DIR / "optimizer.json", what="optimizer state"),
    )
    try:
        set_state_dict(
            model,
            optimizer,
            model_state_dict=model_state,
            optim_state_dict=optim_state,
            options=StateDictOptions(full_state_dict=True),
        )
        ema.load_state_dict(load_safetensors(folder / EMA_NAME))
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"--resume: checkpoint {folder} does not fit the configured model ({first}); resume with the run's "
            "own config, or start a new --out"
        ) from None
    return read_json(folder / STATE_DIR / "progress.json", what="training progress")
