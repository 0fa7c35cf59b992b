"""Seeking readers, clip sampling, transforms and the video-folder dataset, on small videos made here."""

import logging
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kinema.config import load_config
from kinema.data.buckets import BucketBatchSampler
from kinema.data.folder import VideoFolder, VideoFolderConfig, label_caption
from kinema.data.manifest import read_manifest, write_manifest
from kinema.data.registry import build_dataset
from kinema.data.sampling import clip_start, frame_changes, keyframe_indices, motion_adaptive_indices
from kinema.data.transforms import SpatialTransform, nearest_bucket
from kinema.errors import KinemaError
from kinema.video import from_uint8, write_video
from kinema.video.io import probe_video, read_clip, read_frames_at, read_window

CONTAINERS = {  # suffix -> (muxer, encoder)
    "mp4": ("mp4", "libx264"), "webm": ("webm", "libvpx-vp9"), "mkv": ("matroska", "libx264"),
    "avi": ("avi", "mpeg4"), "mov": ("mov", "libx264"), "gif": ("gif", "gif"),
}
LEVEL_STEP = 5  # frame i (< 51) is a flat grey of level 5 i + 4, so its index survives lossy coding


def write_frames(path, frames: np.ndarray, fps: float, gop: int | None = None) -> None:
    """Encode uint8 RGB frames `[T, H, W, 3]` into `path`'s container at `fps`."""
    muxer, codec = CONTAINERS[path.suffix[1:]]
    if codec == "gif":
        write_video(path, from_uint8(frames), fps)
        return
    options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"} if gop else {}
    with av.open(str(path), "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def index_frames(count: int, height: int = 16, width: int = 24) -> np.ndarray:
    """Flat grey frames whose level encodes their index."""
    levels = (np.arange(count) * LEVEL_STEP + 4).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def frame_indices(clip: torch.Tensor) -> list[int]:
    """Recover the frame indices from a clip of `index_frames`."""
    levels = (clip.mean(dim=(0, 2, 3)) + 1) * 127.5
    return torch.round((levels - 4) / LEVEL_STEP).long().tolist()


@pytest.fixture
def indexed(tmp_path):
    """A factory: indexed('clip.mp4', count, fps) -> path of an index-coded video."""

    def make(name: str, count: int = 30, fps: float = 24, **kwargs):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_frames(path, index_frames(count), fps, **kwargs)
        return path

    return make


# ----------------------------------------------------------------------------- readers


@pytest.mark.parametrize("suffix", list(CONTAINERS))
def test_probe_reads_fps_frames_and_size_of_every_container(indexed, suffix):
    fps = 20 if suffix == "gif" else 24
    info = probe_video(indexed(f"clip.{suffix}", 30, fps))
    assert info.fps == pytest.approx(fps, rel=1e-3)
    assert info.num_frames == 30
    assert info.duration == pytest.approx(30 / fps, abs=0.02)
    assert (info.height, info.width) == (16, 24)


@pytest.mark.parametrize("suffix", ["mp4", "webm", "mkv", "avi", "mov"])
def test_fps_resampling_picks_the_frame_on_screen_at_each_time(indexed, suffix):
    path = indexed(f"clip.{suffix}", 30, fps=30)
    clip, times = read_clip(path, start_time=0.2, num_frames=5, fps=12)
    expected = [int(np.floor((0.2 + k / 12) * 30 + 1e-6)) for k in range(5)]  # 6, 8, 11, 13, 16
    assert frame_indices(clip) == expected
    assert times.tolist() == pytest.approx([i / 30 for i in expected], abs=1e-3)


def test_stride_reads_every_nth_frame_and_too_short_raises(indexed):
    path = indexed("clip.mp4", 30, fps=24)
    clip, times = read_clip(path, start_time=0.5, num_frames=4, stride=3)
    assert frame_indices(clip) == [12, 15, 18, 21]
    assert times.tolist() == pytest.approx([12 / 24, 15 / 24, 18 / 24, 21 / 24])
    with pytest.raises(KinemaError, match="too short"):
        read_clip(path, start_time=1.0, num_frames=4, stride=3)
    with pytest.raises(KinemaError, match="too short"):
        read_frames_at(path, [1.3])


def test_seeking_in_a_file_with_many_keyframes_matches_the_full_decode(indexed):
    path = indexed("long.mp4", 31, fps=10, gop=4)
    for start in (0.0, 0.75, 1.6, 2.2):
        clip, _ = read_clip(path, start_time=start, num_frames=5, fps=5)
        assert frame_indices(clip) == [int(np.floor((start + k / 5) * 10 + 1e-6)) for k in range(5)]
    window, times = read_window(path, 1.0, 1.5)
    assert frame_indices(window) == [10, 11, 12, 13, 14]
    previews = []
    picked, times = read_window(path, 1.0, 1.5, select=lambda p: previews.append(p) or torch.tensor([1, 4]))
    assert frame_indices(picked) == [11, 14] and times.tolist() == pytest.approx([1.1, 1.4])
    assert previews[0].shape == (1, 5, 16, 24) and frame_indices(previews[0]) == [10, 11, 12, 13, 14]


# ----------------------------------------------------------------------------- sampling and transforms


def test_uniform_starts_spread_clips_evenly_and_stay_inside():
    rng = np.random.default_rng(0)
    starts = [clip_start(1.0, 5.0, 1.0, "uniform", rng, k, 5) for k in range(5)]
    assert starts == pytest.approx([1.0, 1.75, 2.5, 3.25, 4.0])
    randoms = [clip_start(1.0, 5.0, 1.0, "random", rng) for _ in range(200)]
    assert min(randoms) >= 1.0 and max(randoms) <= 4.0 and np.std(randoms) > 0.5
    snapped = clip_start(0.0, 2.0, 1.0, "random", rng, source_fps=10)
    assert snapped * 10 == pytest.approx(round(snapped * 10))
    with pytest.raises(KinemaError, match="too short"):
        clip_start(0.0, 0.5, 1.0, "random", rng)


def test_motion_adaptive_sampling_is_denser_where_frames_change():
    frames = torch.zeros(3, 40, 8, 8)
    for t in range(20, 40):  # static first half, a flickering second half
        frames[:, t] = (t % 2) * 2 - 1.0
    indices = motion_adaptive_indices(frame_changes(frames), 8)
    assert indices.tolist() == sorted(set(indices.tolist()))
    assert (indices >= 20).sum() >= 6


def test_keyframe_sampling_picks_the_frames_that_change_most():
    frames = torch.zeros(3, 30, 8, 8)
    for start, level in ((7, 0.5), (19, -0.7), (25, 0.2)):
        frames[:, start:] = level
    assert keyframe_indices(frame_changes(frames), 4).tolist() == [0, 7, 19, 25]


def test_spatial_transform_resizes_crops_and_flips():
    video = torch.linspace(-1, 1, 40).expand(3, 2, 20, 40).contiguous()  # brightness grows to the right
    out = SpatialTransform(10, 10, crop="center")(video, np.random.default_rng(0))
    assert out.shape == (3, 2, 10, 10)
    assert out[0, 0, 0, -1] > out[0, 0, 0, 0]
    flipped = SpatialTransform(10, 10, flip=1.0)(video, np.random.default_rng(0))
    assert torch.allclose(flipped, out.flip(-1))
    random_crop = SpatialTransform(10, 10, resize=10, crop="random")
    crops = {tuple(random_crop(video, np.random.default_rng(s))[0, 0, 0, :2].tolist()) for s in range(8)}
    assert len(crops) > 1
    assert nearest_bucket(720, 1280, [(32, 32), (32, 56), (56, 32)]) == (32, 56)
    assert nearest_bucket(1000, 600, [(32, 32), (32, 56), (56, 32)]) == (56, 32)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_manifest_round_trips(tmp_path, suffix):
    rows = [{"path": "a/b.mp4", "caption": "a dog, running", "start": 0.5, "end": 2.25, "fps": 30, "label": "dog"},
            {"path": "c.webm", "caption": "12", "label": 3}]
    assert read_manifest(write_manifest(tmp_path / f"m{suffix}", rows)) == rows
    with pytest.raises(KinemaError, match="row 1"):
        write_manifest(tmp_path / f"bad{suffix}", [{"path": "x.mp4", "start": 2.0, "end": 1.0}])


# ----------------------------------------------------------------------------- the dataset


def test_class_folders_sidecar_captions_and_labels(indexed, tmp_path):
    indexed("videos/ApplyEyeMakeup/a.mp4", 24, 24)
    indexed("videos/ApplyEyeMakeup/b.mkv", 24, 24)
    indexed("videos/Jump/c.avi", 24, 24)
    (tmp_path / "videos/Jump/c.txt").write_text("someone jumps high\n")
    dataset = VideoFolder(VideoFolderConfig(root=str(tmp_path / "videos"), num_frames=4, size=8))
    assert dataset.classes == ["ApplyEyeMakeup", "Jump"]
    items = [dataset[i] for i in range(len(dataset))]
    assert [(i["caption"], int(i["label"])) for i in items] == [
        ("apply eye makeup", 0), ("apply eye makeup", 0), ("someone jumps high", 1)]
    assert items[0]["video"].shape == (3, 4, 8, 8)
    assert label_caption("Playing_Guitar") == "playing guitar"


def test_manifest_captions_times_and_every_sampling_mode(indexed, tmp_path):
    indexed("v/a.mp4", 48, 24)
    write_manifest(tmp_path / "v/list.csv", [{"path": "a.mp4", "caption": "late part", "start": 1.0, "end": 2.0}])
    for sampling in ("fixed", "motion", "keyframe"):
        config = VideoFolderConfig(manifest=str(tmp_path / "v/list.csv"), num_frames=4, size=8, fps=8,
                                   sampling=sampling, length=6)
        for item in (VideoFolder(config)[i] for i in range(6)):
            assert item["caption"] == "late part"
            assert 1.0 - 1e-6 <= item["times"][0] and item["times"][-1] < 2.0
            assert all(24 <= i < 48 for i in frame_indices(item["video"]))
    config = VideoFolderConfig(manifest=str(tmp_path / "v/list.csv"), num_frames=3, size=8, start="uniform",
                               clips_per_video=3, fps=4)
    starts = [VideoFolder(config)[i]["times"][0].item() for i in range(3)]
    write_manifest(tmp_path / "v/more.jsonl", [{"path": "a.mp4"}, {"path": "notes.pdf"}, {"path": "gone.mp4"}])
    summary = VideoFolder(VideoFolderConfig(manifest=str(tmp_path / "v/more.jsonl"), num_frames=4, size=8)).summary
    assert summary == {"usable": 1, "unsupported": 1, "missing": 1}
    room = 1.0 - (2 / 4 + 1 / 24)  # a 3-frame clip at 4 fps spans 0.5 s plus its last 24-fps frame
    assert starts == pytest.approx([np.floor((1.0 + room * k / 2) * 24 + 1e-6) / 24 for k in range(3)], abs=1e-3)


def test_bad_files_are_skipped_logged_and_counted(indexed, tmp_path, caplog):
    good = indexed("data/good.mp4", 24, 24)
    indexed("data/good2.webm", 24, 24)
    indexed("data/short.mp4", 2, 24)
    (tmp_path / "data/empty.mov").write_bytes(b"")
    (tmp_path / "data/garbage.mkv").write_bytes(b"not a video at all" * 50)
    truncated = tmp_path / "data/truncated.mp4"
    noise = np.random.default_rng(0).integers(0, 256, size=(48, 16, 24, 3), dtype=np.uint8)
    full = write_video(tmp_path / "whole.mp4", from_uint8(noise), fps=24).read_bytes()  # header first
    truncated.write_bytes(full[: len(full) // 3])
    caplog.set_level(logging.INFO, logger="kinema.data.folder")
    config = VideoFolderConfig(root=str(tmp_path / "data"), num_frames=8, size=8, start="center")
    dataset = VideoFolder(config)
    assert dataset.summary["usable"] == 3 and dataset.summary["unreadable"] == 2
    assert dataset.summary["too short"] == 1
    for name in ("short.mp4", "empty.mov", "garbage.mkv"):
        assert sum(name in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
    # the truncated file probes fine but cannot give frames 20..27: the item comes from the next video (wrapping)
    index = [e.path for e in dataset.entries].index(str(truncated))
    item = dataset[index]
    assert item["path"] == str(good)
    assert dataset.summary["failed to decode"] == 1
    assert any("truncated.mp4" in r.getMessage() for r in caplog.records)
    for name in ("good.mp4", "good2.webm"):
        (tmp_path / "data" / name).unlink()
    with pytest.raises(KinemaError, match="every video .* failed to decode"):
        VideoFolder(config)[0]
    truncated.unlink()
    with pytest.raises(KinemaError, match="no usable video"):
        VideoFolder(config)


def test_workers_give_the_same_items_and_config_builds_it(indexed, tmp_path):
    for k in range(4):
        indexed(f"w/v{k}.mp4", 24, 24)
    config = load_config(None, ["data.kind=folder", f"data.root={tmp_path / 'w'}", "data.num_frames=4",
                                "data.size=8", "data.crop=random", "data.flip=0.5", "data.length=8"]).data
    dataset = build_dataset("folder", config, seed=3)
    serial = [dataset[i]["video"] for i in range(8)]
    loader = DataLoader(dataset, batch_size=4, num_workers=2)
    parallel = torch.cat([batch["video"] for batch in loader])
    assert torch.equal(torch.stack(serial), parallel)
    assert not torch.equal(serial[0], serial[4])  # a second pass draws new clips
    with pytest.raises(KinemaError, match="sampling: unknown .sometimes."):
        load_config(None, ["data.kind=folder", "data.root=x", "data.sampling=sometimes"])


def test_buckets_keep_aspect_and_batch_by_size(tmp_path):
    for name, (height, width) in {"wide.mp4": (16, 32), "tall.mp4": (32, 16), "wide2.mp4": (18, 32)}.items():
        write_frames(tmp_path / name, index_frames(16, height, width), 24)
    config = VideoFolderConfig(root=str(tmp_path), num_frames=2, buckets=[(8, 16), (16, 8)], length=12)
    dataset = VideoFolder(config)
    shapes = {dataset[i]["path"].rsplit("/", 1)[-1]: dataset[i]["video"].shape[-2:] for i in range(3)}
    assert shapes == {"tall.mp4": (16, 8), "wide.mp4": (8, 16), "wide2.mp4": (8, 16)}
    sampler = BucketBatchSampler(dataset, batch_size=2, seed=0)
    batches = list(DataLoader(dataset, batch_sampler=sampler))
    assert len(batches) == len(sampler) == 6
    assert all(len({tuple(v.shape) for v in batch["video"]}) == 1 for batch in batches)


def test_manifest_paths_resolve_beside_the_manifest_then_under_root_and_missing_files_are_named(indexed, tmp_path):
    indexed("prepped/clips/a.mp4", 24, 24)  # beside the manifest, as `kinema prep` writes it
    indexed("dataset/Run/b.mp4", 24, 24)  # a hand-written list relative to the dataset root
    write_manifest(tmp_path / "prepped/manifest.jsonl", [{"path": "clips/a.mp4"}, {"path": "Run/b.mp4"}])
    config = VideoFolderConfig(manifest=str(tmp_path / "prepped/manifest.jsonl"), root=str(tmp_path / "dataset"),
                               num_frames=4, size=8)
    assert [e.path for e in VideoFolder(config).entries] == [str(tmp_path / "prepped/clips/a.mp4"),
                                                            str(tmp_path / "dataset/Run/b.mp4")]
    write_manifest(tmp_path / "prepped/stale.jsonl", [{"path": "clips/gone.mp4", "fps": 24, "end": 1.0,
                                                       "width": 24, "height": 16}])
    with pytest.raises(KinemaError, match=r"no usable video .*1 missing.*clips/gone.mp4"):
        VideoFolder(VideoFolderConfig(manifest=str(tmp_path / "prepped/stale.jsonl"), root=str(tmp_path / "dataset"),
                                      num_frames=4, size=8))
