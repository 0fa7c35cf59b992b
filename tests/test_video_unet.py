"""VideoUNet: shapes with its stem and attention kinds, identity-initialised temporal layers, the text mask (the
contract every denoiser keeps is in test_denoiser_contract.py)."""

import pytest
import torch
from denoisers import TEXT, tiny_denoiser

from kinema.conditioning.conditioning import Conditioning
from kinema.nn.conv import FactorizedConv3d, SpatialConv


def text(batch=2, length=5, dim=TEXT):
    return Conditioning(text=torch.randn(batch, length, dim), text_mask=torch.ones(batch, length, dtype=torch.bool))


@pytest.mark.parametrize("patch_size,attention", [(1, ("temporal", "spatial")), (2, ("none", "joint"))])
def test_forward_shape_and_finite_gradients(patch_size, attention):
    model = tiny_denoiser("video_unet", patch_size=patch_size, attention=attention)
    x = torch.randn(2, 3, 4, 16, 16, requires_grad=True)
    out = model(x, torch.rand(2), text())
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_factorized_conv_with_identity_temporal_init_equals_per_frame_2d_conv():
    conv = FactorizedConv3d(3, 5)
    x = torch.randn(2, 3, 4, 8, 8)
    frames = torch.stack([torch.nn.functional.conv2d(x[:, :, i], conv.spatial.conv.weight[:, :, 0],
                                                     conv.spatial.conv.bias, padding=1) for i in range(4)], dim=2)
    torch.testing.assert_close(conv(x), frames)


def test_fresh_model_treats_frames_independently():
    """At initialisation every temporal layer is the identity except GroupNorm statistics, which span frames:
    swapping two frames of the input swaps the same frames of the output."""
    model = tiny_denoiser("video_unet", perturb=0)
    for module in model.modules():  # make the image path non-trivial, leave temporal layers at their init
        if isinstance(module, SpatialConv):
            torch.nn.init.normal_(module.conv.weight, std=0.2)
    x = torch.randn(1, 3, 4, 8, 8)
    swapped = x[:, :, [1, 0, 2, 3]]
    cond = text(1)
    t = torch.rand(1)
    torch.testing.assert_close(model(swapped, t, cond), model(x, t, cond)[:, :, [1, 0, 2, 3]], atol=1e-5, rtol=1e-4)


def test_trained_temporal_layers_mix_frames():
    model = tiny_denoiser("video_unet")
    x = torch.randn(1, 3, 4, 8, 8)
    changed = x.clone()
    changed[:, :, 3] += 1.0
    cond = text(1)
    t = torch.rand(1)
    assert not torch.allclose(model(x, t, cond)[:, :, 0], model(changed, t, cond)[:, :, 0])


def test_text_changes_output_and_mask_hides_padding():
    model = tiny_denoiser("video_unet")
    x, t = torch.randn(1, 3, 4, 8, 8), torch.rand(1)
    a, b = text(1), text(1)
    assert not torch.allclose(model(x, t, a), model(x, t, b))
    padded = Conditioning(text=torch.cat([a.text, torch.randn(1, 3, TEXT)], 1),
                          text_mask=torch.cat([a.text_mask, torch.zeros(1, 3, dtype=torch.bool)], 1))
    torch.testing.assert_close(model(x, t, a), model(x, t, padded), atol=1e-5, rtol=1e-4)
