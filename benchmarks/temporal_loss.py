"""Benchmark: what the temporal regularisers (train.temporal_loss, chapter 11.1.1) do to the flicker of samples.

A tiny unconditional pixel VideoUNet is trained on physics-ball clips (8 frames, 16x16 by default) once per
setting: without a temporal term, then with each term alone (pixel, feature, flow). Every run starts from the
same weights and sees the same batches and the same noise draws, so the term is the only difference. Each run
trains with `DiffusionLoss(..., temporal=weights)` (the loss of `kinema train`) in a bare AdamW loop (warm-up,
then cosine decay to 10% or a constant rate; EMA), then samples `--samples` videos with DPM-Solver++(2M) from
the same starting noise with the EMA weights. Reported per setting: flicker, warping error and motion magnitude
(kinema.metrics.temporal; mean and standard error over the videos) of the samples and of as many real clips
(lower flicker is only better while the motion stays as large as the real clips'), the held-out plain diffusion
loss (fixed clips and noise, no temporal term) and seconds per training step. One thread; one training seed
(`--seed`), so differences between settings mix the term's effect with how training happens to go.

    python benchmarks/temporal_loss.py                                 # full run (~10 minutes on one shared core)
    python benchmarks/temporal_loss.py --lr-schedule constant --ema-decay 0 \
        --json benchmarks/results/temporal_loss_constant_lr.json       # the last weights of a constant-rate run
    python benchmarks/temporal_loss.py --steps 5 --samples 2 --sample-steps 2 --json /tmp/t.json   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from kinema.conditioning.conditioning import Conditioning
from kinema.data.physics_balls import BouncingBalls, BouncingBallsConfig
from kinema.diffusion import DiffusionLoss, build_schedule, get_sampler, time_grid, x0_denoiser
from kinema.metrics.temporal import temporal_scores
from kinema.models.registry import build_model
from kinema.models.video_unet import VideoUNetConfig

ROOT = Path(__file__).resolve().parent.parent
SCORES = ("flicker", "warping_error", "motion_magnitude")


def clips(config: BouncingBallsConfig, count: int, seed: int) -> torch.Tensor:
    """`count` simulator clips [N, 3, T, H, W] in [-1, 1]."""
    data = BouncingBalls(config, length=count, seed=seed)
    return torch.stack([data[i]["video"] for i in range(count)])


def summary(videos: torch.Tensor) -> dict[str, list[float]]:
    """{score: [mean, standard error]} of the temporal scores over videos."""
    scores = temporal_scores(videos)
    return {name: [float(scores[name].mean()), float(scores[name].std() / len(videos) ** 0.5)] for name in SCORES}


def train_and_sample(weights: dict[str, float], args: argparse.Namespace, data: torch.Tensor,
                     held_out: torch.Tensor) -> dict:
    """Train one model with temporal `weights`, sample it, and score it."""
    torch.manual_seed(args.seed)
    model = build_model("video_unet", VideoUNetConfig(channels=args.channels, channel_mult=(1, 2),
                                                      attention=("none", "temporal"), heads=2, norm_groups=8,
                                                      text_dim=0))
    schedule = build_schedule("cosine", 1.0)
    loss_fn = DiffusionLoss(schedule, "v", temporal=weights)
    plain = DiffusionLoss(schedule, "v")
    cond = Conditioning()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay))
    order = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    model.train()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            decay = 0.1 + 0.45 * (1 + math.cos(math.pi * step / args.steps)) if args.lr_schedule == "cosine" else 1.0
            group["lr"] = args.lr * min(1.0, (step + 1) / 20) * decay
        batch = data[torch.randint(len(data), (args.batch,), generator=order)]
        generators = [torch.Generator().manual_seed(step * args.batch + i) for i in range(args.batch)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(lambda x, t: model(x, t, cond), batch, generator=generators)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update_parameters(model)
    seconds = (time.perf_counter() - started) / args.steps
    model = ema.module.eval()
    with torch.no_grad():
        held = [plain(lambda x, t: model(x, t, cond), held_out, generator=[
            torch.Generator().manual_seed(10**6 + r * len(held_out) + i) for i in range(len(held_out))]).item()
            for r in range(4)]
        denoise = x0_denoiser(lambda x, t: model(x, t, cond), schedule, "v")
        noise = torch.randn((args.samples, *data.shape[1:]), generator=torch.Generator().manual_seed(args.seed + 1))
        samples = get_sampler("dpmpp_2m")(denoise, noise, time_grid(schedule, args.sample_steps), schedule)
    return {"weights": weights, "seconds_per_step": seconds, "held_out_loss": float(np.mean(held)),
            **summary(samples.clamp(-1, 1))}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON it writes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=180)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate, after 20 warm-up steps")
    parser.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                        help="cosine: decay to 10%% at the last step")
    parser.add_argument("--ema-decay", type=float, default=0.97,
                        help="the EMA weights are sampled and scored (0: the last weights)")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--clips", type=int, default=256, help="training clips")
    parser.add_argument("--samples", type=int, default=16, help="videos sampled per setting (and real clips scored)")
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--pixel", type=float, default=1.0, help="weight of the pixel term when it is on")
    parser.add_argument("--feature", type=float, default=0.25, help="weight of the feature term when it is on")
    parser.add_argument("--flow", type=float, default=1.0, help="weight of the flow term when it is on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "temporal_loss.json")
    args = parser.parse_args(argv)

    config = BouncingBallsConfig(num_frames=args.frames, size=args.size,
                                 radius_range=(args.size / 32 * 3.0, args.size / 32 * 4.5))
    data, held_out = clips(config, args.clips, args.seed), clips(config, 8, args.seed + 1)
    settings = {"none": {}, "pixel": {"pixel": args.pixel}, "feature": {"feature": args.feature},
                "flow": {"flow": args.flow}}
    rows = {"real clips": {"weights": None, **summary(clips(config, args.samples, args.seed + 2))}}
    for name, weights in settings.items():
        print(f"training with temporal terms {weights or 'off'} ...", flush=True)
        rows[name] = train_and_sample(weights, args, data, held_out)

    print("\n| setting | weights | flicker | warping error | motion magnitude (px) | held-out loss | s/step |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        scores = " | ".join(f"{row[s][0]:.4f} ± {row[s][1]:.4f}" for s in SCORES)
        extra = (f"{row['held_out_loss']:.4f} | {row['seconds_per_step']:.3f}" if "held_out_loss" in row else "- | -")
        print(f"| {name} | {row['weights'] or '-'} | {scores} | {extra} |")
    machine = {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
               "processor": platform.processor() or platform.machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "machine": machine, "rows": rows}
    args.json.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.json.relative_to(ROOT) if args.json.resolve().is_relative_to(ROOT) else args.json}")
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
