"""Rejection sampling by object identity (kinema.control.identity_check, kinema.diffusion.rejection and the
pipeline's `retries`): simulator clips pass the check, a ball that is recoloured, lost, split or shrunk fails it
frame by frame, each video keeps its best attempt, the pipeline samples again only a video that fails, and
animating one given frame takes its own guidance defaults."""

import numpy as np
import pytest
import torch
from conftest import TINY_OVERRIDES
from denoisers import tiny_denoiser, tiny_run_config
from PIL import Image
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.control.identity_check import consistency_faults, identity_faults
from kinema.control.identity_energy import smallest_disc_area
from kinema.data.physics_balls import (BALL_COLORS, DIRECTION_MIN_SPEED, BouncingBallsConfig, render_balls,
                                      simulate_balls)
from kinema.diffusion.rejection import attempt_seed, fewest_faults
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline

CONFIG = BouncingBallsConfig(min_balls=2, max_balls=2)
AREA = smallest_disc_area(CONFIG, CONFIG.size)
FIRST = torch.zeros(1, CONFIG.num_frames, dtype=torch.bool)
FIRST[:, 0] = True


def drawn(clip, positions=None, radii=None, colours=None) -> torch.Tensor:
    """The clip [1, 3, T, H, W] redrawn with some of its balls' positions [T, N, 2], radii [T, N] or colours
    [T, N, 3] changed (per frame)."""
    positions = clip.positions.numpy() if positions is None else positions
    radii = np.broadcast_to(clip.radii.numpy(), positions.shape[:2]) if radii is None else radii
    colours = np.broadcast_to(clip.colors.numpy(), (*positions.shape[:2], 3)) if colours is None else colours
    return torch.cat([render_balls(positions[t:t + 1], radii[t], colours[t], clip.size)
                      for t in range(len(positions))], dim=1)[None]


@pytest.mark.parametrize("seed", range(6))
def test_simulator_clips_have_no_faults_whichever_frames_are_given(seed):
    clip = simulate_balls(CONFIG, seed)
    both_ends = FIRST.clone()
    both_ends[:, -1] = True
    assert identity_faults(clip.video[None], FIRST, AREA).tolist() == [0]
    assert identity_faults(clip.video[None], both_ends, AREA).tolist() == [0]
    assert identity_faults(drawn(clip), FIRST, AREA).tolist() == [0]


def test_each_frame_that_recolours_loses_splits_or_shrinks_a_ball_is_a_fault():
    clip = simulate_balls(CONFIG, 3)
    frames = CONFIG.num_frames
    colours = np.repeat(clip.colors.numpy()[None], frames, axis=0)
    other = next(rgb for name, rgb in BALL_COLORS.items() if name not in clip.color_names)
    colours[5, 0] = other
    assert identity_faults(drawn(clip, colours=colours), FIRST, AREA).tolist() == [1]
    radii = np.repeat(clip.radii.numpy()[None], frames, axis=0)
    radii[3:, 1] = 0.0  # the second ball gone from frame 3 on
    assert identity_faults(drawn(clip, radii=radii), FIRST, AREA).tolist() == [frames - 3]
    radii = np.repeat(clip.radii.numpy()[None], frames, axis=0)
    radii[2, 0] *= 0.6  # a third of its area left, in one frame
    assert identity_faults(drawn(clip, radii=radii), FIRST, AREA).tolist() == [1]
    split = clip.positions.numpy().copy()
    split[:, 1] = [[4.0, 4.0]] * frames  # ball 1 drawn in a corner, and ...
    doubled = torch.where(drawn(clip) > drawn(clip, positions=split), drawn(clip), drawn(clip, positions=split))
    doubled[:, :, 0] = drawn(clip)[:, :, 0]  # ... twice from frame 1 on: the given frame shows it once
    assert identity_faults(doubled, FIRST, AREA).tolist() == [frames - 1]
    halves = np.concatenate([clip.positions.numpy(), split[:, 1:]], axis=1)  # ball 1 as two discs of half its area
    half = np.concatenate([clip.radii.numpy(), clip.radii.numpy()[1:]]) * np.array([1, 0.5 ** 0.5, 0.5 ** 0.5])
    rgb = np.concatenate([clip.colors.numpy(), clip.colors.numpy()[1:]])
    halved = drawn(clip, halves, np.repeat(half[None], frames, axis=0), np.repeat(rgb[None], frames, axis=0))
    halved[:, :, 0] = drawn(clip)[:, :, 0]
    assert identity_faults(halved, FIRST, AREA).tolist() == [frames - 1]  # the same mass, one ball more


def test_videos_without_given_frames_or_balls_have_nothing_to_check():
    clip = simulate_balls(CONFIG, 3)
    noise = torch.rand(1, 3, CONFIG.num_frames, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    nothing = torch.zeros_like(FIRST)
    assert identity_faults(clip.video[None].flip(2), nothing, AREA).tolist() == [0]
    assert identity_faults(noise, FIRST, AREA).tolist() == [0]  # no scene of balls over black
    assert identity_faults(torch.cat([noise, clip.video[None]]), FIRST.repeat(2, 1), AREA).tolist() == [0, 0]


def test_a_video_from_text_alone_is_held_to_the_balls_most_of_its_frames_show():
    clip = simulate_balls(CONFIG, 4)
    frames = CONFIG.num_frames
    assert consistency_faults(drawn(clip), AREA).tolist() == [0]
    radii = np.repeat(clip.radii.numpy()[None], frames, axis=0)
    radii[frames - 3:, 1] = 0.0  # the second ball gone in the last 3 frames
    colours = np.repeat(clip.colors.numpy()[None], frames, axis=0)
    colours[0, 0] = next(rgb for name, rgb in BALL_COLORS.items() if name not in clip.color_names)  # frame 0 odd
    noise = torch.rand(1, 3, frames, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    videos = torch.cat([drawn(clip, radii=radii), drawn(clip, colours=colours), noise])
    assert consistency_faults(videos, AREA).tolist() == [3, 1, 0]  # no scene of balls: nothing to check
    assert consistency_faults(videos, AREA, scene_required=True).tolist() == [3, 1, frames]  # ... or broke up
    split = clip.positions.numpy().copy()
    split[:, 1] = [[4.0, 4.0]] * frames
    halves = np.concatenate([clip.positions.numpy(), split[:, 1:]], axis=1)  # ball 1 as two discs of half its area
    half = np.concatenate([clip.radii.numpy(), clip.radii.numpy()[1:]]) * np.array([1, 0.5 ** 0.5, 0.5 ** 0.5])
    rgb = np.concatenate([clip.colors.numpy(), clip.colors.numpy()[1:]])
    halved = drawn(clip, halves, np.repeat(half[None], frames, axis=0), np.repeat(rgb[None], frames, axis=0))
    halved[:, :, : frames - 2] = drawn(clip)[:, :, : frames - 2]  # split in the last 2 frames, its mass kept
    assert consistency_faults(halved, AREA).tolist() == [2]


def test_a_video_from_text_alone_is_held_to_the_colours_its_prompt_names():
    """Balls that agree with each other in every frame are still faults, frame by frame, in the colours the prompt
    did not ask for; a prompt naming no colour checks none."""
    clip = simulate_balls(CONFIG, 1)  # its two balls never touch
    other = next(name for name in BALL_COLORS if name not in clip.color_names)
    video = drawn(clip)
    assert consistency_faults(video, AREA, named=[set(clip.color_names)]).tolist() == [0]
    assert consistency_faults(video, AREA, named=[set()]).tolist() == [0]
    assert consistency_faults(video, AREA, named=[{clip.color_names[0], other}]).tolist() == [CONFIG.num_frames]
    assert consistency_faults(video, AREA, named=[{clip.color_names[0]}]).tolist() == [CONFIG.num_frames]
    colours = np.repeat(clip.colors.numpy()[None], CONFIG.num_frames, axis=0)
    colours[:, 1] = colours[:, 0]  # both balls the first one's colour throughout: consistent, not what was asked
    same = drawn(clip, colours=colours)
    assert consistency_faults(same, AREA).tolist() == [0]
    assert consistency_faults(same, AREA, named=[set(clip.color_names)]).tolist() == [CONFIG.num_frames]


def test_a_video_from_text_alone_whose_ball_does_not_go_its_asked_way_has_a_fault_for_it():
    """Clip 4: white goes left at 1.3 px a frame, orange left at 1.5 (and both fall): each ball asked a way it does
    not go at the least speed (down included) adds one fault; a colour the video does not show adds none."""
    clip, left, right, down = simulate_balls(CONFIG, 4), (-1.0, 0.0), (1.0, 0.0), (0.0, 1.0)
    assert clip.color_names == ["white", "orange"]
    video = drawn(clip)

    def faults(ways, least_step=0.5):
        return consistency_faults(video, AREA, named=[{"white", "orange"}], directions=[ways],
                                  least_step=least_step).item()

    assert faults({}) == faults({"white": left, "orange": left}) == faults({"orange": down}) == 0
    assert faults({"white": right}) == faults({"white": left, "orange": right}) == 1
    assert faults({"white": right, "orange": right}) == 2
    assert faults({"white": left, "orange": left}, least_step=1.4) == 1  # white goes left at 1.3 only
    assert faults({"red": right}) == 0  # not shown: the colour check's business


def test_each_video_keeps_its_attempt_with_the_fewest_faults_and_sampling_stops_once_all_pass():
    faults_by_attempt = [torch.tensor([2, 0, 3]), torch.tensor([1, 5, 3]), torch.tensor([0, 0, 1])]
    calls = []

    def sample(attempt):
        calls.append(attempt)
        return torch.full((3, 1, 2), float(attempt))

    def faults(video):
        return faults_by_attempt[int(video[0, 0, 0])]

    best = fewest_faults(sample, faults, retries=2)
    assert calls == [0, 1, 2]
    assert best[:, 0, 0].tolist() == [2.0, 0.0, 2.0]  # passes at 2; kept its first; fewest (1) at 2
    faults_by_attempt[1] = torch.tensor([0, 0, 0])
    calls.clear()
    assert fewest_faults(sample, faults, retries=5)[:, 0, 0].tolist() == [1.0, 0.0, 1.0] and calls == [0, 1]
    calls.clear()
    assert fewest_faults(sample, faults, retries=0)[:, 0, 0].tolist() == [0.0, 0.0, 0.0] and calls == [0]
    assert attempt_seed(7, 0) == 7 and attempt_seed(7, 1) != attempt_seed(8, 0)


@pytest.fixture(scope="module")
def pipe():
    model = tiny_denoiser("video_unet", text_dim=0, perturb=0.3).eval()
    config = tiny_run_config(model, "video_unet")
    config.sample.direction_guidance = 1.0
    return TextToVideoPipeline(model, config)


OPTIONS = dict(num_frames=8, height=32, width=32, steps=2, sampler="ddim", guidance=1.0, progress=False)


def known_first(clip) -> KnownPixels:
    return KnownPixels.frames({0: clip.video[:, 0]}, 8)


def test_the_pipeline_samples_a_failing_video_again_with_the_next_attempts_noise(pipe, monkeypatch):
    import kinema.pipelines.text_to_video as t2v

    clip = simulate_balls(CONFIG, 3)
    first = pipe("", known=known_first(clip), retries=0, **OPTIONS)
    second = pipe("", known=known_first(clip), retries=0, seed=attempt_seed(0, 1), **OPTIONS)
    checks = []
    monkeypatch.setattr(t2v, "identity_faults", lambda video, whole_frames, disc_area: checks.append(
        whole_frames.clone()) or torch.tensor([1 if len(checks) == 1 else 0]))
    again = pipe("", known=known_first(clip), **OPTIONS)
    assert len(checks) == 2 and checks[0][0].tolist() == FIRST[0].tolist()
    assert torch.equal(again, second) and not torch.equal(again, first)
    checks.clear()
    assert torch.equal(pipe("", known=known_first(clip), retries=0, **OPTIONS), first)  # checked, never re-sampled
    box = torch.zeros(1, 1, 8, 32, 32, dtype=torch.bool)
    box[..., :8, :8] = True  # no frame given whole: nothing to check
    checks.clear()
    pipe("", known=KnownPixels(clip.video[None], box), **OPTIONS)
    assert not checks
    with pytest.raises(KinemaError, match="retries must be at least 0"):
        pipe("", known=known_first(clip), retries=-1, **OPTIONS)


def test_the_models_spec_sets_how_many_times_a_failing_video_is_drawn_again(pipe, monkeypatch):
    import dataclasses

    import kinema.pipelines.text_to_video as t2v

    checks = []
    monkeypatch.setattr(t2v, "consistency_faults", lambda video, **_: checks.append(1) or torch.tensor([1]))
    pipe("", **OPTIONS)
    assert len(checks) == 3  # a spec without `retries`: 2 re-draws
    monkeypatch.setattr(pipe.spec, "defaults", dataclasses.replace(pipe.spec.defaults, retries=5))
    checks.clear()
    pipe("", **OPTIONS)
    assert len(checks) == 6
    checks.clear()
    pipe("", retries=1, **OPTIONS)
    assert len(checks) == 2  # given, it wins


def test_a_video_from_text_alone_whose_frames_disagree_is_sampled_again(pipe, monkeypatch):
    import kinema.pipelines.text_to_video as t2v

    first = pipe("", retries=0, **OPTIONS)
    second = pipe("", retries=0, seed=attempt_seed(0, 1), **OPTIONS)
    checks, asked = [], []

    def faults(video, disc_area, named, directions, least_step, scene_required):
        checks.append(video)
        asked.append((named, directions, least_step))
        assert scene_required  # a model of the balls data: a video that is no scene of balls broke up
        return torch.tensor([1 if len(checks) == 1 else 0])

    monkeypatch.setattr(t2v, "consistency_faults", faults)
    assert torch.equal(pipe("", **OPTIONS), second) and len(checks) == 2
    checks.clear()
    assert torch.equal(pipe("", retries=0, **OPTIONS), first) and len(checks) == 1  # checked, never re-sampled
    assert asked[-1][0] == [set()]
    pipe(["a red ball and a blue ball bounce", "a ball"], retries=0, **OPTIONS)
    assert asked[-1][0] == [{"red", "blue"}, set()]  # each video held to the colours its prompt names
    pipe(["a red ball bounces to the left", "a blue ball bounces"], retries=0, **OPTIONS)
    assert asked[-1][1:] == ([{"red": (-1.0, 0.0)}, {}], DIRECTION_MIN_SPEED * OPTIONS["width"] / pipe.simulator.size)
    checks.clear()
    pipe([[(0, "a red ball"), (4, "a blue ball")]], **OPTIONS)  # time-anchored: objects may change by design
    pipe("first a red ball, then a blue ball", **OPTIONS)
    pipe("", init_video=first, strength=0.5, **OPTIONS)  # an edit keeps the video it is given
    pipe("", camera="pan-left:1", camera_guidance=0, **OPTIONS)  # a moving camera brings balls in and out of view
    assert not checks


def test_animating_one_frame_turns_direction_guidance_off_unless_asked_and_takes_its_identity_guidance(
        pipe, monkeypatch):
    import kinema.pipelines.text_to_video as t2v

    energies, identity = [], []
    monkeypatch.setattr(t2v, "direction_energy", lambda d: energies.append(d) or (lambda x0: x0.sum() * 0))
    monkeypatch.setattr(t2v, "identity_energy", lambda *args: identity.append(args) or (lambda x0: x0.sum() * 0))
    monkeypatch.setattr(pipe.spec.defaults, "animate_identity_guidance", 5.0)
    clip = simulate_balls(CONFIG, 3)
    prompt = "a ball moves to the left"
    pipe(prompt, retries=0, **OPTIONS)
    assert len(energies) == 1 and not identity  # the model's defaults steer a fresh sample
    pipe(prompt, known=known_first(clip), retries=0, **OPTIONS)
    assert len(energies) == 1  # but not one that starts from one given frame, ...
    assert len(identity) == 1 and identity[0][3] is not None  # ... which keeps that frame's balls
    pipe(prompt, known=known_first(clip), retries=0, direction_guidance=1.0, **OPTIONS)
    assert len(energies) == 2
    both_ends = KnownPixels.frames({0: clip.video[:, 0], 7: clip.video[:, 7]}, 8)
    pipe(prompt, known=both_ends, retries=0, **OPTIONS)
    assert len(energies) == 3 and len(identity) == 2  # two given frames: the model's defaults again


def test_the_cli_rejects_negative_retries_in_one_line(tmp_path):
    config = load_config(None, [*TINY_OVERRIDES, f"train.output_dir={tmp_path / 'run'}"])
    model = save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config, {"step": 1})
    image = ((simulate_balls(CONFIG, 3).video[:, 0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    Image.fromarray(image).resize((16, 16)).save(tmp_path / "a.png")  # the model's size: no note
    result = CliRunner().invoke(app, ["animate", str(tmp_path / "a.png"), "--retries", "-1", "-c", str(model),
                                      "--steps", "1", "-o", str(tmp_path / "out.gif")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "retries must be at least 0" in lines[0], lines


def test_one_frame_means_one_whole_frame_and_nothing_else_given():
    clip = simulate_balls(CONFIG, 3)
    assert known_first(clip).one_frame
    assert KnownPixels.frames({-1: clip.video[:, -1]}, 8).one_frame
    assert not KnownPixels.frames({0: clip.video[:, 0], 3: clip.video[:, 3]}, 8).one_frame
    with_box = known_first(clip).mask.clone()
    with_box[:, :, 4, :8, :8] = True
    assert not KnownPixels(clip.video[None], with_box).one_frame  # a frame and a patch of another
    box = torch.zeros_like(with_box)
    box[:, :, 2, :8, :8] = True
    assert not KnownPixels(clip.video[None], box).one_frame
