"""How well does a text-to-video balls model follow its prompt and keep its balls? Prints a table, writes JSON.

For each prompt family it samples N videos and tracks the balls in them (kinema.metrics.balls):
- colour: "a {colour} ball bounces" -> share of videos whose balls are all that colour;
- count: one- vs two-ball prompts -> share of videos with the asked number of balls (median over frames);
- direction: "... to the left/right" -> share of videos whose mean horizontal velocity has the asked sign;
- identity: count constancy, colour constancy and whole-clip identity persistence over all videos;
- smoothness: roughness (mean |second difference| of tracked centres, kinema.metrics.physics) over that of the
  simulator's own held-out clips at the model's data settings (1 = as smooth as the simulator);
plus seconds per generated video. Run:

    python benchmarks/shipped_model_quality.py                      # the model Kinema ships
    python benchmarks/shipped_model_quality.py --checkpoint runs/balls/checkpoints/step_0006000 --guidance 2 4 6
    python benchmarks/shipped_model_quality.py --direction-guidance 0 1 2 4       # steer by the prompt's motion words
    python benchmarks/shipped_model_quality.py --identity-guidance 0 10 --seeds 2  # keep each ball's count and colour
    python benchmarks/shipped_model_quality.py --retries 0 2         # draw again videos whose frames disagree
    python benchmarks/shipped_model_quality.py --physics-start 0 0.4  # start from frame 0's balls, simulated
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from kinema.data.physics_balls import simulate_balls
from kinema.metrics.balls import track_balls
from kinema.metrics.physics import identity_scores, physics_scores
from kinema.pipelines.text_to_video import TextToVideoPipeline

HELD_OUT_SEED = 20261129  # simulator clips never trained on
COLOURS = ["red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"]
ROOT = Path(__file__).resolve().parent.parent
SCORES = {"colour_accuracy": "colour", "one_ball_count_accuracy": "1-ball count", "two_ball_count_accuracy":
          "2-ball count", "direction_accuracy": "direction", "count_constancy": "count const.",
          "color_constancy": "colour const.", "identity_persistence": "identity",
          "roughness_vs_simulator": "roughness / sim."}  # the scores, as tables name them


def relative(path: Path) -> str:
    """`path` relative to the repository when inside it, so that results name no machine's directories."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def prompt_suite() -> list[dict]:
    """Prompts with what a video must show: colours (left to right not required), count, direction."""
    suite = [{"prompt": f"a {c} ball bounces", "colours": {c}, "count": 1} for c in COLOURS]
    for a, b in [("red", "blue"), ("green", "yellow"), ("white", "magenta"), ("cyan", "orange")]:
        suite.append({"prompt": f"a {a} ball and a {b} ball bounce", "colours": {a, b}, "count": 2})
    for c, side in [("red", "left"), ("blue", "right"), ("green", "left"), ("yellow", "right")]:
        suite.append({"prompt": f"a {c} ball bounces to the {side}", "colours": {c}, "count": 1, "direction": side})
    return suite


def family_of(want: dict) -> str:
    """The family of a suite entry: colour (one ball), count (two balls) or direction."""
    return "count" if want["count"] == 2 else "direction" if "direction" in want else "colour"


def score_video(video: torch.Tensor, want: dict) -> dict:
    tracks = track_balls(video)
    identity = identity_scores(tracks)
    palette = np.array(tracks.palette)
    seen = {str(palette[label]) for label in tracks.labels[tracks.present]}
    row = {**identity, "roughness": physics_scores(tracks)["roughness"], "colour_ok": float(seen == want["colours"]),
           "count_ok": float(identity["ball_count"] == want["count"])}
    if "direction" in want:
        steps = np.diff(tracks.centres[..., 0], axis=1)
        velocity = np.nanmean(steps) if np.isfinite(steps).any() else 0.0
        row["direction_ok"] = float(np.sign(velocity) == (-1 if want["direction"] == "left" else 1))
    return row


def simulator_roughness(like: TextToVideoPipeline, clips: int, frames: int | None = None, fps: float | None = None,
                        scale: int = 1) -> float:
    """Mean tracked roughness of `clips` simulator clips at `like`'s data settings (`frames` long at `fps`, by
    default the model's), with every length in pixels times `scale` (the size a super-resolution stage makes)."""
    data = like.config.data
    config = type(data)(**{**vars(data), "num_frames": frames or data.num_frames, "fps": fps or data.fps,
                           "size": data.size * scale, "radius_range": tuple(r * scale for r in data.radius_range),
                           "speed_range": tuple(s * scale for s in data.speed_range), "gravity": data.gravity * scale})
    values = [physics_scores(track_balls(simulate_balls(config, HELD_OUT_SEED + i).video))["roughness"]
              for i in range(clips)]
    return float(np.nanmean(values))


def evaluate(pipe: TextToVideoPipeline, guidance: float, steps: int, sampler: str, seeds: int,
             suite: list[dict] | None = None, direction_guidance: float | None = None,
             identity_guidance: float | None = None, retries: int | None = None,
             reference_roughness: float = float("nan"), physics_start: float | None = None) -> dict:
    rows, seconds = [], []
    for want in suite or prompt_suite():
        started = time.perf_counter()
        videos = pipe([want["prompt"]] * seeds, guidance=guidance, steps=steps, sampler=sampler, seed=0,
                      direction_guidance=direction_guidance, identity_guidance=identity_guidance, retries=retries,
                      physics_start=physics_start, progress=False)
        seconds.append((time.perf_counter() - started) / seeds)
        rows += [{"family": family_of(want), **score_video(v, want)} for v in videos]

    def mean(key, family=None):
        values = [r[key] for r in rows if key in r and (family is None or r["family"] == family)]
        return float(np.nanmean(values)) if values else float("nan")

    direction_guidance = pipe.spec.defaults.direction_guidance if direction_guidance is None else direction_guidance
    identity_guidance = pipe.spec.defaults.identity_guidance if identity_guidance is None else identity_guidance
    physics_start = pipe.spec.defaults.physics_start if physics_start is None else physics_start
    return {"guidance": guidance, "direction_guidance": direction_guidance,
            "identity_guidance": identity_guidance,
            "retries": pipe.spec.defaults.retries if retries is None else retries,
            "physics_start": physics_start,
            "steps": steps, "sampler": sampler, "videos": len(rows),
            "colour_accuracy": mean("colour_ok"), "two_ball_count_accuracy": mean("count_ok", "count"),
            "one_ball_count_accuracy": mean("count_ok", "colour"), "direction_accuracy": mean("direction_ok"),
            "count_constancy": mean("count_constancy"), "color_constancy": mean("color_constancy"),
            "identity_persistence": mean("identity_persistence"),
            "roughness_vs_simulator": mean("roughness") / reference_roughness,
            "seconds_per_video": float(np.mean(seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[None])
    parser.add_argument("--direction-guidance", type=float, nargs="+", default=[None])
    parser.add_argument("--identity-guidance", type=float, nargs="+", default=[None])
    parser.add_argument("--retries", type=int, nargs="+", default=[None],
                        help="fresh draws for videos whose frames disagree on their balls (default: the pipeline's)")
    parser.add_argument("--physics-start", type=float, nargs="+", default=[None],
                        help="start from a first video's balls run by the simulator, noised to this time (0 = off; "
                        "default: the model's)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--seeds", type=int, default=4, help="videos per prompt")
    parser.add_argument("--json", default="benchmarks/results/shipped_model_quality.json")
    args = parser.parse_args()
    pipe = TextToVideoPipeline.from_pretrained(args.checkpoint)
    defaults = pipe.config.sample
    reference = simulator_roughness(pipe, len(prompt_suite()) * args.seeds)
    results = [evaluate(pipe, defaults.guidance if g is None else g, args.steps or defaults.steps,
                        args.sampler or defaults.sampler, args.seeds, direction_guidance=d, identity_guidance=i,
                        retries=r, reference_roughness=reference, physics_start=p)
               for g in args.guidance for d in args.direction_guidance for i in args.identity_guidance
               for r in args.retries for p in args.physics_start]
    keys = [k for k in results[0] if k not in ("sampler", "videos")]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in results:
        print("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint or "shipped", "torch": torch.__version__,
                                           "threads": torch.get_num_threads(), "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
