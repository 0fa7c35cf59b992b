"""Inter-frame propagation and the temporal pyramid (chapter 11.2.3-11.2.4): forward recurrences are causal,
bidirectional ones see the future, fresh blocks are the identity, and pyramid levels run at half the frame rate."""

import pytest
import torch

from kinema.conditioning.conditioning import Conditioning
from kinema.models.video_unet import VideoUNet, VideoUNetConfig
from kinema.nn.recurrent import GatedTemporalResidual, RecurrentTemporalBlock, recurrent_block


def randomised(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def with_last_frame_changed(x):
    changed = x.clone()
    changed[:, :, -1] += torch.randn_like(changed[:, :, -1])  # not a constant: per-frame norms would remove it
    return changed


@pytest.mark.parametrize("kind", ["convgru", "convlstm", "gated_residual"])
def test_fresh_recurrent_block_is_the_identity(kind):
    x = torch.randn(2, 4, 3, 5, 5)
    torch.testing.assert_close(recurrent_block(kind, 4)(x), x)


@pytest.mark.parametrize("kind", ["convgru", "convlstm", "gated_residual"])
def test_forward_recurrence_is_causal_but_carries_the_past(kind):
    block = randomised(recurrent_block(kind, 4))
    x = torch.randn(1, 4, 4, 5, 5)
    out, moved = block(x), block(with_last_frame_changed(x))
    torch.testing.assert_close(out[:, :, :3], moved[:, :, :3])
    first = x.clone()
    first[:, :, 0] += torch.randn_like(first[:, :, 0])
    assert not torch.allclose(block(first)[:, :, 3], out[:, :, 3])  # frame 0 reaches frame 3 through the state


@pytest.mark.parametrize("cell", ["convgru", "convlstm"])
def test_bidirectional_recurrence_sees_the_future(cell):
    block = randomised(RecurrentTemporalBlock(4, cell, bidirectional=True))
    x = torch.randn(1, 4, 4, 5, 5)
    assert not torch.allclose(block(x)[:, :, 0], block(with_last_frame_changed(x))[:, :, 0])


def test_gated_temporal_residual_follows_its_recursion():
    block = randomised(GatedTemporalResidual(4))
    x = torch.randn(1, 4, 3, 5, 5)
    h = block(x)
    torch.testing.assert_close(h[:, :, 0], x[:, :, 0])
    for t in (1, 2):  # h_t = x_t + a * g(h_{t-1})
        expected = x[:, :, t] + block.gate * torch.tanh(block.transform(h[:, :, t - 1]))
        torch.testing.assert_close(h[:, :, t], expected)


def test_bidirectional_needs_a_two_way_cell():
    with pytest.raises(ValueError, match="bidirectional"):
        VideoUNetConfig(recurrent="gated_residual", bidirectional=True)


def pyramid_unet(**kw):
    return VideoUNet(VideoUNetConfig(channels=8, channel_mult=(1, 2, 2), attention=("none", "temporal", "temporal"),
                                     heads=2, norm_groups=4, text_dim=8, **kw))


def test_temporal_pyramid_runs_chosen_levels_at_lower_frame_rates():
    model = pyramid_unet(temporal_downsample=(True, True))
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = out.shape[2]
        return hook

    for name, level in [("level1", model.down_levels[1]), ("mid", model.mid)]:
        level.res[0].register_forward_hook(record(name))
    x = torch.randn(1, 3, 8, 8, 8)
    out = model(x, torch.rand(1), Conditioning(text=torch.randn(1, 2, 8)))
    assert out.shape == x.shape
    assert seen == {"level1": 4, "mid": 2}


def test_temporal_pyramid_needs_divisible_frames_and_one_flag_per_down_step():
    model = pyramid_unet(temporal_downsample=(True, True))
    with pytest.raises(ValueError, match="frames must be divisible by 4"):
        model(torch.randn(1, 3, 6, 8, 8), torch.rand(1), Conditioning(text=torch.randn(1, 2, 8)))
    with pytest.raises(ValueError, match="temporal_downsample"):
        pyramid_unet(temporal_downsample=(True,))
