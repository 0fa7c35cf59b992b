"""Prompt words that carry motion ("to the left", "from right to left", "upwards") as a direction control
(chapter 11.3).

A sentence encoder barely separates "left" from "right" (all-MiniLM-L6-v2's pooled embeddings of
"a red ball bounces to the left/right" have cosine 0.98), so a model conditioned on text alone may never
learn direction words. Reading them into an explicit `Conditioning.motion` vector gives the model a
signal it cannot miss, and the same vector can come from a user's control instead of words.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

# (x right, y down) image directions; longer phrases first so "from left to right" is not read as "to the left"
DIRECTION_PHRASES: tuple[tuple[str, tuple[float, float]], ...] = (
    ("from left to right", (1.0, 0.0)),
    ("from right to left", (-1.0, 0.0)),
    ("from top to bottom", (0.0, 1.0)),
    ("from bottom to top", (0.0, -1.0)),
    ("to the left", (-1.0, 0.0)),
    ("to the right", (1.0, 0.0)),
    ("leftwards?", (-1.0, 0.0)),
    ("rightwards?", (1.0, 0.0)),
    ("upwards?", (0.0, -1.0)),
    ("downwards?", (0.0, 1.0)),
)
_PATTERN = re.compile(r"\b(?:" + "|".join(f"(?P<d{i}>{phrase})" for i, (phrase, _) in enumerate(DIRECTION_PHRASES))
                      + r")\b", re.IGNORECASE)


def direction_from_prompt(prompt: str) -> tuple[float, float]:
    """Mean (x, y) of the direction phrases in `prompt` (x right, y down); (0, 0) when it names none.

    Opposite phrases cancel ("a red ball to the left and a blue ball to the right" has no net direction):
    the vector is the scene's overall motion, not a per-object trajectory.
    """
    found = [DIRECTION_PHRASES[int(m.lastgroup[1:])][1] for m in _PATTERN.finditer(prompt)]
    if not found:
        return 0.0, 0.0
    return sum(v[0] for v in found) / len(found), sum(v[1] for v in found) / len(found)


def motion_from_prompts(prompts: list[str]) -> Tensor:
    """`Conditioning.motion` [B, 2] for a batch of prompts."""
    return torch.tensor([direction_from_prompt(p) for p in prompts], dtype=torch.float32).reshape(len(prompts), 2)
