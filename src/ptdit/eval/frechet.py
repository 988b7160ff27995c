"""Frechet distance and kernel inception distance between two sets of features.

FD (Heusel et al. 2017): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), computed in float64 with scipy's
matrix square root; a tiny diagonal offset is added only when the product is singular (as pytorch-fid does).
KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over random subsets.
"""

from __future__ import annotations

import numpy as np

from ptdit.optional import require


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of (N, D) features, in float64 (N >= 2)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """The Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    linalg = require("scipy.linalg", "eval", purpose="the Frechet distance")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"statistics do not match: means {mu1.shape} / {mu2.shape}, covariances {sigma1.shape} / {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)  # (`disp=False`, as pytorch-fid passes it, is deprecated in SciPy 1.17)
    if not np.isfinite(covmean).all():  # singular product: offset the diagonals a little
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real  # numerical error can leave a tiny imaginary part
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kernel_distance(
    features1: np.ndarray, features2: np.ndarray, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over `num_subsets` random subsets (KID)."""
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D), got {x.shape} and {y.shape}")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    values = []
    for _ in range(num_subsets):
        a, b = x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)]
        k_aa, k_bb, k_ab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        values.append(within - 2 * k_ab.mean())
    return float(np.mean(values)), float(np.std(values))


__all__ = ["feature_statistics", "frechet_distance", "kernel_distance"]
