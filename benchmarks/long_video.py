"""Long videos at flat memory (kinema.pipelines.long_video): peak memory and seconds per frame by length, drift,
time-anchored prompt colour accuracy and streaming latency, for the window and FIFO modes. Prints a table, writes JSON.

Every video is made in a freshly spawned process that loads the model, then consumes the frame generator keeping only
per-frame statistics (ball detections from kinema.metrics.balls, mean brightness), so the process's peak memory is the
pipeline's own. Measured per video:
- peak MB: the process's peak resident memory (CPU: ru_maxrss; CUDA: max_memory_allocated); added MB: that peak minus
  the footprint after the model (and its text encoder) is loaded;
- s/frame: wall time over the frames; first s: time to the first frame; frames/s: the rate after the first frame;
- drift-free: over the first and the last `--segment` frames (at most half the video each), the most common ball count
  and colour set are the same and the mean brightness is within 10%; plus count and colour constancy of the tracks
  over the whole video (kinema.metrics.physics.identity_scores);
- anchored accuracy: for "first a C1 ball bounces, then a C2 ball bounces", the share of the frames of each phrase's
  range (outside the cross-fade at the join) in which the colours seen are exactly the colour asked.

    python benchmarks/long_video.py                                          # full run, the shipped frames model
    python benchmarks/long_video.py --frames 16 32 --drift-videos 0 --anchored-videos 1 --anchored-frames 32 \\
        --steps 4 --json /tmp/long_video_smoke.json                                                   # smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from kinema.data.physics_balls import BALL_COLORS
from kinema.metrics.balls import detect_balls, link_detections
from kinema.metrics.physics import identity_scores
from kinema.pipelines.long_video import generate_long, throughput, timed
from kinema.pipelines.text_to_video import TextToVideoPipeline

RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
COLOUR_PAIRS = [("red", "blue"), ("green", "yellow"), ("white", "magenta"), ("cyan", "orange")]
PALETTE = list(BALL_COLORS)  # names of detect_balls' labels
DRIFT_PROMPTS = ["a red ball bounces", "a green ball and a blue ball bounce", "a yellow ball bounces to the left",
                 "a magenta ball and a cyan ball bounce"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="model or checkpoint (default: the shipped frames model)")
    parser.add_argument("--modes", nargs="+", default=["window", "fifo"], choices=["window", "fifo"])
    parser.add_argument("--frames", nargs="+", type=int, default=[16, 64, 256, 1024], help="lengths to time")
    parser.add_argument("--drift-videos", type=int, default=4, help="extra videos per mode for the drift rate")
    parser.add_argument("--drift-frames", type=int, default=256, help="length of the extra drift videos")
    parser.add_argument("--segment", type=int, default=64, help="frames compared at the start and the end")
    parser.add_argument("--anchored-videos", type=int, default=4, help="'first C1, then C2' videos per mode")
    parser.add_argument("--anchored-frames", type=int, default=64)
    parser.add_argument("--window", type=int, default=None, help="frames per model call (default: the model's)")
    parser.add_argument("--overlap", type=int, default=None, help="window mode overlap (default: half the window)")
    parser.add_argument("--partitions", type=int, default=2, help="fifo mode: windows in the queue")
    parser.add_argument("--steps", type=int, default=None, help="window mode sampler steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="default: the model's")
    parser.add_argument("--direction-guidance", type=float, default=None, help="default: the model's")
    parser.add_argument("--identity-guidance", type=float, default=None, help="default: the model's")
    parser.add_argument("--retries", type=int, default=2, help="window mode: re-samplings of a window that loses a "
                        "named ball")
    parser.add_argument("--seed-offset", type=int, default=0, help="added to every video's seed (a second set of "
                        "videos)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads in each measuring process")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/long_video.json"))
    return parser.parse_args(argv)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT / 2**20


def make_video(args: argparse.Namespace, mode: str, frames: int, prompt, seed: int) -> dict:
    """One video of `frames` frames made frame by frame: its per-frame statistics, timings and peak memory."""
    pipe = TextToVideoPipeline.from_pretrained(args.checkpoint, device=args.device, frames=True)
    if pipe.text_encoder is not None:
        pipe.text_encoder.encode(["warm up"])
    loaded = _peak_mb(pipe.device)
    made = generate_long(pipe, prompt, frames, mode=mode, window=args.window, overlap=args.overlap,
                         partitions=args.partitions, steps=args.steps, guidance=args.guidance,
                         direction_guidance=args.direction_guidance, identity_guidance=args.identity_guidance,
                         retries=args.retries, seed=seed)
    detections, brightness, seconds = [], [], []
    for frame, elapsed in timed(made):
        seconds.append(elapsed)
        detections.append(detect_balls(frame))
        brightness.append(float(((frame + 1) / 2).mean()))
    peak = _peak_mb(pipe.device)
    first, rate = throughput(seconds)
    identity = identity_scores(link_detections(detections, (pipe.spec.height, pipe.spec.width)))
    return {"mode": mode, "frames": frames, "prompt": prompt, "seed": seed, "peak_mb": peak, "added_mb": peak - loaded,
            "s_per_frame": seconds[-1] / frames, "first_frame_s": first, "frames_per_s": rate,
            "count_constancy": identity["count_constancy"], "color_constancy": identity["color_constancy"],
            "counts": [len(d.labels) for d in detections], "brightness": brightness,
            "colours": [[PALETTE[label] for label in sorted(d.labels.tolist())] for d in detections]}


def _make_video_with_threads(args: argparse.Namespace, *video) -> dict:
    torch.set_num_threads(args.threads)
    return make_video(args, *video)


def in_fresh_process(args: argparse.Namespace, mode: str, frames: int, prompt, seed: int) -> dict:
    """`make_video` in a newly spawned interpreter with `args.threads` torch threads, so that its peak memory is its
    own."""
    print(f"{mode}: {frames} frames of {prompt!r} (seed {seed})", file=sys.stderr)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_make_video_with_threads, args, mode, frames, prompt, seed).result()


def _most_common(items: list) -> object:
    return Counter(repr(item) for item in items).most_common(1)[0][0]


def drift(video: dict, segment: int) -> dict:
    """Ball count, colours and brightness of the first vs the last `segment` frames (at most half the video)."""
    k = max(1, min(segment, video["frames"] // 2))
    head, tail = slice(0, k), slice(video["frames"] - k, video["frames"])
    bright = [float(np.mean(video["brightness"][part])) for part in (head, tail)]
    same_count = _most_common(video["counts"][head]) == _most_common(video["counts"][tail])
    same_colours = _most_common(video["colours"][head]) == _most_common(video["colours"][tail])
    brightness_change = abs(bright[1] - bright[0]) / bright[0]
    return {"same_count": same_count, "same_colours": same_colours, "brightness_change": brightness_change,
            "drift_free": same_count and same_colours and brightness_change <= 0.1}


def anchored_accuracy(video: dict, colours: tuple[str, str], blend: int = 4) -> list[float]:
    """Per phrase, the share of its frames (outside the cross-fade) whose colours seen are exactly the one asked."""
    join = video["frames"] // 2
    ranges = [range(0, join - blend // 2), range(join + blend // 2, video["frames"])]
    return [float(np.mean([video["colours"][t] == [colour] for t in frames])) if len(frames) else float("nan")
            for colour, frames in zip(colours, ranges)]


def run(args: argparse.Namespace) -> dict:
    """Every measurement: {"lengths": rows by mode and length, "drift": rows, "anchored": rows, "summary": ...}."""
    lengths, drifts, anchored = [], [], []
    for mode in args.modes:
        for frames in args.frames:
            video = in_fresh_process(args, mode, frames, DRIFT_PROMPTS[0], args.seed_offset)
            lengths.append(video)
            drifts.append(video)
        for i in range(args.drift_videos):
            drifts.append(in_fresh_process(args, mode, args.drift_frames, DRIFT_PROMPTS[i % len(DRIFT_PROMPTS)],
                                           args.seed_offset + i + 1))
        for i in range(args.anchored_videos):
            pair = COLOUR_PAIRS[i % len(COLOUR_PAIRS)]
            prompt = f"first a {pair[0]} ball bounces, then a {pair[1]} ball bounces"
            video = in_fresh_process(args, mode, args.anchored_frames, prompt, args.seed_offset + i)
            anchored.append({**video, "asked": pair, "accuracy": anchored_accuracy(video, pair)})
    for video in drifts:
        video.update(drift(video, args.segment))
    for video in drifts + anchored:  # the per-frame statistics are read; the JSON keeps the results
        for key in ("counts", "colours", "brightness"):
            video.pop(key, None)
    return {"lengths": lengths, "drift": drifts, "anchored": anchored,
            "summary": summary(args, lengths, drifts, anchored)}


def summary(args: argparse.Namespace, lengths: list[dict], drifts: list[dict], anchored: list[dict]) -> dict:
    """Per mode: peak memory longest / shortest, s/frame spread from 64 frames on, drift-free and anchored rates."""
    out = {}
    for mode in args.modes:
        rows = sorted((r for r in lengths if r["mode"] == mode), key=lambda r: r["frames"])
        timed_rows = [r["s_per_frame"] for r in rows if r["frames"] >= min(64, rows[-1]["frames"])]
        drift_rows = [r for r in drifts if r["mode"] == mode]
        anchored_rows = [a for r in anchored if r["mode"] == mode for a in r["accuracy"]]
        out[mode] = {
            "peak_ratio_longest_vs_shortest": rows[-1]["peak_mb"] / rows[0]["peak_mb"],
            "added_mb_shortest_longest": [rows[0]["added_mb"], rows[-1]["added_mb"]],
            "s_per_frame_max_over_min": max(timed_rows) / min(timed_rows),
            "drift_free_rate": float(np.mean([r["drift_free"] for r in drift_rows])),
            "anchored_accuracy": float(np.mean(anchored_rows)) if anchored_rows else float("nan"),
            "anchored_ranges_at_least_80": float(np.mean([a >= 0.8 for a in anchored_rows])) if anchored_rows
            else float("nan"),
            "first_frame_s": float(np.mean([r["first_frame_s"] for r in rows])),
            "frames_per_s": float(np.nanmean([r["frames_per_s"] for r in rows])),
        }
    return out


def table(report: dict) -> str:
    lines = ["| mode | frames | peak MB | added MB | s/frame | first frame s | frames/s | drift-free |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["lengths"]:
        lines.append(f"| {r['mode']} | {r['frames']} | {r['peak_mb']:.0f} | {r['added_mb']:.1f} | "
                     f"{r['s_per_frame']:.3f} | {r['first_frame_s']:.2f} | {r['frames_per_s']:.2f} | "
                     f"{'yes' if r['drift_free'] else 'no'} |")
    lines += ["", "| mode | peak longest / shortest | s/frame max / min (>= 64 frames) | drift-free videos | "
              "anchored colour accuracy | ranges >= 80% |", "|---|---:|---:|---:|---:|---:|"]
    for mode, s in report["summary"].items():
        lines.append(f"| {mode} | {s['peak_ratio_longest_vs_shortest']:.3f} | {s['s_per_frame_max_over_min']:.3f} | "
                     f"{s['drift_free_rate']:.0%} | {s['anchored_accuracy']:.0%} | "
                     f"{s['anchored_ranges_at_least_80']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    report = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, **run(args)}
    print(table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
