"""The shapes dataset (ptdit.data.shapes): object counts and no overlap."""

from __future__ import annotations

from ptdit.data import ShapesDataset


def test_shapes_object_counts_and_no_overlap():
    dataset = ShapesDataset(min_objects=2, max_objects=3, size=32)
    for i in range(50):
        objects = dataset.sample_spec(i)["objects"]
        assert 2 <= len(objects) <= 3
        assert len({o["position"] for o in objects}) == len(objects)
    # Single objects only.
    assert all(len(ShapesDataset(max_objects=1).sample_spec(i)["objects"]) == 1 for i in range(20))
