"""`ptdit sample` end to end with tiny local encoders: PNG / MP4 / GIF outputs, metadata, determinism, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ptdit
from ptdit.cli.main import main
from ptdit.config import PipelineConfig, PTDiTConfig
from tests.helpers.models import randomize_
from tests.helpers.tiny_encoders import TINY_T5_DIM, make_tiny_vae

PIL = pytest.importorskip("PIL.Image")
av = pytest.importorskip("av")


def _checkpoint(folder: Path, t5: Path | None, **pipeline) -> Path:
    conditioning = "class" if pipeline.get("task") == "class" else "text"
    in_channels = pipeline.pop("in_channels", 3)
    cfg = PTDiTConfig(
        dim=32,
        depth=1,
        num_heads=2,
        context_dim=TINY_T5_DIM,
        in_channels=in_channels,
        out_channels=2 * in_channels,
        window_size=(1, 2, 2),
        conditioning=conditioning,
        num_classes=5,
    )
    torch.manual_seed(0)
    model = randomize_(ptdit.PTDiT(cfg))
    settings = dict(text_encoder=str(t5) if t5 else None, vae="identity", steps=2, cfg_scale=2.0, height=16, width=16)
    settings.update(pipeline)
    return ptdit.save_model(model, folder, pipeline=PipelineConfig(**settings).to_dict())


def test_sample_images_with_metadata_and_grid(tmp_path, t5_dir):
    ckpt = _checkpoint(tmp_path / "ckpt", t5_dir)
    out = tmp_path / "out"
    code = main(
        [
            "sample",
            "--checkpoint",
            str(ckpt),
            "--prompt",
            "a red circle",
            "--prompt",
            "a blue square",
            "--out",
            str(out),
            "--seed",
            "7",
            "--batch-size",
            "1",
        ]
    )
    assert code == 0
    pngs = sorted(out.glob("0*.png"))
    assert [p.name for p in pngs] == ["000-a-red-circle.png", "001-a-blue-square.png"]
    image = PIL.open(pngs[1])
    assert image.size == (16, 16) and image.mode == "RGB"
    assert image.text["prompt"] == "a blue square" and json.loads(image.text["seed"]) == 8
    assert json.loads(image.text["steps"]) == 2 and image.text["sampler"] == "flow-euler"
    assert Path(image.text["checkpoint"]) == ckpt.resolve()
    sidecar = json.loads((out / "001-a-blue-square.json").read_text())
    assert sidecar["cfg"] == 2.0 and sidecar["prompt"] == "a blue square"
    assert PIL.open(out / "grid.png").size == (34, 16)
    assert not list(out.glob(".*")), "no temporary files left behind"


def test_sample_is_deterministic_and_batch_independent(tmp_path, t5_dir):
    ckpt = _checkpoint(tmp_path / "ckpt", t5_dir)
    args = ["sample", "--checkpoint", str(ckpt), "--prompt", "a", "--prompt", "b", "--prompt", "c"]
    assert main([*args, "--out", str(tmp_path / "o1"), "--batch-size", "3"]) == 0
    assert main([*args, "--out", str(tmp_path / "o2"), "--batch-size", "2"]) == 0
    for name in ("000-a.png", "001-b.png", "002-c.png"):
        a = PIL.open(tmp_path / "o1" / name).tobytes()
        b = PIL.open(tmp_path / "o2" / name).tobytes()
        assert a == b, name
    assert (tmp_path / "o1" / "000-a.png").read_bytes() == (tmp_path / "o2" / "000-a.png").read_bytes()


def _read_video(path: Path) -> list:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_sample_video_writes_mp4_gif_and_contact_sheet(tmp_path, t5_dir):
    ckpt = _checkpoint(tmp_path / "ckpt", t5_dir, task="t2v", frames=4)
    out = tmp_path / "out"
    assert main(["sample", "--checkpoint", str(ckpt), "--prompt", "a circle moving left", "--out", str(out)]) == 0
    frames = _read_video(out / "000-a-circle-moving-left.mp4")
    assert len(frames) == 4 and frames[0].shape == (16, 16, 3)
    gif = PIL.open(out / "000-a-circle-moving-left.gif")
    assert gif.n_frames == 4 and gif.size == (16, 16)
    assert PIL.open(out / "000-a-circle-moving-left-sheet.png").size == (4 * 16 + 3 * 2, 16)
    meta = json.loads((out / "000-a-circle-moving-left.json").read_text())
    assert meta["frames"] == 4 and meta["window_size"] == [4, 1, 1]


def test_sample_multiview_writes_views_row_and_turntable(tmp_path, t5_dir):
    ckpt = _checkpoint(tmp_path / "ckpt", t5_dir, task="t2mv", frames=4)
    out = tmp_path / "out"
    assert main(["sample", "--checkpoint", str(ckpt), "--prompt", "a red cube", "--out", str(out)]) == 0
    assert PIL.open(out / "000-a-red-cube-views.png").size == (4 * 16 + 3 * 2, 16)
    assert PIL.open(out / "000-a-red-cube-turntable.gif").n_frames == 4
    assert json.loads((out / "000-a-red-cube.json").read_text())["window_size"] == [2, 1, 1]


def test_sample_class_conditional(tmp_path):
    ckpt = _checkpoint(tmp_path / "ckpt", None, task="class", text_encoder=None)
    out = tmp_path / "out"
    assert (
        main(["sample", "--checkpoint", str(ckpt), "--class-label", "1", "--class-label", "4", "--out", str(out)]) == 0
    )
    assert len(list(out.glob("0*.png"))) == 2
    assert main(["sample", "--checkpoint", str(ckpt), "--class-label", "9", "--out", str(tmp_path / "x")]) == 2


def test_sample_with_a_real_vae_folder(tmp_path, t5_dir):
    vae = make_tiny_vae(tmp_path / "vae")  # AutoencoderKL, 2x down, 4 channels
    ckpt = _checkpoint(tmp_path / "ckpt", t5_dir, vae=str(vae), in_channels=4, height=32, width=32)
    out = tmp_path / "out"
    assert (
        main(["sample", "--checkpoint", str(ckpt), "--prompt", "x", "--sampler", "flow-heun", "--out", str(out)]) == 0
    )
    assert PIL.open(out / "000-x.png").size == (32, 32)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--height", "17"], "nearest valid: 16 or 18"),
        (["--width", "17"], "multiple of 2"),
        (["--sampler", "euler9"], "unknown --sampler"),
        (["--prompts-file", "."], "cannot read prompts file"),
        (["--prompts-file", "missing.txt"], "not found"),
    ],
)
def test_sample_bad_input_one_line_error_no_files(tmp_path, t5_dir, capsys, extra, message, monkeypatch):
    ckpt = _checkpoint(tmp_path / "ckpt", t5_dir)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code = main(["sample", "--checkpoint", str(ckpt), "--prompt", "x", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_sample_missing_checkpoint(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "checkpoint folder" in capsys.readouterr().err
