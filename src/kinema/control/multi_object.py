"""Paths for many objects at once: crossing without collisions, and flocking (chapter 11.3.3, multi-object control).

Both generators move K discs in a size x size frame (pixels, x right, y down) over num_frames frames, on a
time grid of `substeps` steps per frame, from a seed, and return a TrajectorySpec (objects named "the red ball",
..., after BALL_COLORS, then "ball 9", ...):

- `avoiding_paths`: each object crosses to the mirror image of its start through the frame's centre, so straight
  lines would all meet in the middle; the paths are the smoothest ones (least squared acceleration) that keep
  the discs a clearance `margin` apart, by trajectory optimisation with an overlap penalty (CHOMP, Ratliff et al.
  2009). The margin (default size / 16: 2 px at 32x32) is what a generated video needs: a ball drawn a pixel off
  its path would touch its neighbour on paths that merely avoid contact;
- `flocking_paths`: Reynolds' boids (1987): separation, alignment and cohesion among neighbours, plus a push
  away from the walls; after every step overlapping discs are pushed apart along their line of centres and kept
  inside the frame (a position projection as in position-based dynamics, Mueller et al. 2007).

The result is checked at every frame and along the straight steps between frames (how `TrajectorySpec.resized`
resamples time): no two objects closer than the sum of their radii (plus the margin for `avoiding_paths`). A draw
that fails the check is redrawn; a frame too crowded for the objects is a KinemaError.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from kinema.control.trajectory import ObjectPath, TrajectorySpec
from kinema.data.physics_balls import BALL_COLORS
from kinema.errors import KinemaError

CLEARANCE = 0.25  # px kept between discs (projection, penalty), so the final check holds despite rounding
PROJECTION_PASSES = 8
MAX_DRAWS = 20  # redraws of starts (and of a whole run that fails its check) before giving up
PENALTY_WEIGHTS = (10.0, 100.0, 1000.0, 10000.0)  # overlap penalty, raised until the paths pass the check


def _pairs(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets p_i - p_j [K, K, 2] and distances [K, K] (inf on the diagonal)."""
    offset = p[:, None] - p[None]
    distance = np.linalg.norm(offset, axis=-1)
    np.fill_diagonal(distance, np.inf)
    return offset, distance


def _project(p: np.ndarray, radii: np.ndarray, size: int) -> np.ndarray:
    """Push overlapping discs apart (half the overlap each, along the line of centres) and inside the frame."""
    contact = radii[:, None] + radii[None] + CLEARANCE
    p = np.clip(p, radii[:, None], size - radii[:, None])
    for _ in range(PROJECTION_PASSES):
        offset, distance = _pairs(p)
        overlap = np.where(distance < contact, contact - distance, 0.0)
        if not overlap.any():
            break
        unit = offset / np.maximum(distance, 1e-9)[..., None]
        p = p + 0.5 * (overlap[..., None] * unit).sum(1)
        p = np.clip(p, radii[:, None], size - radii[:, None])
    return p


def _radii(rng: np.random.Generator, num_objects: int, radius: float | tuple[float, float], size: int) -> np.ndarray:
    low, high = (radius, radius) if isinstance(radius, (int, float)) else radius
    if not 0 < low <= high < size / 2:
        raise KinemaError(f"radius must be in (0, {size / 2:g}) px with low <= high, got {radius}")
    return rng.uniform(low, high, num_objects)


def _starts(rng: np.random.Generator, radii: np.ndarray, size: int, border: float, margin: float = 0.0) -> np.ndarray:
    """Random positions at least `border` + radius from the walls and `margin` (+ clearance) from each other."""
    low, high = radii + border, size - radii - border
    if np.any(low >= high):
        raise KinemaError(f"a {size}x{size} frame is too small for objects of radius up to {radii.max():.1f} px")
    for _ in range(MAX_DRAWS * 50):
        p = rng.uniform(low[:, None], high[:, None], (len(radii), 2))
        if np.all(_pairs(p)[1] >= radii[:, None] + radii[None] + margin + 2 * CLEARANCE):
            return p
    raise KinemaError(f"cannot place {len(radii)} objects of radius up to {radii.max():.1f} px {margin:g} px apart in "
                      f"a {size}x{size} frame: use fewer or smaller objects or a smaller margin")


def min_separation(positions: np.ndarray, radii: np.ndarray, between: bool = False) -> float:
    """Smallest gap (distance minus the sum of radii, px) between two of K objects at any frame: positions [K, T, 2],
    radii [K]; negative when discs overlap, inf for a single object; frames where an object is absent (NaN) are
    skipped. `between`: also at every time of the straight steps between frames (the closest point of each pair's
    relative motion a + s b, s in [0, 1])."""
    i, j = np.triu_indices(len(radii), 1)
    offset = positions[i] - positions[j]  # [P, T, 2]
    if between and offset.shape[1] > 1:
        a, b = offset[:, :-1], np.diff(offset, axis=1)
        s = np.clip(-(a * b).sum(-1) / np.maximum(np.square(b).sum(-1), 1e-12), 0.0, 1.0)
        offset = np.concatenate([offset, a + s[..., None] * b], axis=1)
    gap = np.linalg.norm(offset, axis=-1) - (radii[i] + radii[j])[:, None]
    return float(np.where(np.isnan(gap), np.inf, gap).min(initial=np.inf))


def _spec(positions: np.ndarray, radii: np.ndarray, size: int, margin: float = 0.0) -> TrajectorySpec | None:
    """The spec of positions [K, T, 2], or None when two objects come closer than their radii plus `margin` at a
    frame or between frames."""
    if min_separation(positions, radii, between=True) < margin:
        return None
    names = list(BALL_COLORS)
    return TrajectorySpec(size, positions.shape[1], tuple(
        ObjectPath(f"the {names[k]} ball" if k < len(names) else f"ball {k + 1}", names[k] if k < len(names) else None,
                   torch.from_numpy(positions[k]).float(), float(radii[k]))
        for k in range(len(radii))))


def _path_cost(flat: np.ndarray, ends: np.ndarray, contact: np.ndarray, weight: float,
               between: np.ndarray) -> tuple[float, np.ndarray]:
    """Summed squared acceleration of paths [K, T, 2] (inner frames `flat`, fixed `ends` [K, 2, 2]) plus `weight`
    times the summed squared overlap (contact - distance) of every pair at N times on the straight steps between
    frames (`between` [N, T]: each time's weights of the frames), and its gradient."""
    count = len(ends)
    path = np.concatenate([ends[:, :1], flat.reshape(count, -1, 2), ends[:, 1:]], axis=1)
    acceleration = path[:, 2:] - 2 * path[:, 1:-1] + path[:, :-2]  # [K, T - 2, 2]
    grad = np.zeros_like(path)
    grad[:, :-2] += 2 * acceleration
    grad[:, 1:-1] -= 4 * acceleration
    grad[:, 2:] += 2 * acceleration
    points = np.einsum("nt,ktc->knc", between, path)
    offset = points[:, None] - points[None]  # [K, K, N, 2]
    distance = np.linalg.norm(offset, axis=-1)
    overlap = np.clip(contact[..., None] - distance, 0.0, None) * ~np.eye(count, dtype=bool)[..., None]
    # each pair appears twice in [K, K]: half the sum is the penalty, and d/dq_i of it is -2 w o (q_i - q_j) / d
    push = -2 * weight * (overlap[..., None] * offset / np.maximum(distance, 1e-9)[..., None]).sum(1)  # [K, N, 2]
    grad += np.einsum("nt,knc->ktc", between, push)
    value = np.square(acceleration).sum() + 0.5 * weight * np.square(overlap).sum()
    return float(value), grad[:, 1:-1].ravel()


def _check_counts(num_objects: int, num_frames: int, substeps: int, least_frames: int = 2) -> None:
    for name, value, least in (("num_objects", num_objects, 1), ("num_frames", num_frames, least_frames),
                               ("substeps", substeps, 1)):
        if value < least:
            raise KinemaError(f"{name} must be at least {least}, got {value}")


def avoiding_paths(num_objects: int, num_frames: int, size: int, radius: float | tuple[float, float] = (3.0, 4.5),
                   seed: int = 0, substeps: int = 4, margin: float | None = None) -> TrajectorySpec:
    """K objects that each cross to the mirror image of their start through the centre, never two closer than their
    radii plus `margin` px (default size / 16), at a frame or between frames: the smoothest frame positions (least
    summed squared acceleration) under a growing overlap penalty at `substeps` times per straight step between frames,
    walls as bounds (trajectory optimisation as in CHOMP, Ratliff et al. 2009; L-BFGS-B)."""
    _check_counts(num_objects, num_frames, substeps, least_frames=3)  # a path bends at a frame between its ends
    margin = size / 16 if margin is None else margin
    if margin < 0:
        raise KinemaError(f"margin must be at least 0 px, got {margin}")
    rng = np.random.default_rng(seed)
    radii = _radii(rng, num_objects, radius, size)
    frames = np.arange(num_frames)
    times = np.linspace(0, num_frames - 1, (num_frames - 1) * substeps + 1)  # where overlap is penalised
    between = np.stack([np.interp(times, frames, one) for one in np.eye(num_frames)], axis=1)  # [N, T]
    tau = frames[None, :, None] / (num_frames - 1)
    contact = radii[:, None] + radii[None] + margin + CLEARANCE
    bounds = np.repeat(np.stack([radii, size - radii], axis=-1), (num_frames - 2) * 2, axis=0)  # [K * (T-2) * 2, 2]
    for _ in range(MAX_DRAWS):
        start = _starts(rng, radii, size, border=1.0, margin=margin)
        goal = size - start
        straight = start[:, None] + (goal - start)[:, None] * tau  # [K, T, 2]
        nudged = straight[:, 1:-1] + rng.normal(0.0, 0.5, straight[:, 1:-1].shape)  # breaks head-on symmetry
        x = np.clip(nudged, radii[:, None, None], size - radii[:, None, None])
        for weight in PENALTY_WEIGHTS:
            x = minimize(_path_cost, x.ravel(), args=(straight[:, [0, -1]], contact, weight, between), jac=True,
                         method="L-BFGS-B", bounds=bounds).x
            path = np.concatenate([straight[:, :1], x.reshape(num_objects, -1, 2), straight[:, -1:]], axis=1)
            spec = _spec(path, radii, size, margin)
            if spec is not None:
                return spec
    raise KinemaError(f"no collision-free paths for {num_objects} objects {margin:g} px apart in a {size}x{size} frame "
                      f"after {MAX_DRAWS} draws: use fewer or smaller objects or a smaller margin")


def flocking_paths(num_objects: int, num_frames: int, size: int, radius: float | tuple[float, float] = (2.0, 3.0),
                   seed: int = 0, separation: float = 1.5, alignment: float = 1.0, cohesion: float = 0.3,
                   speed: float | None = None, substeps: int = 8) -> TrajectorySpec:
    """A flock of K boids (Reynolds 1987): separation from close neighbours, alignment with and cohesion towards
    neighbours in view, walls avoided; cruise speed `speed` px/frame (default size / 16)."""
    _check_counts(num_objects, num_frames, substeps)
    rng = np.random.default_rng(seed)
    radii = _radii(rng, num_objects, radius, size)
    speed = size / 16 if speed is None else speed
    view = size / 2  # neighbours closer than this are seen
    dt = 1.0 / substeps
    for _ in range(MAX_DRAWS):
        p = _starts(rng, radii, size, border=1.0)
        angle = rng.uniform(0, 2 * np.pi, num_objects)
        velocity = speed * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        frames = [p]
        for step in range((num_frames - 1) * substeps):
            offset, distance = _pairs(p)
            seen = (distance < view)[..., None]
            count = np.maximum(seen.sum(1), 1)
            personal = 2 * (radii[:, None] + radii[None])  # neighbours closer than this are avoided
            steer = separation * speed * (np.clip(personal - distance, 0, None)[..., None] * offset
                                          / np.maximum(distance, 1e-9)[..., None] ** 2).sum(1)
            steer += alignment * ((seen * velocity[None]).sum(1) / count - velocity) * seen.any(1)
            steer += cohesion * ((seen * p[None]).sum(1) / count - p) * seen.any(1)
            margin = size / 8  # walls push back inside this band
            steer += speed * (np.clip(margin - (p - radii[:, None]), 0, None)
                              - np.clip(margin - (size - radii[:, None] - p), 0, None)) / margin
            velocity = velocity + steer * dt
            norm = np.linalg.norm(velocity, axis=-1, keepdims=True)
            velocity = velocity / np.maximum(norm, 1e-9) * np.clip(norm, 0.5 * speed, 1.5 * speed)
            p = _project(p + velocity * dt, radii, size)
            if (step + 1) % substeps == 0:
                frames.append(p)
        spec = _spec(np.stack(frames, axis=1), radii, size)
        if spec is not None:
            return spec
    raise KinemaError(f"no separated flock of {num_objects} objects in a {size}x{size} frame after {MAX_DRAWS} "
                      "draws: use fewer or smaller objects")
