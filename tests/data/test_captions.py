"""Caption grammar (ptdit.data.captions): vocabulary, format / parse round trip, invalid captions."""

from __future__ import annotations

import pytest

from ptdit.data import DATASETS, VOCABULARY, build_dataset, format_caption, parse_caption, random_captions

NAMES = list(DATASETS)


SPEC_KEYS = {
    "shapes": {"objects"},
    "moving-shapes": {"color", "shape", "direction"},
    "turntable": {"kind", "color", "top_color"},
}


def test_vocabulary_is_small_sorted_and_lower_case():
    assert len(VOCABULARY) < 40
    assert list(VOCABULARY) == sorted(set(VOCABULARY))
    assert all(w.isalpha() and w.islower() for w in VOCABULARY)


@pytest.mark.parametrize("name", NAMES)
def test_captions_use_vocabulary_and_roundtrip(name):
    kwargs = {"max_objects": 4} if name == "shapes" else {}
    captions = random_captions(name, 300, seed=5, **kwargs)
    assert len(set(captions)) > 50
    for caption in captions:
        assert set(caption.split()) <= set(VOCABULARY), caption
        spec = parse_caption(name, caption)
        assert set(spec) == SPEC_KEYS[name]
        assert format_caption(name, spec) == caption
    dataset = build_dataset(name, seed=5, **kwargs)
    assert captions[:5] == [dataset[i]["caption"] for i in range(5)]


def test_parse_examples():
    assert parse_caption("shapes", "a small red circle at the top left and a large blue square at the center") == {
        "objects": [
            {"size": "small", "color": "red", "shape": "circle", "position": "top left"},
            {"size": "large", "color": "blue", "shape": "square", "position": "center"},
        ]
    }
    assert parse_caption("shapes", "a large green triangle at the top")["objects"][0]["position"] == "top"
    assert parse_caption("moving-shapes", "a red circle moving left") == {
        "color": "red",
        "shape": "circle",
        "direction": "left",
    }
    assert parse_caption("turntable", "a red cube with a blue top") == {
        "kind": "cube",
        "color": "red",
        "top_color": "blue",
    }


@pytest.mark.parametrize(
    ("name", "caption"),
    [
        ("shapes", "a red circle at the top left"),  # size missing
        ("shapes", "a small red circle at the top left and"),
        ("shapes", "a small purple circle at the center"),
        ("moving-shapes", "a red circle moving sideways"),
        ("moving-shapes", "a red circle moving left fast"),
        ("turntable", "a red cube with a blue"),
        ("shapes-3d", "a red cube with a blue top"),
    ],
)
def test_parse_rejects_invalid_captions(name, caption):
    with pytest.raises(ValueError):
        parse_caption(name, caption)


def test_new_grammar_forms_roundtrip():
    two = "a red circle moving left and a blue square moving right"
    assert parse_caption("moving-shapes", two) == {
        "objects": [
            {"color": "red", "shape": "circle", "direction": "left"},
            {"color": "blue", "shape": "square", "direction": "right"},
        ]
    }
    assert parse_caption("turntable", "a red cube") == {"kind": "cube", "color": "red", "top_color": "red"}
    for name, caption in [("moving-shapes", two), ("turntable", "a red cube")]:
        assert format_caption(name, parse_caption(name, caption)) == caption
    captions = random_captions("moving-shapes", 100, seed=1, max_objects=2)
    assert any(" and " in c for c in captions) and all(set(c.split()) <= set(VOCABULARY) for c in captions)
    with pytest.raises(ValueError, match="one-colour"):
        parse_caption("turntable", "a red cube with a red top")
    with pytest.raises(ValueError):
        parse_caption("moving-shapes", "a red circle moving left and")
