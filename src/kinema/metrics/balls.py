"""Find and follow coloured balls over a black background in generated or simulated clips (chapter 11.1.4).

Detection, per frame: a pixel is foreground when its brightest channel passes `threshold`; its
colour class is the nearest palette colour after dividing by that brightest channel (so the dim,
anti-aliased rim of a red ball is still red). Each 8-connected foreground blob of at least
`min_area` pixels is a ball, or several when it holds balls of different colours side by side
(see `_colour_groups`; a blotchy generated ball stays one ball). A ball's centre is the
brightness-weighted centroid in the simulator's pixel units (pixel (i, j) covers [j, j+1] x
[i, i+1]), its radius sqrt(coverage / pi), its colour class the brightness-weighted majority and
its colour the mean RGB of its bright core. A ball is round when the second moments of its
coverage are a disc's: both axes' variances r^2 / 4 (within ROUND_AXIS_RATIO of each other and
ROUND_SPREAD of a disc of its coverage).

The scores apply to scenes of balls over a dark flat background only (`ball_scene_problem`): the
background (pixels under `threshold`) must cover at least half of every frame, with a median
brightness under DARK and a median absolute deviation under FLAT, and at least ROUND_SHARE of the
balls found must be round; otherwise (textured or photographic footage, digits, strokes) the
scores would count and follow blobs that are not balls.

Tracking, frame to frame: each track predicts its next centre at constant velocity and the
Hungarian algorithm assigns detections to tracks, with a penalty for changing colour and a gate of
`max_step` pixels; a detection left over starts a track, a track left over ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from kinema.data.physics_balls import BALL_COLORS
from kinema.errors import KinemaError

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_CORE = 0.8  # pixels at least this fraction of a region's peak brightness give its colour
_UNMATCHABLE = 1e9
ROUND_AXIS_RATIO = 0.5  # smaller / larger variance of a round blob's coverage
ROUND_SPREAD = (0.75, 1.35)  # variance sum over a disc's of the same coverage (r^2 / 2)
ROUND_SHARE = 0.6  # of the balls found, in a scene of balls
DARK, FLAT = 0.1, 0.03  # background median brightness and its median absolute deviation, in [0, 1]


@dataclass
class BallDetections:
    """The balls found in one frame: n centres (x, y) px, radii px, palette indices and mean RGB in [0, 1]."""

    centres: np.ndarray  # [n, 2]
    radii: np.ndarray  # [n]
    labels: np.ndarray  # [n] int, index into the palette
    colors: np.ndarray  # [n, 3]
    round: np.ndarray  # [n] bool, the blob's shape is a disc's


@dataclass
class BallTracks:
    """Balls followed through one clip: K tracks over T frames, NaN (label -1) where a track has no ball."""

    centres: np.ndarray  # [K, T, 2] px
    radii: np.ndarray  # [K, T] px
    labels: np.ndarray  # [K, T] int palette index, -1: absent
    colors: np.ndarray  # [K, T, 3] mean RGB in [0, 1]
    palette: tuple[str, ...]  # colour names the labels index
    size: tuple[int, int]  # frame (H, W)

    @property
    def present(self) -> np.ndarray:
        """[K, T] bool: the track has a ball in that frame."""
        return self.labels >= 0

    @property
    def counts(self) -> np.ndarray:
        """[T] number of balls detected in each frame."""
        return self.present.sum(axis=0)


def _palette_array(palette: dict[str, tuple[float, float, float]]) -> np.ndarray:
    """Palette RGB [P, 3] divided by each colour's brightest channel (its chromaticity)."""
    rgb = np.asarray(list(palette.values()), dtype=np.float64).reshape(-1, 3)
    if len(rgb) == 0 or (rgb.max(axis=1) <= 0).any():
        raise KinemaError(f"ball palette needs at least one non-black colour, got {palette}")
    return rgb / rgb.max(axis=1, keepdims=True)


def _clip_rgb(video: Tensor | np.ndarray) -> np.ndarray:
    """One clip [3, T, H, W] in [-1, 1] -> float64 [T, H, W, 3] in [0, 1]."""
    video = np.asarray(video.detach().cpu() if isinstance(video, Tensor) else video, dtype=np.float64)
    if video.ndim != 4 or video.shape[0] != 3:
        raise KinemaError(f"ball detection needs an RGB clip [3, T, H, W], got shape {video.shape}")
    return (np.clip(video, -1.0, 1.0) + 1.0).transpose(1, 2, 3, 0) / 2.0


def _colour_groups(classes: np.ndarray, x: np.ndarray, y: np.ndarray, min_area: int) -> list[np.ndarray]:
    """Split one blob's pixels into balls of different colours when those colours sit side by side.

    Colours holding >= 15% of the blob (and `min_area` pixels) are candidates, each with the radius
    of a disc of its area. They are separate balls when every two centroids are at least 3/4 of their
    summed radii apart (touching discs: about 1), otherwise one mottled ball (a white core in a blue
    rim: about 0; a ball half blue, half cyan: about 0.6). Other pixels join the nearest ball.
    """
    names, counts = np.unique(classes, return_counts=True)
    major = names[(counts >= 0.15 * classes.size) & (counts >= min_area)]
    if len(major) < 2:
        return [np.ones(classes.size, dtype=bool)]
    centres = np.array([[x[classes == k].mean(), y[classes == k].mean()] for k in major])
    radii = np.sqrt(np.array([(classes == k).sum() for k in major]) / np.pi)
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) - 0.75 * (radii[:, None] + radii[None])
    np.fill_diagonal(gaps, np.inf)
    if (gaps < 0).any():  # some candidates overlap: one ball
        return [np.ones(classes.size, dtype=bool)]
    nearest = np.linalg.norm(np.stack([x, y], axis=1)[:, None] - centres[None], axis=-1).argmin(axis=1)
    owner = np.where(np.isin(classes, major), np.searchsorted(major, classes), nearest)
    return [owner == i for i in range(len(major))]


def _is_round(offsets: np.ndarray, coverage: np.ndarray) -> bool:
    """Whether pixel offsets [n, 2] from the centre with their coverage [n] have a disc's second moments."""
    spread = (offsets.T * coverage) @ offsets / coverage.sum() + np.eye(2) / 12.0  # + a pixel's own extent
    low, high = np.linalg.eigvalsh(spread)
    disc = coverage.sum() / (2.0 * np.pi)  # variance sum r^2 / 2 of a disc of area pi r^2
    return bool(low >= ROUND_AXIS_RATIO * high and ROUND_SPREAD[0] <= (low + high) / disc <= ROUND_SPREAD[1])


def ball_scene_problem(video: Tensor | np.ndarray, detections: list[BallDetections],
                       threshold: float = 0.35) -> str:
    """Why one clip [3, T, H, W] is not a scene of balls over a dark flat background, or "" when it is."""
    value = _clip_rgb(video).max(axis=-1)
    background = value <= threshold
    if background.mean(axis=(1, 2)).min() < 0.5:
        return "not balls over a dark background (most of a frame is bright)"
    level = float(np.median(value[background]))
    spread = float(np.median(np.abs(value[background] - level)))
    if level > DARK or spread > FLAT:
        return f"the background is not flat and dark (median {level:.2f}, deviation {spread:.2f})"
    shapes = np.concatenate([frame.round for frame in detections])
    if shapes.size and shapes.mean() < ROUND_SHARE:
        return f"the blobs are not discs ({shapes.mean():.0%} round)"
    return ""


def detect_balls_in_clip(video: Tensor | np.ndarray, palette: dict[str, tuple[float, float, float]] = BALL_COLORS,
                         threshold: float = 0.35, min_area: int = 4) -> list[BallDetections]:
    """Balls in each frame of one clip [3, T, H, W] in [-1, 1]: bright blobs over black, split by colour."""
    rgb = _clip_rgb(video)
    value = rgb.max(axis=-1)
    foreground = value > threshold
    within_frame = np.zeros((3, 3, 3), dtype=bool)
    within_frame[1] = _EIGHT_CONNECTED
    regions, _ = ndimage.label(foreground, structure=within_frame)
    reference = _palette_array(palette)
    found: list[list[tuple]] = [[] for _ in range(value.shape[0])]
    for index, box in enumerate(ndimage.find_objects(regions)):
        mask = regions[box] == index + 1
        if mask.sum() < min_area:
            continue
        t = box[0].start
        y, x = (np.nonzero(mask[0])[i] + box[i + 1].start + 0.5 for i in range(2))
        v, colours = value[box][mask], rgb[box][mask]
        classes = np.linalg.norm(colours[:, None] / v[:, None, None] - reference, axis=-1).argmin(axis=1)
        for group in _colour_groups(classes, x, y, min_area):
            if group.sum() < min_area:
                continue
            w, peak = v[group], v[group].max()
            core = w >= _CORE * peak
            centre = np.array([np.dot(w, x[group]), np.dot(w, y[group])]) / w.sum()
            found[t].append((
                centre,
                np.sqrt(w.sum() / peak / np.pi),  # coverage = brightness / the core's brightness
                np.bincount(classes[group], w, minlength=len(reference)).argmax(),
                colours[group][core].mean(axis=0),
                _is_round(np.stack([x[group], y[group]], axis=1) - centre, w / peak),
            ))
    return [BallDetections(
        centres=np.array([d[0] for d in frame], dtype=np.float64).reshape(-1, 2),
        radii=np.array([d[1] for d in frame], dtype=np.float64),
        labels=np.array([d[2] for d in frame], dtype=np.int64),
        colors=np.array([d[3] for d in frame], dtype=np.float64).reshape(-1, 3),
        round=np.array([d[4] for d in frame], dtype=bool),
    ) for frame in found]


def detect_balls(frame: Tensor | np.ndarray, palette: dict[str, tuple[float, float, float]] = BALL_COLORS,
                 threshold: float = 0.35, min_area: int = 4) -> BallDetections:
    """Balls in one frame [3, H, W] in [-1, 1] (see `detect_balls_in_clip`)."""
    frame = torch.as_tensor(frame)
    if frame.ndim != 3:
        raise KinemaError(f"ball detection needs an RGB frame [3, H, W], got shape {tuple(frame.shape)}")
    return detect_balls_in_clip(frame[:, None], palette, threshold, min_area)[0]


def track_balls(video: Tensor | np.ndarray, palette: dict[str, tuple[float, float, float]] = BALL_COLORS,
                threshold: float = 0.35, min_area: int = 4, max_step: float | None = None,
                color_change_cost: float | None = None) -> BallTracks:
    """Detect balls in every frame of one clip [3, T, H, W] in [-1, 1] and link them into tracks."""
    video = torch.as_tensor(video)
    if video.ndim != 4 or video.shape[0] != 3:
        raise KinemaError(f"ball tracking needs one RGB clip [3, T, H, W], got shape {tuple(video.shape)}")
    detections = detect_balls_in_clip(video, palette, threshold, min_area)
    return link_detections(detections, tuple(video.shape[-2:]), palette, max_step, color_change_cost)


def link_detections(detections: list[BallDetections], size: tuple[int, int],
                    palette: dict[str, tuple[float, float, float]] = BALL_COLORS, max_step: float | None = None,
                    color_change_cost: float | None = None) -> BallTracks:
    """Link one clip's per-frame detections (frames of `size` (H, W)) into tracks.

    `max_step` (default: half the frame side) gates how far a ball may land from its predicted
    centre; `color_change_cost` (default: a quarter of the side) is added to links that change colour.
    """
    frames, (height, width) = len(detections), size
    side = max(height, width)
    max_step = 0.5 * side if max_step is None else max_step
    color_change_cost = 0.25 * side if color_change_cost is None else color_change_cost

    tracks: list[dict[int, int]] = [{0: i} for i in range(len(detections[0].labels))]  # frame -> detection
    active = list(range(len(tracks)))
    for t in range(1, frames):
        now, before = detections[t], detections[t - 1]
        predicted, track_labels = [], []
        for k in active:
            last = before.centres[tracks[k][t - 1]]
            earlier = detections[t - 2].centres[tracks[k][t - 2]] if t - 2 in tracks[k] else last
            predicted.append(2.0 * last - earlier)
            track_labels.append(before.labels[tracks[k][t - 1]])
        distance = np.linalg.norm(np.reshape(predicted, (-1, 1, 2)) - now.centres[None], axis=-1)
        cost = distance + color_change_cost * (np.reshape(track_labels, (-1, 1)) != now.labels[None])
        cost[distance > max_step] = _UNMATCHABLE
        matched_tracks, matched = linear_sum_assignment(cost)
        keep = cost[matched_tracks, matched] < _UNMATCHABLE
        for row, i in zip(matched_tracks[keep], matched[keep]):
            tracks[active[row]][t] = i
        active = [active[row] for row in matched_tracks[keep]]
        for i in sorted(set(range(len(now.labels))) - set(matched[keep].tolist())):
            tracks.append({t: i})
            active.append(len(tracks) - 1)

    k = len(tracks)
    out = BallTracks(
        centres=np.full((k, frames, 2), np.nan), radii=np.full((k, frames), np.nan),
        labels=np.full((k, frames), -1, dtype=np.int64), colors=np.full((k, frames, 3), np.nan),
        palette=tuple(palette), size=(height, width),
    )
    for k, track in enumerate(tracks):
        for t, i in track.items():
            found = detections[t]
            out.centres[k, t], out.radii[k, t] = found.centres[i], found.radii[i]
            out.labels[k, t], out.colors[k, t] = found.labels[i], found.colors[i]
    return out
