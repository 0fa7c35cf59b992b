"""Latent diffusion (chapter 11.4; Rombach et al. 2022): the latent space of a causal autoencoder, a pipeline that
samples latents and decodes them, known pixels kept exactly, time-anchored phrases and guidance energies read
through the decoder, and model directories that carry their autoencoder."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config, tiny_vae

from kinema.autoencoder import LatentNormalization, save_autoencoder
from kinema.autoencoder.latent_space import LatentSpace
from kinema.conditioning.anchored import plan_prompts
from kinema.control.direction import direction_energy
from kinema.control.identity_energy import identity_energy, known_masses
from kinema.data.physics_balls import BouncingBallsConfig, simulate_balls
from kinema.errors import KinemaError
from kinema.models.pretrained import load_pretrained, save_pretrained
from kinema.pipelines.known import KnownPixels
from kinema.pipelines import text_to_video
from kinema.pipelines.text_to_video import TextToVideoPipeline

K, S, Z = 2, 4, 4  # temporal and spatial factor, latent channels
FRAMES, SIZE = 1 + 2 * K, 16  # 5 frames of 16x16 -> 3 latent frames of 4x4


@pytest.fixture
def vae_dir(tmp_path):
    return save_autoencoder(tmp_path / "vae", tiny_vae(), LatentNormalization(scale=0.5, shift=0.1))


def latent_config(vae_dir, frame_conditioning: bool = False):
    model = tiny_denoiser(text_dim=0, in_channels=Z, frame_conditioning=frame_conditioning, perturb=0.2).eval()
    config = tiny_run_config(model, "video_unet")
    config = replace(config, autoencoder=str(vae_dir),
                     data=replace(config.data, num_frames=FRAMES, size=SIZE, radius_range=(2.0, 3.0)))
    return model, config


def clip(seed: int = 3) -> torch.Tensor:
    return torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_latents_are_the_normalised_posterior_mean_and_decode_back(vae_dir):
    space, vae = LatentSpace.load(vae_dir), tiny_vae()
    video = clip()
    latents = space.encode(video)
    with torch.no_grad():
        mean = vae.encode(video).mean
        torch.testing.assert_close(latents, (mean - 0.1) * 0.5)
        torch.testing.assert_close(space.decode(latents), vae.decode(mean).clamp(-1, 1))
    drawn = space.encode(video, [torch.Generator().manual_seed(0)])
    assert drawn.shape == latents.shape and not torch.equal(drawn, latents)
    assert torch.equal(drawn, space.encode(video, [torch.Generator().manual_seed(0)]))


def test_a_latent_element_is_known_only_where_all_its_pixels_are(vae_dir):
    space = LatentSpace.load(vae_dir)
    mask = torch.zeros(1, 1, FRAMES, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, :3] = True            # frame 0 (latent 0) and frames 1-2 (latent 1)
    mask[:, :, 2, 5, 9] = False      # but one pixel of frame 2: latent 1's block (1, 2) is not whole
    mask[:, :, 3] = True             # frame 3 alone: half of latent 2
    latent = space.latent_mask(mask)
    assert latent.shape == (1, 1, 3, SIZE // S, SIZE // S)
    assert latent[0, 0, 0].all() and not latent[0, 0, 2].any()
    assert latent[0, 0, 1].sum() == 15 and not latent[0, 0, 1, 1, 2]


@pytest.mark.parametrize("frames,size,needle", [(4, SIZE, "makes 1 .* 2.n frames"), (FRAMES, 18, "divisible by 4")])
def test_sizes_the_autoencoder_cannot_encode_are_refused(vae_dir, frames, size, needle):
    with pytest.raises(KinemaError, match=needle):
        LatentSpace.load(vae_dir).latent_size(frames, size, size)


def test_the_pipeline_samples_latents_and_decodes_them(vae_dir, monkeypatch):
    model, config = latent_config(vae_dir)
    pipe = TextToVideoPipeline(model, config)
    assert pipe.spec.channels == 3 and pipe.spec.num_frames == FRAMES and pipe.spec.autoencoder
    seen = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, x, t, cond: seen.append(x.shape) or forward(self, x, t,
                                                                                                          cond))
    video = pipe("", steps=2, guidance=1.0, progress=False)
    assert video.shape == (1, 3, FRAMES, SIZE, SIZE)
    assert set(seen) == {torch.Size([1, Z, 3, SIZE // S, SIZE // S])}
    space = LatentSpace.load(vae_dir)
    torch.testing.assert_close(space.decode(space.encode(video)), pipe.latents.decode(pipe.latents.encode(video)))


@pytest.mark.parametrize("frame_conditioning", [False, True])
def test_known_pixels_come_back_exactly_from_a_latent_model(vae_dir, frame_conditioning):
    model, config = latent_config(vae_dir, frame_conditioning)
    pipe = TextToVideoPipeline(model, config)
    video = clip()
    mask = torch.zeros(1, 1, FRAMES, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, 0] = True
    mask[:, :, 3, 2:9, 4:12] = True
    out = pipe("", known=KnownPixels(video, mask), steps=2, guidance=1.0, progress=False)
    assert torch.equal(out[mask.expand_as(out)], video[mask.expand_as(video)])
    assert not torch.allclose(out[:, :, 1], video[:, :, 1])


def test_a_latent_frame_takes_the_mean_share_of_the_pixel_frames_it_holds(vae_dir):
    shares = torch.tensor([[[1.0, 1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 1.0, 0.0]]])  # [B, K, 1 + 2*2]
    torch.testing.assert_close(LatentSpace.load(vae_dir).frame_shares(shares),
                               torch.tensor([[[1.0, 0.75, 0.0], [0.0, 0.25, 0.5]]]))
    with pytest.raises(KinemaError, match="makes 1 .* 2.n frames"):
        LatentSpace.load(vae_dir).frame_shares(shares[..., :4])


def test_time_anchored_phrases_own_each_latent_frame_as_they_own_its_pixel_frames(vae_dir, monkeypatch):
    """Phrase "a" owns frames 0-1 and "b" frames 2-4: each latent frame's estimate is the phrases' estimates in the
    shares of the pixel frames it holds (frame 0; frames 1-2, half each; frames 3-4)."""
    model, config = latent_config(vae_dir)
    pipe = TextToVideoPipeline(model, config)
    level = {"a": 1.0, "b": -1.0}
    monkeypatch.setattr(pipe, "_guided", lambda texts, *args, **kwargs: lambda x, t: torch.full_like(
        x, level[texts[0]]))
    plan = plan_prompts([[(0, "a"), (2, "b")]], FRAMES, blend=0)
    x = torch.zeros(1, Z, 3, SIZE // S, SIZE // S)
    x0 = pipe.denoiser(plan, 0, FRAMES)(x, torch.ones(1))
    torch.testing.assert_close(x0[0, 0, :, 0, 0], torch.tensor([1.0, 0.0, -1.0]))
    assert pipe([[(0, "a"), (2, "b")]], steps=1, guidance=1.0, progress=False).shape == (1, 3, FRAMES, SIZE, SIZE)


def test_guidance_energies_read_a_latent_models_decoded_video(vae_dir):
    """Direction guidance on a latent model: its energy, measured on the decoded video, falls; weight 0 is the
    unguided video."""
    model, config = latent_config(vae_dir)
    pipe = TextToVideoPipeline(model, config)
    options = dict(steps=3, sampler="ddim", guidance=1.0, retries=0, progress=False)
    prompt = "a red ball bounces to the right"
    plain = pipe(prompt, **options)
    assert torch.equal(plain, pipe(prompt, direction_guidance=0.0, **options))
    on = pipe(prompt, direction_guidance=30.0, **options)
    energy = direction_energy(torch.tensor([[1.0, 0.0]]))
    assert energy(on).item() < 0.9 * energy(plain).item(), (energy(on).item(), energy(plain).item())


def test_a_latent_models_finished_video_is_projected_again_in_pixels(vae_dir, monkeypatch):
    """Decoding moves the balls of a projected estimate again: the physics projection acts once more on the decoded
    video, whose result is the output (here a marker: the number of projections so far)."""
    model, config = latent_config(vae_dir)
    pipe = TextToVideoPipeline(model, config)
    calls = []

    def marking(video, colours, simulator, strength):
        calls.append((tuple(video.shape), colours, strength))
        return torch.full_like(video, len(calls) / 100)

    monkeypatch.setattr(text_to_video, "project_to_physics", marking)
    video = pipe("a red ball", physics_projection=0.5, steps=4, sampler="ddim", guidance=1.0, retries=0,
                 physics_start=0.0, progress=False)
    assert calls == [((1, 3, FRAMES, SIZE, SIZE), ["red"], 0.5)] * 3  # estimates at t = 0.5, 0.25; the video
    torch.testing.assert_close(video, torch.full_like(video, 0.03))


def test_identity_guidance_keeps_the_colours_a_latent_models_given_frame_shows(vae_dir, monkeypatch):
    """Animating a given frame: the colour masses to keep are read on the given pixels (not on their latents)."""
    model, config = latent_config(vae_dir, frame_conditioning=True)
    pipe = TextToVideoPipeline(model, config)
    balls = BouncingBallsConfig(size=SIZE, radius_range=(2.0, 3.0), min_balls=1, max_balls=1, num_frames=FRAMES)
    known = KnownPixels.frames({0: simulate_balls(balls, 0).video[:, 0]}, FRAMES)
    kept = []
    monkeypatch.setattr(text_to_video, "identity_energy", lambda *args: kept.append(args[-1]) or identity_energy(
        *args))
    pipe("", known=known, identity_guidance=10.0, steps=2, guidance=1.0, retries=0, progress=False)
    torch.testing.assert_close(kept[0], known_masses(known.video, known.whole_frames))


def test_a_latent_model_makes_long_videos_window_by_window_keeping_each_overlap_exactly(vae_dir, monkeypatch):
    from kinema.pipelines.long_video import LongVideo, collect_long

    model, config = latent_config(vae_dir)
    pipe = TextToVideoPipeline(model, config)
    windows, sample_window = [], LongVideo._sample_window
    monkeypatch.setattr(LongVideo, "_sample_window", lambda self, *args: windows.append(sample_window(self, *args))
                        or windows[-1])
    video = collect_long(pipe, "", 13, window=FRAMES, overlap=2, steps=2, guidance=1.0, identity_guidance=0.0)
    assert video.shape == (1, 3, 13, SIZE, SIZE) and len(windows) == 4  # frames 0-4, 3-7, 6-10, 8-12
    for before, after, shared in zip(windows, windows[1:], (2, 2, 3)):
        assert torch.equal(after[:, :shared], before[:, -shared:])
    torch.testing.assert_close(video[0, :, 8:], windows[-1])
    for options, needle in [(dict(mode="fifo"), "fifo mode"), (dict(window=4), "makes 1 .* 2.n frames")]:
        with pytest.raises(KinemaError, match=needle):
            collect_long(pipe, "", 13, **options)


def test_a_latent_model_directory_carries_its_autoencoder(vae_dir, tmp_path):
    model, config = latent_config(vae_dir)
    saved = save_pretrained(tmp_path / "model", model, config)
    moved = tmp_path / "elsewhere"
    shutil.move(str(saved), str(moved))
    shutil.rmtree(vae_dir)  # the directory no longer needs the original
    _, loaded, _ = load_pretrained(moved)
    assert loaded.autoencoder == str(moved / "autoencoder")
    pipe = TextToVideoPipeline.from_pretrained(moved)
    assert pipe.latents.normalization == LatentNormalization(scale=0.5, shift=0.1)
    assert pipe("", steps=1, guidance=1.0, progress=False).shape == (1, 3, FRAMES, SIZE, SIZE)
    assert '"autoencoder": "autoencoder"' in (moved / "config.json").read_text()  # no machine paths inside


def test_an_autoencoder_directory_is_not_taken_for_a_denoiser(vae_dir):
    with pytest.raises(KinemaError, match="autoencoder directory, not a denoiser"):
        TextToVideoPipeline.from_pretrained(vae_dir)


# ------------------------------------------------------------------------------------------ training on latents

LATENT_RUN = ["model.in_channels=4", f"data.num_frames={FRAMES}", f"data.size={SIZE}", "train.steps=2"]


def recording(trainer) -> list[torch.Tensor]:
    """The clean tensors the trainer's diffusion loss is given, step by step."""
    seen, loss = [], trainer.loss_fn
    trainer.loss_fn = lambda model_fn, x0, **kw: seen.append(x0.detach().clone()) or loss(model_fn, x0, **kw)
    return seen


def test_a_latent_model_trains_on_sampled_latents_of_its_clips(vae_dir, tiny_config, text_encoder, monkeypatch):
    from kinema.training.trainer import Trainer

    encoded, encode = [], LatentSpace.encode
    monkeypatch.setattr(LatentSpace, "encode", lambda self, video, generators=None: encoded.append(
        (video, generators, encode(self, video, generators))) or encoded[-1][2])
    trainer = Trainer(tiny_config(*LATENT_RUN, f"model.autoencoder={vae_dir}"), text_encoder=text_encoder,
                      progress=False)
    seen = recording(trainer)
    checkpoint = trainer.train()
    assert [x.shape for x in seen] == [torch.Size([2, Z, 3, SIZE // S, SIZE // S])] * 2
    for (video, generators, latents), x0 in zip(encoded, seen):
        assert video.shape == (2, 3, FRAMES, SIZE, SIZE) and len(generators) == 2
        assert torch.equal(latents, x0)
        mean = encode(LatentSpace.load(vae_dir), video)
        assert not torch.allclose(latents, mean)  # a posterior sample, not the mean
    assert (checkpoint / "autoencoder" / "config.json").is_file()


def test_cached_latents_are_what_a_latent_model_trains_on(vae_dir, tiny_config, text_encoder, tmp_path):
    from kinema.autoencoder.cache import cache_latents
    from kinema.data.shards import ShardDataset, ShardsConfig
    from kinema.training.trainer import Trainer

    config = tiny_config(*LATENT_RUN, f"model.autoencoder={vae_dir}")
    cache_latents(config, tmp_path / "latents", items=4)
    cached = ShardDataset(str(tmp_path / "latents"))
    assert len(cached) == 4 and "video" not in cached[0] and cached[0]["caption"]
    assert cached[0]["latent"].shape == (Z, 3, SIZE // S, SIZE // S)
    from_shards = replace(config, data_kind="shards", data=ShardsConfig(str(tmp_path / "latents"), num_frames=FRAMES,
                                                                        size=SIZE))
    trainer = Trainer(from_shards, text_encoder=text_encoder, progress=False, overwrite=True)
    seen = recording(trainer)
    trainer.train()
    stored = torch.stack([cached[i]["latent"].float() for i in range(4)])
    assert len(seen) == 2 and all(any(torch.equal(row, other) for other in stored) for x0 in seen for row in x0)
    pixel_model = replace(from_shards, autoencoder="", model=replace(from_shards.model, in_channels=3))
    with pytest.raises(KinemaError, match="set model.autoencoder"):
        Trainer(pixel_model, text_encoder=text_encoder, progress=False, overwrite=True).train()


@pytest.mark.parametrize("overrides,needle", [
    (["model.in_channels=3"], "'model.in_channels' is 3 but autoencoder"),
    (["data.num_frames=4"], "makes 1 .* 2.n frames"),
    (["train.temporal_loss.feature=0.1"], "temporal_loss.feature"),
])
def test_a_latent_run_that_does_not_fit_its_autoencoder_is_one_line(vae_dir, tiny_config, text_encoder, overrides,
                                                                     needle):
    from kinema.training.trainer import Trainer

    with pytest.raises(KinemaError, match=needle):
        Trainer(tiny_config(*LATENT_RUN, f"model.autoencoder={vae_dir}", *overrides), text_encoder=text_encoder,
                progress=False)


def test_kinema_generate_writes_a_latent_models_video(vae_dir, tmp_path):
    from typer.testing import CliRunner

    from kinema.cli import app
    from kinema.video import read_video

    model, config = latent_config(vae_dir)
    save_pretrained(tmp_path / "model", model, config)
    result = CliRunner().invoke(app, ["generate", "a red ball", "-c", str(tmp_path / "model"), "--steps", "2",
                                      "-o", str(tmp_path / "out.mp4")])
    assert result.exit_code == 0, result.output
    video = read_video(tmp_path / "out.mp4")[0]
    assert video.shape == (3, FRAMES, SIZE * 8, SIZE * 8)  # written at the default scale 8


def test_asked_frames_a_latent_model_cannot_make_are_the_first_of_the_fewest_it_can(vae_dir, tmp_path):
    """A latent model makes 1 + k*n frames: asked for 4, it makes 5 and returns their first 4 (the CLI alike); a
    frame count given with known pixels stays a one-line error."""
    from typer.testing import CliRunner

    from kinema.cli import app
    from kinema.video import read_video

    model, config = latent_config(vae_dir)
    pipe = TextToVideoPipeline(model, config)
    made = [pipe(["a red ball"], num_frames=frames, steps=2, seed=1, progress=False) for frames in (FRAMES - 1, FRAMES)]
    assert made[0].shape[2] == FRAMES - 1 and torch.equal(made[0], made[1][:, :, :FRAMES - 1])
    known = KnownPixels(clip()[:, :, :FRAMES - 1], torch.ones(1, 1, FRAMES - 1, SIZE, SIZE, dtype=torch.bool))
    with pytest.raises(KinemaError, match="1 .* 2.n frames"):
        pipe(["a red ball"], num_frames=FRAMES - 1, known=known, steps=2, progress=False)
    save_pretrained(tmp_path / "model", model, config)
    result = CliRunner().invoke(app, ["generate", "a red ball", "-c", str(tmp_path / "model"), "--steps", "2",
                                      "--num-frames", str(FRAMES - 1), "-o", str(tmp_path / "out.mp4")])
    assert result.exit_code == 0, result.output
    assert read_video(tmp_path / "out.mp4")[0].shape[1] == FRAMES - 1


def test_a_latent_models_camera_warp_starts_from_its_first_video_warped_then_encoded(vae_dir, monkeypatch):
    from kinema.control.camera import camera_warped, parse_camera

    model, config = latent_config(vae_dir)
    pipe = TextToVideoPipeline(model, config)
    move = parse_camera("pan-left:1", FRAMES)
    options = dict(steps=2, guidance=1.0, camera=move, camera_guidance=0.0, progress=False)
    first = pipe("", **options)  # the warp's first pass is this very video (same seed, warp off)
    encoded, encode = [], pipe.latents.encode
    monkeypatch.setattr(pipe.latents, "encode", lambda video: encoded.append(video) or encode(video))
    warped = pipe("", camera_warp=0.5, **options)
    assert len(encoded) == 1 and warped.shape == first.shape
    torch.testing.assert_close(encoded[0], camera_warped(first, move))  # warped in pixels, redrawn in latents
