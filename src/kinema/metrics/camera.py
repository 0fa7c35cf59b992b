"""Camera motion of videos measured against the asked camera (chapter 11.3 camera control, 11.1.3 global motion).

`estimate_camera` fits one similarity per frame step to each video's grey frames (its grey range stretched, so
dim or flat clips keep their detail at 8 bits): an affine fit (`kinema.video.motion.fit_affine`) to the Farneback
flow (`kinema.video.flow`) over the pixels that pass the forward-backward check, refined on the frames themselves
by robust Gauss-Newton alignment (`align_affine`: pixels of moving objects drop out), read as pan, tilt, zoom and
roll (`kinema.control.camera`). A robust flow fit (`robust_fit_affine`) as the start was measured no better: on
small frames Farneback smears an object's motion over its surroundings, where the alignment sees it sharply. Phase
correlation (cv2.phaseCorrelate) was measured for pans and is less accurate on 32x32 clips: see
benchmarks/camera_control.py. Per clip, `camera_scores` gives
- `camera_error`: the endpoint error between the asked and the estimated camera flows, in px per frame step,
  averaged over the pixels and steps;
- `camera_direction`: 1 when the estimate moves the asked way along the asked camera's dominant motion (the one of
  pan, tilt, zoom and roll whose flow is largest on average over the frame), else 0; NaN when the asked camera
  stands still (no direction to match).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from kinema.control.camera import NO_MOTION, camera_flow, camera_from_matrix
from kinema.errors import KinemaError
from kinema.video.flow import clip_flows, stretched_grey, visible_mask
from kinema.video.motion import align_affine, fit_affine

CAMERA_SCORES = ("camera_error", "camera_direction")


def estimate_camera(videos: Tensor, refine: bool = True) -> Tensor:
    """Camera steps [B, T-1, 4] (pan px, tilt px, zoom factor, roll deg per step) of videos [B, C, T, H, W];
    `refine=False` stops at the flow fit: 8x faster, 4-8x less accurate on the camera-motion dataset."""
    if videos.ndim != 5 or videos.shape[2] < 2:
        raise KinemaError(f"camera estimation needs videos [B, C, T >= 2, H, W], got shape {tuple(videos.shape)}")
    grey = stretched_grey(videos).cpu()  # [B, 1, T, H, W]
    forward, backward = (flow.flatten(0, 1).double() for flow in clip_flows(grey))  # [B (T-1), 2, H, W] each
    seen = visible_mask(forward, backward).double()
    matrix = fit_affine(forward, seen)
    if refine:
        frames = rearrange(grey.double(), "b c t h w -> b t c h w")
        matrix = align_affine(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1), matrix, seen)
    return camera_from_matrix(matrix).view(videos.shape[0], videos.shape[2] - 1, 4).to(videos.device, torch.float32)


def signed_motion(camera: Tensor) -> Tensor:
    """Mean pan, tilt, log zoom and roll of camera steps [B, T-1, 4] -> [B, 4] (each 0 when that motion is absent)."""
    return torch.cat([camera[..., :2], camera[..., 2:3].log(), camera[..., 3:]], dim=-1).mean(1)


def dominant_motion(camera: Tensor, height: int, width: int) -> Tensor:
    """Which of pan, tilt, zoom, roll moves the picture most (mean flow length over the frame and steps): camera
    steps [B, T-1, 4] -> index [B] into (pan, tilt, zoom, roll)."""
    parts = torch.eye(4, dtype=torch.bool, device=camera.device)
    alone = torch.where(parts, camera[..., None, :], camera.new_tensor(NO_MOTION))  # [B, T-1, 4 parts, 4]
    return camera_flow(alone, height, width).norm(dim=-3).mean((-2, -1)).mean(1).argmax(dim=-1)


def camera_errors(asked: Tensor, estimated: Tensor, height: int, width: int) -> dict[str, Tensor]:
    """Per clip {"camera_error", "camera_direction"} of estimated against asked camera steps [B, T-1, 4] in frames
    of height x width (see the module docstring)."""
    asked, estimated = asked.double().cpu(), estimated.double().cpu()
    error = (camera_flow(asked, height, width) - camera_flow(estimated, height, width)).norm(dim=-3)
    index = dominant_motion(asked, height, width)[:, None]
    want, got = signed_motion(asked).gather(1, index)[:, 0].sign(), signed_motion(estimated).gather(1, index)[:, 0]
    direction = torch.where(want == 0, torch.nan, (got.sign() == want).double())
    return {"camera_error": error.mean((1, 2, 3)).float(), "camera_direction": direction.float()}


def camera_scores(videos: Tensor, asked: Tensor) -> dict[str, Tensor]:
    """Per clip {"camera_error": [B] px per step, "camera_direction": [B] 1 or 0, NaN for an asked still camera}
    of videos [B, C, T, H, W] against the asked camera steps [B, T-1, 4] (see the module docstring)."""
    batch, _, frames, height, width = videos.shape
    if asked.shape != (batch, frames - 1, 4):
        raise KinemaError(f"asked camera must be [{batch}, {frames - 1}, 4] for videos {tuple(videos.shape)}, "
                          f"got {tuple(asked.shape)}")
    return camera_errors(asked, estimate_camera(videos), height, width)
