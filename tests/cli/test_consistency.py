"""Small user-facing consistency rules: `--checkpoint` takes `checkpoints/latest`, repeated list flags add up,
and checkpoint folders get the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest
import torch

import ptdit
from ptdit.cli.main import build_parser, main
from ptdit.config import PipelineConfig, PTDiTConfig
from ptdit.io import atomic_directory
from ptdit.models.registry import resolve_checkpoint


def _run_folder(root):
    """RUN/checkpoints/step-0000003/ (a tiny class-conditional checkpoint) and the `latest` pointer."""
    cfg = PTDiTConfig(
        dim=32, depth=1, num_heads=2, in_channels=3, out_channels=6, window_size=(1, 2, 2), conditioning="class",
        num_classes=5,
    )  # fmt: skip
    torch.manual_seed(0)
    pipeline = PipelineConfig(task="class", text_encoder=None, vae="identity", steps=1, height=16, width=16)
    folder = ptdit.save_model(ptdit.PTDiT(cfg), root / "checkpoints" / "step-0000003", pipeline=pipeline.to_dict())
    (root / "checkpoints" / "latest").write_text("step-0000003\n")
    return folder


def test_checkpoint_paths_resolve_to_the_newest(tmp_path):
    folder = _run_folder(tmp_path / "run")
    for given in ("run", "run/checkpoints", "run/checkpoints/latest", "run/checkpoints/step-0000003"):
        assert resolve_checkpoint(tmp_path / given) == folder, given


@pytest.mark.parametrize("given", ["run", "run/checkpoints/latest"])
def test_sample_accepts_the_latest_pointer(tmp_path, given):
    _run_folder(tmp_path / "run")
    out = tmp_path / "out"
    args = ["sample", "--checkpoint", str(tmp_path / given), "--class-label", "2", "--out", str(out)]
    assert main(args) == 0
    assert len(list(out.glob("0*.png"))) == 1


@pytest.mark.parametrize(
    ("argv", "dest", "expected"),
    [
        (["flops", "--model", "PT-DiT/XL", "--model", "DiT-XL/2"], "model", ["PT-DiT/XL", "DiT-XL/2"]),
        (
            ["flops", "--model", "PT-DiT/XL", "DiT-XL/2", "--model", "PT-DiT/S"],
            "model",
            ["PT-DiT/XL", "DiT-XL/2", "PT-DiT/S"],
        ),
        (["flops", "--resolution", "256", "--resolution", "512"], "resolution", [256, 512]),
        (["flops", "--frames", "1", "--frames", "16"], "frames", [1, 16]),
        (["bench", "--model", "PT-DiT/XL", "--model", "DiT-XL/2"], "model", ["PT-DiT/XL", "DiT-XL/2"]),
        (["bench", "--resolution", "256", "--resolution", "512"], "resolution", [256, 512]),
    ],
)
def test_repeated_list_flags_accumulate(argv, dest, expected):
    assert getattr(build_parser().parse_args(argv), dest) == expected


def test_one_list_flag_replaces_the_default():
    parser = build_parser()
    default = parser.parse_args(["flops"]).model
    assert len(default) > 1
    assert parser.parse_args(["flops", "--model", "DiT-XL/2"]).model == ["DiT-XL/2"]
    assert parser.parse_args(["flops"]).model == default  # the default list is not mutated by earlier parses


def test_checkpoint_folders_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("1")
        folder = _run_folder(tmp_path / "run")
    finally:
        os.umask(old)
    for path in (tmp_path / "folder", folder):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o755, oct(mode)
    for path in (tmp_path / "folder" / "x", folder / "model.safetensors", folder / "config.json"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o644, (path.name, oct(mode))
