"""Feature caches (ptdit.train.cache, ptdit.data.cache, ptdit.train.features; docs/data.md#feature-caches): training
from a cache equals training from raw data, resumes exactly, refuses a config of other encoders or sizes, and
`ptdit cache` resumes after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ptdit.cli.main import main
from ptdit.data.cache import FeatureCache, shard_name
from ptdit.train.cache import CacheOptions, write_cache
from ptdit.train.loop import train
from tests.helpers.train import tiny_train_config, write_tiny_config

# Eight 24 px shapes, caption dropout high enough that null captions occur in every step.
RAW = ("data.size=24", "data.options.num_samples=8", "train.caption_dropout=0.5", "train.max_steps=4")


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if "loss" in line]


def _cached(tmp_path: Path, *overrides: str, dtype: str = "fp32", flip: bool = False, name: str = "cache") -> Path:
    options = CacheOptions(dtype=dtype, shard_size=3, batch_size=2, flip=flip)  # 3 + 3 + 2 samples: a short shard
    write_cache(tiny_train_config(*RAW, *overrides), tmp_path / name, options, show_progress=False)
    return tmp_path / name


def _from_cache(cache: Path, *overrides: str):
    return tiny_train_config(*RAW, "data.dataset=cache", f"data.path={cache}", *overrides)


def test_manifest_records_encoders_sizes_and_shards(tmp_path):
    cache = _cached(tmp_path, dtype="bf16")
    m = json.loads((cache / "manifest.json").read_text())
    assert m["complete"] and m["num_samples"] == 8 and [s["count"] for s in m["shards"]] == [3, 3, 2]
    assert m["text_encoder"]["name"] == "words" and m["text_encoder"]["max_length"] == 16
    assert len(m["text_encoder"]["fingerprint"]) == len(m["vae"]["fingerprint"]) == len(m["content_hash"]) == 64
    assert m["vae"]["name"] == "identity" and m["latent_shape"] == [3, 1, 24, 24] and m["dtype"] == "bf16"
    assert m["dataset"] == {"name": "shapes", "size": 24, "seed": 0, "options": {"max_objects": 1, "num_samples": 8}}
    for name in (shard_name(0), "null.safetensors"):  # readable like the folder, not private
        assert (cache / name).stat().st_mode & 0o444 == cache.stat().st_mode & 0o444
    item = FeatureCache(cache)[4]
    # Only the valid tokens are stored: the caption's words plus EOS.
    assert item["text"].shape == (len(item["caption"].split()) + 1, 32) and "latent_std" not in item


@pytest.mark.parametrize("flip", [False, True])
def test_training_from_an_fp32_cache_equals_training_from_raw_data(tmp_path, flip):
    """Same encoders, same draws: the fp32 cache gives the raw run's losses exactly, with caption dropout (the
    cache's null caption) and with flips (identity VAE: flipping latents is flipping pixels)."""
    extra = (f"data.flip={str(flip).lower()}",)
    raw = train(tiny_train_config(*RAW, *extra), tmp_path / "raw", show_progress=False)
    cached = train(_from_cache(_cached(tmp_path), *extra), tmp_path / "cached", show_progress=False)
    assert _losses(tmp_path / "raw") == _losses(tmp_path / "cached") and raw.steps == cached.steps == 4


def test_a_cache_with_flipped_latents_and_bf16_storage_matches_to_storage_precision(tmp_path):
    """bf16 keeps 8 significant bits (relative error <= 2^-9 per stored value), so no loss may move by more than
    about 2^-8 relative; a mean over many values moves far less (2.7e-6 measured, docs/data.md#feature-caches)."""
    raw = tiny_train_config(*RAW, "data.flip=true")
    train(raw, tmp_path / "raw", show_progress=False)
    cache = _cached(tmp_path, dtype="bf16", flip=True)
    assert "latent_mean_flip" in FeatureCache(cache)[0]
    train(_from_cache(cache, "data.flip=true"), tmp_path / "cached", show_progress=False)
    a, b = _losses(tmp_path / "raw"), _losses(tmp_path / "cached")
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=2**-8, atol=0)
    assert a != b  # the storage did round


def test_training_from_a_cache_resumes_exactly_with_sampled_latents(tmp_path):
    """A stochastic VAE: the cache stores the posterior's mean and std and training samples from it with a generator
    of (seed, step), so 2N steps == N steps + resume + N steps, bit for bit."""
    from tests.helpers.tiny_encoders import make_tiny_vae

    vae = make_tiny_vae(tmp_path / "vae")
    latent = (f"pipeline.vae={vae}", "model.in_channels=4", "model.out_channels=8")
    cache = _cached(tmp_path, *latent)
    assert FeatureCache(cache)[0]["latent_std"].shape == (4, 1, 12, 12)
    cfg = _from_cache(cache, *latent)
    straight = train(cfg, tmp_path / "straight", show_progress=False)
    train(cfg, tmp_path / "resumed", stop_at=2, show_progress=False)
    resumed = train(cfg, tmp_path / "resumed", resume=True, show_progress=False)
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")
    for name in ("model.safetensors", "ema.safetensors"):
        from ptdit.io import load_safetensors

        a, b = load_safetensors(straight.checkpoint / name), load_safetensors(resumed.checkpoint / name)
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("pipeline.text_max_length=12", "pipeline.text_max_length=16"),
        ("data.size=32", "data.size=24"),
        ("data.options.max_objects=2", "data.options.max_objects=1"),
        ("data.options.source=moving-shapes", "data.options.source=shapes"),
    ],
)
def test_a_config_that_does_not_match_the_cache_is_refused_naming_the_fix(tmp_path, capsys, override, named):
    cache = _cached(tmp_path)
    config = write_tiny_config(tmp_path / "c.json", *RAW, "data.dataset=cache", f"data.path={cache}", override)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"set {named}" in err and "ptdit cache" in err


def test_flip_needs_flipped_latents_unless_the_vae_is_equivariant(tmp_path):
    from tests.helpers.tiny_encoders import make_tiny_vae

    latent = (f"pipeline.vae={make_tiny_vae(tmp_path / 'vae')}", "model.in_channels=4", "model.out_channels=8")
    cache = _cached(tmp_path, *latent)
    with pytest.raises(ValueError, match="re-run ptdit cache with --flip"):
        train(_from_cache(cache, *latent, "data.flip=true"), tmp_path / "run", show_progress=False)


def test_an_interrupted_cache_resumes_to_the_same_content(tmp_path, monkeypatch):
    import ptdit.train.cache as cache_module

    _cached(tmp_path, name="whole")
    original, calls = cache_module.write_shard, {"n": 0}

    def killed_at_the_second_shard(path, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(path, *args)

    monkeypatch.setattr(cache_module, "write_shard", killed_at_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        _cached(tmp_path, name="part")
    assert (tmp_path / "part" / shard_name(0)).is_file() and not (tmp_path / "part" / shard_name(1)).exists()
    with pytest.raises(ValueError, match="incomplete"):
        FeatureCache(tmp_path / "part")
    first = (tmp_path / "part" / shard_name(0)).stat().st_mtime_ns
    monkeypatch.setattr(cache_module, "write_shard", original)
    _cached(tmp_path, name="part")
    assert (tmp_path / "part" / shard_name(0)).stat().st_mtime_ns == first  # kept, not rewritten
    a, b = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("whole", "part"))
    assert a["content_hash"] == b["content_hash"] and a["shards"] == b["shards"]
    with pytest.raises(ValueError, match="other settings"):
        _cached(tmp_path, "data.options.max_objects=2", name="part")


def test_cache_then_train_end_to_end_through_the_cli(tmp_path, capsys):
    """A folder of images with captions, `ptdit cache` it, then `ptdit train` from the cache."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i, color in enumerate(["red", "green", "blue", "yellow"]):
        Image.new("RGB", (20, 20), color).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text(f"a {color} square")
    config = write_tiny_config(tmp_path / "c.json", "data.dataset=image-folder", "data.size=16", "train.max_steps=2",
                               data={"options": {"root": str(images)}})  # fmt: skip
    cache = tmp_path / "cache"
    assert main(["cache", "--config", str(config), "--out", str(cache), "--no-progress"]) == 0
    assert "cached 4 samples in 1 shard(s)" in capsys.readouterr().out
    run = ["train", "--config", str(config), "--set", "data.dataset=cache", "--set", f"data.path={cache}"]
    assert main([*run, "--out", str(tmp_path / "run")]) == 0
    assert "trained to step 2" in capsys.readouterr().out
    assert FeatureCache(cache)[1]["caption"] == "a green square"


def _torchrun(args: list[str], nproc: int) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    proc = subprocess.run([sys.executable, *launch, "-m", "ptdit", *args], env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_write_disjoint_shards_of_the_same_cache_and_train_from_it_alike(tmp_path):
    """torchrun: rank r writes shards r, r + 2, ...; the content equals a one-process cache, and training from it
    on two processes (flips and batch slices drawn for the global batch) gives the one-process losses."""
    config = write_tiny_config(tmp_path / "c.json", *RAW, "data.flip=true")
    common = ["--config", str(config), "--shard-size", "3", "--batch-size", "2", "--dtype", "fp32", "--no-progress"]
    _torchrun(["cache", *common, "--out", str(tmp_path / "two")], nproc=2)
    one = _cached(tmp_path, "data.flip=true", name="one")
    a, b = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("one", "two"))
    assert a["content_hash"] == b["content_hash"] and len(a["shards"]) == 3
    train_args = ["train", "--config", str(config), "--set", "data.dataset=cache", "--set", f"data.path={one}"]
    for nproc in (1, 2):
        _torchrun([*train_args, "--out", str(tmp_path / f"run{nproc}")], nproc=nproc)
    losses = [_losses(tmp_path / f"run{n}") for n in (1, 2)]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-5, atol=1e-6)


def _causalvae(folder: Path) -> Path:
    from safetensors import safe_open

    from ptdit.encoders.causalvae import CausalVAEConfig, CausalVAEModel, save_causalvae_model

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "causalvae_tiny.safetensors"
    with safe_open(str(fixture), framework="pt") as handle:
        config = CausalVAEConfig.from_dict(json.loads(handle.metadata()["config"]))
        params = {k.removeprefix("param."): handle.get_tensor(k) for k in handle.keys() if k.startswith("param.")}  # noqa: SIM118
    model = CausalVAEModel(config)
    model.load_state_dict(params)
    return save_causalvae_model(model, folder)


@pytest.mark.parametrize("kind", ["image", "video", "causal"])
def test_cached_posterior_agrees_with_the_vaes_own_encode(tmp_path, kind):
    """`encode_distribution` (what caches store) against `encode`: its mean is the deterministic latent, and
    mean + std * eps is `encode(sample=True)` with the same noise."""
    from ptdit.encoders import load_vae
    from tests.helpers.tiny_encoders import make_tiny_vae, make_tiny_video_vae

    folder = {"image": make_tiny_vae, "video": make_tiny_video_vae, "causal": _causalvae}[kind](tmp_path / "vae")
    vae = load_vae(folder)
    frames = 1 if kind == "image" else 5
    pixels = torch.rand(2, 3, frames, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mean, std = vae.encode_distribution(pixels)
    torch.testing.assert_close(mean, vae.encode(pixels), rtol=1e-5, atol=1e-5)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    sampled = vae.encode(pixels, sample=True, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(mean + std * eps, sampled, rtol=1e-4, atol=1e-5)


def test_a_staged_config_caches_the_stage_it_is_told(tmp_path, capsys):
    data = json.loads(write_tiny_config(tmp_path / "c.json", *RAW).read_text())
    data["train"].pop("max_steps")
    data["stages"] = [{"name": "small", "steps": 1}, {"name": "large", "steps": 1, "data.size": 32}]
    (tmp_path / "c.json").write_text(json.dumps(data))
    args = ["cache", "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "cache"), "--no-progress"]
    assert main(args) == 2 and "choose the one to cache with --stage NAME" in capsys.readouterr().err
    assert main([*args, "--stage", "large"]) == 0
    assert FeatureCache(tmp_path / "cache").manifest["dataset"]["size"] == 32


def test_a_class_conditional_cache_stores_labels_and_trains_like_raw_data(tmp_path):
    from PIL import Image

    for name, color in (("cat", "red"), ("dog", "blue")):
        (tmp_path / "classes" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (24, 24), color).save(tmp_path / "classes" / name / f"{i}.png")
    raw = ("model.conditioning=class", "model.num_classes=2", "pipeline.task=class", "data.dataset=image-folder",
           "train.caption_dropout=0.5", "train.max_steps=2")  # fmt: skip
    folder = {"data": {"options": {"root": str(tmp_path / "classes")}}}
    write_cache(tiny_train_config(*raw, **folder), tmp_path / "cache", CacheOptions(dtype="fp32"), show_progress=False)
    cache = FeatureCache(tmp_path / "cache")
    assert [cache[i]["label"] for i in range(4)] == [0, 0, 1, 1] and cache.manifest["text_encoder"] is None
    train(tiny_train_config(*raw, **folder), tmp_path / "raw", show_progress=False)
    train(tiny_train_config(*raw, "data.dataset=cache", f"data.path={tmp_path / 'cache'}", **folder),
          tmp_path / "cached", show_progress=False)  # fmt: skip
    assert _losses(tmp_path / "raw") == _losses(tmp_path / "cached")
