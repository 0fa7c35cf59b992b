"""Frame tasks (chapter 11.3.2, 11.4, 11.5): animation, prediction, interpolation, inpainting, outpainting and editing
keep the given frames and pixels bit-exact, in one window or many, through the Python API and the `kinema` commands;
a mask that covers nothing is plain generation; bad input is one line and exit code 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config
from PIL import Image
from typer.testing import CliRunner

from kinema.cli import app
from kinema.models.pretrained import save_pretrained
from kinema.pipelines import tasks
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.video import probe_video, read_video, to_uint8, write_video

FRAMES, SIZE = 4, 8  # the tiny model's window and frame size
FAST = dict(steps=2, progress=False)
runner = CliRunner()


def tiny_config(model):
    config = tiny_run_config(model, "video_unet")
    config.data.num_frames, config.data.size, config.data.radius_range = FRAMES, SIZE, (1.0, 2.0)
    return config


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models in one thread: on a busy 2-core machine two threads wait at every op's barrier (100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe() -> TextToVideoPipeline:
    model = tiny_denoiser("video_unet", text_dim=0, frame_conditioning=True, perturb=0.2).eval()
    return TextToVideoPipeline(model, tiny_config(model))


@pytest.fixture(scope="module")
def model_dir(pipe, tmp_path_factory):
    return save_pretrained(tmp_path_factory.mktemp("tasks") / "model", pipe.model, pipe.config, {"step": 1})


def clip(frames: int, seed: int = 3, size: int = SIZE) -> torch.Tensor:
    return torch.rand(3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def calls(pipe, monkeypatch) -> list[dict]:
    """Record every pipeline call (prompts, known pixels) of a frame task."""
    seen, call = [], TextToVideoPipeline.__call__

    def spy(self, prompts, **options):
        known = options["known"]
        seen.append(dict(prompts=prompts, known=KnownPixels(known.video.clone(), known.mask.clone())))
        return call(self, prompts, **options)

    monkeypatch.setattr(TextToVideoPipeline, "__call__", spy)
    return seen


def test_interpolation_keeps_the_given_frames_and_makes_each_stretch_seeing_both_ends(pipe, monkeypatch):
    spans, next_window = [], tasks.next_window

    def spy(finished, given, size, overlap):
        span = next_window(finished, given, size, overlap)
        spans.append((finished.clone(), given, span))
        return span

    monkeypatch.setattr(tasks, "next_window", spy)
    given = clip(5)
    out = tasks.complete(pipe, "", tasks.interpolation(given, 2), **FAST)
    assert out.shape == (1, 3, 9, SIZE, SIZE) and len(spans) > 2
    assert torch.equal(out[0, :, ::2], given)
    assert (out[0, :, 1::2] - given[:, :-1]).abs().amax() > 1e-2  # the frames between are made
    for finished, known, span in spans[:-1]:  # every frame a window keeps is made seeing the given frame after it
        start, stop, keep = span
        assert stop - start == FRAMES and keep > start
        for frame in range(start, keep):
            assert finished[frame] or stop == len(finished) or known[frame + 1:stop].any(), (frame, span)
    assert spans[-1][2] is None


def test_prediction_continues_window_by_window_from_the_frames_made_before(pipe, monkeypatch):
    seen, given = calls(pipe, monkeypatch), clip(6)
    out = tasks.complete(pipe, "first a red ball, then a blue ball", tasks.prediction(given, 6, 2), overlap=2,
                         **FAST)
    assert out.shape == (1, 3, 8, SIZE, SIZE) and torch.equal(out[0, :, :2], given[:, -2:])
    starts = [0, 2, 4]
    assert len(seen) == len(starts)
    for start, call in zip(starts, seen):  # each window is given the two frames before its new ones, as they came out
        assert call["known"].whole_frames[0].tolist() == [True, True, False, False]
        assert torch.equal(call["known"].video[:, :, :2], out[:, :, start:start + 2])
    assert seen[0]["prompts"] == [[(0, "a red ball")]] and seen[-1]["prompts"] == [[(0, "a blue ball")]]


def test_a_short_output_is_made_in_one_window_of_the_models_length(pipe, monkeypatch):
    seen, given = calls(pipe, monkeypatch), clip(2)
    out = tasks.complete(pipe, "", tasks.interpolation(given, 2), **FAST)
    assert out.shape == (1, 3, 3, SIZE, SIZE) and torch.equal(out[0, :, ::2], given)
    assert len(seen) == 1 and seen[0]["known"].whole_frames[0].tolist() == [True, False, True, False]


def test_a_mask_that_covers_nothing_is_plain_generation(pipe):
    nothing = KnownPixels(clip(FRAMES)[None], torch.zeros(1, 1, FRAMES, SIZE, SIZE, dtype=torch.bool))
    assert torch.equal(tasks.complete(pipe, "", nothing, seed=5, **FAST), pipe("", seed=5, **FAST))


def test_inpainting_keeps_the_pixels_outside_the_hole(pipe):
    given = clip(FRAMES)
    hole = tasks.fit_hole(tasks.box_hole((3, 2, 10, 11, 1, 3), FRAMES, 2 * SIZE, 2 * SIZE), SIZE, SIZE)
    assert hole[1:3, 1:6, 1:5].all() and hole.sum() == 2 * 5 * 4  # at half size, grown to whole pixels
    out = tasks.complete(pipe, "", tasks.inpainting(given, hole), **FAST)[0]
    assert torch.equal(out[:, ~hole], given[:, ~hole]) and (out[:, hole] - given[:, hole]).abs().amax() > 1e-2


def test_outpainting_keeps_the_centre_of_a_larger_canvas(pipe):
    given = clip(FRAMES)
    out = tasks.complete(pipe, "", tasks.outpainting(given, (2, 1, 2, 3)), **FAST)[0]
    assert out.shape == (3, FRAMES, SIZE + 4, SIZE + 4)
    assert torch.equal(out[:, :, 1:1 + SIZE, 2:2 + SIZE], given)
    assert out[:, :, -3:].abs().amax() > 1e-2  # the new border is made, not left blank


def test_edit_strength_runs_from_the_input_to_a_fresh_sample_in_every_window(pipe):
    given = clip(7)  # longer than the model's window
    unchanged = tasks.complete(pipe, "", tasks.editing(given), init_video=given[None], strength=0.0, **FAST)
    assert torch.equal(unchanged[0], given)
    near, far = (tasks.complete(pipe, "", tasks.editing(given), init_video=given[None], strength=s, seed=2, **FAST)
                 for s in (0.3, 1.0))
    assert (near[0] - given).abs().mean() < (far[0] - given).abs().mean()


# ---------------------------------------------------------------------------------------------- the commands


def run(model_dir, *args):
    return runner.invoke(app, [str(a) for a in args] + ["-c", str(model_dir), "--steps", "2", "--scale", "2"])


def sheet_frames(path, frames: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """The frames [T, H, W, 3] (uint8) of a one-video contact sheet written at scale 1: a lossless copy."""
    sheet = np.asarray(Image.open(path).convert("RGB"))
    return np.stack([sheet[:height, t * (width + 2):t * (width + 2) + width] for t in range(frames)])


def write_clip(path, frames: int) -> np.ndarray:
    """Encode a clip with PyAV; returns the frames [T, H, W, 3] the readers give back (what a command starts from)."""
    write_video(path, clip(frames), fps=4)
    return to_uint8(read_video(path)[0])


def test_interpolate_writes_the_given_frames_unchanged(model_dir, tmp_path):
    given = write_clip(tmp_path / "in.mp4", 3)
    result = run(model_dir, "interpolate", tmp_path / "in.mp4", "--factor", "4", "-o", tmp_path / "out.mp4",
                 "--sheet", tmp_path / "sheet.png")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(sheet_frames(tmp_path / "sheet.png", 9)[::4], given)
    info = probe_video(tmp_path / "out.mp4")
    assert info.num_frames == 9 and info.fps == 16


def test_animate_puts_the_keyframes_where_asked(model_dir, tmp_path):
    images = [(np.random.default_rng(i).random((SIZE, SIZE, 3)) * 255).astype(np.uint8) for i in range(2)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    result = run(model_dir, "animate", "--keyframe", f"0:{tmp_path / '0.png'}", "--keyframe",
                 f"-1:{tmp_path / '1.png'}", "--num-frames", "6", "-o", tmp_path / "out.mp4", "--sheet",
                 tmp_path / "sheet.png")
    assert result.exit_code == 0, result.stderr
    frames = sheet_frames(tmp_path / "sheet.png", 6)
    assert np.array_equal(frames[0], images[0]) and np.array_equal(frames[5], images[1])


def test_predict_writes_the_context_then_the_new_frames(model_dir, tmp_path):
    given = write_clip(tmp_path / "in.mp4", 5)
    result = run(model_dir, "predict", tmp_path / "in.mp4", "--frames", "3", "--context", "2",
                 "-o", tmp_path / "out.mp4", "--sheet", tmp_path / "sheet.png")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(sheet_frames(tmp_path / "sheet.png", 5)[:2], given[-2:])


@pytest.mark.parametrize("hole", ["nothing", "box"])
def test_inpaint_keeps_the_pixels_outside_the_hole(model_dir, tmp_path, hole):
    given = write_clip(tmp_path / "in.mp4", FRAMES)
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(tmp_path / "black.png")
    where = ["--mask", tmp_path / "black.png"] if hole == "nothing" else ["--box", "2,2,6,6"]
    result = run(model_dir, "inpaint", tmp_path / "in.mp4", *where, "-o", tmp_path / "out.mp4",
                 "--sheet", tmp_path / "sheet.png")
    assert result.exit_code == 0, result.stderr
    frames = sheet_frames(tmp_path / "sheet.png", FRAMES)
    outside = np.ones((SIZE, SIZE), bool)
    if hole == "box":
        outside[2:6, 2:6] = False
        assert not np.array_equal(frames[:, 2:6, 2:6], given[:, 2:6, 2:6])
    assert np.array_equal(frames[:, outside], given[:, outside])


def test_edit_at_strength_zero_writes_the_input(model_dir, tmp_path):
    given = write_clip(tmp_path / "in.mp4", FRAMES)
    result = run(model_dir, "edit", tmp_path / "in.mp4", "a blue ball", "--strength", "0", "-o", tmp_path / "out.mp4",
                 "--sheet", tmp_path / "sheet.png")
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(sheet_frames(tmp_path / "sheet.png", FRAMES), given)


def test_edit_from_the_source_prompts_inversion_keeps_the_input_closer(model_dir, tmp_path):
    given = write_clip(tmp_path / "in.mp4", FRAMES).astype(float)
    errors = {}
    for name, extra in (("inverted", ["--source", "a blue ball"]), ("noised", [])):
        args = ["edit", tmp_path / "in.mp4", "a blue ball", "--strength", "0.5", "--sampler", "ddim", "--steps", "40",
                "--guidance", "1", *extra, "-o", tmp_path / f"{name}.mp4", "--sheet", tmp_path / f"{name}.png",
                "-c", model_dir, "--scale", "2"]
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.stderr
        errors[name] = np.abs(sheet_frames(tmp_path / f"{name}.png", FRAMES) - given).mean()
    assert errors["inverted"] < 0.25 * errors["noised"]


def test_an_input_of_another_size_is_resized_with_a_note(model_dir, tmp_path):
    Image.fromarray(np.full((2 * SIZE, 3 * SIZE, 3), 200, np.uint8)).save(tmp_path / "big.png")
    result = run(model_dir, "animate", tmp_path / "big.png", "-o", tmp_path / "out.mp4", "--sheet",
                 tmp_path / "sheet.png")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("note:") == 1 and "24x16: resized to the model's 8x8" in result.stderr
    assert np.array_equal(sheet_frames(tmp_path / "sheet.png", FRAMES)[0], np.full((SIZE, SIZE, 3), 200, np.uint8))


@pytest.mark.parametrize("args,needle", [
    (lambda d: ["animate", "--keyframe", f"9:{d / 'image.png'}"], "keyframe index 9"),
    (lambda d: ["inpaint", d / "clip.mp4", "--mask", d / "image.png"], "image.png"),  # 6x6, the clip is 8x8
    (lambda d: ["inpaint", d / "clip.mp4", "--mask", d / "long.mp4"], "long.mp4"),  # 8x8 but 6 frames, not 4
    (lambda d: ["edit", d / "clip.mp4", "x", "--strength", "-0.1"], "--strength"),
    (lambda d: ["predict", d / "nowhere.mp4"], "nowhere.mp4"),
], ids=["keyframe-beyond-the-length", "mask-image-of-another-size", "mask-video-of-another-length",
        "strength-below-0", "missing-file"])
def test_bad_input_is_one_line(model_dir, tmp_path, args, needle):
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "image.png")
    write_video(tmp_path / "clip.mp4", clip(FRAMES), fps=4)
    write_video(tmp_path / "long.mp4", clip(6), fps=4)
    result = run(model_dir, *args(tmp_path))
    lines = result.stderr.strip().split("\n")
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], \
        result.stderr
