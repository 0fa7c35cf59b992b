"""Distances between feature distributions: Fréchet (FVD / FID), polynomial-kernel MMD (KVD / KID), bootstrap CIs.

Chapter 11.1.4: FVD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians fitted to
real and generated features. Tr((S_r S_g)^(1/2)) is computed as the sum of square roots of the
eigenvalues of the symmetric matrix S_r^(1/2) S_g S_r^(1/2), which has the same spectrum and no
complex round-off. KVD (Unterthiner et al. 2019) is MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3
of KID (Binkowski et al. 2018), averaged over random subsets of m clips, as the U-statistic of Gretton
et al. 2012 (eq. 3): 1/(m(m-1)) sum_(i != j) k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(x_j, y_i).
Sets of one size are subsampled with the same indices, so a pair made from one clip (fake i for real
i, or a set against itself) never enters the cross term: a set against itself scores exactly 0. With
the pairing averaged out this is KID's estimator (torch-fidelity, StyleGAN-V, torchmetrics), which
keeps k(x_i, y_i) and so goes negative, by about 2 k(x, x) / m, for paired or identical sets.

The bootstrap interval is the estimate plus the central `level` range of the bootstrap deviations
(value - mean of the bootstrap values), both sets resampled with replacement, the low end clipped at
0: the sampling spread of the estimate at this sample count. It always holds the estimate; the
plain percentile interval does not, because a resampled set (repeated clips) inflates the distance
(a set against itself: FVD 0, every bootstrap value > 0), and BCa then degenerates (no bootstrap
value below the estimate). FVD at a small count is biased upward, so compare sets of one count.
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
    """KVD / KID: unbiased MMD^2 U-statistic with the cubic polynomial kernel, averaged over random subsets."""
    real, fake = _features(real, "real"), _features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise KinemaError(f"real and fake features differ in size: {real.shape[1]} vs {fake.shape[1]}")
    if subsets < 1 or subset_size < 2:
        raise KinemaError(f"KVD needs subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
    rng = np.random.default_rng(seed)
    m = min(len(real), len(fake), subset_size)
    dim = real.shape[1]
    total = 0.0
    for _ in range(subsets):
        rows = rng.choice(len(real), m, replace=False)
        x, y = real[rows], fake[rows if len(fake) == len(real) else rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / dim + 1) ** 3, (y @ y.T / dim + 1) ** 3, (x @ y.T / dim + 1) ** 3)
        terms = kxx + kyy - kxy - kxy.T  # h(z_i, z_j) of the U-statistic
        total += (terms.sum() - np.trace(terms)) / (m * (m - 1))
    return float(total / subsets)


def bootstrap_interval(distance: Callable[[np.ndarray, np.ndarray], float], real: np.ndarray, fake: np.ndarray,
                       rounds: int = 100, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bias-centred bootstrap CI of `distance(real, fake)`: the estimate + the bootstrap deviations' quantiles."""
    if rounds < 2 or not 0.0 < level < 1.0:
        raise KinemaError(f"bootstrap needs rounds >= 2 and 0 < level < 1, got {rounds}, {level}")
    rng = np.random.default_rng(seed)
    values = np.array([distance(real[rng.integers(0, len(real), len(real))],
                                fake[rng.integers(0, len(fake), len(fake))]) for _ in range(rounds)])
    low, high = np.quantile(values - values.mean(), [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    estimate = distance(real, fake)
    return max(estimate + float(low), 0.0), estimate + float(high)
