"""Flow warping, occlusion masks and clip flows (kinema.video.flow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.video.flow import clip_flows, farneback_flow, inside_frame, visible_mask, warp


def _constant_flow(dx: float, dy: float, n: int = 1, size: int = 12) -> torch.Tensor:
    flow = torch.zeros(n, 2, size, size)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def _texture(size: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """A smooth random texture [1, C, S, S] in [-1, 1] (low-frequency noise, bilinearly enlarged)."""
    coarse = torch.rand(1, channels, size // 4, size // 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def test_warp_by_an_integer_shift_is_a_roll_in_the_interior():
    image = torch.randn(2, 3, 12, 12)
    warped = warp(image, _constant_flow(2, -1, n=2))  # warped(y, x) = image(y - 1, x + 2)
    rolled = torch.roll(image, shifts=(1, -2), dims=(2, 3))
    torch.testing.assert_close(warped[..., 1:, :-2], rolled[..., 1:, :-2])
    assert not torch.allclose(warped, image)


def test_warp_repeats_the_border_and_interpolates_between_pixels():
    image = torch.arange(12.0).repeat(12, 1)[None, None]  # value = x
    half = warp(image, _constant_flow(0.5, 0))
    torch.testing.assert_close(half[0, 0, 3, :-1], torch.arange(11.0) + 0.5)
    assert half[0, 0, 3, -1] == 11.0  # beyond the right edge: the edge pixel
    torch.testing.assert_close(warp(image, _constant_flow(-5, 0))[0, 0, 0, :5], torch.zeros(5))


def test_warp_matches_opencv_remap():
    """The same bilinear backward warp as the warping-error metric (cv2.remap, border replicated)."""
    import cv2

    image = _texture(16, seed=3)
    flow = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(1)) * 2
    xs, ys = np.meshgrid(np.arange(16, dtype=np.float32), np.arange(16, dtype=np.float32))
    reference = cv2.remap(image[0].permute(1, 2, 0).numpy(), xs + flow[0, 0].numpy(), ys + flow[0, 1].numpy(),
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ours = warp(image, flow)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - reference).max() < 0.02  # OpenCV rounds the sampling point to 1/32 px


def test_occlusion_mask_flags_the_covered_and_the_uncovered_strip():
    """A 4 px square moves 3 px right over a still background: frame 0 loses the strip the square covers, frame 1
    gains the strip it leaves; both are flagged, and nothing else is."""
    size, top, left, side, step = 16, 6, 4, 4, 3
    forward, backward = torch.zeros(1, 2, size, size), torch.zeros(1, 2, size, size)
    forward[0, 0, top:top + side, left:left + side] = step  # F(0->1) on the square in frame 0
    backward[0, 0, top:top + side, left + step:left + step + side] = -step  # F(1->0) on the square in frame 1
    rows = slice(top, top + side)
    seen_from_0 = visible_mask(forward, backward)[0]
    covered = torch.zeros(size, size, dtype=torch.bool)
    covered[rows, left + side:left + side + step] = True
    assert torch.equal(~seen_from_0, covered)
    seen_from_1 = visible_mask(backward, forward)[0]
    uncovered = torch.zeros(size, size, dtype=torch.bool)
    uncovered[rows, left:left + step] = True
    assert torch.equal(~seen_from_1, uncovered)


def test_pixels_leaving_the_frame_are_not_visible():
    flow = _constant_flow(2, 0)
    assert torch.equal(inside_frame(flow)[0].all(dim=0), torch.arange(12) < 10)
    assert torch.equal(visible_mask(flow, -flow), inside_frame(flow))


def test_clip_flows_follow_a_moving_texture():
    texture = _texture(64, seed=5)
    frames = [torch.roll(texture, shifts=(0, 2 * k), dims=(2, 3)) for k in range(3)]  # 2 px right per frame
    video = torch.stack(frames, dim=2)[:, :, :, 16:48, 16:48]
    forward, backward = clip_flows(video)
    assert forward.shape == backward.shape == (1, 2, 2, 32, 32) and forward.dtype == torch.float32
    middle = (..., slice(8, 24), slice(8, 24))
    assert (forward[:, :, 0][middle].median() - 2).abs() < 0.3 and forward[:, :, 1][middle].abs().median() < 0.3
    assert (backward[:, :, 0][middle].median() + 2).abs() < 0.3


def test_the_metrics_use_the_same_farneback_flow():
    from kinema.metrics import temporal

    assert temporal.farneback_flow is farneback_flow


@pytest.mark.parametrize("call", [
    lambda: warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 9)),
    lambda: warp(torch.zeros(3, 8, 8), torch.zeros(1, 2, 8, 8)),
    lambda: visible_mask(torch.zeros(1, 2, 8, 8), torch.zeros(1, 3, 8, 8)),
    lambda: clip_flows(torch.zeros(1, 3, 1, 8, 8)),
])
def test_bad_shapes_are_one_line_errors(call):
    with pytest.raises(KinemaError, match=r"^[^\n]+$"):
        call()
