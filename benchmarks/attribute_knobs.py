"""Do a model's knobs (model.attributes: speed, brightness; chapter 11.3.5) do what they say? Prints a table, writes JSON.

For each knob value it samples N videos of held-out one-ball prompts and measures, in the videos themselves:
- speed: the tracked balls' mean step in px per frame (kinema.metrics.balls), where the knob asks px per frame;
- brightness: the mean of each video's brightest 5% of pixels (the balls' brightness) in [0, 1], where the knob asks a
  gain on the training clips' brightness;
and reports Spearman's rank correlation between knob and measurement over all videos and over the per-value means
(monotone in the knob: the issue's target is >= 0.9), the colour accuracy (kinema.metrics.balls) so a knob that
breaks the balls shows, and seconds per video. The simulator's own clips give the reference: their ground-truth
speed against the tracked one, and the brightness measured after the training augmentation's gain. The speed knob
is followed by the model's conditioning and, by default, by speed guidance toward it (kinema.control.speed_energy,
weight `--speed-guidance`).

    python benchmarks/attribute_knobs.py --checkpoint runs/balls_control/checkpoints/latest
    python benchmarks/attribute_knobs.py --checkpoint src/kinema/pretrained/balls_control --knobs speed \
        --videos 3 --json benchmarks/results/attribute_knobs_speed_guidance.json      # the knob with speed guidance
    python benchmarks/attribute_knobs.py --checkpoint src/kinema/pretrained/balls_control --speed-guidance 0  # alone
    python benchmarks/attribute_knobs.py --checkpoint DIR --videos 2 --steps 4 --json /tmp/k.json   # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from shipped_model_quality import relative

from kinema.data.physics_balls import BouncingBalls
from kinema.metrics.balls import track_balls
from kinema.pipelines.text_to_video import SPEED_GUIDANCE, TextToVideoPipeline

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["a red ball bounces", "a blue ball bounces", "a yellow ball bounces", "a green ball bounces"]
VALUES = {"speed": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "brightness": [0.6, 0.8, 1.0, 1.2, 1.4]}


def tracked_speed(video: torch.Tensor) -> float:
    """Mean |step| of the tracked balls' centres, px per frame (NaN when no ball is tracked over two frames)."""
    steps = np.linalg.norm(np.diff(track_balls(video).centres, axis=1), axis=-1)
    return float(np.nanmean(steps)) if np.isfinite(steps).any() else float("nan")


def brightness(video: torch.Tensor) -> float:
    """Mean of the brightest 5% of pixel values of a clip [3, T, H, W] in [-1, 1], in [0, 1]."""
    values = ((video.clamp(-1, 1) + 1) / 2).amax(0).flatten()
    return float(values.topk(max(1, len(values) // 20)).values.mean())


def colour_ok(video: torch.Tensor, colour: str) -> float:
    """1 when every ball tracked in the clip has the asked colour."""
    tracks = track_balls(video)
    seen = {tracks.palette[label] for label in tracks.labels[tracks.present]}
    return float(seen == {colour})


def measure(knob: str, video: torch.Tensor) -> float:
    return tracked_speed(video) if knob == "speed" else brightness(video)


def spearman(x: list[float], y: list[float]) -> float:
    keep = np.isfinite(y)
    return float(spearmanr(np.asarray(x)[keep], np.asarray(y)[keep]).statistic) if keep.sum() > 2 else float("nan")


def knob_rows(pipe: TextToVideoPipeline, knob: str, args: argparse.Namespace) -> dict:
    """Samples at every value of `knob`: the measurement per video, per value, and the rank correlations."""
    per_video, means, colours, seconds = [], [], [], []
    for value in VALUES[knob]:
        measured = []
        for prompt in PROMPTS[: args.prompts]:
            started = time.perf_counter()
            videos = pipe([prompt] * args.videos, steps=args.steps, seed=args.seed, progress=False,
                          attributes={knob: value},
                          **({"speed_guidance": args.speed_guidance} if knob == "speed" else {}))
            seconds.append((time.perf_counter() - started) / args.videos)
            measured += [measure(knob, v) for v in videos]
            colours += [colour_ok(v, prompt.split()[1]) for v in videos]
        per_video += [(value, m) for m in measured]
        means.append(float(np.nanmean(measured)))
    return {"values": VALUES[knob], "measured_mean": means,
            "spearman_videos": spearman(*zip(*per_video)), "spearman_means": spearman(VALUES[knob], means),
            "colour_accuracy": float(np.mean(colours)), "seconds_per_video": float(np.mean(seconds))}


def simulator_reference(pipe: TextToVideoPipeline, count: int) -> dict:
    """The simulator's clips: tracked vs ground-truth speed, and brightness after each training gain."""
    data = BouncingBalls(pipe.config.data, length=count, seed=12345)
    truth, tracked, bright = [], [], {g: [] for g in VALUES["brightness"]}
    for i in range(count):
        clip = data.clip(i)
        truth.append(float(np.linalg.norm(np.diff(clip.positions.numpy(), axis=0), axis=-1).mean()))
        tracked.append(tracked_speed(clip.video))
        for gain in bright:
            bright[gain].append(brightness(((clip.video + 1) / 2 * gain).clamp(0, 1) * 2 - 1))
    return {"speed_truth_mean": float(np.mean(truth)), "speed_tracked_mean": float(np.nanmean(tracked)),
            "speed_spearman_truth_vs_tracked": spearman(truth, tracked),
            "brightness_by_gain": {str(g): float(np.mean(v)) for g, v in bright.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a model trained with speed / brightness knobs")
    parser.add_argument("--videos", type=int, default=4, help="videos per prompt and knob value")
    parser.add_argument("--prompts", type=int, default=2, help="how many of the held-out prompts")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--knobs", nargs="+", default=None, help="knobs to measure (default: every one it reads)")
    parser.add_argument("--speed-guidance", type=float, default=None,
                        help=f"guidance toward the speed knob (kinema.control.speed_energy; default {SPEED_GUIDANCE:g})")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/attribute_knobs.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    pipe = TextToVideoPipeline.from_pretrained(args.checkpoint)
    results = {"checkpoint": relative(args.checkpoint), "videos_per_value": args.videos * args.prompts,
               "speed_guidance": SPEED_GUIDANCE if args.speed_guidance is None else args.speed_guidance,
               "reference": simulator_reference(pipe, 16)}
    print(f"{'knob':<11} {'values':<32} {'measured (mean per value)':<44} {'rho vids':>8} {'rho means':>9} "
          f"{'colour':>6} {'s/video':>7}")
    for knob in pipe.model.attributes:
        if knob not in VALUES or (args.knobs and knob not in args.knobs):
            continue
        row = results[knob] = knob_rows(pipe, knob, args)
        print(f"{knob:<11} {str(row['values']):<32} {str([round(m, 2) for m in row['measured_mean']]):<44} "
              f"{row['spearman_videos']:>8.3f} {row['spearman_means']:>9.3f} {row['colour_accuracy']:>6.2f} "
              f"{row['seconds_per_video']:>7.2f}")
    print("simulator reference:", json.dumps(results["reference"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
