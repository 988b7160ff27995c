"""`train.init_from`: start a new run from another run's weights (docs/training.md#stages).

The paper trains T2V from the T2I stage-1 weights (Table 3). The EMA weights of the given checkpoint (its
model weights when it has no EMA) initialise the network; the optimizer and the step count start fresh. Shapes
must match exactly (the window size does not change any weight, so a run at another resolution loads as is).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ptdit.io import WEIGHTS_NAME, load_safetensors
from ptdit.train.state import EMA_NAME, latest_checkpoint


def initial_weights_file(path: str | Path) -> Path:
    """The weights file of `path`: a checkpoint folder's ema.safetensors (else model.safetensors), the latest
    checkpoint of a run folder, or a .safetensors file."""
    path = Path(path)
    if path.is_file():
        return path
    folder = latest_checkpoint(path) if (path / "checkpoints").is_dir() else path
    for name in (EMA_NAME, WEIGHTS_NAME):
        if folder is not None and (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"train.init_from={path} holds no {EMA_NAME} or {WEIGHTS_NAME}; give a checkpoint folder (OUT/checkpoints/"
        "step-N), a run folder or a .safetensors file"
    )


def load_initial_weights(module: nn.Module, path: str | Path) -> Path:
    """Loads the weights into `module` in place; raises ValueError naming missing, extra or mis-shaped weights."""
    source = initial_weights_file(path)
    weights = load_safetensors(source)
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    shapes = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or extra or shapes:
        raise ValueError(
            f"train.init_from={path}: the weights do not fit this model (missing {missing[:3]}, unexpected "
            f"{extra[:3]}, other shapes {shapes[:3]}); start from a checkpoint of the same architecture"
        )
    with torch.no_grad():
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()})
    return source


__all__ = ["initial_weights_file", "load_initial_weights"]
