"""The recipe layer: the one place where three cross-cutting decisions are made.

- `objective`: objective name -> noise schedule, prediction type, training loss and timestep shift;
- `tasks` and `conditioning`: task -> conditioning kind (text, class, none) -> how a condition is encoded,
  what its null (CFG) condition is, and how caption / label dropout replaces it;
- `windows`: latent shape + task + model config -> a validated attention window (the paper's rule).

The trainer, the generation pipeline, the CLI, the FLOP counter and the benchmarks all call these functions
instead of re-deriving the decisions (docs/decisions.md#one-place-per-decision).
"""

from ptdit.recipe.conditioning import (
    ClassConditioning,
    Conditioning,
    NoConditioning,
    TextConditioning,
    conditioning_for,
)
from ptdit.recipe.objective import Objective, build_objective
from ptdit.recipe.tasks import BUILTIN_DATASETS, TASKS, Task, get_task
from ptdit.recipe.windows import paper_window, resolve_window, temporal_window, token_grid, window_tiling

__all__ = [
    "BUILTIN_DATASETS",
    "TASKS",
    "ClassConditioning",
    "Conditioning",
    "NoConditioning",
    "Objective",
    "Task",
    "TextConditioning",
    "build_objective",
    "conditioning_for",
    "get_task",
    "paper_window",
    "resolve_window",
    "temporal_window",
    "token_grid",
    "window_tiling",
]
