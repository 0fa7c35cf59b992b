"""Identity and physics scores of ball videos from their tracks (chapter 11.1.4 motion quality, 11.5 physics).

Identity (does the clip keep its objects?), per clip:
- `count_constancy`: fraction of frames showing the clip's most common ball count (1: constant);
- `color_constancy`: fraction of frames showing the most common set of colours (1: constant);
- `color_persistence`: fraction of frame-to-frame track links that keep their colour class;
- `color_drift`: largest RGB distance (in [0, 1] units) of a track's colour from its first frame's,
  averaged over tracks;
- `identity_persistence`: balls followed through every frame in one colour, over the most balls seen in a frame.

Physics (is the motion that of balls under constant gravity that bounce?), per clip, in pixels and frames:
each three frames t-1, t, t+1 of a track give the acceleration a = p(t+1) - 2 p(t) + p(t-1).
Gravity g (px/frame^2, down) is the given value, else the median vertical acceleration away from
walls and other balls. A triple is plausible when a - (0, g) is within `tolerance`, or when it is a
contact: the excess lies (within `tolerance` plus `slack` of its size, allowing friction) in the cone
of push directions of the walls and balls within reach (a ball's radius plus its step plus one pixel; for
another ball, plus that ball's step too, since two balls can meet between frames and part before the next one).
- `physics_plausibility`: plausible triples over all triples plus track breaks (balls that appear
  or vanish mid-clip; simulated balls never leave the box);
- `gravity`: the g used; `gravity_residual`: RMS of |a - (0, g)| over free-flight triples (a
  constant-gravity fit with the bounces cut out);
- `roughness`: mean |a| over all triples (px/frame^2; smooth motion is small);
- with a target trajectory, `target_error`: mean distance (px) from each target ball to the track
  matched to it (Hungarian on mean distance), and `target_coverage`: the share of target ball-frames
  that a matched track covers.
Scores that have nothing to measure (no balls, no triples) are NaN, never a made-up number. So are
all scores of a clip they do not apply to, with the reason in `BallScores.not_applicable`: a clip
that is not balls over a dark flat background (`ball_scene_problem`) or in which no ball moves
(every tracked step under STILL px: a frozen clip would keep its count and colours perfectly and
obey any physics trivially).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment, nnls
from torch import Tensor

from kinema.data.physics_balls import BALL_COLORS
from kinema.errors import KinemaError
from kinema.metrics.balls import BallTracks, ball_scene_problem, detect_balls_in_clip, link_detections

IDENTITY_SCORES = ("ball_count", "count_constancy", "color_constancy", "color_persistence", "color_drift",
                   "identity_persistence")
PHYSICS_SCORES = ("physics_plausibility", "gravity", "gravity_residual", "roughness")
TARGET_SCORES = ("target_error", "target_coverage")
STILL = 0.25  # px per frame: a clip whose tracked balls all move less than this shows no motion


@dataclass
class BallScores:
    """Ball scores of B clips {name: [B] float64, NaN = nothing to measure} and why each clip is out of scope."""

    scores: dict[str, Tensor]
    not_applicable: list[str]  # per clip: why the scores do not apply to it, "" where they do


def _mode_fraction(items: list) -> float:
    """Share of `items` equal to the most common item."""
    _, counts = np.unique([repr(item) for item in items], return_counts=True)
    return float(counts.max() / len(items))


def identity_scores(tracks: BallTracks) -> dict[str, float]:
    """Count and colour persistence of one clip's tracks (see the module docstring)."""
    present, labels = tracks.present, tracks.labels
    frames = labels.shape[1]
    counts = tracks.counts
    colour_sets = [tuple(sorted(labels[present[:, t], t].tolist())) for t in range(frames)]
    links = present[:, 1:] & present[:, :-1]
    kept = (labels[:, 1:] == labels[:, :-1]) & links
    whole = present.all(axis=1) & (labels == labels[:, :1]).all(axis=1)
    first = np.argmax(present, axis=1)
    drift = [np.nanmax(np.linalg.norm(tracks.colors[k] - tracks.colors[k, first[k]], axis=-1))
             for k in range(len(labels))]
    return {
        "ball_count": float(np.median(counts)),
        "count_constancy": _mode_fraction(counts.tolist()),
        "color_constancy": _mode_fraction(colour_sets),
        "color_persistence": float(kept.sum() / links.sum()) if links.any() else math.nan,
        "color_drift": float(np.mean(drift)) if drift else math.nan,
        "identity_persistence": float(whole.sum() / counts.max()) if counts.max() > 0 else math.nan,
    }


def _push_directions(tracks: BallTracks, k: int, t: int, reach: float, steps: np.ndarray) -> list[np.ndarray]:
    """Unit directions in which the walls and balls within `reach` of ball k at frame t can push it (another ball
    j: within `reach` plus its own step `steps` [K, T] px at t)."""
    height, width = tracks.size
    (x, y), r = tracks.centres[k, t], tracks.radii[k, t]
    walls = [(x - r, (1.0, 0.0)), (width - x - r, (-1.0, 0.0)), (y - r, (0.0, 1.0)), (height - y - r, (0.0, -1.0))]
    directions = [np.array(normal) for gap, normal in walls if gap <= reach]
    for j in np.flatnonzero(tracks.present[:, t]):
        offset = tracks.centres[k, t] - tracks.centres[j, t]
        distance = float(np.linalg.norm(offset))
        if j != k and distance > 1e-9 and distance - r - tracks.radii[j, t] <= reach + steps[j, t]:
            directions.append(offset / distance)
    return directions


def physics_scores(tracks: BallTracks, gravity: float | None = None, tolerance: float = 0.5,
                   slack: float = 0.3) -> dict[str, float]:
    """Constant-gravity-with-contacts plausibility, gravity fit and roughness of one clip (module docstring)."""
    triples = []  # (k, t, acceleration [2], step before, step after)
    for k in range(len(tracks.labels)):
        p = tracks.centres[k]
        for t in range(1, p.shape[0] - 1):
            if np.isfinite(p[t - 1: t + 2]).all():
                triples.append((k, t, p[t + 1] - 2 * p[t] + p[t - 1], p[t] - p[t - 1], p[t + 1] - p[t]))
    present = tracks.present
    breaks = int((present[:, 1:] & ~present[:, :-1]).sum() + (present[:, :-1] & ~present[:, 1:]).sum())
    step = np.nan_to_num(np.linalg.norm(np.diff(tracks.centres, axis=1), axis=-1))  # [K, T-1] px
    steps = np.maximum(np.pad(step, ((0, 0), (1, 0))), np.pad(step, ((0, 0), (0, 1))))  # larger of before / after
    contacts = []
    for k, t, _, before, after in triples:
        reach = max(np.linalg.norm(before), np.linalg.norm(after)) + 1.0
        contacts.append(_push_directions(tracks, k, t, reach, steps))
    free_y = [a[1] for (_, _, a, _, _), directions in zip(triples, contacts) if not directions]
    if gravity is None:
        gravity = float(np.median(free_y)) if free_y else (float(np.median([a[1] for _, _, a, _, _ in triples]))
                                                           if triples else math.nan)
    plausible, free_residuals = 0, []
    for (_, _, a, _, _), directions in zip(triples, contacts):
        excess = a - np.array([0.0, gravity])
        size = float(np.linalg.norm(excess))
        if not directions:
            free_residuals.append(size)
        if size <= tolerance:
            plausible += 1
        elif directions:
            _, outside = nnls(np.stack(directions, axis=1), excess)  # distance from the cone of pushes
            plausible += int(outside <= tolerance + slack * size)
    judged = len(triples) + breaks
    return {
        "physics_plausibility": plausible / judged if judged else math.nan,
        "gravity": gravity,
        "gravity_residual": float(np.sqrt(np.mean(np.square(free_residuals)))) if free_residuals else math.nan,
        "roughness": float(np.mean([np.linalg.norm(a) for _, _, a, _, _ in triples])) if triples else math.nan,
    }


def target_scores(tracks: BallTracks, target: np.ndarray) -> dict[str, float]:
    """Mean pixel error and coverage of tracks against target centres [T, N, 2] (NaN rows: no such ball)."""
    target = np.asarray(target, dtype=np.float64)
    frames = tracks.centres.shape[1]
    if target.ndim != 3 or target.shape[0] != frames or target.shape[2] != 2:
        raise KinemaError(f"target trajectory must be [T={frames}, N, 2] centres in px, got shape {target.shape}")
    target = target[:, np.isfinite(target).all(axis=(0, 2))]
    if target.shape[1] == 0:
        return {"target_error": math.nan, "target_coverage": math.nan}
    distance = np.linalg.norm(tracks.centres[:, None] - target.transpose(1, 0, 2)[None], axis=-1)  # [K, N, T]
    shared = np.isfinite(distance)
    mean = np.where(shared.any(-1), np.nansum(distance, axis=-1) / np.maximum(shared.sum(-1), 1), np.inf)  # [K, N]
    if not np.isfinite(mean).any():
        return {"target_error": math.nan, "target_coverage": 0.0}
    rows, cols = linear_sum_assignment(np.where(np.isfinite(mean), mean, 1e9))
    matched = np.isfinite(mean[rows, cols])
    rows, cols = rows[matched], cols[matched]
    hits = distance[rows, cols][shared[rows, cols]]
    return {"target_error": float(hits.mean()), "target_coverage": float(hits.size / target[:, :, 0].size)}


def _motion_problem(tracks: BallTracks) -> str:
    """The reason 'no ball moves' when every frame-to-frame step of every track is under STILL px, else ""."""
    steps = np.linalg.norm(np.diff(tracks.centres, axis=1), axis=-1)
    steps = steps[np.isfinite(steps)]
    return "no ball moves" if steps.size and steps.max() < STILL else ""


def ball_scores(videos: Tensor, target_positions: Tensor | np.ndarray | None = None,
                target_counts: Tensor | np.ndarray | None = None, gravity: float | None = None,
                palette: dict[str, tuple[float, float, float]] = BALL_COLORS, tolerance: float = 0.5,
                threshold: float = 0.35, min_area: int = 4, **linking) -> BallScores:
    """Identity and physics scores of ball videos [B, 3, T, H, W] in [-1, 1], NaN where they do not apply.

    `target_positions` [B, T, N, 2] px adds target_error / target_coverage; only the first
    `target_counts[b]` balls of clip b count (default: all, NaN balls skipped), as in the dataset's
    padded "positions" / "num_balls"; `gravity` in px/frame^2 fixes g instead of estimating it;
    `threshold` and `min_area` go to the detector, other keywords to `link_detections`
    (max_step, color_change_cost).
    """
    videos = torch.as_tensor(videos)
    if videos.ndim != 5 or videos.shape[1] != 3:
        raise KinemaError(f"ball_scores needs RGB videos [B, 3, T, H, W], got shape {tuple(videos.shape)}")
    if target_positions is not None and len(target_positions) != len(videos):
        raise KinemaError(f"target_positions has {len(target_positions)} clips but videos has {len(videos)}")
    rows, problems = [], []
    for b, video in enumerate(videos):
        detections = detect_balls_in_clip(video, palette, threshold, min_area)
        tracks = link_detections(detections, tuple(video.shape[-2:]), palette, **linking)
        row = {**identity_scores(tracks), **physics_scores(tracks, gravity, tolerance)}
        if target_positions is not None:
            target = np.asarray(torch.as_tensor(target_positions[b]).double().cpu())
            if target_counts is not None:
                target = target[:, : int(target_counts[b])]
            row.update(target_scores(tracks, target))
        problems.append(ball_scene_problem(video, detections, threshold) or _motion_problem(tracks))
        rows.append({name: math.nan for name in row} if problems[-1] else row)
    scores = {name: torch.tensor([row[name] for row in rows], dtype=torch.float64) for name in rows[0]} if rows else {}
    return BallScores(scores, problems)
