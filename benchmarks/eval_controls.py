"""Do Kinema's default FVD features tell real video from broken video, on photographic clips they never saw?

Held-out data: camera moves (pan, tilt, zoom, roll) over real photographs that ship inside PyPI packages
(scikit-image's `skimage.data` and scikit-learn's sample images), with 1-2 round sprites cut from
another photograph gliding and bouncing over them; 16 frames, 64x64. The feature network is never
trained on photographs. Two halves of `--clips` clips each (real A and real B) are featurised, and FVD
of real A is measured against:

- real B (the other real half: what FVD is between two samples of the same distribution),
- the clips shuffled in time, blurred (Gaussian, sigma `--blur` px) and frozen (first frame repeated),
  each made from real B (only the corruption differs from the real-vs-real pair) and from real A
  itself (the same clips),

plus the spread of FVD between two random halves of all 2 x `--clips` clips over `--splits` splits.
Then the same comparison runs end to end through `kinema eval` (kinema.evaluation.evaluate) on mp4
folders: real A against real B and against B shuffled, blurred and frozen, with the report's split
baseline, shuffled-time control and warnings.

    python benchmarks/eval_controls.py                                   # the table in benchmarks/README.md
    python benchmarks/eval_controls.py --features DIR --json OUT.json    # another feature network

Writes benchmarks/results/eval_controls.json. Needs scikit-image (`pip install -e .[bench]`).
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
import torch.nn.functional as F

from kinema.data.camera import render_camera
from kinema.data.digits import fold
from kinema.metrics.distances import frechet_distance_from_features
from kinema.metrics.features import KinemaVideoFeatures
from kinema.metrics.train_features import gaussian_blur

FRAMES, SIZE = 16, 64
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                  "camera", "coins", "moon", "grass", "gravel", "brick")


def photographs() -> list[torch.Tensor]:
    """The photographs as [3, H, W] in [-1, 1]: 13 from scikit-image, china and flower from scikit-learn."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    images = [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS] + list(load_sample_images().images)
    out = []
    for image in images:
        image = np.asarray(image)
        image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]
        out.append(torch.from_numpy(image.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous())
    return out


def photo_clip(photos: list[torch.Tensor], seed: int) -> torch.Tensor:
    """One clip [3, 16, 64, 64]: a camera move over one photograph and 1-2 sprites from another gliding over it."""
    rng = np.random.default_rng([seed, 11])
    choice = rng.choice(len(photos), 2, replace=False)
    photo = photos[choice[0]][None]
    short = float(rng.uniform(96, 224))
    photo = F.interpolate(photo, scale_factor=short / min(photo.shape[-2:]), mode="bilinear", antialias=True)[0]
    camera = torch.zeros(4)
    motion = int(rng.integers(4))
    camera[motion] = float(rng.uniform(0.3, 1.0) * rng.choice([-1, 1]) * (2.0, 2.0, 0.03, 3.0)[motion])
    _, height, width = photo.shape
    centre = (width / 2 + rng.uniform(-0.15, 0.15) * width, height / 2 + rng.uniform(-0.15, 0.15) * height)
    video = render_camera(photo, centre, camera, FRAMES, SIZE)
    source = photos[choice[1]]
    offsets = torch.arange(SIZE, dtype=torch.float32)
    for _ in range(int(rng.integers(1, 3))):
        radius = float(rng.uniform(5, 10))
        top, left = (int(rng.integers(0, s - 2 * math.ceil(radius) - 1)) for s in source.shape[1:])
        side = 2 * math.ceil(radius) + 1
        patch = source[:, top: top + side, left: left + side]
        start, speed = rng.uniform(0, SIZE - side, 2), rng.uniform(-3, 3, 2)
        path, _ = fold(start[None] + np.arange(FRAMES)[:, None] * speed[None], SIZE - side)
        for t, (x, y) in enumerate(path):
            x0, y0 = int(round(x)), int(round(y))
            cx, cy = x0 + side / 2, y0 + side / 2
            distance = torch.sqrt((offsets[None] + 0.5 - cx) ** 2 + (offsets[:, None] + 0.5 - cy) ** 2)
            alpha = (radius + 0.5 - distance).clamp(0, 1)
            canvas = torch.zeros(3, SIZE, SIZE)
            canvas[:, y0: y0 + side, x0: x0 + side] = patch[:, : SIZE - y0, : SIZE - x0]
            video[:, t] = alpha * canvas + (1 - alpha) * video[:, t]
    return video.clamp(-1, 1)


def corruptions(videos: torch.Tensor, blur: float, seed: int) -> dict[str, torch.Tensor]:
    """The clips shuffled in time (a random order per clip), blurred (Gaussian, `blur` px) and frozen (first frame)."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.stack([v[:, torch.randperm(v.shape[1], generator=generator)] for v in videos])
    blurred = gaussian_blur(videos, torch.full((len(videos),), blur))
    frozen = videos[:, :, :1].expand_as(videos).contiguous()
    return {"shuffled": shuffled, "blurred": blurred, "frozen": frozen}


def measure(extractor, real: torch.Tensor, clips: int, splits: int, blur: float, seed: int) -> dict:
    """FVD of real A against real B and against each corruption of B and of A; split-baseline spread."""
    a, b = real[:clips], real[clips:]
    features = {"a": extractor.videos(a), "b": extractor.videos(b)}
    fvd = {"real B": frechet_distance_from_features(features["a"], features["b"])}
    for origin, videos in (("B", b), ("A", a)):
        for name, broken in corruptions(videos, blur, seed).items():
            fvd[f"{name} {origin}"] = frechet_distance_from_features(features["a"], extractor.videos(broken))
    everything = np.concatenate([features["a"], features["b"]])
    rng = np.random.default_rng(seed)
    split = []
    for _ in range(splits):
        order = rng.permutation(len(everything))
        split.append(frechet_distance_from_features(everything[order[:clips]], everything[order[clips:]]))
    real_rank_best = all(fvd["real B"] < value for name, value in fvd.items() if name != "real B")
    return {"fvd": {k: round(v, 4) for k, v in fvd.items()},
            "split_baseline": {"mean": round(float(np.mean(split)), 4), "std": round(float(np.std(split)), 4),
                               "min": round(float(np.min(split)), 4), "max": round(float(np.max(split)), 4)},
            "real_ranks_best": real_rank_best,
            "lowest_corruption_over_split_max": round(min(v for k, v in fvd.items() if k != "real B")
                                                      / float(np.max(split)), 3)}


def end_to_end(real: torch.Tensor, clips: int, blur: float, seed: int, features: str | None) -> dict:
    """`kinema eval` on mp4 folders: real A vs real B and B shuffled / blurred / frozen; FVD, controls, warnings."""
    import tempfile

    from kinema.evaluation import EvalOptions, evaluate
    from kinema.video import write_video

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sets = {"real A": real[:clips], "real B": real[clips:],
                **{f"{k} B": v for k, v in corruptions(real[clips:], blur, seed).items()}}
        for name, videos in sets.items():
            (root / name).mkdir()
            for i, video in enumerate(videos):
                write_video(root / name / f"clip_{i:03d}.mp4", video, fps=8)
        options = EvalOptions(num_samples=clips, features=features or "kinema", bootstrap=0, kvd_subsets=10, seed=seed,
                              cache_dir=str(root / "cache"))
        reports = evaluate(root / "real A", [root / name for name in sets if name != "real A"], options)
    fvd = {Path(r["fake"]).name: round(r["metrics"]["fvd"]["value"], 4) for r in reports}
    controls = reports[0]["controls"]
    return {"fvd": fvd, "real_ranks_best": all(fvd["real B"] < v for k, v in fvd.items() if k != "real B"),
            "split_baseline": {k: round(v, 4) if isinstance(v, float) else v
                               for k, v in controls["fvd_real_split"].items()},
            "shuffled_control": round(controls["fvd_real_vs_shuffled"]["value"], 4),
            "domain": controls["domain"], "warnings": {Path(r["fake"]).name: r["warnings"] for r in reports}}


def table(results: dict) -> str:
    """Markdown: one row per comparison, one column per feature network."""
    names = list(results)
    rows = list(next(iter(results.values()))["fvd"])
    lines = ["| FVD of real A vs | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {row} | " + " | ".join(f"{results[n]['fvd'][row]:.4g}" for n in names) + " |" for row in rows]
    lines.append("| split baseline mean ± std [min, max] | " + " | ".join(
        "{mean:.4g} ± {std:.3g} [{min:.4g}, {max:.4g}]".format(**results[n]["split_baseline"]) for n in names) + " |")
    lines.append("| real ranks best | " + " | ".join(str(results[n]["real_ranks_best"]) for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", action="append", default=None,
                        help="feature-network directory (repeatable; default: the shipped one)")
    parser.add_argument("--clips", type=int, default=64, help="clips per set (each real half)")
    parser.add_argument("--splits", type=int, default=10, help="random real/real splits for the baseline spread")
    parser.add_argument("--blur", type=float, default=1.0, help="Gaussian sigma of the blur, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "eval_controls.json")
    args = parser.parse_args()
    start = time.time()
    photos = photographs()
    real = torch.stack([photo_clip(photos, args.seed * 100_003 + i) for i in range(2 * args.clips)])
    results = {}
    for path in args.features or [None]:
        extractor = KinemaVideoFeatures(path)
        results[extractor.name] = measure(extractor, real, args.clips, args.splits, args.blur, args.seed)
    print(table(results))
    through_eval = end_to_end(real, args.clips, args.blur, args.seed, (args.features or [None])[0])
    print("\nkinema eval on mp4 folders, FVD of real A vs: " + ", ".join(f"{k} {v:.4g}"
                                                                       for k, v in through_eval["fvd"].items()))
    print("split baseline (real vs real halves): {value:.4g} ± {std:.3g} [{min:.4g}, {max:.4g}]".format(
        **through_eval["split_baseline"]) + f"; shuffled-time control {through_eval['shuffled_control']:.4g}")
    record = {"clips_per_set": args.clips, "frames": FRAMES, "size": SIZE, "blur_sigma_px": args.blur,
              "splits": args.splits, "seed": args.seed, "photos": list(SKIMAGE_PHOTOS) + ["china", "flower"],
              "results": results, "kinema_eval": through_eval, "seconds": round(time.time() - start, 1),
              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "cpu": platform.processor() or platform.machine()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
