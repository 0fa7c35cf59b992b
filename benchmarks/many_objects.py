"""Many objects on their own paths (issue: each object's own error, kept distances, identity). Prints a table, writes JSON.

Paths: `kinema.control.multi_object.avoiding_paths` (K balls each crossing the frame through the centre, never two
closer than their radii plus a clearance margin, default size / 16 = 2 px at 32x32), each ball given a colour and
named in the prompt ("a red ball and a blue ball bounce"). Each set of paths goes to
`TextToVideoPipeline(..., trajectory=...)` (the shipped control model by default: the paths as its control map, plus
trajectory guidance at `--guidance` and physics guidance, whose no-overlap term pushes touching balls apart, at
`--physics-guidance`, and with `--projection S` each estimate's balls moved that share of the way onto their paths in
the later half of the steps). Next to the generated videos, the same paths drawn by the simulator's renderer
(`kinema.data.physics_balls.render_balls`, as in its clips) are scored alike: what a perfect video scores. In every
video the balls are tracked (kinema.metrics.balls) and each asked ball is matched to the track of its colour:

| column | what it measures |
|---|---|
| error px | mean distance between each ball's asked and tracked centre (per ball, then averaged) |
| worst ball px | the mean over videos of the worse ball's error |
| found | share of asked balls with a track of their colour |
| asked gap px | the paths' smallest distance minus the radii between two balls at any frame (mean over videos) |
| video gap px | the same for the tracked centres (asked radii; frames where both are tracked): mean and smallest over videos |
| short px | mean over videos of how far the video's smallest gap falls below the asked one (0 when it keeps it) |
| touching | share of videos where two tracked balls come closer than their asked radii |
| lost | share of videos where an asked ball has no track of its colour in some frame (two balls merged into one blob, or one faded) |
| identity | share of videos whose balls keep colour and count in every frame |

    python benchmarks/many_objects.py                      # 8 path sets of 2 balls and 8 of 3
    python benchmarks/many_objects.py --projection 1 --json benchmarks/results/many_objects_projection.json
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
from kinema.data.physics_balls import BALL_COLORS, render_balls
from kinema.metrics.balls import track_balls
from kinema.metrics.physics import identity_scores
from kinema.pipelines.text_to_video import TextToVideoPipeline

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["red", "blue", "yellow", "green", "magenta", "cyan"]


def coloured_paths(objects: int, frames: int, size: int, seed: int, margin: float | None) -> TrajectorySpec:
    """Collision-avoiding paths `margin` px apart, the k-th ball coloured COLOURS[(seed + k) % 6]."""
    spec = avoiding_paths(objects, frames, size, seed=seed, margin=margin)
    names = [COLOURS[(seed + k) % len(COLOURS)] for k in range(objects)]
    return TrajectorySpec.of_balls(spec.positions().transpose(0, 1), [o.radius for o in spec.objects], names, size)


def rendered(spec: TrajectorySpec) -> torch.Tensor:
    """The paths drawn by the simulator's renderer: [3, T, H, W]."""
    colours = np.array([BALL_COLORS[o.colour] for o in spec.objects])
    return render_balls(spec.positions().transpose(0, 1).numpy(), np.array([o.radius for o in spec.objects]),
                        colours, spec.size)


def score(video: torch.Tensor, spec: TrajectorySpec) -> dict:
    """Per-ball errors, the tracked balls' smallest gap and identity of one video against its paths."""
    tracks = track_balls(video)
    asked = spec.positions().numpy()  # [K, T, 2]
    radii = np.array([o.radius for o in spec.objects])
    errors, tracked, lost = [], [], False
    for k, obj in enumerate(spec.objects):
        mine = [j for j in range(len(tracks.labels)) if (tracks.labels[j] >= 0).any()
                and tracks.palette[np.bincount(tracks.labels[j][tracks.labels[j] >= 0]).argmax()] == obj.colour]
        if not mine:
            errors.append(np.nan)
            lost = True
            continue
        centres = tracks.centres[max(mine, key=lambda j: (tracks.labels[j] >= 0).sum())]  # [T, 2]
        lost = lost or bool(np.isnan(centres).any())
        errors.append(float(np.nanmean(np.linalg.norm(centres - asked[k], axis=-1))))
        tracked.append((centres, radii[k]))
    gap = (min_separation(np.stack([c for c, _ in tracked]), np.array([r for _, r in tracked]))
           if len(tracked) == len(spec.objects) else np.nan)
    return {"errors": errors, "video_gap": gap, "asked_gap": min_separation(asked, radii), "lost": float(lost),
            "identity": float(identity_scores(tracks)["identity_persistence"] == 1.0)}


def summary(rows: list[dict]) -> dict:
    """The table's columns over videos, with each video's asked and tracked smallest gap."""
    errors = np.array([r["errors"] for r in rows])  # [videos, K]
    gaps, asked = np.array([r["video_gap"] for r in rows]), np.array([r["asked_gap"] for r in rows])
    seen = np.isfinite(gaps)
    return {"error_px": float(np.nanmean(errors)) if np.isfinite(errors).any() else None,
            "worst_ball_px": float(np.nanmean(np.nanmax(errors, axis=1))) if np.isfinite(errors).any() else None,
            "found": float(np.isfinite(errors).mean()), "asked_gap_px": float(asked.mean()),
            "video_gap_px": float(gaps[seen].mean()) if seen.any() else None,
            "smallest_video_gap_px": float(gaps[seen].min()) if seen.any() else None,
            "short_px": float(np.clip(asked - gaps, 0, None)[seen].mean()) if seen.any() else None,
            "touching": float(np.mean(gaps[seen] < 0)) if seen.any() else None,
            "lost": float(np.mean([r["lost"] for r in rows])),
            "identity": float(np.mean([r["identity"] for r in rows])),
            "asked_gaps": asked.round(3).tolist(), "video_gaps": [round(g, 3) if np.isfinite(g) else None for g in gaps]}


def run(pipe: TextToVideoPipeline, objects: int, seeds: range, margin: float | None, guidance: float,
        physics: float, projection: float = 0.0) -> dict:
    generated, drawn, seconds = [], [], []
    for seed in seeds:
        spec = coloured_paths(objects, pipe.spec.num_frames, pipe.spec.width, seed, margin)
        prompt = " and ".join(f"a {o.colour} ball" for o in spec.objects) + " bounce"
        started = time.perf_counter()
        video = pipe(prompt, trajectory=spec, trajectory_guidance=guidance, physics_guidance=physics,
                     trajectory_projection=projection, direction_guidance=0.0, seed=seed, progress=False)[0]
        seconds.append(time.perf_counter() - started)
        generated.append(score(video, spec))
        drawn.append(score(rendered(spec), spec))
    return {"objects": objects, "sets": len(seeds), "video": summary(generated), "rendered": summary(drawn),
            "s_per_video": float(np.mean(seconds))}


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped control model")
    parser.add_argument("--objects", type=int, nargs="+", default=[2, 3], help="balls per video")
    parser.add_argument("--sets", type=int, default=8, help="path sets (one video each) per ball count")
    parser.add_argument("--data-seed", type=int, default=0, help="first path seed (also the sampling seed)")
    parser.add_argument("--margin", type=float, default=None,
                        help="px kept between the balls' paths (default: avoiding_paths' size / 16)")
    parser.add_argument("--guidance", type=float, default=1.0, help="trajectory guidance weight")
    parser.add_argument("--physics-guidance", type=float, default=0.0, help="physics guidance weight")
    parser.add_argument("--projection", type=float, default=0.0, help="trajectory projection share (0 = off)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/many_objects.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = TextToVideoPipeline.from_pretrained(args.checkpoint, controls=args.checkpoint is None)
    seeds = range(args.data_seed, args.data_seed + args.sets)
    report = {"model": "shipped control model" if args.checkpoint is None else relative(args.checkpoint),
              "margin": args.margin, "guidance": args.guidance, "physics_guidance": args.physics_guidance,
              "projection": args.projection, "data_seed": args.data_seed,
              "rows": [run(pipe, k, seeds, args.margin, args.guidance, args.physics_guidance, args.projection)
                       for k in args.objects]}
    print("| balls | videos | error px | worst ball px | found | asked gap px | video gap px (smallest) | short px | "
          "touching | lost | identity |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in report["rows"]:
        for name in ("video", "rendered"):
            r = row[name]
            print(f"| {row['objects']} | {'generated' if name == 'video' else 'paths rendered'} | "
                  f"{number(r['error_px'])} | {number(r['worst_ball_px'])} | {r['found']:.2f} | "
                  f"{r['asked_gap_px']:.2f} | {number(r['video_gap_px'])} ({number(r['smallest_video_gap_px'])}) | "
                  f"{number(r['short_px'])} | {number(r['touching'])} | {r['lost']:.2f} | {r['identity']:.2f} |")
    seconds = ", ".join(f"{row['s_per_video']:.1f}" for row in report["rows"])
    print(f"seconds per generated video: {seconds}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {relative(args.json)}")


if __name__ == "__main__":
    main()
