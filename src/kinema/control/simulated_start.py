"""A start for image animation: the given frame's objects run forward by the simulator (chapter 11.3.2 image
animation, 11.3.6 physics; PhysGen, Liu et al. 2024).

Animating one frame, a model must invent each object's motion and keep the object whole while it moves; the second
part is where it fails (a ball splits, fades or changes colour). The physics-balls simulator knows how such objects
move. Each object read out of the given frame (by palette colour, kinema.control.readout) gets an initial velocity
(a random speed in the simulator's range, in the direction the prompt asks for it, else a random one); the simulator
carries the objects forward and back from the given frame (gravity, walls, collisions), and the frame's pixels of
each object are warped along its path (kinema.control.physics_energy.move_objects). Sampling then starts from this
rough video noised to a middle time, as an SDEdit edit does: the model redraws it and may change the motion, but
starts with every object whole.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

from kinema.control.identity_energy import smallest_disc_area
from kinema.control.physics_energy import move_objects, scaled_simulator
from kinema.control.readout import TEMPERATURE, object_positions
from kinema.data.physics_balls import BALL_COLORS, DIRECTION_MIN_SPEED, BouncingBallsConfig, simulate_trajectories
from kinema.errors import KinemaError

ASKED_SPREAD = math.pi / 4  # an asked direction's velocity lies within this angle of it
DRAWS = 16  # velocity draws tried for paths whose mean step goes each asked way (walls may turn a ball back)


def seen_objects(mass: Tensor, simulator: BouncingBallsConfig, width: int) -> tuple[list[int], np.ndarray]:
    """(indices, radii [K] px) of the palette colours whose read-out `mass` [P, G] is at least half the smallest
    disc's in every one of G frames, a disc smaller than half the frame (radius from the largest mass)."""
    smallest = smallest_disc_area(simulator, width) / 2
    radii = (mass.amax(dim=1) / math.pi).sqrt()
    seen = [k for k in range(len(mass)) if bool((mass[k] >= smallest).all()) and radii[k] < width / 2]
    return seen, radii[seen].double().cpu().numpy()


def initial_velocities(colours: list[str], simulator: BouncingBallsConfig,
                       directions: dict[str, tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """[K, 2] px/s: a speed drawn from the simulator's range, along each colour's asked direction (x right, y down)
    give or take ASKED_SPREAD, else a random one."""
    speed = rng.uniform(*simulator.speed_range, len(colours))
    angle = rng.uniform(-math.pi, math.pi, len(colours))
    for k, colour in enumerate(colours):
        dx, dy = directions.get(colour, (0.0, 0.0))
        if dx or dy:
            angle[k] = math.atan2(dy, dx) + rng.uniform(-ASKED_SPREAD, ASKED_SPREAD)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1) * speed[:, None]


def _paths(centres: np.ndarray, velocities: np.ndarray, radii: np.ndarray, simulator: BouncingBallsConfig
           ) -> np.ndarray:
    """[T, K, 2]: the simulated centres, together, or each object alone when the read-out discs overlap."""
    try:
        return simulate_trajectories(centres, velocities, radii, simulator)[0]
    except KinemaError:  # discs drawn touching: no collisions between them
        return np.concatenate([simulate_trajectories(centres[k:k + 1], velocities[k:k + 1], radii[k:k + 1],
                                                     simulator)[0] for k in range(len(radii))], axis=1)


def simulated_paths(centres: np.ndarray, velocities: np.ndarray, radii: np.ndarray, index: int, frames: int,
                    simulator: BouncingBallsConfig) -> np.ndarray:
    """[T, K, 2] px: objects at `centres` [K, 2] with `velocities` [K, 2] px/s at frame `index` of `frames`, run
    forward to the last frame and back to frame 0 (the path to `index` is the one run forward from it with the
    velocities reversed, read backward: motion under gravity runs the same both ways between bounces)."""
    ahead = _paths(centres, velocities, radii, dataclasses.replace(simulator, num_frames=frames - index))
    behind = _paths(centres, -velocities, radii, dataclasses.replace(simulator, num_frames=index + 1))
    return np.concatenate([behind[::-1], ahead[1:]])


def asked_progress(paths: np.ndarray, colours: list[str], directions: dict[str, tuple[float, float]]) -> float:
    """The least mean step (px per frame) along its asked direction of the objects of `paths` [T, K, 2] that have
    one (the captions' "to the left": the sign of the mean velocity); inf when none has."""
    steps = (paths[-1] - paths[0]) / max(len(paths) - 1, 1)
    asked = [float(np.dot(steps[k], directions[colour])) for k, colour in enumerate(colours) if colour in directions]
    return min(asked, default=math.inf)


def simulated_start(frame: Tensor, index: int, frames: int, simulator: BouncingBallsConfig,
                    directions: dict[str, tuple[float, float]], rng: np.random.Generator,
                    temperature: float = TEMPERATURE, asked_paths: dict[str | None, Tensor] | None = None) -> Tensor:
    """[3, T, H, W]: the objects of `frame` [3, H, W] (frame `index` of `frames`) moved along simulated paths
    (`initial_velocities`, `simulated_paths`; the first of DRAWS draws whose objects all go their asked ways at least
    as fast as a caption's "to the left" means, DIRECTION_MIN_SPEED, else the one closest to it) in `frames` copies
    of it; the still copies when it shows none. An object with a path in `asked_paths` (colour -> [T, 2] px: a
    trajectory file's; colour None: the frame's one object) is moved along that path instead."""
    width = frame.shape[-1]
    least_progress = DIRECTION_MIN_SPEED * width / simulator.size  # px per frame at this width
    simulator = scaled_simulator(simulator, frames, width)
    names = list(BALL_COLORS)
    positions, mass = object_positions(frame[None, :, None].double(), names, temperature)
    seen, radii = seen_objects(mass[0], simulator, width)
    still = frame[None, :, None].expand(-1, -1, frames, -1, -1)
    if not seen:
        return still[0].clone()
    colours = [names[k] for k in seen]
    centres = np.clip(positions[0, seen, 0].cpu().numpy(), radii[:, None], width - radii[:, None])
    best = None
    for _ in range(DRAWS):
        velocities = initial_velocities(colours, simulator, directions, rng)
        paths = simulated_paths(centres, velocities, radii, index, frames, simulator)
        progress = asked_progress(paths, colours, directions)
        if best is None or progress > best[0]:
            best = progress, paths
        if progress >= least_progress:
            break
    paths, asked = best[1].copy(), dict(asked_paths or {})
    if None in asked and len(colours) == 1:  # a path for "the ball", whatever its colour, and one ball to give it
        asked[colours[0]] = asked.pop(None)
    for k, colour in enumerate(colours):
        if colour in asked:
            paths[:, k] = asked[colour].double().cpu().numpy()
    targets = torch.from_numpy(paths).to(frame).permute(1, 0, 2)[None]  # [1, K, T, 2]
    return move_objects(still, colours, targets, temperature=temperature)[0]
