"""Loader throughput against training consumption: can the data side keep the default training run fed?

Makes a folder of small real videos (H.264 mp4, 320x240 at 30 fps, 2 s each) and times DataLoader
clips per second for the folder dataset (fixed-rate, motion-adaptive, shards) and the synthetic
datasets, at the default configs/balls.yaml clip shape (8 frames, 32x32, batch 8). Training
consumption is steps/s x batch size, measured with --measure-training (a few steps of
configs/balls.yaml) or given with --training-clips-per-second. Prints a table and writes JSON.

    python benchmarks/data_loader.py --workers 0 2 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, Subset

from kinema.config import load_config
from kinema.data.camera import CameraMotion, CameraMotionConfig
from kinema.data.digits import MovingDigits, MovingDigitsConfig
from kinema.data.folder import VideoFolder, VideoFolderConfig
from kinema.data.physics_balls import BouncingBalls, BouncingBallsConfig
from kinema.data.shards import ShardDataset, write_shards
from kinema.video import from_uint8, write_video

FRAMES, SIZE, BATCH = 8, 32, 8


def make_videos(folder: Path, count: int, seed: int = 0) -> None:
    """`count` 2-second 320x240 clips: a drifting textured gradient with a moving square."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:240, 0:320]
    for index in range(count):
        colour = rng.integers(40, 220, size=3)
        frames = np.empty((60, 240, 320, 3), dtype=np.uint8)
        for t in range(60):
            shade = (np.sin((xs + 3 * t) / 17.0) * np.cos((ys - 2 * t) / 23.0) * 60 + 128)[..., None]
            frames[t] = np.clip(shade * colour / 160, 0, 255)
            frames[t, 60 + t : 120 + t, 40 + 3 * t : 100 + 3 * t] = 255 - colour
        write_video(folder / f"clip_{index:03d}.mp4", from_uint8(frames), fps=30)


def clips_per_second(dataset, workers: int, seconds: float) -> float:
    """Clips per second delivered by a DataLoader (batch 8) over `seconds`, after one warm-up batch."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**7, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=workers, drop_last=True)
    batches = iter(loader)
    next(batches)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        count += len(next(batches)["video"])
    return count / (time.perf_counter() - started)


def training_clips_per_second(steps: int) -> float:
    """Steps/s x batch of configs/balls.yaml over `steps` steps after two warm-up steps."""
    from kinema.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        config = load_config(Path(__file__).parents[1] / "configs/balls.yaml",
                             [f"train.output_dir={out}", "train.sample_every=0", "train.checkpoint_every=100000"])
        trainer = Trainer(config, progress=False)
        trainer.train(until_step=2)
        started = time.perf_counter()
        trainer.train(until_step=2 + steps)
        return steps / (time.perf_counter() - started) * config.train.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--training-clips-per-second", type=float, default=16.0,
                        help="training consumption to compare with (default: 2 steps/s x batch 8, measured on 2 cores)")
    parser.add_argument("--measure-training", type=int, default=0, metavar="STEPS",
                        help="measure training consumption with this many steps of configs/balls.yaml instead")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / f"{Path(__file__).stem}.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        make_videos(folder, args.videos)
        fixed = VideoFolder(VideoFolderConfig(root=str(folder), num_frames=FRAMES, size=SIZE, fps=8, crop="random",
                                              flip=0.5, length=100_000))
        datasets = {
            "folder mp4 320x240, 8 fps resampled": fixed,
            "folder mp4, motion-adaptive": VideoFolder(VideoFolderConfig(
                root=str(folder), num_frames=FRAMES, size=SIZE, fps=8, sampling="motion", length=100_000)),
            "shards (uint8 clips)": None,
            "physics balls": BouncingBalls(BouncingBallsConfig(num_frames=FRAMES, size=SIZE), length=100_000),
            "moving digits": MovingDigits(MovingDigitsConfig(num_frames=FRAMES, size=SIZE), length=100_000),
            "camera motion (photos)": CameraMotion(CameraMotionConfig(num_frames=FRAMES, size=SIZE), length=100_000),
        }
        write_shards(Subset(fixed, range(256)), Path(tmp) / "shards", items_per_shard=64)
        datasets["shards (uint8 clips)"] = ShardDataset(str(Path(tmp) / "shards"))
        results = {}
        for name, dataset in datasets.items():
            results[name] = {str(w): clips_per_second(dataset, w, args.seconds) for w in args.workers}
            print(f"  {name}: {results[name]}", flush=True)
    training = training_clips_per_second(args.measure_training) if args.measure_training else \
        args.training_clips_per_second
    header = f"{'dataset':40s}" + "".join(f"{f'workers={w}':>12s}" for w in args.workers)
    print(f"loader clips/s (8 frames, 32x32, batch 8) vs training consumption {training:.1f} clips/s")
    print(header)
    for name, row in results.items():
        print(f"{name:40s}" + "".join(f"{row[str(w)]:12.1f}" for w in args.workers))
    args.out.write_text(json.dumps({"clip": {"frames": FRAMES, "size": SIZE, "batch": BATCH},
                                    "training_clips_per_second": training,
                                    "training_measured": bool(args.measure_training),
                                    "loader_clips_per_second": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
