"""Attention variants (chapter 11.2.2-11.2.4): temporal masks hide what they promise to hide, joint attention on one
frame is spatial attention, windows see only their block (+ overlap, + global tokens), multi-scale gates mix scales."""

import pytest
import torch

from kinema.conditioning.conditioning import Conditioning
from kinema.models.video_dit import VideoDiT, VideoDiTConfig
from kinema.nn.attention import Attention, MultiScaleTemporalAttention, VideoTransformerBlock, temporal_mask
from kinema.nn.sparse_attention import AxialAttention, WindowedAttention


def randomised(module, scale=0.2):
    """Give zero-initialised projections weights, so every branch contributes."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module.eval()


def change_frames(x, frames):
    changed = x.clone()
    changed[:, :, frames] += torch.randn_like(changed[:, :, frames])
    return changed


BLOCKS = {
    "temporal": dict(spatial=None),
    "serial": dict(spatial="spatial"),
    "parallel": dict(spatial="spatial", arrangement="parallel"),
    "joint": dict(spatial="joint"),
    "axial": dict(spatial="axial"),
    "multiscale": dict(spatial="spatial", temporal_scales=(1, 3, 0)),
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_causal_mask_makes_frame_t_ignore_later_frames(name):
    block = randomised(VideoTransformerBlock(8, 2, temporal_mask_kind="causal", **BLOCKS[name]))
    x = torch.randn(1, 8, 5, 4, 4)
    for t in range(4):
        out, moved = block(x), block(change_frames(x, list(range(t + 1, 5))))
        torch.testing.assert_close(out[:, :, :t + 1], moved[:, :, :t + 1])
        assert not torch.allclose(out[:, :, t + 1:], moved[:, :, t + 1:])


@pytest.mark.parametrize("name", list(BLOCKS))
def test_local_window_k_makes_frame_t_ignore_frames_farther_than_k(name):
    """One masked layer reaches k = 1 frame; the joint block has two (joint, then temporal), so it reaches 2."""
    reach = 2 if name == "joint" else 1
    block = randomised(VideoTransformerBlock(8, 2, temporal_window=1, **BLOCKS[name]))
    x = torch.randn(1, 8, 6, 4, 4)
    out, moved = block(x), block(change_frames(x, [5]))
    torch.testing.assert_close(out[:, :, :5 - reach], moved[:, :, :5 - reach])
    assert not torch.allclose(out[:, :, 5 - reach], moved[:, :, 5 - reach])


def test_bidirectional_temporal_attention_sees_the_future():
    block = randomised(VideoTransformerBlock(8, 2, spatial=None))
    x = torch.randn(1, 8, 4, 4, 4)
    assert not torch.allclose(block(x)[:, :, 0], block(change_frames(x, [3]))[:, :, 0])


@pytest.mark.parametrize("attention", ["full", "factorized"])
def test_causal_video_dit_output_at_frame_t_ignores_later_frames(attention):
    model = randomised(VideoDiT(VideoDiTConfig(hidden_size=16, depth=2, heads=2, text_dim=8, attention=attention,
                                               positions="rope3d", temporal_mask="causal")), scale=0.05)
    x, t = torch.randn(1, 3, 4, 8, 8), torch.rand(1)
    cond = Conditioning(text=torch.randn(1, 3, 8))
    out, moved = model(x, t, cond), model(change_frames(x, [2, 3]), t, cond)
    torch.testing.assert_close(out[:, :, :2], moved[:, :, :2])
    assert not torch.allclose(out[:, :, 2:], moved[:, :, 2:])


def test_joint_attention_on_a_one_frame_video_equals_spatial_attention():
    joint = randomised(VideoTransformerBlock(8, 2, spatial="joint", text_dim=4))
    spatial = VideoTransformerBlock(8, 2, spatial="spatial", text_dim=4).eval()
    spatial.load_state_dict(joint.state_dict())
    x, text = torch.randn(2, 8, 1, 4, 4), torch.randn(2, 3, 4)
    torch.testing.assert_close(joint(x, text), spatial(x, text))
    x = torch.randn(2, 8, 2, 4, 4)  # and they differ once there is a second frame to attend to
    assert not torch.allclose(joint(x, text), spatial(x, text))


def test_window_covering_the_whole_clip_equals_joint_attention():
    windowed = randomised(WindowedAttention(8, 2, block=(4, 4, 4)))
    joint = Attention(8, 2, rotary=True).eval()
    joint.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 3 * 4 * 4, 8)
    frames = torch.arange(3).repeat_interleave(16)
    torch.testing.assert_close(windowed(x, (3, 4, 4)), joint(x, positions=frames))


def grid_change(x, grid, t, h, w):
    """x [B, t*h*w, C] with the token at (t, h, w) changed."""
    changed = x.clone().unflatten(1, grid)
    changed[:, t, h, w] += torch.randn(x.shape[-1])
    return changed.flatten(1, 3)


def test_windowed_attention_sees_its_block_plus_the_overlap_only():
    grid = (2, 8, 8)
    x = torch.randn(1, 2 * 8 * 8, 8)
    plain = randomised(WindowedAttention(8, 2, block=(2, 4, 4)))
    halo = WindowedAttention(8, 2, block=(2, 4, 4), overlap=(0, 1, 1)).eval()
    halo.load_state_dict(plain.state_dict())
    query = (0, 3, 3)  # the last row/column of the top-left 4x4 block
    index = query[0] * 64 + query[1] * 8 + query[2]
    next_door, far = grid_change(x, grid, 1, 4, 4), grid_change(x, grid, 1, 6, 6)  # 1 and 3 cells past the block
    for module, sees_next_door in [(plain, False), (halo, True)]:
        out = module(x, grid)[0, index]
        assert torch.allclose(out, module(far, grid)[0, index])
        assert torch.allclose(out, module(next_door, grid)[0, index]) != sees_next_door


def test_global_tokens_carry_information_between_windows():
    grid = (2, 8, 8)
    module = randomised(WindowedAttention(8, 2, block=(2, 4, 4), global_tokens=2))
    x = torch.randn(1, 2 * 8 * 8, 8)
    far = grid_change(x, grid, 1, 7, 7)
    assert not torch.allclose(module(x, grid)[0, 0], module(far, grid)[0, 0])


def test_windowed_attention_handles_grids_that_do_not_divide_into_blocks():
    module = randomised(WindowedAttention(8, 2, block=(2, 3, 3), overlap=(1, 1, 1), global_tokens=1))
    x = torch.randn(2, 3 * 5 * 4, 8, requires_grad=True)
    out = module(x, (3, 5, 4))
    out.square().sum().backward()
    assert out.shape == x.shape and torch.isfinite(x.grad).all()


def test_axial_attention_stays_within_its_frame():
    module = randomised(AxialAttention(8, 2))
    grid = (3, 4, 4)
    x = torch.randn(1, 48, 8)
    out, moved = module(x, grid), module(grid_change(x, grid, 2, 3, 3), grid)
    torch.testing.assert_close(out[:, :32], moved[:, :32])  # frames 0 and 1
    assert not torch.allclose(out[:, 32], moved[:, 32])  # (2, 0, 0): reached through row then column


@pytest.mark.parametrize("gates,window", [((30.0, -30.0), 1), ((-30.0, 30.0), None)])
def test_multiscale_gates_select_between_local_and_global_heads(gates, window):
    multi = randomised(MultiScaleTemporalAttention(8, 2, windows=(1, 0)))
    with torch.no_grad():
        multi.gates.copy_(torch.tensor(gates))
    single = Attention(8, 2, rotary=True).eval()
    single.load_state_dict({k: v for k, v in multi.state_dict().items() if k != "gates"})
    x, frames = torch.randn(3, 5, 8), torch.arange(5)
    expected = single(x, mask=temporal_mask(5, "bidirectional", window), positions=frames)
    torch.testing.assert_close(multi(x, positions=frames), expected)


def test_multiscale_gates_are_learned():
    multi = randomised(MultiScaleTemporalAttention(8, 2, windows=(1, 0)))
    multi(torch.randn(2, 5, 8), positions=torch.arange(5)).square().sum().backward()
    assert multi.gates.grad.abs().min() > 0
