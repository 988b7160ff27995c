"""Tasks: what each task conditions on, how its windows treat time, and what kind of media it writes.

Adding a task means adding one entry here; every other module asks `get_task(name)` instead of testing
task names (docs/decisions.md#one-place-per-decision).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One generation task.

    Attributes:
        name: the task's name in configs and checkpoints.
        conditioning: "text", "class" or "none" (see `ptdit.recipe.conditioning`).
        temporal_window: the paper's temporal window p_f in latent frames, used when frames > 1.
        media: what F > 1 samples are written as: "video" or "multiview" (F = 1 is always an image).
    """

    name: str
    conditioning: str
    temporal_window: int
    media: str


# Video keeps p_f = 4 at every resolution (docs/architecture.md#video-and-multi-view). Multi-view: 24 views
# give 6 latent frames with a 4x temporal VAE, which 4 does not divide, so T2MV uses p_f = 2
# (docs/decisions.md#multi-view-window).
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("t2i", conditioning="text", temporal_window=4, media="video"),
        Task("t2v", conditioning="text", temporal_window=4, media="video"),
        Task("t2mv", conditioning="text", temporal_window=2, media="multiview"),
        Task("class", conditioning="class", temporal_window=4, media="video"),
        Task("uncond", conditioning="none", temporal_window=4, media="video"),
    )
}


# The built-in procedural dataset of each text task: what its demo trains on and what its oracle-benchmark suite
# (ptdit.eval.suites) is written in (docs/oracle-benchmark.md).
BUILTIN_DATASETS: dict[str, str] = {"t2i": "shapes", "t2v": "moving-shapes", "t2mv": "turntable"}


def get_task(name: str) -> Task:
    """The task called `name`; ValueError listing the valid names otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]


__all__ = ["BUILTIN_DATASETS", "TASKS", "Task", "get_task"]
