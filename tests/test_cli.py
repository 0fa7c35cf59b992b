"""The `kinema` command: real files in and out; bad input is one line naming the problem, exit code 2."""

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from kinema.cli import app
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.video import read_video

runner = CliRunner()


@pytest.fixture
def checkpoint(tmp_path, tiny_config):
    config = tiny_config()
    torch.manual_seed(0)
    return save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config, {"step": 5})


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def assert_one_line_error(code, output, *needles):
    assert code == 2, output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in lines[0], output


@pytest.mark.parametrize("fmt", ["mp4", "gif", "webm"])
def test_generate_writes_video_and_sheet(tmp_path, checkpoint, fmt):
    out, sheet = tmp_path / "out.mp4", tmp_path / "sheet.png"
    code, output = run("generate", "a red ball bounces", "-o", out, "--checkpoint", checkpoint, "--format", fmt,
                       "--sheet", sheet, "--steps", 2, "--num-frames", 3, "--scale", 2, "--sampler", "ddim")
    assert code == 0, output
    video, _ = read_video(out.with_suffix(f".{fmt}"))
    assert video.shape == (3, 3, 32, 32)
    assert sheet.stat().st_size > 0


def test_sample_with_several_prompts_and_info(tmp_path, checkpoint):
    code, output = run("sample", checkpoint, "-o", tmp_path / "s.mp4", "-p", "a red ball", "-p", "a blue ball",
                       "--steps", 2, "--guidance", 1.0)
    assert code == 0, output
    assert (tmp_path / "s_0.mp4").is_file() and (tmp_path / "s_1.mp4").is_file()
    code, output = run("info", checkpoint)
    assert code == 0 and "step: 5" in output and "parameters" in output and "channels: 8" in output


def test_same_seed_same_video_other_seed_other_video(tmp_path, checkpoint):
    videos = []
    for seed in (1, 1, 2):
        path = tmp_path / f"v{len(videos)}.gif"
        assert run("generate", "a ball", "-o", path, "-c", checkpoint, "--steps", 2, "--seed", seed)[0] == 0
        videos.append(read_video(path)[0])
    assert torch.equal(videos[0], videos[1]) and not torch.equal(videos[0], videos[2])


def test_missing_config_file(tmp_path):
    assert_one_line_error(*run("train", tmp_path / "nope.yaml"), "nope.yaml")


def test_unknown_config_key(tmp_path):
    assert_one_line_error(*run("train", "configs/balls.yaml", "train.stepz=3"), "train.stepz")


def test_bad_config_value(tmp_path):
    assert_one_line_error(*run("train", "configs/balls.yaml", "train.steps=many"), "train.steps")
    assert_one_line_error(*run("train", "configs/balls.yaml", "diffusion.schedule=zigzag"), "zigzag")
    assert_one_line_error(*run("train", "configs/balls.yaml", "model.attention=[none,bogus,joint]"), "bogus")


def test_init_from_a_missing_or_unfitting_model(tmp_path, checkpoint):
    out = f"train.output_dir={tmp_path / 'run'}"
    assert_one_line_error(*run("train", "configs/balls.yaml", f"train.init_from={tmp_path / 'nowhere'}", out),
                          "nowhere")
    assert_one_line_error(*run("train", "configs/balls.yaml", f"train.init_from={checkpoint}", out),
                          "train.init_from")


def test_resume_without_checkpoint(tmp_path):
    assert_one_line_error(*run("train", "configs/balls.yaml", f"train.output_dir={tmp_path}", "--resume"),
                          "no checkpoint")


def test_missing_and_corrupt_checkpoints(tmp_path, checkpoint):
    assert_one_line_error(*run("sample", tmp_path / "missing"), "missing")
    assert_one_line_error(*run("info", tmp_path), "config.json")
    (checkpoint / "model.safetensors").write_bytes(b"garbage")
    assert_one_line_error(*run("info", checkpoint), "model.safetensors")


def test_bad_generate_options(tmp_path, checkpoint):
    assert_one_line_error(*run("generate", "x", "-c", checkpoint, "--sampler", "magic"), "magic")
    assert_one_line_error(*run("generate", "x", "-c", checkpoint, "--format", "avi"), "--format")
    assert_one_line_error(*run("generate", "x", "-c", checkpoint, "-o", tmp_path / "x.bmp", "--steps", 1), ".bmp")
    assert_one_line_error(*run("generate", "x", "-c", checkpoint, "--direction-guidance", -1), "direction guidance")


def test_direction_guidance_changes_only_prompts_with_direction_words(tmp_path, checkpoint):
    videos = {}
    for prompt in ("a ball", "a ball to the left"):
        for weight in (0, 50):
            path = tmp_path / f"{len(videos)}.gif"
            code, output = run("generate", prompt, "-o", path, "-c", checkpoint, "--steps", 2, "--scale", 1,
                               "--direction-guidance", weight)
            assert code == 0, output
            videos[prompt, weight] = read_video(path)[0]
    assert torch.equal(videos["a ball", 0], videos["a ball", 50])
    assert not torch.equal(videos["a ball to the left", 0], videos["a ball to the left", 50])


@pytest.mark.parametrize("args,needle", [(["info", "nothing"], "nothing"), (["generate", "x", "--steps", "abc"],
                                                                         "--steps"), (["trian"], "trian")])
def test_console_script_reports_errors_without_traceback(tmp_path, args, needle):
    result = subprocess.run([sys.executable, "-m", "kinema.cli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and needle in result.stderr


def test_export_writes_ema_weights_and_sampling_defaults(tmp_path, tiny_config, text_encoder):
    from safetensors.torch import load_file

    from kinema.training.trainer import Trainer

    trained = Trainer(tiny_config("train.steps=2"), text_encoder=text_encoder, progress=False).train()
    code, output = run("export", trained, tmp_path / "model", "sample.guidance=2.5", "sample.steps=7")
    assert code == 0, output
    exported, ema = load_file(str(tmp_path / "model/model.safetensors")), load_file(str(trained / "ema.safetensors"))
    assert all(torch.equal(exported[k], ema[k]) for k in ema)
    assert not (tmp_path / "model/optimizer.safetensors").exists()
    code, output = run("info", tmp_path / "model")
    assert "guidance: 2.5" in output and "steps: 7" in output and "step: 2" in output
    assert_one_line_error(*run("export", trained, tmp_path / "m2", "model.channels=4"), "model.channels")
    code, output = run("export", trained, tmp_path / "half", "--half")
    assert code == 0, output
    stored = load_file(str(tmp_path / "half/model.safetensors"))
    assert all(stored[k].dtype == torch.float16 for k in ema if ema[k].is_floating_point())
    assert all(torch.allclose(stored[k].float(), ema[k], rtol=1e-3, atol=1e-4) for k in ema)
    full, halved = (TextToVideoPipeline.from_pretrained(tmp_path / name, text_encoder=text_encoder)
                    for name in ("model", "half"))
    assert all(p.dtype == torch.float32 for p in halved.model.parameters())  # loaded back as float32
    a, b = (pipe("a red ball", steps=3, progress=False) for pipe in (full, halved))
    assert (a - b).abs().max() < 0.02


def test_unconditional_model_samples_without_text(tmp_path, tiny_config):
    config = tiny_config("model.text_dim=0")
    model = save_pretrained(tmp_path / "uncond", build_model(config.model_name, config.model), config, {"step": 1})
    code, output = run("sample", model, "-o", tmp_path / "u.gif", "-p", "ignored", "-p", "ignored", "--steps", 2,
               "--scale", 1)
    assert code == 0, output
    assert read_video(tmp_path / "u_1.gif")[0].shape == (3, 4, 16, 16)
    code, output = run("generate", "-c", model, "-o", tmp_path / "g.gif", "--steps", 2, "--scale", 1)  # no prompt
    assert code == 0, output
    assert read_video(tmp_path / "g.gif")[0].shape == (3, 4, 16, 16)


def test_generate_with_a_camera_move_loads_the_shipped_camera_model_and_follows_the_move(tmp_path):
    from kinema.control.camera import parse_camera
    from kinema.metrics.camera import camera_scores

    code, output = run("generate", "", "--camera", "tilt-down:1.5", "--seed", "2", "--scale", "1", "-o",
                       tmp_path / "tilt.mp4")
    assert code == 0, output
    frames, _ = read_video(tmp_path / "tilt.mp4")
    assert tuple(frames.shape) == (3, 8, 32, 32)  # the camera model's size, not the default model's
    scores = camera_scores(frames[None], parse_camera("tilt-down:1.5", 8)[None])
    assert scores["camera_error"][0] < 0.6 and scores["camera_direction"][0] == 1, scores
    assert_one_line_error(*run("generate", "a red ball", "--camera-warp", "0.5", "-o", tmp_path / "x.mp4"),
                          "camera warp", "give camera")
    assert_one_line_error(*run("generate", "", "--camera", "pan-left:1", "--camera-warp", "1", "-o",
                               tmp_path / "x.mp4"), "camera warp must be in [0, 1)")
