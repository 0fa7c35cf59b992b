"""Time-anchored prompts: phrases that each own a range of frames, blended smoothly at the joins (chapter 11.5.2;
per-frame text conditioning as in MultiDiffusion's blending of estimates, Bar-Tal et al. 2023, applied along time).

"first a red ball falls, then a blue ball bounces" splits into phrases owning equal consecutive ranges; explicit
anchors [(0, "..."), (32, "...")] start each phrase at a frame. The denoiser's estimate of each frame is the
weighted mean of its estimates under each phrase.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from kinema.errors import KinemaError

Anchors = Sequence[tuple[int, str]]
PromptSpec = str | Anchors
_THEN = re.compile(r"\s*(?:,|;)?\s*\b(?:and\s+)?then\b\s*", re.IGNORECASE)


def split_sequence(prompt: str) -> list[str]:
    """The phrases of "first A, then B, then C" (["A", "B", "C"]); a prompt without "then" is one phrase."""
    phrases = [p.strip(" ,.;") for p in _THEN.split(prompt)]
    phrases = [re.sub(r"^first\s+", "", p, flags=re.IGNORECASE) for p in phrases if p]
    return phrases if len(phrases) > 1 else [prompt]


def anchors_of(prompt: PromptSpec, num_frames: int) -> list[tuple[int, str]]:
    """Sorted (first frame, phrase) pairs of a prompt: explicit anchors, or a "then" sequence over equal ranges."""
    if isinstance(prompt, str):
        phrases = split_sequence(prompt)
        return [(round(i * num_frames / len(phrases)), phrase) for i, phrase in enumerate(phrases)]
    anchors = sorted((int(frame), str(text)) for frame, text in prompt)
    if not anchors:
        raise KinemaError("time-anchored prompts: give at least one FRAME:TEXT")
    for frame, _ in anchors:
        if not 0 <= frame < num_frames:
            raise KinemaError(f"prompt anchor at frame {frame} is outside the video's {num_frames} frames "
                              f"(0..{num_frames - 1})")
    if anchors[0][0] != 0:
        anchors[0] = (0, anchors[0][1])  # the first phrase also owns the frames before it
    if len({frame for frame, _ in anchors}) != len(anchors):
        raise KinemaError(f"two prompts are anchored at the same frame: {[frame for frame, _ in anchors]}")
    return anchors


def ownership(starts: list[int], num_frames: int, blend: int) -> Tensor:
    """[K, T] weights of K phrases starting at `starts`: 1 inside a phrase's range, a linear cross-fade over `blend`
    frames centred on each join, summing to 1 in every frame."""
    frames = torch.arange(num_frames, dtype=torch.float64) + 0.5
    ends = starts[1:] + [num_frames]
    if blend <= 0:
        return torch.stack([((frames >= s) & (frames < e)).double() for s, e in zip(starts, ends)]).float()
    # cumulative ramps: phrase k is "on" after its start and "off" after its end, each a clamp-linear ramp
    def ramp(at: float) -> Tensor:
        return ((frames - at) / blend + 0.5).clamp(0, 1)

    weights = [(ramp(s) if k else torch.ones_like(frames)) - (ramp(e) if e < num_frames else 0)
               for k, (s, e) in enumerate(zip(starts, ends))]
    return torch.stack(weights).float()


@dataclass
class PromptPlan:
    """Per video, K phrases (padded by repeating the last, at weight 0) and their weights over the frames."""

    texts: list[list[str]]  # [K][B]
    weights: Tensor         # [B, K, T]

    @property
    def anchored(self) -> bool:
        """True when some video has more than one phrase."""
        return len(self.texts) > 1

    def window(self, start: int, stop: int) -> tuple[list[list[str]], Tensor]:
        """The phrases that own some frame in start..stop-1, with their weights there [B, K', stop - start]."""
        weights = self.weights[:, :, start:stop]
        active = [k for k in range(len(self.texts)) if weights[:, k].any()]
        return [self.texts[k] for k in active], weights[:, active]


def plan_prompts(prompts: Sequence[PromptSpec], num_frames: int, blend: int = 4) -> PromptPlan:
    """The PromptPlan of one prompt (plain, "first ... then ...", or anchors) per video."""
    if blend < 0:
        raise KinemaError(f"prompt blend must be at least 0 frames, got {blend}")
    per_video = [anchors_of(prompt, num_frames) for prompt in prompts]
    count = max(len(anchors) for anchors in per_video)
    texts = [[anchors[min(k, len(anchors) - 1)][1] for anchors in per_video] for k in range(count)]
    weights = torch.zeros(len(per_video), count, num_frames)
    for b, anchors in enumerate(per_video):
        weights[b, :len(anchors)] = ownership([frame for frame, _ in anchors], num_frames, blend)
    return PromptPlan(texts, weights)
