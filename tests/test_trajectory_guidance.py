"""Trajectory guidance (kinema.control.trajectory_energy, binding, the pipeline and `kinema generate --trajectory`):
the energy's closed-form gradient, guidance that pulls a sampled ball onto its path, prompts that must name every
object, and bad input as one line."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES
from denoisers import tiny_denoiser, tiny_run_config
from typer.testing import CliRunner

from kinema.cli import app
from kinema.conditioning.anchored import plan_prompts
from kinema.config import DiffusionConfig, load_config
from kinema.control.binding import bind_objects, prompt_colours
from kinema.control.physics_energy import physics_energy
from kinema.control.readout import object_moments, object_positions
from kinema.control.trajectory import ObjectPath, TrajectorySpec
from kinema.control.trajectory_energy import (spacing_energy, trajectory_distance, trajectory_distance_gradient,
                                             trajectory_energy)
from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig, simulate_balls
from kinema.diffusion import build_schedule, get_sampler, reconstruction_guidance
from kinema.diffusion.time_grids import time_grid
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.pipelines import text_to_video
from kinema.pipelines.text_to_video import TextToVideoPipeline


def spec(*objects: tuple[str, str | None], frames: int = 4, size: int = 16) -> TrajectorySpec:
    """Objects moving left to right along a row each."""
    xs = torch.linspace(4.0, size - 4.0, frames)
    return TrajectorySpec(size, frames, tuple(
        ObjectPath(description, colour, torch.stack([xs, torch.full_like(xs, 4.0 + 6 * k)], -1), 2.5)
        for k, (description, colour) in enumerate(objects)))


def test_closed_form_gradient_matches_autograd_and_skips_frames_without_a_target():
    generator = torch.Generator().manual_seed(0)
    positions = (torch.rand(2, 3, 5, 2, generator=generator, dtype=torch.float64) * 16).requires_grad_(True)
    spread = (torch.rand(2, 3, 5, generator=generator, dtype=torch.float64) * 10).requires_grad_(True)
    targets = torch.rand(2, 3, 5, 2, generator=generator, dtype=torch.float64) * 16
    targets[0, 1, 2] = float("nan")
    radii = torch.rand(2, 3, generator=generator, dtype=torch.float64) * 4 + 1
    weights = torch.rand(2, 3, 5, generator=generator, dtype=torch.float64)
    energy = trajectory_distance(positions, spread, targets, radii, weights)
    autograd = torch.autograd.grad(energy.sum(), (positions, spread))
    closed = trajectory_distance_gradient(positions, spread, targets, radii, weights)
    for mine, expected in zip(closed, autograd):
        torch.testing.assert_close(mine, expected)
    assert autograd[0][0, 1, 2].abs().sum() == 0 and autograd[0][0, 1, 1].abs().sum() > 0
    assert autograd[1][0, 1, 2] == 0 and autograd[1][0, 1, 1] != 0


def test_energy_of_a_video_is_differentiated_by_the_closed_form_through_the_read_out():
    clip = simulate_balls(BouncingBallsConfig(max_balls=2, min_balls=2), 1)
    video = clip.video[None].double().requires_grad_(True)
    offset = torch.tensor([1.5, -2.0], dtype=torch.float64)
    truth, radii = clip.positions.transpose(0, 1)[None].double(), clip.radii[None].double()
    energy = trajectory_energy(truth + offset, radii, clip.color_names)(video)
    (gradient,) = torch.autograd.grad(energy.sum(), video)

    plain = video.detach().clone().requires_grad_(True)  # the same energy differentiated by autograd alone
    positions, spread, mass = object_moments(plain, clip.color_names)
    apart = (truth[:, :1] - truth[:, 1:]).norm(dim=-1)  # the one pair's asked distance [1, 1, T]
    spacing = spacing_energy(positions, torch.minimum(mass[:, :1], mass[:, 1:]).detach(), apart)
    (expected,) = torch.autograd.grad((trajectory_distance(positions, spread, truth + offset, radii,
                                                           mass.detach()) + spacing).sum(), plain)
    torch.testing.assert_close(gradient, expected)
    at_rest = trajectory_energy(truth, radii, clip.color_names)(video).item()
    assert energy.item() > 0.5 and at_rest < 0.01 * energy.item()
    assert trajectory_energy(truth, radii * 1.5, clip.color_names)(video).item() > 0.2  # the wrong size costs too


def test_two_copies_cost_more_than_one_ball_at_their_mean():
    """The centre of mass of two half-way copies is on the path: the shape term tells them from one ball."""
    path = torch.tensor([[[[16.0, 16.0]]]])
    one = rendered_ball(path[:, 0], size=32)
    two = torch.maximum(rendered_ball(path[:, 0] - 6, size=32), rendered_ball(path[:, 0] + 6, size=32))
    energy = trajectory_energy(path, torch.tensor([[2.5]]), ["red"])
    assert energy(two).item() > 10 * energy(one).item() + 1


def rendered_ball(positions: torch.Tensor, size: int = 16) -> torch.Tensor:
    """A red disc of radius 2.5 at positions [B, T, 2], soft-edged and differentiable: [B, 3, T, H, W]."""
    centres = torch.arange(size, dtype=positions.dtype) + 0.5
    dx = centres[None, None, None, :] - positions[..., 0, None, None]
    dy = centres[None, None, :, None] - positions[..., 1, None, None]
    alpha = torch.sigmoid((2.5 - (dx.square() + dy.square() + 1e-6).sqrt()) / 0.5)  # [B, T, H, W]
    colour = torch.tensor(BALL_COLORS["red"], dtype=positions.dtype)[None, :, None, None, None]
    return alpha[:, None] * colour * 2 - 1


def test_the_spacing_term_pushes_apart_only_objects_closer_than_their_targets():
    """Red and blue asked 12 px apart: drawn 6 px apart, the spacing term adds energy and a push apart along x;
    drawn 18 px apart (as far off their targets, but apart), it adds nothing."""
    targets = torch.tensor([[[[10.0, 16.0]] * 4, [[22.0, 16.0]] * 4]], dtype=torch.float64)  # [1, K=2, T=4, 2]
    radii = torch.full((1, 2), 2.5, dtype=torch.float64)

    def drawn(red_x: float, blue_x: float) -> torch.Tensor:
        red = rendered_ball(torch.tensor([[[red_x, 16.0]] * 4], dtype=torch.float64), size=32)
        blue = (rendered_ball(torch.tensor([[[blue_x, 16.0]] * 4], dtype=torch.float64), size=32) + 1) / 2
        blue = blue.amax(1, keepdim=True) * torch.tensor(BALL_COLORS["blue"], dtype=torch.float64)[:, None, None, None]
        return torch.maximum(red, blue * 2 - 1).requires_grad_(True)

    for red_x, blue_x, closer in ((13.0, 19.0, True), (7.0, 25.0, False)):
        video = drawn(red_x, blue_x)
        energies = [trajectory_energy(targets, radii, ["red", "blue"], spacing=w)(video) for w in (0.0, 1.0)]
        gradients = [torch.autograd.grad(e.sum(), video)[0] for e in energies]
        if closer:
            assert energies[1].item() > energies[0].item() + 0.1
            step = video.detach() - 20 * (gradients[1] - gradients[0])  # a descent step on the spacing term alone
            before, after = (object_moments(v, ["red", "blue"])[0][0, :, :, 0] for v in (video.detach(), step))
            assert (after[0] < before[0] - 0.01).all() and (after[1] > before[1] + 0.01).all()  # apart along x
        else:
            torch.testing.assert_close(energies[1], energies[0])
            torch.testing.assert_close(gradients[1], gradients[0])


def test_guidance_pulls_a_toy_denoisers_ball_onto_its_path():
    """The toy denoiser's clean estimate is a red ball where x_t's red mass is: unguided, sampling keeps the ball
    where the noise put it; guided, the ball ends on the asked path."""
    path = spec(("the red ball", "red")).positions()[None]  # [1, 1, T, 2]

    def denoise(x, t):
        centre, _ = object_positions(x.clamp(-1, 1), ["red"])
        return rendered_ball(centre[:, 0])

    schedule, sample = build_schedule("cosine"), get_sampler("ddim")
    noise = torch.randn(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    errors = {}
    for weight in (0.0, 20.0):
        guided = reconstruction_guidance(denoise, trajectory_energy(path, torch.tensor([[2.5]]), ["red"]), weight)
        video = sample(guided, noise, time_grid(schedule, 12), schedule)
        found, _ = object_positions(video, ["red"])
        errors[weight] = (found - path).norm(dim=-1).mean().item()
    assert errors[20.0] < 1.0 and errors[0.0] > 3 * errors[20.0], errors


def test_binding_needs_the_prompt_to_name_every_object():
    two = spec(("the red ball", "red"), ("the blue ball", "blue"))
    assert bind_objects(two, "A red ball and a blue ball bounce") == ["red", "blue"]
    with pytest.raises(KinemaError, match="'the blue ball' is not named in the prompt"):
        bind_objects(two, "a red ball bounces")
    with pytest.raises(KinemaError, match="cannot be told apart"):
        bind_objects(spec(("the ball", None), ("the red ball", "red")), "the ball and the red ball")
    assert bind_objects(spec(("the ball", None)), "a ball falls") == [None]
    assert prompt_colours("a green ball and a blue ball bounce to the left") == ["green", "blue"]
    assert prompt_colours("a ball") == [None]


@pytest.fixture(scope="module")
def pipe():
    """A text-free tiny model predicting x0: one DDIM step from t = 1 returns the guided estimate."""
    model = tiny_denoiser("video_unet", text_dim=0, perturb=0.3).eval()
    return TextToVideoPipeline(model, replace(tiny_run_config(model, "video_unet"),
                                              diffusion=DiffusionConfig(prediction="x0")))


def test_the_pipeline_adds_trajectory_and_physics_energies_into_one_reconstruction_guidance(pipe):
    path = spec(("the red ball", "red"))
    options = dict(steps=1, sampler="ddim", num_frames=4, height=16, width=16, progress=False, guidance=1.0)
    video = pipe("a red ball", trajectory=path.resized(32, 8), trajectory_guidance=3.0, physics_guidance=2.0,
                 **options)
    plain = pipe.denoiser(plan_prompts(["a red ball"], 4), 0, 4)
    along = trajectory_energy(path.positions()[None], torch.tensor([[2.5]]), ["red"])
    physics = physics_energy(["red"], pipe.config.data)
    noise = torch.randn((1, 3, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    expected = reconstruction_guidance(plain, lambda x: 3.0 * along(x) + 2.0 * physics(x), 1.0)(noise, torch.ones(1))
    torch.testing.assert_close(video, expected.clamp(-1, 1), atol=1e-5, rtol=1e-4)
    assert (video - plain(noise, torch.ones(1)).clamp(-1, 1)).abs().max() > 1e-3
    with pytest.raises(KinemaError, match="'the red ball' is not named"):
        pipe("a blue ball", trajectory=path, **options)


def test_bad_guidance_values_are_one_line_errors(pipe):
    path = spec(("the red ball", "red"))
    for options, needle in [(dict(trajectory_guidance=-1.0), "trajectory guidance"),
                            (dict(physics_guidance=-1.0), "physics guidance"),
                            (dict(physics_projection=1.5), "physics projection"),
                            (dict(trajectory_projection=-0.5), "trajectory projection"),
                            (dict(height=16, width=8), "square")]:
        with pytest.raises(KinemaError, match=needle):
            pipe("a red ball", trajectory=path, steps=1, progress=False, **options)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("trajectory")
    config = load_config(None, [*TINY_OVERRIDES, f"train.output_dir={root / 'run'}"])
    torch.manual_seed(0)
    return save_pretrained(root / "model", build_model(config.model_name, config.model), config, {"step": 1})


def write_path(path, description: str = "the red ball", **changes) -> str:
    data = {"size": 16, "num_frames": 4, "objects": [{"description": description, "radius": 2.5,
                                                      "curve": "linear", "points": [[4, 4], [12, 10]]}], **changes}
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_follows_a_trajectory_and_rejects_bad_input_in_one_line(tmp_path, checkpoint):
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["generate", *map(str, args), "-c", str(checkpoint), "--steps", "1",
                                     "-o", str(tmp_path / "out.gif")])
        return result.exit_code, result.output.strip().splitlines()

    code, lines = run("a red ball", "--trajectory", write_path(tmp_path / "ok.json"), "--trajectory-guidance", "2",
                      "--physics-guidance", "1", "--trajectory-projection", "1")
    assert code == 0 and (tmp_path / "out.gif").exists(), lines
    for args, needle in [(("a blue ball", "--trajectory", write_path(tmp_path / "a.json")), "'the red ball' is not"),
                         (("a red ball", "--trajectory", tmp_path / "missing.json"), "missing.json"),
                         (("a red ball", "--trajectory", write_path(tmp_path / "b.json", num_frames="x")),
                          "num_frames"),
                         (("a red ball", "--physics-guidance", "-1"), "physics guidance"),
                         (("a red ball", "--trajectory-projection", "1"), "give a trajectory")]:
        code, lines = run(*args)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_the_benchmark_scores_asked_clips_near_zero_and_shifted_ones_by_the_shift():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import trajectory_guidance as benchmark
    finally:
        sys.path.pop(0)
    clips = [simulate_balls(BouncingBallsConfig(max_balls=2), seed) for seed in range(3)]
    for clip in clips:
        assert bind_objects(benchmark.spec_of(clip), benchmark.prompt_of(clip)) == clip.color_names
    exact = benchmark.summary(torch.stack([c.video for c in clips]), clips, 3.0)
    moved = benchmark.summary(torch.stack([c.video.roll(3, dims=-1) for c in clips]), clips, 3.0)
    assert exact["error_px"] < 0.3 and exact["coverage"] == 1.0 and exact["s_per_video"] == 1.0
    assert 2.5 < moved["error_px"] < 3.5


def test_projection_moves_each_videos_named_objects_in_the_later_half_of_the_steps(pipe, monkeypatch):
    calls = []

    def recording(video, colours, simulator, strength):
        calls.append((len(video), colours, strength))
        return video

    monkeypatch.setattr(text_to_video, "project_to_physics", recording)
    pipe(["a green ball and a red ball", "a ball"], physics_projection=0.5, steps=4, sampler="ddim", num_frames=4,
         height=16, width=16, guidance=1.0, retries=0, progress=False)
    assert calls == [(1, ["green", "red"], 0.5), (1, [None], 0.5)] * 2  # at t = 0.5 and 0.25 of 1, 0.75, 0.5, 0.25


def test_trajectory_projection_lands_each_object_its_share_of_the_way_onto_its_path(pipe, monkeypatch):
    """The model's every estimate puts the red ball 3 px right of its path: the projection moves it, in the later
    half of the steps, all (1) or half (0.5) of the way there; without a trajectory it is a one-line error."""
    path = spec(("the red ball", "red"))
    asked = path.positions()[None]  # [1, 1, T, 2]
    astray = rendered_ball(asked[:, 0] + torch.tensor([3.0, 0.0]))
    monkeypatch.setattr(pipe, "_guided", lambda *args: lambda x, t: astray.to(x))
    options = dict(trajectory=path, trajectory_guidance=0.0, steps=4, sampler="ddim", num_frames=4, height=16,
                   width=16, guidance=1.0, retries=0, progress=False)
    offsets = {}
    for share in (0.0, 0.5, 1.0):
        found, _ = object_positions(pipe("a red ball", trajectory_projection=share, **options), ["red"])
        offsets[share] = (found - asked)[..., 0].mean().item()
    assert abs(offsets[0.0] - 3) < 0.3 and abs(offsets[0.5] - 1.5) < 0.4 and abs(offsets[1.0]) < 0.3, offsets
    with pytest.raises(KinemaError, match="give a trajectory"):
        pipe("a red ball", trajectory_projection=1.0, steps=1, progress=False)
