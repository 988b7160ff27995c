"""The oracle benchmark (ptdit.eval.suites, checks, benchmark): shipped suites equal their generator, real samples
of every prompt pass every category, shuffled captions score near chance, records explain failures."""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
import pytest

from ptdit.data import build_dataset
from ptdit.eval.benchmark import format_table, score_real_samples, score_sample, summarize
from ptdit.eval.oracle import to_unit_numpy
from ptdit.eval.suites import CATEGORIES, available_suites, build_suite, load_suite, suite_for_task

SUITES = ["t2i-v1", "t2v-v1", "t2mv-v1"]
MIN_PROMPTS = {"t2i-v1": 200, "t2v-v1": 100, "t2mv-v1": 100}


@pytest.mark.parametrize("name", SUITES)
def test_shipped_suite_equals_its_generator(name):
    suite = load_suite(name)
    assert suite == build_suite(suite["dataset"]), (
        "regenerate with ptdit.eval.suites.write_suites() and bump the version"
    )
    prompts = [item["prompt"] for item in suite["items"]]
    assert len(prompts) >= MIN_PROMPTS[name] and len(set(prompts)) == len(prompts)
    assert set(Counter(item["category"] for item in suite["items"])) == set(CATEGORIES[suite["dataset"]])
    assert suite_for_task(suite["task"])["name"] == name


def test_suites_cover_the_geneval_categories():
    assert set(CATEGORIES["shapes"]) == {
        "single_object", "two_objects", "counting", "color", "position", "size", "color_binding",
    }  # fmt: skip
    assert "motion_direction" in CATEGORIES["moving-shapes"] and "view_consistency" in CATEGORIES["turntable"]
    assert sorted(available_suites()) == sorted(SUITES)


def test_binding_prompts_come_with_their_swapped_twin():
    suite = load_suite("t2i-v1")
    binding = [i["prompt"] for i in suite["items"] if i["category"] == "color_binding"]
    for first, second in zip(binding[::2], binding[1::2], strict=True):
        a, b = first.split(), second.split()
        assert [w for w in a if w not in ("red", "green", "blue", "yellow", "magenta", "white")] == [
            w for w in b if w not in ("red", "green", "blue", "yellow", "magenta", "white")
        ]
        assert a[2] == b[a.index("and") + 3] and a[a.index("and") + 3] == b[2]  # colours exchanged


@cache
def _real_records(name: str, size: int) -> tuple:
    frames = 8 if size == 32 else 4
    return tuple(score_real_samples(load_suite(name), size=size, frames=frames))


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", SUITES)
def test_real_samples_pass_every_category(name, size):
    summary = summarize(load_suite(name), list(_real_records(name, size)))
    worst = min(c["accuracy"] for c in summary["categories"].values())
    assert worst >= 0.98, format_table(summary)


def _shuffled_within_categories(name: str, permutations: int = 4) -> dict:
    """Summary of real samples, each scored against other random prompts of its category (a fixed draw)."""
    suite = load_suite(name)
    kwargs = {"moving-shapes": {"frames": 8}, "turntable": {"views": 8}}.get(suite["dataset"], {})
    dataset = build_dataset(suite["dataset"], **kwargs)
    records, rng = [], np.random.default_rng(0)
    for category in suite["categories"]:
        items = [i for i in suite["items"] if i["category"] == category]
        for k, item in enumerate(items):
            frames = to_unit_numpy(dataset.render_caption(item["prompt"], seed=k)[None])[0]
            for other in rng.choice([i for i in range(len(items)) if i != k], size=permutations):
                records.append(score_sample(suite, {**item, "prompt": items[other]["prompt"]}, frames))
    return summarize(suite, records)


# Chance: the pass rate of a sample scored against a random prompt of its category. Shapes, kinds: 1 in 3;
# colours: 1 in 6; counts: 1 in 3; a pair of distinct shapes: 1 in 3; which of two objects is small: 1 in 2;
# directions: 1 in 4, and for the opposite-way pairs of motion binding 1 in 4; positions and two-colour pairs
# almost never match.
CHANCE = {
    "t2i-v1": {"single_object": 1 / 3, "two_objects": 1 / 3, "counting": 1 / 9, "color": 1 / 18, "position": 0.0,
               "size": 1 / 6, "color_binding": 1 / 90},
    "t2v-v1": {"single_object": 1 / 3, "color": 1 / 18, "motion_direction": 1 / 12, "two_objects": 1 / 3,
               "motion_binding": 1 / 12},
    "t2mv-v1": {"single_object": 1 / 3, "color": 1 / 18, "color_binding": 1 / 90, "view_consistency": 1 / 3},
}  # fmt: skip


@pytest.mark.parametrize("name", SUITES)
def test_shuffled_captions_score_near_chance(name):
    summary = _shuffled_within_categories(name)
    for category, chance in CHANCE[name].items():
        assert summary["categories"][category]["accuracy"] <= chance + 0.15, (category, format_table(summary))
    assert summary["overall"]["accuracy"] <= np.mean(list(CHANCE[name].values())) + 0.08, format_table(summary)


def test_records_say_why_and_gate_attributes_of_missing_objects():
    suite = load_suite("t2i-v1")
    item = next(i for i in suite["items"] if i["category"] == "color_binding")
    blank = np.zeros((1, 32, 32, 3), dtype=np.float32)
    record = score_sample(suite, {**item, "seed": 3}, blank)
    assert not record["passed"] and record["seed"] == 3 and record["found"] == []
    drawn = [c for c in record["checks"] if c["tag"] == "drawn"]
    colors = [c for c in record["checks"] if c["tag"] == "color"]
    assert len(drawn) == len(colors) == 2 and all(c["scored"] and not c["passed"] for c in drawn)
    assert all(not c["scored"] and not c["passed"] and "not drawn" in c["why"] for c in colors)
    # A real sample with its colours swapped: both objects drawn, both colours scored and wrong.
    twin = suite["items"][suite["items"].index(item) + 1]
    pixels = build_dataset("shapes").render_caption(twin["prompt"])
    record = score_sample(suite, item, to_unit_numpy(pixels[None])[0])
    assert [c["passed"] for c in record["checks"]] == [True, False, True, False]
    assert "wanted" in record["checks"][1]["why"] and "found" in record["checks"][1]["why"]


def test_summary_bootstrap_interval_and_seed_averaging():
    suite = {"name": "toy", "categories": {"a": {}, "b": {}}, "items": [
        {"id": str(i), "category": "a" if i < 10 else "b"} for i in range(20)
    ]}  # fmt: skip
    records = [{"id": str(i), "category": "a" if i < 10 else "b", "passed": i < 5 or i >= 10} for i in range(20)]
    records += [{**r, "passed": True} for r in records]  # a second seed that always passes
    summary = summarize(suite, records)
    assert summary["categories"]["a"]["accuracy"] == 0.75 and summary["categories"]["b"]["accuracy"] == 1.0
    assert summary["overall"]["accuracy"] == 0.875 and summary["num_samples"] == 40
    lo, hi = summary["categories"]["a"]["ci95"]
    assert 0.5 <= lo < 0.75 < hi <= 1.0 and summary["categories"]["b"]["ci95"] == [1.0, 1.0]
    assert "| **overall** | **0.875** |" in format_table(summary)
