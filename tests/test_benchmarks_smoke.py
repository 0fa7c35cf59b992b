"""Tiny runs of benchmarks/peers.py, benchmarks/unet_vs_diffusers.py, benchmarks/mfu.py and
benchmarks/frame_tasks.py: the models are built at matched sizes, the harness measures and compares them, the FLOP
count scales with the batch, the frame tasks keep the given pixels and beat naive baselines where they should, and
the shipped-model benchmark scores the simulator as smooth as itself."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config

from kinema.data.physics_balls import BouncingBallsConfig, render_balls, simulate_balls
from kinema.metrics.balls import track_balls
from kinema.metrics.frame import PSNR_CAP_DB, psnr
from kinema.models.pretrained import save_pretrained

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--size", "8", "--frames", "2", "--batch", "1", "--steps", "1", "--warmup", "0", "--sample-steps", "1",
        "--videos", "1"]
NEEDS_LUCIDRAINS = pytest.mark.skipif(importlib.util.find_spec("video_diffusion_pytorch") is None,
                                      reason="lucidrains' package comes with the bench extra")


@pytest.fixture(scope="module")
def bench():
    """The benchmark scripts as modules (they import their shared harness from their own folder)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield SimpleNamespace(**{name: importlib.import_module(name)
                                 for name in ("model_timing", "peers", "unet_vs_diffusers", "mfu", "frame_tasks",
                                              "long_video", "studio", "shipped_model_quality")})
    finally:
        sys.path.remove(str(BENCHMARKS))


@NEEDS_LUCIDRAINS
def test_peers_are_built_at_matched_parameter_counts(bench):
    args = bench.peers.parse_args(["--json", "unused.json"])
    params = {name: sum(p.numel() for p in bench.peers.build(name, args)[0].parameters())
              for name in bench.peers.LABELS}
    reference = params["kinema_unet"]
    assert {name: round(n / reference, 2) for name, n in params.items() if not 0.9 <= n / reference <= 1.1} == {}
    if importlib.util.find_spec("torchvision") is None:
        assert "torchvision" not in sys.modules  # the stand-in used to import lucidrains' package is gone


@NEEDS_LUCIDRAINS
def test_peers_measures_every_model_on_the_same_inputs_and_compares_to_kinema(bench, monkeypatch, tmp_path):
    timing = bench.model_timing
    monkeypatch.setattr(timing, "in_fresh_process", timing.peak_memory_mb)  # no spawned interpreters in a test
    args = bench.peers.parse_args([*TINY, "--models", "kinema_unet,lucidrains",
                                   "--json", str(tmp_path / "peers.json")])
    results = bench.peers.run(args)
    for name in args.models:
        r = results[name]
        assert r["train_steps_per_s"] > 0 and r["s_per_video"] > 0 and len(r["train_step_s"]) == 1
        assert r["network_calls_per_video"] == 1 and list(r["network_input_shape"]) == [2, 3, 2, 8, 8]  # CFG: 2 rows
        assert r["vs_kinema_unet"]["train_speed"] == pytest.approx(
            r["train_steps_per_s"] / results["kinema_unet"]["train_steps_per_s"])
    assert results["kinema_unet"]["vs_kinema_unet"]["video_speed"] == 1
    assert "lucidrains video-diffusion-pytorch Unet3D" in bench.peers.table(results, args.models)


def test_unet_vs_diffusers_builds_both_models_through_the_shared_harness(bench):
    args = SimpleNamespace(diffusers_patch=2)
    x, t = torch.zeros(1, 3, 2, 8, 8), torch.rand(1)
    text, mask = torch.randn(1, 12, 384), torch.ones(1, 12, dtype=torch.bool)
    for name in bench.unet_vs_diffusers.MODELS:
        model, fn = bench.unet_vs_diffusers.build(name, args)
        with torch.no_grad():
            assert fn(x, t, text, mask).shape == x.shape


def test_mfu_tiny_run_counts_flops_that_scale_with_the_batch(bench, tmp_path):
    report = bench.mfu.main(["--tiny", "--json", str(tmp_path / "mfu.json"), "--peak-tflops", "1"])
    (row,) = report["rows"]
    assert row["mfu"] == pytest.approx(row["achieved_tflops"] / 1.0) and row["mfu"] > 0
    assert (tmp_path / "mfu.json").is_file()
    double = bench.mfu.parse_args(["--tiny", "--steps", "1", "--warmup", "0"])
    double.batch = 4
    assert bench.mfu.measure("tiny", False, double)["flops_per_step"] == pytest.approx(2 * row["flops_per_step"],
                                                                                        rel=0.01)


def test_frame_task_baselines_extrapolate_blend_and_follow_the_flow(bench):
    ft = bench.frame_tasks
    ramp = torch.linspace(-0.5, 1.6, 8).reshape(1, 1, 8, 1, 1).expand(1, 3, 8, 4, 4)
    given = ramp.clone()
    given[:, :, 2:] = 0
    assert torch.equal(ft.copy_last(given, 2)[:, :, 2:], given[:, :, 1:2].expand(1, 3, 6, 4, 4))
    torch.testing.assert_close(ft.linear_extrapolation(given, 2), ramp.clamp(-1, 1))  # 2 x_t - x_(t-1), clipped
    centres = np.array([[[8.0 + 3 * t, 12.0 + 1.5 * t]] for t in range(3)])  # a ball moving 3.4 px per frame
    video = render_balls(centres, np.array([4.0]), np.array([[1.0, 0.12, 0.1]]), 32)[None]
    blend, flow = ft.linear_blend(video, [0, 2]), ft.flow_interpolation(video, [0, 2])
    torch.testing.assert_close(blend[:, :, 1], (video[:, :, 0] + video[:, :, 2]) / 2)
    assert psnr(flow[:, :, 1:2], video[:, :, 1:2]) > psnr(blend[:, :, 1:2], video[:, :, 1:2]) + 6
    assert np.linalg.norm(track_balls(flow[0]).centres[0, 1] - centres[1, 0]) < 0.2


def test_frame_tasks_tiny_run_keeps_the_given_pixels_and_reports_every_task(bench, tmp_path):
    model = tiny_denoiser("video_unet", text_dim=0, frame_conditioning=True).eval()
    config = tiny_run_config(model, "video_unet")
    config.data = replace(config.data, size=16, max_balls=1)  # 8 frames of 16x16
    save_pretrained(tmp_path / "model", model, config)
    report = bench.frame_tasks.main(["--checkpoint", str(tmp_path / "model"), "--clips", "2", "--steps", "1",
                                     "--batch", "2", "--json", str(tmp_path / "frame_tasks.json")])
    means = report["summary"]["means"]
    assert means["animate"]["frame0_psnr"] == PSNR_CAP_DB  # the given frame comes back exactly
    assert means["inpaint"]["kinema"]["psnr_outside"] == PSNR_CAP_DB and means["inpaint"]["kinema"]["psnr_inside"] < 60
    assert means["animate"]["real"]["both_kept"] == 1  # the real clips keep their balls
    assert report["tasks"]["predict_4"]["given_frames"] == [0, 1, 2, 3]
    for task in ("predict_2", "predict_4", "interpolate_every_other", "interpolate_first_last"):
        assert "kinema" in means[task] and len(means[task]) == 3  # the model and its two baselines
    for task in ("edit", "edit_inverted"):
        assert set(report["tasks"][task]) == {"prompts", "0.2", "0.4", "0.6", "0.8"}
    saved = json.loads((tmp_path / "frame_tasks.json").read_text())
    assert saved["data"]["seed"] == 20261129 and len(saved["data"]["captions"]) == 2


def test_long_video_tiny_run_measures_memory_speed_drift_and_anchored_colours(bench, monkeypatch, tmp_path):
    model = tiny_denoiser("video_unet", text_dim=0, frame_conditioning=True).eval()
    config = tiny_run_config(model, "video_unet")
    config.data = replace(config.data, size=8, num_frames=2, radius_range=(1.0, 2.0))
    save_pretrained(tmp_path / "model", model, config)
    long_video = bench.long_video
    monkeypatch.setattr(long_video, "in_fresh_process", long_video.make_video)  # no spawned interpreters in a test
    report = long_video.main(["--checkpoint", str(tmp_path / "model"), "--frames", "3", "--drift-videos", "0",
                              "--anchored-videos", "1", "--anchored-frames", "4", "--steps", "1",
                              "--json", str(tmp_path / "long.json")])
    assert [(r["mode"], r["frames"]) for r in report["lengths"]] == [("window", 3), ("fifo", 3)]
    assert all(r["peak_mb"] > 0 and r["s_per_frame"] > 0 and r["first_frame_s"] > 0 for r in report["lengths"])
    assert len(report["drift"]) == 2 and all(isinstance(r["drift_free"], bool) for r in report["drift"])
    assert all(len(r["accuracy"]) == 2 for r in report["anchored"])
    assert set(report["summary"]) == {"window", "fifo"} and (tmp_path / "long.json").is_file()


def test_camera_generation_tiny_run_scores_every_variant_and_guidance_pulls_toward_the_move(bench, tmp_path):
    from kinema.config import Config
    from kinema.data.camera import CameraMotionConfig

    model = tiny_denoiser("video_unet", text_dim=0, controls=("camera",)).eval()
    save_pretrained(tmp_path / "model", model, Config("video_unet", model.config, "camera",
                                                      CameraMotionConfig(num_frames=4, size=16)))
    camera_generation = importlib.import_module("camera_generation")
    results = camera_generation.main(["--model", str(tmp_path / "model"), "--moves", "4", "--per-move", "1",
                                      "--steps", "2", "--json", str(tmp_path / "camera.json")])
    run = [n for n in camera_generation.VARIANTS if n not in camera_generation.VIEWING]  # it reads no view map
    assert set(results) == {"floor: dataset clips", *run}
    assert {motion: row["clips"] for motion, row in results["map"]["motions"].items()} == {
        "pan": 1, "tilt": 1, "zoom": 1, "roll": 1, "all": 4}
    assert results["floor: dataset clips"]["motions"]["all"]["error_px_per_frame"][0] < 0.2  # real clips: near exact
    error = {name: results[name]["motions"]["all"]["error_px_per_frame"][0] for name in run}
    assert error["map + guidance"] < 0.8 * error["map"]  # camera guidance pulls the untrained model's videos along
    # ... but they are moving noise, not pictures: the pixel-noise check keeps them from meeting the targets
    noise = results["map + guidance"]["pixel_noise_vs_data"]
    assert noise > camera_generation.MAX_PIXEL_NOISE and not results["map + guidance"]["meets_targets"]
    assert all(results[name]["seconds_per_video"] > 0 for name in run)
    assert json.loads((tmp_path / "camera.json").read_text())["config"]["moves"] == list(
        camera_generation.HELD_OUT_MOVES[:4])
    with pytest.raises(SystemExit, match="reads no camera_view map"):
        camera_generation.main(["--model", str(tmp_path / "model"), "--variants", "map + view"])
    viewing = tiny_denoiser("video_unet", text_dim=0, controls=("camera", "camera_view")).eval()
    save_pretrained(tmp_path / "viewing", viewing, Config("video_unet", viewing.config, "camera",
                                                          CameraMotionConfig(num_frames=4, size=16)))
    views = camera_generation.main(["--model", str(tmp_path / "viewing"), "--moves", "2", "--per-move", "1",
                                    "--steps", "2", "--json", str(tmp_path / "view.json")])
    assert set(views) == {"floor: dataset clips", *camera_generation.VARIANTS}


def test_studio_memory_counts_the_server_and_its_child_processes(bench):
    child = subprocess.Popen([sys.executable, "-c", "import sys; block = b'x' * 96 * 2**20; print('ready', "
                              "flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        alone = bench.studio.rss_mb(child.pid)
        assert alone > 96
        own = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmRSS:")) / 1024
        assert bench.studio.rss_mb(os.getpid()) >= own + alone - 8  # this process and its child
    finally:
        child.communicate("")
    assert bench.studio.rss_mb(child.pid) == 0  # gone: nothing to count



def test_the_simulator_scores_as_smooth_as_itself_in_the_shipped_model_benchmark(bench):
    """A 'model' that returns the simulator's held-out clips has roughness 1x the simulator's, and a jittered copy
    of them more."""
    quality = bench.shipped_model_quality
    config = BouncingBallsConfig(num_frames=8, size=32, radius_range=(3.0, 4.5))
    suite = quality.prompt_suite()[:4]
    clips = [simulate_balls(config, quality.HELD_OUT_SEED + i).video for i in range(len(suite))]

    def jittered(video: torch.Tensor, b: int) -> torch.Tensor:
        shift = [0, 2, -2, 1, -1, 2, 0, -2][: video.shape[1]]
        return torch.stack([torch.roll(video[:, t], shift[(t + b) % len(shift)], dims=-1)
                            for t in range(video.shape[1])], dim=1)

    class Simulator:
        def __init__(self, jitter: bool):
            self.config = SimpleNamespace(data=config)
            self.spec = SimpleNamespace(defaults=SimpleNamespace(direction_guidance=0.0, identity_guidance=0.0,
                                                                 physics_start=0.0, retries=0))
            self.made, self.jitter = iter(clips), jitter

        def __call__(self, prompts, **options):
            videos = [next(self.made) for _ in prompts]
            return torch.stack([jittered(v, b) if self.jitter else v for b, v in enumerate(videos)])

    reference = quality.simulator_roughness(Simulator(False), len(suite))
    options = dict(guidance=1.0, steps=1, sampler="ddim", seeds=1, suite=suite, reference_roughness=reference)
    assert quality.evaluate(Simulator(False), **options)["roughness_vs_simulator"] == pytest.approx(1.0)
    assert quality.evaluate(Simulator(True), **options)["roughness_vs_simulator"] > 1.5
