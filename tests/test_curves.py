"""Trajectory curves (chapter 11.3.3): interpolants pass through their keypoints at their times, the natural cubic
spline has the least integrated squared acceleration and the quintic one the least jerk, Bezier curves follow
their Bernstein form, and speed profiles retime a curve along its arc length."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import Akima1DInterpolator, CubicSpline, PchipInterpolator

from kinema.control.curves import CURVES, make_curve, sample_curve
from kinema.errors import KinemaError

INTERPOLATING = [kind for kind in CURVES if kind != "bezier"]


@st.composite
def keypoints(draw, least: int = 3):
    """3..6 points in a 32 px frame at strictly increasing times (gaps >= 0.5 frame)."""
    n = draw(st.integers(least, 6))
    gaps = draw(st.lists(st.floats(0.5, 3.0), min_size=n - 1, max_size=n - 1))
    start = draw(st.floats(0.0, 2.0))
    times = start + np.concatenate([[0.0], np.cumsum(gaps)])
    points = np.array(draw(st.lists(st.tuples(st.floats(0, 32), st.floats(0, 32)), min_size=n, max_size=n)))
    return points, times


def integrated_square(curve, times: np.ndarray, nu: int) -> float:
    """Integral of |c^(nu)(t)|^2 over the keypoints' span: 12-node Gauss-Legendre per interval between keypoints
    (exact for the piecewise polynomials here, whose breaks are keypoint times)."""
    nodes, weights = np.polynomial.legendre.leggauss(12)
    total = 0.0
    for a, b in zip(times[:-1], times[1:]):
        t = (a + b) / 2 + (b - a) / 2 * nodes
        total += (b - a) / 2 * float(weights @ np.square(curve(t, nu)).sum(-1))
    return total


def rest_to_rest_chain(points: np.ndarray, times: np.ndarray):
    """A minimum-jerk move from rest to rest between each two consecutive keypoints (stops at every keypoint)."""
    pieces = [make_curve("min_jerk", points[i:i + 2], times[i:i + 2]) for i in range(len(points) - 1)]

    def chain(t, nu=0):
        index = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(pieces) - 1)
        return np.stack([pieces[i](np.array([s]), nu)[0] for i, s in zip(index, t)])

    return chain


@pytest.mark.parametrize("kind", INTERPOLATING)
@settings(max_examples=15, deadline=None)
@given(data=keypoints())
def test_interpolating_curves_pass_through_their_keypoints_at_their_times(kind, data):
    points, times = data
    curve = make_curve(kind, points, times)
    np.testing.assert_allclose(curve(times), points, atol=1e-6)
    np.testing.assert_allclose(sample_curve(curve, (times[0], times[-1]), times), points, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(data=keypoints())
def test_min_acceleration_has_the_least_integrated_squared_acceleration(data):
    points, times = data
    best = integrated_square(make_curve("min_acceleration", points, times), times, 2)
    others = {
        "not-a-knot cubic": CubicSpline(times, points), "clamped cubic": CubicSpline(times, points, bc_type="clamped"),
        "pchip": PchipInterpolator(times, points), "akima (Catmull-Rom-like)": Akima1DInterpolator(times, points),
        "fourier": make_curve("fourier", points, times),
        "quadratic bspline": make_curve("bspline", points, times, degree=2),
        "min_jerk (rest)": make_curve("min_jerk", points, times),
        "min_jerk (natural)": make_curve("min_jerk", points, times, ends="natural"),
    }
    if len(points) >= 4:
        others["cubic bspline"] = make_curve("bspline", points, times)
    for name, other in others.items():
        value = integrated_square(other, times, 2)
        assert best <= value * (1 + 1e-9) + 1e-9, f"{name}: {value} < natural cubic {best}"


@settings(max_examples=30, deadline=None)
@given(data=keypoints())
def test_min_jerk_has_less_integrated_squared_jerk_than_min_acceleration(data):
    points, times = data
    natural = integrated_square(make_curve("min_jerk", points, times, ends="natural"), times, 3)
    for other in (make_curve("min_acceleration", points, times), make_curve("fourier", points, times),
                  make_curve("min_jerk", points, times)):
        assert natural <= integrated_square(other, times, 3) * (1 + 1e-9) + 1e-9
    rest = make_curve("min_jerk", points, times)  # the least jerk of all interpolants that start and end at rest
    ends = np.array([times[0], times[-1]])
    np.testing.assert_allclose(np.concatenate([rest(ends, 1), rest(ends, 2)]), 0.0, atol=1e-6)
    chain = integrated_square(rest_to_rest_chain(points, times), times, 3)
    assert integrated_square(rest, times, 3) <= chain * (1 + 1e-9) + 1e-9


def test_bezier_follows_its_bernstein_form_from_first_to_last_control_point():
    control = np.array([[2.0, 30.0], [16.0, 0.0], [30.0, 30.0]])
    curve = make_curve("bezier", control, np.array([1.0, 5.0]))
    u = np.array([0.0, 0.25, 0.5, 1.0])
    bernstein = np.stack([(1 - u) ** 2, 2 * u * (1 - u), u**2], axis=-1)  # degree-2 Bernstein basis
    expected = bernstein @ control
    np.testing.assert_allclose(curve(1.0 + 4.0 * u), expected, atol=1e-9)


def test_fourier_series_closes_a_loop_smoothly():
    loop = np.array([[8.0, 8.0], [26.0, 10.0], [20.0, 26.0], [6.0, 20.0], [8.0, 8.0]])
    times = np.array([0.0, 1.5, 4.0, 6.5, 8.0])
    curve = make_curve("fourier", loop, times)
    np.testing.assert_allclose(curve(times), loop, atol=1e-6)
    for nu in (1, 2):  # a period of the span: velocity and acceleration match across the seam
        np.testing.assert_allclose(curve(np.array([0.0]), nu), curve(np.array([8.0]), nu), atol=1e-6)
    assert np.abs(curve(np.array([0.0]), 1)).max() > 1.0  # it moves through the seam instead of stopping


def test_fewer_harmonics_give_the_least_squares_fit():
    times = np.linspace(0.0, 7.0, 8)
    points = np.stack([times * 3 + 2, 16 + 6 * np.sin(times)], axis=-1)
    fit = make_curve("fourier", points, times, harmonics=1)
    design = fit.basis(times)
    np.testing.assert_allclose(fit(times), design @ np.linalg.lstsq(design, points, rcond=None)[0], atol=1e-6)


def test_extra_harmonics_go_to_the_smoothest_interpolating_series():
    points, times = np.array([[4.0, 4.0], [28.0, 10.0], [6.0, 20.0], [26.0, 28.0]]), np.array([0.0, 2.0, 5.0, 7.0])
    smooth = make_curve("fourier", points, times, harmonics=8)
    plain = make_curve("fourier", points, times, harmonics=8)
    plain.coefficients = np.linalg.lstsq(plain.basis(times), points, rcond=None)[0]  # minimum-norm, unweighted
    np.testing.assert_allclose(smooth(times), points, atol=1e-6)
    assert integrated_square(smooth, times, 2) < 0.5 * integrated_square(plain, times, 2)


def arc_steps(curve, span, frames, speed):
    """Arc length travelled between consecutive frames (dense polyline per step)."""
    steps = []
    for a, b in zip(frames[:-1], frames[1:]):
        dense = sample_curve(curve, span, np.linspace(a, b, 400), speed)
        steps.append(np.linalg.norm(np.diff(dense, axis=0), axis=1).sum())
    return np.array(steps)


def test_speed_profiles_retime_the_curve_along_its_arc_length():
    points, times = np.array([[2.0, 2.0], [6.0, 28.0], [30.0, 30.0]]), np.array([0.0, 1.0, 7.0])
    curve = make_curve("min_acceleration", points, times)
    frames = np.arange(8.0)
    keypoint_steps = arc_steps(curve, (0.0, 7.0), frames, "keypoints")
    assert keypoint_steps.max() > 3 * keypoint_steps.min()  # fast first segment, slow second: uneven as timed
    constant = arc_steps(curve, (0.0, 7.0), frames, "constant")
    np.testing.assert_allclose(constant, constant.mean(), rtol=1e-3)
    eased = arc_steps(curve, (0.0, 7.0), frames, "ease_in_out")
    assert np.all(np.diff(eased[:4]) > 0) and np.all(np.diff(eased[3:]) < 0)  # speeds up, then slows down
    np.testing.assert_allclose(eased.sum(), constant.sum(), rtol=1e-3)  # same path
    for speed in ("constant", "ease_in_out", "ease_in", "ease_out"):
        np.testing.assert_allclose(sample_curve(curve, (0.0, 7.0), np.array([0.0, 7.0]), speed), points[[0, -1]],
                                   atol=1e-6)


def test_objects_hold_still_outside_their_time_span():
    curve = make_curve("linear", np.array([[4.0, 4.0], [20.0, 12.0]]), np.array([2.0, 5.0]))
    positions = sample_curve(curve, (2.0, 5.0), np.arange(8.0))
    np.testing.assert_allclose(positions[:3], [[4.0, 4.0]] * 3)
    np.testing.assert_allclose(positions[5:], [[20.0, 12.0]] * 3)
    np.testing.assert_allclose(positions[3], [4.0 + 16 / 3, 4.0 + 8 / 3])


@pytest.mark.parametrize("kind, points, times, options, message", [
    ("spiral", [[0, 0], [1, 1]], [0, 1], {}, "unknown curve 'spiral'"),
    ("bspline", [[0, 0], [1, 1], [2, 0]], [0, 1, 2], {"degree": 3}, "needs at least 4 points, got 3"),
    ("linear", [[0, 0]], [0], {}, "needs at least 2 points"),
    ("linear", [[0, 0], [1, 1], [2, 2]], [0, 2, 1], {}, "times must increase strictly"),
    ("min_jerk", [[0, 0], [1, 1]], [0, 1], {"ends": "natural"}, "at least 3 points"),
    ("fourier", [[0, 0], [1, 1]], [0, 4], {"period": 2}, "period must be at least"),
])
def test_bad_curves_are_one_line_errors(kind, points, times, options, message):
    with pytest.raises(KinemaError, match=message) as error:
        make_curve(kind, np.array(points, dtype=float), np.array(times, dtype=float), **options)
    assert "\n" not in str(error.value)
