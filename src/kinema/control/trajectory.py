"""Object trajectories: where each named object is at every frame, read from a JSON or YAML file (chapter 11.3.3).

A trajectory file describes a size x size frame (pixels, x right, y down, the frame is [0, size]^2) over
num_frames frames, and one curve per object:

```yaml
size: 32              # frame side in pixels the points refer to
num_frames: 8
fps: 8                # optional: then `times` are seconds, otherwise frame indices (0 .. num_frames - 1)
objects:
  - description: the red ball      # how the prompt names the object; unique in the file
    colour: red                    # optional: taken from the description when it names one colour
    radius: 3.5                    # pixels
    curve: min_acceleration        # linear | bezier | bspline | fourier | min_acceleration | min_jerk
    points: [[4, 8], [16, 20], [28, 8]]
    times: [0, 3.5, 7]             # optional: evenly spread over the frames; a bezier takes [start, end]
    speed: keypoints               # optional: keypoints (through each point at its time) | constant |
                                   #   ease_in_out | ease_in | ease_out (retimed along the arc length)
```

Curve options: `degree` (bspline, 1..5; default 3, less for fewer points), `harmonics` and `period` (fourier),
`ends` (min_jerk: rest | natural). Before its first time and after its last an object holds still. Every point,
and every sampled position, must lie inside the frame. Any problem is one KinemaError naming the file and the key.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import Tensor

from kinema.control.curves import CURVES, SPEED_PROFILES, Curve, make_curve, sample_curve
from kinema.data.physics_balls import BALL_COLORS
from kinema.errors import KinemaError

TOP_KEYS = {"size", "num_frames", "fps", "objects"}
OBJECT_KEYS = {"description", "colour", "radius", "curve", "points", "times", "speed"}
CURVE_OPTIONS = {"bspline": {"degree"}, "fourier": {"harmonics", "period"}, "min_jerk": {"ends"}}


@dataclass(frozen=True, eq=False)
class ObjectPath:
    """One object's path: its description in the prompt, its colour, its position at every frame and its radius."""

    description: str  # "the red ball" (how the prompt names it)
    colour: str | None  # a key of BALL_COLORS when the description names one
    positions: Tensor  # [T, 2] float32, (x right, y down) in pixels of a size x size frame, one row per frame
    radius: float  # pixels


@dataclass(frozen=True, eq=False)
class TrajectorySpec:
    """The paths of every object over `num_frames` frames of a size x size frame."""

    size: int
    num_frames: int
    objects: tuple[ObjectPath, ...]

    def positions(self) -> Tensor:
        """Every object's positions: [K, T, 2]."""
        return torch.stack([o.positions for o in self.objects])

    def resized(self, size: int, num_frames: int) -> TrajectorySpec:
        """The same paths in a size x size frame over num_frames frames (space scaled, time resampled linearly)."""
        scale = size / self.size
        old = np.arange(self.num_frames, dtype=np.float64)
        new = np.linspace(0.0, self.num_frames - 1, num_frames)
        objects = []
        for obj in self.objects:
            p = obj.positions.double().numpy()
            resampled = np.stack([np.interp(new, old, p[:, i]) for i in range(2)], axis=-1) * scale
            objects.append(ObjectPath(obj.description, obj.colour, torch.from_numpy(resampled).float(),
                                      obj.radius * scale))
        return TrajectorySpec(size, num_frames, tuple(objects))

    @staticmethod
    def of_balls(positions: Tensor, radii, colours: list[str], size: int) -> TrajectorySpec:
        """Balls' paths: centres [T, K, 2] px (frame-major, as the simulator gives them), radii [K] and colour names,
        each ball described as "the {colour} ball"."""
        return TrajectorySpec(size, positions.shape[0], tuple(
            ObjectPath(f"the {name} ball", name, positions[:, k].float(), float(radii[k]))
            for k, name in enumerate(colours)))


@dataclass(frozen=True, eq=False)
class ObjectCurve:
    """One object of a trajectory file: its curve through keypoints (times in frames) and its speed profile."""

    description: str
    colour: str | None
    radius: float
    kind: str  # a key of CURVES
    points: np.ndarray  # [n, 2] px
    times: np.ndarray  # [n] frames (a bezier: [start, end])
    speed: str  # a key of SPEED_PROFILES
    curve: Curve

    def sample(self, frame_times: np.ndarray) -> np.ndarray:
        """Positions [N, 2] at (fractional) frame times."""
        return sample_curve(self.curve, (float(self.times[0]), float(self.times[-1])), frame_times, self.speed)


@dataclass(frozen=True, eq=False)
class TrajectoryFile:
    """A parsed trajectory file: the frame, the frame count, and each object's curve."""

    size: int
    num_frames: int
    objects: tuple[ObjectCurve, ...]

    def spec(self) -> TrajectorySpec:
        """Each object sampled at every frame."""
        frames = np.arange(self.num_frames, dtype=np.float64)
        return TrajectorySpec(self.size, self.num_frames, tuple(
            ObjectPath(o.description, o.colour, torch.from_numpy(o.sample(frames)).float(), o.radius)
            for o in self.objects))


def load_trajectories(path: str | Path) -> TrajectorySpec:
    """Read a JSON or YAML trajectory file (format in this module's docstring) into every object's per-frame path."""
    return read_trajectory_file(path).spec()


def read_trajectory_file(path: str | Path) -> TrajectoryFile:
    """Parse and check a trajectory file: one KinemaError naming the file and key on any problem."""
    return trajectory_from_data(read_trajectory_data(path), path)


def read_trajectory_data(path: str | Path):
    """The parsed contents of a JSON or YAML trajectory file, unchecked (one KinemaError if unreadable)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise KinemaError(f"cannot read trajectory file {path}: {getattr(error, 'strerror', None) or error}")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise KinemaError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                          f"{' '.join(str(error).split())}")
    return data


def trajectory_from_data(data, path: str | Path) -> TrajectoryFile:
    """Check the parsed contents of a trajectory file (`path` names it in errors) and make its curves."""
    path = Path(path)
    if not isinstance(data, dict):
        raise KinemaError(f"{path}: expected a mapping with keys size, num_frames, objects")
    _check_keys(path, data, "", TOP_KEYS, {"size", "num_frames", "objects"})
    size = _whole(path, data["size"], "size", minimum=1)
    num_frames = _whole(path, data["num_frames"], "num_frames", minimum=2)
    fps = data.get("fps")
    if fps is not None and not (_is_number(fps) and fps > 0):
        raise KinemaError(f"{path}: fps must be a number > 0, got {fps!r}")
    if not isinstance(data["objects"], list) or not data["objects"]:
        raise KinemaError(f"{path}: objects must be a non-empty list")
    objects = tuple(_object(path, entry, f"objects[{i}]", size, num_frames, fps)
                    for i, entry in enumerate(data["objects"]))
    seen: dict[str, int] = {}
    for i, obj in enumerate(objects):
        name = " ".join(obj.description.lower().split())
        if name in seen:
            raise KinemaError(f"{path}: objects[{i}].description {obj.description!r} repeats objects[{seen[name]}]: "
                              "each object needs its own description")
        seen[name] = i
    return TrajectoryFile(size, num_frames, objects)


def _object(path: Path, entry, key: str, size: int, num_frames: int, fps: float | None) -> ObjectCurve:
    """One checked entry of `objects`."""
    if not isinstance(entry, dict):
        raise KinemaError(f"{path}: {key} must be a mapping with description, radius, curve, points")
    kind = entry.get("curve")
    if "curve" in entry and not (isinstance(kind, str) and kind in CURVES):
        raise KinemaError(f"{path}: {key}.curve: unknown curve {kind!r}: use one of {', '.join(CURVES)}")
    _check_keys(path, entry, key + ".", OBJECT_KEYS | CURVE_OPTIONS.get(kind or "", set()),
                {"description", "radius", "curve", "points"})
    description = entry["description"]
    if not isinstance(description, str) or not description.strip():
        raise KinemaError(f"{path}: {key}.description must be a non-empty text, got {description!r}")
    colour = _colour(path, key, description, entry.get("colour"))
    radius = entry["radius"]
    if not (_is_number(radius) and 0 < radius < size / 2):
        raise KinemaError(f"{path}: {key}.radius must be a number in (0, {size / 2:g}) px, got {radius!r}")
    points = _points(path, key, entry["points"], size)
    count = 2 if kind == "bezier" else len(points)
    times = entry.get("times")
    if times is None:
        times = np.linspace(0.0, num_frames - 1, count)
    else:
        if not (isinstance(times, list) and len(times) == count and all(_is_number(t) for t in times)):
            what = "[start, end]" if kind == "bezier" else f"one number per point ({count})"
            raise KinemaError(f"{path}: {key}.times must be {what}, got {times!r}")
        times = np.asarray(times, dtype=np.float64) * (fps if fps is not None else 1.0)
        if np.any(np.diff(times) <= 0):
            raise KinemaError(f"{path}: {key}.times are out of order: they must increase strictly, got "
                              f"{entry['times']}")
        if times[0] < 0 or times[-1] > num_frames - 1:
            unit = f"0..{(num_frames - 1) / fps:g} s" if fps is not None else f"frames 0..{num_frames - 1}"
            raise KinemaError(f"{path}: {key}.times must lie in {unit}, got {entry['times']}")
    speed = entry.get("speed", "keypoints")
    if speed not in SPEED_PROFILES:
        raise KinemaError(f"{path}: {key}.speed: unknown speed profile {speed!r}: use one of "
                          f"{', '.join(SPEED_PROFILES)}")
    options = {name: entry[name] for name in CURVE_OPTIONS.get(kind, ()) if name in entry}
    try:
        curve = make_curve(kind, points, times, **options)
    except KinemaError as error:
        raise KinemaError(f"{path}: {key}: {error}")
    obj = ObjectCurve(description, colour, float(radius), kind, points, times, speed, curve)
    positions = obj.sample(np.arange(num_frames, dtype=np.float64))
    outside = np.flatnonzero(((positions < 0) | (positions > size)).any(axis=1))
    if len(outside):
        x, y = positions[outside[0]]
        raise KinemaError(f"{path}: {key}: the {kind} curve leaves the {size}x{size} frame at frame {outside[0]} "
                          f"(x={x:.1f}, y={y:.1f}): move its points inwards")
    return obj


def _check_keys(path: Path, data: dict, prefix: str, allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise KinemaError(f"{path}: unknown key {prefix}{unknown[0]}: use {', '.join(sorted(allowed))}")
    missing = sorted(required - set(data))
    if missing:
        raise KinemaError(f"{path}: missing key {prefix}{missing[0]}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _whole(path: Path, value, key: str, minimum: int) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise KinemaError(f"{path}: {key} must be a whole number >= {minimum}, got {value!r}")
    return value


def _colour(path: Path, key: str, description: str, colour) -> str | None:
    """The object's colour: the explicit one, else the single BALL_COLORS word its description names."""
    named = [w for w in re.findall(r"[a-z]+", description.lower()) if w in BALL_COLORS]
    if colour is None:
        return named[0] if len(set(named)) == 1 else None
    if colour not in BALL_COLORS:
        raise KinemaError(f"{path}: {key}.colour: unknown colour {colour!r}: use one of {', '.join(BALL_COLORS)}")
    if named and colour not in named:
        raise KinemaError(f"{path}: {key}.colour is {colour!r} but the description names {named[0]!r}")
    return colour


def _points(path: Path, key: str, points, size: int) -> np.ndarray:
    """Keypoints [n, 2], each inside the size x size frame."""
    if not isinstance(points, list) or not points:
        raise KinemaError(f"{path}: {key}.points must be a list of [x, y] pairs, got {points!r}")
    for j, point in enumerate(points):
        if not (isinstance(point, list) and len(point) == 2 and all(_is_number(v) for v in point)):
            raise KinemaError(f"{path}: {key}.points[{j}] must be an [x, y] pair of numbers, got {point!r}")
        if not all(0 <= v <= size for v in point):
            raise KinemaError(f"{path}: {key}.points[{j}] = {point} is outside the {size}x{size} frame "
                              f"(0..{size} px)")
    return np.asarray(points, dtype=np.float64)
