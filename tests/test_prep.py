"""`kinema prep`: scene cuts, shot scores and filters, the manifest, reruns, and the folder dataset reading it."""

import json
import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.data import quality
from kinema.data.camera import noise_texture
from kinema.data.folder import VideoFolder, VideoFolderConfig
from kinema.data.manifest import write_manifest
from kinema.data.prep import PrepOptions, analyse_video, prepare
from kinema.data.registry import build_dataset
from kinema.data.scenes import detect_cuts
from kinema.errors import KinemaError
from test_data_folder import write_frames
from test_video_codecs import encode

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "folder_example.yaml"

FPS = 15
TINTS = [(1.0, 0.3, 0.2), (0.2, 1.0, 0.3), (0.3, 0.4, 1.0)]  # one colour cast per scene


def scene_frames(cuts=(), count=30, speed=1, seed=0, blur=0.0, gain=1.0, height=48, width=64) -> np.ndarray:
    """Scenes of tinted noise texture sliding left `speed` px per frame, a new texture and tint at each cut."""
    rng = np.random.default_rng(seed)
    bounds = [0, *cuts, count]
    frames = []
    for scene, (start, end) in enumerate(zip(bounds, bounds[1:])):
        texture = noise_texture(128, rng)[0].numpy() * 0.5 + 0.5
        tint = np.array(TINTS[scene % len(TINTS)]) * 255 * gain
        for t in range(end - start):
            view = np.roll(texture, -speed * t, axis=1)[:height, :width, None]
            image = (view * tint).clip(0, 255).astype(np.uint8)
            frames.append(cv2.GaussianBlur(image, (0, 0), blur) if blur else image)
    return np.stack(frames)


@pytest.mark.parametrize("suffix", ["mp4", "webm"])
def test_cuts_are_found_at_the_right_frames(tmp_path, suffix):
    path = tmp_path / f"cuts.{suffix}"
    write_frames(path, scene_frames(cuts=(12, 30, 43), count=45), FPS)  # the last cut two frames before the end
    rows = analyse_video(str(path), PrepOptions())
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(0, 12), (12, 30), (30, 43), (43, 45)]
    assert [t for r in rows for t in (r["start"], r["end"])] == pytest.approx(
        [0, 0.8, 0.8, 2.0, 2.0, 43 / 15, 43 / 15, 3.0], abs=2e-3)
    assert all(r["fps"] == pytest.approx(FPS) and (r["height"], r["width"]) == (48, 64) for r in rows)
    assert all(0.15 < r["scores"]["motion"] < 0.3 for r in rows)  # 1 px per frame = 15 / 64 widths per second


def test_a_fast_pan_is_one_shot():
    frames = scene_frames(count=30, speed=5)
    assert detect_cuts(frames) == []
    frames[10:] = frames[10:, :, ::-1, ::-1]  # a hard change of picture and colour
    assert detect_cuts(frames) == [10]


def write_heavily_compressed(path, frames, quantiser: int) -> None:
    """MPEG-4 part 2 at a fixed quantiser (31 = coarsest: visible 8x8 blocks)."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.qmin = stream.codec_context.qmax = quantiser
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture
def source(tmp_path):
    """A folder with a three-shot video, static, dark, blurred, blocky and broken files, a class folder, a caption."""
    src = tmp_path / "src"
    (src / "Surfing").mkdir(parents=True)
    write_frames(src / "Surfing/cuts.mp4", scene_frames(cuts=(12, 30), count=45), FPS)
    (src / "Surfing/cuts.txt").write_text("waves in three colours\n")
    write_frames(src / "static.mkv", scene_frames(speed=0, seed=1), FPS)
    write_frames(src / "dark.mp4", scene_frames(gain=0.08, seed=2), FPS)
    write_frames(src / "blurred.webm", scene_frames(blur=2.5, seed=3), FPS)
    write_heavily_compressed(src / "blocky.avi", scene_frames(seed=4, height=64, width=96), 31)
    (src / "broken.mov").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    return src


def test_prep_scores_filters_and_lists_bad_files(source, tmp_path):
    options = PrepOptions(min_shot_seconds=0.5, min_motion=0.02, min_sharpness=0.1, max_blockiness=2.0)
    counts = prepare(source, tmp_path / "out", options, workers=2, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out/manifest.jsonl").read_text().splitlines()]
    by_file = {}
    for row in rows:
        by_file.setdefault(os.path.basename(row["path"]), []).append(row)
    assert [r["status"] for r in by_file["cuts.mp4"]] == ["ok", "ok", "ok"]
    assert all(r["caption"] == "waves in three colours" and r["label"] == "Surfing" for r in by_file["cuts.mp4"])
    assert "static (" in by_file["static.mkv"][0]["reason"]
    assert "too dark (" in by_file["dark.mp4"][0]["reason"]
    assert "blurred (" in by_file["blurred.webm"][0]["reason"]
    assert "compression artifacts (" in by_file["blocky.avi"][0]["reason"]
    assert by_file["broken.mov"][0]["status"] == "bad" and "broken.mov" in by_file["broken.mov"][0]["reason"]
    assert counts == {"files": 6, "analysed": 6, "skipped": 0, "ok": 3, "filtered": 4, "bad": 1}

    # the folder dataset reads the kept shots directly, clips stay inside their shot
    dataset = VideoFolder(VideoFolderConfig(manifest=str(tmp_path / "out/manifest.jsonl"), num_frames=4, size=16,
                                            length=12))
    assert [t for e in dataset.entries for t in (e.start, e.end)] == pytest.approx([0, 0.8, 0.8, 2, 2, 3], abs=2e-3)
    for index in range(12):
        item, entry = dataset[index], dataset.entries[index % 3]
        assert entry.start - 1e-3 <= item["times"][0] and item["times"][-1] < entry.end
        assert item["caption"] == "waves in three colours" and item["label"] == 0


def test_rerun_skips_finished_files_and_reapplies_thresholds(source, tmp_path):
    out = tmp_path / "out"
    first = prepare(source, out, PrepOptions(min_shot_seconds=0.5), progress=False)
    assert first["analysed"] == 6
    again = prepare(source, out, PrepOptions(min_shot_seconds=1.0), progress=False)
    assert again["analysed"] == 0
    assert again["filtered"] == first["filtered"] + 1  # the 0.8 s shot is now too short, from stored scores
    write_frames(source / "static.mkv", scene_frames(speed=2, seed=9), FPS)  # a changed file
    (out / "manifest.jsonl").open("a").write('{"path": "../src/cut sh')  # a line cut short by a crash
    assert prepare(source, out, PrepOptions(min_shot_seconds=1.0), progress=False)["analysed"] == 1


def test_prep_command_writes_the_manifest_and_rejects_bad_options(source, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["prep", str(source), str(tmp_path / "out"), "--workers", "1", "--min-shot", "0.5"])
    assert result.exit_code == 0, result.output
    assert "6 files" in result.output and (tmp_path / "out/manifest.jsonl").is_file()
    result = runner.invoke(app, ["prep", str(source), str(tmp_path / "out"), "--cut-threshold", "0.5"])
    assert result.exit_code == 2 and result.output.strip().startswith("error:") and "cut-threshold" in result.output
    result = runner.invoke(app, ["prep", str(tmp_path / "missing"), str(tmp_path / "out")])
    assert result.exit_code == 2 and "missing" in result.output


def test_the_readme_recipe_prep_then_train_from_the_manifest_with_the_example_config(source, tmp_path):
    prepare(source, tmp_path / "prepped", PrepOptions(min_shot_seconds=0.5), progress=False)
    manifest = tmp_path / "prepped/manifest.jsonl"
    config = load_config(EXAMPLE_CONFIG, [f"data.manifest={manifest}", "data.num_frames=4", "data.size=16"])
    assert config.data.root  # the example's root stays set: manifest paths must not be joined to it
    dataset = build_dataset("folder", config.data, seed=0)
    assert all(Path(entry.path).is_file() and str(source) in str(Path(entry.path).resolve())
               for entry in dataset.entries)
    assert dataset[0]["video"].shape == (3, 4, 16, 16)
    write_manifest(tmp_path / "stale.jsonl", [{"path": "moved/away.mp4", "fps": 15, "start": 0, "end": 3,
                                               "width": 64, "height": 48}])
    with pytest.raises(KinemaError, match="moved/away.mp4"):
        VideoFolder(VideoFolderConfig(manifest=str(tmp_path / "stale.jsonl"), num_frames=4))


def test_a_time_lapse_avi_with_dropped_frames_is_complete(tmp_path):
    ticks = [0, 1, 2, 3, 10, 11, 12, 20, 21, 40, 41, 42, 43, 44, 60, 61, 62, 63, 64, 65]  # 20 of 66 frame slots
    path = tmp_path / "timelapse.avi"
    encode(path, "avi", "mpeg4", count=len(ticks), pts=ticks, fps=24)
    rows = analyse_video(str(path), PrepOptions())
    assert [row["status"] for row in rows] == ["ok"] * len(rows)
    assert rows[0]["start"] == 0 and rows[-1]["end"] == pytest.approx(66 / 24, abs=1e-3)
    assert rows[-1]["end_frame"] == 20


def test_prep_reads_every_container_and_logs_what_it_skips(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    encode(src / "old.mpg", "mpeg", "mpeg1video", b_frames=2)
    (src / "old.txt").write_text("an mpeg-1 clip\n")
    encode(src / "broadcast.ts", "mpegts", "libx264")
    encode(src / "camera.avi", "avi", "mjpeg")
    encode(src / "anamorphic.mkv", "matroska", "libx264", sar=Fraction(2, 1))
    (src / "notes.pdf").write_bytes(b"%PDF-1.4")
    caplog.set_level(logging.WARNING, logger="kinema.data.prep")
    counts = prepare(src, tmp_path / "out", PrepOptions(min_shot_seconds=0.5, min_brightness=0), progress=False)
    assert counts["files"] == 4 and counts["skipped"] == 1 and counts["ok"] == 4
    assert [r.getMessage() for r in caplog.records if "notes.pdf" in r.getMessage()]
    rows = {os.path.basename(r["path"]): r for r in
            (json.loads(line) for line in (tmp_path / "out/manifest.jsonl").read_text().splitlines())}
    assert all(row["end_frame"] == 24 and row["end"] == pytest.approx(1.0, abs=1e-3) for row in rows.values())
    assert rows["old.mpg"]["caption"] == "an mpeg-1 clip"
    assert (rows["anamorphic.mkv"]["width"], rows["anamorphic.mkv"]["height"]) == (64, 24)  # display aspect
    folder = VideoFolder(VideoFolderConfig(root=str(src), num_frames=4, size=8))
    assert folder.summary == {"usable": 4, "not a video": 1}


def test_programming_errors_in_analysis_raise_instead_of_marking_the_file_bad(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    write_frames(path, scene_frames(count=8), FPS)

    def broken(frame):
        raise ValueError("a bug, not a bad file")

    monkeypatch.setattr(quality, "blockiness", broken)
    with pytest.raises(ValueError, match="a bug"):
        analyse_video(str(path), PrepOptions())


def test_sharpness_does_not_depend_on_resolution():
    texture = (noise_texture(720, np.random.default_rng(0))[0].numpy() * 0.5 + 0.5) * 255  # natural-image spectrum
    hd = cv2.GaussianBlur(np.tile(texture, (1, 2))[:, :1280], (0, 0), 1.0).astype(np.uint8)  # 720p
    for size in ((320, 180), (854, 480)):
        same = cv2.resize(hd, size, interpolation=cv2.INTER_AREA)
        assert quality.sharpness(same) == pytest.approx(quality.sharpness(hd), rel=0.1)
    small = cv2.resize(hd, (320, 180), interpolation=cv2.INTER_AREA)
    assert quality.sharpness(cv2.GaussianBlur(small, (0, 0), 2.0)) < 0.5 * quality.sharpness(small)
