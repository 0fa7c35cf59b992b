"""Drawing object paths on the first frame (chapter 11.3.3): clicked keypoints become a trajectory file
(kinema.control.trajectory), and its interpolated curves are drawn over the frame after every click."""

from __future__ import annotations

import copy

import numpy as np
from PIL import Image, ImageDraw

from kinema.control.plot import drawn_paths
from kinema.control.trajectory import TrajectoryFile, trajectory_from_data
from kinema.data.physics_balls import BALL_COLORS
from kinema.errors import KinemaError

CANVAS_SIDE = 320  # pixels of the drawing, whatever the model's frame size
BACKGROUND = (24, 24, 24)


def empty_trajectory(size: int, num_frames: int) -> dict:
    """A trajectory file's contents with no objects yet, for a size x size frame over num_frames frames."""
    return {"size": size, "num_frames": num_frames, "objects": []}


def add_point(data: dict, colour: str, x: float, y: float, *, curve: str, speed: str, radius: float) -> dict:
    """`data` with the point (x, y) (frame pixels) appended to the path of "the {colour} ball", which takes `curve`,
    `speed` and `radius`; a colour not drawn yet starts a new object."""
    if colour not in BALL_COLORS:
        raise KinemaError(f"unknown colour '{colour}': one of {', '.join(BALL_COLORS)}")
    data = copy.deepcopy(data)
    description = f"the {colour} ball"
    found = next((o for o in data["objects"] if o["description"] == description), None)
    if found is None:
        found = {"description": description, "colour": colour, "points": []}
        data["objects"].append(found)
    found.update(curve=curve, speed=speed, radius=radius)
    found.pop("times", None)  # a drawn path spreads its points evenly over the frames
    found["points"].append([round(x, 2), round(y, 2)])
    return data


def remove_last_point(data: dict, colour: str) -> dict:
    """`data` without the last point of "the {colour} ball" (and without that object once it has none)."""
    data = copy.deepcopy(data)
    for obj in data["objects"]:
        if obj.get("colour") == colour and obj["points"]:
            obj["points"].pop()
    data["objects"] = [o for o in data["objects"] if o["points"]]
    return data


def complete_objects(data: dict) -> dict:
    """`data` without the objects that have fewer than two points (not a path yet)."""
    return {**data, "objects": [o for o in data["objects"] if len(o.get("points", [])) >= 2]}


def checked(data: dict, name: str = "the drawn trajectory") -> TrajectoryFile:
    """The curves of `data` (its complete objects), checked as a trajectory file is; a KinemaError says what is
    wrong."""
    complete = complete_objects(data)
    if not complete["objects"]:
        raise KinemaError("draw a path first: click at least two points on the frame")
    return trajectory_from_data(complete, name)


def canvas_point(x: int, y: int, size: int, side: int = CANVAS_SIDE) -> tuple[float, float]:
    """Frame pixels (x right, y down, in [0, size]) of the centre of canvas pixel (x, y) of a side x side canvas."""
    scale = size / side
    return (x + 0.5) * scale, (y + 0.5) * scale


def draw(data: dict, first_frame: np.ndarray | None = None, side: int = CANVAS_SIDE) -> np.ndarray:
    """The canvas [side, side, 3] uint8: the first frame (if any) with every object's keypoints, its interpolated
    curve and its position at each frame in its colour; an object that cannot be a curve yet shows its points."""
    if first_frame is None:
        image = Image.new("RGB", (side, side), BACKGROUND)
    else:
        image = Image.fromarray(first_frame).resize((side, side), Image.NEAREST)
    pen = ImageDraw.Draw(image)
    scale = side / data["size"]
    colours = {o["description"]: tuple(int(255 * c) for c in BALL_COLORS.get(o.get("colour"), (1, 1, 1)))
               for o in data["objects"]}
    try:
        _, paths = drawn_paths(checked(data), side)
    except KinemaError:  # fewer points than the curve needs: keypoints only
        paths = []
    for path in paths:
        colour = colours[path.description]
        pen.line([tuple(p) for p in path.curve], fill=colour, width=2)
        x, y = path.frames[0]
        pen.ellipse([x - path.radius, y - path.radius, x + path.radius, y + path.radius], outline=colour)
        for x, y in path.frames:
            pen.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    for obj in data["objects"]:
        for x, y in obj["points"]:
            x, y = x * scale, y * scale
            pen.line([(x - 5, y - 5), (x + 5, y + 5)], fill=(255, 255, 255), width=2)
            pen.line([(x - 5, y + 5), (x + 5, y - 5)], fill=(255, 255, 255), width=2)
    return np.asarray(image)
