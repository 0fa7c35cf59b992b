"""Many objects on their own paths (issue: each object's own error, kept distances, identity). Prints a table, writes JSON.

Paths: `kinema.control.multi_object.avoiding_paths` (K balls each crossing the frame through the centre, never two
closer than their radii), each ball given a colour and named in the prompt ("a red ball and a blue ball bounce").
Each set of paths goes to `TextToVideoPipeline(..., trajectory=...)` (the shipped control model by default: the
paths as its control map, plus trajectory guidance at `--guidance`). In the videos the balls are tracked
(kinema.metrics.balls) and each asked ball is matched to the track of its colour:

| column | what it measures |
|---|---|
| error px | mean distance between each ball's asked and tracked centre (per ball, then averaged) |
| worst ball px | the mean over videos of the worse ball's error |
| found | share of asked balls with a track of their colour |
| asked gap px / video gap px | smallest distance minus the radii between two balls at any frame, asked and tracked |
| overlaps | share of videos where two tracked balls come closer than their asked radii |
| identity | share of videos whose balls keep colour and count in every frame (simulator clips: 1.00) |

    python benchmarks/many_objects.py                      # 8 path sets of 2 balls and 8 of 3
    python benchmarks/many_objects.py --sets 1 --objects 2 --json /tmp/m.json     # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from shipped_model_quality import relative

from kinema.control.multi_object import avoiding_paths, min_separation
from kinema.control.trajectory import TrajectorySpec
from kinema.metrics.balls import track_balls
from kinema.metrics.physics import identity_scores
from kinema.pipelines.text_to_video import TextToVideoPipeline

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["red", "blue", "yellow", "green", "magenta", "cyan"]


def coloured_paths(objects: int, frames: int, size: int, seed: int) -> TrajectorySpec:
    """Collision-avoiding paths, the k-th ball coloured COLOURS[(seed + k) % 6]."""
    spec = avoiding_paths(objects, frames, size, seed=seed)
    names = [COLOURS[(seed + k) % len(COLOURS)] for k in range(objects)]
    return TrajectorySpec.of_balls(spec.positions().transpose(0, 1), [o.radius for o in spec.objects], names, size)


def score(video: torch.Tensor, spec: TrajectorySpec) -> dict:
    """Per-ball errors, the tracked balls' smallest gap and identity of one video against its paths."""
    tracks = track_balls(video)
    asked = spec.positions().numpy()  # [K, T, 2]
    radii = np.array([o.radius for o in spec.objects])
    errors, tracked = [], []
    for k, obj in enumerate(spec.objects):
        mine = [j for j in range(len(tracks.labels)) if (tracks.labels[j] >= 0).any()
                and tracks.palette[np.bincount(tracks.labels[j][tracks.labels[j] >= 0]).argmax()] == obj.colour]
        if not mine:
            errors.append(np.nan)
            continue
        centres = tracks.centres[max(mine, key=lambda j: (tracks.labels[j] >= 0).sum())]  # [T, 2]
        errors.append(float(np.nanmean(np.linalg.norm(centres - asked[k], axis=-1))))
        tracked.append((centres, radii[k]))
    gap = (min_separation(np.stack([c for c, _ in tracked]), np.array([r for _, r in tracked]))
           if len(tracked) == len(spec.objects) else np.nan)
    return {"errors": errors, "video_gap": gap, "asked_gap": min_separation(asked, radii),
            "identity": float(identity_scores(tracks)["identity_persistence"] == 1.0)}


def run(pipe: TextToVideoPipeline, objects: int, sets: int, guidance: float) -> dict:
    rows, seconds = [], []
    for seed in range(sets):
        spec = coloured_paths(objects, pipe.spec.num_frames, pipe.spec.width, seed)
        prompt = " and ".join(f"a {o.colour} ball" for o in spec.objects) + " bounce"
        started = time.perf_counter()
        video = pipe(prompt, trajectory=spec, trajectory_guidance=guidance, direction_guidance=0.0, seed=seed,
                     progress=False)[0]
        seconds.append(time.perf_counter() - started)
        rows.append(score(video, spec))
    errors = np.array([r["errors"] for r in rows])  # [sets, K]
    gaps = np.array([r["video_gap"] for r in rows])
    return {"objects": objects, "sets": sets, "error_px": float(np.nanmean(errors)),
            "worst_ball_px": float(np.nanmean(np.nanmax(errors, axis=1))) if np.isfinite(errors).any() else None,
            "found": float(np.isfinite(errors).mean()), "asked_gap_px": float(np.mean([r["asked_gap"] for r in rows])),
            "video_gap_px": float(np.nanmean(gaps)) if np.isfinite(gaps).any() else None,
            "overlaps": float(np.mean(gaps[np.isfinite(gaps)] < 0)) if np.isfinite(gaps).any() else None,
            "identity": float(np.mean([r["identity"] for r in rows])), "s_per_video": float(np.mean(seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped control model")
    parser.add_argument("--objects", type=int, nargs="+", default=[2, 3], help="balls per video")
    parser.add_argument("--sets", type=int, default=8, help="path sets (one video each) per ball count")
    parser.add_argument("--guidance", type=float, default=1.0, help="trajectory guidance weight")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/many_objects.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = TextToVideoPipeline.from_pretrained(args.checkpoint, controls=args.checkpoint is None)
    report = {"model": "shipped control model" if args.checkpoint is None else relative(args.checkpoint),
              "guidance": args.guidance, "rows": [run(pipe, k, args.sets, args.guidance) for k in args.objects]}
    print("| balls | error px | worst ball px | found | asked gap px | video gap px | overlaps | identity | s/video |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in report["rows"]:
        print(f"| {row['objects']} | {row['error_px']:.2f} | {row['worst_ball_px']:.2f} | {row['found']:.2f} | "
              f"{row['asked_gap_px']:.2f} | {row['video_gap_px']:.2f} | {row['overlaps']:.2f} | "
              f"{row['identity']:.2f} | {row['s_per_video']:.1f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {relative(args.json)}")


if __name__ == "__main__":
    main()
