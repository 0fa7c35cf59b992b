"""Physical paths through given keyframes, for interpolating sparse keyframes (chapter 11.4 interpolation, 11.3.6
physics).

With gravity known, an object seen at two or more frames has few paths between them that the laws of motion allow:
from its position at the first given frame, each initial velocity that carries it (bounces off the walls included,
the physics-balls simulator's) through its positions at the other given frames. `keyframe_paths` finds them all by
least squares from a grid of starting velocities, keeping those whose initial speed the simulator's data could have
(its `speed_range`) when there are any. `onto_keyframe_paths` then picks for each object the path nearest to where a
made video draws it (a capped distance, weighted by its read-out mass) and moves the object onto it
(kinema.control.physics_energy.move_objects): the keyframes pin the path, the model picks among the few that fit
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import least_squares
from torch import Tensor

from kinema.control.physics_energy import move_objects, scaled_simulator
from kinema.control.readout import TEMPERATURE, object_positions
from kinema.control.simulated_start import seen_objects
from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig, simulate_trajectories

GRID = 5  # starting velocities per axis, over +-1.5 times the fastest initial speed
FIT_TOLERANCE = 0.5  # px: a path must pass this close to every given position
SPEED_MARGIN = 0.1  # the share beyond the simulator's speed range still taken for a plausible initial speed
NEAREST_CAP = 4.0  # px: a frame further from a path than this counts as this far when choosing among paths
SPARSE_GAP = 3  # unknown frames between two given ones from which keyframes count as sparse


@dataclass
class KeyframePaths:
    """The objects of one video seen in every given frame: their `colours`, `radii` [K] px and, per object, the
    candidate paths [S, T, 2] px through its given positions (NaN before the first and after the last given frame)."""

    colours: list[str]
    radii: np.ndarray
    candidates: list[np.ndarray]


def is_sparse(given: Tensor) -> bool:
    """True when the given frames [T] (bool) of a video are at least two with SPARSE_GAP or more unknown between
    two of them."""
    indices = given.nonzero()[:, 0]
    return len(indices) >= 2 and bool((indices.diff() > SPARSE_GAP).any())


def _through(start: np.ndarray, targets: np.ndarray, offsets: np.ndarray, radius: float,
             simulator: BouncingBallsConfig) -> list[np.ndarray]:
    """The initial velocities [2] px/s from `start` [2] that carry a ball of `radius` through `targets` [G, 2] at
    frame `offsets` [G] after it, one per distinct solution found from the grid of starting velocities."""
    def path(velocity: np.ndarray) -> np.ndarray:
        return simulate_trajectories(start[None], velocity[None], np.array([radius]), simulator)[0][:, 0]

    mean_speed = np.abs(targets - start).max(1) / offsets * simulator.fps  # px/s, straight from start to each target
    fastest = 1.5 * max(simulator.speed_range[1], mean_speed.max())
    found: list[np.ndarray] = []
    for vx in np.linspace(-fastest, fastest, GRID):
        for vy in np.linspace(-fastest, fastest, GRID):
            fit = least_squares(lambda v: (path(v)[offsets] - targets).ravel(), np.array([vx, vy]))
            close = np.abs(path(fit.x)[offsets] - targets).max() <= FIT_TOLERANCE
            if close and not any(np.abs(fit.x - other).max() < 0.5 for other in found):
                found.append(fit.x)
    low, high = simulator.speed_range
    plausible = [v for v in found if (1 - SPEED_MARGIN) * low <= np.linalg.norm(v) <= (1 + SPEED_MARGIN) * high]
    return plausible or found


def keyframe_paths(frames: Tensor, given: Tensor, simulator: BouncingBallsConfig,
                   temperature: float = TEMPERATURE) -> KeyframePaths:
    """The candidate paths of the objects (by palette colour) seen in every `given` frame ([T] bool) of one video
    `frames` [3, T, H, W] (only the given frames are read)."""
    _, length, _, width = frames.shape
    indices = given.nonzero()[:, 0].tolist()
    simulator = scaled_simulator(simulator, indices[-1] - indices[0] + 1, width)
    names = list(BALL_COLORS)
    positions, mass = object_positions(frames[None, :, indices].double(), names, temperature)
    seen, radii = seen_objects(mass[0], simulator, width)
    positions = positions[0].cpu().numpy()
    candidates = []
    for k, radius in zip(seen, radii):
        start = np.clip(positions[k, 0], radius, width - radius)
        velocities = _through(start, positions[k, 1:], np.array(indices[1:]) - indices[0], radius, simulator)
        paths = np.full((len(velocities), length, 2), math.nan)
        for s, velocity in enumerate(velocities):
            paths[s, indices[0]: indices[-1] + 1] = simulate_trajectories(
                start[None], velocity[None], np.array([radius]), simulator)[0][:, 0]
        candidates.append(paths)
    return KeyframePaths([names[k] for k in seen], radii, candidates)


def nearest_paths(paths: KeyframePaths, positions: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """[K, T, 2]: each object's candidate path nearest to its read-out `positions` [K, T, 2] (frames weighted by
    the read-out `mass` [K, T] over its largest, distances capped at NEAREST_CAP px); NaN where it has none."""
    chosen = np.full(positions.shape, math.nan)
    for k, candidates in enumerate(paths.candidates):
        if not len(candidates):
            continue
        weight = mass[k] / max(mass[k].max(), 1e-6)
        distance = np.minimum(np.linalg.norm(candidates - positions[k], axis=-1), NEAREST_CAP)  # [S, T]
        chosen[k] = candidates[np.nansum(weight * distance, axis=1).argmin()]
    return chosen


def onto_keyframe_paths(video: Tensor, paths: list[KeyframePaths], strength: float = 1.0,
                        temperature: float = TEMPERATURE) -> Tensor:
    """Videos [B, 3, T, H, W] with each object of `paths` (one per video) moved `strength` of the way onto its
    candidate path nearest to where the video draws it (`nearest_paths`)."""
    out = []
    for b, found in enumerate(paths):
        if not found.colours:
            out.append(video[b:b + 1])
            continue
        positions, mass = object_positions(video[b:b + 1], found.colours, temperature)
        chosen = nearest_paths(found, positions[0].double().cpu().numpy(), mass[0].double().cpu().numpy())
        targets = torch.from_numpy(chosen).to(positions)[None]
        out.append(move_objects(video[b:b + 1], found.colours, targets, strength, temperature))
    return torch.cat(out)


def sparse_keyframe_paths(video: Tensor, given: Tensor, simulator: BouncingBallsConfig,
                          temperature: float = TEMPERATURE) -> list[KeyframePaths]:
    """`keyframe_paths` of each of the videos [B, 3, T, H, W] whose given frames [B, T] (bool) are sparse
    (`is_sparse`); none (no objects) for the others."""
    return [keyframe_paths(frames, frames_given, simulator, temperature) if is_sparse(frames_given)
            else KeyframePaths([], np.zeros(0), []) for frames, frames_given in zip(video, given.cpu())]
