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

A video made from text alone has no given frames; `consistency_faults` holds its frames to the video itself: the
balls most of its frames show, and each colour's median mass over the frames; and, when its prompt names ball
colours, to the prompt too: a frame whose balls are not exactly those colours is faulty (a verifier of the prompt,
as a video that swaps or blends two balls' colours over time may agree with itself in most frames); and when it
asks a ball to go some way ("a red ball bounces to the left"), a video whose ball of that colour does not go that
way at the captions' least speed (DIRECTION_MIN_SPEED, as the training data's captions say it) has one more fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np
import torch
from torch import Tensor

from kinema.control.identity_energy import colour_masses
from kinema.data.physics_balls import BALL_COLORS
from kinema.metrics.balls import ball_scene_problem, detect_balls_in_clip

MASS_TOLERANCE = 0.5  # the share of its given mass a colour may gain or lose in a made frame


def _colour_counts(labels: list[int]) -> tuple[int, ...]:
    """The detected balls of one frame as a sorted tuple of palette indices (count and colours in one)."""
    return tuple(sorted(labels))


def _faulty_frames(detections: list, mass: Tensor, reference: tuple[int, ...], expected: Tensor, frames: list[int],
                   disc_area: float, colours: frozenset[int] | None = None) -> int:
    """How many of `frames` show other balls than `reference`, a colour mass ([P, T]) off its `expected` [P, 1], or
    (when given) other palette colours than `colours`."""
    off = ((mass - expected).abs() > (MASS_TOLERANCE * expected).clamp(min=disc_area / 2)).any(0)  # [T]
    labels = {t: detections[t].labels.tolist() for t in frames}
    return sum(1 for t in frames if off[t] or _colour_counts(labels[t]) != reference
               or (colours is not None and set(labels[t]) != colours))


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
        expected = masses[b][:, given].mean(1, keepdim=True)
        faults[b] = _faulty_frames(detections, masses[b], reference, expected, (~given).nonzero()[:, 0].tolist(),
                                   disc_area)
    return faults


def against_asked_ways(detections: list, directions: dict[str, tuple[float, float]], least_step: float) -> int:
    """How many of the colours `directions` asks a way of ({colour: (x right, y down)}) have a ball, alone of its
    colour in at least two frames, whose mean step (first to last of those frames, px per frame) along its asked
    way is below `least_step`."""
    palette = list(BALL_COLORS)
    wrong = 0
    for colour, way in directions.items():
        label = palette.index(colour)
        seen = [(t, frame.centres[frame.labels == label][0]) for t, frame in enumerate(detections)
                if (frame.labels == label).sum() == 1]
        if len(seen) >= 2:
            (first, start), (last, end) = seen[0], seen[-1]
            wrong += int(float(np.dot(end - start, way)) / (last - first) < least_step)
    return wrong


def consistency_faults(video: Tensor, disc_area: float, named: Sequence[Collection[str]] | None = None,
                       directions: Sequence[dict[str, tuple[float, float]]] | None = None,
                       least_step: float = 0.0, scene_required: bool = False) -> Tensor:
    """Frames per video [B] (long) of videos [B, 3, T, H, W] in [-1, 1] made with no frame given that break object
    permanence: whose balls differ from those most of the video's frames show, or whose colour masses are off their
    median over the frames (as `identity_faults` measures), or whose ball colours are not the BALL_COLORS names
    `named[b]` of the video's prompt (none named: not checked); plus one for each colour of `directions[b]` whose
    ball does not go its asked way at `least_step` px per frame (`against_asked_ways`). A video that is no scene of
    balls over black has 0 (nothing to check), or, when `scene_required` (a model of the balls data, which only
    ever saw such scenes), every frame: it broke up."""
    video = video.detach().float().cpu()
    masses = colour_masses(video)  # [B, P, T]
    faults = torch.zeros(video.shape[0], dtype=torch.long)
    palette = list(BALL_COLORS)
    for b in range(video.shape[0]):
        colours = frozenset(palette.index(name) for name in named[b]) if named is not None and named[b] else None
        detections = detect_balls_in_clip(video[b])
        if ball_scene_problem(video[b], detections):
            faults[b] = video.shape[2] if scene_required else 0
            continue
        shown = Counter(_colour_counts(frame.labels.tolist()) for frame in detections)
        reference = shown.most_common(1)[0][0]
        expected = masses[b].median(1, keepdim=True).values
        faults[b] = _faulty_frames(detections, masses[b], reference, expected, list(range(video.shape[2])), disc_area,
                                   colours)
        if directions is not None and directions[b]:
            faults[b] += against_asked_ways(detections, directions[b], least_step)
    return faults
