"""Multi-stage training plans (paper Table 3; docs/training.md#stages).

A config's `stages:` list splits one run into consecutive stages. Each stage trains `steps` optimizer steps and
overrides a few keys of the config (flat dotted names), e.g.

    stages:
      - {name: 256px, steps: 100000, data.size: 256, model.window_size: [1, 2, 2], train.batch_size: 10240}
      - {name: 512px, steps: 50000, data.size: 512, model.window_size: [1, 4, 4], train.batch_size: 768}

The run moves from stage to stage by itself at the stage boundaries: model, EMA and optimizer state carry over
(the step count continues), and `train.max_steps` is the sum of the stages' steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

# Keys a stage may override (besides `name` and `steps`): what the paper changes between its stages.
STAGE_KEYS = (
    "data.size", "data.path", "data.dataset", "data.options", "model.window_size", "train.batch_size", "optim.lr",
    "optim.warmup_steps", "optim.grad_accum", "train.caption_dropout",
)  # fmt: skip


@dataclass(frozen=True)
class Stage:
    """One resolved stage: it trains the global steps [start, stop) with `config`."""

    index: int
    name: str
    start: int
    stop: int
    config: Any  # TrainConfig with stage=index


def _check_one(index: int, stage: Any) -> None:
    if not isinstance(stage, dict):
        raise ValueError(f"stages[{index}] must be a mapping like {{steps: 1000, data.size: 512}}, got {stage!r}")
    unknown = sorted(set(stage) - {"name", "steps", *STAGE_KEYS})
    if unknown:
        raise ValueError(f"stages[{index}] has unknown keys {unknown}; a stage may set name, steps, {list(STAGE_KEYS)}")
    steps = stage.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"stages[{index}].steps must be a positive integer, got {steps!r}")
    if "data.options" in stage and not isinstance(stage["data.options"], dict):
        raise ValueError(f"stages[{index}].data.options must be a mapping, got {stage['data.options']!r}")


def stage_name(stage: dict[str, Any], index: int) -> str:
    return str(stage.get("name", f"stage-{index + 1}"))


def check_stages(data: dict[str, Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """(the validated stage list, the config mapping with train.max_steps set to the stages' total). Raises
    ValueError naming the stage and key that is wrong."""
    raw = data.get("stages") or []
    if not isinstance(raw, list | tuple):
        raise ValueError(f"stages must be a list of mappings, got {type(raw).__name__}")
    if not raw or data.get("stage") is not None:  # no plan, or a stage resolved from a checked plan
        return tuple(copy.deepcopy(list(raw))), data
    for index, stage in enumerate(raw):
        _check_one(index, stage)
    names = [stage_name(s, i) for i, s in enumerate(raw)]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must differ, got {names}")
    total = sum(s["steps"] for s in raw)
    data = copy.deepcopy(data)
    run = data.setdefault("train", {})
    if run.get("max_steps", total) != total:
        raise ValueError(
            f"train.max_steps={run['max_steps']} differs from the stages' total of {total} steps; remove "
            f"train.max_steps (it is the sum of the stages' steps) or make it {total}"
        )
    run["max_steps"] = total
    return tuple(copy.deepcopy(list(raw))), data


def stage_dict(base: dict[str, Any], stages: tuple[dict[str, Any], ...], index: int) -> dict[str, Any]:
    """The config mapping of stage `index`: `base` with the stage's overrides (data.options merge)."""
    data = copy.deepcopy({k: v for k, v in base.items() if k not in ("stages", "stage")})
    for key, value in stages[index].items():
        if key in ("name", "steps"):
            continue
        section, name = key.split(".", 1)
        node = data.setdefault(section, {})
        if name == "options":
            node[name] = {**node.get(name, {}), **copy.deepcopy(value)}
        else:
            node[name] = copy.deepcopy(value)
    return {**data, "stages": list(stages), "stage": index}


def resolve_stages(cfg: Any) -> list[Stage]:
    """The stages of a staged config, each with its full config; raises ValueError naming a stage whose
    overrides do not make a valid config."""
    from ptdit.train.config import train_config_from_dict

    base, resolved, start = cfg.to_dict(), [], 0
    for index, stage in enumerate(cfg.stages):
        try:
            config = train_config_from_dict(stage_dict(base, cfg.stages, index))
        except ValueError as err:
            raise ValueError(f"stages[{index}] ({stage_name(stage, index)}): {err}") from None
        resolved.append(Stage(index, stage_name(stage, index), start, start + stage["steps"], config))
        start += stage["steps"]
    return resolved


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage that trains step `step` (the last stage for the final step count)."""
    for stage in stages:
        if stage.start <= step < stage.stop:
            return stage
    return stages[-1]


def written_by(stages: list[Stage], step: int) -> Stage:
    """The stage that wrote a checkpoint of step `step` (a boundary checkpoint belongs to the stage before it)."""
    return stage_at(stages, max(step - 1, 0))


__all__ = ["STAGE_KEYS", "Stage", "check_stages", "resolve_stages", "stage_at", "stage_dict", "written_by"]
