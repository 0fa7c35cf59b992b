"""Training the causal video autoencoder: its loss terms against manual computations (the critic's gradients come
only from its hinge term, the autoencoder's only from the generator term), the perceptual distance, the latent
scale, and `kinema train-vae` runs (the loss falls, resume equals an unbroken run, bad keys are one-line errors)."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from kinema.autoencoder import CausalVAEConfig, CausalVideoVAE
from kinema.autoencoder.config import AutoencoderLossConfig
from kinema.autoencoder.discriminator import hinge_discriminator_loss
from kinema.autoencoder.export import latent_statistics
from kinema.autoencoder.losses import AutoencoderTraining, PerceptualDistance, reconstruction_loss
from kinema.data.physics_balls import BouncingBalls, BouncingBallsConfig
from test_training_resume import one_thread  # noqa: F401  (autouse fixture)

TINY_VAE = CausalVAEConfig(channels=8, channel_mult=(1, 2), norm_groups=4)


def balls(count=2, frames=5, size=16, seed=0):
    """Clips [count, 3, frames, size, size] of the physics-balls simulator."""
    data = BouncingBalls(BouncingBallsConfig(num_frames=frames, size=size, radius_range=(2.0, 3.0)), seed=seed)
    return torch.stack([data[i]["video"] for i in range(count)])


def generators(n, seed=0):
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def training(**loss):
    torch.manual_seed(0)
    return AutoencoderTraining(CausalVideoVAE(TINY_VAE), AutoencoderLossConfig(disc_channels=8, **loss))


def plain_loss(model, video, seed=0):
    """Reconstruction + perceptual + KL, written out: what the loss must be while the critic is off."""
    posterior = model.vae.encode(video)
    noise = torch.cat([torch.randn(posterior.mean[:1].shape, generator=g) for g in generators(len(video), seed)])
    reconstruction = model.vae.decode(posterior.mean + posterior.std * noise)
    nll = (reconstruction - video).abs().mean()
    nll = nll + model.loss.perceptual_weight * model.perceptual(reconstruction, video).mean()
    return nll, model.loss.kl_weight * posterior.kl().mean() / video[0].numel(), reconstruction


def test_before_disc_start_the_loss_is_the_plain_vae_loss_and_the_critic_is_not_run():
    model, video = training(disc_start=3), balls()
    calls = []
    model.discriminator.register_forward_hook(lambda *args: calls.append(1))
    loss, terms = model(video, generators(2), step=2)
    nll, kl, _ = plain_loss(model, video)
    assert loss.item() == pytest.approx((nll + kl).item(), rel=1e-5)
    assert "discriminator" not in terms and not calls
    model(video, generators(2), step=3)
    assert calls  # from disc_start on it is


def test_after_disc_start_each_network_gets_gradients_only_from_its_own_term():
    model, video = training(disc_start=0, disc_weight=0.7), balls()
    loss, terms = model(video, generators(2), step=0)
    loss.backward()
    critic, vae = model.discriminator, model.vae

    nll, kl, reconstruction = plain_loss(model, video)
    # the critic: only the hinge term, on the reconstruction detached
    hinge = hinge_discriminator_loss(critic(video), critic(reconstruction.detach()))
    expected = torch.autograd.grad(hinge, list(critic.parameters()))
    for (name, p), g in zip(critic.named_parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7, msg=name)
    # the autoencoder: reconstruction terms + the adaptively weighted generator term, none of the hinge term
    adversarial = -critic(reconstruction).mean()
    last = vae.last_layer_weight
    ratio = (torch.autograd.grad(nll, last, retain_graph=True)[0].norm() /
             (torch.autograd.grad(adversarial, last, retain_graph=True)[0].norm() + 1e-4))
    assert terms["generator_weight"].item() == pytest.approx(0.7 * ratio.item(), rel=1e-4)
    expected = torch.autograd.grad(nll + kl + 0.7 * ratio.detach() * adversarial, list(vae.parameters()))
    for (name, p), g in zip(vae.named_parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7, msg=name)


def test_the_temporal_regularisers_add_their_term_on_the_reconstruction():
    from kinema.diffusion.temporal_loss import temporal_loss

    torch.manual_seed(0)
    model = AutoencoderTraining(CausalVideoVAE(TINY_VAE), AutoencoderLossConfig(disc_start=5), {"pixel": 0.5})
    video = balls()
    loss, terms = model(video, generators(2), step=0)
    nll, kl, reconstruction = plain_loss(model, video)
    term = temporal_loss(reconstruction, video, {"pixel": 0.5})
    assert term > 0 and terms["temporal"].item() == pytest.approx(term.item(), rel=1e-5)
    assert loss.item() == pytest.approx((nll + kl + term).item(), rel=1e-5)


def test_a_fixed_adversarial_weight_is_the_configured_one():
    model, video = training(disc_start=0, disc_weight=0.25, disc_adaptive=False), balls()
    _, terms = model(video, generators(2), step=0)
    assert terms["generator_weight"].item() == 0.25


def test_perceptual_distance_ranks_a_blurred_reconstruction_worse_than_a_sharp_one():
    video = balls(count=3, frames=5, size=32)
    blurred = F.avg_pool3d(F.pad(video, (1, 1, 1, 1, 0, 0), mode="replicate"), (1, 3, 3), stride=1)
    sharp = (video + 1) * 0.6 - 1  # sharp but 40% dimmer: a larger L2 error than the blur's, L2 prefers the blur
    l2 = reconstruction_loss(sharp, video, "l2"), reconstruction_loss(blurred, video, "l2")
    assert (l2[0] > l2[1]).all()
    distance = PerceptualDistance()
    assert (distance(blurred, video) > distance(sharp, video)).all()
    assert distance(video, video).abs().max() < 1e-6

    estimate = blurred.clone().requires_grad_(True)
    distance(estimate, video).sum().backward()
    assert estimate.grad.abs().sum() > 0  # gradients reach the compared video ...
    assert all(p.grad is None and not p.requires_grad for p in distance.net.parameters())  # ... not the network
    assert not distance.net.training


def test_the_frozen_feature_network_is_not_part_of_the_trained_or_saved_model():
    model = training()
    assert not any(name.startswith("perceptual") for name in model.state_dict())
    assert set(name.split(".")[0] for name in model.state_dict()) == {"vae", "discriminator"}


def test_latent_scale_and_shift_are_the_mean_and_inverse_std_of_the_posterior_means():
    torch.manual_seed(0)
    vae = CausalVideoVAE(TINY_VAE).eval()
    batches = [balls(2, seed=0), balls(3, seed=1)]
    latents = latent_statistics(vae, batches)
    shift, scale = latents.shift, latents.scale
    with torch.no_grad():
        means = torch.cat([vae.encode(b).mean.flatten() for b in batches]).double()
    assert shift == pytest.approx(means.mean().item(), rel=1e-6)
    assert scale == pytest.approx(1 / means.std(unbiased=False).item(), rel=1e-6)
    normalised = (means - shift) * scale
    assert normalised.mean().item() == pytest.approx(0, abs=1e-6)
    assert normalised.var(unbiased=False).item() == pytest.approx(1, rel=1e-6)


# the recipe shrunk, with the perceptual term and the critic on (the recipe itself trains without them)
TINY_RUN = ["autoencoder.channels=8", "autoencoder.norm_groups=4", "data.num_frames=5", "data.size=16",
            "data.radius_range=[2.0,3.0]", "loss.perceptual_weight=0.1", "loss.disc_weight=0.5",
            "loss.disc_channels=8", "loss.scale_batches=2", "train.batch_size=2",
            "train.warmup_steps=2", "train.sample_every=0", "train.log_every=1", "train.checkpoint_every=100"]


@pytest.fixture
def tiny_vae_run(tmp_path):
    """A factory: tiny_vae_run('train.steps=4', ...) -> configs/vae_balls.yaml shrunk to 5 x 16 x 16 clips."""
    from kinema.autoencoder.config import load_autoencoder_config

    def make(*overrides: str):
        return load_autoencoder_config("configs/vae_balls.yaml",
                                       [*TINY_RUN, f"train.output_dir={tmp_path / 'run'}", *overrides])

    return make


def test_a_tiny_autoencoder_run_reduces_the_reconstruction_error(tiny_vae_run):
    from kinema.training.trainer import Trainer

    trainer = Trainer(tiny_vae_run("train.steps=40", "train.lr=3e-3", "loss.disc_start=30"), progress=False)
    clips = balls(count=4, seed=0)  # the run's own data (seed 0)

    def error():
        vae = trainer.model.vae
        with torch.no_grad():
            return (vae.decode(vae.encode(clips).mean) - clips).abs().mean().item()

    before = error()
    checkpoint = trainer.train()
    assert checkpoint.name == "step_0000040"
    assert error() < 0.5 * before


def test_resuming_a_vae_run_equals_an_unbroken_one_across_disc_start(tiny_vae_run, tmp_path):
    from test_training_resume import assert_identical, checkpoint_tensors

    from kinema.training.trainer import Trainer

    def config(name):
        return tiny_vae_run("train.steps=6", "loss.disc_start=3", f"train.output_dir={tmp_path / name}")

    straight = Trainer(config("straight"), progress=False).train()
    Trainer(config("stopped"), progress=False).train(until_step=2)
    torch.manual_seed(123)  # a new process: the global generator is anywhere
    final = Trainer(config("stopped"), resume=True, progress=False).train()
    assert final.name == straight.name == "step_0000006"
    tensors = checkpoint_tensors(final)
    assert any(name.startswith("ema.safetensors:discriminator.") for name in tensors)
    assert_identical(checkpoint_tensors(straight), tensors)


def test_train_vae_then_export_writes_an_autoencoder_directory(tmp_path):
    from typer.testing import CliRunner

    from kinema.autoencoder.directory import load_autoencoder
    from kinema.autoencoder.export import latent_statistics, training_videos
    from kinema.autoencoder.config import load_autoencoder_config
    from kinema.cli import app

    run = ["train-vae", "configs/vae_balls.yaml", *TINY_RUN, f"train.output_dir={tmp_path / 'run'}", "train.steps=2"]
    done = CliRunner().invoke(app, run)
    assert done.exit_code == 0, done.output
    vae, latents, metadata = load_autoencoder(tmp_path / "run/autoencoder")
    assert metadata["step"] == 2 and vae.config.channels == 8
    config = load_autoencoder_config("configs/vae_balls.yaml", TINY_RUN)
    assert latents == latent_statistics(vae, training_videos(config))  # measured on the run's data, EMA weights
    assert latents.scale != 1.0
    ema = load_file(tmp_path / "run/checkpoints/step_0000002/ema.safetensors")
    assert all(torch.equal(v, ema[f"vae.{k}"]) for k, v in vae.state_dict().items())  # the EMA autoencoder

    described = CliRunner().invoke(app, ["info", str(tmp_path / "run/checkpoints/step_0000002")])
    assert described.exit_code == 0 and "step: 2" in described.output and "causal video autoencoder" in \
        described.output and "disc_start" in described.output

    again = CliRunner().invoke(app, run)  # a fresh run into the same folder is refused, as for kinema train
    assert again.exit_code == 2 and "--overwrite" in again.stderr

    exported = CliRunner().invoke(app, ["export", str(tmp_path / "run/checkpoints/step_0000002"),
                                        str(tmp_path / "vae")])
    assert exported.exit_code == 0, exported.output
    assert load_autoencoder(tmp_path / "vae")[1] == latents
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = CliRunner().invoke(app, ["export", str(tmp_path / "run/checkpoints/step_0000002"), str(foreign)])
    assert refused.exit_code == 2 and "not an autoencoder directory" in refused.stderr
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("override, message", [
    ("loss.bogus=1", "unknown config key 'loss.bogus'"),
    ("loss.kl_weight=-1", "config key 'loss.kl_weight' must be at least 0"),
    ("autoencoder.spatial_downsample=3", "autoencoder.spatial_downsample must be one of 4, 8"),
    ("data.num_frames=6", "config key 'data.num_frames' must be 1 + k*n with k = autoencoder.temporal_downsample"),
    ("data.size=18", "config key 'data.size': clip sides must be divisible by"),
    ("model.channels=8", "unknown config section 'model'"),
    ("train.frame_tasks=[first]", "config key 'train.frame_tasks' is not supported by train-vae"),
])
def test_bad_train_vae_configs_are_one_line_errors_naming_the_key(override, message, tmp_path):
    from typer.testing import CliRunner

    from kinema.cli import app

    result = CliRunner().invoke(app, ["train-vae", "configs/vae_balls.yaml", *TINY_RUN,
                                      f"train.output_dir={tmp_path / 'run'}", override])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "run/checkpoints").exists()
