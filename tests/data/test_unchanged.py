"""The datasets' default samples are byte-for-byte what they were before the benchmark options were added
(`max_objects` for moving-shapes, `single_color_fraction` for turntable, caption rendering): the demos' training
data must not change unless a config option asks for it. The digests were computed before those changes."""

from __future__ import annotations

import hashlib

import pytest

from ptdit.data import build_dataset

GOLDEN = [
    ("shapes", {}, "f649125ebc925cd3"),
    ("shapes", {"max_objects": 1}, "4345fbae597c1be6"),
    ("shapes", {"min_objects": 2, "max_objects": 4}, "b2e43ad75298a983"),
    ("moving-shapes", {}, "a5f0de575db4abe2"),
    ("moving-shapes", {"frames": 5, "size": 48}, "52f94cc247a241f1"),
    ("turntable", {}, "1adb38c0de1bf182"),
    ("turntable", {"views": 3, "size": 40}, "295f1edf3a949889"),
]


@pytest.mark.parametrize(("name", "kwargs", "digest"), GOLDEN)
def test_default_samples_unchanged(name, kwargs, digest):
    dataset = build_dataset(name, seed=11, **kwargs)
    h = hashlib.sha256()
    for i in range(120):
        item = dataset[i]
        h.update(item["pixels"].numpy().tobytes())
        h.update(item["caption"].encode())
    assert h.hexdigest()[:16] == digest
