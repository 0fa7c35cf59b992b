"""The `Conditioning` container: everything a denoiser may be conditioned on (chapter 11.3)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from kinema.errors import KinemaError


@dataclass
class Conditioning:
    """Optional conditioning fields for a batch; a model declares which fields it reads.

    text:        [B, L, D] token embeddings from a text encoder
    text_mask:   [B, L] bool, True where a token is real
    labels:      [B] long class labels; -1 = no class (the null label of classifier-free guidance)
    frames:      [B, C, T, H, W] known frames or pixels (values where `frame_mask` is True)
    frame_mask:  [B, 1, T, H, W] bool, True for the pixels that are given (whole frames, boxes, borders)
    fps:         [B] float frames per second
    motion:      [B, 2] float overall direction (x right, y down), e.g. from prompt words (motion_words.py)
    control:     [B, Cc, T, H, W] float dense control maps (path heatmaps, camera flow, a low-res video), in the
                 order of the model's `controls` (kinema.conditioning.controls); zeros = no control
    attributes:  [B, A] float scalar knobs (speed, brightness, ...) in the order of the model's `attributes`;
                 NaN = not given
    """

    text: Tensor | None = None
    text_mask: Tensor | None = None
    labels: Tensor | None = None
    frames: Tensor | None = None
    frame_mask: Tensor | None = None
    fps: Tensor | None = None
    motion: Tensor | None = None
    control: Tensor | None = None
    attributes: Tensor | None = None

    def present(self) -> set[str]:
        """Names of the fields that are set."""
        return {f.name for f in fields(self) if getattr(self, f.name) is not None}

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        """Move every tensor field to `device` (floating fields also to `dtype` when given)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                cast = dtype if dtype is not None and value.is_floating_point() else None
                value = value.to(device=device, dtype=cast)
            moved[f.name] = value
        return Conditioning(**moved)

    def repeat(self, n: int) -> Conditioning:
        """Repeat every field `n` times along the batch dimension."""
        return Conditioning(**{
            f.name: None if getattr(self, f.name) is None
            else getattr(self, f.name).repeat_interleave(n, dim=0)
            for f in fields(self)
        })

    @staticmethod
    def cat(items: list[Conditioning]) -> Conditioning:
        """Concatenate along the batch; a field must be set in all items or in none."""
        merged = {}
        for f in fields(Conditioning):
            values = [getattr(c, f.name) for c in items]
            if all(v is None for v in values):
                merged[f.name] = None
            elif any(v is None for v in values):
                raise KinemaError(f"Conditioning.cat: field '{f.name}' is set in some items but not all")
            else:
                merged[f.name] = torch.cat(values, dim=0)
        return Conditioning(**merged)

