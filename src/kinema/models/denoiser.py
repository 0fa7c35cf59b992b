"""The denoiser contract (DESIGN.md, "Contracts"): what every Kinema denoiser declares, so that the trainer and the
pipelines read these declarations instead of probing a model with getattr."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.controls import control_channels
from kinema.errors import KinemaError


class Denoiser(nn.Module):
    """Base of every registered denoiser: `model(x [B,C,T,H,W], t [B] or [B,T], cond) -> output like x`.

    A subclass names its `config_class`, says whether it `supports_gradient_checkpointing` and takes
    `per_frame_noise` (t of shape [B, T]), and derives from its config the conditioning fields it reads
    (`conditioning_fields`), its text token width (`text_dim`, 0 = no text), its classes (`num_classes`, 0 = none;
    label -1 is the null class of classifier-free guidance), its video channels (`in_channels`) and whether it reads
    known frames and pixels (`frame_conditioning`: `cond.frames` where `cond.frame_mask` is True, chapter 11.3.2 and
    11.4; MCVD, Voleti et al. 2022).
    """

    config_class: ClassVar[type]
    supports_gradient_checkpointing: ClassVar[bool] = False
    per_frame_noise: ClassVar[bool] = True

    def __init__(self, config):
        super().__init__()
        self.config = config
        self._gradient_checkpointing = False

    @property
    def conditioning_fields(self) -> frozenset[str]:
        """The `Conditioning` fields this instance reads: text (+ mask) when it has a text width, labels when it has
        classes, plus what `extra_conditioning_fields` adds."""
        fields = {"text", "text_mask"} if self.text_dim else set()
        fields |= {"frames", "frame_mask"} if self.frame_conditioning else set()
        fields |= ({"control"} if self.controls else set()) | ({"attributes"} if self.attributes else set())
        return frozenset(fields | ({"labels"} if self.num_classes else set()) | self.extra_conditioning_fields())

    def extra_conditioning_fields(self) -> set[str]:
        """Fields beyond text and labels that this instance reads (e.g. `motion`)."""
        return set()

    @property
    def text_dim(self) -> int:
        """Width of the text tokens it cross-attends to; 0 for a model without text."""
        return self.config.text_dim

    @property
    def num_classes(self) -> int:
        """Number of class labels it is conditioned on; 0 for none (models with classes override this)."""
        return 0

    @property
    def frame_conditioning(self) -> bool:
        """True when it reads known frames/pixels as extra input channels (`model.frame_conditioning`)."""
        return getattr(self.config, "frame_conditioning", False)

    def known_pixels(self, x: Tensor, cond: Conditioning) -> Tensor:
        """[B, C + 1, T, H, W]: the known pixels (0 elsewhere) and the mask, the extra input of a frame-conditioned
        model. Its input layers have no bias, so without `cond.frames` ("nothing known", all zeros) they are
        skipped."""
        mask = cond.frame_mask.to(x.dtype)
        return torch.cat([cond.frames.to(x.dtype) * mask, mask], dim=1)

    @property
    def controls(self) -> tuple[str, ...]:
        """The dense control maps it reads in `cond.control` (`model.controls`; kinema.conditioning.controls)."""
        return tuple(getattr(self.config, "controls", ()))

    @property
    def attributes(self) -> tuple[str, ...]:
        """The scalar knobs it reads in `cond.attributes` (`model.attributes`; kinema.conditioning.controls)."""
        return tuple(getattr(self.config, "attributes", ()))

    @property
    def in_channels(self) -> int:
        """Channels of the videos (or latents) it denoises."""
        return self.config.in_channels

    @property
    def gradient_checkpointing(self) -> bool:
        """Recompute activations in the backward pass instead of storing them (only while training)."""
        return self._gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        if enabled and not self.supports_gradient_checkpointing:
            raise KinemaError(f"config key 'train.gradient_checkpointing': {type(self).__name__} does not support it")
        self._gradient_checkpointing = bool(enabled)

    def check_inputs(self, x: Tensor, t: Tensor, cond: Conditioning) -> None:
        """One-line errors for inputs this model cannot read: the video's shape, t's shape, and the conditioning
        fields it does not read, misses or gets in the wrong shape (labels out of range included)."""
        name = type(self).__name__
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise KinemaError(f"{name} takes videos [B, {self.in_channels}, T, H, W], got {list(x.shape)}")
        b, frames = x.shape[0], x.shape[2]
        if t.shape not in ((b,), (b, frames)):
            raise KinemaError(f"{name}: t must be [B] = [{b}] or [B, T] = [{b}, {frames}], got {list(t.shape)}")
        if t.ndim == 2 and not self.per_frame_noise:
            raise KinemaError(f"{name} takes one noise level per video (t [B]), got t of shape {list(t.shape)}: set "
                              f"diffusion.per_frame_noise=false")
        unread = cond.present() - self.conditioning_fields
        if unread:
            raise KinemaError(f"{name} cannot use conditioning field(s): {', '.join(sorted(unread))} (it reads "
                              f"{', '.join(sorted(self.conditioning_fields)) or 'none'})")
        if self.text_dim and cond.text is None:
            raise KinemaError(f"this {name} is text-conditioned: cond.text is required (encode '' for unconditional)")
        if cond.text is not None and (cond.text.ndim != 3 or cond.text.shape[0] != b
                                      or cond.text.shape[-1] != self.text_dim):
            raise KinemaError(f"cond.text must be [B, L, {self.text_dim}] with B = {b}, got {list(cond.text.shape)} "
                              f"(text tokens of the wrong width: check model.text_dim and train.text_encoder)")
        if cond.text_mask is not None and (cond.text is None or cond.text_mask.shape != cond.text.shape[:2]):
            raise KinemaError(f"cond.text_mask must be [B, L] like cond.text, got {list(cond.text_mask.shape)}")
        if (cond.frames is None) != (cond.frame_mask is None):
            raise KinemaError("cond.frames and cond.frame_mask go together: give both or neither")
        if cond.frames is not None and (cond.frames.shape != x.shape or cond.frame_mask.dtype != torch.bool
                                        or cond.frame_mask.shape != (b, 1, *x.shape[2:])):
            raise KinemaError(f"cond.frames must be shaped like x {list(x.shape)} and cond.frame_mask a bool "
                              f"[B, 1, T, H, W] = {[b, 1, *x.shape[2:]]}, got {list(cond.frames.shape)} and "
                              f"{cond.frame_mask.dtype} {list(cond.frame_mask.shape)}")
        channels = control_channels(self.controls)
        if cond.control is not None and cond.control.shape != (b, channels, *x.shape[2:]):
            raise KinemaError(f"cond.control must be [B, {channels}, T, H, W] = {[b, channels, *x.shape[2:]]} (maps "
                              f"{', '.join(self.controls)}), got {list(cond.control.shape)}")
        if cond.attributes is not None and cond.attributes.shape != (b, len(self.attributes)):
            raise KinemaError(f"cond.attributes must be [B, {len(self.attributes)}] (knobs "
                              f"{', '.join(self.attributes)}), got {list(cond.attributes.shape)}")
        if cond.labels is not None:
            if cond.labels.shape != (b,):
                raise KinemaError(f"cond.labels must be [B] = [{b}], got {list(cond.labels.shape)}")
            if len(cond.labels) and not (-1 <= int(cond.labels.min()) and int(cond.labels.max()) < self.num_classes):
                raise KinemaError(f"class label out of range: labels must be in 0..{self.num_classes - 1} (model."
                                  f"num_classes={self.num_classes}) or -1 for none, got {cond.labels.tolist()}")

    def null_label_index(self, labels: Tensor) -> Tensor:
        """Labels with -1 (no class) mapped to the extra index `num_classes` of the label embedding."""
        return labels.masked_fill(labels < 0, self.num_classes).long()
