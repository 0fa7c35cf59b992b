"""Does physics guidance (or projection) make the shipped model's balls move more like the simulator's?

Prompts: the captions (without direction words) of held-out physics-balls clips (benchmarks/trajectory_guidance.py's
`held_out_clips`, dataset seed `--seed`, never trained on). Each prompt is sampled unguided and with
`physics_guidance=W` for every W of `--weights`, with `physics_projection=P` for every P of `--projections`, and from
a physics start at each time of `--starts` (kinema.control.simulated_start), alone and with each projection (same
seeds, the model's default sampler and steps); the held-out clips themselves are the reference. Every video is tracked (kinema.metrics.balls)
and scored by kinema.metrics.physics with the simulator's gravity fixed (px/frame^2):

| column | what it measures |
|---|---|
| gravity residual | RMS of acceleration minus gravity over free-flight frame triples (px/frame^2), mean of videos |
| plausible | share of frame triples explained by gravity or a contact (physics_plausibility) |
| roughness | mean acceleration magnitude (px/frame^2) |
| identity | identity_persistence: balls followed through every frame in one colour, over the most balls seen |
| colours | color_constancy: share of frames showing the clip's usual set of colours |
| scored | videos with a gravity residual (the others have no free-flight frame triple, or no tracked moving ball) |
| s/video | seconds per video on this machine |

The issue's target: a gravity residual <= 1.2x the simulator clips' and below the unguided model's, at no more than a
small loss of identity and colours.

    python benchmarks/physics_guidance.py --checkpoint src/kinema/pretrained/balls   # the table in benchmarks/README.md
    python benchmarks/physics_guidance.py --videos 2 --weights 1       # smoke run

Writes benchmarks/results/physics_guidance.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from shipped_model_quality import relative
from trajectory_guidance import HELD_OUT_SEED, held_out_clips, prompt_of

from kinema.control.physics_energy import simulator_gravity
from kinema.metrics.physics import ball_scores
from kinema.pipelines.text_to_video import TextToVideoPipeline

from model_timing import machine_info  # noqa: E402  (benchmarks/ is on the path through trajectory_guidance)

SCORES = {"gravity_residual": "gravity residual", "physics_plausibility": "plausible", "roughness": "roughness",
          "identity_persistence": "identity", "color_constancy": "colours"}


def summary(videos: torch.Tensor, gravity: float, seconds: float | None) -> dict:
    """Mean physics and identity scores of videos (NaN clips skipped) and seconds per video."""
    scores = ball_scores(videos, gravity=gravity).scores
    row = {name: float(np.nanmean(scores[name].numpy())) for name in SCORES}
    return {**row, "scored": int(scores["gravity_residual"].isfinite().sum()),
            "s_per_video": None if seconds is None else seconds / len(videos),
            "gravity_residuals": scores["gravity_residual"].tolist()}


def run(args: argparse.Namespace) -> dict:
    pipe = TextToVideoPipeline.from_pretrained(args.checkpoint)
    clips = held_out_clips(pipe, args.videos, args.seed)
    gravity = simulator_gravity(pipe.config.data, pipe.spec.width)
    rows = {"simulator clips": summary(torch.stack([c.video for c in clips]), gravity, None)}
    settings = {"unguided": {}, **{f"physics guidance {w:g}": {"physics_guidance": w} for w in args.weights},
                **{f"projection {p:g}": {"physics_projection": p} for p in args.projections},
                **{f"physics start {s:g}": {"physics_start": s} for s in args.starts},
                **{f"physics start {s:g}, projection {p:g}": {"physics_start": s, "physics_projection": p}
                   for s in args.starts for p in args.projections}}
    for name, options in settings.items():
        videos, start = [], time.perf_counter()
        for i, clip in enumerate(clips):
            videos.append(pipe(prompt_of(clip), direction_guidance=0.0, seed=i, progress=False, **options))
        rows[name] = summary(torch.cat(videos), gravity, time.perf_counter() - start)
    return {"model": "shipped" if args.checkpoint is None else relative(args.checkpoint),
            "videos": args.videos, "held_out_seed": args.seed, "gravity_px_per_frame2": gravity,
            "prompts": [prompt_of(c) for c in clips], "steps": pipe.spec.defaults.steps,
            "sampler": pipe.spec.defaults.sampler, "rows": rows, "machine": machine_info(torch.device("cpu"))}


def table(report: dict) -> str:
    lines = ["| videos | " + " | ".join(SCORES.values()) + " | scored | s/video |", "|---" * (len(SCORES) + 3) + "|"]
    for name, row in report["rows"].items():
        seconds = "-" if row["s_per_video"] is None else f"{row['s_per_video']:.1f}"
        lines.append(f"| {name} | " + " | ".join(f"{row[key]:.2f}" for key in SCORES)
                     + f" | {row['scored']}/{report['videos']} | {seconds} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--videos", type=int, default=8, help="held-out prompts (one video each per setting)")
    parser.add_argument("--weights", type=lambda s: [float(w) for w in s.split(",") if w], default=[1.0, 5.0, 20.0],
                        help="physics guidance weights, comma-separated (\"\" for none)")
    parser.add_argument("--projections", type=lambda s: [float(p) for p in s.split(",") if p], default=[1.0],
                        help="physics projection strengths, comma-separated (\"\" for none), alone and with each start")
    parser.add_argument("--starts", type=lambda s: [float(v) for v in s.split(",") if v], default=[0.4],
                        help="physics start times, comma-separated (\"\" for none): a first video's frame-0 balls run "
                        "by the simulator, noised to this time and denoised again")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="dataset seed of the held-out clips")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "physics_guidance.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    result = run(arguments)
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(result, indent=1))
    print(table(result))
