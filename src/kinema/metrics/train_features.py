"""Train the video feature network that Kinema ships for offline FVD / KVD / frame FID on physics balls.

    python -m kinema.metrics.train_features --out src/kinema/pretrained/video_features

Data: physics-balls clips (16 frames, 32x32, 1-3 balls; kinema.data.physics_balls), simulated once
into a pool; each batch takes 8 or all 16 frames, adds Gaussian pixel noise (sigma up to 0.15, as
generated videos have) and plays a clip forward, reversed, shuffled or frozen (one frame repeated).
The network learns, from the pooled clip feature, which colours are present (binary cross-entropy, x4),
how many balls there are, the play order (cross-entropy) and the mean ball velocity in px/frame
(squared error; not for shuffled clips). Deterministic in --seed; ~2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig, simulate_balls
from kinema.metrics.features import ORDERS, VideoFeatureNet, VideoFeatureNetConfig, save_feature_net

DATA = BouncingBallsConfig(num_frames=16, size=32, min_balls=1, max_balls=3)
ORDER_PROBABILITIES = (0.4, 0.2, 0.2, 0.2)  # forward, reversed, shuffled, frozen


def simulate_pool(count: int, seed: int) -> dict[str, Tensor]:
    """`count` clips with targets: video [N, 3, 16, 32, 32], colors [N, 8], count [N], velocity [N, 16, 2]."""
    names = list(BALL_COLORS)
    videos, colors, counts, velocity = [], [], [], []
    for index in range(count):
        clip = simulate_balls(DATA, seed * 1_000_003 + index)
        videos.append(clip.video)
        colors.append(torch.tensor([float(name in clip.color_names) for name in names]))
        counts.append(len(clip.color_names))
        velocity.append(clip.velocities.mean(dim=1) / DATA.fps)  # px per frame, mean over balls
    return {"video": torch.stack(videos), "colors": torch.stack(colors), "count": torch.tensor(counts),
            "velocity": torch.stack(velocity)}


def make_batch(pool: dict[str, Tensor], size: int, generator: torch.Generator) -> dict[str, Tensor]:
    """A random batch: frame window, play order, pixel noise, and the matching targets."""
    index = torch.randint(len(pool["video"]), (size,), generator=generator)
    frames = 8 if torch.rand((), generator=generator) < 0.5 else DATA.num_frames
    start = int(torch.randint(DATA.num_frames - frames + 1, (), generator=generator))
    video = pool["video"][index, :, start: start + frames].clone()
    velocity = pool["velocity"][index, start: start + frames].mean(dim=1)
    order = torch.multinomial(torch.tensor(ORDER_PROBABILITIES), size, replacement=True, generator=generator)
    for b, kind in enumerate(ORDERS[o] for o in order.tolist()):
        if kind == "reversed":
            video[b] = video[b].flip(1)
            velocity[b] = -velocity[b]
        elif kind == "shuffled":
            video[b] = video[b][:, torch.randperm(frames, generator=generator)]
        elif kind == "frozen":
            video[b] = video[b][:, int(torch.randint(frames, (), generator=generator))][:, None].expand_as(video[b])
            velocity[b] = 0.0
    sigma = 0.15 * torch.rand(size, 1, 1, 1, 1, generator=generator)
    video = (video + sigma * torch.randn(video.shape, generator=generator)).clamp(-1, 1)
    return {"video": video, "colors": pool["colors"][index], "count": pool["count"][index], "order": order,
            "velocity": velocity, "has_velocity": order != ORDERS.index("shuffled")}


def losses(model: VideoFeatureNet, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The four training losses of one batch."""
    features = model(batch["video"])
    heads = {name: head(features) for name, head in model.heads.items()}
    mask = batch["has_velocity"].float()[:, None]
    return {
        "colors": 4.0 * F.binary_cross_entropy_with_logits(heads["colors"], batch["colors"]),  # slowest to learn
        "count": F.cross_entropy(heads["count"], batch["count"]),
        "order": F.cross_entropy(heads["order"], batch["order"]),
        "velocity": ((heads["velocity"] - batch["velocity"]) ** 2 * mask).sum() / mask.sum().clamp(min=1),
    }


@torch.no_grad()
def accuracy(model: VideoFeatureNet, batch: dict[str, Tensor]) -> dict[str, float]:
    """Held-out accuracy of the colour, count and order heads and velocity error (px/frame)."""
    features = model(batch["video"])
    heads = {name: head(features) for name, head in model.heads.items()}
    mask = batch["has_velocity"]
    return {
        "colors": float(((heads["colors"] > 0) == (batch["colors"] > 0.5)).all(dim=1).float().mean()),
        "count": float((heads["count"].argmax(1) == batch["count"]).float().mean()),
        "order": float((heads["order"].argmax(1) == batch["order"]).float().mean()),
        "velocity_error": float((heads["velocity"] - batch["velocity"])[mask].norm(dim=1).mean()),
    }


def train(steps: int, batch_size: int, pool_size: int, seed: int, lr: float = 2e-3) -> tuple[VideoFeatureNet, dict]:
    """Train from scratch; returns the model and metadata (data, steps, held-out accuracy)."""
    torch.manual_seed(seed)
    model = VideoFeatureNet(VideoFeatureNetConfig(max_balls=DATA.max_balls, num_colors=len(BALL_COLORS)))
    pool, held_out = simulate_pool(pool_size, seed), simulate_pool(256, seed + 1)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    start = time.time()
    for step in range(1, steps + 1):
        parts = losses(model, make_batch(pool, batch_size, generator))
        loss = sum(parts.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps:
            print(f"step {step}: loss {loss.item():.4f} " + " ".join(f"{k} {v.item():.3f}" for k, v in parts.items()),
                  flush=True)
    model.eval()
    scores = accuracy(model, make_batch(held_out, 256, torch.Generator().manual_seed(seed + 2)))
    metadata = {"data": "physics balls, 16 frames, 32x32, 1-3 balls", "steps": steps, "batch_size": batch_size,
                "pool_size": pool_size, "seed": seed, "train_seconds": round(time.time() - start, 1),
                "held_out_accuracy": {k: round(v, 4) for k, v in scores.items()}}
    return model, metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write config.json + model.safetensors")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=2000, help="simulated training clips")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # this small network trains fastest on one thread
    model, metadata = train(args.steps, args.batch_size, args.pool_size, args.seed)
    path = save_feature_net(args.out, model, metadata)
    print(f"wrote {path}: {metadata['held_out_accuracy']}")


if __name__ == "__main__":
    main()
