"""The oracle benchmark's prompt suites: fixed, versioned, GenEval-style categories per task.

Each suite is a JSON file shipped in `ptdit/eval/suites/` (`t2i-v1.json`, ...) and written by `build_suite`, a
deterministic function of the dataset name: the prompts come from their own generator (seed `SUITE_SEED`), not
from the training captions' random draws nor from the demo's prompts. A test rebuilds every suite and compares
it with the shipped file, so a suite never changes silently; a changed generator means a new version (v2) and a
new file. docs/oracle-benchmark.md lists the categories and what each scores.

A suite: `{"name", "version", "task", "dataset", "seed", "categories": {name: {"checks": [tag, ...],
"description"}}, "items": [{"id", "category", "prompt"}, ...]}`. A category scores the checks of
`ptdit.eval.checks` whose tag it lists; a sample passes its category when all of them pass (GenEval).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.data.captions import COLORS, DIRECTIONS, KINDS, POSITIONS, SHAPES, SIZES, format_caption
from ptdit.data.shapes import valid_layouts
from ptdit.recipe import BUILTIN_DATASETS

SUITE_VERSION = 1
SUITE_SEED = 2409  # the paper's arXiv number, 2409.04005
_COLORS = tuple(COLORS)

# Per dataset: category -> (check tags scored, description). Order = report order.
CATEGORIES: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "shapes": {
        "single_object": (("drawn",), "one object; passes when its shape is found"),
        "two_objects": (("drawn",), "two objects of different shapes; passes when both are found"),
        "counting": (("count",), "2, 3 or 4 identical objects; passes when exactly that many of that shape are found"),
        "color": (("drawn", "color"), "one object; passes when it is found in the captioned colour"),
        "position": (("drawn", "position"), "two objects; passes when both are found in their captioned cells"),
        "size": (("drawn", "size"), "a small and a large object; passes when both are found with the right sizes"),
        "color_binding": (
            ("drawn", "color"),
            "two objects of different shapes and colours, each prompt also in the suite with the colours swapped; "
            "passes when each object has its own colour",
        ),
    },
    "moving-shapes": {
        "single_object": (("drawn",), "one mover; passes when its shape is found in at least half of the frames"),
        "color": (("drawn", "color"), "one mover; passes when it is found in the captioned colour"),
        "motion_direction": (("drawn", "direction"), "one mover; passes when it moves in the captioned direction"),
        "two_objects": (("drawn",), "two movers of different shapes; passes when both are found"),
        "motion_binding": (
            ("drawn", "direction"),
            "two movers going opposite ways, each prompt also in the suite with the directions swapped; passes "
            "when each mover goes its own way",
        ),
    },
    "turntable": {
        "single_object": (("drawn",), "a two-tone object; passes when its kind is recognised in most views"),
        "color": (("drawn", "color", "top_color"), "a one-colour object; passes when it has that colour throughout"),
        "color_binding": (
            ("drawn", "color", "top_color"),
            "a two-tone object, each prompt also in the suite with the colours swapped; passes when both parts "
            "have their own colour",
        ),
        "view_consistency": (
            ("drawn", "consistency"),
            "a two-tone object; passes when all views show one object that turns smoothly",
        ),
    },
}


def suite_name(dataset: str, version: int = SUITE_VERSION) -> str:
    """The suite's name, e.g. "t2i-v1": its task and its version."""
    task = {d: t for t, d in BUILTIN_DATASETS.items()}.get(dataset)
    if task is None:
        raise ValueError(f"no suite for dataset {dataset!r}; suites exist for {sorted(CATEGORIES)}")
    return f"{task}-v{version}"


def build_suite(dataset: str) -> dict[str, Any]:
    """The suite of a built-in dataset, generated deterministically (the shipped JSON is this function's output)."""
    if dataset not in _BUILDERS:
        raise ValueError(f"no suite for dataset {dataset!r}; suites exist for {sorted(_BUILDERS)}")
    rng = np.random.default_rng([SUITE_SEED, sorted(_BUILDERS).index(dataset)])
    prompts = _BUILDERS[dataset](rng)
    categories = CATEGORIES[dataset]
    assert set(prompts) == set(categories), "every category gets prompts"
    items = [(c, p) for c in categories for p in prompts[c]]
    assert len({p for _, p in items}) == len(items), "prompts are distinct"
    name = suite_name(dataset)
    return {
        "name": name,
        "version": SUITE_VERSION,
        "task": name.rsplit("-v", 1)[0],
        "dataset": dataset,
        "seed": SUITE_SEED,
        "categories": {c: {"checks": list(tags), "description": text} for c, (tags, text) in categories.items()},
        "items": [{"id": f"{name}/{i:04d}", "category": c, "prompt": p} for i, (c, p) in enumerate(items)],
    }


# --------------------------------------------------------------------------------------------------------------
# Builders: category -> prompts
# --------------------------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str], k: int = 1) -> list[str]:
    """`k` distinct random choices."""
    return [options[i] for i in rng.choice(len(options), size=k, replace=False)]


def _place(objects: list[dict[str, str]], rng: np.random.Generator) -> list[dict[str, str]]:
    """Objects with positions from a random valid layout at 32 px, in reading order (as the dataset captions)."""
    layouts = valid_layouts(32, tuple(o["size"] for o in objects))
    cells = layouts[int(rng.integers(len(layouts)))]
    return [{**objects[i], "position": POSITIONS[c]} for c, i in sorted(zip(cells, range(len(objects)), strict=True))]


def _shapes(objects: list[dict[str, str]]) -> str:
    return format_caption("shapes", {"objects": objects})


def _object(rng: np.random.Generator, **fixed: str) -> dict[str, str]:
    """A random object (size, colour, shape) with some attributes fixed."""
    return {"size": _pick(rng, SIZES)[0], "color": _pick(rng, _COLORS)[0], "shape": _pick(rng, SHAPES)[0], **fixed}


def _other(rng: np.random.Generator, first: dict[str, str], *differ: str) -> dict[str, str]:
    """A random object that differs from `first` in the attributes `differ`."""
    options = {"size": SIZES, "color": _COLORS, "shape": SHAPES}
    return _object(rng, **{k: _pick(rng, [v for v in options[k] if v != first[k]])[0] for k in differ})


def _build_shapes(rng: np.random.Generator, per_category: int = 32) -> dict[str, list[str]]:
    seen: set[str] = set()

    def fresh(make: Callable[[int], list[str]], count: int) -> list[str]:
        out: list[str] = []
        while len(out) < count:
            prompts = make(len(out))  # one prompt, or a prompt and its swapped twin; the index balances values
            if not seen & set(prompts):
                seen.update(prompts)
                out += prompts
        return out

    def one(i: int, key: str, values: tuple[str, ...]) -> list[str]:
        return [_shapes(_place([_object(rng, **{key: values[i % len(values)]})], rng))]

    def two(*differ: str) -> Callable[[int], list[str]]:
        return lambda _: two_objects(*differ)

    def two_objects(*differ: str) -> list[str]:
        first = _object(rng)
        return [_shapes(_place([first, _other(rng, first, *differ)], rng))]

    def swapped_colors(_: int) -> list[str]:
        first = _object(rng)
        a, b = _place([first, _other(rng, first, "shape", "color")], rng)
        return [_shapes([a, b]), _shapes([{**a, "color": b["color"]}, {**b, "color": a["color"]}])]

    n = per_category
    return {
        "single_object": fresh(lambda i: one(i, "shape", SHAPES), n),  # the shapes in turn
        "two_objects": fresh(two("shape"), n),
        "counting": fresh(lambda i: [_shapes(_place([_object(rng)] * (2 + i % 3), rng))], n),  # 2, 3, 4 in turn
        "color": fresh(lambda i: one(i, "color", _COLORS), n),  # the colours in turn
        "position": fresh(two("shape"), n),
        "size": fresh(two("shape", "size"), n),
        "color_binding": fresh(swapped_colors, n),
    }


def _mover(color: str, shape: str, direction: str) -> dict[str, str]:
    return {"color": color, "shape": shape, "direction": direction}


def _moving(*movers: dict[str, str]) -> str:
    return format_caption("moving-shapes", {"objects": list(movers)})


_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def _build_moving_shapes(rng: np.random.Generator) -> dict[str, list[str]]:
    # All 72 one-mover captions, split over the three one-mover categories: 6 per direction for motion
    # direction, 4 per colour for colour, the other 24 for single object.
    pool = [_mover(*m) for m in itertools.product(_COLORS, SHAPES, DIRECTIONS)]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    prompts: dict[str, list[str]] = {}
    for category, key, values, per_value in (
        ("motion_direction", "direction", DIRECTIONS, 6),
        ("color", "color", _COLORS, 4),
    ):
        chosen = [m for v in values for m in [m for m in pool if m[key] == v][:per_value]]
        prompts[category] = [_moving(m) for m in chosen]
        pool = [m for m in pool if m not in chosen]
    prompts["single_object"] = [_moving(m) for m in pool]

    def two_movers(opposite: bool) -> tuple[dict[str, str], dict[str, str]]:
        (c1, c2), (s1, s2), d1 = _pick(rng, _COLORS, 2), _pick(rng, SHAPES, 2), _pick(rng, DIRECTIONS)[0]
        d2 = _OPPOSITE[d1] if opposite else _pick(rng, [d1, _OPPOSITE[d1]])[0]
        return _mover(c1, s1, d1), _mover(c2, s2, d2)

    seen: set[str] = set()
    prompts["two_objects"], prompts["motion_binding"] = [], []
    while len(prompts["two_objects"]) < 16:  # movers on one axis (perpendicular ones cannot be kept apart)
        prompt = _moving(*two_movers(opposite=False))
        if prompt not in seen:
            seen.add(prompt)
            prompts["two_objects"].append(prompt)
    while len(prompts["motion_binding"]) < 16:
        a, b = two_movers(opposite=True)
        pair = [_moving(a, b), _moving({**a, "direction": b["direction"]}, {**b, "direction": a["direction"]})]
        if not seen & set(pair):
            seen.update(pair)
            prompts["motion_binding"] += pair
    return prompts


def _turntable(kind: str, color: str, top: str) -> str:
    return format_caption("turntable", {"kind": kind, "color": color, "top_color": top})


def _build_turntable(rng: np.random.Generator) -> dict[str, list[str]]:
    prompts: dict[str, list[str]] = {
        "color": [_turntable(k, c, c) for c, k in itertools.product(_COLORS, KINDS)],  # all 18 one-colour objects
        "color_binding": [],
    }
    pairs = list(itertools.combinations(_COLORS, 2))  # all 15 colour pairs, each both ways round
    for i, k in enumerate(rng.permutation(len(pairs))):
        (c1, c2), kind = pairs[k], KINDS[i % 3]  # 5 pairs per kind, which leaves 20 two-tone prompts per kind
        prompts["color_binding"] += [_turntable(kind, c1, c2), _turntable(kind, c2, c1)]
    pool = [(k, c, t) for k, c, t in itertools.product(KINDS, _COLORS, _COLORS) if c != t]
    pool = [pool[i] for i in rng.permutation(len(pool))]
    pool = [p for p in pool if _turntable(*p) not in prompts["color_binding"]]
    single = [p for kind in KINDS for p in [q for q in pool if q[0] == kind][:9]]  # 9 of each kind
    prompts["single_object"] = [_turntable(*p) for p in single]
    prompts["view_consistency"] = [_turntable(*p) for p in pool if p not in single]  # the other 11 of each kind
    return prompts


_BUILDERS: dict[str, Callable[[np.random.Generator], dict[str, list[str]]]] = {
    "shapes": _build_shapes,
    "moving-shapes": _build_moving_shapes,
    "turntable": _build_turntable,
}


# --------------------------------------------------------------------------------------------------------------
# Shipped files
# --------------------------------------------------------------------------------------------------------------


def suites_folder() -> Path:
    """The folder of the shipped suite files (inside the package)."""
    return Path(str(resources.files("ptdit") / "eval" / "suites"))


def write_suites(folder: str | Path | None = None) -> list[Path]:
    """Writes every suite as `NAME.json` (the shipped files are written by this function)."""
    folder = Path(folder) if folder else suites_folder()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in CATEGORIES:
        suite = build_suite(dataset)
        path = folder / f"{suite['name']}.json"
        path.write_text(_suite_json(suite))
        paths.append(path)
    return paths


def _suite_json(suite: dict[str, Any]) -> str:
    """Indented JSON with one item per line, so a diff of two suite versions reads prompt by prompt."""
    head = json.dumps({k: v for k, v in suite.items() if k != "items"}, indent=1)[: -len("\n}")]
    items = ",\n".join(f"  {json.dumps(item)}" for item in suite["items"])
    return f'{head},\n "items": [\n{items}\n ]\n}}\n'


def available_suites() -> dict[str, Path]:
    """Suite name -> shipped file."""
    return {p.stem: p for p in sorted(suites_folder().glob("*.json"))}


def load_suite(name: str) -> dict[str, Any]:
    """A shipped suite by name ("t2i-v1") or a suite file by path."""
    suites = available_suites()
    path = suites.get(name) or Path(name)
    if not path.is_file():
        raise ValueError(f"unknown suite {name!r}; shipped suites: {sorted(suites)} (or give a suite JSON file)")
    try:
        suite = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read suite file {path}: {err}") from None
    missing = {"name", "dataset", "categories", "items"} - set(suite) if isinstance(suite, dict) else {"everything"}
    if missing:
        raise ValueError(f"{path} is not a suite file: missing {sorted(missing)}")
    return suite


def suite_for_task(task: str) -> dict[str, Any]:
    """The newest shipped suite of a task."""
    versions = [s for s in available_suites() if s.rsplit("-v", 1)[0] == task]
    if not versions:
        tasks = sorted({s.rsplit("-v", 1)[0] for s in available_suites()})
        raise ValueError(f"no oracle-benchmark suite for task {task!r}; suites exist for {tasks}")
    return load_suite(max(versions, key=lambda s: int(s.rsplit("-v", 1)[1])))


__all__ = [
    "CATEGORIES",
    "SUITE_SEED",
    "SUITE_VERSION",
    "available_suites",
    "build_suite",
    "load_suite",
    "suite_for_task",
    "suite_name",
    "write_suites",
]
