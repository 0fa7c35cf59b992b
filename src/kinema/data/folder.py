"""Video-folder dataset: a tree of video files (any readable container) or a manifest, sampled into clips (11.1.4).

Captions come from the manifest, else a sidecar `.txt` beside the video, else the class name;
labels from the manifest's `label` column or the first sub-folder under `root` (the UCF-101 layout).
Relative manifest paths resolve against the manifest's folder (where `kinema prep` writes them
from), else against `root`. Every file's header is probed once up front; a file that is missing,
cannot be opened, has no video stream, has an unsupported suffix or is too short for one clip is
skipped with one log line and counted in `summary`, and so is every other file under `root` (a
sidecar caption excepted). A file that fails later while decoding (e.g. truncated) is skipped the
same way and the item is taken from the next video, so training never stops; only a dataset without
a single usable video raises, naming the first file it skipped. Items are deterministic in (seed, index): a worker process needs no shared state.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kinema.data.manifest import read_manifest
from kinema.data.sampling import (
    SAMPLING_MODES,
    START_MODES,
    clip_span,
    clip_start,
    frame_changes,
    keyframe_indices,
    motion_adaptive_indices,
)
from kinema.data.transforms import CROP_MODES, SpatialTransform, nearest_bucket
from kinema.errors import KinemaError
from kinema.video.io import READABLE_SUFFIXES, probe_video, read_clip, read_frames_at, read_window

CAPTION_SUFFIX = ".txt"  # a sidecar caption beside a video: clip.mp4 -> clip.txt

log = logging.getLogger(__name__)


@dataclass
class VideoFolderConfig:
    """Where the videos are and how clips are cut from them (`data.kind: folder`)."""

    root: str = ""  # folder scanned recursively; with a manifest, where relative paths not beside it are looked up
    manifest: str = ""  # .jsonl or .csv with path, caption, start, end, fps, label (e.g. from `kinema prep`)
    num_frames: int = 8  # T
    size: int = 32  # square output side, used when `buckets` is empty
    fps: float = 0.0  # resample to this frame rate by timestamp; 0 = keep the source rate (see stride)
    stride: int = 1  # with fps = 0: take every stride-th source frame
    sampling: str = "fixed"  # fixed | motion (denser where frames change) | keyframe (largest changes)
    start: str = "random"  # random | uniform (clips spread evenly) | center
    clips_per_video: int = 1  # distinct clips per video in one pass
    length: int = 0  # items in the dataset; 0 = one pass (videos x clips_per_video), more = fresh random draws
    adaptive_span: float = 2.0  # motion / keyframe: window length in units of a fixed-rate clip's span
    resize: int = 0  # shorter side before cropping; 0 = the smallest resize that covers the crop
    crop: str = "center"  # center | random
    buckets: list[tuple[int, int]] = field(default_factory=list)  # output sizes [H, W]; nearest aspect wins
    flip: float = 0.0  # horizontal flip probability
    label_captions: bool = True  # caption a video without one by its class ("ApplyEyeMakeup" -> "apply eye makeup")

    def __post_init__(self):
        self.buckets = [tuple(int(v) for v in bucket) for bucket in self.buckets]
        name = type(self).__name__
        if not self.root and not self.manifest:
            raise KinemaError(f"{name}: set data.root (a folder of videos) or data.manifest (a .jsonl/.csv file)")
        for key in ("num_frames", "size", "stride", "clips_per_video"):
            if getattr(self, key) < 1:
                raise KinemaError(f"{name}.{key} must be >= 1, got {getattr(self, key)}")
        for key, value in (("fps", self.fps), ("length", self.length), ("resize", self.resize)):
            if value < 0:
                raise KinemaError(f"{name}.{key} must be >= 0, got {value}")
        for key, value, choices in (("sampling", self.sampling, SAMPLING_MODES), ("start", self.start, START_MODES),
                                    ("crop", self.crop, CROP_MODES)):
            if value not in choices:
                raise KinemaError(f"{name}.{key}: unknown '{value}' (choose from {', '.join(choices)})")
        if any(len(b) != 2 or min(b) < 1 for b in self.buckets):
            raise KinemaError(f"{name}.buckets must be [height, width] pairs >= 1, got {self.buckets}")
        if not 0.0 <= self.flip <= 1.0:
            raise KinemaError(f"{name}.flip must be a probability in [0, 1], got {self.flip}")
        if self.adaptive_span < 1.0:
            raise KinemaError(f"{name}.adaptive_span must be >= 1, got {self.adaptive_span}")


@dataclass(frozen=True)
class VideoEntry:
    """One usable video or shot: where it is, which seconds to use, its caption and label index (-1: none)."""

    path: str
    caption: str
    label: int
    fps: float  # source frame rate
    start: float  # seconds from the first frame
    end: float
    height: int
    width: int


def video_files(root: Path) -> tuple[list[Path], list[Path]]:
    """Files under `root` (recursively, sorted): (videos by suffix, every other file except sidecar captions)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    videos = [p for p in files if p.suffix.lower() in READABLE_SUFFIXES]
    stems = {p.with_suffix("") for p in videos}
    others = [p for p in files if p.suffix.lower() not in READABLE_SUFFIXES
              and not (p.suffix.lower() == CAPTION_SUFFIX and p.with_suffix("") in stems)]
    return videos, others


def label_caption(name: str) -> str:
    """A class folder name as words: 'ApplyEyeMakeup' / 'apply_eye_makeup' -> 'apply eye makeup'."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ")
    return " ".join(words.lower().split())


class VideoFolder(Dataset):
    """Clips `{"video" [C,T,H,W], "caption", "label", "fps", "times", "path"}` from a video folder or manifest."""

    def __init__(self, config: VideoFolderConfig, seed: int = 0):
        self.config = config
        self.seed = seed
        self.summary: Counter[str] = Counter()  # "usable" and one count per reason a file was skipped
        self._first_error = ""  # the first skip message, for the error when nothing is usable
        rows, bases = self._rows()
        names = sorted({str(r["label"]) for r in rows if r.get("label") is not None})
        self.numeric_labels = bool(names) and all(re.fullmatch(r"\d+", n) for n in names)
        self.classes: list[str] = [] if self.numeric_labels else names  # label index -> class name
        self.entries: list[VideoEntry] = []
        for row in rows:
            entry = self._entry(row, bases)
            if entry is not None:
                self.entries.append(entry)
        self.summary["usable"] = len(self.entries)
        source = config.manifest or config.root
        skipped = {k: v for k, v in self.summary.items() if k != "usable"}
        if not self.entries:
            first = f"; first: {self._first_error}" if self._first_error else ""
            raise KinemaError(f"no usable video in {source}: {len(rows)} found, all skipped "
                              f"({', '.join(f'{v} {k}' for k, v in skipped.items()) or 'none found'}){first}")
        log.log(logging.WARNING if skipped else logging.INFO, "video folder %s: %d usable, %d skipped %s", source,
                len(self.entries), sum(skipped.values()), dict(skipped) if skipped else "")
        self._failed: set[int] = set()  # entries that failed while decoding, in this process

    # ---------------------------------------------------------------- building the index

    def _rows(self) -> tuple[list[dict], list[Path]]:
        """Manifest rows (status 'ok' only), or one row per video file found under root; and the path bases."""
        config = self.config
        if config.manifest:
            manifest = Path(config.manifest)
            rows = [r for r in read_manifest(manifest) if r.get("status", "ok") == "ok"]
            return rows, [manifest.parent] + ([Path(config.root)] if config.root else [])
        root = Path(config.root)
        if not root.is_dir():
            raise KinemaError(f"config key 'data.root': not a folder: {root}")
        videos, others = video_files(root)
        for path in others:
            log.warning("skipping %s: not a video file (suffix %r)", path, path.suffix or "(none)")
        if others:
            self.summary["not a video"] = len(others)
        rows = []
        for path in videos:
            relative = path.relative_to(root)
            row = {"path": str(relative)}
            if len(relative.parts) > 1:
                row["label"] = relative.parts[0]
            rows.append(row)
        return rows, [root]

    def _skip(self, path: str, reason: str, error: str) -> None:
        log.warning("skipping %s: %s", path, error)
        self.summary[reason] += 1
        self._first_error = self._first_error or f"{path}: {error}"

    def _entry(self, row: dict, bases: list[Path]) -> VideoEntry | None:
        """Resolve and check one row: probe the file unless the row knows fps, end and size; None if skipped."""
        path = Path(row["path"])
        if not path.is_absolute():
            path = next((base / path for base in bases if (base / path).exists()), bases[0] / path)
        if path.suffix.lower() not in READABLE_SUFFIXES:
            self._skip(str(path), "unsupported", f"unsupported suffix {path.suffix!r}")
            return None
        if not path.is_file():
            where = "" if Path(row["path"]).is_absolute() else f" (relative to {' or '.join(map(str, bases))})"
            self._skip(str(path), "missing", f"video file not found: {row['path']}{where}")
            return None
        known = all(row.get(k) for k in ("fps", "end", "width", "height"))
        try:
            info = None if known else probe_video(path)
        except KinemaError as error:
            self._skip(str(path), "unreadable", str(error))
            return None
        fps = float(row.get("fps") or info.fps)
        start = float(row.get("start") or 0.0)
        end = float(row.get("end") or info.duration)
        height, width = (int(row["height"]), int(row["width"])) if known else (info.height, info.width)
        span = self._span(fps)
        if end - start < span - 1e-9:
            frames = round((end - start) * fps)
            self._skip(str(path), "too short", f"too short: {frames} frames at {fps:g} fps, a clip needs "
                       f"{math.ceil(span * fps - 1e-6)}")
            return None
        label = row.get("label")
        if label is None:
            label_index = -1
        else:
            label_index = int(label) if self.numeric_labels else self.classes.index(str(label))
        caption = row.get("caption")
        if caption is None:
            sidecar = path.with_suffix(CAPTION_SUFFIX)
            if sidecar.is_file():
                caption = sidecar.read_text(encoding="utf-8").strip()
            elif label is not None and self.config.label_captions:
                caption = label_caption(str(label))
        return VideoEntry(str(path), caption or "", label_index, fps, start, end, height, width)

    def _span(self, fps: float) -> float:
        """Seconds a clip needs at source rate `fps` (a motion / keyframe window is `adaptive_span` times longer)."""
        config = self.config
        span = clip_span(config.num_frames, fps, config.fps, config.stride)
        if config.sampling != "fixed":
            span = max(span * config.adaptive_span, config.num_frames / fps)
        return span

    # ---------------------------------------------------------------- items

    def __len__(self) -> int:
        return self.config.length or len(self.entries) * self.config.clips_per_video

    def output_size(self, entry: VideoEntry) -> tuple[int, int]:
        """(H, W) of this entry's clips: the nearest aspect bucket, or size x size."""
        if self.config.buckets:
            return nearest_bucket(entry.height, entry.width, self.config.buckets)
        return self.config.size, self.config.size

    def bucket_of(self, index: int) -> tuple[int, int]:
        """Output size of item `index` (what a bucketed batch sampler groups by)."""
        return self.output_size(self.entries[self._entry_index(index)])

    def _entry_index(self, index: int) -> int:
        return (index % (len(self.entries) * self.config.clips_per_video)) // self.config.clips_per_video

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"VideoFolder index {index} out of range [0, {len(self)})")
        first = self._entry_index(index)
        error = None
        for offset in range(len(self.entries)):  # a video that fails to decode hands over to the next one
            number = (first + offset) % len(self.entries)
            if number in self._failed:
                continue
            entry = self.entries[number]
            try:
                return self._item(entry, index)
            except KinemaError as failure:
                error = failure
                self._failed.add(number)
                self._skip(entry.path, "failed to decode", str(error))
        raise KinemaError(f"every video in {self.config.manifest or self.config.root} failed to decode; "
                          f"last: {error}")

    def _item(self, entry: VideoEntry, index: int) -> dict:
        """Sample, decode and transform one clip of `entry` (randomness from (seed, index))."""
        config = self.config
        rng = np.random.default_rng([self.seed, index])
        clip_index = index % config.clips_per_video
        span = self._span(entry.fps)
        grid = entry.fps if config.fps == 0 else None
        start = clip_start(entry.start, entry.end, span, config.start, rng, clip_index, config.clips_per_video, grid)
        if config.sampling == "fixed" and config.fps > 0:
            video, times = read_frames_at(entry.path, [start + k / config.fps for k in range(config.num_frames)])
        elif config.sampling == "fixed":
            video, times = read_clip(entry.path, start, config.num_frames, stride=config.stride)
        else:
            pick = motion_adaptive_indices if config.sampling == "motion" else keyframe_indices
            video, times = read_window(entry.path, start, min(start + span, entry.end),
                                       select=lambda previews: pick(frame_changes(previews), config.num_frames))
        height, width = self.output_size(entry)
        transform = SpatialTransform(height, width, config.resize, config.crop, config.flip)
        duration = float(times[-1] - times[0])
        fps = (len(times) - 1) / duration if duration > 0 else entry.fps
        return {
            "video": transform(video, rng),
            "caption": entry.caption,
            "label": torch.tensor(entry.label),
            "fps": torch.tensor(config.fps or fps, dtype=torch.float32),
            "times": times.float(),
            "path": entry.path,
        }

