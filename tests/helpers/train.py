"""Tiny training configurations shared by the training tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ptdit.train.config import TrainConfig, apply_overrides, train_config_from_dict

# A PT-DiT/Tiny text-to-image run on 24 px shapes that takes well under a second per step.
TINY_TRAIN: dict[str, Any] = {
    "model": {
        "preset": "PT-DiT/Tiny",
        "dim": 32,
        "depth": 1,
        "num_heads": 2,
        "in_channels": 3,
        "out_channels": 6,
        "context_dim": 32,
        "window_size": [1, 2, 2],
    },
    "pipeline": {
        "task": "t2i",
        "text_encoder": "words",
        "text_max_length": 16,
        "vae": "identity",
        "steps": 2,
        "cfg_scale": 2.0,
        "timestep_shift": False,
    },
    "data": {"dataset": "shapes", "size": 24, "options": {"max_objects": 1}},
    "optim": {"lr": 1e-3, "warmup_steps": 2},
    "train": {
        "batch_size": 4,
        "max_steps": 6,
        "precision": "fp32",
        "ema_decay": 0.9,
        "log_every": 1,
        "checkpoint_every": 1000,
        "keep_last": 5,
        "num_sample_prompts": 2,
    },
}


def tiny_train_dict(*overrides: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny config as a mapping, with section updates and `--set`-style overrides applied."""
    data = copy.deepcopy(TINY_TRAIN)
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return apply_overrides(data, list(overrides))


def tiny_train_config(*overrides: str, **sections: dict[str, Any]) -> TrainConfig:
    """A PT-DiT/Tiny text-to-image run on 24 px shapes that takes well under a second per step."""
    return train_config_from_dict(tiny_train_dict(*overrides, **sections))


def write_tiny_config(path: Path, *overrides: str, **sections: dict[str, Any]) -> Path:
    """The tiny config as a file for `ptdit train --config` (JSON, which YAML reads too)."""
    path.write_text(json.dumps(tiny_train_dict(*overrides, **sections), indent=2) + "\n")
    return path
