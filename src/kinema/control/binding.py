"""Bind trajectory objects to the prompt that names them, and the objects a prompt names (chapter 11.3.3: many
objects, each following its own path).

An object's description ("the red ball") names it in the prompt when the prompt holds the description without its
article ("red ball"): "a red ball and a blue ball bounce" names "the red ball" and "the blue ball". Its colour (a
BALL_COLORS name, from the file or the description) is how guidance finds it in the video.
"""

from __future__ import annotations

import re
from pathlib import Path

from kinema.conditioning.motion_words import direction_from_prompt
from kinema.control.trajectory import TrajectorySpec, load_trajectories
from kinema.data.physics_balls import BALL_COLORS
from kinema.errors import KinemaError

_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)


def _words(text: str) -> str:
    """Lower-case words joined by single spaces."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def bind_objects(spec: TrajectorySpec, prompt: str) -> list[str | None]:
    """The colour of each of `spec`'s objects (None: the foreground of any colour), checking that `prompt` names every
    one; a KinemaError names an object the prompt does not name or two the video could not tell apart."""
    said = f" {_words(prompt)} "
    colours = []
    for obj in spec.objects:
        name = _words(_ARTICLE.sub("", obj.description.strip()))
        if f" {name} " not in said:
            raise KinemaError(f"the trajectory's object {obj.description!r} is not named in the prompt {prompt!r}: "
                              f"say '{name}' in the prompt, or describe the object as the prompt does")
        colours.append(obj.colour)
    if len(colours) > 1 and (None in colours or len(set(colours)) < len(colours)):
        same = [o.description for o in spec.objects if o.colour is None or colours.count(o.colour) > 1]
        raise KinemaError(f"trajectory objects {same} cannot be told apart in the video: give each of several "
                          f"objects its own colour ({', '.join(BALL_COLORS)})")
    return colours


def bound_trajectory(path: str | Path, prompt: str) -> TrajectorySpec:
    """A trajectory file's paths (kinema.control.trajectory), checked to be named in `prompt` by `bind_objects`."""
    spec = load_trajectories(path)
    bind_objects(spec, prompt)
    return spec


def prompt_colours(prompt: str) -> list[str | None]:
    """The BALL_COLORS colours a prompt names, in order ("a red ball and a blue ball" -> red, blue); [None] (the
    foreground of any colour) when it names none."""
    named = [word for word in _words(prompt).split() if word in BALL_COLORS]
    return list(dict.fromkeys(named)) or [None]


def colour_directions(prompt: str) -> dict[str, tuple[float, float]]:
    """{colour: (x right, y down)} for each BALL_COLORS colour whose own clause of `prompt` (from its name to the next
    colour's) holds direction words: "a blue ball bounces to the left and a green ball moves" -> {"blue": (-1, 0)}."""
    words = _words(prompt).split()
    starts = [i for i, word in enumerate(words) if word in BALL_COLORS]
    directions = {}
    for start, stop in zip(starts, [*starts[1:], len(words)]):
        direction = direction_from_prompt(" ".join(words[start:stop]))
        if direction != (0.0, 0.0):
            directions.setdefault(words[start], direction)
    return directions
