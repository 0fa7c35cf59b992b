"""Frame quality scores for filtering shots (chapter 11.1.4, quality control: blur, motion, compression).

All scores use OpenCV on uint8 frames:
- sharpness: variance of the Laplacian of the grey frame resized to `SHARPNESS_LINES` lines on its
  shorter side (area averaging down, bilinear up) and smoothed by a Gaussian of `SHARPNESS_SIGMA`
  pixels there, so that detail near the working resolution's limit, which depends on how the
  frame was scaled before, does not count: the same picture scores the same (within a few
  percent) at any resolution above the working one (low = blurred or flat);
- brightness: mean grey level in [0, 1];
- motion: mean Farneback optical-flow magnitude between consecutive frames, in frame widths per
  second (0 = static; a pan across the whole frame in one second = 1);
- blockiness: mean grey-level step across the 8-pixel block grid of DCT codecs divided by the step
  elsewhere (about 1 for clean video, larger where compression shows blocks); both means get one
  grey level added, so a flat frame scores 1.
"""

from __future__ import annotations

import cv2
import numpy as np

BLOCK = 8  # DCT block size of MPEG-family codecs
SHARPNESS_LINES = 128  # working resolution of the sharpness score (shorter side, pixels)
SHARPNESS_SIGMA = 1.5  # Gaussian smoothing at the working resolution (pixels)


def grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 grey frame `[H, W]` from an RGB frame `[H, W, 3]`."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def sharpness(grey_frame: np.ndarray) -> float:
    """Variance of the Laplacian at `SHARPNESS_LINES` lines, lightly smoothed (grey levels squared): higher is sharper."""
    height, width = grey_frame.shape
    scale = SHARPNESS_LINES / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    working = cv2.resize(grey_frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    smooth = cv2.GaussianBlur(working.astype(np.float64), (0, 0), SHARPNESS_SIGMA)
    return float(cv2.Laplacian(smooth, cv2.CV_64F).var())


def brightness(grey_frame: np.ndarray) -> float:
    """Mean grey level in [0, 1]."""
    return float(grey_frame.mean()) / 255.0


def motion(previous: np.ndarray, current: np.ndarray, fps: float) -> float:
    """Mean optical-flow magnitude from `previous` to `current` grey frames, in frame widths per second."""
    flow = cv2.calcOpticalFlowFarneback(previous, current, None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
    return float(np.linalg.norm(flow, axis=-1).mean()) / current.shape[1] * fps


def blockiness(grey_frame: np.ndarray) -> float:
    """Mean step across 8-pixel block edges over the mean step inside blocks (1 = no visible blocking)."""
    image = grey_frame.astype(np.float32)
    ratios = []
    for steps in (np.abs(np.diff(image, axis=1)), np.abs(np.diff(image, axis=0)).T):  # columns, then rows
        if steps.shape[1] < 2 * BLOCK:
            continue
        on_edge = (np.arange(steps.shape[1]) + 1) % BLOCK == 0  # step between pixel 8k-1 and 8k
        ratios.append((steps[:, on_edge].mean() + 1.0) / (steps[:, ~on_edge].mean() + 1.0))
    return float(np.mean(ratios)) if ratios else 1.0
