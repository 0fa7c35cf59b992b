"""Temporal consistency and motion metrics without learned weights (chapter 11.1.4, "motion quality").

Optical flow is OpenCV's Farneback method on grey frames (kinema.video.flow); F(i->j)(x) is the displacement (px)
that carries pixel x of frame i to frame j, so frame j warped back is I_j(x + F(i->j)(x)).
- flicker: mean |I_(t+1) - I_t| over pixels, channels and frame pairs, in [0, 1] intensity units;
- warping error (Lai et al. 2018): mean |I_t - warp(I_(t+1))| over pixels that are not occluded,
  occlusion from the forward-backward check of Sundaram et al. 2010:
  |F_f + F_b(x + F_f)|^2 > 0.01 (|F_f|^2 + |F_b(x + F_f)|^2) + 0.5;
- motion consistency score: MCS = exp(-1/(T-2) sum_t mean_x |F(t->t+1) o F(t+1->t+2) - F(t->t+2)|),
  with (F o G)(x) = F(x) + G(x + F(x)) and the mean over pixels whose composition stays in frame;
- motion magnitude and dynamic degree (as in VBench, with Farneback instead of RAFT): per frame
  pair the mean of the largest 5% flow magnitudes; a clip is dynamic when at least a quarter of its
  pairs pass `6 px * min(H, W) / 256`.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from kinema.errors import KinemaError
from kinema.video.flow import FB_ALPHA, FB_BETA, farneback_flow, grey_uint8

DYNAMIC_THRESHOLD_AT_256 = 6.0  # px of flow at a 256 px short side
TEMPORAL_SCORES = ("flicker", "warping_error", "motion_consistency", "motion_magnitude", "dynamic_degree")


def _clips(videos: Tensor, name: str) -> np.ndarray:
    """[B, C, T, H, W] in [-1, 1] -> float32 [B, T, H, W, C] in [0, 1], with a one-line error on bad input."""
    videos = torch.as_tensor(videos)
    if videos.ndim != 5 or videos.shape[2] < 2:
        raise KinemaError(f"{name} needs videos [B, C, T >= 2, H, W], got shape {tuple(videos.shape)}")
    x = np.clip(videos.detach().cpu().float().numpy(), -1.0, 1.0)
    return ((x + 1.0) / 2.0).transpose(0, 2, 3, 4, 1)


def _sample(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """image(x + flow(x)) by bilinear sampling, and where x + flow(x) lies inside the frame."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x, map_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    warped = cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return warped, inside


def temporal_scores(videos: Tensor) -> dict[str, Tensor]:
    """Flicker, warping error, motion consistency, motion magnitude and dynamic degree per clip: {name: [B]}."""
    x = _clips(videos, "temporal metrics")
    _, frames, height, width, _ = x.shape
    threshold = DYNAMIC_THRESHOLD_AT_256 * min(height, width) / 256.0
    out = {name: [] for name in TEMPORAL_SCORES}
    for clip in x:
        grey = [grey_uint8(frame) for frame in clip]
        forward = [farneback_flow(grey[t], grey[t + 1]) for t in range(frames - 1)]
        backward = [farneback_flow(grey[t + 1], grey[t]) for t in range(frames - 1)]
        errors, weights, magnitudes = [], [], []
        for t in range(frames - 1):
            warped, inside = _sample(clip[t + 1], forward[t])
            back_at_target, _ = _sample(backward[t], forward[t])
            mismatch = np.sum((forward[t] + back_at_target) ** 2, axis=-1)
            bound = FB_ALPHA * (np.sum(forward[t] ** 2, -1) + np.sum(back_at_target ** 2, -1)) + FB_BETA
            visible = inside & (mismatch <= bound)
            errors.append(np.abs(clip[t] - warped).mean(axis=-1)[visible].sum())
            weights.append(visible.sum())
            speed = np.linalg.norm(forward[t], axis=-1).ravel()
            magnitudes.append(np.sort(speed)[-max(1, speed.size // 20):].mean())
        composition = []
        for t in range(frames - 2):
            skip = farneback_flow(grey[t], grey[t + 2])
            second, inside = _sample(forward[t + 1], forward[t])
            gap = np.linalg.norm(forward[t] + second - skip, axis=-1)
            composition.append(gap[inside].mean() if inside.any() else 0.0)
        out["flicker"].append(np.abs(np.diff(clip, axis=0)).mean())
        out["warping_error"].append(sum(errors) / sum(weights) if sum(weights) else np.nan)
        out["motion_consistency"].append(np.exp(-np.mean(composition)) if composition else np.nan)
        out["motion_magnitude"].append(np.mean(magnitudes))
        out["dynamic_degree"].append(float(np.mean(np.array(magnitudes) > threshold) >= 0.25))
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in out.items()}
