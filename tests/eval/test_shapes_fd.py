"""shapes-FD (ptdit.eval.shapes_fd): the shipped feature networks, FD(real, real') near zero against degraded real
samples, monotonic growth with blur, noise and shape distortion, deterministic training, one-line errors."""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ptdit.cli.main import main
from ptdit.data import build_dataset
from ptdit.eval.shapes_fd import (
    FEATURE_DATASETS,
    load_feature_network,
    shapes_fd,
    shapes_features,
    train_feature_network,
    weights_folder,
    weights_name,
)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of every frame (separable, 7 taps, edges replicated)."""
    k = torch.exp(-(torch.arange(-3, 4, dtype=torch.float32) ** 2) / (2 * sigma * sigma))
    k = k / k.sum()
    b, c, f, h, w = x.shape
    y = x.transpose(1, 2).reshape(b * f * c, 1, h, w)
    y = F.conv2d(F.pad(y, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7))
    y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1))
    return y.view(b, f, c, h, w).transpose(1, 2)


def noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


def distort(x: torch.Tensor, pixels: float) -> torch.Tensor:
    """Shapes bent by a smooth random displacement field of about `pixels` pixels (4 x 4 control points)."""
    b, c, f, h, w = x.shape
    field = torch.randn(b, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True) * pixels * 2 / h
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xx, yy], dim=-1)[None] + field.permute(0, 2, 3, 1)
    y = F.grid_sample(x.transpose(1, 2).reshape(b, f * c, h, w), grid, mode="nearest", align_corners=True)
    return y.view(b, f, c, h, w).transpose(1, 2)


DEGRADATIONS = {"blur": (blur, [0.5, 1.0, 2.0]), "noise": (noise, [0.05, 0.1, 0.2]), "distort": (distort, [1, 2, 4])}


@cache
def _curves(dataset: str, num: int, num_real: int) -> dict[str, list[float]]:
    """FD of `num` held-out real samples, undegraded (the floor) and at each degradation level."""
    options = {"moving-shapes": {"frames": 8}, "turntable": {"views": 8}}.get(dataset, {})
    ds = build_dataset(dataset, seed=7, **options)
    real = torch.stack([ds[i]["pixels"] for i in range(num)])

    def fd(x: torch.Tensor) -> float:
        return shapes_fd(x, dataset, num_real=num_real, options=options)["shapes_fd"]

    curves = {name: [fd(fn(real, level)) for level in levels] for name, (fn, levels) in DEGRADATIONS.items()}
    return {"floor": [fd(real)], **curves}


def _check_curves(curves: dict[str, list[float]], floor_fraction: float) -> None:
    floor = curves["floor"][0]
    for name in DEGRADATIONS:
        values = [floor, *curves[name]]
        assert all(a < b for a, b in itertools.pairwise(values)), (name, values)
        # "Near zero": the floor is a small fraction of the FD at the middle level (clearly visible).
        assert floor < floor_fraction * curves[name][1], (name, floor, curves[name])


def test_shapes_fd_floor_is_small_and_fd_grows_with_degradation():
    _check_curves(_curves("shapes", 1000, 5000), floor_fraction=0.4)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["moving-shapes", "turntable"])
def test_video_and_multiview_fd_floor_is_small_and_fd_grows_with_degradation(dataset):
    _check_curves(_curves(dataset, 1000, 5000), floor_fraction=0.4)


def test_shipped_networks_are_small_and_load():
    files = [weights_folder() / weights_name(d) for d in FEATURE_DATASETS]
    assert all(f.is_file() for f in files) and sum(f.stat().st_size for f in files) < 2 * 2**20
    for dataset in FEATURE_DATASETS:
        net = load_feature_network(dataset)
        assert net.dataset == dataset and net.info["steps"] >= 1000 and net.info["seed"] == 0
    # Any size and frame count: 64 px real samples land where 32 px ones do.
    ds32, ds64 = build_dataset("turntable", views=4), build_dataset("turntable", views=4, size=64)
    f32 = shapes_features(torch.stack([ds32[i]["pixels"] for i in range(64)]), "turntable")
    f64 = shapes_features(torch.stack([ds64[i]["pixels"] for i in range(64)]), "turntable")
    assert f32.shape == (64, 32) and np.abs(f32 - f64).mean() < 0.2 * np.abs(f32).mean()


def test_feature_training_is_deterministic_from_its_seed():
    a, _ = train_feature_network("shapes", seed=3, steps=3, num_train=64, batch_size=16)
    b, _ = train_feature_network("shapes", seed=3, steps=3, num_train=64, batch_size=16)
    c, _ = train_feature_network("shapes", seed=4, steps=3, num_train=64, batch_size=16)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert any(not torch.equal(x, z) for x, z in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


def _fails_cleanly(capsys, args: list[str], message: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_shapes_fd_bad_input(tmp_path, capsys):
    from PIL import Image

    base = ["eval", "shapes-fd", "--dataset", "shapes", "--num-samples", "3"]
    _fails_cleanly(capsys, [*base, "--fake", str(tmp_path / "missing")], "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails_cleanly(capsys, [*base, "--fake", str(empty)], "holds 0 samples, fewer than the 3 required")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, size in enumerate((32, 32, 48)):
        Image.new("RGB", (size, size)).save(mixed / f"{i}.png")
    _fails_cleanly(capsys, [*base, "--fake", str(mixed)], "mixed sizes")
    (mixed / "2.png").write_bytes(b"not a png")
    _fails_cleanly(capsys, [*base, "--fake", str(mixed)], "cannot read sample")
    _fails_cleanly(capsys, ["eval", "shapes-fd", "--fake", str(mixed)], "name the real dataset with --dataset")
    _fails_cleanly(capsys, [*base[:2], "--dataset", "cats", "--fake", str(mixed)], "no shapes-FD network")
    assert sorted(p.name for p in mixed.iterdir()) == ["0.png", "1.png", "2.png"], "nothing written"
