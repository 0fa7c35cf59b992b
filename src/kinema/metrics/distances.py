"""Distances between feature distributions: Fréchet (FVD / FID), polynomial-kernel MMD (KVD / KID), bootstrap CIs.

Chapter 11.1.4: FVD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians fitted to
real and generated features. Tr((S_r S_g)^(1/2)) is computed as the sum of square roots of the
eigenvalues of the symmetric matrix S_r^(1/2) S_g S_r^(1/2), which has the same spectrum and no
complex round-off. KVD (Unterthiner et al. 2019) is the unbiased MMD^2 with the kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets as in KID (Binkowski et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from kinema.errors import KinemaError


@dataclass
class GaussianStats:
    """Mean [D] and covariance [D, D] of a feature set, with how many samples it came from."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def _features(x: np.ndarray, name: str) -> np.ndarray:
    """Check a feature matrix [N, D] (N >= 2, finite) and return it as float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise KinemaError(f"{name} features must be [N >= 2, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise KinemaError(f"{name} features contain NaN or infinite values")
    return x


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """Fit a Gaussian (mean, unbiased covariance) to features [N, D]."""
    x = _features(features, "")
    return GaussianStats(x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False)), len(x))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians (>= 0)."""
    mean1, mean2 = np.asarray(mean1, dtype=np.float64), np.asarray(mean2, dtype=np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mean1), len(mean1)):
        raise KinemaError(f"Fréchet distance needs means [D] and covariances [D, D] of one D, got "
                          f"{mean1.shape}, {cov1.shape}, {mean2.shape}, {cov2.shape}")
    root1 = _sqrt_psd(cov1)
    cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_sqrt = np.sqrt(np.clip(cross, 0.0, None)).sum()
    distance = float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


def frechet_distance_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to real [N, D] and fake [M, D] features."""
    a, b = gaussian_stats(real), gaussian_stats(fake)
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def kernel_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (KVD / KID), averaged over random subsets."""
    real, fake = _features(real, "real"), _features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise KinemaError(f"real and fake features differ in size: {real.shape[1]} vs {fake.shape[1]}")
    rng = np.random.default_rng(seed)
    m = min(len(real), len(fake), subset_size)
    dim = real.shape[1]
    total = 0.0
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / dim + 1) ** 3, (y @ y.T / dim + 1) ** 3, (x @ y.T / dim + 1) ** 3)
        off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += off_diagonal - 2.0 * kxy.mean()
    return float(total / subsets)


def bootstrap_interval(distance: Callable[[np.ndarray, np.ndarray], float], real: np.ndarray, fake: np.ndarray,
                       rounds: int = 100, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of `distance(real, fake)`: both sets resampled with replacement each round."""
    if rounds < 2 or not 0.0 < level < 1.0:
        raise KinemaError(f"bootstrap needs rounds >= 2 and 0 < level < 1, got {rounds}, {level}")
    rng = np.random.default_rng(seed)
    values = [distance(real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))])
              for _ in range(rounds)]
    low, high = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)
