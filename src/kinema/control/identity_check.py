"""Identity check: which made frames break the object permanence of the frames given whole (chapter 11.1.3, 11.3.6),
the test a sample must pass in rejection sampling (kinema.diffusion.rejection).

A video with frames given whole (animation, prediction, interpolation, a long video's overlap) shows in them which
balls exist. A made frame is faulty when, against the given frames,
- the balls it shows differ in count or colour (kinema.metrics.balls: blobs over black, split by palette colour), or
- some palette colour's read-out mass (kinema.control.identity_energy.colour_masses) is off by more than half the
  given frames' mean mass, or by half the simulator's smallest disc where that is more: a ball that shrinks or grows
  to half or twice its area, splits, fades or turns another colour.
Simulator clips never fail it (a ball keeps its size and colour; tested on held-out clips). Videos whose given frames
are no scene of balls over a dark background, or disagree among themselves, have nothing to check: no faults.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kinema.control.identity_energy import colour_masses
from kinema.metrics.balls import ball_scene_problem, detect_balls_in_clip

MASS_TOLERANCE = 0.5  # the share of its given mass a colour may gain or lose in a made frame


def _colour_counts(labels: list[int]) -> tuple[int, ...]:
    """The detected balls of one frame as a sorted tuple of palette indices (count and colours in one)."""
    return tuple(sorted(labels))


def identity_faults(video: Tensor, whole_frames: Tensor, disc_area: float) -> Tensor:
    """Faulty made frames (module docstring) per video [B] (long) of videos [B, 3, T, H, W] in [-1, 1] given whole
    where `whole_frames` [B, T] (bool) is True; `disc_area` is the simulator's smallest disc's in px^2."""
    video, whole_frames = video.detach().float().cpu(), whole_frames.cpu()
    masses = colour_masses(video)  # [B, P, T]
    faults = torch.zeros(video.shape[0], dtype=torch.long)
    for b, given in enumerate(whole_frames):
        if not given.any() or given.all():
            continue
        detections = detect_balls_in_clip(video[b])
        given_indices = given.nonzero()[:, 0].tolist()
        if ball_scene_problem(video[b][:, given], [detections[t] for t in given_indices]):
            continue
        balls = {_colour_counts(detections[t].labels.tolist()) for t in given_indices}
        if len(balls) != 1:  # the given frames disagree: nothing to hold the made ones to
            continue
        (reference,) = balls
        mass = masses[b]
        expected = mass[:, given].mean(1, keepdim=True)
        off = ((mass - expected).abs() > (MASS_TOLERANCE * expected).clamp(min=disc_area / 2)).any(0)  # [T]
        for t in (~given).nonzero()[:, 0].tolist():
            if off[t] or _colour_counts(detections[t].labels.tolist()) != reference:
                faults[b] += 1
    return faults
