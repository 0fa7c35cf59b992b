"""`kinema vae encode | decode | reconstruct`: real files in and out, chunked, and one-line errors."""

import re

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from kinema.autoencoder import CausalVAEConfig, CausalVideoVAE, save_autoencoder
from kinema.cli import app
from kinema.data.transforms import resize
from kinema.metrics.frame import psnr
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.video import probe_video, read_video, write_video

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def vae_dir(tmp_path):
    torch.manual_seed(0)
    return save_autoencoder(tmp_path / "vae", CausalVideoVAE(CausalVAEConfig(channels=8, channel_mult=(1, 2),
                                                                             norm_groups=4)))


@pytest.fixture
def video_file(tmp_path):
    """11 frames of 22x18 pixels: neither the size nor the length fits the autoencoder (s=4, k=4)."""
    t = torch.arange(11.0)[:, None, None]
    yy, xx = torch.meshgrid(torch.arange(18.0), torch.arange(22.0), indexing="ij")
    frames = torch.stack([torch.sin(xx / 4 + t), torch.cos(yy / 3 - t), torch.sin((xx + yy) / 5 + 0 * t)], 0) * 0.8
    return write_video(tmp_path / "clip.mp4", frames, fps=10)


def test_reconstruct_fits_the_video_and_scores_the_chunked_reconstruction(tmp_path, vae_dir, video_file):
    code, output = run("vae", "reconstruct", video_file, "-c", vae_dir, "-o", tmp_path / "out.mp4", "--chunk", "1")
    assert code == 0, output
    assert "note: resized 22x18 to 24x20 (a multiple of 4)" in output
    assert "note: trimmed 11 frames to 9 (1 + k*n with k=4)" in output
    info = probe_video(tmp_path / "out.mp4")
    assert (info.num_frames, info.width, info.height) == (9, 24, 20)
    printed = float(re.search(r"9 frames: PSNR (\S+) dB, SSIM (\S+)", output).group(1))
    clip, _ = read_video(video_file, num_frames=9)
    video = resize(clip, 20, 24)[None]
    from kinema.autoencoder import load_autoencoder

    vae, _, _ = load_autoencoder(vae_dir)
    with torch.no_grad():
        one_shot = vae.decode(vae.encode(video).mode()).clamp(-1, 1)
    assert printed == pytest.approx(psnr(one_shot, video).item(), abs=0.01)


def test_encode_then_decode_round_trips_through_a_latents_file(tmp_path, vae_dir, video_file):
    code, output = run("vae", "encode", video_file, "-c", vae_dir, "-o", tmp_path / "z.safetensors", "--chunk", "1")
    assert code == 0 and "latents [1, 4, 3, 5, 6]" in output, output
    assert load_file(str(tmp_path / "z.safetensors"))["latents"].shape == (1, 4, 3, 5, 6)
    code, output = run("vae", "decode", tmp_path / "z.safetensors", "-c", vae_dir, "-o", tmp_path / "d.mp4")
    assert code == 0 and "9 frames" in output, output
    info = probe_video(tmp_path / "d.mp4")
    assert (info.num_frames, info.width, info.height, info.fps) == (9, 24, 20, 10)
    code, output = run("vae", "reconstruct", video_file, "-c", vae_dir, "-o", tmp_path / "r.mp4")
    assert code == 0, output
    decoded, reconstructed = read_video(tmp_path / "d.mp4")[0], read_video(tmp_path / "r.mp4")[0]
    difference = (decoded - reconstructed).abs()  # the same frames, through two encodes of a lossy codec, whose
    assert difference.mean() < 0.03 and difference.max() < 0.25  # choices may flip on tiny float differences


def test_tiled_reconstruction_runs_on_frames_larger_than_a_tile(tmp_path, vae_dir, video_file):
    code, output = run("vae", "reconstruct", video_file, "-c", vae_dir, "--tile", "12", "--tile-overlap", "4")
    assert code == 0 and "9 frames: PSNR" in output, output


def assert_one_line_error(code, output, *needles):
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), output
    for needle in needles:
        assert needle in lines[0], output


def test_bad_input_is_a_one_line_error(tmp_path, vae_dir, video_file, tiny_config):
    assert_one_line_error(*run("vae", "reconstruct", tmp_path / "none.mp4", "-c", vae_dir), "none.mp4")
    assert_one_line_error(*run("vae", "encode", video_file, "-c", tmp_path / "nowhere"), "autoencoder not found")
    config = tiny_config()
    save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config)
    assert_one_line_error(*run("vae", "encode", video_file, "-c", tmp_path / "model"), "is a denoiser model directory")
    assert_one_line_error(*run("vae", "reconstruct", video_file, "-c", vae_dir, "--tile", "10"), "multiples of 4")
    assert_one_line_error(*run("vae", "reconstruct", video_file, "-c", vae_dir, "--chunk", "0"), "at least 1")
    assert_one_line_error(*run("vae", "reconstruct", video_file, "-c", vae_dir, "-o", tmp_path / "x.gif"), "gif")
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    assert_one_line_error(*run("vae", "decode", tmp_path / "bad.safetensors", "-c", vae_dir), "corrupt latents file")
    write_video(tmp_path / "one.mp4", torch.zeros(3, 1, 16, 16))
    code, output = run("vae", "encode", tmp_path / "one.mp4", "-c", vae_dir, "-o", tmp_path / "one.safetensors")
    assert code == 0, output  # a single frame is 1 + k*0 frames: one latent frame


def test_info_describes_an_autoencoder_directory(vae_dir):
    code, output = run("info", vae_dir)
    assert code == 0, output
    parameters = sum(p.numel() for p in CausalVideoVAE(CausalVAEConfig(channels=8, channel_mult=(1, 2),
                                                                       norm_groups=4)).parameters())
    assert f"model: causal video autoencoder, {parameters:,} parameters" in output
    assert "latent_scale: 1.0" in output and "spatial_downsample: 4" in output


def test_the_shipped_autoencoder_rebuilds_held_out_balls_far_above_their_background(tmp_path):
    """The default of `-c`: configs/vae_balls.yaml's autoencoder keeps balls, colours and motion of a clip it never saw
    (a black frame scores the floor, about 14 dB)."""
    from kinema.data.physics_balls import BouncingBalls, BouncingBallsConfig

    clip = BouncingBalls(BouncingBallsConfig(num_frames=17, size=64, radius_range=(6.0, 9.0)), seed=424242)[0]
    video = clip["video"]
    floor = psnr(torch.full_like(video, -1.0)[None], video[None]).item()
    path = write_video(tmp_path / "balls.mp4", video, fps=8)
    code, output = run("vae", "reconstruct", path, "-o", tmp_path / "rebuilt.mp4")
    assert code == 0, output
    printed = float(re.search(r"17 frames: PSNR (\S+) dB", output).group(1))
    assert printed > 28.0 and printed > floor + 10
    rebuilt, _ = read_video(tmp_path / "rebuilt.mp4")
    moved = (rebuilt[:, 1:] - rebuilt[:, :-1]).abs().mean(dim=(0, 2, 3))
    assert (moved > 0.2 * (video[:, 1:] - video[:, :-1]).abs().mean(dim=(0, 2, 3))).all()  # motion, not held frames
