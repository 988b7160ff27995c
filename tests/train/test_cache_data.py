"""Feature caches of stored data (docs/data.md#caches-of-bucketed-data): a cache of bucketed shards stores one
bucket per shard and trains exactly like the raw bucketed run (same samples per step, same losses in fp32, same
skipped count), resumes exactly; the issue's end-to-end flow `ptdit data export --format wds` -> `ptdit cache` ->
`ptdit train` through the CLI; and a two-stage run from two caches, as the README walkthrough does it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from ptdit.cli.main import main
from ptdit.data.cache import FeatureCache
from ptdit.train.cache import CacheOptions, write_cache
from ptdit.train.loop import train
from tests.helpers.train import tiny_train_config, write_tiny_config
from tests.train.test_stored_data import _mixed_shards

BUCKETED = ("data.dataset=webdataset", "data.options={}", "data.buckets=pixart", "data.max_skip_fraction=0.1",
            "train.max_steps=4")  # fmt: skip


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def _quiet_train(cfg, out: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shards' caption-less sample is named in a warning
        return train(cfg, out, show_progress=False, **kwargs)


@pytest.fixture
def bucketed(tmp_path):
    """(raw config, cached config, cache folder) over 24 shapes in three aspect ratios, one without a caption."""
    raw = tiny_train_config(*BUCKETED, f"data.path={_mixed_shards(tmp_path)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = CacheOptions(dtype="fp32", shard_size=5, batch_size=3)
        write_cache(raw, tmp_path / "cache", options, show_progress=False)
    cached = tiny_train_config(*BUCKETED, "data.dataset=cache", f"data.path={tmp_path / 'cache'}")
    return raw, cached, tmp_path / "cache"


def test_a_bucketed_cache_holds_one_shape_per_shard_and_records_each_samples_bucket(bucketed):
    raw, _, folder = bucketed
    from ptdit.train.buckets import bucket_assignment
    from ptdit.train.setup import build_dataset

    cache = FeatureCache(folder)
    table = cache.manifest["buckets"]
    shapes, assignment = bucket_assignment(raw, build_dataset(raw))
    assert table["shapes"] == [list(s) for s in shapes] and table["assignment"] == assignment.tolist()
    assert len(shapes) == 3 and sum(s["count"] for s in cache.manifest["shards"]) == 24
    for i in range(24):  # sample i of the cache is source sample i, encoded at its bucket's shape
        item, (height, width, _) = cache[i], shapes[assignment[i]]
        assert item["index"] == i and item["latent_mean"].shape == (3, 1, height, width)
        assert list(item["latent_mean"].shape) == table["latent_shapes"][assignment[i]]
    buckets_of_shards = [s["bucket"] for s in cache.manifest["shards"]]
    assert buckets_of_shards == sorted(buckets_of_shards)  # grouped: each shard holds one bucket
    assert cache[5]["skipped"] == 1  # no caption: replaced by sample 6 at sample 5's bucket, as the raw path does
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = build_dataset(raw)[(5, shapes[assignment[5]])]["pixels"]
    torch.testing.assert_close(cache[5]["latent_mean"], decoded)  # identity VAE: the latents are the pixels


def test_training_from_a_bucketed_fp32_cache_equals_the_raw_bucketed_run_and_resumes_exactly(bucketed, tmp_path):
    raw, cached, _ = bucketed
    from ptdit.train.distributed import DistInfo
    from ptdit.train.setup import build_dataset, build_sampler

    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps = [list(build_sampler(c, build_dataset(c), info, 0, 8)) for c in (raw, cached)]
    assert steps[0] == steps[1]  # the same samples at the same shapes at every step
    _quiet_train(raw, tmp_path / "raw")
    straight = _quiet_train(cached, tmp_path / "straight")
    _quiet_train(cached, tmp_path / "resumed", stop_at=2)
    resumed = _quiet_train(cached, tmp_path / "resumed", resume=True)
    from ptdit.io import load_safetensors

    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_safetensors(straight.checkpoint / name), load_safetensors(resumed.checkpoint / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    a, b, c = (_records(tmp_path / n) for n in ("raw", "straight", "resumed"))
    assert [r["loss"] for r in a] == [r["loss"] for r in b] == [r["loss"] for r in c] and len(a) == 4
    assert a[-1]["data_skipped"] == b[-1]["data_skipped"] == c[-1]["data_skipped"] >= 1  # sample 5, read as raw


def test_a_bucketed_cache_refuses_a_config_without_buckets_and_the_reverse(bucketed, tmp_path):
    folder = bucketed[2]
    with pytest.raises(ValueError, match=r"set data\.buckets=pixart"):
        _quiet_train(tiny_train_config(*BUCKETED, "data.dataset=cache", f"data.path={folder}", "data.buckets=none"),
                     tmp_path / "a")  # fmt: skip
    flat = tmp_path / "flat"
    write_cache(tiny_train_config(), flat, CacheOptions(num=4), show_progress=False)
    with pytest.raises(ValueError, match=r"set data\.buckets=none"):
        _quiet_train(tiny_train_config("data.dataset=cache", f"data.path={flat}", "data.buckets=pixart"),
                     tmp_path / "b")  # fmt: skip


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in _records(run)]


def _export_wds(tmp_path: Path, capsys) -> Path:
    out = tmp_path / "wds"
    args = ["data", "export", "--dataset", "shapes", "--num", "12", "--format", "wds", "--out", str(out), "--size",
            "32", "--max-objects", "1", "--shard-size", "5"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    return out


def test_export_wds_then_cache_then_train_through_the_cli_equals_training_on_the_shards(tmp_path, capsys):
    """The issue's flow: `ptdit data export --format wds` -> `ptdit cache` -> `ptdit train` from the cache. An fp32
    cache is read in the shards' order (shuffled per epoch, as the raw shards are), so the losses are the raw run's."""
    shards = _export_wds(tmp_path, capsys)
    config = write_tiny_config(tmp_path / "c.json", "data.dataset=webdataset", f"data.path={shards}",
                               "data.options={}", "train.caption_dropout=0.5", "train.max_steps=4")  # fmt: skip
    cache = tmp_path / "cache"
    args = ["cache", "--config", str(config), "--out", str(cache), "--dtype", "fp32", "--shard-size", "4"]
    assert main([*args, "--no-progress"]) == 0
    assert "cached 12 samples in 3 shard(s)" in capsys.readouterr().out
    for name, extra in (("raw", []), ("cached", ["--set", "data.dataset=cache", "--set", f"data.path={cache}"])):
        assert main(["train", "--config", str(config), *extra, "--out", str(tmp_path / name)]) == 0
        assert "trained to step 4" in capsys.readouterr().out
    assert _losses(tmp_path / "raw") == _losses(tmp_path / "cached") and len(_losses(tmp_path / "raw")) == 4


def test_a_two_stage_run_from_two_caches_as_in_the_readme_walkthrough(tmp_path, capsys):
    """`ptdit cache --stage NAME` per stage, then one `ptdit train` with `--set stages.NAME.data.path=CACHE`: each
    stage reads its own cache and the run equals the staged run on the raw shards."""
    shards = _export_wds(tmp_path, capsys)
    data = json.loads(write_tiny_config(tmp_path / "c.json", "data.dataset=webdataset", f"data.path={shards}",
                                        "data.options={}").read_text())  # fmt: skip
    data["train"].pop("max_steps")
    data["stages"] = [{"name": "small", "steps": 2, "data.size": 24},
                      {"name": "large", "steps": 2, "data.size": 32, "data.path": "/elsewhere"}]  # fmt: skip
    config = tmp_path / "staged.json"
    config.write_text(json.dumps(data))
    to_shards = ["--set", f"stages.large.data.path={shards}"]
    for stage in ("small", "large"):
        args = ["cache", "--config", str(config), "--stage", stage, *to_shards, "--out", str(tmp_path / stage)]
        assert main([*args, "--dtype", "fp32", "--no-progress"]) == 0
    assert [FeatureCache(tmp_path / s).manifest["latent_shape"] for s in ("small", "large")] == [
        [3, 1, 24, 24], [3, 1, 32, 32]]  # fmt: skip
    cached = ["--set", "data.dataset=cache", "--set", f"stages.small.data.path={tmp_path / 'small'}",
              "--set", f"stages.large.data.path={tmp_path / 'large'}"]  # fmt: skip
    for name, extra in (("raw", to_shards), ("cached", cached)):
        assert main(["train", "--config", str(config), *extra, "--out", str(tmp_path / f"run-{name}")]) == 0
        assert "trained to step 4" in capsys.readouterr().out
    records = _records(tmp_path / "run-cached")
    assert [r["stage"] for r in records] == ["small", "small", "large", "large"]
    assert _losses(tmp_path / "run-raw") == [r["loss"] for r in records]
    wrong = ["train", "--config", str(config), "--set", "stages.huge.data.path=x", "--out", str(tmp_path / "x")]
    assert main(wrong) == 2
    assert "stages.NAME.KEY=VALUE with NAME one of ['small', 'large']" in capsys.readouterr().err


def test_training_from_a_cache_loads_a_pretrained_text_encoder_only_when_a_prompt_needs_it(tmp_path, monkeypatch):
    """The cache holds every training embedding and the null condition, so a run without previews never loads the
    text encoder (a T5-XXL load takes minutes); a preview loads it once and checks its fingerprint."""
    import ptdit.encoders as encoders
    from tests.helpers.tiny_encoders import TINY_T5_DIM, make_tiny_t5

    t5 = (f"pipeline.text_encoder={make_tiny_t5(tmp_path / 't5')}", f"model.context_dim={TINY_T5_DIM}",
          "data.options.num_samples=8", "train.caption_dropout=0.5", "train.max_steps=2")  # fmt: skip
    write_cache(tiny_train_config(*t5), tmp_path / "cache", CacheOptions(dtype="fp32"), show_progress=False)
    train(tiny_train_config(*t5), tmp_path / "raw", show_progress=False)
    real, loads = encoders.load_text_encoder, []
    monkeypatch.setattr(encoders, "load_text_encoder", lambda *a, **k: loads.append(1) or real(*a, **k))
    cached = (*t5, "data.dataset=cache", f"data.path={tmp_path / 'cache'}")
    train(tiny_train_config(*cached), tmp_path / "cached", show_progress=False)
    assert loads == [] and _losses(tmp_path / "raw") == _losses(tmp_path / "cached")
    from ptdit.eval.previews import write_sample_grid

    previews = tiny_train_config(*cached, "train.sample_every=2")
    train(previews, tmp_path / "previews", show_progress=False, preview=write_sample_grid)
    assert loads == [1] and _losses(tmp_path / "previews") == _losses(tmp_path / "raw")


def test_a_cache_reads_the_same_items_after_pickling_and_with_loader_workers(bucketed):
    """Open shards stay in their process: a pickled cache (a spawned DataLoader worker) reopens them."""
    import pickle

    cache = FeatureCache(bucketed[2])
    items = [cache[i] for i in (7, 0, 23, 7)]
    again = pickle.loads(pickle.dumps(cache))
    assert not again._open and len(cache._open) > 0
    for i, item in zip((7, 0, 23, 7), items, strict=True):
        other = again[i]
        assert other["caption"] == item["caption"] and torch.equal(other["text"], item["text"])
        assert torch.equal(other["latent_mean"], item["latent_mean"])
    loader = torch.utils.data.DataLoader(cache, batch_size=None, num_workers=2, sampler=[3, 4])
    assert [item["index"] for item in loader] == [3, 4]
