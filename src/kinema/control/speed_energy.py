"""Speed as a differentiable energy on a clean-video estimate, for guidance by the `speed` knob (chapter 11.3.5,
motion attributes).

Each object (by palette colour, kinema.control.readout; or the foreground of any colour) has a read-out centre
p_kt and mass m_kt per frame. Its mean speed is the presence-weighted mean step length

    v_k = sum_t w_kt |p_k,t+1 - p_kt| / sum_t w_kt,   w_kt = min(m_kt, m_k,t+1) / max_t m_kt,

in px per frame, which is what the knob asks (model.attributes speed: the objects' mean px per frame). The energy
pulls each present object's mean speed to the asked one,

    E = SCALE * (T - 1) * sum_k mbar_k (v_k - v*)^2 / A,

mbar_k its mean mass and A the smallest disc's area at the video's size, so that, as in the trajectory energy, a
unit weight asks each step for about SCALE of the remaining difference whatever the size. Objects that are absent
(under half the smallest disc in every frame) carry none. The direction of each step stays the model's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kinema.control.identity_energy import smallest_disc_area
from kinema.control.readout import TEMPERATURE, object_positions
from kinema.control.trajectory_energy import SCALE
from kinema.data.physics_balls import BouncingBallsConfig
from kinema.errors import KinemaError


def mean_speeds(positions: Tensor, mass: Tensor) -> Tensor:
    """Presence-weighted mean step length (module docstring) [B, K] px per frame of read-out centres [B, K, T, 2]
    with masses [B, K, T]."""
    steps = (positions.diff(dim=2).square().sum(-1) + 1e-6).sqrt()  # [B, K, T-1]
    weights = torch.minimum(mass[..., 1:], mass[..., :-1]) / mass.amax(-1, keepdim=True).clamp(min=1e-6)
    return (weights * steps).sum(-1) / weights.sum(-1).clamp(min=1e-6)


def speed_energy(speed: Tensor, colours: Sequence[str | None], simulator: BouncingBallsConfig,
                 temperature: float = TEMPERATURE) -> Callable[[Tensor], Tensor]:
    """Energy `E(video) -> [B]` of videos [B, 3, T, H, W] whose objects of `colours` move at other mean speeds than
    `speed` [B] px per frame (module docstring)."""
    if speed.ndim != 1 or (speed < 0).any():
        raise KinemaError(f"speed guidance needs one speed of at least 0 px per frame per video, got "
                          f"{speed.tolist()}")

    def energy(video: Tensor) -> Tensor:
        if video.shape[2] < 2:
            return video.sum((1, 2, 3, 4)) * 0
        positions, mass = object_positions(video, colours, temperature)
        area = smallest_disc_area(simulator, video.shape[-1])
        present = (mass.detach().amax(-1) >= area / 2).to(video.dtype)  # [B, K]
        gap = mean_speeds(positions, mass) - speed.to(video)[:, None]
        return SCALE * (video.shape[2] - 1) * (present * mass.mean(-1) * gap.square()).sum(-1) / area

    return energy
