"""Benchmark: time to evaluate N generated videos against N real ones with every offline metric of `kinema eval`.

Real and "generated" sets are physics-balls clips of two dataset seeds (T frames, S x S pixels), so
the numbers measure the metrics, not a model. Timed stages, on the generated set unless noted:
1. features: Kinema's shipped video network, clip and frame features of both sets;
2. distances: FVD, frame FID (each with 100 bootstrap rounds) and KVD (100 subsets);
3. frame metrics: PSNR and SSIM of generated i against real i;
4. temporal: flicker, warping error with occlusion masks, motion consistency, dynamic degree (Farneback);
5. balls: detection, tracking, identity and physics scores.
LPIPS / LPIPS-T and CLIP-SIM need weights that are not offline and are not timed.

    python benchmarks/eval_speed.py                         # the full run: 256 videos of 16 x 64 x 64
    python benchmarks/eval_speed.py --videos 16             # a quick look
Prints a table and writes benchmarks/results/eval_speed.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from einops import rearrange

from kinema.data.physics_balls import BouncingBalls, BouncingBallsConfig
from kinema.metrics.distances import bootstrap_interval, frechet_distance_from_features, kernel_distance
from kinema.metrics.features import KinemaVideoFeatures
from kinema.metrics.frame import psnr, ssim
from kinema.metrics.physics import ball_scores
from kinema.metrics.temporal import temporal_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / f"{Path(__file__).stem}.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = BouncingBallsConfig(num_frames=args.frames, size=args.size, min_balls=1, max_balls=3)
    real = torch.stack([BouncingBalls(config, args.videos, seed=0)[i]["video"] for i in range(args.videos)])
    fake = torch.stack([BouncingBalls(config, args.videos, seed=1)[i]["video"] for i in range(args.videos)])

    timings: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - start
        return result

    extractor = KinemaVideoFeatures()
    feats = timed("features (both sets)", lambda: {
        name: (extractor.videos(v), extractor.frames(rearrange(v, "b c t h w -> (b t) c h w")))
        for name, v in (("real", real), ("fake", fake))})
    timed("FVD + frame FID + KVD, bootstrap CIs", lambda: [
        bootstrap_interval(frechet_distance_from_features, feats["real"][k], feats["fake"][k], 100)
        for k in (0, 1)] + [kernel_distance(feats["real"][0], feats["fake"][0], 100)])
    timed("PSNR + SSIM (paired)", lambda: (psnr(fake, real), ssim(fake, real)))
    timed("temporal (flow-based)", lambda: temporal_scores(fake))
    timed("ball identity + physics", lambda: ball_scores(fake))
    total = sum(timings.values())

    print(f"{args.videos} videos of {args.frames} x {args.size} x {args.size}, {args.threads} threads")
    print("| stage | seconds |\n|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| total | {total:.1f} |")
    args.out.write_text(json.dumps({"videos": args.videos, "frames": args.frames, "size": args.size,
                                    "threads": args.threads, "machine": platform.processor() or platform.machine(),
                                    "seconds": {**timings, "total": total}}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
