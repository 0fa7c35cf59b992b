"""Identity guidance (kinema.control.identity_energy, chapter 11.3.6): an energy near zero on simulated clips and large
when a ball vanishes or changes colour, whose gradient brings a fading ball back, with references from known frames,
the prompt's colours or each colour's own mass; the pipeline option and the CLI flag."""

import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config
from PIL import Image
from typer.testing import CliRunner

from kinema.cli import app
from kinema.control.identity_energy import colour_masses, identity_energy, known_masses, named_colours
from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig, render_balls, simulate_balls
from kinema.errors import KinemaError
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline

CONFIG = BouncingBallsConfig(max_balls=2, num_frames=8)
RED = list(BALL_COLORS).index("red")


def energies(video, caption, first_known=False):
    """The energy with the caption's colours, with frame 0 known, and with no colour named (constancy only)."""
    frames = video.shape[2]
    named, unnamed = named_colours([[caption]], torch.ones(1, 1, frames))
    known = known_masses(video, torch.arange(frames)[None] == 0) if first_known else None
    return (identity_energy(named, unnamed, CONFIG, known)(video).item(),
            identity_energy(torch.zeros_like(named), torch.ones_like(unnamed), CONFIG)(video).item())


def recoloured(clip, frames):
    """The clip re-rendered with its first ball in a colour absent from it from `frames` on."""
    absent = next(BALL_COLORS[name] for name in BALL_COLORS if name not in clip.color_names)
    later = render_balls(clip.positions.numpy(), clip.radii.numpy(), [absent, *clip.colors.numpy()[1:]], clip.size)
    video = clip.video.clone()
    video[:, frames:] = later[:, frames:]
    return video[None]


def test_energy_is_near_zero_on_simulated_clips_and_large_when_a_ball_vanishes_or_changes_colour():
    for seed in range(4):
        clip = simulate_balls(CONFIG, seed)
        real = clip.video[None]
        vanished = real.clone()
        vanished[:, :, 4:] = -1.0  # every ball gone from frame 4 on
        for first_known in (False, True):
            kept, broken, swapped = (energies(v, clip.caption, first_known) for v in
                                     (real, vanished, recoloured(clip, 4)))
            assert max(kept) < 0.01, (seed, kept)
            assert min(broken) > 0.5 and min(swapped) > 0.5, (seed, broken, swapped)


def test_one_weight_pushes_pixels_alike_at_any_frame_size():
    clip = simulate_balls(CONFIG, 0)
    pushes = {}
    for size in (32, 64):
        scale = size / clip.size
        video = render_balls(clip.positions.numpy() * scale, clip.radii.numpy() * scale, clip.colors.numpy(),
                             size)[None]
        video[:, :, 4:] = (video[:, :, 4:] + 1) * 0.5 - 1  # both balls dim to half from frame 4 on
        named, unnamed = named_colours([[clip.caption]], torch.ones(1, 1, 8))
        video.requires_grad_(True)
        (gradient,) = torch.autograd.grad(identity_energy(named, unnamed, CONFIG)(video).sum(), video)
        pushes[size] = gradient.abs().amax().item()
    assert pushes[32] > 0 and 0.8 < pushes[64] / pushes[32] < 1.25, pushes


def test_the_gradient_brings_a_fading_ball_back():
    clip = simulate_balls(BouncingBallsConfig(min_balls=1, max_balls=1, num_frames=8), 3)
    faded = clip.video[None].clone()
    faded[:, :, 4:] = (faded[:, :, 4:] + 1) * 0.3 - 1  # the ball dims to 30% from frame 4 on
    named, unnamed = named_colours([[clip.caption]], torch.ones(1, 1, 8))
    known = known_masses(faded, torch.arange(8)[None] < 2)
    video = faded.requires_grad_(True)
    (gradient,) = torch.autograd.grad(identity_energy(named, unnamed, CONFIG, known)(video).sum(), video)
    colour = list(BALL_COLORS).index(clip.color_names[0])
    before, after = colour_masses(faded.detach())[0, colour], colour_masses(faded.detach() - 20 * gradient)[0, colour]
    assert (after[4:] > before[4:] + 1.0).all() and (after[:4] - before[:4]).abs().max() < 0.5, (before, after)


def test_known_frames_set_the_reference():
    clip = simulate_balls(BouncingBallsConfig(min_balls=1, max_balls=1, num_frames=8), 0)
    blue = render_balls(clip.positions.numpy(), clip.radii.numpy(), [BALL_COLORS["blue"]], clip.size)[None]
    red = render_balls(clip.positions.numpy(), clip.radii.numpy(), [BALL_COLORS["red"]], clip.size)[None]
    named, unnamed = torch.zeros(1, len(BALL_COLORS), 8), torch.ones(1, 8)  # no colour named: constancy only
    given = torch.ones(1, 8, dtype=torch.bool)
    assert identity_energy(named, unnamed, CONFIG)(blue).item() < 0.01
    assert identity_energy(named, unnamed, CONFIG, known_masses(blue, given))(blue).item() < 0.01
    assert identity_energy(named, unnamed, CONFIG, known_masses(red, given))(blue).item() > 1.0
    assert known_masses(red, torch.zeros(1, 8, dtype=torch.bool)).isnan().all()  # no whole frame: no reference


def test_each_frame_expects_the_colours_of_its_phrase():
    shares = torch.tensor([[[1.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.5, 1.0]]])  # two phrases over 4 frames
    named, unnamed = named_colours([["a red ball falls"], ["two balls bounce"]], shares)
    torch.testing.assert_close(named[0, RED], torch.tensor([1.0, 1.0, 0.5, 0.0]))
    assert named[0].sum() == named[0, RED].sum()
    torch.testing.assert_close(unnamed[0], torch.tensor([0.0, 0.0, 0.5, 1.0]))


def pipeline():
    model = tiny_denoiser("video_unet", text_dim=0, frame_conditioning=True, perturb=0.3).eval()
    return TextToVideoPipeline(model, tiny_run_config(model, "video_unet"))


def test_the_pipeline_option_steers_toward_the_reference_and_weight_zero_changes_nothing():
    pipe = pipeline()
    clip = simulate_balls(BouncingBallsConfig(size=8, radius_range=(1.5, 2.0), min_balls=1, max_balls=1,
                                              num_frames=4), 0)
    known = KnownPixels.frames({0: clip.video[:, 0]}, 4)
    options = dict(known=known, steps=2, sampler="ddim", num_frames=4, height=8, width=8, progress=False)
    plain, off, on = pipe([""], **options), pipe([""], identity_guidance=0.0, **options), \
        pipe([""], identity_guidance=50.0, **options)
    assert torch.equal(plain, off)
    small = BouncingBallsConfig(size=8, radius_range=(1.5, 2.0))
    energy = identity_energy(torch.zeros(1, len(BALL_COLORS), 4), torch.ones(1, 4), small,
                             known_masses(known.video, known.whole_frames))
    assert energy(on).item() < 0.9 * energy(plain).item(), (energy(on).item(), energy(plain).item())
    with pytest.raises(KinemaError, match="identity guidance must be at least 0"):
        pipe([""], identity_guidance=-1.0, **options)


@pytest.mark.parametrize("command", ["generate", "animate", "stream"])
def test_cli_refuses_a_negative_weight_in_one_line(command, tmp_path):
    image = tmp_path / "frame.png"
    Image.new("RGB", (32, 32)).save(image)
    given = {"generate": ["a red ball", "-o", str(tmp_path / "out.mp4")], "stream": ["a red ball"],
             "animate": [str(image), "--prompt", "a red ball", "-o", str(tmp_path / "out.mp4")]}[command]
    result = CliRunner().invoke(app, [command, *given, "--identity-guidance", "-1"])
    assert result.exit_code == 2, result.output
    assert "--identity-guidance must be at least 0" in result.output and len(result.output.strip().splitlines()) == 1
