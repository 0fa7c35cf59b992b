"""Tests for the Fréchet distance, KVD and bootstrap intervals."""

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.image.kid import poly_kernel, poly_mmd

from kinema.errors import KinemaError
from kinema.metrics.distances import (
    bootstrap_interval,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
    kernel_distance,
)


def _scipy_frechet(mu1, s1, mu2, s2):
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root))


def test_frechet_distance_equals_scipy_reference_on_random_gaussians():
    rng = np.random.default_rng(0)
    for dim in (1, 5, 32):
        a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
        s1, s2 = a @ a.T + 0.1 * np.eye(dim), b @ b.T + 0.1 * np.eye(dim)
        mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_distance_of_known_gaussians():
    # N(0, I) vs N(m, 4 I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d
    d, m = 4, np.array([1.0, 2.0, 0.0, 0.0])
    assert frechet_distance(np.zeros(d), np.eye(d), m, 4 * np.eye(d)) == pytest.approx(5.0 + d)


def test_identical_sets_give_zero_and_shifted_sets_do_not():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8))
    assert frechet_distance_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert kernel_distance(x, x.copy(), subsets=5, subset_size=200) == pytest.approx(0.0, abs=1e-9)
    shifted = x + 1.0
    assert frechet_distance_from_features(x, shifted) == pytest.approx(8.0, rel=1e-6)
    assert kernel_distance(x, shifted, subsets=5, subset_size=200) > 1.0


def test_kvd_of_a_set_against_itself_is_zero_at_any_feature_scale():
    # KID's estimator keeps k(x_i, y_i) and gives about -2 k(x, x) / m here: -43 for these features
    x = 3.0 * np.random.default_rng(4).normal(size=(50, 64))
    assert kernel_distance(x, x, subsets=10) == pytest.approx(0.0, abs=1e-9)
    noisy = [kernel_distance(x, x + s * np.random.default_rng(5).normal(size=x.shape), subsets=3)
             for s in (0.3, 1.0, 3.0)]
    assert 0.0 < noisy[0] < noisy[1] < noisy[2]


def test_kvd_is_the_u_statistic_with_the_kid_kernel_and_averages_to_kid():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(24, 16)), rng.normal(0.3, 1.0, size=(24, 16))
    kxx, kyy, kxy = (poly_kernel(torch.tensor(a), torch.tensor(b)).numpy() for a, b in ((x, x), (y, y), (x, y)))
    pairs = [(i, j) for i in range(24) for j in range(24) if i != j]
    u_statistic = np.mean([kxx[i, j] + kyy[i, j] - kxy[i, j] - kxy[j, i] for i, j in pairs])
    assert kernel_distance(x, y, subsets=3) == pytest.approx(u_statistic, rel=1e-10)
    # over every pairing of y with x (each cyclic shift), the U-statistic averages to KID's estimator
    over_pairings = np.mean([kernel_distance(x, np.roll(y, s, axis=0), subsets=1) for s in range(24)])
    assert over_pairings == pytest.approx(float(poly_mmd(torch.tensor(x), torch.tensor(y))), rel=1e-10)


def test_kvd_is_unbiased_for_two_samples_of_one_distribution():
    rng = np.random.default_rng(2)
    values = [kernel_distance(rng.normal(size=(100, 4)), rng.normal(size=(100, 4)), subsets=1, subset_size=100,
                              seed=s) for s in range(60)]
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))


def test_bootstrap_interval_of_a_set_against_itself_holds_the_zero_estimate():
    x = np.random.default_rng(7).normal(size=(50, 8))
    low, high = bootstrap_interval(frechet_distance_from_features, x, x, rounds=50)
    assert low == 0.0 < high  # the percentile interval was [0.48, 1.30] around an estimate of 0


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_samples():
    rng = np.random.default_rng(3)
    widths = []
    for n in (60, 600):
        real, fake = rng.normal(size=(n, 3)), rng.normal(0.5, 1.0, size=(n, 3))
        low, high = bootstrap_interval(frechet_distance_from_features, real, fake, rounds=40, seed=0)
        assert low <= frechet_distance_from_features(real, fake) <= high
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_bootstrap_interval_is_as_wide_as_the_spread_of_the_estimate_over_fresh_samples():
    rng = np.random.default_rng(5)

    def draw():
        return rng.normal(size=(100, 4)), rng.normal(0.5, 1.2, size=(100, 4))

    fresh = [frechet_distance_from_features(*draw()) for _ in range(200)]
    spread = np.subtract(*np.quantile(fresh, [0.975, 0.025]))
    widths = [np.subtract(*bootstrap_interval(frechet_distance_from_features, *draw(), rounds=100, seed=s)[::-1])
              for s in range(3)]
    assert 0.6 < np.mean(widths) / spread < 1.6


def test_bad_features_raise_kinema_error():
    with pytest.raises(KinemaError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(KinemaError, match="differ in size"):
        kernel_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(KinemaError, match="one D"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
