"""Train the video feature network that Kinema ships for offline FVD / KVD / frame FID, on every synthetic set.

    python -m kinema.metrics.train_features --out src/kinema/pretrained/video_features

Data (16 frames, 64x64, simulated once into a pool per source; `SOURCES`):
- balls: physics balls (kinema.data.physics_balls), 1-3 balls over black;
- digits: moving digits (kinema.data.digits), 1-2 digits over black;
- camera: camera motion over natural-spectrum noise textures (kinema.data.camera, texture "noise");
- leaves: camera motion over dead-leaves textures (occluding discs with a power-law size distribution,
  Lee, Mumford & Huang 2001, a model of natural-image statistics; plus some noise texture) with physics
  balls moving on top.
No photograph is used, so photographic clips stay a held-out test of the features.

Each batch takes a window of 8, 12 or 16 frames (8 also at stride 2), plays every clip forward,
reversed, shuffled or frozen (one frame repeated), shrinks it to 32x32 or keeps 64x64, blurs some
clips (Gaussian, sigma 0.3-2 px of the clip's own size) and adds pixel noise to some. From the pooled clip
feature the network learns (`losses`): the play order (arrow of time, shuffling, freezing; cross-entropy),
the source set (cross-entropy), the blur and noise levels (squared error), and the motion labels
(squared error; not for shuffled clips): mean object velocity in 32-px units per frame and the camera's
pan, tilt, zoom and roll speeds as fractions of their maxima, negated for reversed clips and zero for
frozen ones. Every random draw is seeded by --seed; with the defaults, 12.5 minutes on one thread of
a busy 2-core CPU (3 of them simulating the pool).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.data.camera import MOTIONS, CameraMotion, CameraMotionConfig, noise_texture, render_camera, texture_side
from kinema.data.digits import MovingDigits, MovingDigitsConfig
from kinema.data.physics_balls import BouncingBallsConfig, simulate_balls
from kinema.metrics.features import (
    MOTION_LABELS,
    ORDERS,
    SOURCES,
    VideoFeatureNet,
    VideoFeatureNetConfig,
    save_feature_net,
)

FRAMES, SIZE = 16, 64  # pool clips
NET_SIZE = 32  # the network's input size; every unit of motion and blur below is in these pixels
BALLS = BouncingBallsConfig(num_frames=FRAMES, size=SIZE, min_balls=1, max_balls=3, radius_range=(5.0, 9.0),
                            gravity=96.0, speed_range=(24.0, 72.0))
DIGITS = MovingDigitsConfig(num_frames=FRAMES, size=SIZE, digit_size=28, speed_range=(2.0, 6.0))
CAMERA = CameraMotionConfig(num_frames=FRAMES, size=SIZE, max_pan=4.0, texture="noise")
WINDOWS = ((8, 1), (8, 2), (12, 1), (16, 1))  # (frames, stride) of the training windows
ORDER_PROBABILITIES = (0.4, 0.2, 0.2, 0.2)  # forward, reversed, shuffled, frozen
BLUR_PROBABILITY, BLUR_RANGE = 0.4, (0.3, 2.0)  # Gaussian sigma in the clip's own pixels
BLUR_WEIGHT = 4.0  # mild blur is the subtlest change the features must show
NOISE_PROBABILITY, NOISE_MAX = 0.5, 0.1
OBJECT_SCALE = NET_SIZE / SIZE  # pool px -> network px


def dead_leaves_texture(side: int, rng: np.random.Generator, discs: int = 600) -> Tensor:
    """Dead-leaves image (Lee, Mumford & Huang 2001): random-colour discs, radius density ~ r^-3, `[3, side, side]`."""
    r_min, r_max = 2.0, side / 4
    u = rng.random(discs)
    radii = (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5
    image = np.empty((3, side, side), dtype=np.float32)
    image[:] = rng.uniform(-1, 1, (3, 1, 1))
    for radius, (cx, cy), colour in zip(radii, rng.uniform(0, side, (discs, 2)), rng.uniform(-1, 1, (discs, 3))):
        x0, x1 = max(0, int(cx - radius)), min(side, int(cx + radius) + 1)
        y0, y1 = max(0, int(cy - radius)), min(side, int(cy + radius) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2
        image[:, y0:y1, x0:x1][:, inside] = colour[:, None]
    return torch.from_numpy(image)


def _empty_labels() -> tuple[Tensor, Tensor]:
    return torch.zeros(len(MOTION_LABELS)), torch.zeros(len(MOTION_LABELS), dtype=torch.bool)


def _balls_clip(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Physics balls: video, per-frame object velocity [T, 2] (network px), ball coverage [1, T, H, W]."""
    clip = simulate_balls(BALLS, seed)
    velocity = clip.velocities.mean(dim=1) / BALLS.fps * OBJECT_SCALE
    coverage = ((clip.video.amax(dim=0, keepdim=True) + 1) / 2).clamp(0, 1)
    return clip.video, velocity, coverage


def make_clip(source: str, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One pool clip: video [3, 16, 64, 64], per-frame motion labels [16, 6], label mask [6], source index."""
    labels, mask = _empty_labels()
    labels = labels[None].repeat(FRAMES, 1)
    if source == "balls":
        video, velocity, _ = _balls_clip(seed)
        labels[:, :2], mask[:2] = velocity, True
    elif source == "digits":
        item = MovingDigits(DIGITS, length=1, seed=seed)[0]
        n = int(item["num_digits"])
        video = item["video"]
        labels[:, :2], mask[:2] = item["velocities"][:, :n].mean(dim=1) * OBJECT_SCALE, True
    elif source == "camera":
        item = CameraMotion(CAMERA, length=1, seed=seed)[0]
        video = item["video"]
        limits = torch.tensor([CAMERA.max_pan, CAMERA.max_pan, CAMERA.max_zoom, CAMERA.max_roll])
        labels[:, 2:], mask[2:] = item["camera"] / limits, True
    elif source == "leaves":
        rng = np.random.default_rng([seed, 7])
        side = texture_side(CAMERA)
        motion = int(rng.integers(len(MOTIONS)))
        speed = float(rng.uniform(0.25, 1.0) * rng.choice([-1.0, 1.0]))
        limits = [CAMERA.max_pan, CAMERA.max_pan, CAMERA.max_zoom, CAMERA.max_roll]
        camera = torch.zeros(4)
        camera[motion] = speed * limits[motion]
        texture = (0.7 * dead_leaves_texture(side, rng) + 0.3 * noise_texture(side, rng)).clamp(-1, 1)
        background = render_camera(texture, (side / 2, side / 2), camera, FRAMES, SIZE)
        sprites, velocity, coverage = _balls_clip(seed)
        video = coverage * sprites + (1 - coverage) * background.clamp(-1, 1)
        labels[:, :2], labels[:, 2 + motion], mask[:] = velocity, speed, True
    else:
        raise ValueError(f"unknown source {source}")
    return video, labels, mask, torch.tensor(SOURCES.index(source))


def simulate_pool(per_source: int, seed: int) -> dict[str, Tensor]:
    """`per_source` clips per source: video uint8 [N, 3, 16, 64, 64], labels [N, 16, 6], mask [N, 6], source [N]."""
    parts = [make_clip(source, seed * 1_000_003 + index) for source in SOURCES for index in range(per_source)]
    video, labels, mask, source = (torch.stack(items) for items in zip(*parts))
    return {"video": ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), "labels": labels.float(),
            "mask": mask, "source": source}


def gaussian_blur(videos: Tensor, sigma: Tensor) -> Tensor:
    """Blur each clip of [B, 3, T, H, W] by its own Gaussian sigma [B] (px; 0 leaves it as is), replicate padding."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1.0)
    taps = torch.exp(-offsets ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    taps = torch.where(sigma[:, None] > 0, taps, (offsets == 0).float())
    taps = taps / taps.sum(dim=1, keepdim=True)  # [B, K]
    b, c, t, h, w = videos.shape
    x = videos.permute(0, 2, 1, 3, 4).reshape(1, b * t * c, h, w)
    kernel = taps.repeat_interleave(t * c, dim=0)[:, None]  # [B*T*C, 1, K]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel[:, :, None, :], groups=b * t * c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel[:, :, :, None], groups=b * t * c)
    return x.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def make_batch(pool: dict[str, Tensor], size: int, generator: torch.Generator) -> dict[str, Tensor]:
    """A random batch: window, play order, size, blur, pixel noise, and the matching targets."""
    index = torch.randint(len(pool["video"]), (size,), generator=generator)
    frames, stride = WINDOWS[int(torch.randint(len(WINDOWS), (), generator=generator))]
    span = (frames - 1) * stride + 1
    start = int(torch.randint(FRAMES - span + 1, (), generator=generator))
    picked = slice(start, start + span, stride)
    video = pool["video"][index, :, picked].float() / 127.5 - 1
    motion = pool["labels"][index, picked].mean(dim=1) * stride
    mask = pool["mask"][index].clone()
    order = torch.multinomial(torch.tensor(ORDER_PROBABILITIES), size, replacement=True, generator=generator)
    for b, kind in enumerate(ORDERS[o] for o in order.tolist()):
        if kind == "reversed":
            video[b], motion[b] = video[b].flip(1), -motion[b]
        elif kind == "shuffled":
            video[b], mask[b] = video[b][:, torch.randperm(frames, generator=generator)], False
        elif kind == "frozen":
            video[b] = video[b][:, int(torch.randint(frames, (), generator=generator))][:, None].expand_as(video[b])
            motion[b] = 0.0
    native = SIZE if torch.rand((), generator=generator) < 0.5 else NET_SIZE
    if native != SIZE:
        video = F.interpolate(video, size=(frames, native, native), mode="area")
    blurred = torch.rand(size, generator=generator) < BLUR_PROBABILITY
    sigma = torch.where(blurred, torch.empty(size).uniform_(*BLUR_RANGE, generator=generator), torch.zeros(size))
    video = gaussian_blur(video, sigma)
    noisy = torch.rand(size, generator=generator) < NOISE_PROBABILITY
    noise = torch.where(noisy, NOISE_MAX * torch.rand(size, generator=generator), torch.zeros(size))
    video = (video + noise[:, None, None, None, None] * torch.randn(video.shape, generator=generator)).clamp(-1, 1)
    return {"video": video, "order": order, "source": pool["source"][index], "blur": sigma * NET_SIZE / native,
            "noise": noise, "motion": motion, "mask": mask}


def _heads(model: VideoFeatureNet, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    features = model(batch["video"])
    return {name: head(features) for name, head in model.heads.items()}


def losses(model: VideoFeatureNet, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The five training losses of one batch."""
    heads = _heads(model, batch)
    mask = batch["mask"].float()
    return {
        "order": F.cross_entropy(heads["order"], batch["order"]),
        "source": F.cross_entropy(heads["source"], batch["source"]),
        "blur": BLUR_WEIGHT * F.mse_loss(heads["blur"][:, 0], batch["blur"]),
        "noise": F.mse_loss(heads["noise"][:, 0], batch["noise"] / NOISE_MAX),
        "motion": ((heads["motion"] - batch["motion"]) ** 2 * mask).sum() / mask.sum().clamp(min=1),
    }


@torch.no_grad()
def accuracy(model: VideoFeatureNet, batch: dict[str, Tensor]) -> dict[str, float]:
    """Held-out accuracy of the order and source heads, and the errors of the blur, noise and motion heads."""
    heads = _heads(model, batch)
    mask = batch["mask"]
    return {
        "order": float((heads["order"].argmax(1) == batch["order"]).float().mean()),
        "source": float((heads["source"].argmax(1) == batch["source"]).float().mean()),
        "blur_error_px": float((heads["blur"][:, 0] - batch["blur"]).abs().mean()),
        "noise_error": float((heads["noise"][:, 0] * NOISE_MAX - batch["noise"]).abs().mean()),
        "motion_error": float((heads["motion"] - batch["motion"])[mask].abs().mean()),
    }


@torch.no_grad()
def domain_statistics(model: VideoFeatureNet, pool: dict[str, Tensor]) -> dict:
    """Clip-feature mean and std over clean forward 16-frame pool clips, and the 99th percentile of their RMS z."""
    videos = pool["video"].float() / 127.5 - 1
    features = torch.cat([model(chunk) for chunk in videos.split(64)]).double()
    mean, std = features.mean(dim=0), features.std(dim=0).clamp(min=1e-6)
    z = (((features - mean) / std) ** 2).mean(dim=1).sqrt()
    return {"feature_mean": [round(v, 5) for v in mean.tolist()], "feature_std": [round(v, 5) for v in std.tolist()],
            "rms_z_p99": round(float(torch.quantile(z, 0.99)), 4)}


def train(steps: int, batch_size: int, per_source: int, seed: int, lr: float = 2e-3) -> tuple[VideoFeatureNet, dict]:
    """Train from scratch; returns the model and metadata (training domain, recipe, held-out accuracy, statistics)."""
    torch.manual_seed(seed)
    model = VideoFeatureNet(VideoFeatureNetConfig(size=NET_SIZE))
    start = time.time()
    pool, held_out = simulate_pool(per_source, seed), simulate_pool(64, seed + 1)
    print(f"simulated {len(pool['video'])} + {len(held_out['video'])} clips in {time.time() - start:.0f} s", flush=True)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for step in range(1, steps + 1):
        parts = losses(model, make_batch(pool, batch_size, generator))
        loss = sum(parts.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps:
            print(f"step {step} ({time.time() - start:.0f} s): loss {loss.item():.4f} "
                  + " ".join(f"{k} {v.item():.3f}" for k, v in parts.items()), flush=True)
    model.eval()
    scores = accuracy(model, make_batch(held_out, 256, torch.Generator().manual_seed(seed + 2)))
    metadata = {
        "training_domain": {
            "sources": {"balls": f"physics balls, 1-{BALLS.max_balls} over black",
                        "digits": f"moving digits, {DIGITS.min_digits}-{DIGITS.max_digits} over black",
                        "camera": "pan / tilt / zoom / roll over natural-spectrum noise textures",
                        "leaves": "camera motion over dead-leaves + noise textures with physics balls on top"},
            "photographs": False,
            "sizes": [NET_SIZE, SIZE], "num_frames": sorted({f for f, _ in WINDOWS}), "frame_strides": [1, 2],
            "clips_per_source": per_source, "blur_sigma_px": list(BLUR_RANGE), "noise_sigma_max": NOISE_MAX,
        },
        "objectives": {"order": list(ORDERS), "source": list(SOURCES), "blur": "sigma in 32-px units",
                       "noise": "pixel noise sigma / 0.1", "motion": list(MOTION_LABELS)},
        "command": f"python -m kinema.metrics.train_features --out DIR --steps {steps} --batch-size {batch_size} "
                   f"--per-source {per_source} --seed {seed}",
        "steps": steps, "batch_size": batch_size, "seed": seed, "train_seconds": round(time.time() - start, 1),
        "held_out_accuracy": {k: round(v, 4) for k, v in scores.items()},
        "domain_statistics": domain_statistics(model, held_out),
    }
    return model, metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write config.json + model.safetensors")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--per-source", type=int, default=400, help="simulated training clips per source")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # this small network trains fastest on one thread
    model, metadata = train(args.steps, args.batch_size, args.per_source, args.seed)
    path = save_feature_net(args.out, model, metadata)
    print(f"wrote {path}: {metadata['held_out_accuracy']}")


if __name__ == "__main__":
    main()
