"""Simulated starts for image animation (kinema.control.simulated_start and the pipeline's `physics_start`): the
given frame's balls are moved along the simulator's paths, forward and back from the given frame, along the ways
the prompt's clauses ask; the pipeline starts an animation (or, given no frame, a video from a first video's frame 0)
from that video noised to `physics_start`, with a new draw for each retry, and nowhere else."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_OVERRIDES
from denoisers import tiny_denoiser, tiny_run_config
from PIL import Image
from typer.testing import CliRunner

from kinema.cli import app
from kinema.conditioning.anchored import plan_prompts
from kinema.config import load_config
from kinema.control.binding import colour_directions
from kinema.control.readout import object_positions
from kinema.control.simulated_start import ASKED_SPREAD, initial_velocities, simulated_paths, simulated_start
from kinema.data.physics_balls import (BALL_COLORS, DIRECTION_MIN_SPEED, BouncingBallsConfig, render_balls,
                                      simulate_balls)
from kinema.diffusion.rejection import attempt_seed
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline, first_frames

CONFIG = BouncingBallsConfig(min_balls=2, max_balls=2)
OPTIONS = dict(num_frames=8, height=32, width=32, steps=4, sampler="ddim", guidance=1.0, progress=False,
               identity_guidance=0.0)


def two_balls(centres=((10.0, 12.0), (22.0, 20.0)), radii=(3.5, 4.0)) -> torch.Tensor:
    """One frame [3, 32, 32] of a red and a blue ball."""
    colours = np.array([BALL_COLORS["red"], BALL_COLORS["blue"]])
    return render_balls(np.array([centres]), np.array(radii), colours, 32)[:, 0]


def test_each_colour_takes_the_direction_words_of_its_own_clause():
    assert colour_directions("a blue ball bounces to the left and a green ball bounces to the right") == \
        {"blue": (-1.0, 0.0), "green": (1.0, 0.0)}
    assert colour_directions("An orange ball falls from right to left and a red ball moves") == {"orange": (-1.0, 0.0)}
    assert colour_directions("a white ball moves upwards") == {"white": (0.0, -1.0)}
    assert colour_directions("a red ball bounces") == {} and colour_directions("balls move to the left") == {}


def test_asked_velocities_go_the_asked_way_and_the_others_any_way():
    rng = np.random.default_rng(0)
    velocities = np.stack([initial_velocities(["red", "blue"], CONFIG, {"red": (-1.0, 0.0)}, rng)
                           for _ in range(400)])  # [draws, 2, 2]
    speeds = np.linalg.norm(velocities, axis=-1)
    assert speeds.min() >= CONFIG.speed_range[0] and speeds.max() <= CONFIG.speed_range[1]
    red_angle = np.arctan2(velocities[:, 0, 1], -velocities[:, 0, 0])  # from the left
    assert np.abs(red_angle).max() <= ASKED_SPREAD + 1e-9
    assert (velocities[:, 1, 0] < 0).mean() == pytest.approx(0.5, abs=0.1)  # blue: any way


@pytest.mark.parametrize("index", [0, 3, 7])
def test_the_paths_pass_the_given_frame_and_fall_with_gravity_on_both_sides_of_it(index):
    centres, radii = np.array([[16.0, 8.0]]), np.array([3.0])
    velocities = np.array([[4.0, -2.0]])  # slow, high in the frame: no wall within 7 frames either way
    paths = simulated_paths(centres, velocities, radii, index, 8, CONFIG)
    assert paths.shape == (8, 1, 2)
    np.testing.assert_allclose(paths[index], centres)
    steps = np.diff(paths[:, 0], axis=0)
    np.testing.assert_allclose(steps[:, 0], 4.0 / CONFIG.fps, atol=1e-9)  # constant x velocity throughout
    np.testing.assert_allclose(np.diff(steps[:, 1]), CONFIG.gravity / CONFIG.fps ** 2, atol=1e-9)
    # the velocity at the given frame is the one drawn: the central difference there (or the one-sided one)
    forward = paths[index + 1, 0] - paths[index, 0] if index < 7 else paths[index, 0] - paths[index - 1, 0]
    assert np.sign(forward[0]) == 1


def test_the_start_moves_each_ball_whole_along_its_path_and_keeps_the_given_frame():
    frame = two_balls()
    start = simulated_start(frame, 0, 8, CONFIG, {"red": (1.0, 0.0)}, np.random.default_rng(3))
    torch.testing.assert_close(start[:, 0], frame, atol=1e-5, rtol=0)
    positions, mass = object_positions(start[None].double(), ["red", "blue"])
    positions, mass = positions[0].numpy(), mass[0].numpy()
    assert (mass / mass[:, :1] > 0.85).all() and (mass / mass[:, :1] < 1.15).all()  # whole in every frame
    moved = np.linalg.norm(positions[:, -1] - positions[:, 0], axis=-1)
    assert (moved > 2).all()  # both move
    assert positions[0, -1, 0] > positions[0, 0, 0]  # red goes right, as asked
    # the same draws, replayed, give the paths the balls were moved along
    rng, radii = np.random.default_rng(3), np.sqrt(mass.max(1) / np.pi)
    velocities = initial_velocities(["red", "blue"], CONFIG, {"red": (1.0, 0.0)}, rng)
    paths = simulated_paths(positions[:, 0], velocities, radii, 0, 8, CONFIG)
    assert np.linalg.norm(paths.transpose(1, 0, 2) - positions, axis=-1).max() < 0.6


def test_walls_in_the_way_the_start_still_sends_each_ball_the_asked_way_on_average():
    """Balls 7 and 7 px from the walls they are sent toward: most speeds bounce them back, and the draws that do not
    are kept (the captions' "to the left" is the sign of the mean velocity)."""
    frame, asked = two_balls(centres=((11.0, 10.0), (21.0, 24.0))), {"red": (-1.0, 0.0), "blue": (1.0, 0.0)}
    kept = 0
    for seed in range(12):
        start = simulated_start(frame, 0, 8, CONFIG, asked, np.random.default_rng(seed))
        positions, _ = object_positions(start[None].double(), ["red", "blue"])
        travel = positions[0, :, -1, 0] - positions[0, :, 0, 0]
        kept += int(travel[0] < 0 < travel[1])
    assert kept >= 10, kept  # 11 here; one draw each: 3


def test_draws_go_on_until_every_ball_goes_its_asked_way_as_fast_as_a_caption_says_it(monkeypatch):
    """A caption says "to the left" only of a ball whose mean velocity has at least DIRECTION_MIN_SPEED that way: a
    start creeping the asked way is drawn again (a model redrawing it may turn it round)."""
    from kinema.control import simulated_start as module

    frame, asked = two_balls(centres=((13.0, 10.0), (19.0, 24.0))), {"red": (-1.0, 0.0), "blue": (1.0, 0.0)}
    least = DIRECTION_MIN_SPEED * 32 / CONFIG.size
    fast_enough, progress, record = 0, [], module.asked_progress
    monkeypatch.setattr(module, "asked_progress", lambda *args: progress.append(record(*args)) or progress[-1])
    for seed in range(12):
        progress.clear()
        start = simulated_start(frame, 0, 8, CONFIG, asked, np.random.default_rng(seed))
        assert progress[-1] >= least or len(progress) == module.DRAWS, (seed, progress)
        assert all(p < least for p in progress[:-1]), (seed, progress)  # the first draw fast enough is kept
        if progress[-1] >= least:
            fast_enough += 1
            positions, _ = object_positions(start[None].double(), ["red", "blue"])
            steps = (positions[0, :, -1, 0] - positions[0, :, 0, 0]) / 7
            assert -steps[0] > least - 0.1 and steps[1] > least - 0.1, (seed, steps)
    assert fast_enough >= 3, fast_enough


def test_a_frame_without_balls_starts_still_and_one_given_last_ends_on_it():
    empty = torch.full((3, 32, 32), -1.0)
    assert torch.equal(simulated_start(empty, 0, 8, CONFIG, {}, np.random.default_rng(0)),
                       empty[:, None].expand(-1, 8, -1, -1))
    frame = two_balls()
    start = simulated_start(frame, 7, 8, CONFIG, {}, np.random.default_rng(0))
    torch.testing.assert_close(start[:, 7], frame, atol=1e-5, rtol=0)
    assert (start[:, 0] - frame).abs().max() > 0.5


@pytest.fixture(scope="module")
def pipe():
    model = tiny_denoiser("video_unet", text_dim=0, perturb=0.3).eval()
    return TextToVideoPipeline(model, tiny_run_config(model, "video_unet"))


def known_first(frame: torch.Tensor) -> KnownPixels:
    return KnownPixels.frames({0: frame}, 8)


def test_physics_start_samples_from_the_simulated_start_noised_to_its_time(pipe):
    prompt, known = "a red ball moves to the left", known_first(two_balls())
    start = pipe.simulated_starts(known, plan_prompts([prompt], 8, 4), seed=0)
    assert start.shape == (1, 3, 8, 32, 32)
    made = pipe(prompt, known=known, physics_start=0.5, retries=0, **OPTIONS)
    edited = pipe(prompt, known=known, init_video=start, strength=0.5, retries=0, **OPTIONS)
    torch.testing.assert_close(made, edited, atol=1e-5, rtol=0)
    assert (made - pipe(prompt, known=known, physics_start=0.0, retries=0, **OPTIONS)).abs().max() > 0.1


def test_a_retry_draws_a_new_simulated_start(pipe, monkeypatch):
    import kinema.pipelines.text_to_video as t2v

    prompt, known = "a red ball", known_first(two_balls())
    calls = []
    monkeypatch.setattr(t2v, "identity_faults", lambda video, **_: calls.append(1) or
                        torch.tensor([1 if len(calls) == 1 else 0]))
    made = pipe(prompt, known=known, physics_start=0.5, retries=1, **OPTIONS)
    second = attempt_seed(0, 1)
    start = pipe.simulated_starts(known, plan_prompts([prompt], 8, 4), seed=second)
    assert len(calls) == 2
    again = pipe(prompt, known=known, init_video=start, strength=0.5, retries=0, **{**OPTIONS, "seed": second})
    torch.testing.assert_close(made, again, atol=1e-5, rtol=0)
    assert (start - pipe.simulated_starts(known, plan_prompts([prompt], 8, 4), seed=0)).abs().max() > 0.5


def test_without_a_given_frame_it_simulates_a_first_videos_frame_0(pipe):
    prompt = "a red ball moves to the left"
    first = pipe(prompt, retries=0, **OPTIONS)
    start = pipe.simulated_starts(first_frames(first), plan_prompts([prompt], 8, 4), seed=0)
    made = pipe(prompt, physics_start=0.5, retries=0, **OPTIONS)
    torch.testing.assert_close(made, pipe(prompt, init_video=start, strength=0.5, retries=0, **OPTIONS), atol=1e-5,
                               rtol=0)
    assert (made - first).abs().max() > 0.1


def test_the_models_defaults_apply_to_animation_and_generation_each(pipe, monkeypatch):
    frame = two_balls()
    one, two = known_first(frame), KnownPixels.frames({0: frame, 7: frame}, 8)
    animated, generated = (pipe("", known=one, physics_start=0.5, retries=0, **OPTIONS),
                           pipe("", physics_start=0.3, retries=0, **OPTIONS))
    defaults = pipe.spec.defaults
    monkeypatch.setattr(pipe.spec, "defaults", dataclasses.replace(defaults, animate_physics_start=0.5))
    torch.testing.assert_close(pipe("", known=one, retries=0, **OPTIONS), animated)
    torch.testing.assert_close(pipe("", retries=0, **OPTIONS), pipe("", physics_start=0.0, retries=0, **OPTIONS))
    monkeypatch.setattr(pipe.spec, "defaults", dataclasses.replace(defaults, physics_start=0.3))
    torch.testing.assert_close(pipe("", retries=0, **OPTIONS), generated)
    torch.testing.assert_close(pipe("", known=one, retries=0, **OPTIONS),
                               pipe("", known=one, physics_start=0.0, retries=0, **OPTIONS))
    # two given frames, or time-anchored phrases, move their objects as given: no simulated start
    torch.testing.assert_close(pipe("", known=two, physics_start=0.5, retries=0, **OPTIONS),
                               pipe("", known=two, physics_start=0.0, retries=0, **OPTIONS))
    anchored = [(0, "a red ball"), (4, "a blue ball")]
    torch.testing.assert_close(pipe([anchored], retries=0, **OPTIONS), pipe([anchored], physics_start=0.0, **OPTIONS))


def test_physics_start_with_an_edit_a_camera_or_out_of_range_is_a_one_line_error(pipe):
    frame = two_balls()
    still = frame[:, None].expand(-1, 8, -1, -1)[None]
    bad = (({"physics_start": 0.5, "init_video": still, "strength": 0.5}, "no init_video or camera"),
           ({"physics_start": 0.5, "camera": "pan-left:1"}, "no init_video or camera"),
           ({"physics_start": 1.0, "known": known_first(frame)}, r"in \[0, 1\)"))
    for options, match in bad:
        with pytest.raises(KinemaError, match=match):
            pipe("", **{**OPTIONS, "steps": 1}, **options)
    grey = tiny_denoiser("video_unet", text_dim=0, in_channels=1).eval()
    config = tiny_run_config(grey, "video_unet")
    with pytest.raises(KinemaError, match="1-channel"):
        TextToVideoPipeline(grey, config)("", known=KnownPixels.frames({0: frame[:1]}, 8), physics_start=0.5,
                                          **{**OPTIONS, "steps": 1})


def test_the_cli_animates_from_a_simulated_start_and_rejects_a_bad_one_in_one_line(tmp_path):
    config = load_config(None, [*TINY_OVERRIDES, f"train.output_dir={tmp_path / 'run'}"])
    model = save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config, {"step": 1})
    image = ((simulate_balls(CONFIG, 3).video[:, 0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    Image.fromarray(image).resize((16, 16)).save(tmp_path / "a.png")
    base = ["animate", str(tmp_path / "a.png"), "-c", str(model), "--steps", "2", "-o", str(tmp_path / "out.gif")]
    assert CliRunner().invoke(app, [*base, "--physics-start", "0.5"]).exit_code == 0
    assert (tmp_path / "out.gif").exists()
    result = CliRunner().invoke(app, [*base, "--physics-start", "1.5"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "physics start must be in [0, 1)" in lines[0], lines


def test_an_object_with_an_asked_path_follows_it_in_the_start_and_the_others_are_simulated():
    frame = two_balls()
    path = torch.tensor([[6.0 + 2.5 * t, 8.0 + 0.5 * t] for t in range(8)])  # not where any simulated draw goes
    start = simulated_start(frame, 0, 8, CONFIG, {}, np.random.default_rng(3), asked_paths={"red": path})
    plain = simulated_start(frame, 0, 8, CONFIG, {}, np.random.default_rng(3))
    positions, _ = object_positions(start[None].double(), ["red", "blue"])
    simulated, _ = object_positions(plain[None].double(), ["red", "blue"])
    assert (positions[0, 0] - path.double()).norm(dim=-1).max() < 0.5
    torch.testing.assert_close(positions[0, 1], simulated[0, 1])  # blue: the same simulated draw as without a path
    lone = two_balls(centres=((10.0, 12.0),), radii=(3.5,))
    anyway = simulated_start(lone, 0, 8, CONFIG, {}, np.random.default_rng(3), asked_paths={None: path})
    assert (object_positions(anyway[None].double(), ["red"])[0][0, 0] - path.double()).norm(dim=-1).max() < 0.5


def test_with_a_trajectory_the_physics_start_moves_its_objects_along_their_paths(pipe):
    from kinema.control.trajectory import ObjectPath, TrajectorySpec

    prompt = "a red ball"
    spec = TrajectorySpec(32, 8, (ObjectPath("the red ball", "red", torch.tensor([[6.0 + 2.5 * t, 16.0]
                                                                                 for t in range(8)]), 3.5),))
    options = dict(OPTIONS, trajectory=spec, trajectory_guidance=0.0, retries=0)
    known = known_first(two_balls())
    start = pipe.simulated_starts(known, plan_prompts([prompt], 8, 4), seed=0, trajectory=spec)
    red = object_positions(start.double(), ["red"])[0][0, 0]
    assert (red - spec.positions()[0].double()).norm(dim=-1).max() < 0.5
    made = pipe(prompt, known=known, physics_start=0.5, **options)
    torch.testing.assert_close(made, pipe(prompt, known=known, init_video=start, strength=0.5, **options), atol=1e-5,
                               rtol=0)
