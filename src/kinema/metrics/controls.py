"""Controls that say how much an FVD means: real-vs-real split baseline, shuffled-time control, domain checks.

A Fréchet distance between small sets is biased upwards and noisy (Chong & Forsyth 2020, "Effectively
Unbiased FID and Inception Score"), and a feature network only sees what it was trained to see
(Ge et al. 2024, "On the Content Bias in Fréchet Video Distance"). So next to FVD, `kinema eval` reports:

- the split baseline: FVD between two random halves of the real set, over several splits. An FVD
  inside its range cannot tell the generated set from another sample of real video. Each half has
  N/2 clips, so this range sits a little above the noise of an N-vs-N FVD;
- the shuffled-time control: FVD of the real set against the same clips with their frames shuffled.
  If it is not clearly above the split baseline, the features cannot see time order on this data;
- domain checks against what the feature network recorded about its training data (frame counts,
  sizes, clip-feature mean and spread).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from kinema.metrics.distances import frechet_distance_from_features

MIN_SPLIT_CLIPS = 4  # two halves of at least two clips each
OUT_OF_DOMAIN_FRACTION = 0.5  # warn when more real clips than this lie beyond the training clips' 99th percentile


def shuffled_in_time(videos: Tensor, seed: int = 0) -> Tensor:
    """The clips [B, C, T, H, W] with their frames in a random order (one per clip, never the original one)."""
    generator = torch.Generator().manual_seed(seed)
    frames = videos.shape[2]
    out = []
    for video in videos:
        order = torch.randperm(frames, generator=generator)
        while frames > 1 and bool((order == torch.arange(frames)).all()):
            order = torch.randperm(frames, generator=generator)
        out.append(video[:, order])
    return torch.stack(out)


def split_baseline(features: np.ndarray, splits: int = 5, seed: int = 0) -> dict:
    """FVD between two random halves of real features [N, D] over `splits` splits: mean, std, min, max, values."""
    if len(features) < MIN_SPLIT_CLIPS:
        return {"value": "unavailable", "reason": f"needs at least {MIN_SPLIT_CLIPS} real clips, got {len(features)}"}
    rng = np.random.default_rng(seed)
    half = len(features) // 2
    values = []
    for _ in range(max(1, splits)):
        order = rng.permutation(len(features))
        values.append(frechet_distance_from_features(features[order[:half]], features[order[half: 2 * half]]))
    return {"value": float(np.mean(values)), "std": float(np.std(values)), "min": float(np.min(values)),
            "max": float(np.max(values)), "splits": len(values), "clips_per_half": half}


def shuffled_control(real: np.ndarray, shuffled: np.ndarray) -> dict:
    """FVD of real clip features against the features of the same clips shuffled in time."""
    return {"value": frechet_distance_from_features(real, shuffled)}


def domain_warnings(metadata: dict, shape: tuple[int, ...], features: np.ndarray) -> tuple[dict, list[str]]:
    """Compare real clips ([C, T, H, W], features [N, D]) with the feature net's recorded training domain, if any."""
    domain, stats = metadata.get("training_domain"), metadata.get("domain_statistics")
    if not domain or not stats:
        return {"known": False}, []
    warnings = []
    frames, height, width = shape[1:]
    low, high = min(domain["num_frames"]), max(domain["num_frames"])
    if not low <= frames <= high:
        warnings.append(f"clips have {frames} frames, outside the {low}-{high} frames the features were trained on")
    smallest, largest = min(domain["sizes"]), max(domain["sizes"])
    if min(height, width) < smallest or max(height, width) > 2 * largest:
        warnings.append(f"clips are {height}x{width}, far from the {smallest}-{largest} px the features were "
                        f"trained on (they are resized to {smallest}x{smallest})")
    mean, std = np.asarray(stats["feature_mean"]), np.asarray(stats["feature_std"])
    z = np.sqrt((((features - mean) / std) ** 2).mean(axis=1))
    outside = float((z > stats["rms_z_p99"]).mean())
    if outside > OUT_OF_DOMAIN_FRACTION:
        warnings.append(f"{outside:.0%} of the real clips have features farther from the training data than 99% of "
                        f"training clips (RMS z > {stats['rms_z_p99']:.3g}): the data are outside the features' "
                        "domain, so FVD may miss differences that matter here")
    return {"known": True, "median_rms_z": float(np.median(z)), "training_rms_z_p99": stats["rms_z_p99"],
            "fraction_beyond_p99": outside}, warnings


def separation_warnings(fvd: float, baseline: dict, control: dict, count: int) -> list[str]:
    """Warnings when the measured FVD or the shuffled control is not above the real-vs-real split baseline."""
    if isinstance(baseline["value"], str):
        return [f"only {count} clips per set: too few to estimate the real-vs-real baseline ({baseline['reason']})"]
    warnings = []
    if control["value"] <= baseline["max"]:
        warnings.append(f"the shuffled-time control ({control['value']:.4g}) is within the real-vs-real split "
                        f"baseline (up to {baseline['max']:.4g}): these features cannot see time order on this data")
    if fvd <= baseline["max"]:
        warnings.append(f"FVD {fvd:.4g} is within the real-vs-real split baseline ({baseline['value']:.4g} ± "
                        f"{baseline['std']:.3g}, up to {baseline['max']:.4g}): {count} clips per set are too few "
                        "to separate this set from real video")
    return warnings
