"""`kinema prep`: scan a video folder, split videos into shots, score and filter them, write a manifest.

Chapter 11.1.4 ("数据预处理", quality control). For each file: probe it, decode it once (small copies
for cut detection and optical flow, full-size grey frames a few times per second for sharpness and
blockiness), split it at scene cuts, score each shot and apply the thresholds. `OUT/manifest.jsonl`
gets one line per shot (status `ok`, or `filtered` with the reason) and one per bad file (status
`bad` with the reason); `VideoFolder` reads the `ok` lines. Files run in parallel processes; each
finished file's lines are appended at once, so an interrupted run loses no finished work, and a
rerun re-analyses only new or changed files (thresholds are re-applied to the stored scores).
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kinema.atomic import write_text_atomic
from kinema.data import quality
from kinema.data.folder import video_files
from kinema.data.manifest import write_manifest
from kinema.data.scenes import CutDetector, split_shots
from kinema.errors import KinemaError
from kinema.video.io import decode_frames, probe_video

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
SETTINGS = "prep.json"


@dataclass
class PrepOptions:
    """Analysis settings (a change re-analyses every file) and filter thresholds (0 = off for the optional ones)."""

    cut_threshold: float = 3.0  # a cut changes this many times more than the frames around it
    cut_min_change: float = 0.1  # and at least this much (colour-histogram distance in (0, 1])
    analysis_width: int = 128  # width of the small copies used for cuts and optical flow
    score_rate: float = 4.0  # frames per second scored for sharpness, brightness, motion, blockiness
    min_shot_seconds: float = 1.0  # shorter shots are filtered
    min_sharpness: float = 0.0  # variance of the Laplacian; below = blurred
    min_motion: float = 0.0  # frame widths per second; below = static
    max_motion: float = 0.0  # above = shaky or chaotic
    min_brightness: float = 0.05  # mean grey level in [0, 1]
    max_brightness: float = 0.95
    max_blockiness: float = 0.0  # block-edge step ratio; above = compression artifacts

    def __post_init__(self):
        if not self.cut_threshold > 1.0:
            raise KinemaError(f"--cut-threshold must be > 1 (a ratio of frame changes), got {self.cut_threshold}")
        if not 0.0 < self.cut_min_change <= 1.0:
            raise KinemaError(f"--cut-min-change must be in (0, 1], got {self.cut_min_change}")
        if self.analysis_width < 16 or self.score_rate <= 0:
            raise KinemaError(f"need analysis width >= 16 and score rate > 0, got {self.analysis_width}, "
                              f"{self.score_rate}")
        if not 0.0 <= self.min_brightness <= self.max_brightness <= 1.0:
            raise KinemaError(f"need 0 <= --min-brightness <= --max-brightness <= 1, got {self.min_brightness}, "
                              f"{self.max_brightness}")
        for key in ("min_shot_seconds", "min_sharpness", "min_motion", "max_motion", "max_blockiness"):
            if getattr(self, key) < 0:
                raise KinemaError(f"--{key.replace('_', '-')} must be >= 0, got {getattr(self, key)}")

    def analysis(self) -> dict:
        """The settings that change what is measured (not what is kept)."""
        return {"cut_threshold": self.cut_threshold, "cut_min_change": self.cut_min_change,
                "analysis_width": self.analysis_width,
                "score_rate": self.score_rate}


def filter_reason(row: dict, options: PrepOptions) -> str:
    """Every reason why a measured shot fails the thresholds, joined by '; ' ('' if it passes)."""
    scores, seconds = row["scores"], row["end"] - row["start"]
    checks = [
        (seconds < options.min_shot_seconds, f"shot too short ({seconds:.2f} s < {options.min_shot_seconds:g})"),
        (scores["sharpness"] < options.min_sharpness, f"blurred (sharpness {scores['sharpness']:.1f} < "
                                                      f"{options.min_sharpness:g})"),
        (scores["motion"] < options.min_motion, f"static (motion {scores['motion']:.4f} < {options.min_motion:g})"),
        (options.max_motion > 0 and scores["motion"] > options.max_motion,
         f"too much motion ({scores['motion']:.3f} > {options.max_motion:g})"),
        (scores["brightness"] < options.min_brightness, f"too dark (brightness {scores['brightness']:.3f})"),
        (scores["brightness"] > options.max_brightness, f"too bright (brightness {scores['brightness']:.3f})"),
        (options.max_blockiness > 0 and scores["blockiness"] > options.max_blockiness,
         f"compression artifacts (blockiness {scores['blockiness']:.2f} > {options.max_blockiness:g})"),
    ]
    return "; ".join(reason for failed, reason in checks if failed)


def _shot_scores(scored: list[tuple[int, dict]], start: int, end: int) -> dict:
    """Mean scores over the scored frames of [start, end) (motion only from pairs inside the shot)."""
    inside = [values for index, values in scored if start <= index < end]
    if not inside:
        return {"sharpness": 0.0, "brightness": 0.0, "motion": 0.0, "blockiness": 1.0}
    moving = [v["motion"] for i, v in scored if start < i < end and "motion" in v]
    return {
        "sharpness": float(np.mean([v["sharpness"] for v in inside])),
        "brightness": float(np.mean([v["brightness"] for v in inside])),
        "motion": float(np.mean(moving)) if moving else 0.0,
        "blockiness": float(np.mean([v["blockiness"] for v in inside])),
    }


def analyse_video(path: str, options: PrepOptions) -> list[dict]:
    """Shots of one video with times, frames and scores (unfiltered), or one row with status 'bad' and the reason."""
    try:
        info = probe_video(path)
    except KinemaError as error:
        return [{"path": path, "status": "bad", "reason": str(error)}]
    timestamps, cuts, scored = [], [], []
    every = max(1, round(info.fps / options.score_rate))
    width = min(options.analysis_width, info.width)
    height = max(2, round(info.height * width / info.width / 2) * 2)
    detector = CutDetector(options.cut_threshold, options.cut_min_change)
    pending: deque = deque()  # frames whose cut status is not yet known (the detector looks ahead)
    previous = None  # grey small copy of the frame before the one being scored

    def score(index: int, frame, small: np.ndarray) -> None:
        """Score frame `index` every `every` frames from its shot's start (motion only from pairs inside it)."""
        nonlocal previous
        shot_start = max((cut for cut in cuts if cut <= index), default=0)
        small_grey = quality.grey(small)
        if (index - shot_start) % every == 1 % every:
            coded = frame.to_ndarray(format="gray")  # blocks sit on the coded pixel grid
            shown = coded if info.sample_aspect == 1 else frame.to_ndarray(
                width=info.width, height=info.height, format="gray")
            values = {"sharpness": quality.sharpness(shown), "brightness": quality.brightness(shown),
                      "blockiness": quality.blockiness(coded)}
            if index > shot_start and previous is not None:
                values["motion"] = quality.motion(previous, small_grey, info.fps)
            scored.append((index, values))
        previous = small_grey

    try:
        for index, (stamp, frame) in enumerate(decode_frames(path)):
            timestamps.append(stamp)
            small = frame.to_ndarray(width=width, height=height, format="rgb24")
            cuts.extend(detector.update(small))
            pending.append((index, frame, small))
            while pending[0][0] <= index - detector.window:
                score(*pending.popleft())
        cuts.extend(detector.finish())
        while pending:
            score(*pending.popleft())
    except KinemaError as error:  # the decoder gave up: a damaged or truncated file
        reason = str(error) if not timestamps else (
            f"truncated: decoding failed after {len(timestamps)} frames ({timestamps[-1]:.2f} s): {error}")
        return [{"path": path, "status": "bad", "reason": reason}]
    if not timestamps:
        return [{"path": path, "status": "bad", "reason": f"no frame could be decoded from {path}"}]
    ends = timestamps[1:] + [timestamps[-1] + 1.0 / info.fps]
    rows = []
    for start, end in split_shots(len(timestamps), cuts):
        rows.append({
            "path": path, "status": "ok", "start": round(timestamps[start], 6), "end": round(ends[end - 1], 6),
            "start_frame": start, "end_frame": end, "fps": info.fps, "width": info.width, "height": info.height,
            "codec": info.codec, "scores": _shot_scores(scored, start, end),
        })
    return rows


def scan_videos(src: Path) -> tuple[list[Path], list[Path]]:
    """(video files, other files) under `src`, recursively and sorted; the others (not sidecar captions) are logged."""
    if not src.is_dir():
        raise KinemaError(f"prep: source is not a folder: {src}")
    videos, others = video_files(src)
    for path in others:
        log.warning("prep: skipping %s: not a video file (suffix %r)", path, path.suffix or "(none)")
    return videos, others


def _read_previous(manifest: Path) -> list[dict]:
    """Rows of an earlier run's manifest; a line cut short by a crash is ignored."""
    if not manifest.is_file():
        return []
    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _finish_rows(rows: list[dict], file: Path, src: Path, out: Path, options: PrepOptions) -> list[dict]:
    """Add path relative to OUT, caption, label and the file's identity to a file's rows; apply the thresholds."""
    stat = file.stat()
    relative = file.relative_to(src)
    sidecar = file.with_suffix(".txt")
    caption = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else None
    finished = []
    for row in rows:
        row = {**row, "path": os.path.relpath(file, out), "file_size": stat.st_size, "file_mtime_ns": stat.st_mtime_ns}
        if caption is not None:
            row["caption"] = caption
        if len(relative.parts) > 1:
            row["label"] = relative.parts[0]
        if row["status"] != "bad":
            reason = filter_reason(row, options)
            row["status"], row["reason"] = ("filtered", reason) if reason else ("ok", "")
        finished.append(row)
    return finished


def prepare(src: str | os.PathLike, out: str | os.PathLike, options: PrepOptions | None = None, workers: int = 1,
            progress: bool = True) -> dict[str, int]:
    """Analyse every video under `src` into `out/manifest.jsonl`; returns counts of files and shots by status."""
    src, out = Path(src).resolve(), Path(out).resolve()
    options = options or PrepOptions()
    files, others = scan_videos(src)
    out.mkdir(parents=True, exist_ok=True)
    manifest, settings = out / MANIFEST, out / SETTINGS
    same_analysis = settings.is_file() and json.loads(settings.read_text()).get("analysis") == options.analysis()
    previous: dict[str, list[dict]] = {}
    for row in _read_previous(manifest) if same_analysis else []:
        previous.setdefault(row["path"], []).append(row)
    kept, todo = [], []
    for file in files:
        rows = previous.get(os.path.relpath(file, out), [])
        stat = file.stat()
        if rows and all(r.get("file_size") == stat.st_size and r.get("file_mtime_ns") == stat.st_mtime_ns
                        for r in rows):
            kept.extend(_finish_rows(rows, file, src, out, options))
        else:
            todo.append(file)
    write_manifest(manifest, kept)
    write_text_atomic(settings, json.dumps({"analysis": options.analysis(), "options": asdict(options)}, indent=2))
    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc="prep", unit="file", disable=not progress)
    with open(manifest, "a", encoding="utf-8") as sink:
        def record(file: Path, rows: list[dict]) -> None:
            rows = _finish_rows(rows, file, src, out, options)
            sink.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            sink.flush()
            kept.extend(rows)
            bar.update(1)

        if workers <= 1:
            for file in todo:
                record(file, analyse_video(str(file), options))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(analyse_video, str(file), options): file for file in todo}
                for future in as_completed(futures):
                    record(futures[future], future.result())
    bar.close()
    kept.sort(key=lambda r: (r["path"], r.get("start", 0.0)))
    write_manifest(manifest, kept)
    counts = {"files": len(files), "analysed": len(todo), "skipped": len(others)}
    for row in kept:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts
