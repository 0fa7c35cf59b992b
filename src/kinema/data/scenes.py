"""Scene-cut detection and shot splitting (chapter 11.1.4, quality control: "场景切换检测").

A cut is a frame whose colour histogram jumps away from the previous frame's: the Bhattacharyya
distance between hue-saturation-value histograms of small copies (0 = same colours, 1 = disjoint)
must exceed `threshold` and be `contrast` times the median distance of the frames just before, so
a fast pan, whose every frame differs a little, is not cut at each frame. Cuts closer together
than `min_gap` frames keep only the first (a flash or a dissolve is one cut, not several).
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

HISTOGRAM_BINS = (16, 4, 4)  # hue, saturation, value


def hsv_histogram(rgb: np.ndarray) -> np.ndarray:
    """Normalised hue-saturation-value histogram of one uint8 RGB frame `[H, W, 3]`."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, list(HISTOGRAM_BINS), [0, 180, 0, 256, 0, 256])
    return cv2.normalize(histogram, histogram).flatten()


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance between two histograms, in [0, 1]."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


class CutDetector:
    """Online cut detector: feed frames in order, `update` says whether each one starts a new shot."""

    def __init__(self, threshold: float = 0.35, contrast: float = 3.0, min_gap: int = 4, history: int = 8):
        self.threshold = threshold
        self.contrast = contrast
        self.min_gap = min_gap
        self.recent: deque[float] = deque(maxlen=history)
        self.previous: np.ndarray | None = None
        self.since_cut = 0

    def update(self, rgb: np.ndarray) -> bool:
        """Take the next frame; True if a cut lies between it and the previous frame."""
        histogram = hsv_histogram(rgb)
        distance = 0.0 if self.previous is None else histogram_distance(self.previous, histogram)
        self.previous = histogram
        self.since_cut += 1
        typical = float(np.median(self.recent)) if self.recent else 0.0
        cut = distance > self.threshold and distance > self.contrast * typical and self.since_cut >= self.min_gap
        self.recent.append(distance)
        if cut:
            self.since_cut = 0
        return cut


def detect_cuts(frames, threshold: float = 0.35, contrast: float = 3.0, min_gap: int = 4) -> list[int]:
    """Indices of the frames that start a new shot, for an iterable of uint8 RGB frames."""
    detector = CutDetector(threshold, contrast, min_gap)
    return [index for index, rgb in enumerate(frames) if detector.update(rgb)]


def split_shots(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """Shots as [start, end) frame ranges between the cuts."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < num_frames), num_frames]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
