"""The harness: FID / KID / FVD against independent numpy computations, cached statistics, protocol checks,
presets and score records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ptdit.eval.inception import load_fid_inception, preprocess
from ptdit.eval.metrics import EvalSettings, frechet_between, make_stats
from ptdit.eval.protocols import PROTOCOLS, get_protocol
from ptdit.eval.records import GENERATION_KEYS, default_record_path, read_generation
from ptdit.eval.stats import FeatureStats, load_stats, save_stats
from tests.eval.test_samples import random_images, write_images
from tests.helpers.metric_networks import make_tiny_inception

pytestmark = pytest.mark.filterwarnings("ignore:.*(not the standard|covariance is singular).*:UserWarning")


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    real = random_images(12, 24, 24, seed=1)
    fake = np.clip(random_images(10, 24, 24, seed=2).astype(int) // 2 + 100, 0, 255).astype(np.uint8)
    write_images(root / "real", real)
    np.savez(root / "fake.npz", arr_0=fake)
    return root, real, fake


def _independent_fid_and_kid(model_path, real, fake):
    """Features straight from the network, moments from numpy, Tr sqrt from eigenvalues, KID from its formula."""
    model = load_fid_inception(model_path)
    with torch.no_grad():
        a, b = (model(preprocess(torch.from_numpy(x))).double().numpy() for x in (real, fake))
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvals(c1 @ c2).real, 0, None)).sum()
    fid = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * trace_sqrt

    def k(x, y):
        return (x @ y.T / a.shape[1] + 1) ** 3

    m, n = len(a), len(b)
    kid = (k(a, a).sum() - np.trace(k(a, a))) / (m * (m - 1)) + (k(b, b).sum() - np.trace(k(b, b))) / (n * (n - 1))
    return fid, kid - 2 * k(a, b).mean()


def test_fid_and_kid_match_an_independent_computation(image_sets, tiny_inception):
    root, real, fake = image_sets
    settings = EvalSettings(features=f"inception:{tiny_inception}", batch_size=5)
    record = frechet_between(root / "real", root / "fake.npz", settings=settings)
    fid, kid = _independent_fid_and_kid(tiny_inception, real, fake)
    assert fid > 0.1
    assert record["scores"]["fid"] == pytest.approx(fid, rel=1e-4)
    # Subsets of min(1000, 12, 10) = 10 samples; the unbiased MMD on all 12 and 10 differs only in the subsets.
    assert record["scores"]["kid"] == pytest.approx(kid, rel=0.3)
    assert record["real"]["count"] == 12 and record["fake"]["count"] == 10


def test_cached_statistics_give_the_same_fid(image_sets, tiny_inception, tmp_path):
    root, _, _ = image_sets
    settings = EvalSettings(features=f"inception:{tiny_inception}")
    direct = frechet_between(root / "real", root / "fake.npz", settings=settings)
    path = save_stats(tmp_path / "real_stats.npz", make_stats(root / "real", settings=settings))
    cached = frechet_between(path, root / "fake.npz", settings=settings)
    assert cached["scores"]["fid"] == pytest.approx(direct["scores"]["fid"], rel=1e-9)
    assert cached["scores"]["kid"] == pytest.approx(direct["scores"]["kid"], rel=1e-9)
    assert cached["real"]["source"] == "stats" and cached["real"]["stats_hash"] == direct["real"]["stats_hash"]
    assert load_stats(path).protocol["input_size"] == [24, 24]
    # Two statistics files compare without any network (no --features needed).
    fake_stats = save_stats(tmp_path / "fake_stats.npz", make_stats(root / "fake.npz", settings=settings))
    both = frechet_between(path, fake_stats, settings=EvalSettings(features="inception:/nonexistent.pth"))
    assert both["scores"]["fid"] == pytest.approx(direct["scores"]["fid"], rel=1e-9)


def test_statistics_of_another_protocol_are_refused(image_sets, tiny_inception, tmp_path):
    root, _, _ = image_sets
    other = make_tiny_inception(tmp_path / "other.pth", seed=1)
    stats = save_stats(
        tmp_path / "s.npz", make_stats(root / "real", settings=EvalSettings(features=f"inception:{other}"))
    )
    with pytest.raises(ValueError, match="weights_hash differs"):
        frechet_between(stats, root / "fake.npz", settings=EvalSettings(features=f"inception:{tiny_inception}"))
    write_images(tmp_path / "big", random_images(4, 32, 32))
    with pytest.raises(ValueError, match="input_size differs"):
        frechet_between(root / "real", tmp_path / "big", settings=EvalSettings(features=f"inception:{tiny_inception}"))


def test_protocol_presets_are_enforced(image_sets, tiny_inception, tmp_path):
    root, _, _ = image_sets
    assert (PROTOCOLS["coco-fid30k"].num_samples, PROTOCOLS["coco-fid30k"].image_size) == (30_000, 256)
    assert PROTOCOLS["imagenet-fid50k"].per_class * 1000 == PROTOCOLS["imagenet-fid50k"].num_samples
    assert PROTOCOLS["ucf101-fvd"].num_frames == 16 and PROTOCOLS["ucf101-fvd"].features == "i3d"
    assert PROTOCOLS["msrvtt-clipsim"].metric == "clipsim"
    settings = EvalSettings(features=f"inception:{tiny_inception}")
    with pytest.raises(ValueError, match="protocol coco-fid30k needs 30000 generated"):
        frechet_between(root / "real", root / "fake.npz", settings=settings, protocol=get_protocol("coco-fid30k"))
    with pytest.raises(ValueError, match="measures fvd, not fid"):
        get_protocol("ucf101-fvd", metric="fid")
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("coco-fid10k")
    dino = {**load_stats(save_stats(tmp_path / "x.npz", make_stats(root / "real", settings=settings))).protocol}
    dino["network"] = "hf:dinov2"
    stats = FeatureStats(np.zeros(64), np.eye(64), 30_000, dino)
    save_stats(tmp_path / "dino.npz", stats)
    with pytest.raises(ValueError, match=r"uses inception-v3-fid features; .*dino\.npz holds hf:dinov2 statistics"):
        frechet_between(tmp_path / "dino.npz", tmp_path / "dino.npz", protocol=PROTOCOLS["coco-fid30k"])
    with pytest.raises(ValueError, match="uses inception features, not hf:x"):
        frechet_between(
            root / "real", root / "fake.npz", settings=EvalSettings(features="hf:x"), protocol=PROTOCOLS["coco-fid30k"]
        )


def test_fvd_on_tiny_videos(tmp_path, tiny_i3d):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "real.npz", arr_0=rng.integers(0, 256, (4, 18, 16, 16, 3), dtype=np.uint8))
    np.savez(tmp_path / "fake.npz", arr_0=rng.integers(0, 128, (3, 16, 16, 16, 3), dtype=np.uint8))
    (tmp_path / "generation.json").write_text(json.dumps({"sampler": "euler", "steps": 20, "seed": 0, "extra": 1}))
    settings = EvalSettings(features=f"i3d:{tiny_i3d}", batch_size=2)
    record = frechet_between(
        tmp_path / "real.npz", tmp_path / "fake.npz", metric="fvd", media="video", settings=settings
    )
    assert record["metric"] == "fvd" and np.isfinite(record["scores"]["fvd"]) and record["scores"]["fvd"] > 0
    assert record["features"]["network"] == "i3d-kinetics400" and record["features"]["input_size"] == [16, 16, 16]
    assert record["generation"]["sampler"] == "euler" and record["generation"]["cfg_scale"] is None
    assert record["generation"]["extra"] == 1


def test_records_read_generation_metadata_and_sit_beside_the_samples(tmp_path):
    assert read_generation(tmp_path) == {key: None for key in GENERATION_KEYS}
    (tmp_path / "generation.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        read_generation(tmp_path / "samples.npz")
    (tmp_path / "samples").mkdir()
    assert default_record_path(tmp_path / "samples", "fid") == tmp_path / "samples.fid.json"
    assert default_record_path(tmp_path / "samples.npz", "fvd") == tmp_path / "samples.fvd.json"
