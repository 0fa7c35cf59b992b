"""Tests for what `kinema eval` reads: every container the readers take, frames of several sizes brought to one
size (crop / pad / stretch), PSNR of identical clips, and ball scores reported as not applicable to other scenes."""

import json

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from kinema.cli import app
from kinema.errors import KinemaError
from kinema.evaluation import EvalOptions, evaluate, fit_size, load_source
from kinema.metrics.features import VideoFeatureNet, VideoFeatureNetConfig, save_feature_net

FRAMES = 6


def _encode(path, frames: np.ndarray, codec: str, pix_fmt: str) -> None:
    """Write uint8 frames [T, H, W, 3] with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _textured(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth random texture sliding right one pixel per frame: not a ball scene."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4 + 1, width // 4 + FRAMES, 3)).repeat(4, 0).repeat(4, 1)
    return np.stack([base[:height, t: t + width] for t in range(FRAMES)]).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two AVI (MPEG-4 Part 2) clips of 32x32, two MKV (FFV1, lossless) clips of 24x48, one folder of 32x32 PNGs."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "clips").mkdir()
    for i in range(2):
        _encode(root / "clips" / f"a{i}.avi", _textured(i, 32, 32), "mpeg4", "yuv420p")
        _encode(root / "clips" / f"b{i}.mkv", _textured(10 + i, 24, 48), "ffv1", "bgr0")
    (root / "clips" / "c0").mkdir()
    for t, frame in enumerate(_textured(20, 32, 32)):
        Image.fromarray(frame).save(root / "clips" / "c0" / f"frame_{t:03d}.png")
    torch.manual_seed(0)
    save_feature_net(root / "features", VideoFeatureNet(VideoFeatureNetConfig()), {"note": "untrained"})
    return root / "clips"


def test_a_folder_of_two_containers_two_sizes_and_png_frames_needs_and_takes_a_common_size(folder):
    with pytest.raises(KinemaError, match="--size HxW"):
        load_source(folder, EvalOptions(num_samples=4))
    for mode in ("crop", "pad", "stretch"):
        videos = load_source(folder, EvalOptions(num_samples=4, size=(32, 32), resize=mode)).videos
        assert videos.shape == (4, 3, FRAMES, 32, 32), mode
    lossless = load_source(folder, EvalOptions(num_samples=5, size=(24, 48), resize="crop")).videos
    assert torch.equal(lossless[2], torch.from_numpy(_textured(10, 24, 48)).permute(3, 0, 1, 2) / 127.5 - 1)
    pngs = load_source(folder, EvalOptions(num_samples=5, size=(32, 32))).videos[4]
    assert torch.equal(pngs, torch.from_numpy(_textured(20, 32, 32)).permute(3, 0, 1, 2) / 127.5 - 1)


def test_fit_size_crops_pads_or_stretches_and_maps_points_with_the_pixels():
    clip = -torch.ones(3, 1, 24, 48)
    clip[..., :8] = 1.0  # a white band on the left sixth of a wide frame
    crop, _, _ = fit_size(clip, (32, 32), "crop")
    assert crop.max() < -0.9  # the centre square does not reach the band
    stretched, scale, offset = fit_size(clip, (32, 32), "stretch")
    assert (stretched[..., :4] > 0.9).all() and (stretched[..., 6:] < -0.9).all()
    padded, pad_scale, pad_offset = fit_size(clip, (32, 32), "pad")
    assert (padded[..., :8, :] == -1).all() and (padded[..., 24:, :] == -1).all()  # black bars above and below
    assert (padded[..., 8:24, :2] > 0.9).all() and (padded[..., 8:24, 6:] < -0.9).all()
    for image, s, o in ((stretched, scale, offset), (padded, pad_scale, pad_offset)):
        x, y = np.array([4.0, 12.0]) * s + o  # the band's centre lands on the band
        assert image[0, 0, int(y), int(x)] > 0.9
    with pytest.raises(KinemaError, match="--resize"):
        fit_size(clip, (32, 32), "squash")


def test_identical_paired_clips_report_capped_psnr_and_ball_scores_say_not_applicable(folder, tmp_path):
    options = EvalOptions(num_samples=4, size=(32, 32), paired=True, bootstrap=0, kvd_subsets=1,
                          features=str(folder.parent / "features"), cache_dir=str(tmp_path))
    (report,) = evaluate(folder, [folder], options)
    metrics = report["metrics"]
    assert metrics["psnr"]["value"] == 100.0 and metrics["ssim"]["value"] == pytest.approx(1.0)
    assert metrics["count_constancy"]["value"] == "not applicable"
    assert "background" in metrics["count_constancy"]["reason"]
    assert report["real_reference"]["physics_plausibility"]["value"] == "not applicable"


def test_cli_eval_takes_size_and_resize_and_rejects_bad_ones_on_one_line(folder, tmp_path):
    runner = CliRunner()
    common = ["eval", "--real", str(folder), "--fake", str(folder), "-n", "4", "--bootstrap", "0",
              "--features", str(folder.parent / "features")]
    out = tmp_path / "r.json"
    result = runner.invoke(app, common + ["--size", "16x24", "--resize", "pad", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["shape"] == [3, FRAMES, 16, 24]
    for option, value in (("--size", "32"), ("--resize", "squash")):
        bad = runner.invoke(app, common + [option, value, "--out", str(tmp_path / "bad.json")])
        assert bad.exit_code == 2 and option in bad.output and len(bad.output.strip().splitlines()) == 1, bad.output
