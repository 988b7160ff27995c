"""Registry of the built-in procedural datasets: names, construction and prompt sets.

| name            | task                | sample `(3, F, H, W)`  | caption example                        |
|-----------------|---------------------|------------------------|----------------------------------------|
| "shapes"        | text-to-image       | F = 1                  | "a small red circle at the top left"   |
| "moving-shapes" | text-to-video       | F = frames (8)         | "a red circle moving left"             |
| "turntable"     | text-to-multi-view  | F = views (8)          | "a red cube with a blue top"           |

Datasets live in `ptdit.data.shapes` and `ptdit.data.turntable`, the caption grammar in
`ptdit.data.captions`, and the matching oracle scorers (`ORACLES`) in `ptdit.eval.oracle`.
"""

from __future__ import annotations

from typing import Any

from ptdit.data.shapes import MovingShapesDataset, ProceduralDataset, ShapesDataset
from ptdit.data.turntable import TurntableDataset

DATASETS: dict[str, type[ProceduralDataset]] = {
    "shapes": ShapesDataset,
    "moving-shapes": MovingShapesDataset,
    "turntable": TurntableDataset,
}


def build_dataset(name: str, **kwargs: Any) -> ProceduralDataset:
    """Builds a procedural dataset by name.

    Args:
        name: a key of `DATASETS`.
        **kwargs: constructor arguments (`size`, `seed`, `num_samples` and the dataset's own ones, e.g.
            `max_objects`, `frames`, `views`).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or invalid arguments.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {list(DATASETS)}")
    return DATASETS[name](**kwargs)


def random_captions(name: str, n: int, seed: int = 0, **kwargs: Any) -> list[str]:
    """Draws `n` valid captions of a dataset (a prompt set), without rendering anything.

    The captions are those of samples `0 .. n - 1` of `build_dataset(name, seed=seed, **kwargs)`, so use a seed
    other than the training seed for prompts the model has not been trained on verbatim.

    Args:
        name: a key of `DATASETS`.
        n: number of captions.
        seed: seed of the caption draw.
        **kwargs: further dataset arguments that change the caption distribution (e.g. `max_objects`).

    Returns:
        `n` caption strings.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    dataset = build_dataset(name, seed=seed, num_samples=max(n, 1), **kwargs)
    return [dataset.caption(i) for i in range(n)]
