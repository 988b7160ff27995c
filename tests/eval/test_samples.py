"""Sample sets: folders and ADM-style .npz read in batches; bad sets fail with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ptdit.eval.samples import center_crop_image, is_stats_file, open_samples, read_prompts


def write_images(folder, images, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / (names[i] if names else f"{i:03d}.png"))
    return folder


def random_images(n, h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_folder_is_read_recursively_in_order_and_in_batches(tmp_path):
    images = random_images(5)
    write_images(tmp_path / "set" / "b", images[3:], ["0.png", "1.png"])
    write_images(tmp_path / "set" / "a", images[:3])
    (tmp_path / "set" / ".a.tmp-x.png").write_bytes(b"half written")  # hidden: skipped
    samples = open_samples(tmp_path / "set", media="image")
    assert samples.count == 5 and samples.item_shape == (16, 16) and samples.source == "folder"
    batches = list(samples.batches(2))
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), images)
    np.testing.assert_array_equal(np.concatenate(list(samples.batches(2, limit=3))), images[:3])


def test_npz_is_streamed_and_equals_the_array(tmp_path):
    images = random_images(7, 8, 12)
    np.savez(tmp_path / "samples.npz", arr_0=images)
    samples = open_samples(tmp_path / "samples.npz", media="image")
    assert samples.count == 7 and samples.item_shape == (8, 12) and samples.source == "npz"
    np.testing.assert_array_equal(np.concatenate(list(samples.batches(3))), images)
    videos = np.random.default_rng(1).integers(0, 256, (3, 5, 8, 8, 3), dtype=np.uint8)
    np.savez_compressed(tmp_path / "videos.npz", arr_0=videos)
    clips = open_samples(tmp_path / "videos.npz", media="video", num_frames=4)
    assert clips.item_shape == (4, 8, 8)
    np.testing.assert_array_equal(np.concatenate(list(clips.batches(2))), videos[:, :4])
    assert not is_stats_file(tmp_path / "samples.npz")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d.mkdir(), "no images"),
        (
            lambda d: write_images(d, random_images(1)) and (d / "bad.png").write_bytes(b"not a png"),
            "cannot read image",
        ),
        (lambda d: write_images(d, [*random_images(1), *random_images(1, 16, 24)]), "mixed sizes"),
    ],
    ids=["empty", "unreadable", "mixed-sizes"],
)
def test_bad_folders_fail_with_one_line(tmp_path, make, message):
    make(tmp_path / "set")
    with pytest.raises(ValueError, match=message) as err:
        open_samples(tmp_path / "set", media="image")
    assert "\n" not in str(err.value)


def test_bad_npz_and_paths(tmp_path):
    np.savez(tmp_path / "float.npz", arr_0=np.zeros((2, 4, 4, 3), np.float32))
    np.savez(tmp_path / "gray.npz", arr_0=np.zeros((2, 4, 4), np.uint8))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(3), sigma=np.eye(3))
    for name, message in (("float", "uint8"), ("gray", r"\(N, H, W, 3\)"), ("stats", "no protocol record")):
        with pytest.raises(ValueError, match=message):
            open_samples(tmp_path / f"{name}.npz", media="image")
    with pytest.raises(ValueError, match="fewer than the 16"):
        np.savez(tmp_path / "short.npz", arr_0=np.zeros((2, 8, 4, 4, 3), np.uint8))
        open_samples(tmp_path / "short.npz", media="video", num_frames=16)
    with pytest.raises(FileNotFoundError):
        open_samples(tmp_path / "missing", media="image")


def test_center_crop_prepares_mixed_size_references(tmp_path):
    write_images(tmp_path / "ref", [*random_images(1, 40, 60), *random_images(1, 70, 50)])
    samples = open_samples(tmp_path / "ref", media="image", center_crop=16)
    assert samples.item_shape == (16, 16)
    assert next(samples.batches(8)).shape == (2, 16, 16, 3)
    assert center_crop_image(Image.new("RGB", (100, 40)), 16).size == (16, 16)


def test_gif_videos_with_too_few_frames(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    frames = [Image.fromarray(f) for f in random_images(3, 16, 16)]
    frames[0].save(folder / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    videos = open_samples(folder, media="video", num_frames=3)
    assert next(videos.batches(1)).shape == (1, 3, 16, 16, 3)
    with pytest.raises(ValueError, match="has 3 frames, fewer than the 16"):
        next(open_samples(folder, media="video", num_frames=16).batches(1))


def test_prompts_from_file_or_sidecars(tmp_path):
    folder = write_images(tmp_path / "set", random_images(2))
    (folder / "000.txt").write_text("a red cube\n")
    (folder / "001.json").write_text(json.dumps({"prompt": "a blue ball", "seed": 1}))
    samples = open_samples(folder, media="image")
    assert read_prompts(samples) == ["a red cube", "a blue ball"]
    (tmp_path / "prompts.txt").write_text("one\ntwo\nthree\n")
    assert read_prompts(samples, tmp_path / "prompts.txt") == ["one", "two"]
    (folder / "001.json").unlink()
    with pytest.raises(ValueError, match="no prompt for"):
        read_prompts(samples)
