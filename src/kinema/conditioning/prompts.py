"""Prompts to `Conditioning`: text tokens, plus the direction their motion words carry when the model reads it."""

from __future__ import annotations

from collections.abc import Collection

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.motion_words import motion_from_prompts
from kinema.conditioning.text import TextEncoder


def prompt_conditioning(prompts: list[str], text_encoder: TextEncoder, fields: Collection[str]) -> Conditioning:
    """Conditioning for `prompts` given the fields a model reads (`model.conditioning_fields`)."""
    tokens, mask = text_encoder.encode(prompts)
    motion = motion_from_prompts(prompts) if "motion" in fields else None
    return Conditioning(text=tokens, text_mask=mask, motion=motion)
