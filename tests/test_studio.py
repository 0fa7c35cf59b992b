"""Kinema Studio below the page: a job's command makes the very video the studio made, the gallery is written whole
or not at all, clicks become trajectory points, long videos stream, and the model card tells what a model reads."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from kinema.cli import app
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.studio import canvas
from kinema.studio.gallery import Gallery
from kinema.studio.jobs import Finished, Job, run
from kinema.studio.models import SHIPPED_SET, Pipelines
from kinema.video import read_video, write_video

pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny text model reading a trajectory map and a speed knob: 4 frames of 16x16, 2 steps."""
    from conftest import TINY_OVERRIDES
    from kinema.config import load_config

    config = load_config(None, [*TINY_OVERRIDES, "model.controls=[trajectory]", "model.attributes=[speed]",
                                "sample.direction_guidance=0"])
    torch.manual_seed(0)
    net = build_model(config.model_name, config.model)
    with torch.no_grad():  # as if trained: the zero-initialised layers (text, controls, knobs, output) act too
        for weight in net.parameters():
            if not weight.any():
                weight.normal_(0, 0.1)
    return str(save_pretrained(tmp_path_factory.mktemp("model") / "tiny", net, config))


@pytest.fixture(scope="module")
def pipelines(text_encoder):
    found = Pipelines()
    found._encoders["minilm"] = text_encoder  # loaded once per test session
    return found


def _made(job: Job, pipelines: Pipelines, folder) -> Finished:
    items = list(run(job, pipelines, folder))
    assert isinstance(items[-1], Finished)
    return items[-1]


def _clip(path, frames=4, size=16):
    torch.manual_seed(1)
    return write_video(path, torch.rand(3, frames, size, size) * 2 - 1, fps=8)


def _two_ball_path(folder):
    data = canvas.empty_trajectory(16, 4)
    for x, y in ((3, 4), (8, 12), (13, 5)):
        data = canvas.add_point(data, "red", x, y, curve="bezier", speed="ease_in_out", radius=2.5)
    (folder / "trajectory.json").write_text(json.dumps(data))


@pytest.mark.parametrize("task", ["generate", "inpaint"])
def test_the_listed_command_makes_the_same_video_as_the_studio(task, model, pipelines, tmp_path, monkeypatch):
    studio, command = tmp_path / "studio", tmp_path / "command"
    studio.mkdir()
    if task == "generate":
        _two_ball_path(studio)
        job = Job("generate", "a red ball bounces", model, {"trajectory": "trajectory.json"},
                  dict(seed=3, steps=2, guidance=3.0, negative_prompt="a blue ball", speed=1.5, trajectory_guidance=2,
                       trajectory_projection=1.0), scale=2)
    else:
        _clip(studio / "clip.mp4")
        mask = np.zeros((16, 16, 3), np.uint8)
        mask[4:12, 2:9] = 255
        Image.fromarray(mask).save(studio / "mask.png")
        job = Job("inpaint", "a red ball bounces", model, {"clip": "clip.mp4", "mask": "mask.png"},
                  dict(seed=5, steps=2, negative_prompt="noise"), scale=2)
    shutil.copytree(studio, command)
    made = _made(job, pipelines, studio)
    Gallery(tmp_path).save(studio, job, made, seconds=1.0)
    monkeypatch.chdir(command)
    result = CliRunner().invoke(app, job.arguments())
    assert result.exit_code == 0, result.output
    ours, theirs = read_video(studio / "video.mp4")[0], read_video(command / "video.mp4")[0]
    assert ours.shape == theirs.shape == (3, 4, 32, 32)
    assert (ours - theirs).abs().mean() < 0.01  # the same video, up to the codec (another one differs by > 0.05)
    settings = json.loads((studio / "settings.json").read_text())
    assert settings["command"] == job.command() and settings["frames"] == 4


def test_a_different_command_would_make_another_video(model, pipelines, tmp_path):
    """The comparison above can tell: the negative prompt and the seed change the video."""
    base = dict(seed=3, steps=2, guidance=3.0, speed=1.5, trajectory_guidance=2)
    variants = ({}, {"negative_prompt": "a blue ball"}, {"seed": 4}, {"speed": 3.0}, {"trajectory_guidance": 0})
    _two_ball_path(tmp_path)
    videos = [_made(Job("generate", "a red ball bounces", model, {"trajectory": "trajectory.json"},
                        {**base, **extra}), pipelines, tmp_path).videos for extra in variants]
    assert all((video - videos[0]).abs().mean() > 0.05 for video in videos[1:])


def test_a_failing_job_leaves_the_gallery_as_it_was(model, pipelines, tmp_path):
    gallery = Gallery(tmp_path / "gallery")
    with gallery.new_entry() as (staging, name):
        job = Job("generate", "a red ball bounces", model, options=dict(steps=2))
        gallery.save(staging, job, _made(job, pipelines, staging), seconds=0.5)
    (tmp_path / "gallery" / "not-an-entry").mkdir()
    (tmp_path / "gallery" / "not-an-entry" / "settings.json").write_text("{broken")
    before = sorted(p.name for p in (tmp_path / "gallery").iterdir())
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(KinemaError, match="clip.mp4"):
        with gallery.new_entry() as (staging, _):
            shutil.copyfile(bad, staging / "clip.mp4")
            list(run(Job("interpolate", "", model, {"clip": "clip.mp4"}, {"factor": 2}), pipelines, staging))
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == before
    (entry,) = gallery.entries()
    assert entry.folder.name == name and entry.settings["prompt"] == "a red ball bounces"
    assert all(path.is_file() for path in entry.downloads)
    assert "kinema generate 'a red ball bounces'" in entry.describe()


def test_a_video_longer_than_the_model_streams_its_frames_before_it_finishes(model, pipelines, tmp_path,
                                                                             monkeypatch):
    from kinema.pipelines import long_video

    made, real = [], long_video.generate_long
    monkeypatch.setattr(long_video, "generate_long", lambda *a, **k: (made.append(f) or f for f in real(*a, **k)))
    job = Job("generate", "a red ball bounces", model, options=dict(num_frames=7, steps=2, seed=1))
    stream = run(job, pipelines, tmp_path)
    first = next(stream)
    assert len(made) == 1 and torch.equal(first, made[0])  # shown as soon as the pipeline finished it
    items = [first, *stream]
    frames, finished = items[:-1], items[-1]
    assert len(frames) == 7 and all(frame.shape == (3, 16, 16) for frame in frames)
    assert finished.videos.shape == (1, 3, 7, 16, 16)
    assert torch.equal(torch.stack(frames, dim=1), finished.videos[0])
    with pytest.raises(KinemaError, match="one window"):
        list(run(Job("generate", "a red ball bounces", model, options=dict(num_frames=7, speed=1.0)), pipelines,
                 tmp_path))


def test_clicks_become_trajectory_points_and_the_curve_is_drawn_in_the_balls_colour():
    assert canvas.canvas_point(0, 0, 32) == pytest.approx((0.05, 0.05))
    assert canvas.canvas_point(319, 160, 32) == pytest.approx((31.95, 16.05))
    data = canvas.empty_trajectory(32, 8)
    with pytest.raises(KinemaError, match="two points"):
        canvas.checked(canvas.add_point(data, "red", 4, 4, curve="linear", speed="keypoints", radius=3))
    for x, y in ((4, 16), (28, 16)):
        data = canvas.add_point(data, "red", x, y, curve="linear", speed="keypoints", radius=3)
    data = canvas.add_point(data, "blue", 16, 4, curve="linear", speed="keypoints", radius=3)
    curves = canvas.checked(data)
    assert [o.description for o in curves.objects] == ["the red ball"]  # blue has one point: not a path yet
    positions = curves.spec().objects[0].positions
    assert positions[0].tolist() == [4, 16] and positions[-1].tolist() == [28, 16]
    assert canvas.remove_last_point(data, "blue")["objects"] == data["objects"][:1]
    assert canvas.remove_last_point(data, "red")["objects"][0]["points"] == [[4, 16]]
    image = canvas.draw(data)
    assert image.shape == (320, 320, 3)
    red = image[160, 100:220]  # along the drawn line y = 16 px of the frame
    assert ((red[:, 0] > 200) & (red[:, 1] < 80)).mean() > 0.6
    assert (image[:, :, :] == canvas.BACKGROUND).all(axis=-1).mean() > 0.8  # nothing else painted
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:16] = (0, 200, 0)  # a first frame, green above
    on_frame = canvas.draw(data, frame)
    assert (on_frame[40, 5] == (0, 200, 0)).all() and (on_frame[300, 5] == 0).all()


def test_jobs_refuse_what_their_command_would_refuse(model):
    with pytest.raises(KinemaError, match="takes no option factor"):
        Job("generate", "a ball", model, options={"factor": 2})
    with pytest.raises(KinemaError, match="needs a video"):
        Job("interpolate", "", model)
    quoted = Job("edit", "the ball's red", model, {"clip": "clip one.mp4"}, {"strength": 0.0})
    assert quoted.command().startswith("kinema edit 'clip one.mp4' 'the ball'\"'\"'s red' ")
    assert "--strength 0.0" in quoted.command()  # a 0 is an option, not a default


def test_the_model_card_says_what_each_model_reads(model, pipelines):
    card = pipelines.card(model)
    assert (card.num_frames, card.height, card.controls, card.attributes) == (4, 16, ("trajectory",), ("speed",))
    assert card.text and not card.latent and not card.known_frames
    shipped = pipelines.card(None)
    assert shipped.known_frames and "trajectory" in shipped.controls and "brightness" in shipped.attributes
    assert "8 frames of 32x32" in shipped.markdown()
    jobs = [Pipelines.directory(None), Pipelines.directory(None, frames=True), Pipelines.directory(None, controls=True)]
    assert jobs == list(SHIPPED_SET) and Pipelines.directory("x") == Path("x")  # the tabs share one size


def test_a_camera_move_on_the_shipped_models_runs_on_the_shipped_camera_model_as_its_command_does(pipelines,
                                                                                                 tmp_path):
    from kinema.control.camera import parse_camera
    from kinema.metrics.camera import camera_scores
    from kinema.pipelines.text_to_video import SHIPPED_CAMERA_MODEL

    job = Job("generate", "", None, options={"camera": "pan-right:1.5", "seed": 1})
    made = _made(job, pipelines, tmp_path)
    assert SHIPPED_CAMERA_MODEL.resolve() in pipelines._loaded
    assert not {"-c", "--checkpoint"} & set(job.arguments())  # so `kinema generate` picks the camera model too
    scores = camera_scores(made.videos, parse_camera("pan-right:1.5", 8)[None])
    assert scores["camera_error"][0] < 0.6 and scores["camera_direction"][0] == 1, scores


def test_a_text_job_on_the_shipped_models_lists_the_32x32_model_its_command_needs(pipelines, tmp_path, monkeypatch):
    """`kinema generate`'s own default is the 64x64 latent model: the command of a text-only job on the page's 32x32
    models names the model the job ran (the frames model beyond its frames) and makes the same video."""
    from kinema.pipelines.text_to_video import SHIPPED_FRAMES_MODEL, SHIPPED_PIXEL_MODEL

    studio, command = tmp_path / "studio", tmp_path / "command"
    studio.mkdir(), command.mkdir()
    job = Job("generate", "a red ball bounces", None, options=dict(steps=2, seed=1, direction_guidance=0), scale=2)
    Gallery(tmp_path).save(studio, job, _made(job, pipelines, studio), seconds=1.0)
    monkeypatch.chdir(command)
    result = CliRunner().invoke(app, job.arguments())
    assert result.exit_code == 0, result.output
    ours, theirs = read_video(studio / "video.mp4")[0], read_video(command / "video.mp4")[0]
    assert ours.shape == theirs.shape == (3, 8, 64, 64)  # 32x32 at scale 2
    assert (ours - theirs).abs().mean() < 0.01
    assert job.arguments()[job.arguments().index("--checkpoint") + 1] == str(SHIPPED_PIXEL_MODEL)
    longer = Job("generate", "a red ball bounces", None, options=dict(num_frames=12))
    assert longer.arguments()[longer.arguments().index("--checkpoint") + 1] == str(SHIPPED_FRAMES_MODEL)


def test_the_painted_hole_becomes_a_mask_of_the_clips_size(tmp_path):
    from kinema.studio.app import _mask_file

    _clip(tmp_path / "clip.mp4", size=24)
    layer = np.zeros((320, 320, 4), np.uint8)
    layer[0:160, 160:320, 3] = 255  # the top right quarter
    name = _mask_file({"background": None, "layers": [layer], "composite": None}, tmp_path / "clip.mp4", tmp_path)
    mask = read_video(tmp_path / name)[0][0, 0] > 0
    assert mask.shape == (24, 24) and mask[:12, 12:].all() and not mask[12:].any() and not mask[:, :12].any()
    with pytest.raises(KinemaError, match="paint the hole"):
        _mask_file({"layers": [np.zeros((320, 320, 4), np.uint8)]}, tmp_path / "clip.mp4", tmp_path)


def test_kinema_studio_refuses_a_missing_model_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["studio", "--model", str(tmp_path / "nowhere"), "--gallery", str(tmp_path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "nowhere" in result.output
    result = CliRunner().invoke(app, ["studio", "--port", "70000"])
    assert result.exit_code == 2 and "--port" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["studio", "--port", str(port), "--gallery", str(tmp_path)])
    assert result.exit_code == 2 and f"127.0.0.1:{port}" in result.output and result.output.count("\n") == 1


def test_an_edit_from_the_page_takes_the_models_edit_guidance_unless_changed(model, pipelines):
    from kinema.studio.app import _edit_sampling
    card = pipelines.card(str(model))
    page = dict(seed=0, steps=4, sampler=card.sampler, guidance=card.guidance, negative_prompt="")
    edit = Job("edit", "a blue ball", str(model), {"clip": "clip.mp4"}, _edit_sampling(page, card))
    assert "--guidance" not in edit.arguments() and "--sampler" not in edit.arguments()
    changed = _edit_sampling({**page, "guidance": card.guidance + 1, "sampler": "ddim"}, card)
    assert changed["guidance"] == card.guidance + 1 and changed["sampler"] == "ddim"
