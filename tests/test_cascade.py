"""Cascaded generation (chapter 11.4): keyframes -> interpolation -> super-resolution compose shapes, keep the
keyframes, give the super-resolution stage the upsampled previous output and its noise level; stages that do not
fit and bad command lines are one-line errors."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from denoisers import tiny_denoiser, tiny_run_config
from test_tasks import one_thread  # noqa: F401  (autouse fixture)
from typer.testing import CliRunner

from kinema.cli import app
from kinema.conditioning.controls import low_resolution
from kinema.config import with_overrides
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.pipelines import cascade as cascade_module
from kinema.pipelines.cascade import CascadePipeline
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.video import read_video, write_video

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
FRAMES, SIZE = 4, 8  # the tiny stages' window and the keyframes' frame size
FAST = dict(steps=2)
runner = CliRunner()


def stage(size: int = SIZE, seed: int = 0, **fields) -> TextToVideoPipeline:
    """A tiny random stage making FRAMES frames of size x size."""
    model = tiny_denoiser("video_unet", text_dim=0, perturb=0.2, seed=seed, **fields).eval()
    config = tiny_run_config(model, "video_unet")
    config.data.num_frames, config.data.size, config.data.radius_range = FRAMES, size, (1.0, 2.0)
    return TextToVideoPipeline(model, config)


@pytest.fixture(scope="module")
def stages() -> dict[str, TextToVideoPipeline]:
    return {"keyframes": stage(seed=1), "interpolation": stage(seed=2, frame_conditioning=True),
            "super_resolution": stage(2 * SIZE, seed=3, controls=("low_res_x2",), attributes=("noise_aug",))}


@pytest.mark.parametrize("factor", [2, 3])
def test_the_stages_compose_shapes(stages, factor):
    result = CascadePipeline(**stages, factor=factor)(["a", "b"], **FAST)
    frames = (FRAMES - 1) * factor + 1
    assert [(run.name, run.shape) for run in result.stages] == [
        ("keyframes", (2, 3, FRAMES, SIZE, SIZE)), ("interpolation", (2, 3, frames, SIZE, SIZE)),
        ("super-resolution", (2, 3, frames, 2 * SIZE, 2 * SIZE))]
    assert result.video.shape == (2, 3, frames, 2 * SIZE, 2 * SIZE)
    assert result.fps == 8 * factor and all(run.seconds > 0 for run in result.stages)


def test_the_interpolation_stage_keeps_the_keyframes_exactly(stages):
    keyframes = CascadePipeline(stages["keyframes"])("a", seed=5, **FAST).video
    video = CascadePipeline(stages["keyframes"], stages["interpolation"], factor=3)("a", seed=5, **FAST).video
    assert video.shape[2] == (FRAMES - 1) * 3 + 1  # longer than the stage's window: made in several windows
    assert torch.equal(video[:, :, ::3], keyframes)
    assert not torch.equal(video[:, :, 1], video[:, :, 0])  # the frames between are made, not copies


def control_calls(model) -> tuple[list, torch.utils.hooks.RemovableHandle]:
    """Record the control maps and knobs of every forward call of `model`."""
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append((args[2].control, args[2].attributes)))
    return seen, handle


def test_the_super_resolution_stage_reads_the_upsampled_previous_output_and_its_noise_level(stages):
    cascade = CascadePipeline(stages["keyframes"], stages["interpolation"], stages["super_resolution"])
    before = CascadePipeline(stages["keyframes"], stages["interpolation"])("a", seed=4, **FAST).video
    up = F.interpolate(before, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False)
    seen, handle = control_calls(stages["super_resolution"].model)
    try:
        cascade("a", seed=4, noise_aug=0.0, **FAST)
        clean = list(seen)
        seen.clear()
        cascade("a", seed=4, noise_aug=0.3, **FAST)
    finally:
        handle.remove()
    covered = set()
    for control, knobs in clean:  # every window reads its own frames of the upsampled video
        starts = [s for s in range(up.shape[2] - FRAMES + 1) if torch.allclose(control, up[:, :, s:s + FRAMES],
                                                                                atol=1e-5)]
        assert starts and torch.equal(knobs, torch.zeros(1, 1))
        covered.update(range(starts[0], starts[0] + FRAMES))
    assert covered == set(range(up.shape[2])) and len(clean) > FAST["steps"]  # several windows, each all its steps
    for control, knobs in seen:  # noised to the level given, and told so
        assert torch.allclose(knobs, torch.full((1, 1), 0.3))
        residual = min((control - up[:, :, s:s + FRAMES]).std() for s in range(up.shape[2] - FRAMES + 1))
        assert 0.25 < residual < 0.35


@pytest.mark.parametrize("residual", [True, False])
def test_a_residual_stage_diffuses_the_clip_minus_its_clean_upsampled_input(tiny_config, text_encoder, residual):
    from kinema.training.trainer import Trainer

    config = tiny_config("model.text_dim=0", "model.controls=[low_res_x2]", "model.attributes=[noise_aug]",
                         "train.control_dropout=0", *(["diffusion.residual_of=low_res_x2"] if residual else []))
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    seen = {}

    def record(model_fn, x0, **options):
        seen["x0"] = x0
        return model_fn(x0, torch.zeros(x0.shape[0])).sum()

    trainer.loss_fn = record
    calls, handle = control_calls(trainer.model)
    video = torch.rand(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    try:
        trainer.objective.loss(trainer.model, {"video": video, "caption": ["a", "b"]},
                               [torch.Generator().manual_seed(i) for i in range(2)], 0)
    finally:
        handle.remove()
    control, knobs = calls[0]
    low = low_resolution(video, 2)
    assert (knobs > 0).all() and not torch.allclose(control, low, atol=1e-3)  # the map is noised, the base is not
    if residual:
        torch.testing.assert_close(seen["x0"], video - low, rtol=0, atol=1e-6)
    else:
        assert torch.equal(seen["x0"], video)


@pytest.mark.parametrize("residual", [True, False])
def test_a_residual_stage_that_makes_a_zero_residual_returns_its_upsampled_input(residual):
    sr = stage(2 * SIZE, seed=3, controls=("low_res_x2",), attributes=("noise_aug",))
    torch.nn.init.zeros_(sr.model.conv_out.conv.weight)  # the network outputs zero: its x0 estimate is 0
    torch.nn.init.zeros_(sr.model.conv_out.conv.bias)
    sr.config = with_overrides(sr.config, ["diffusion.prediction=x0"] +
                               (["diffusion.residual_of=low_res_x2"] if residual else []))
    video = torch.rand(1, 3, FRAMES + 2, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    made = CascadePipeline(super_resolution=sr)("a", video=video, noise_aug=0.2, **FAST).video  # two windows
    up = F.interpolate(video, scale_factor=(1, 2, 2), mode="trilinear", align_corners=False)
    torch.testing.assert_close(made, up if residual else torch.zeros_like(up), rtol=0, atol=1e-6)


def test_a_residual_of_a_map_the_stage_does_not_read_is_a_one_line_error(stages):
    with pytest.raises(KinemaError, match="diffusion.residual_of") as error:
        with_overrides(stages["super_resolution"].config, ["diffusion.residual_of=low_res_x4"])
    assert "\n" not in str(error.value)


def test_the_shipped_super_resolution_stage_beats_bicubic_on_a_held_out_clip():
    from kinema.data.registry import build_dataset

    def psnr(video: torch.Tensor, truth: torch.Tensor) -> float:  # dB, for pixels in [-1, 1]
        return 10 * torch.log10(4 / (video - truth).square().mean()).item()

    sr = TextToVideoPipeline.from_pretrained(cascade_module.SHIPPED_SR_MODEL)
    truth = build_dataset(sr.config.data_kind, sr.config.data, 20261129)[0]["video"][None, :, :4]  # not trained on
    small = F.avg_pool3d(truth, (1, 2, 2))
    made = CascadePipeline(super_resolution=sr)("", video=small, noise_aug=0.0, steps=4).video
    frames = small.transpose(1, 2).flatten(0, 1)
    bicubic = F.interpolate(frames, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    bicubic = bicubic.view(1, -1, *bicubic.shape[1:]).transpose(1, 2)
    assert psnr(made, truth) > psnr(bicubic, truth) + 2.0  # measured: 40.2 vs 35.8 dB


def test_a_cascade_can_start_from_a_given_video(stages):
    video = torch.rand(1, 3, 5, SIZE, SIZE) * 2 - 1
    result = CascadePipeline(super_resolution=stages["super_resolution"])("a", video=video, fps=4, **FAST)
    assert result.video.shape == (1, 3, 5, 2 * SIZE, 2 * SIZE) and result.fps == 4
    assert [run.name for run in result.stages] == ["super-resolution"]


@pytest.mark.parametrize("make, needle", [
    (lambda s: CascadePipeline(s["keyframes"], None, stage(2 * SIZE)), "low-res control"),
    (lambda s: CascadePipeline(s["keyframes"], None, stage(3 * SIZE, controls=("low_res_x2",))), "sizes match"),
    (lambda s: CascadePipeline(s["keyframes"], stage(2 * SIZE, frame_conditioning=True)), "sizes match"),
    (lambda s: CascadePipeline(s["keyframes"], s["keyframes"]), "must read known frames"),
    (lambda s: CascadePipeline(s["keyframes"], s["interpolation"], factor=1), "at least 2"),
    (lambda s: CascadePipeline(), "at least one stage"),
    (lambda s: CascadePipeline(super_resolution=s["super_resolution"])("a", video=torch.zeros(1, 3, 4, 4, 4)),
     "takes 3-channel 8x8 videos, got 3-channel 4x4"),
    (lambda s: CascadePipeline(super_resolution=s["super_resolution"])("a"), "starts from a video"),
    (lambda s: CascadePipeline(s["keyframes"], None, s["super_resolution"])("a", noise_aug=2.0, **FAST), "noise_aug"),
])
def test_a_stage_that_does_not_fit_is_a_one_line_error(stages, make, needle):
    with pytest.raises(KinemaError, match=needle) as error:
        make(stages)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def stage_dirs(stages, tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("cascade")
    return [str(save_pretrained(folder / name, pipe.model, pipe.config, {"step": 1})) for name, pipe in stages.items()]


def test_kinema_cascade_writes_the_video_and_prints_each_stage(stage_dirs, tmp_path):
    out = tmp_path / "out.mp4"
    result = runner.invoke(app, ["cascade", "a red ball", "-o", str(out), "--stages", ",".join(stage_dirs),
                                 "--steps", "2", "--device", "cpu", "--scale", "1"])
    assert result.exit_code == 0, result.output
    assert "keyframes: 1 x 3 x 4 x 8 x 8" in result.output  # each stage's shape and seconds
    assert "interpolation: 1 x 3 x 7 x 8 x 8" in result.output
    assert "super-resolution: 1 x 3 x 7 x 16 x 16" in result.output
    video, fps = read_video(out)
    assert video.shape == (3, 7, 16, 16) and fps == 16


def test_kinema_cascade_from_a_video_of_another_size_resizes_it_with_a_note(stage_dirs, tmp_path):
    clip = tmp_path / "in.mp4"
    write_video(clip, torch.zeros(3, 3, 2 * SIZE, 2 * SIZE), fps=4)
    out = tmp_path / "out.mp4"
    result = runner.invoke(app, ["cascade", "a", "-o", str(out), "--video", str(clip), "--stages",
                                 f"none,{stage_dirs[1]},none", "--steps", "2", "--device", "cpu", "--scale", "1"])
    assert result.exit_code == 0, result.output
    video, fps = read_video(out)
    assert video.shape == (3, 5, SIZE, SIZE) and fps == 8
    assert f"resized to the model's {SIZE}x{SIZE}" in result.output


@pytest.mark.parametrize("args, needle", [
    (["--stages", "a,b"], "three entries"),
    (["--stages", "none,none,none"], "every stage out"),
    (["--stages", "missing_dir,none,none"], "missing_dir"),
    (["--stages", "none,none,{sr}"], "--video"),
    (["--noise-aug", "-1", "--stages", "{key},none,{sr}"], "noise_aug"),
    (["--factor", "1", "--stages", "{key},{interp},none"], "at least 2"),
])
def test_bad_input_is_one_line_and_exit_code_2(stage_dirs, tmp_path, args, needle):
    key, interp, sr = stage_dirs
    args = [arg.format(key=key, interp=interp, sr=sr) for arg in args]
    result = runner.invoke(app, ["cascade", "a", "-o", str(tmp_path / "o.mp4"), "--steps", "1", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1


def test_without_a_shipped_super_resolution_stage_the_error_says_how_to_train_one(monkeypatch, tmp_path):
    monkeypatch.setattr(cascade_module, "SHIPPED_SR_MODEL", tmp_path / "missing")
    result = runner.invoke(app, ["cascade", "a", "-o", str(tmp_path / "o.mp4")])
    assert result.exit_code == 2 and "kinema train configs/cascade_sr.yaml" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_cascade_benchmark_runs_every_pipeline_and_counts_the_stages_parameters(stage_dirs, tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        bench = importlib.import_module("cascade")
    finally:
        sys.path.remove(str(BENCHMARKS))
    key, interp, sr = stage_dirs
    report = bench.main(["--keyframes", key, "--interpolation", interp, "--sr", sr, "--clips", "2", "--prompts", "2",
                         "--steps", "1", "--noise-aug", "0.2", "--json", str(tmp_path / "cascade.json")])
    written = json.loads((tmp_path / "cascade.json").read_text())["generation"]
    assert [(row["pipeline"], row["shape"]) for row in written] == [(row["pipeline"], row["shape"])
                                                                     for row in report["generation"]]
    shapes = [row["shape"] for row in report["generation"]]
    big = [3, 7, 2 * SIZE, 2 * SIZE]
    assert shapes == [[3, FRAMES, SIZE, SIZE], [3, 7, SIZE, SIZE], big, big]
    params = report["parameters"]
    assert report["generation"][2]["params_m"] * 1e6 == pytest.approx(
        params["keyframes"] + params["interpolation"] + params["super-resolution"])
    assert [row["method"] for row in report["super_resolution_psnr"]][2:] == ["super-resolution stage, noise_aug 0.2"]


def test_generating_from_a_residual_stage_alone_is_refused_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from kinema.cli import app
    from kinema.pipelines.cascade import SHIPPED_SR_MODEL

    result = CliRunner().invoke(app, ["generate", "a red ball", "-c", str(SHIPPED_SR_MODEL), "-o",
                                      str(tmp_path / "x.mp4")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "kinema cascade" in result.output
