"""Curves through keypoints for object trajectories, and speed profiles along them (chapter 11.3.3).

A curve is a function of time `c(t, nu=0) -> [len(t), 2]` (position, or its `nu`-th time derivative) built from
keypoints `points [n, 2]` at `times [n]` (frame indices, strictly increasing); every curve here except Bezier
passes through its keypoints at their times:

- `linear`: straight segments (a degree-1 spline);
- `bezier`: one Bezier curve in Bernstein form, the points are its control points, `times` its start and end;
- `bspline`: the interpolating B-spline of a given degree (default cubic; not-a-knot ends);
- `fourier`: a Fourier series of K harmonics fitted by least squares (the smoothest one when it interpolates);
- `min_acceleration`: the natural cubic spline, which minimises the integrated squared acceleration over all
  twice-differentiable interpolants (de Boor, A Practical Guide to Splines, ch. 5);
- `min_jerk`: the quintic spline, which minimises the integrated squared jerk; with `ends="rest"` it starts and
  ends at rest (zero velocity and acceleration, Flash & Hogan 1985), with `ends="natural"` the ends are free.

`sample_curve` evaluates a curve at frame times, holding the first and last position outside its time span, and
optionally retimes it along its arc length with a speed profile (constant speed, ease in and out).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.interpolate import BPoly, BSpline, CubicSpline, make_interp_spline

from kinema.errors import KinemaError

Curve = Callable[..., np.ndarray]  # c(t [N], nu=0) -> [N, 2]

ARC_SAMPLES = 2049  # dense samples of a curve for its arc length


class FourierSeries:
    """x(t) = a_0 + sum_k a_k cos(2 pi k (t - t_0) / P) + b_k sin(2 pi k (t - t_0) / P), per coordinate."""

    def __init__(self, coefficients: np.ndarray, period: float, origin: float):
        self.coefficients = coefficients  # [2K + 1, 2]: a_0, a_1, b_1, a_2, b_2, ...
        self.period = period
        self.origin = origin

    def basis(self, t: np.ndarray, nu: int = 0) -> np.ndarray:
        """The series' basis functions (or their `nu`-th derivatives) at times `t`: [N, 2K + 1]."""
        harmonics = np.arange(1, (len(self.coefficients) - 1) // 2 + 1)
        omega = 2 * math.pi * harmonics / self.period  # [K]
        phase = np.outer(np.asarray(t, dtype=np.float64) - self.origin, omega) + nu * math.pi / 2  # d/dt shifts by pi/2
        scale = omega**nu
        waves = np.stack([np.cos(phase) * scale, np.sin(phase) * scale], axis=-1).reshape(len(phase), -1)
        constant = np.full((len(phase), 1), 1.0 if nu == 0 else 0.0)
        return np.concatenate([constant, waves], axis=1)

    def __call__(self, t: np.ndarray, nu: int = 0) -> np.ndarray:
        return self.basis(np.atleast_1d(t), nu) @ self.coefficients


def linear_curve(points: np.ndarray, times: np.ndarray) -> BSpline:
    """Straight segments between consecutive keypoints (a degree-1 spline)."""
    return make_interp_spline(times, points, k=1)


def bezier_curve(points: np.ndarray, times: np.ndarray) -> BPoly:
    """The Bezier curve with control points `points`, from times[0] to times[-1] (Bernstein form, one piece)."""
    return BPoly(points[:, None, :], [times[0], times[-1]])


def bspline_curve(points: np.ndarray, times: np.ndarray, degree: int | None = None) -> BSpline:
    """The interpolating B-spline of `degree` (default cubic, lower for fewer than 4 points) through the keypoints
    at their times (not-a-knot ends)."""
    degree = min(3, len(points) - 1) if degree is None else degree
    if not isinstance(degree, int) or not 1 <= degree <= 5:
        raise KinemaError(f"degree must be a whole number 1..5, got {degree!r}")
    if len(points) <= degree:
        raise KinemaError(f"a degree-{degree} bspline needs at least {degree + 1} points, got {len(points)}")
    return make_interp_spline(times, points, k=degree)


def fourier_curve(points: np.ndarray, times: np.ndarray, harmonics: int | None = None,
                  period: float | None = None) -> FourierSeries:
    """Least-squares Fourier series of `harmonics` terms through the keypoints (Fourier 1822; chapter 11.3.3).

    Default: the fewest harmonics that interpolate (2K + 1 >= n) and a period of the time span for a closed path
    (first point = last point), twice the span otherwise. Columns are scaled by 1/k^2 before the minimum-norm
    solve, so among the series that interpolate it takes the one of least a_0^2 + sum k^4 (a_k^2 + b_k^2): the
    integrated squared acceleration over a period is proportional to that sum without a_0^2."""
    span = float(times[-1] - times[0])
    closed = bool(np.allclose(points[0], points[-1]))
    harmonics = max(1, math.ceil((len(points) - 1) / 2)) if harmonics is None else harmonics
    if not isinstance(harmonics, int) or harmonics < 1:
        raise KinemaError(f"harmonics must be a whole number >= 1, got {harmonics!r}")
    period = (span if closed else 2 * span) if period is None else period
    if not isinstance(period, (int, float)) or period < span or period <= 0:
        raise KinemaError(f"period must be at least the time span of the points ({span:g} frames), got {period!r}")
    series = FourierSeries(np.zeros((2 * harmonics + 1, 2)), float(period), float(times[0]))
    weights = np.concatenate([[1.0], np.repeat(1.0 / np.arange(1, harmonics + 1) ** 2, 2)])
    solution = np.linalg.lstsq(series.basis(times) * weights, points, rcond=None)[0]
    series.coefficients = solution * weights[:, None]
    return series


def min_acceleration_curve(points: np.ndarray, times: np.ndarray) -> CubicSpline:
    """The natural cubic spline: least integrated squared acceleration of all interpolants (de Boor ch. 5)."""
    return CubicSpline(times, points, bc_type="natural")


def min_jerk_curve(points: np.ndarray, times: np.ndarray, ends: str = "rest") -> BSpline:
    """The quintic spline of least integrated squared jerk through the keypoints (Flash & Hogan 1985).

    ends="rest": zero velocity and acceleration at both ends; ends="natural": free ends (3rd and 4th derivatives
    vanish there), the least jerk of all interpolants."""
    orders = {"rest": (1, 2), "natural": (3, 4)}
    if ends not in orders:
        raise KinemaError(f"ends must be one of {', '.join(orders)}, got {ends!r}")
    if ends == "natural" and len(points) < 3:
        raise KinemaError(f"min_jerk with natural ends needs at least 3 points, got {len(points)}")
    condition = [(order, np.zeros(2)) for order in orders[ends]]
    return make_interp_spline(times, points, k=5, bc_type=(condition, condition))


CURVES: dict[str, Callable[..., Curve]] = {
    "linear": linear_curve,
    "bezier": bezier_curve,
    "bspline": bspline_curve,
    "fourier": fourier_curve,
    "min_acceleration": min_acceleration_curve,
    "min_jerk": min_jerk_curve,
}

SPEED_PROFILES: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {  # time fraction -> arc-length fraction
    "keypoints": None,  # the curve's own timing: through each keypoint at its time
    "constant": lambda tau: tau,
    "ease_in_out": lambda tau: tau**3 * (10 - 15 * tau + 6 * tau**2),  # minimum-jerk profile (Flash & Hogan 1985)
    "ease_in": lambda tau: tau**2,
    "ease_out": lambda tau: 1 - (1 - tau) ** 2,
}


def make_curve(kind: str, points: np.ndarray, times: np.ndarray, **options) -> Curve:
    """The curve `kind` (a key of CURVES) through `points [n, 2]` at strictly increasing `times`."""
    if kind not in CURVES:
        raise KinemaError(f"unknown curve {kind!r}: use one of {', '.join(CURVES)}")
    points, times = np.asarray(points, dtype=np.float64), np.asarray(times, dtype=np.float64)
    if len(points) < 2:
        raise KinemaError(f"a {kind} curve needs at least 2 points, got {len(points)}")
    if np.any(np.diff(times) <= 0):
        raise KinemaError(f"times must increase strictly, got {times.tolist()}")
    return CURVES[kind](points, times, **options)


def sample_curve(curve: Curve, span: tuple[float, float], frame_times: np.ndarray,
                 speed: str = "keypoints") -> np.ndarray:
    """Positions [N, 2] of `curve` at `frame_times`, held at its ends outside `span`; a `speed` profile other than
    'keypoints' retimes the curve along its arc length (constant speed, ease_in_out, ...) over the span."""
    if speed not in SPEED_PROFILES:
        raise KinemaError(f"unknown speed profile {speed!r}: use one of {', '.join(SPEED_PROFILES)}")
    start, end = span
    t = np.clip(np.asarray(frame_times, dtype=np.float64), start, end)
    profile = SPEED_PROFILES[speed]
    if profile is None:
        return curve(t)
    dense = np.linspace(start, end, ARC_SAMPLES)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve(dense), axis=0), axis=1))])
    if arc[-1] == 0:
        return curve(t)
    return curve(np.interp(profile((t - start) / (end - start)) * arc[-1], arc, dense))
