"""Optical flow of clips and flow warping (chapter 11.1.1: flow-warp consistency; Lai et al. 2018).

A flow F(i->j) [.., 2, H, W] holds the displacement in pixels (dx, dy) that carries pixel x of frame i to
frame j; warping frame j back onto frame i is backward warping, I_j(x + F(i->j)(x)), by bilinear sampling
(grid_sample, align_corners=True: pixel centres at integer coordinates) with the border pixels repeated
outside the frame. A pixel of frame i is visible in frame j when x + F lies inside the frame and the
forward-backward check of Sundaram et al. 2010 passes:
    |F_f + F_b(x + F_f)|^2 <= 0.01 (|F_f|^2 + |F_b(x + F_f)|^2) + 0.5,
with F_f = F(i->j) and F_b = F(j->i); elsewhere it is occluded (or leaves the frame).
Flow is OpenCV's Farneback method on grey frames.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.errors import KinemaError

FB_ALPHA, FB_BETA = 0.01, 0.5  # forward-backward occlusion test (Sundaram et al. 2010)
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights of R, G, B


def grey_uint8(frame: np.ndarray) -> np.ndarray:
    """[H, W, C] in [0, 1] -> uint8 grey [H, W] (ITU-R 601 luma for RGB, the channel mean otherwise)."""
    grey = frame.mean(axis=-1) if frame.shape[-1] != 3 else frame @ np.array(LUMA, np.float32)
    return np.round(grey * 255.0).astype(np.uint8)


def stretched_grey(videos: Tensor) -> Tensor:
    """Grey clips [B, 1, T, H, W] of videos [B, C, T, H, W] in [-1, 1], each clip's grey range stretched to [-1, 1]
    (one map for all its frames, so brightness constancy holds): flow on a dim or flat clip uses every 8-bit level."""
    videos = videos.detach().float()
    grey = (torch.einsum("bcthw,c->bthw", videos, videos.new_tensor(LUMA)) if videos.shape[1] == 3
            else videos.mean(1))[:, None]
    low, high = grey.amin(dim=(1, 2, 3, 4), keepdim=True), grey.amax(dim=(1, 2, 3, 4), keepdim=True)
    return (grey - low) / (high - low).clamp(min=1e-6) * 2 - 1


def farneback_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dense flow [H, W, 2] (dx, dy px) from uint8 grey frame `first` to `second` (Farneback 2003, OpenCV)."""
    side = min(first.shape)
    levels = max(1, min(3, int(np.log2(max(side, 8) / 8))))
    window = max(5, min(15, side // 4) | 1)
    return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, levels, window, 3, 5, 1.1, 0)


def _check_flow(flow: Tensor, height: int, width: int) -> None:
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[2:] != (height, width):
        raise KinemaError(f"flow must be [N, 2, {height}, {width}] (dx, dy in px), got shape {tuple(flow.shape)}")


def _grid(flow: Tensor) -> Tensor:
    """Sampling grid [N, H, W, 2] in grid_sample's [-1, 1] coordinates for the points x + flow(x)."""
    height, width = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, device=flow.device, dtype=flow.dtype),
                            torch.arange(width, device=flow.device, dtype=flow.dtype), indexing="ij")
    x = (xs + flow[:, 0]) * (2.0 / max(width - 1, 1)) - 1.0
    y = (ys + flow[:, 1]) * (2.0 / max(height - 1, 1)) - 1.0
    return torch.stack([x, y], dim=-1)


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward warp: image(x + flow(x)) for images [N, C, H, W] and flows [N, 2, H, W] (px), border repeated."""
    if image.ndim != 4:
        raise KinemaError(f"warp needs images [N, C, H, W], got shape {tuple(image.shape)}")
    _check_flow(flow, *image.shape[-2:])
    grid = _grid(flow.to(torch.promote_types(image.dtype, torch.float32)))
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def inside_frame(flow: Tensor) -> Tensor:
    """Where x + flow(x) lies inside the frame: bool [N, H, W] for flows [N, 2, H, W]."""
    height, width = flow.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, device=flow.device), torch.arange(width, device=flow.device),
                            indexing="ij")
    x, y = xs + flow[:, 0], ys + flow[:, 1]
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def visible_mask(forward: Tensor, backward: Tensor) -> Tensor:
    """Pixels of frame i seen again in frame j: bool [N, H, W] from F(i->j) and F(j->i) [N, 2, H, W] (Sundaram 2010)."""
    _check_flow(backward, *forward.shape[-2:])
    back = warp(backward, forward)  # F_b(x + F_f(x))
    mismatch = (forward + back).square().sum(dim=1)
    bound = FB_ALPHA * (forward.square().sum(dim=1) + back.square().sum(dim=1)) + FB_BETA
    return inside_frame(forward) & (mismatch <= bound)


@torch.no_grad()
def clip_flows(videos: Tensor) -> tuple[Tensor, Tensor]:
    """Farneback flows between consecutive frames of videos [B, C, T >= 2, H, W] in [-1, 1]: (F(t->t+1), F(t+1->t)),
    each [B, T-1, 2, H, W] in px, float32 on the videos' device."""
    if videos.ndim != 5 or videos.shape[2] < 2:
        raise KinemaError(f"clip flows need videos [B, C, T >= 2, H, W], got shape {tuple(videos.shape)}")
    frames = ((videos.detach().float().clamp(-1, 1).cpu().numpy() + 1.0) / 2.0).transpose(0, 2, 3, 4, 1)
    forward, backward = [], []
    for clip in frames:
        grey = [grey_uint8(frame) for frame in clip]
        forward.append([farneback_flow(a, b) for a, b in zip(grey[:-1], grey[1:])])
        backward.append([farneback_flow(b, a) for a, b in zip(grey[:-1], grey[1:])])
    return _stacked(forward, videos.device), _stacked(backward, videos.device)


def _stacked(flows: list[list[np.ndarray]], device: torch.device) -> Tensor:
    """Per-clip lists of [H, W, 2] flows -> [B, T-1, 2, H, W]."""
    return torch.from_numpy(np.asarray(flows)).permute(0, 1, 4, 2, 3).to(device)
