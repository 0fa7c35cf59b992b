"""Trajectory energy: how far each object's read-out position is from where it was asked to be, and how far its shape
is from the asked disc's (chapter 11.3.3).

For positions p [B, K, T, 2] and spreads s [B, K, T] read out of a clean-video estimate (kinema.control.readout),
asked positions q, asked radii r [B, K] (a disc's spread is s0 = r^2 / 2 + 1/6 px^2) and weights m [B, K, T] (the
read-out mass, held constant),

    E = SCALE / T * sum_{k, t} m_kt (|p_kt - q_kt|^2 + SHAPE (s_kt - s0_k)^2 / s0_k),
    dE/dp_kt = 2 SCALE / T * m_kt (p_kt - q_kt),    dE/ds_kt = 2 SCALE SHAPE / T * m_kt (s_kt - s0_k) / s0_k.

The position term moves the object's centre of mass; on its own it does so as readily by painting a second copy at
the target or smearing the object toward it as by moving it, which the shape term penalises (two copies or a smear
spread wider than one disc). It is light (SHAPE 0.1): early in sampling every estimate is blurred wide, and a heavy
shape term then erases objects instead of moving them. The mass is held constant (no gradient), so guidance moves an
object rather than erasing it to lower the energy. Weighting by the mass (in pixels) makes one gradient step move the
centroid by a roughly size-free share of its error (dp/dvideo scales as 1 / mass), so a guidance weight near 1 is a
moderate push at any frame size, as with direction guidance (kinema.control.direction). Frames where q is NaN (no
position asked) carry no energy.

With several objects, a spacing term keeps each pair i < j at least as far apart as their targets are (chapter 11.3.3,
many objects with collision avoidance): SPACING * SCALE / T * sum_{i<j, t} min(m_it, m_jt) relu(|q_i - q_j| -
|p_i - p_j|)^2. Each object lands about a pixel off its path, and when two paths pass close those errors, pointing
toward each other, would make them touch; this term pushes only on pairs that come closer than asked. It is the
physics energy's no-interpenetration term with the asked distance in place of r_i + r_j (`spacing_energy`).

Energies on read-out quantities are evaluated through `closed_form_energy`, an autograd function whose backward pass
is the closed-form gradient (tested against autograd).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.control.readout import TEMPERATURE, object_moments
from kinema.errors import KinemaError

SCALE = 0.05  # share of the remaining distance one unit-weight gradient step asks for, roughly
SHAPE = 0.1  # weight of the shape term against the position term
SPACING = 1.0  # weight of the spacing term (objects no closer than their targets) against the position term

EnergyFn = Callable[..., Tensor]  # read-out tensors -> energy [B]
GradientFn = Callable[..., tuple[Tensor, ...]]  # read-out tensors -> their gradients


class _ClosedForm(torch.autograd.Function):
    """E(inputs) forward, dE/dinputs from their closed form backward."""

    @staticmethod
    def forward(ctx, energy: EnergyFn, gradient: GradientFn, *inputs: Tensor) -> Tensor:
        ctx.save_for_backward(*inputs)
        ctx.gradient = gradient
        return energy(*inputs)

    @staticmethod
    def backward(ctx, upstream: Tensor):
        gradients = ctx.gradient(*ctx.saved_tensors)
        return None, None, *(upstream.reshape(-1, *[1] * (g.ndim - 1)) * g for g in gradients)


def closed_form_energy(energy: EnergyFn, gradient: GradientFn, *inputs: Tensor) -> Tensor:
    """`energy(*inputs)` [B], differentiated by the closed-form `gradient(*inputs)` (one tensor per input)."""
    return _ClosedForm.apply(energy, gradient, *inputs)


def pair_indices(count: int, device=None) -> tuple[Tensor, Tensor]:
    """The object pairs i < j of `count` objects: (first, second) indices [P]."""
    return tuple(torch.triu_indices(count, count, offset=1, device=device))


def pair_offsets(positions: Tensor, least: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Indices i < j, the unit offsets (c_i - c_j) / |c_i - c_j| [B, P, T, 2] and how far each pair is closer than
    `least` [B, P, T] (or [B, P, 1]) px: relu(least - |c_i - c_j|) [B, P, T]."""
    first, second = pair_indices(positions.shape[1], positions.device)
    offset = positions[:, first] - positions[:, second]
    distance = offset.square().sum(-1).add(1e-9).sqrt()
    return first, second, offset / distance[..., None], F.relu(least - distance)


def spacing_energy(positions: Tensor, weights: Tensor, least: Tensor) -> Tensor:
    """SCALE / T sum_{i<j, t} w_ijt relu(least_ijt - |c_i - c_j|)^2: positions [B, K, T, 2], weights and the least
    distances [B, P, T] (or [B, P, 1]) over the pairs i < j."""
    _, _, _, closer = pair_offsets(positions, least)
    return SCALE / positions.shape[2] * (weights * closer.square()).sum((1, 2))


def spacing_energy_gradient(positions: Tensor, weights: Tensor, least: Tensor) -> Tensor:
    """d spacing_energy / dp [B, K, T, 2]: -2 SCALE / T w o u on c_i and +2 SCALE / T w o u on c_j, o how much closer
    than `least` and u the unit vector from c_j to c_i."""
    first, second, unit, closer = pair_offsets(positions, least)
    push = (-2 * SCALE / positions.shape[2] * weights * closer)[..., None] * unit
    gradient = torch.zeros_like(positions)
    return gradient.index_add(1, first, push).index_add(1, second, -push)


def touching_distance(radii: Tensor) -> Tensor:
    """r_i + r_j [B, P, 1] of radii [B, K]: the least distance of two discs that do not interpenetrate."""
    first, second = pair_indices(radii.shape[1], radii.device)
    return (radii[:, first] + radii[:, second])[..., None]


def _asked(targets: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Targets with NaN replaced by 0 and the weights zeroed there."""
    asked = torch.isfinite(targets).all(-1)
    return torch.nan_to_num(targets), weights * asked


def disc_spread(radii: Tensor) -> Tensor:
    """The read-out spread r^2 / 2 + 1/6 px^2 of a rendered disc of radius r (its pixels' own extent included)."""
    return radii.square() / 2 + 1 / 6


def trajectory_distance(positions: Tensor, spread: Tensor, targets: Tensor, radii: Tensor, weights: Tensor,
                        shape: float = SHAPE) -> Tensor:
    """E [B] = SCALE / T sum m (|p - q|^2 + shape (s - s0)^2 / s0): positions, targets [B, K, T, 2] px, spread and
    weights [B, K, T], radii [B, K]."""
    targets, weights = _asked(targets, weights)
    ideal = disc_spread(radii)[..., None]
    terms = (positions - targets).square().sum(-1) + shape * (spread - ideal).square() / ideal
    return SCALE / positions.shape[2] * (weights * terms).sum((1, 2))


def trajectory_distance_gradient(positions: Tensor, spread: Tensor, targets: Tensor, radii: Tensor,
                                 weights: Tensor, shape: float = SHAPE) -> tuple[Tensor, Tensor]:
    """(dE/dp [B, K, T, 2], dE/ds [B, K, T]) of `trajectory_distance`."""
    targets, weights = _asked(targets, weights)
    ideal = disc_spread(radii)[..., None]
    factor = 2 * SCALE / positions.shape[2] * weights
    return factor[..., None] * (positions - targets), shape * factor * (spread - ideal) / ideal


def trajectory_energy(targets: Tensor, radii: Tensor, colours: Sequence[str | None], shape: float = SHAPE,
                      spacing: float = SPACING, temperature: float = TEMPERATURE) -> Callable[[Tensor], Tensor]:
    """Energy `E(video) -> [B]` of videos [B, 3, T, H, W] whose objects (by colour, kinema.control.readout) stray from
    `targets` [B, K, T, 2] px (NaN: no position asked at that frame) or from discs of `radii` [B, K] px (weighted by
    `shape`), plus, weighted by `spacing`, how much closer two objects come than their targets are (`spacing_energy`
    with the asked distances as the least ones, each pair weighted by its smaller mass)."""
    if targets.ndim != 4 or targets.shape[1] != len(colours) or targets.shape[-1] != 2:
        raise KinemaError(f"trajectory targets must be [B, K={len(colours)}, T, 2] px, got {list(targets.shape)}")
    if radii.shape != targets.shape[:2]:
        raise KinemaError(f"trajectory radii must be [B, K] = {list(targets.shape[:2])}, got {list(radii.shape)}")

    def energy(video: Tensor) -> Tensor:
        if video.shape[2] != targets.shape[2]:
            raise KinemaError(f"the trajectory has {targets.shape[2]} frames but the video {video.shape[2]}")
        positions, spread, mass = object_moments(video, colours, temperature)
        asked, sizes, weights = targets.to(video), radii.to(video), mass.detach()
        first, second = pair_indices(len(colours), video.device)
        apart = (asked[:, first] - asked[:, second]).norm(dim=-1)  # [B, P, T], NaN where a position is not asked
        pair = spacing * torch.minimum(weights[:, first], weights[:, second]) * apart.isfinite()
        apart = apart.nan_to_num(0.0)

        def value(p: Tensor, s: Tensor) -> Tensor:
            return trajectory_distance(p, s, asked, sizes, weights, shape) + spacing_energy(p, pair, apart)

        def gradient(p: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
            position, spread = trajectory_distance_gradient(p, s, asked, sizes, weights, shape)
            return position + spacing_energy_gradient(p, pair, apart), spread

        return closed_form_energy(value, gradient, positions, spread)

    return energy
