"""Video convolutions (chapter 11.2.1, 11.2.6): parameter counts follow the chapter's formulas, and every variant
starts as a per-frame image convolution that training can turn into a temporal one."""

import pytest
import torch
import torch.nn.functional as F

from kinema.nn.conv import CONV_KINDS, video_conv

C_IN, C_OUT, K, KT = 6, 8, 3, 3
M = C_OUT // 4  # P3D-C bottleneck width

# weights by the chapter's formulas, plus one bias per output channel of each conv in the variant
EXPECTED_PARAMETERS = {
    "full3d": C_IN * C_OUT * KT * K * K + C_OUT,
    "factorized": C_IN * C_OUT * K * K + C_OUT * C_OUT * KT + 2 * C_OUT,
    "p3d_a": C_IN * C_OUT * K * K + C_OUT * C_OUT * KT + 2 * C_OUT,
    "p3d_b": C_IN * C_OUT * K * K + C_IN * C_OUT * KT + 2 * C_OUT,
    "p3d_c": C_IN * M + M * M * K * K + M * M * KT + M * C_OUT + 3 * M + C_OUT,
    "depthwise3d": KT * K * K * C_IN + C_IN * C_OUT + C_IN + C_OUT,
}


@pytest.mark.parametrize("kind", CONV_KINDS)
def test_parameter_count_follows_the_chapter_formula(kind):
    conv = video_conv(kind, C_IN, C_OUT, K, KT)
    assert sum(p.numel() for p in conv.parameters()) == EXPECTED_PARAMETERS[kind]


def test_depthwise_separable_saves_the_chapter_ratio_over_full_3d():
    weights = {kind: sum(p.numel() for p in video_conv(kind, C_IN, C_OUT, K, KT).parameters() if p.ndim > 1)
               for kind in ("full3d", "depthwise3d")}
    assert weights["depthwise3d"] / weights["full3d"] == pytest.approx(1 / C_OUT + 1 / (KT * K * K))


@pytest.mark.parametrize("kind", ["factorized", "p3d_a", "p3d_b"])
def test_fresh_factorized_convs_equal_the_2d_conv_applied_frame_by_frame(kind):
    conv = video_conv(kind, 3, 5)
    x = torch.randn(2, 3, 4, 8, 8)
    spatial = conv.spatial.conv
    frames = torch.stack([F.conv2d(x[:, :, i], spatial.weight[:, :, 0], spatial.bias, padding=1) for i in range(4)], 2)
    torch.testing.assert_close(conv(x), frames)


@pytest.mark.parametrize("kind", CONV_KINDS)
def test_fresh_conv_keeps_frames_apart_and_trained_conv_mixes_them(kind):
    torch.manual_seed(0)
    conv = video_conv(kind, 4, 8)
    x = torch.randn(1, 4, 4, 6, 6)
    changed = x.clone()
    changed[:, :, 3] += 1.0
    torch.testing.assert_close(conv(x)[:, :, :3], conv(changed)[:, :, :3])
    with torch.no_grad():
        for p in conv.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert not torch.allclose(conv(x)[:, :, 2], conv(changed)[:, :, 2])


@pytest.mark.parametrize("kind", CONV_KINDS)
def test_zero_output_makes_a_residual_branch_start_at_zero(kind):
    conv = video_conv(kind, 4, 8)
    conv.zero_output_()
    assert conv(torch.randn(1, 4, 3, 6, 6)).abs().max() == 0


def test_unknown_conv_kind_is_named():
    with pytest.raises(ValueError, match="p3d_z"):
        video_conv("p3d_z", 4, 8)
