"""What `--resume` checks before it continues a run (docs/training.md#resuming-with-another-config).

The checkpoint's config.json records the run's full config. Against the config given now:
- a different model, or a pipeline setting that defines what is learned (task, objective, encoders), is refused,
  naming the fields: the saved weights and optimizer state belong to another network or another problem;
- a different setting that changes the numbers (batch size, data, optimizer, seed, precision, ...) is allowed
  only with `--allow-config-change`: the run continues but is no longer bit-exact with an uninterrupted one;
- settings that never change the numbers (logging, checkpoint interval, time budget, workers, threads,
  sampling defaults) may change freely.
"""

from __future__ import annotations

from typing import Any

from ptdit.train.config import TrainConfig

# Pipeline fields that define the training problem (the rest are sampling defaults).
PIPELINE_FIXED = (
    "task", "objective", "beta_schedule", "timestep_shift", "shift_scale", "text_encoder", "text_max_length",
    "text_context", "vae",
)  # fmt: skip
# Settings that never change the numbers of a step.
FREE = {
    "data.num_workers",
    "data.max_skip_fraction",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_last",
    "train.sample_every",
    "train.num_sample_prompts",
    "train.sample_steps",
    "train.max_minutes",
    "train.num_threads",
    "train.grad_checkpointing",
    "train.init_from",  # used only by a run's first invocation (docs/training.md#stages)
}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): list(data) if isinstance(data, tuple) else data}


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ. A field only one side knows (added or removed in another ptdit version) is not
    a difference, except dataset options, whose keys are the user's."""
    keys = sorted((set(before) & set(after)) | {k for k in set(before) | set(after) if k.startswith("data.options")})
    return {k: (before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)}


def describe(changes: dict[str, tuple[Any, Any]], limit: int = 6) -> str:
    """`depth: 2 -> 3, optim.lr: 0.001 -> 0.002` (at most `limit`, then a count)."""
    shown = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changes.items())[:limit]]
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return ", ".join(shown) + more


def config_changes(saved: dict[str, Any], cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(changes that are refused, changes that need --allow-config-change) between a checkpoint's config.json
    and `cfg`; each maps a dotted field name to (saved value, new value)."""
    fixed = _diff(_flatten(saved.get("model", {}), "model."), _flatten(cfg.model_config().to_dict(), "model."))
    saved_train = saved.get("train") or {}
    if not saved_train:  # a checkpoint without its training config: only the model can be compared
        return fixed, {}
    now = _flatten(cfg.to_dict())
    before = _flatten({k: v for k, v in saved_train.items() if k != "model"})
    now = {k: v for k, v in now.items() if not k.startswith("model.")}
    changed = _diff(before, now)
    for key in list(changed):
        section, _, name = key.partition(".")
        if section == "pipeline" and name in PIPELINE_FIXED:
            fixed[key] = changed.pop(key)
        elif section == "pipeline" or key in FREE:
            changed.pop(key)
    return fixed, changed


def check_resume_config(saved: dict[str, Any], cfg: TrainConfig, *, allow_change: bool) -> dict[str, Any]:
    """Raises ValueError for refused changes, or for numeric changes without `allow_change`; returns the numeric
    changes that are allowed (empty when the resume is exact)."""
    fixed, changed = config_changes(saved, cfg)
    if fixed:
        raise ValueError(
            f"--resume: the model or task differs from the checkpoint's ({describe(fixed)}); the saved weights "
            "cannot continue as another network, so resume with the run's own config or start a new --out"
        )
    if changed and not allow_change:
        raise ValueError(
            f"--resume: settings differ from the checkpoint's ({describe(changed)}); pass --allow-config-change "
            "to continue anyway (the run is then no longer bit-exact with an uninterrupted one), or resume with "
            "the run's own config"
        )
    return changed


__all__ = ["check_resume_config", "config_changes", "describe"]
