"""Tiny training configurations shared by the training tests."""

from __future__ import annotations

from typing import Any

from ptdit.train.config import TrainConfig, apply_overrides, train_config_from_dict


def tiny_train_config(*overrides: str, **sections: dict[str, Any]) -> TrainConfig:
    """A PT-DiT/Tiny text-to-image run on 16 px shapes that takes well under a second per step."""
    data: dict[str, Any] = {
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
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return train_config_from_dict(apply_overrides(data, list(overrides)))
