"""Feature statistics: streaming moments equal numpy's, the .npz format round-trips, protocols are enforced."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptdit.eval.stats import (
    FeatureStats,
    MomentAccumulator,
    check_same_protocol,
    load_stats,
    protocol_hash,
    save_stats,
)

PROTOCOL = {
    "network": "inception-v3-fid",
    "layer": "pool3",
    "weights_hash": "0123456789abcdef",
    "feature_dim": 4,
    "preprocess": "bilinear 299",
    "dtype": "float32",
    "media": "image",
    "input_size": [32, 32],
}


def test_streaming_moments_equal_numpy_mean_and_cov():
    rng = np.random.default_rng(0)
    features = rng.normal(loc=50.0, size=(103, 6)) @ rng.normal(size=(6, 6))  # large mean: tests the shift
    moments = MomentAccumulator()
    for start in range(0, 103, 10):
        moments.add(features[start : start + 10])
    mu, sigma = moments.result()
    np.testing.assert_allclose(mu, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="at least 2 samples"):
        one = MomentAccumulator()
        one.add(features[:1])
        one.result()


def _stats(weights_hash="0123456789abcdef"):
    rng = np.random.default_rng(1)
    protocol = {**PROTOCOL, "weights_hash": weights_hash}
    features = rng.normal(size=(10, 4)).astype(np.float32)
    return FeatureStats(features.mean(0), np.cov(features, rowvar=False), 10, protocol, features, {"path": "x"})


def test_stats_file_round_trip(tmp_path):
    stats = _stats()
    path = save_stats(tmp_path / "ref.npz", stats)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.npz"]  # no temporary file left behind
    loaded = load_stats(path)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.features, stats.features)
    assert loaded.count == 10 and loaded.protocol == stats.protocol and loaded.meta == {"path": "x"}
    assert loaded.stats_hash == stats.stats_hash and loaded.protocol_hash == protocol_hash(PROTOCOL)
    with np.load(path, allow_pickle=False) as data:  # plain arrays: readable without unpickling
        assert json.loads(str(data["protocol"]))["network"] == "inception-v3-fid"


def test_different_protocols_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"weights_hash differs \('0123456789abcdef' vs 'ffff'\)"):
        check_same_protocol(_stats().protocol, _stats("ffff").protocol, ("real.npz", "fake"))
    check_same_protocol(_stats().protocol, dict(_stats().protocol), ("a", "b"))


def test_foreign_or_edited_statistics_are_refused(tmp_path):
    np.savez(tmp_path / "pytorch_fid.npz", mu=np.zeros(4), sigma=np.eye(4))
    with pytest.raises(ValueError, match="no protocol record"):
        load_stats(tmp_path / "pytorch_fid.npz")
    path = save_stats(tmp_path / "ref.npz", _stats())
    with np.load(path) as data:
        arrays = dict(data)
    arrays["protocol"] = np.str_(json.dumps({**PROTOCOL, "dtype": "float16"}))
    np.savez(tmp_path / "edited.npz", **arrays)
    with pytest.raises(ValueError, match="does not match its hash"):
        load_stats(tmp_path / "edited.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="cannot read statistics file"):
        load_stats(tmp_path / "broken.npz")
    with pytest.raises(FileNotFoundError):
        load_stats(tmp_path / "missing.npz")
