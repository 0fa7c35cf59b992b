"""Known pixels: the frames, regions or pixels of the videos to make that are given, and the ways a sampler keeps them
(chapter 11.3.2 image animation, 11.4 interpolation, 11.5 inpainting and editing; MCVD, Voleti et al. 2022).

A frame-conditioned model reads them as input (`cond.frames`, `cond.frame_mask`) and takes wholly given frames at
time 0; every model keeps them by replacement: the clean estimate x0_hat is replaced by the given values where they
are known, so each sampler step moves the known pixels along the forward process of their true values and the last
step returns them exactly (Ho et al. 2022, "Video diffusion models", sec. 3.1, in x0 form); reconstruction guidance
additionally pulls the unknown pixels toward agreement with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kinema.diffusion.guidance import DenoiseFn, reconstruction_guidance
from kinema.errors import KinemaError


@dataclass
class KnownPixels:
    """Given values `video` [B, C, T, H, W] (in [-1, 1]; anything where not known) where `mask` [B, 1, T, H, W]
    (bool) is True."""

    video: Tensor
    mask: Tensor

    def __post_init__(self):
        if self.video.ndim != 5 or self.mask.dtype != torch.bool or \
                tuple(self.mask.shape) != (self.video.shape[0], 1, *self.video.shape[2:]):
            raise KinemaError(f"known pixels: video must be [B, C, T, H, W] and mask a bool [B, 1, T, H, W] of the "
                              f"same B, T, H, W, got {list(self.video.shape)} and {self.mask.dtype} "
                              f"{list(self.mask.shape)}")
        self.video = torch.where(self.mask, self.video, torch.zeros((), dtype=self.video.dtype))

    @classmethod
    def frames(cls, frames: dict[int, Tensor], num_frames: int, batch: int = 1) -> KnownPixels:
        """Whole frames given at chosen indices: {index: frame [C, H, W]} (negative indices count from the end)."""
        if not frames:
            raise KinemaError("known frames: give at least one frame")
        first = next(iter(frames.values()))
        video = first.new_zeros(batch, first.shape[0], num_frames, *first.shape[1:])
        mask = torch.zeros(batch, 1, num_frames, *first.shape[1:], dtype=torch.bool)
        for index, frame in frames.items():
            if not -num_frames <= index < num_frames:
                raise KinemaError(f"keyframe index {index} is beyond the video's {num_frames} frames "
                                  f"(0..{num_frames - 1})")
            if frame.shape != first.shape:
                raise KinemaError(f"keyframe {index} is {list(frame.shape)}, the others {list(first.shape)}: give "
                                  f"frames of one size")
            video[:, :, index], mask[:, :, index] = frame, True
        return cls(video, mask)

    @property
    def whole_frames(self) -> Tensor:
        """[B, T] bool: frames given entirely."""
        return self.mask.flatten(3).all(dim=3)[:, 0]

    @property
    def one_frame(self) -> bool:
        """True when each video is given one whole frame and nothing else (an image to animate)."""
        given = self.mask.flatten(3).any(dim=3)[:, 0]  # [B, T]: frames with any pixel given
        return bool((given.sum(1) == 1).all() and (given == self.whole_frames).all())

    def window(self, start: int, stop: int) -> KnownPixels:
        """The frames start..stop-1."""
        return KnownPixels(self.video[:, :, start:stop], self.mask[:, :, start:stop])

    def to(self, device: torch.device | str) -> KnownPixels:
        return KnownPixels(self.video.to(device), self.mask.to(device))

    def nearest_frames(self) -> Tensor:
        """[B, C, T, H, W]: every frame replaced by the nearest wholly given frame (the still video that motion
        strength scales from); frames of a video with none given stay zero."""
        whole = self.whole_frames
        out = torch.zeros_like(self.video)
        positions = torch.arange(whole.shape[1], device=whole.device)
        for b in range(len(whole)):
            given = positions[whole[b]]
            if len(given):
                nearest = given[(positions[:, None] - given[None]).abs().argmin(dim=1)]
                out[b] = self.video[b][:, nearest]
        return out

    def keeping(self, denoise_fn: DenoiseFn, guidance: float = 0.0) -> DenoiseFn:
        """`denoise_fn` whose x0_hat holds the known values where they are known (replacement), after `guidance` > 0
        steps of reconstruction guidance on ||mask (x0_hat - known)||^2 (a backward pass per step)."""
        mask, video = self.mask, self.video
        if guidance > 0:
            denoise_fn = reconstruction_guidance(
                denoise_fn, lambda x0: (mask * (x0 - video)).square().flatten(1).sum(1), guidance)

        def kept(x_t: Tensor, t: Tensor) -> Tensor:
            return torch.where(mask, video.to(x_t.dtype), denoise_fn(x_t, t))

        return kept

    def scaling_motion(self, denoise_fn: DenoiseFn, strength: float) -> DenoiseFn:
        """x0_hat = still + strength (x0_hat - still), `still` the nearest given frames: 0 freezes them, 1 leaves the
        model's motion, more exaggerates it (the still video plays the unconditional role of guidance)."""
        still = self.nearest_frames()

        def scaled(x_t: Tensor, t: Tensor) -> Tensor:
            return torch.lerp(still.to(x_t.dtype), denoise_fn(x_t, t), strength)

        return scaled
