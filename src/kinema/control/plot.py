"""Drawing and describing object trajectories: each object's curve in its colour, keypoints, per-frame positions."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinema.control.trajectory import TrajectoryFile, TrajectorySpec
from kinema.data.physics_balls import BALL_COLORS
from kinema.errors import KinemaError

DENSE_SAMPLES = 400  # points per drawn curve
OTHER_COLOURS = ("#bbbbbb", "#8c564b", "#e377c2", "#7f7f7f")  # objects without a colour, in turn


@dataclass(frozen=True)
class DrawnPath:
    """One object's path in the drawing's frame: the curve, its keypoints (None for a plain path) and frames."""

    description: str
    colour: str | None
    kind: str  # the curve type, or "path" for per-frame positions only
    curve: np.ndarray  # [N, 2] px
    keypoints: np.ndarray | None  # [n, 2] px
    frames: np.ndarray  # [T, 2] px
    radius: float


def drawn_paths(source: TrajectoryFile | TrajectorySpec, size: int | None = None) -> tuple[int, list[DrawnPath]]:
    """The frame side and every object's path, scaled to a size x size frame (default: the source's)."""
    size = source.size if size is None else size
    if size < 1:
        raise KinemaError(f"--size must be at least 1, got {size}")
    scale = size / source.size
    if isinstance(source, TrajectorySpec):
        return size, [DrawnPath(o.description, o.colour, "path", o.positions.double().numpy() * scale, None,
                                o.positions.double().numpy() * scale, o.radius * scale) for o in source.objects]
    frames = np.arange(source.num_frames, dtype=np.float64)
    dense = np.linspace(0.0, source.num_frames - 1, DENSE_SAMPLES)
    return size, [DrawnPath(o.description, o.colour, o.kind, o.sample(dense) * scale, o.points * scale,
                            o.sample(frames) * scale, o.radius * scale) for o in source.objects]


def describe_paths(source: TrajectoryFile | TrajectorySpec, size: int | None = None) -> list[str]:
    """One line per object: curve type, length in px and mean speed in px/frame (in a size x size frame)."""
    _, paths = drawn_paths(source, size)
    lines = []
    for path in paths:
        length = float(np.linalg.norm(np.diff(path.curve, axis=0), axis=1).sum())
        lines.append(f"{path.description}: {path.kind}, length {length:.1f} px, mean speed "
                     f"{length / (len(path.frames) - 1):.2f} px/frame")
    return lines


def plot_trajectories(source: TrajectoryFile | TrajectorySpec, output: str | Path, size: int | None = None) -> Path:
    """Draw every object's curve in its colour, keypoints as crosses, per-frame positions as numbered dots and the
    first frame's disc, over a dark size x size frame (y down); write a PNG."""
    from matplotlib.figure import Figure  # Agg canvas, no global pyplot state
    from matplotlib.patches import Circle

    size, paths = drawn_paths(source, size)
    figure = Figure(figsize=(5, 5), dpi=100, facecolor="#111111")
    axes = figure.add_subplot()
    axes.set_facecolor("#111111")
    axes.set(xlim=(0, size), ylim=(size, 0), aspect="equal")
    axes.tick_params(colors="#aaaaaa", labelsize=8)
    others = itertools.cycle(OTHER_COLOURS)
    for path in paths:
        colour = BALL_COLORS[path.colour] if path.colour in BALL_COLORS else next(others)
        axes.plot(*path.curve.T, color=colour, linewidth=1.5, label=f"{path.description} ({path.kind})")
        axes.add_patch(Circle(tuple(path.frames[0]), path.radius, fill=False, color=colour, alpha=0.7))
        axes.scatter(*path.frames.T, s=14, color=colour, edgecolors="#111111", linewidths=0.5, zorder=3)
        for index, (x, y) in enumerate(path.frames):
            axes.annotate(str(index), (x, y), xytext=(3, 3), textcoords="offset points", color=colour, fontsize=6)
        if path.keypoints is not None:
            axes.scatter(*path.keypoints.T, s=40, marker="x", color="white", linewidths=1.2, zorder=4)
    legend = axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), fontsize=7, frameon=False,
                         ncol=1 if len(paths) < 3 else 2)
    for text in legend.get_texts():
        text.set_color("#dddddd")
    axes.set_title(f"{len(paths)} object(s), {len(paths[0].frames)} frames, {size}x{size} px", color="#dddddd",
                   fontsize=9)
    output = Path(output)
    figure.savefig(output, format="png", facecolor=figure.get_facecolor(), bbox_inches="tight")
    return output

