"""Identity energy: objects persist, keeping their count and colour from frame to frame (chapter 11.3.6, 11.1.3: object
permanence), for guidance.

Each palette colour k (BALL_COLORS) has a read-out mass m_kt in every frame t (kinema.control.readout: about pi r^2
per disc of that colour, near 0 when none shows). The energy asks each mass to stay at a reference mass M_kt,

    E = SCALE / (T A) * sum_{k, t} (m_kt - M_kt)^2,

A the area of the simulator's smallest disc at the video's size. Dividing by A makes the gradient on a pixel of the
object a size-free share of its relative error (dm/dpixel is O(1), m - M scales as A), so one weight pushes alike
at 32x32 and at 64x64, as with the trajectory energy (kinema.control.trajectory_energy); on the shipped models 3-30
is a moderate push and 100 breaks balls up (benchmarks/frame_tasks.py --identity-guidance). The
reference is held constant (no gradient). It comes, in order, from
- frames given whole (known pixels: animation, prediction, a long video's previous window): their mean masses, for
  every colour (0 for the colours they do not show), so the objects given are kept and no other appears;
- else the colours the prompt names in that frame (kinema.control.binding.prompt_colours; a time-anchored prompt's
  phrase owning the frame, cross-faded as the phrases are): a named colour keeps its mean mass over the frames
  naming it, at least A (a named object that is missing is asked for), and a colour not named is asked to vanish;
- else (no colour named, or a model without text): each colour keeps its own mean mass over those frames, so
  objects keep their count and colour over time without being told which.
A ball that fades, vanishes, splits or turns another colour moves some m_kt away from M_kt and raises E.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kinema.control.binding import prompt_colours
from kinema.control.readout import TEMPERATURE, palette_weights
from kinema.control.trajectory_energy import SCALE
from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig
from kinema.errors import KinemaError


def colour_masses(video: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """Read-out mass of every BALL_COLORS colour per frame (kinema.control.readout): [B, 3, T, H, W] -> [B, P, T]."""
    return palette_weights(video, temperature).sum((-2, -1))


def smallest_disc_area(simulator: BouncingBallsConfig, size: int) -> float:
    """pi r^2 px^2 of the simulator's smallest ball in a size x size frame."""
    return math.pi * (simulator.radius_range[0] * size / simulator.size) ** 2


def named_colours(texts: Sequence[Sequence[str]], shares: Tensor) -> tuple[Tensor, Tensor]:
    """(the share of each frame whose phrase names each BALL_COLORS colour [B, P, T], the share whose phrase names
    none [B, T]) from phrases texts [K][B] owning frames by `shares` [B, K, T] (kinema.conditioning.anchored)."""
    names = list(BALL_COLORS)
    said = torch.zeros(shares.shape[0], shares.shape[1], len(names) + 1)  # the last column: no colour named
    for k, phrases in enumerate(texts):
        for b, phrase in enumerate(phrases):
            for colour in prompt_colours(phrase):
                said[b, k, len(names) if colour is None else names.index(colour)] = 1.0
    owned = torch.einsum("bkp,bkt->bpt", said, shares.to(said))
    return owned[:, :-1], owned[:, -1]


def known_masses(video: Tensor, whole_frames: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """Mean colour masses [B, P] of the frames given whole (`whole_frames` [B, T] bool) of videos [B, 3, T, H, W];
    NaN for a video with none."""
    mass = colour_masses(video, temperature)
    given = whole_frames.to(mass)[:, None]
    return (mass * given).sum(-1) / given.sum(-1)  # 0 / 0 = NaN where none is given


def reference_masses(mass: Tensor, named: Tensor, unnamed: Tensor, known: Tensor | None,
                     disc_area: float) -> Tensor:
    """The masses M [B, P, T] each colour should keep (module docstring) given the estimate's masses [B, P, T]
    (detached), `named_colours`' shares and the `known_masses` [B, P] (NaN rows: none given)."""
    named, unnamed = named.to(mass), unnamed.to(mass)[:, None]
    level = ((mass * named).sum(-1) / named.sum(-1).clamp(min=1e-6)).clamp(min=disc_area)
    own = (mass * unnamed).sum(-1) / unnamed.sum(-1).clamp(min=1e-6)
    reference = named * level[..., None] + unnamed * own[..., None]
    if known is None:
        return reference
    known = known.to(mass)[..., None]
    return torch.where(known.isfinite(), known, reference)


def identity_energy(named: Tensor, unnamed: Tensor, simulator: BouncingBallsConfig, known: Tensor | None = None,
                    temperature: float = TEMPERATURE) -> Callable[[Tensor], Tensor]:
    """Energy `E(video) -> [B]` of square videos [B, 3, T, H, W] whose colour masses stray from the reference masses
    (`reference_masses` from `named_colours`' shares [B, P, T] and [B, T], the area of the `simulator`'s smallest
    disc at the video's size and the `known_masses` [B, P])."""
    if named.ndim != 3 or named.shape[1] != len(BALL_COLORS) or tuple(unnamed.shape) != (named.shape[0],
                                                                                          named.shape[2]):
        raise KinemaError(f"identity energy: named colours must be [B, {len(BALL_COLORS)}, T] and unnamed [B, T], "
                          f"got {list(named.shape)} and {list(unnamed.shape)}")

    def energy(video: Tensor) -> Tensor:
        if video.shape[2] != named.shape[2]:
            raise KinemaError(f"identity energy: the colours are named over {named.shape[2]} frames but the video "
                              f"has {video.shape[2]}")
        mass, disc_area = colour_masses(video, temperature), smallest_disc_area(simulator, video.shape[-1])
        reference = reference_masses(mass.detach(), named, unnamed, known, disc_area)
        return SCALE / (video.shape[2] * disc_area) * (mass - reference).square().sum((1, 2))

    return energy
