"""The causal video autoencoder: shapes, posterior, causality, overfitting one clip, bad input, directories."""

import json

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from kinema.autoencoder import CausalVAEConfig, CausalVideoVAE, DiagonalGaussian, LatentNormalization, \
    load_autoencoder, save_autoencoder
from kinema.errors import KinemaError
from kinema.metrics.frame import psnr
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model

TINY = dict(channels=8, channel_mult=(1, 2), norm_groups=4)


def tiny_vae(seed: int = 0, **overrides) -> CausalVideoVAE:
    torch.manual_seed(seed)
    return CausalVideoVAE(CausalVAEConfig(**{**TINY, **overrides})).eval()


def ball_clip(frames: int = 9, size: int = 16) -> torch.Tensor:
    """A red ball crossing a graded background, [1, 3, T, H, W] in [-1, 1]."""
    t = torch.arange(float(frames))[:, None, None]
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    ball = (((xx - 3 - 1.2 * t) ** 2 + (yy - 4 - 0.8 * t) ** 2) < 9).float()
    colour = torch.tensor([0.9, -0.6, 0.2])[:, None, None, None]
    background = torch.tensor([-0.8, -0.5, -0.9])[:, None, None, None] + 0.2 * xx / size
    return (background * (1 - ball) + colour * ball)[None]


@pytest.mark.parametrize("k,s,patch", [(1, 4, 2), (2, 8, 2), (4, 4, 1), (4, 8, 4)])
def test_shapes_follow_one_plus_k_n(k, s, patch):
    vae = tiny_vae(temporal_downsample=k, spatial_downsample=s, patch_size=patch, latent_channels=3)
    video = torch.rand(2, 3, 1 + 2 * k, 16, 24) * 2 - 1
    posterior = vae.encode(video)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 3, 3, 16 // s, 24 // s)
    assert vae.decode(posterior.sample()).shape == video.shape
    reconstruction, _ = vae(video, generator=torch.Generator().manual_seed(0))
    assert reconstruction.shape == video.shape
    assert (vae.spatial_factor, vae.temporal_factor, vae.latent_channels) == (s, k, 3)
    assert vae.last_layer_weight is vae.decoder.conv_out.conv.weight


def test_default_config_is_small_enough_to_train_on_a_cpu():
    vae = CausalVideoVAE()
    assert sum(p.numel() for p in vae.parameters()) <= 1_000_000
    assert (vae.spatial_factor, vae.temporal_factor, vae.latent_channels) == (4, 4, 4)


def test_kl_is_the_closed_form_summed_over_latent_elements():
    generator = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, 2, 5, 5, generator=generator), torch.randn(3, 4, 2, 5, 5, generator=generator)
    posterior = DiagonalGaussian(mean, logvar)
    expected = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    torch.testing.assert_close(posterior.kl(), expected)
    reference = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(posterior.kl(), reference, rtol=1e-5, atol=1e-4)
    assert DiagonalGaussian(torch.zeros(2, 4, 1, 2, 2), torch.zeros(2, 4, 1, 2, 2)).kl().abs().max() == 0


def test_posterior_samples_have_its_mean_and_variance_and_follow_the_generator():
    mean, logvar = torch.full((1, 1, 1, 100, 100), 0.5), torch.full((1, 1, 1, 100, 100), -2.0)
    posterior = DiagonalGaussian(mean, logvar)
    z = posterior.sample(torch.Generator().manual_seed(1))
    assert abs(z.mean().item() - 0.5) < 0.01 and abs(z.var().item() - torch.e ** -2) < 0.01
    torch.testing.assert_close(z, posterior.sample(torch.Generator().manual_seed(1)))
    assert posterior.mode() is mean
    assert DiagonalGaussian(mean, torch.full_like(mean, 1e4)).logvar.max() == 20.0  # clamped, exp() finite


@pytest.mark.parametrize("k", [1, 2, 4])
def test_encoding_of_early_frames_ignores_later_frames(k):
    vae = tiny_vae(temporal_downsample=k)
    video = torch.rand(1, 3, 1 + 3 * k, 16, 16) * 2 - 1
    with torch.no_grad():
        base = vae.encode(video)
        for t in range(video.shape[2]):
            changed = video.clone()
            changed[:, :, t + 1:] = torch.rand_like(changed[:, :, t + 1:])
            other = vae.encode(changed)
            whole = 1 + t // k  # latent frame j reads frames <= k*j only
            assert torch.equal(other.mean[:, :, :whole], base.mean[:, :, :whole]), (t, whole)
            assert torch.equal(other.logvar[:, :, :whole], base.logvar[:, :, :whole])
            if whole < base.mean.shape[2]:
                assert not torch.allclose(other.mean[:, :, whole:], base.mean[:, :, whole:])


@pytest.mark.parametrize("k", [1, 2, 4])
def test_decoding_of_early_frames_ignores_later_latents(k):
    vae = tiny_vae(temporal_downsample=k)
    z = torch.randn(1, 4, 4, 4, 4)
    with torch.no_grad():
        base = vae.decode(z)
        for j in range(z.shape[2] - 1):
            changed = z.clone()
            changed[:, :, j + 1:] = torch.randn_like(changed[:, :, j + 1:])
            video = vae.decode(changed)
            assert torch.equal(video[:, :, : 1 + k * j], base[:, :, : 1 + k * j]), j
            assert not torch.allclose(video[:, :, 1 + k * j:], base[:, :, 1 + k * j:])


def test_a_tiny_autoencoder_overfits_one_clip():
    video = ball_clip()
    vae = tiny_vae().train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        reconstruction, posterior = vae(video, generator)
        loss = (reconstruction - video).pow(2).mean() + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        score = psnr(vae.decode(vae.encode(video).mode()), video).item()
    assert score > 26.0, score  # about 28-30 dB; predicting the background alone gives 16.6 dB


@pytest.mark.parametrize("frames,needle", [(8, "got 8 frames"), (10, "got 10 frames"), (0, "got 0 frames")])
def test_a_frame_count_that_is_not_one_plus_k_n_is_a_one_line_error(frames, needle):
    with pytest.raises(KinemaError, match="1 \\+ k\\*n frames with k=4") as error:
        tiny_vae().encode(torch.zeros(1, 3, frames, 16, 16))
    assert needle in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("shape,needle", [((1, 1, 5, 16, 16), "[B, 3, T, H, W]"), ((3, 5, 16, 16), "[B, 3, T, H, W]"),
                                          ((1, 3, 5, 16, 18), "divisible by 4, got 16x18")])
def test_bad_video_shapes_are_one_line_errors(shape, needle):
    with pytest.raises(KinemaError) as error:
        tiny_vae().encode(torch.zeros(shape))
    assert needle in str(error.value)


def test_latents_of_the_wrong_shape_are_one_line_errors():
    with pytest.raises(KinemaError, match="latents \\[B, 4, t, h, w\\], got shape \\(1, 3, 2, 4, 4\\)"):
        tiny_vae().decode(torch.zeros(1, 3, 2, 4, 4))


@pytest.mark.parametrize("overrides,needle", [
    (dict(spatial_downsample=3), "spatial_downsample must be one of 4, 8"),
    (dict(temporal_downsample=3), "temporal_downsample must be one of 1, 2, 4"),
    (dict(patch_size=8), "patch_size must be one of 1, 2, 4"),
    (dict(norm_groups=3), "norm_groups (3) must divide"),
    (dict(channels=0), "at least 1"),
])
def test_bad_configs_are_one_line_errors(overrides, needle):
    with pytest.raises(KinemaError) as error:
        CausalVAEConfig(**{**TINY, **overrides})
    assert needle in str(error.value)


def test_a_directory_round_trips_weights_config_and_latent_normalisation(tmp_path):
    vae = tiny_vae(temporal_downsample=2, latent_channels=3)
    save_autoencoder(tmp_path / "vae", vae, LatentNormalization(scale=0.7, shift=-0.2), {"step": 12})
    loaded, latents, metadata = load_autoencoder(tmp_path / "vae")
    assert loaded.config == vae.config and not loaded.training
    assert (latents.scale, latents.shift, metadata) == (0.7, -0.2, {"step": 12})
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(video).mean, vae.encode(video).mean)
    z = torch.randn(2, 3, 1, 2, 2)
    torch.testing.assert_close(latents.denormalize(latents.normalize(z)), z)
    torch.testing.assert_close(latents.normalize(z), (z + 0.2) * 0.7)
    values = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert values["kind"] == "autoencoder" and values["autoencoder"]["temporal_downsample"] == 2


def test_an_untouched_autoencoder_stores_scale_one_and_shift_zero(tmp_path):
    save_autoencoder(tmp_path / "vae", tiny_vae())
    _, latents, _ = load_autoencoder(tmp_path / "vae")
    assert (latents.scale, latents.shift) == (1.0, 0.0)


def test_a_denoiser_directory_is_not_an_autoencoder(tmp_path, tiny_config):
    config = tiny_config()
    save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config)
    with pytest.raises(KinemaError, match="is a denoiser model directory, not an autoencoder"):
        load_autoencoder(tmp_path / "model")


def test_bad_autoencoder_directories_are_one_line_errors(tmp_path):
    with pytest.raises(KinemaError, match="autoencoder not found"):
        load_autoencoder(tmp_path / "missing")
    save_autoencoder(tmp_path / "vae", tiny_vae())
    file = tmp_path / "vae" / "config.json"
    values = json.loads(file.read_text())
    file.write_text(json.dumps({**values, "autoencoder": {**values["autoencoder"], "depth": 3}}))
    with pytest.raises(KinemaError, match="unknown config key 'autoencoder.depth'"):
        load_autoencoder(tmp_path / "vae")
    file.write_text(json.dumps({**values, "autoencoder": {**values["autoencoder"], "spatial_downsample": 2}}))
    with pytest.raises(KinemaError, match="autoencoder.spatial_downsample must be one of 4, 8"):
        load_autoencoder(tmp_path / "vae")
    file.write_text(json.dumps({**values, "latent_scale": -1}))
    with pytest.raises(KinemaError, match="latent_scale must be a positive"):
        load_autoencoder(tmp_path / "vae")
    file.write_text(json.dumps({**values, "autoencoder": {**values["autoencoder"], "channels": 16}}))
    with pytest.raises(KinemaError, match="do not match the autoencoder"):
        load_autoencoder(tmp_path / "vae")
    (tmp_path / "vae" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(KinemaError, match="corrupt checkpoint weights"):
        load_autoencoder(tmp_path / "vae")
