"""Every attention layer computes through torch's fused `scaled_dot_product_attention`, and its result equals
the explicit math softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017) for every variant and mask; temporal masks
keep a frame blind to the frames they hide."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kinema.conditioning.conditioning import Conditioning
from kinema.models.video_dit import VideoDiT, VideoDiTConfig
from kinema.nn.attention import VideoTransformerBlock

SDPA = F.scaled_dot_product_attention


def math_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """softmax(q k^T / sqrt(d) + mask) v written out, with a bool mask (True = attend) or an additive one."""
    assert dropout_p == 0.0 and not is_causal
    scores = q @ k.transpose(-2, -1) * (scale or 1 / math.sqrt(q.shape[-1]))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return scores.softmax(-1) @ v


def randomized(module: torch.nn.Module) -> torch.nn.Module:
    """All weights random (the zero-initialised output projections would hide any difference)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return module.eval()


def both_ways(monkeypatch, run):
    """run() with torch's SDPA and with the explicit math; also how often the math replaced SDPA."""
    fused = run()
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return math_attention(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(F, "scaled_dot_product_attention", counted)
        explicit = run()
    return fused, explicit, len(calls)


BLOCKS = {
    "spatial": {"spatial": "spatial"},
    "joint": {"spatial": "joint"},
    "joint causal window": {"spatial": "joint", "temporal_mask_kind": "causal", "temporal_window": 1},
    "axial": {"spatial": "axial"},
    "windowed overlap global": {"spatial": "windowed", "window": (2, 3, 3), "window_overlap": (1, 1, 1),
                                "global_tokens": 2},
    "temporal causal": {"spatial": None, "temporal_mask_kind": "causal"},
    "temporal window": {"spatial": None, "temporal_window": 1},
    "multi-scale causal": {"spatial": None, "temporal_scales": (1, 0), "temporal_mask_kind": "causal"},
    "parallel": {"spatial": "spatial", "arrangement": "parallel"},
}
CAUSAL = {"joint causal window", "temporal causal", "multi-scale causal"}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_every_block_variant_equals_explicit_attention(monkeypatch, name):
    block = randomized(VideoTransformerBlock(16, heads=2, text_dim=8, **BLOCKS[name]))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 4, 5, 4, generator=generator)  # 5 x 4 does not divide into 3 x 3 windows
    text = torch.randn(2, 3, 8, generator=generator)
    text_mask = torch.tensor([[True, True, False], [True, False, False]])  # padded prompts
    with torch.no_grad():
        fused, explicit, calls = both_ways(monkeypatch, lambda: block(x, text, text_mask))
    assert calls >= 2  # self- and cross-attention both went through SDPA
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-4)
    if name in CAUSAL:  # frame 1 cannot see frames 2 and 3
        changed = x.clone()
        changed[:, :, 2:] = torch.randn(changed[:, :, 2:].shape, generator=generator)
        with torch.no_grad():
            torch.testing.assert_close(block(changed, text, text_mask)[:, :, :2], fused[:, :, :2])


@pytest.mark.parametrize("attention,mask", [("factorized", "bidirectional"), ("factorized", "causal"),
                                            ("full", "causal"), ("full", "bidirectional")])
def test_video_dit_equals_explicit_attention(monkeypatch, attention, mask):
    model = randomized(VideoDiT(VideoDiTConfig(hidden_size=24, depth=1, heads=2, text_dim=8, positions="rope3d",
                                               attention=attention, temporal_mask=mask)))
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 8, 8, generator=generator)
    t = torch.rand(2, generator=generator)
    cond = Conditioning(text=torch.randn(2, 3, 8, generator=generator),
                        text_mask=torch.tensor([[True, True, False], [True, True, True]]))
    with torch.no_grad():
        fused, explicit, calls = both_ways(monkeypatch, lambda: model(x, t, cond))
    assert calls >= 2
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-4)
    if mask == "causal":
        changed = x.clone()
        changed[:, :, 3] += 1
        with torch.no_grad():
            torch.testing.assert_close(model(changed, t, cond)[:, :, :3], fused[:, :, :3])
