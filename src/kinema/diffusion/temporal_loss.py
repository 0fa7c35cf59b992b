"""Temporal regularisers of a video estimate against its target (chapter 11.1.1, "temporal consistency losses").

Each term compares how the estimate x̂ changes from frame t to t+1 with how the target x changes, so it is
0 when x̂ = x, and it grows with flicker (changes the target does not make):
- pixel:   |(x̂_{t+1} - x̂_t) - (x_{t+1} - x_t)|, the mean over channels and pixels;
- feature: the same on per-frame features phi of a frozen network (Kinema's shipped video feature network,
  kinema.metrics.features, by default), |(phi(x̂_{t+1}) - phi(x̂_t)) - (phi(x_{t+1}) - phi(x_t))|, the mean
  over features; no gradient reaches the network's weights;
- flow:    along the target's motion: with F = F(t->t+1) the target's flow (Farneback, without gradient, or
  given), the warping residual r(v)_t = v_t - v_{t+1}(x + F(x)) (Lai et al. 2018) of the estimate against
  that of the target, |r(x̂)_t - r(x)_t|, the mean over channels and the pixels that stay visible
  (forward-backward check, kinema.video.flow). Where the target's frames are exactly warped by its flow,
  r(x)_t = 0 and this is the warping error of the estimate under the true motion.
Per frame pair the terms are summed with their weights; `pair_weight` ([B] or [B, T-1]) then weights each
sample's (or pair's) value and the loss is the mean over the batch and the pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from functools import lru_cache

import torch
from einops import rearrange
from torch import Tensor, nn

from kinema.errors import KinemaError
from kinema.video.flow import clip_flows, visible_mask, warp

TEMPORAL_TERMS = ("pixel", "feature", "flow")


def temporal_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """{term: weight} from a mapping or a config dataclass, checked: known terms only, weights >= 0."""
    values = asdict(weights) if is_dataclass(weights) else dict(weights or {})
    for term, weight in values.items():
        if term not in TEMPORAL_TERMS:
            raise KinemaError(f"unknown temporal loss term '{term}' (choose from {', '.join(TEMPORAL_TERMS)})")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0:
            raise KinemaError(f"temporal loss weight '{term}' must be a number >= 0, got {weight!r}")
    return {term: float(weight) for term, weight in values.items() if weight > 0}


@lru_cache(maxsize=4)
def shipped_feature_net(device: str = "cpu") -> nn.Module:
    """Kinema's shipped video feature network (kinema.metrics.features), frozen, on `device`; loaded once."""
    from kinema.metrics.features import load_feature_net

    return load_feature_net()[0].to(device)


def _differences(x: Tensor) -> Tensor:
    """x_{t+1} - x_t along dim 2 ([B, C, T, ...] -> [B, C, T-1, ...])."""
    return x[:, :, 1:] - x[:, :, :-1]


def pixel_term(estimate: Tensor, target: Tensor) -> Tensor:
    """Frame-difference consistency per frame pair [B, T-1]."""
    return (_differences(estimate) - _differences(target)).abs().mean(dim=(1, 3, 4))


def feature_term(estimate: Tensor, target: Tensor, feature_net: nn.Module) -> Tensor:
    """Frame-difference consistency of frozen per-frame features (`feature_net.frame_features`) per pair [B, T-1]."""
    if estimate.shape[1] != 3:
        raise KinemaError(f"the feature temporal loss needs RGB videos [B, 3, T, H, W], got {tuple(estimate.shape)}")
    feature_net.requires_grad_(False).eval()

    def features(video: Tensor) -> Tensor:
        frames = feature_net.frame_features(rearrange(video, "b c t h w -> (b t) c h w"))
        return rearrange(frames, "(b t) d -> b d t", b=video.shape[0])

    with torch.no_grad():
        wanted = _differences(features(target))
    return (_differences(features(estimate)) - wanted.to(estimate.dtype)).abs().mean(dim=1)


def flow_term(estimate: Tensor, target: Tensor, forward: Tensor, backward: Tensor) -> Tensor:
    """Warping-residual consistency along the target's flows F(t->t+1), F(t+1->t) [B, T-1, 2, H, W]: [B, T-1]."""
    batch, _, frames, height, width = estimate.shape
    if forward.shape != (batch, frames - 1, 2, height, width) or backward.shape != forward.shape:
        raise KinemaError(f"flows must be [B, T-1, 2, H, W] = {[batch, frames - 1, 2, height, width]}, "
                          f"got {list(forward.shape)} and {list(backward.shape)}")
    forward, backward = (rearrange(f.float(), "b t k h w -> (b t) k h w") for f in (forward, backward))
    visible = visible_mask(forward, backward).to(estimate.dtype)  # [(B T-1), H, W]

    def residual(video: Tensor) -> Tensor:
        now = rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w")
        after = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w")
        return now - warp(after, forward.to(video.dtype))

    with torch.no_grad():
        wanted = residual(target)
    gap = (residual(estimate) - wanted.to(estimate.dtype)).abs().mean(dim=1) * visible
    per_pair = gap.sum(dim=(1, 2)) / visible.sum(dim=(1, 2)).clamp(min=1)
    return rearrange(per_pair, "(b t) -> b t", b=batch)


def temporal_loss(estimate: Tensor, target: Tensor, weights: Mapping[str, float], *,
                  pair_weight: Tensor | None = None, flows: tuple[Tensor, Tensor] | None = None,
                  feature_net: nn.Module | None = None) -> Tensor:
    """Weighted pixel / feature / flow frame-consistency loss (chapter 11.1.1) of `estimate` vs `target` -> scalar.

    estimate, target: [B, C, T >= 2, H, W] in [-1, 1] (gradients flow into `estimate` only); weights: {term: w}
    or a config dataclass (terms with w = 0 are skipped); pair_weight: [B] or [B, T-1] weights (e.g. by noise
    level); flows: the target's (F(t->t+1), F(t+1->t)) [B, T-1, 2, H, W] in px when known, else Farneback;
    feature_net: a network with `frame_features` (default: the shipped one), used frozen."""
    weights = temporal_weights(weights)
    if estimate.ndim != 5 or estimate.shape[2] < 2 or estimate.shape != target.shape:
        raise KinemaError(f"temporal loss needs estimate and target videos [B, C, T >= 2, H, W] of one shape, "
                          f"got {tuple(estimate.shape)} and {tuple(target.shape)}")
    target = target.detach()
    per_pair = estimate.new_zeros(estimate.shape[0], estimate.shape[2] - 1)
    if "pixel" in weights:
        per_pair = per_pair + weights["pixel"] * pixel_term(estimate, target)
    if "feature" in weights:
        net = feature_net if feature_net is not None else shipped_feature_net(str(estimate.device))
        per_pair = per_pair + weights["feature"] * feature_term(estimate, target, net)
    if "flow" in weights:
        forward, backward = flows if flows is not None else clip_flows(target)
        per_pair = per_pair + weights["flow"] * flow_term(estimate, target, forward, backward)
    if pair_weight is not None:
        pair_weight = pair_weight.to(per_pair)
        if pair_weight.shape not in (per_pair.shape[:1], per_pair.shape):
            raise KinemaError(f"pair_weight must be [B] or [B, T-1] = {list(per_pair.shape)}, "
                              f"got {list(pair_weight.shape)}")
        per_pair = per_pair * (pair_weight[:, None] if pair_weight.ndim == 1 else pair_weight)
    return per_pair.mean()
