"""`ptdit eval`: fid / kid / fvd / clipscore / stats on tiny sets with tiny local networks; bad input gives one
line, exit 2 and no record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptdit.cli.main import main
from tests.eval.test_samples import random_images, write_images
from tests.helpers.metric_networks import make_tiny_clip_model, make_tiny_i3d, make_tiny_inception


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny networks, a real image folder, a fake .npz with generation metadata, fake videos."""
    root = tmp_path_factory.mktemp("eval_cli")
    make_tiny_inception(root / "inception.pth")
    make_tiny_i3d(root / "i3d.pt")
    write_images(root / "real", random_images(8, 24, 24, seed=1))
    (root / "gen").mkdir()
    np.savez(root / "gen" / "samples.npz", arr_0=random_images(6, 24, 24, seed=2))
    (root / "gen" / "generation.json").write_text(json.dumps({"sampler": "euler", "steps": 30, "cfg_scale": 4.5}))
    rng = np.random.default_rng(0)
    np.savez(root / "real_videos.npz", arr_0=rng.integers(0, 256, (3, 16, 16, 16, 3), dtype=np.uint8))
    np.savez(root / "fake_videos.npz", arr_0=rng.integers(0, 200, (3, 16, 16, 16, 3), dtype=np.uint8))
    return root


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if ": error: " in line]
    assert len(errors) == 1 and match in errors[0], err


def test_fid_writes_a_record_beside_the_samples(workspace, capsys):
    features = f"inception:{workspace / 'inception.pth'}"
    fake = workspace / "gen" / "samples.npz"
    assert main(["eval", "fid", "--real", str(workspace / "real"), "--fake", str(fake), "--features", features]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("FID ") and "KID " in out.out and "samples.fid.json" in out.out
    assert "warning: " in out.err and "not the standard pt_inception" in out.err
    record = json.loads((workspace / "gen" / "samples.fid.json").read_text())
    assert record["metric"] == "fid" and record["scores"]["fid"] > 0
    assert record["features"]["network"] == "inception-v3-fid" and len(record["features"]["weights_hash"]) == 16
    assert record["features"]["preprocess"].startswith("uint8 RGB / 255 -> bilinear 299x299")
    assert record["features"]["dtype"] == "float32" and record["features"]["standard_weights"] is False
    assert record["generation"]["steps"] == 30 and record["generation"]["num_ranks"] is None
    assert record["real"]["stats_hash"] and record["ptdit_version"] and record["protocol"] is None


def test_stats_then_fid_and_kid_from_the_cache(workspace, capsys, tmp_path):
    features = f"inception:{workspace / 'inception.pth'}"
    stats = tmp_path / "real.npz"
    assert (
        main(["eval", "stats", "--images", str(workspace / "real"), "--out", str(stats), "--features", features]) == 0
    )
    assert "8 images ->" in capsys.readouterr().out
    out = tmp_path / "kid.json"
    argv = [
        "eval",
        "kid",
        "--real",
        str(stats),
        "--fake",
        str(workspace / "gen" / "samples.npz"),
        "--features",
        features,
    ]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record == json.loads(out.read_text()) and record["metric"] == "kid" and record["real"]["source"] == "stats"
    direct = tmp_path / "direct.json"
    assert main([*argv, "--real", str(workspace / "real"), "--out", str(direct)]) == 0  # the last --real wins
    assert record["scores"]["fid"] == pytest.approx(json.loads(direct.read_text())["scores"]["fid"], rel=1e-9)
    assert record["scores"]["kid"] == pytest.approx(json.loads(direct.read_text())["scores"]["kid"], rel=1e-9)


def test_fvd_on_video_arrays(workspace, capsys, tmp_path):
    out = tmp_path / "fvd.json"
    argv = ["eval", "fvd", "--real", str(workspace / "real_videos.npz"), "--fake", str(workspace / "fake_videos.npz")]
    assert main([*argv, "--features", f"i3d:{workspace / 'i3d.pt'}", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("FVD ")
    record = json.loads(out.read_text())
    assert record["features"]["network"] == "i3d-kinetics400" and record["features"]["input_size"] == [16, 16, 16]


def test_clipscore_on_an_image_folder(workspace, capsys, tmp_path):
    clip = make_tiny_clip_model(tmp_path / "clip")
    folder = write_images(tmp_path / "samples", random_images(2, 32, 32))
    (tmp_path / "prompts.txt").write_text("the cat\n" + "the dog " * 40 + "\n")
    argv = [
        "eval",
        "clipscore",
        "--images",
        str(folder),
        "--prompts",
        str(tmp_path / "prompts.txt"),
        "--clip",
        str(clip),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("CLIPScore ") and "1 prompts truncated" in captured.out
    assert "warning: 1 of 2 prompts are longer than CLIP's 77 tokens" in captured.err
    record = json.loads((tmp_path / "samples.clipscore.json").read_text())
    assert record["prompts"] == {"count": 2, "truncated": 1, "max_tokens": 77, "long_prompts": "truncate"}
    _one_line_error(capsys, [*argv, "--long-prompts", "error"], "longer than CLIP's 77 tokens")


def test_missing_weights_one_line_exit_2_nothing_written(workspace, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    fake = workspace / "gen" / "samples.npz"
    argv = ["eval", "fid", "--real", str(workspace / "real"), "--fake", str(fake), "--out", str(tmp_path / "r.json")]
    _one_line_error(capsys, argv, "pt_inception-2015-12-05-6726825d.pth")
    assert not (tmp_path / "r.json").exists()
    _one_line_error(capsys, [*argv, "--features", "i3d"], "i3d features read videos, not images")
    video_argv = [
        "eval",
        "fvd",
        "--real",
        str(workspace / "real_videos.npz"),
        "--fake",
        str(workspace / "fake_videos.npz"),
    ]
    _one_line_error(capsys, video_argv, "rgb_imagenet.pt")
    stats_argv = ["eval", "stats", "--images", str(workspace / "real"), "--out", str(tmp_path / "s.npz")]
    _one_line_error(capsys, stats_argv, "--features inception:FILE")
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("empty", "no images"),
        ("unreadable", "cannot read image"),
        ("mixed", "mixed sizes"),
        ("protocol", "protocol coco-fid30k needs 30000"),
        ("other-protocol", "weights_hash differs"),
        ("no-stats-protocol", "no protocol record"),
    ],
)
def test_bad_input_one_line_exit_2(workspace, capsys, tmp_path, case, match):
    features = f"inception:{workspace / 'inception.pth'}"
    real, fake, extra = workspace / "real", tmp_path / "fake", []
    if case == "empty":
        fake.mkdir()
    elif case == "unreadable":
        write_images(fake, random_images(2, 24, 24))
        (fake / "x.png").write_bytes(b"\x89PNG broken")
    elif case == "mixed":
        write_images(fake, [*random_images(1, 24, 24), *random_images(1, 24, 32)])
    elif case == "protocol":
        fake, extra = workspace / "gen" / "samples.npz", ["--protocol", "coco-fid30k"]
    elif case == "other-protocol":
        other = make_tiny_inception(tmp_path / "other.pth", seed=3)
        real = tmp_path / "real.npz"
        main(
            [
                "eval",
                "stats",
                "--images",
                str(workspace / "real"),
                "--out",
                str(real),
                "--features",
                f"inception:{other}",
            ]
        )
        fake = workspace / "gen" / "samples.npz"
    else:
        real = tmp_path / "foreign.npz"
        np.savez(real, mu=np.zeros(4), sigma=np.eye(4), protocol_free=np.zeros(1))
        fake = workspace / "gen" / "samples.npz"
    capsys.readouterr()
    out = tmp_path / "record.json"
    argv = ["eval", "fid", "--real", str(real), "--fake", str(fake), "--features", features, "--out", str(out), *extra]
    _one_line_error(capsys, argv, match)
    assert not out.exists()
