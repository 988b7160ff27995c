"""Training on stored data: `--set data.dataset=webdataset`, rank x worker splitting, buckets, bad data, exact
resume (docs/data.md)."""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ptdit.data.export import encode_frames, export_dataset
from ptdit.train.distributed import DistInfo
from ptdit.train.loop import train
from ptdit.train.setup import build_dataset, build_loader
from tests.helpers.train import tiny_train_config


def _shards(tmp_path: Path, num: int = 16) -> Path:
    out = tmp_path / "shards"
    if not out.exists():
        export_dataset("shapes", num, out, fmt="wds", size=24, shard_size=5, options={"max_objects": 1},
                       show_progress=False)  # fmt: skip
    return out


def _info(rank: int, world: int) -> DistInfo:
    return DistInfo(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))


def test_set_overrides_turn_a_config_onto_shards_and_parquet(tmp_path):
    shards = _shards(tmp_path)
    export_dataset("shapes", 8, tmp_path / "pq", fmt="parquet", size=24, show_progress=False)
    with pytest.warns(UserWarning, match="max_objects"):  # the tiny config's shapes option does not apply
        dataset = build_dataset(tiny_train_config("data.dataset=webdataset", f"data.path={shards}"))
    assert len(dataset) == 16 and dataset[3]["pixels"].shape == (3, 1, 24, 24)
    with pytest.warns(UserWarning, match="max_objects"):
        assert len(build_dataset(tiny_train_config("data.dataset=parquet", f"data.path={tmp_path / 'pq'}"))) == 8
    with pytest.raises(ValueError, match="valid names"):
        build_dataset(tiny_train_config("data.dataset=tfrecord"))
    with pytest.raises(ValueError, match=r"data\.buckets"):
        tiny_train_config("data.buckets=square")


def test_two_ranks_with_two_workers_read_each_sample_once_per_epoch(tmp_path):
    shards = _shards(tmp_path)
    cfg = tiny_train_config("data.dataset=webdataset", f"data.path={shards}", "data.options={}", "data.num_workers=2")
    dataset = build_dataset(cfg)
    steps_per_epoch = len(dataset) // cfg.train.batch_size
    for epoch in range(2):
        seen = []
        for rank in range(2):
            first, stop = epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch
            for batch in build_loader(cfg, dataset, _info(rank, 2), first, stop):
                assert len(batch["caption"]) == cfg.train.batch_size // 2
                seen += batch["index"].tolist()
                assert batch["caption"] == [dataset[i]["caption"] for i in batch["index"].tolist()]
        assert sorted(seen) == list(range(len(dataset)))  # each sample exactly once per epoch


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from ptdit.io import load_safetensors

    return {**load_safetensors(folder / "model.safetensors"), **load_safetensors(folder / "ema.safetensors")}


def _mixed_shards(tmp_path: Path) -> Path:
    """Shapes images cropped to three aspect ratios (captions stay valid words), one sample without a caption."""
    from PIL import Image

    from ptdit.data import ShapesDataset

    out = tmp_path / "mixed"
    out.mkdir()
    shapes = ShapesDataset(size=48, seed=0, num_samples=24, max_objects=1)
    with tarfile.open(out / "mixed.tar", "w") as tar:
        for i in range(24):
            spec = shapes.sample_spec(i)
            image = Image.fromarray((shapes.render(spec)[0] * 255).astype(np.uint8))
            box = [(0, 0, 48, 48), (0, 12, 48, 36), (12, 0, 36, 48)][i % 3]  # square, landscape, portrait
            members = {f"{i:04d}.png": encode_frames(np.asarray(image.crop(box))[None])[1]}
            if i != 5:
                members[f"{i:04d}.txt"] = shapes.caption(i).encode()
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out


def test_bucketed_training_on_shards_resumes_exactly_and_logs_skipped_samples(tmp_path):
    mixed = _mixed_shards(tmp_path)
    cfg = tiny_train_config(
        "data.dataset=webdataset", f"data.path={mixed}", "data.options={}", "data.buckets=pixart",
        "data.max_skip_fraction=0.1", "train.max_steps=4",
    )  # fmt: skip
    from ptdit.train.buckets import bucket_assignment
    from ptdit.train.setup import build_sampler

    shapes, _ = bucket_assignment(cfg, build_dataset(cfg))
    quirky = tiny_train_config("data.buckets=pixart", "model.reference_compat=true")
    with pytest.raises(ValueError, match="positional embedding"):  # non-square grids need the correct embedding
        bucket_assignment(quirky, build_dataset(cfg))
    reads_of_bad = sum(i == 5 for batch in build_sampler(cfg, build_dataset(cfg), _info(0, 1), 0, 4) for i, _ in batch)
    assert reads_of_bad >= 1
    assert len(shapes) == 3 and all(h % 4 == 0 and w % 4 == 0 for h, w, _ in shapes)  # patch 2 x window 2
    assert {(h > w) - (h < w) for h, w, _ in shapes} == {-1, 0, 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = train(cfg, tmp_path / "straight", show_progress=False)
        train(cfg, tmp_path / "resumed", stop_at=2, show_progress=False)
        resumed = train(cfg, tmp_path / "resumed", resume=True, show_progress=False)
    assert resumed.steps == 4
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    lines = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in records] == [r["loss"] for r in lines]
    assert records[-1]["data_skipped"] == reads_of_bad  # sample 5 has no caption; each read of it skips it once
    assert records[-1]["data_skipped"] == lines[-1]["data_skipped"]


def test_too_many_bad_samples_stop_the_run_with_one_line(tmp_path):
    mixed = _mixed_shards(tmp_path)
    cfg = tiny_train_config(
        "data.dataset=webdataset", f"data.path={mixed}", "data.options={allow_upscale: true}",
        "data.max_skip_fraction=0", "train.max_steps=6",
    )  # fmt: skip
    with warnings.catch_warnings(), pytest.raises(ValueError, match=r"data\.max_skip_fraction") as err:
        warnings.simplefilter("ignore")
        train(cfg, tmp_path / "run", show_progress=False)
    assert "\n" not in str(err.value)


def test_ptdit_train_runs_from_exported_shards(tmp_path):
    from ptdit.cli.main import main
    from tests.helpers.train import write_tiny_config

    shards = tmp_path / "cli-shards"
    assert main(["data", "export", "--dataset", "shapes", "--num", "8", "--format", "wds", "--size", "24",
                 "--out", str(shards), "--shard-size", "4"]) == 0  # fmt: skip
    config = write_tiny_config(tmp_path / "tiny.json")
    code = main(["train", "--config", str(config), "--set", "data.dataset=webdataset", "--set", f"data.path={shards}",
                 "--set", "data.options={}", "--set", "train.max_steps=2", "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0 and (tmp_path / "run" / "checkpoints").is_dir()


def test_video_shards_get_frame_buckets_the_temporal_window_divides(tmp_path):
    out = tmp_path / "clips"
    export_dataset("moving-shapes", 4, out, fmt="wds", size=24, options={"frames": 8}, show_progress=False)
    cfg = tiny_train_config(
        "data.dataset=webdataset", f"data.path={out}", "data.options={frames: 8}", "data.buckets=pixart",
        "pipeline.task=t2v", "model.window_size=[4, 2, 2]",
    )  # fmt: skip
    from ptdit.train.buckets import bucket_assignment, bucket_shapes

    dataset = build_dataset(cfg)
    assert bucket_shapes(cfg, 8)[1] == [4, 8]  # identity VAE: latent frames = frames, temporal window 4
    shapes, assignment = bucket_assignment(cfg, dataset)
    assert shapes == [(24, 24, 8)] and list(assignment) == [0, 0, 0, 0]
    assert dataset[(2, (24, 24, 4))]["pixels"].shape == (3, 4, 24, 24)


def test_skip_fraction_is_taken_over_at_least_a_thousand_samples():
    from ptdit.train.loop import check_skip_fraction

    check_skip_fraction(10, 20, 0.01)  # 10 of the first 30: within 1% of 1000
    check_skip_fraction(100, 9900, 0.01)
    with pytest.raises(ValueError, match=r"11 bad data samples .* data\.max_skip_fraction=0\.01"):
        check_skip_fraction(11, 20, 0.01)
    with pytest.raises(ValueError, match="101 bad"):
        check_skip_fraction(101, 9899, 0.01)
