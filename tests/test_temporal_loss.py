"""Temporal regularisers (kinema.diffusion.temporal_loss) and their place in the diffusion loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kinema.config import TemporalLossConfig, load_config
from kinema.data.physics_balls import BouncingBalls, BouncingBallsConfig
from kinema.diffusion import DiffusionLoss, build_schedule
from kinema.diffusion.temporal_loss import TEMPORAL_TERMS, shipped_feature_net, temporal_loss
from kinema.errors import KinemaError
from kinema.metrics.features import VideoFeatureNet, VideoFeatureNetConfig
from kinema.video.flow import warp


def _balls(count: int = 2, frames: int = 6, size: int = 16) -> torch.Tensor:
    data = BouncingBalls(BouncingBallsConfig(num_frames=frames, size=size, radius_range=(2.5, 3.5)), length=count)
    return torch.stack([data[i]["video"] for i in range(count)])


def _flicker(video: torch.Tensor, amplitude: float) -> torch.Tensor:
    """The video with its brightness going up and down by `amplitude` from frame to frame."""
    signs = torch.tensor([(-1.0) ** t for t in range(video.shape[2])])
    return video + amplitude * signs[None, None, :, None, None]


@pytest.mark.parametrize("term", TEMPORAL_TERMS)
def test_each_term_is_zero_on_the_target_and_grows_with_flicker(term):
    target = _balls()
    values = [temporal_loss(_flicker(target, a), target, {term: 1.0}).item() for a in (0.0, 0.05, 0.1, 0.2)]
    assert values[0] < 1e-6
    assert values[1] > 1e-3 and values[1] < values[2] < values[3]


def test_the_feature_network_stays_frozen_and_the_estimate_gets_gradients():
    target = _balls()
    estimate = _flicker(target, 0.1).requires_grad_()
    temporal_loss(estimate, target, {"feature": 1.0}).backward()
    assert estimate.grad.abs().sum() > 0
    net = shipped_feature_net("cpu")
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    own = VideoFeatureNet(VideoFeatureNetConfig())  # a trainable network given by the caller is used frozen too
    temporal_loss(estimate, target, {"feature": 1.0}, feature_net=own).backward()
    assert all(p.grad is None for p in own.parameters())


def _warped_clip(texture: torch.Tensor, flow: torch.Tensor, frames: int) -> torch.Tensor:
    """A clip whose frame t is frame t+1 warped by `flow` = F(t->t+1): x_t(x) = x_(t+1)(x + F(x))."""
    clip = [texture]
    for _ in range(frames - 1):
        clip.insert(0, warp(clip[0], flow))
    return torch.stack(clip, dim=2)


def test_the_flow_term_is_zero_for_a_clip_warped_by_the_targets_flow():
    """Two different textures moving with the same flow: they differ frame by frame (the pixel term sees it), yet
    along the motion neither changes, so the flow term is zero; moved by another flow it is not."""
    size, frames = 16, 4
    generator = torch.Generator().manual_seed(0)
    a, b = (F.interpolate(torch.rand(1, 3, 4, 4, generator=generator) * 2 - 1, size=(size, size), mode="bicubic")
            for _ in range(2))
    flow = torch.zeros(1, 2, size, size)
    flow[:, 0], flow[:, 1] = 1.3, -0.6
    flows = (flow[:, None].expand(1, frames - 1, 2, size, size), -flow[:, None].expand(1, frames - 1, 2, size, size))
    target, estimate = _warped_clip(a, flow, frames), _warped_clip(b, flow, frames)
    assert temporal_loss(estimate, target, {"flow": 1.0}, flows=flows) < 1e-6
    assert temporal_loss(estimate, target, {"pixel": 1.0}) > 1e-2
    other = _warped_clip(b, -flow, frames)
    assert temporal_loss(other, target, {"flow": 1.0}, flows=flows) > 1e-2


def test_the_flow_term_ignores_pixels_that_get_occluded():
    """A square moves 3 px right over a still background: what the estimate puts behind the strip the square is
    about to cover is never seen again, so it costs nothing; the same change elsewhere does."""
    target = torch.zeros(1, 3, 2, 16, 16)
    target[:, :, 0, 6:10, 4:8], target[:, :, 1, 6:10, 7:11] = 1.0, 1.0
    forward, backward = torch.zeros(1, 1, 2, 16, 16), torch.zeros(1, 1, 2, 16, 16)
    forward[:, 0, 0, 6:10, 4:8], backward[:, 0, 0, 6:10, 7:11] = 3.0, -3.0
    covered, seen = target.clone(), target.clone()
    covered[:, :, 0, 6:10, 8:11] = 0.5  # in frame 0, the strip the square covers in frame 1
    seen[:, :, 0, 2:6, 8:11] = 0.5  # the same strip above the square: visible in both frames
    assert temporal_loss(covered, target, {"flow": 1.0}, flows=(forward, backward)) < 1e-6
    assert temporal_loss(seen, target, {"flow": 1.0}, flows=(forward, backward)) > 1e-2


def test_pair_weights_scale_each_sample():
    target = _balls()
    estimate = _flicker(target, 0.1)
    full = temporal_loss(estimate, target, {"pixel": 1.0})
    torch.testing.assert_close(temporal_loss(estimate, target, {"pixel": 1.0}, pair_weight=torch.tensor([1.0, 0.0])),
                               temporal_loss(estimate[:1], target[:1], {"pixel": 1.0}) / 2)
    torch.testing.assert_close(temporal_loss(estimate, target, TemporalLossConfig(pixel=2.0)), 2 * full)


def test_the_diffusion_loss_adds_the_term_only_where_the_estimate_carries_signal():
    """At t = 1 (pure noise, alpha = 0) the term is weighted 0; at low noise it is added to the plain loss."""
    x0 = _balls()
    schedule = build_schedule("flow", 1.0)
    plain = DiffusionLoss(schedule, "flow")
    with_term = DiffusionLoss(schedule, "flow", temporal={"pixel": 1.0, "flow": 1.0})
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731  (x0 estimate = x_t: the noisy video itself)
    for level, added in ((1.0, False), (0.3, True)):
        levels = torch.full((2, x0.shape[2]), level)
        values = [loss(model, x0, torch.Generator().manual_seed(0), levels=levels) for loss in (plain, with_term)]
        assert (values[1] > values[0] + 1e-3) == added, (level, values)


def test_the_diffusion_loss_with_given_frames_counts_their_pixels_as_the_target():
    x0 = _balls(frames=4)
    known = torch.zeros(2, 1, 4, 16, 16, dtype=torch.bool)
    loss = DiffusionLoss(build_schedule("cosine", 1.0), "x0", temporal={"pixel": 1.0})
    assert loss(lambda x, t: x0, x0, torch.Generator().manual_seed(0), known=known) < 1e-6
    known[:, :, 1] = True  # frame 1 given: the estimate there is the target whatever the model says
    off = lambda x, t: torch.where(torch.arange(4)[None, None, :, None, None] == 1, 0.5, x0)  # noqa: E731
    assert loss(off, x0, torch.Generator().manual_seed(0), known=known) < 1e-6


def test_a_tiny_training_run_with_the_temporal_terms_still_learns():
    """The plain diffusion loss on held-out noise falls while training with all three terms on."""
    torch.manual_seed(0)
    x0 = _balls(count=4, frames=4, size=16)
    model = torch.nn.Sequential(torch.nn.Conv3d(4, 16, 3, padding=1), torch.nn.SiLU(),
                                torch.nn.Conv3d(16, 3, 3, padding=1))
    schedule = build_schedule("cosine", 1.0)
    train = DiffusionLoss(schedule, "v", temporal={"pixel": 0.5, "feature": 0.1, "flow": 0.5})
    plain = DiffusionLoss(schedule, "v")

    def model_fn(x, t):
        return model(torch.cat([x, t.reshape(-1, 1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], dim=1))

    def held_out():
        with torch.no_grad():
            return sum(plain(model_fn, x0, torch.Generator().manual_seed(100 + i)) for i in range(4)).item() / 4

    before = held_out()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(40):
        optimizer.zero_grad()
        train(model_fn, x0, torch.Generator().manual_seed(step)).backward()
        optimizer.step()
    assert held_out() < 0.8 * before


def test_unknown_terms_and_bad_weights_are_one_line_errors():
    video = torch.zeros(1, 3, 3, 8, 8)
    with pytest.raises(KinemaError, match="unknown temporal loss term 'flo'"):
        temporal_loss(video, video, {"flo": 1.0})
    with pytest.raises(KinemaError, match="'pixel' must be a number >= 0"):
        DiffusionLoss(build_schedule("cosine", 1.0), "v", temporal={"pixel": -1.0})
    with pytest.raises(KinemaError, match="one shape"):
        temporal_loss(video, video[:, :, :2], {"pixel": 1.0})
    with pytest.raises(KinemaError, match="needs RGB"):
        temporal_loss(video[:, :2], video[:, :2], {"feature": 1.0})
    with pytest.raises(KinemaError, match=r"unknown config key 'train\.temporal_loss\.flo'"):
        load_config(None, ["train.temporal_loss.flo=0.1"])
    with pytest.raises(KinemaError, match=r"'train\.temporal_loss\.pixel' must be at least 0"):
        load_config(None, ["train.temporal_loss.pixel=-0.1"])


def test_the_config_carries_the_weights_per_term():
    config = load_config(None, ["train.temporal_loss={pixel: 0.1, flow: 0.05}"])
    assert config.train.temporal_loss == TemporalLossConfig(pixel=0.1, feature=0.0, flow=0.05)
    assert config.to_dict()["train"]["temporal_loss"] == {"pixel": 0.1, "feature": 0.0, "flow": 0.05}
    assert set(config.to_dict()["train"]["temporal_loss"]) == set(TEMPORAL_TERMS)


def test_the_benchmark_trains_samples_and_scores_every_setting(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "temporal_loss.py"
    spec = importlib.util.spec_from_file_location("temporal_loss_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--steps", "2", "--batch", "2", "--clips", "4", "--samples", "2", "--sample-steps", "2",
                         "--frames", "3", "--channels", "8", "--json", str(tmp_path / "out.json")])
    assert list(result["rows"]) == ["real clips", "none", "pixel", "feature", "flow"]
    assert result["rows"]["flow"]["weights"] == {"flow": 1.0}
    for row in result["rows"].values():
        assert all(0 <= row[score][0] < 1 for score in ("flicker", "warping_error"))
    assert (tmp_path / "out.json").is_file()
