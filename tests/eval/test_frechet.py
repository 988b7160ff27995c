"""FD and KID against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from ptdit.eval.frechet import feature_statistics, frechet_distance, kernel_distance


def test_fd_of_gaussians_matches_closed_form():
    """For diagonal covariances FD = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_fd_matches_eigen_computation_on_features():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 8)), rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8)) + 0.5
    (m1, c1), (m2, c2) = feature_statistics(a), feature_statistics(b)
    # Tr((C1 C2)^(1/2)) = sum of square roots of the eigenvalues of C1 C2 (real and >= 0 for PSD matrices).
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvals(c1 @ c2).real, 0, None)).sum()
    expected = ((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * trace_sqrt
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(m1, c1, m1, c1) == pytest.approx(0.0, abs=1e-6)


def test_kid_matches_direct_unbiased_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) + 1.0

    def k(a, b):
        return (a @ b.T / 4 + 1) ** 3

    m = 50
    direct = (
        (k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1))
        + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )
    mean, std = kernel_distance(x, y, num_subsets=3, subset_size=50)
    assert mean == pytest.approx(direct, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_mismatched_statistics_are_named():
    with pytest.raises(ValueError, match="statistics do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
