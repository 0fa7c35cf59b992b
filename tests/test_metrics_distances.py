"""Tests for the Fréchet distance, KVD and bootstrap intervals."""

import numpy as np
import pytest
import scipy.linalg

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


def test_identical_sets_give_about_zero_and_shifted_sets_do_not():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8))
    assert frechet_distance_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert abs(kernel_distance(x, x.copy(), subsets=5, subset_size=200)) < 0.05
    shifted = x + 1.0
    assert frechet_distance_from_features(x, shifted) == pytest.approx(8.0, rel=1e-6)
    assert kernel_distance(x, shifted, subsets=5, subset_size=200) > 1.0


def test_kvd_is_unbiased_for_two_samples_of_one_distribution():
    rng = np.random.default_rng(2)
    values = [kernel_distance(rng.normal(size=(100, 4)), rng.normal(size=(100, 4)), subsets=1, subset_size=100,
                              seed=s) for s in range(60)]
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values))


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_samples():
    rng = np.random.default_rng(3)
    widths = []
    for n in (60, 600):
        real, fake = rng.normal(size=(n, 3)), rng.normal(0.5, 1.0, size=(n, 3))
        low, high = bootstrap_interval(frechet_distance_from_features, real, fake, rounds=40, seed=0)
        assert low <= frechet_distance_from_features(real, fake) <= high
        widths.append(high - low)
    assert widths[1] < widths[0]


def test_bad_features_raise_kinema_error():
    with pytest.raises(KinemaError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(KinemaError, match="differ in size"):
        kernel_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(KinemaError, match="one D"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
