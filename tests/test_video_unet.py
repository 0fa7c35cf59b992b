"""VideoUNet: shapes, identity-initialised temporal layers, per-frame noise levels, checkpointing, save/load."""

import pytest
import torch

from kinema.conditioning.conditioning import Conditioning
from kinema.models.pretrained import load_pretrained, save_pretrained
from kinema.models.video_unet import VideoUNet, VideoUNetConfig
from kinema.nn.conv import FactorizedConv3d, SpatialConv


def tiny(**kw) -> VideoUNet:
    config = dict(channels=8, channel_mult=(1, 2), attention=("temporal", "spatial"), heads=2, norm_groups=4,
                  text_dim=16)
    config.update(kw)
    torch.manual_seed(0)
    model = VideoUNet(VideoUNetConfig(**config))
    with torch.no_grad():  # leave the zero init so outputs are not trivially zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def text(batch=2, length=5, dim=16):
    return Conditioning(text=torch.randn(batch, length, dim), text_mask=torch.ones(batch, length, dtype=torch.bool))


@pytest.mark.parametrize("patch_size,attention", [(1, ("temporal", "spatial")), (2, ("none", "joint"))])
def test_forward_shape_and_finite_gradients(patch_size, attention):
    model = tiny(patch_size=patch_size, attention=attention)
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
    model = VideoUNet(VideoUNetConfig(channels=8, channel_mult=(1, 2), attention=("temporal", "spatial"), heads=2,
                                      norm_groups=4, text_dim=16))
    for module in model.modules():  # make the image path non-trivial, leave temporal layers at their init
        if isinstance(module, SpatialConv):
            torch.nn.init.normal_(module.conv.weight, std=0.2)
    x = torch.randn(1, 3, 4, 8, 8)
    swapped = x[:, :, [1, 0, 2, 3]]
    cond = text(1)
    t = torch.rand(1)
    torch.testing.assert_close(model(swapped, t, cond), model(x, t, cond)[:, :, [1, 0, 2, 3]], atol=1e-5, rtol=1e-4)


def test_trained_temporal_layers_mix_frames():
    model = tiny()
    x = torch.randn(1, 3, 4, 8, 8)
    changed = x.clone()
    changed[:, :, 3] += 1.0
    cond = text(1)
    t = torch.rand(1)
    assert not torch.allclose(model(x, t, cond)[:, :, 0], model(changed, t, cond)[:, :, 0])


def test_per_frame_noise_levels_equal_to_shared_level_match_scalar_t():
    model = tiny()
    x = torch.randn(2, 3, 4, 8, 8)
    t, cond = torch.rand(2), text()
    torch.testing.assert_close(model(x, t, cond), model(x, t[:, None].expand(2, 4), cond))


def test_text_changes_output_and_mask_hides_padding():
    model = tiny()
    x, t = torch.randn(1, 3, 4, 8, 8), torch.rand(1)
    a, b = text(1), text(1)
    assert not torch.allclose(model(x, t, a), model(x, t, b))
    padded = Conditioning(text=torch.cat([a.text, torch.randn(1, 3, 16)], 1),
                          text_mask=torch.cat([a.text_mask, torch.zeros(1, 3, dtype=torch.bool)], 1))
    torch.testing.assert_close(model(x, t, a), model(x, t, padded), atol=1e-5, rtol=1e-4)


def test_gradient_checkpointing_gives_same_gradients():
    model = tiny()
    x, t, cond = torch.randn(2, 3, 4, 8, 8), torch.rand(2), text()
    grads = []
    for flag in (False, True):
        model.gradient_checkpointing = flag
        model.zero_grad()
        model(x, t, cond).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_rejects_conditioning_it_cannot_use():
    model = tiny()
    with pytest.raises(ValueError, match="labels"):
        model(torch.randn(1, 3, 4, 8, 8), torch.rand(1), Conditioning(labels=torch.tensor([1])))
    with pytest.raises(ValueError, match="text"):
        model(torch.randn(1, 3, 4, 8, 8), torch.rand(1), Conditioning())


def test_save_load_round_trip_gives_equal_outputs(tmp_path, tiny_config):
    config = tiny_config()
    model = VideoUNet(config.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_pretrained(tmp_path / "m", model, config, {"step": 7})
    loaded, loaded_config, metadata = load_pretrained(tmp_path / "m")
    assert metadata["step"] == 7 and loaded_config.to_dict() == config.to_dict()
    x, t = torch.randn(1, 3, 4, 16, 16), torch.rand(1)
    cond = Conditioning(text=torch.randn(1, 3, 384))
    model.eval()
    torch.testing.assert_close(loaded(x, t, cond), model(x, t, cond))
