"""Prompts to `Conditioning`: text tokens, plus the direction their motion words carry, for the fields a model reads."""

from __future__ import annotations

from collections.abc import Collection

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.motion_words import motion_from_prompts
from kinema.conditioning.text import TextEncoder


def prompt_conditioning(prompts: list[str], text_encoder: TextEncoder | None, fields: Collection[str]) -> Conditioning:
    """Conditioning for `prompts` given the fields a model reads (`Denoiser.conditioning_fields`): text tokens (and
    their mask) only for a model that reads text, a direction only for one that reads `motion`."""
    text = text_mask = None
    if "text" in fields:
        text, text_mask = text_encoder.encode(prompts)
        text_mask = text_mask if "text_mask" in fields else None
    motion = motion_from_prompts(prompts) if "motion" in fields else None
    return Conditioning(text=text, text_mask=text_mask, motion=motion)
