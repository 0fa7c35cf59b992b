"""Guidance by the speed knob (kinema.control.speed_energy and the pipeline's `speed_guidance`): the read-out mean
speed is the simulator's step length, the energy is zero at the asked speed, guidance brings a toy denoiser's ball
to the asked speed, and the pipeline adds it by default when the knob is given."""

import pytest
import torch
from conftest import TINY_OVERRIDES
from denoisers import tiny_denoiser, tiny_run_config
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.control.readout import object_positions
from kinema.control.speed_energy import mean_speeds, speed_energy
from kinema.data.physics_balls import BouncingBallsConfig, simulate_balls
from kinema.diffusion import build_schedule, get_sampler, reconstruction_guidance
from kinema.diffusion.time_grids import time_grid
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.pipelines.text_to_video import TextToVideoPipeline

CONFIG = BouncingBallsConfig(min_balls=1, max_balls=2)


def truth_speed(clip) -> float:
    return float(clip.positions.diff(dim=0).norm(dim=-1).mean())


@pytest.mark.parametrize("seed", range(4))
def test_the_read_out_mean_speed_is_the_simulated_step_length(seed):
    clip = simulate_balls(CONFIG, seed)
    positions, mass = object_positions(clip.video[None], clip.color_names)
    speeds = mean_speeds(positions, mass)[0]
    truth = clip.positions.diff(dim=0).norm(dim=-1).mean(0)
    assert torch.allclose(speeds, truth, atol=0.1), (speeds, truth)


def test_the_energy_is_zero_at_the_asked_speed_and_grows_away_from_it():
    clip = simulate_balls(BouncingBallsConfig(min_balls=1, max_balls=1), 2)
    speed = truth_speed(clip)
    energy = {v: speed_energy(torch.tensor([v]), [None], CONFIG)(clip.video[None]).item()
              for v in (speed, speed + 1, speed + 2, max(speed - 1, 0))}
    assert energy[speed] < 0.01 * energy[speed + 1] and energy[speed + 1] < energy[speed + 2]
    assert energy[max(speed - 1, 0)] > 10 * energy[speed]
    with pytest.raises(KinemaError, match="one speed of at least 0"):
        speed_energy(torch.tensor([-1.0]), [None], CONFIG)


def test_guidance_brings_a_toy_denoisers_ball_to_the_asked_speed():
    """The toy clean estimate is a red ball moving in a straight line from x_t's red centroid in its first frame to
    that in its last: unguided, the speed is the noise's; guided, it is the one asked."""
    def denoise(x, t):
        centre, _ = object_positions(x.clamp(-1, 1), ["red"])
        start = centre[:, 0, :1]
        step = (centre[:, 0, -1:] - start) / (x.shape[2] - 1)
        frames = torch.arange(x.shape[2], dtype=x.dtype)[None, :, None]
        return render_balls_differentiable((start + frames * step).clamp(3, 13))

    schedule, sample = build_schedule("cosine"), get_sampler("ddim")
    noise = torch.randn(1, 3, 6, 16, 16, generator=torch.Generator().manual_seed(0))
    speeds = {}
    for target, weight in ((1.0, 0.0), (1.0, 30.0), (2.0, 30.0)):
        guided = reconstruction_guidance(denoise, speed_energy(torch.tensor([target]), ["red"], CONFIG), weight)
        video = sample(guided, noise, time_grid(schedule, 12), schedule)
        speeds[(target, weight)] = mean_speeds(*object_positions(video, ["red"]))[0, 0].item()
    assert abs(speeds[(1.0, 30.0)] - 1.0) < 0.2 and abs(speeds[(2.0, 30.0)] - 2.0) < 0.2, speeds
    assert speeds[(1.0, 0.0)] < 0.5, speeds  # the noise's own


def render_balls_differentiable(centres: torch.Tensor, radius: float = 2.5, size: int = 16) -> torch.Tensor:
    """Anti-aliased red discs at centres [B, T, 2], differentiable in the centres: [B, 3, T, size, size]."""
    grid = torch.arange(size, dtype=centres.dtype) + 0.5
    dx = grid[None, None, None, :] - centres[..., 0, None, None]
    dy = grid[None, None, :, None] - centres[..., 1, None, None]
    coverage = (radius + 0.5 - (dx.square() + dy.square() + 1e-6).sqrt()).clamp(0, 1)  # [B, T, H, W]
    colour = torch.tensor([1.0, 0.12, 0.1], dtype=centres.dtype)[None, :, None, None, None]
    return coverage[:, None] * colour * 2 - 1


@pytest.fixture(scope="module")
def pipe():
    model = tiny_denoiser("video_unet", text_dim=0, attributes=("speed",), perturb=0.3).eval()
    return TextToVideoPipeline(model, tiny_run_config(model, "video_unet"))


OPTIONS = dict(num_frames=4, height=16, width=16, steps=2, sampler="ddim", guidance=1.0, progress=False)


def test_the_pipeline_guides_toward_the_speed_knob_by_default_and_refuses_it_without_one(pipe, monkeypatch):
    import kinema.pipelines.text_to_video as t2v

    asked = []
    monkeypatch.setattr(t2v, "speed_energy", lambda speed, colours, simulator: asked.append(speed) or
                        (lambda x0: x0.sum((1, 2, 3, 4)) * 0))
    pipe(["a red ball", "a ball"], attributes={"speed": 2.0}, **OPTIONS)
    assert [s.tolist() for s in asked] == [[2.0], [2.0]]  # one energy per video
    pipe("a red ball", attributes={"speed": 2.0}, speed_guidance=0.0, **OPTIONS)
    pipe("a red ball", **OPTIONS)
    assert len(asked) == 2
    with pytest.raises(KinemaError, match="speed guidance pulls the objects toward the speed knob"):
        pipe("a red ball", speed_guidance=1.0, **OPTIONS)
    with pytest.raises(KinemaError, match="speed guidance must be at least 0"):
        pipe("a red ball", attributes={"speed": 2.0}, speed_guidance=-1.0, **OPTIONS)


def test_the_cli_refuses_speed_guidance_without_a_speed_in_one_line(tmp_path):
    config = load_config(None, [*TINY_OVERRIDES, f"train.output_dir={tmp_path / 'run'}"])
    model = save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config, {"step": 1})
    result = CliRunner().invoke(app, ["generate", "a red ball", "--speed-guidance", "5", "-c", str(model),
                                      "--steps", "1", "-o", str(tmp_path / "out.gif")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "toward the speed knob" in lines[0], lines
