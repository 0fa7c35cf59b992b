"""Physics energies on objects' read-out paths, a projection onto simulated physics, for guidance (chapter 11.3.6,
11.1.3).

For positions p [B, K, T, 2] px (kinema.control.readout) of objects in free flight between contacts:
- constant gravity: the second differences a_t = p_{t+1} - 2 p_t + p_{t-1} equal (0, g) (px/frame^2, y down);
- smooth acceleration: the third differences j_t = p_{t+2} - 3 p_{t+1} + 3 p_t - p_{t-1} vanish;
- no interpenetration: discs i, j of radii r_i, r_j overlap by relu(r_i + r_j - |c_i - c_j|), which should be 0.
The first two are Huber penalties (robust to the odd missed contact) over the windows of frames in which the object
is in free flight: a window is a contact, left out, when a wall or another object lies within the object's step plus
one pixel and the acceleration beyond gravity points away from it (a bounce's jump in acceleration is physics, not an
error; one that pulls into a wall is not a bounce). Each term is weighted, like the trajectory energy, by
the objects' read-out mass held constant (the smallest in the window or pair), and scaled by SCALE / T, so a weight
near 1 is a moderate push at any size (kinema.control.trajectory_energy). Every term has a closed-form gradient in p,
which is what guidance differentiates.

Projection: `project_to_physics` fits each object's read-out path with the physics-balls simulator's (initial
position and velocity by robust least squares, bounces, restitution and friction included) and moves the object's pixels
(its read-out weight times its colour) by the difference, frame by frame (bilinear warp): the video is pulled onto a
path the laws of motion allow, not merely nudged toward one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import least_squares
from torch import Tensor

from kinema.control.readout import TEMPERATURE, object_positions, palette_weights
from kinema.control.trajectory_energy import (SCALE, closed_form_energy, pair_indices, pair_offsets, spacing_energy,
                                             spacing_energy_gradient, touching_distance)
from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig, simulate_trajectories
from kinema.errors import KinemaError
from kinema.video.flow import warp

SECOND = (1.0, -2.0, 1.0)  # a_t = p_{t+1} - 2 p_t + p_{t-1}
THIRD = (-1.0, 3.0, -3.0, 1.0)  # j_t = p_{t+2} - 3 p_{t+1} + 3 p_t - p_{t-1}
HUBER_DELTA = 0.5  # px/frame^2: larger residuals are penalised linearly
CONTACT_MIN = 0.25  # px/frame^2: a smaller acceleration beyond gravity is free flight, whatever its direction
TERMS = ("gravity", "smoothness", "interpenetration")


def simulator_gravity(config: BouncingBallsConfig, size: int) -> float:
    """The simulator's gravity in px/frame^2 in a size x size frame (config.gravity px/s^2 at config.fps)."""
    return config.gravity / config.fps**2 * size / config.size


def differences(positions: Tensor, coefficients: Sequence[float]) -> Tensor:
    """Finite differences sum_j c_j p_{t+j} along time: [B, K, T, 2] -> [B, K, T - len(c) + 1, 2]."""
    span = positions.shape[2] - len(coefficients) + 1
    return sum(c * positions[:, :, j: j + span] for j, c in enumerate(coefficients))


def differences_adjoint(values: Tensor, coefficients: Sequence[float]) -> Tensor:
    """The transpose of `differences`: [B, K, S, 2] -> [B, K, S + len(c) - 1, 2]."""
    extra = len(coefficients) - 1
    return sum(c * F.pad(values, (0, 0, j, extra - j)) for j, c in enumerate(coefficients))


def _huber(values: Tensor) -> Tensor:
    return F.huber_loss(values, torch.zeros_like(values), reduction="none", delta=HUBER_DELTA).sum(-1)


def _gravity_residual(positions: Tensor, gravity: float) -> Tensor:
    return differences(positions, SECOND) - positions.new_tensor([0.0, gravity])


def gravity_energy(positions: Tensor, weights: Tensor, gravity: float) -> Tensor:
    """SCALE / T sum_t w_t huber(a_t - (0, g)): positions [B, K, T, 2], window weights [B, K, T - 2] -> [B]."""
    return SCALE / positions.shape[2] * (weights * _huber(_gravity_residual(positions, gravity))).sum((1, 2))


def gravity_energy_gradient(positions: Tensor, weights: Tensor, gravity: float) -> Tensor:
    """d gravity_energy / dp [B, K, T, 2] = SCALE / T D2^T (w clamp(r, -delta, delta))."""
    residual = _gravity_residual(positions, gravity).clamp(-HUBER_DELTA, HUBER_DELTA)
    return SCALE / positions.shape[2] * differences_adjoint(weights[..., None] * residual, SECOND)


def smoothness_energy(positions: Tensor, weights: Tensor) -> Tensor:
    """SCALE / T sum_t w_t huber(j_t), j the third differences: positions [B, K, T, 2], weights [B, K, T - 3]."""
    return SCALE / positions.shape[2] * (weights * _huber(differences(positions, THIRD))).sum((1, 2))


def smoothness_energy_gradient(positions: Tensor, weights: Tensor) -> Tensor:
    """d smoothness_energy / dp [B, K, T, 2] = SCALE / T D3^T (w clamp(j, -delta, delta))."""
    jerk = differences(positions, THIRD).clamp(-HUBER_DELTA, HUBER_DELTA)
    return SCALE / positions.shape[2] * differences_adjoint(weights[..., None] * jerk, THIRD)


def contact_windows(positions: Tensor, radii: Tensor, size: int, gravity: float) -> Tensor:
    """[B, K, T - 2] bool: frames t-1..t+1 hold a contact, where the acceleration beyond gravity points away (within
    60 degrees, and by more than CONTACT_MIN) from a wall or another object within the object's step plus one pixel at
    frame t."""
    excess = _gravity_residual(positions, gravity)  # [B, K, T - 2, 2]
    centre = positions[:, :, 1:-1]
    steps = (positions[:, :, 1:] - positions[:, :, :-1]).norm(dim=-1)
    reach = torch.maximum(steps[:, :, :-1], steps[:, :, 1:]) + 1.0
    normals = positions.new_tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # away from each wall
    gaps = torch.cat([centre, size - centre], dim=-1) - radii[:, :, None, None]  # [B, K, T - 2, 4]
    along = excess @ normals.T  # [B, K, T - 2, 4]
    length = excess.norm(dim=-1, keepdim=True)
    contact = ((gaps <= reach[..., None]) & (along > 0.5 * length)).any(-1) & (length[..., 0] > CONTACT_MIN)
    touching = touching_distance(radii)
    first, second, unit, _ = pair_offsets(centre, touching)
    near = (centre[:, first] - centre[:, second]).norm(dim=-1) - touching \
        <= torch.maximum(reach[:, first], reach[:, second])
    near = near & (torch.minimum(length[:, first], length[:, second])[..., 0] > CONTACT_MIN)
    pushed_first = near & ((excess[:, first] * unit).sum(-1) > 0.5 * length[:, first, :, 0])
    pushed_second = near & ((excess[:, second] * -unit).sum(-1) > 0.5 * length[:, second, :, 0])
    contact = contact.long().index_add(1, first, pushed_first.long()).index_add(1, second, pushed_second.long())
    return contact > 0


def window_weights(mass: Tensor, contact: Tensor) -> tuple[Tensor, Tensor]:
    """Weights of the free-flight windows of 3 frames (gravity) and 4 frames (smoothness) from the mass [B, K, T] and
    `contact_windows`: the window's smallest mass, 0 where it holds a contact."""
    free = (~contact).to(mass.dtype)
    three = mass.unfold(2, 3, 1).amin(-1) * free
    four = mass.unfold(2, 4, 1).amin(-1) * free[:, :, :-1] * free[:, :, 1:]
    return three, four


def physics_energy(colours: Sequence[str | None], simulator: BouncingBallsConfig,
                   weights: dict[str, float] | None = None,
                   temperature: float = TEMPERATURE) -> Callable[[Tensor], Tensor]:
    """Energy `E(video) -> [B]` of videos [B, 3, T, H, W] whose objects (by colour, kinema.control.readout) break
    constant gravity (the simulator's, at the video's size: `simulator_gravity`), smooth acceleration or
    interpenetrate; `weights` scale the TERMS (default 1 each)."""
    scale = {name: 1.0 for name in TERMS} | (weights or {})

    def energy(video: Tensor) -> Tensor:
        gravity = simulator_gravity(simulator, video.shape[-1])
        positions, mass = object_positions(video, colours, temperature)
        mass = mass.detach()
        radii = (mass.amax(2) / math.pi).sqrt()
        in_window = window_weights(mass, contact_windows(positions.detach(), radii, video.shape[-1], gravity))
        first, second = pair_indices(len(colours), video.device)
        pair, touching = torch.minimum(mass[:, first], mass[:, second]), touching_distance(radii)

        def value(p: Tensor) -> Tensor:
            return (scale["gravity"] * gravity_energy(p, in_window[0], gravity)
                    + scale["smoothness"] * smoothness_energy(p, in_window[1])
                    + scale["interpenetration"] * spacing_energy(p, pair, touching))

        def gradient(p: Tensor) -> tuple[Tensor]:
            return (scale["gravity"] * gravity_energy_gradient(p, in_window[0], gravity)
                    + scale["smoothness"] * smoothness_energy_gradient(p, in_window[1])
                    + scale["interpenetration"] * spacing_energy_gradient(p, pair, touching),)

        return closed_form_energy(value, gradient, positions)

    return energy


def fit_physical_paths(paths: np.ndarray, radii: np.ndarray, simulator: BouncingBallsConfig) -> np.ndarray:
    """The simulator's paths [T, N, 2] of N balls of `radii` [N] (bounces and collisions included) from the initial
    positions and velocities that fit `paths` [T, N, 2] px best in robust least squares (Cauchy loss, so a few stray
    frames do not bend the fit); simulator.num_frames is T and its size the frame's."""
    count = len(radii)
    low, high = np.repeat(radii, 2), np.repeat(simulator.size - radii, 2)
    start = np.clip(paths[0].ravel(), low, high)
    velocity = (paths[1] - paths[0]) * simulator.fps - np.array([0.0, 0.5 * simulator.gravity / simulator.fps])

    def simulate(state: np.ndarray) -> np.ndarray:
        centres = state[: 2 * count].reshape(count, 2).copy()
        for i, j in zip(*np.triu_indices(count, 1)):  # start overlapping discs touching, not overlapping
            offset = centres[j] - centres[i]
            gap = np.linalg.norm(offset) - radii[i] - radii[j]
            if gap < 0:
                shift = (gap - 1e-3) / 2 * offset / max(np.linalg.norm(offset), 1e-9)
                centres[i], centres[j] = centres[i] + shift, centres[j] - shift
        centres = np.clip(centres, radii[:, None], simulator.size - radii[:, None])
        return simulate_trajectories(centres, state[2 * count:].reshape(count, 2), radii, simulator)[0]

    fit = least_squares(lambda s: (simulate(s) - paths).ravel(), np.concatenate([start, velocity.ravel()]),
                        bounds=(np.concatenate([low, np.full(2 * count, -np.inf)]),
                                np.concatenate([high, np.full(2 * count, np.inf)])),
                        loss="cauchy", f_scale=0.25)
    return simulate(fit.x)


def scaled_simulator(simulator: BouncingBallsConfig, frames: int, width: int) -> BouncingBallsConfig:
    """The simulator at a video's frame count and width (gravity, radii and speeds in px scaled with the width)."""
    scale = width / simulator.size
    return dataclasses.replace(simulator, num_frames=frames, size=width, gravity=simulator.gravity * scale,
                               radius_range=tuple(r * scale for r in simulator.radius_range),
                               speed_range=tuple(v * scale for v in simulator.speed_range))


def move_objects(video: Tensor, colours: Sequence[str | None], targets: Tensor, strength: float = 1.0,
                 temperature: float = TEMPERATURE) -> Tensor:
    """Videos [B, 3, T, H, W] with each object (by colour) moved `strength` of the way from its read-out position to
    `targets` [B, K, T, 2] px (NaN: left where it is), by warping its read-out pixels (its weight times its colour)
    frame by frame (bilinear; black comes in from beyond the frame)."""
    batch, _, frames, height, width = video.shape
    positions, _ = object_positions(video, colours, temperature)
    weights = palette_weights(video, temperature)
    names, palette = list(BALL_COLORS), video.new_tensor(list(BALL_COLORS.values()))
    rgb = (video.clamp(-1, 1) + 1) / 2
    shifts = torch.nan_to_num(strength * (targets.to(positions) - positions))  # [B, K, T, 2]
    for k, colour in enumerate(colours):
        if not shifts[:, k].any():
            continue
        index = [names.index(colour)] if colour is not None else list(range(len(names)))
        layer = torch.einsum("bpthw,pc->btchw", weights[:, index], palette[index])  # the object's pixels
        for b in range(batch):
            flow = -shifts[b, k, :, :, None, None].expand(frames, 2, height + 2, width + 2)  # out(x) = layer(x - shift)
            moved = warp(F.pad(layer[b], (1, 1, 1, 1)), flow)[..., 1:-1, 1:-1]  # a black rim comes in from beyond
            rgb[b] += (moved - layer[b]).transpose(0, 1)
    return rgb.clamp(0, 1) * 2 - 1


def project_to_physics(video: Tensor, colours: Sequence[str | None], simulator: BouncingBallsConfig,
                       strength: float = 1.0, temperature: float = TEMPERATURE) -> Tensor:
    """Videos [B, 3, T, H, W] with each object (by colour) that is present in every frame moved `strength` of the way
    from its read-out path to the simulator's fit (`fit_physical_paths`), by warping its read-out pixels per frame."""
    batch, _, frames, _, width = video.shape
    simulator = scaled_simulator(simulator, frames, width)
    positions, mass = object_positions(video, colours, temperature)
    radii = (mass.amax(2) / math.pi).sqrt()
    targets = torch.full_like(positions, math.nan)
    for b in range(batch):
        present = [k for k in range(len(colours))
                   if 1.0 <= radii[b, k] < width / 2 - 1 and (mass[b, k] >= 0.5 * mass[b, k].max()).all()]
        if not present:
            continue
        paths = positions[b, present].transpose(0, 1).double().cpu().numpy()
        try:
            fitted = fit_physical_paths(paths, radii[b, present].double().cpu().numpy(), simulator)
        except KinemaError:  # discs that cannot start apart in the box (pressed together in a corner): no fit
            continue
        targets[b, present] = torch.from_numpy(fitted).to(targets).transpose(0, 1)
    return move_objects(video, colours, targets, strength, temperature)
