"""Tests for temporal, frame and feature metrics: they move the right way under controlled corruption."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from kinema.data.physics_balls import BouncingBallsConfig, simulate_balls
from kinema.errors import KinemaError
from kinema.metrics.distances import frechet_distance_from_features
from kinema.metrics.features import I3DFeatures, VideoFeatureNet, VideoFeatureNetConfig
from kinema.metrics.frame import psnr, ssim
from kinema.metrics.temporal import temporal_scores

CONFIG = BouncingBallsConfig(num_frames=10, min_balls=2, max_balls=3)


@pytest.fixture(scope="module")
def videos():
    return torch.stack([simulate_balls(CONFIG, seed).video for seed in range(8)])


def _shuffled(videos: torch.Tensor) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.stack([v[:, torch.randperm(v.shape[1], generator=generator)] for v in videos])


def _blurred(videos: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = 3
    taps = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma**2))
    kernel = (taps[:, None] * taps[None]) / taps.sum() ** 2
    frames = rearrange(videos, "b c t h w -> (b t c) 1 h w")
    out = F.conv2d(F.pad(frames, [radius] * 4, mode="replicate"), kernel[None, None])
    return rearrange(out, "(b t c) 1 h w -> b c t h w", b=len(videos), c=3)


def test_time_shuffling_raises_flicker_and_warp_error_and_lowers_motion_consistency(videos):
    ordered, shuffled = temporal_scores(videos), temporal_scores(_shuffled(videos))
    assert ordered["flicker"].mean() < shuffled["flicker"].mean()
    assert ordered["warping_error"].mean() < shuffled["warping_error"].mean()
    assert ordered["motion_consistency"].mean() > shuffled["motion_consistency"].mean()
    frozen = temporal_scores(videos[:, :, :1].expand_as(videos).contiguous())
    assert torch.allclose(frozen["flicker"], torch.zeros(len(videos), dtype=torch.float64))
    assert (frozen["dynamic_degree"] == 0).all() and (ordered["dynamic_degree"] == 1).all()
    assert torch.allclose(frozen["motion_consistency"], torch.ones(len(videos), dtype=torch.float64), atol=0.01)


def test_per_frame_features_ignore_frame_order_but_clip_features_do_not(videos):
    torch.manual_seed(0)
    net = VideoFeatureNet(VideoFeatureNetConfig()).eval()
    shuffled = _shuffled(videos)
    with torch.no_grad():
        frames = [net.frame_features(rearrange(v, "b c t h w -> (b t) c h w")).double().numpy()
                  for v in (videos, shuffled)]
        clips = [net(v).double().numpy() for v in (videos, shuffled)]
    order = np.lexsort(frames[0].T), np.lexsort(frames[1].T)
    assert np.allclose(frames[0][order[0]], frames[1][order[1]], atol=1e-5)  # same set of frames
    assert not np.allclose(clips[0], clips[1], atol=1e-4)
    fid_same = frechet_distance_from_features(np.concatenate([frames[0]] * 2), np.concatenate(frames))
    assert fid_same == pytest.approx(0.0, abs=1e-6)


def test_blur_lowers_psnr_and_ssim_against_the_original(videos):
    light, heavy = _blurred(videos, 0.6), _blurred(videos, 1.5)
    assert (psnr(light, videos) > psnr(heavy, videos)).all()
    assert (ssim(videos, videos) > 0.999).all()
    assert (ssim(light, videos) > ssim(heavy, videos)).all()
    with pytest.raises(KinemaError, match="one shape"):
        psnr(videos, videos[:, :, :5])


def _scripted_i3d(tmp_path, convention: str):
    if convention == "stylegan-v":
        class Probe(torch.nn.Module):
            def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = False,
                        return_features: bool = False) -> torch.Tensor:
                flags = torch.tensor([float(rescale), float(resize), float(return_features)])
                shape = torch.tensor([float(x.shape[3]), float(x.shape[4])])
                return torch.cat([flags, shape, x.amin().view(1), x.amax().view(1)]).expand(x.shape[0], 7)
    else:
        class Probe(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                shape = torch.tensor([float(x.shape[3]), float(x.shape[4])])
                return torch.cat([shape, x.mean().view(1)]).expand(x.shape[0], 3)
    path = tmp_path / f"{convention}.pt"
    torch.jit.script(Probe()).save(str(path))
    return path


def test_i3d_presets_feed_the_network_as_their_conventions_say(tmp_path):
    video = -torch.ones(2, 3, 4, 64, 128)
    video[..., 64:] = 1.0  # left half dark, right half bright: a centre crop sees both halves equally
    stylegan = I3DFeatures(_scripted_i3d(tmp_path, "stylegan-v"), "stylegan-v").videos(video)[0]
    assert stylegan.tolist() == [0.0, 1.0, 1.0, 64.0, 128.0, -1.0, 1.0]  # own size, [-1, 1], net resizes
    videogpt = I3DFeatures(_scripted_i3d(tmp_path, "videogpt"), "videogpt").videos(video)[0]
    assert videogpt[:2].tolist() == [224.0, 224.0] and abs(videogpt[2]) < 0.02
    raw = I3DFeatures(_scripted_i3d(tmp_path, "videogpt"), "raw").videos(video)[0]  # a VideoMAE-style file
    assert raw.tolist() == [64.0, 128.0, 0.0]  # the clip as it is: own size, [-1, 1]
    with pytest.raises(KinemaError, match="preset"):
        I3DFeatures(tmp_path / "videogpt.pt", "tats-v2")
    with pytest.raises(KinemaError, match="does not accept"):
        I3DFeatures(tmp_path / "videogpt.pt", "stylegan-v").videos(video)


def test_shipped_feature_network_sees_broken_motion_that_frame_features_cannot():
    from kinema.data.physics_balls import BouncingBalls
    from kinema.metrics.features import KinemaVideoFeatures

    config = BouncingBallsConfig(num_frames=8, min_balls=1, max_balls=2)
    real, other = (torch.stack([BouncingBalls(config, 48, seed=s)[i]["video"] for i in range(48)]) for s in (0, 1))
    extractor = KinemaVideoFeatures()

    def distances(videos):
        frames = [extractor.frames(rearrange(v, "b c t h w -> (b t) c h w")) for v in (real, videos)]
        return (frechet_distance_from_features(extractor.videos(real), extractor.videos(videos)),
                frechet_distance_from_features(*frames))

    fvd_other, fid_other = distances(other)
    fvd_shuffled, fid_shuffled = distances(_shuffled(other))
    assert fvd_shuffled > 10 * fvd_other  # 56x with the shipped network
    assert fid_shuffled == pytest.approx(fid_other, rel=1e-6)  # the same frames in another order


def test_shipped_features_rank_real_photo_clips_above_shuffled_blurred_and_frozen_ones():
    """Camera moves over photographs the features never saw: real-vs-real FVD is far below every corruption."""
    from kinema.data.camera import CameraMotion, CameraMotionConfig
    from kinema.metrics.features import KinemaVideoFeatures

    config = CameraMotionConfig(num_frames=12, size=48, max_pan=2.0)
    real, other = (torch.stack([CameraMotion(config, 24, seed=s)[i]["video"] for i in range(24)]) for s in (0, 1))
    extractor = KinemaVideoFeatures()
    features = extractor.videos(real)

    def fvd(videos):
        return frechet_distance_from_features(features, extractor.videos(videos))

    real_vs_real = fvd(other)  # 2.6 with the shipped network; shuffled 66, blurred 17, frozen 35
    assert fvd(_shuffled(other)) > 8 * real_vs_real
    assert fvd(_blurred(other, sigma=1.0)) > 3 * real_vs_real
    assert fvd(other[:, :, :1].expand_as(other)) > 5 * real_vs_real
    assert extractor.metadata["training_domain"]["photographs"] is False


def test_i3d_from_a_url_is_downloaded_once_and_loads(tmp_path):
    import functools
    import http.server
    import threading

    from kinema.evaluation import download_cached

    served = tmp_path / "served"
    served.mkdir()
    _scripted_i3d(served, "stylegan-v")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stylegan-v.pt"
        local = download_cached(url, tmp_path / "cache")
        assert local.read_bytes() == (served / "stylegan-v.pt").read_bytes()
        (served / "stylegan-v.pt").unlink()  # a second call must use the cache, not the server
        assert download_cached(url, tmp_path / "cache") == local
        assert I3DFeatures(local, "stylegan-v").videos(-torch.ones(1, 3, 4, 16, 16)).shape[0] == 1
        with pytest.raises(KinemaError, match="cannot download"):
            download_cached(f"http://127.0.0.1:{server.server_address[1]}/missing.pt", tmp_path / "cache")
    finally:
        server.shutdown()
