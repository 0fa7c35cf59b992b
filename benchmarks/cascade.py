"""Cascade vs one stage (chapter 11.4; Imagen Video, Ho et al. 2022): keyframes -> interpolation -> super-resolution
against single models, in quality and seconds per video. Prints tables, writes JSON.

1. Super-resolution on held-out clips: physics-balls clips at 64x64 drawn with HELD_OUT_SEED (training draws with
   train.seed = 0, so these were never trained on), shrunk to 32x32 by area averaging; PSNR against the 64x64 truth
   of the super-resolution stage (at each `--noise-aug`), of bicubic and of bilinear upsampling (what the stage
   reads as its control).
2. Generation: the colour and count prompts of benchmarks/shipped_model_quality.py, one video each, through
   - one stage: the shipped 32x32 text-to-video model (8 frames at 8 fps), which is also the cascade's keyframes;
   - + interpolation: the shipped frames model fills one frame between each two (15 frames at 16 fps, 32x32);
   - + super-resolution: the SR stage doubles the size (15 frames, 64x64), the full cascade;
   - one stage at the cascade's output size and total parameters: a VideoUNet like configs/balls.yaml, widened
     until it has as many parameters as the three stages together, making 15 x 64 x 64 videos with the same
     sampler and steps. No such model is trained (it would take far longer than the cascade's stages on a CPU),
     so only its seconds per video are measured (speed does not depend on the weights).
   Scores (kinema.metrics.balls tracks, as benchmarks/shipped_model_quality.py scores them): colour accuracy,
   count accuracy, whole-clip identity persistence, and roughness (mean |second difference| of tracked centres,
   kinema.metrics.physics) over the simulator's own clips of the same size, length and frame rate (1 = as smooth
   as the simulator; the issue's "smoothness"); seconds per video of each stage (batched, divided by the videos).

    python benchmarks/cascade.py                          # shipped stages (with a shipped SR stage), one thread
    python benchmarks/cascade.py --sr runs/cascade_sr/checkpoints/step_0001363 --clips 8   # a trained SR stage
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_timing import machine_info  # noqa: E402
from shipped_model_quality import (HELD_OUT_SEED, prompt_suite, relative, score_video,  # noqa: E402
                                   simulator_roughness)

from kinema.config import with_overrides  # noqa: E402
from kinema.conditioning.controls import low_resolution  # noqa: E402
from kinema.data.registry import build_dataset  # noqa: E402
from kinema.metrics.frame import psnr  # noqa: E402
from kinema.models.registry import build_model  # noqa: E402
from kinema.pipelines.cascade import SHIPPED_SR_MODEL, CascadePipeline  # noqa: E402
from kinema.pipelines.text_to_video import SHIPPED_PIXEL_MODEL, TextToVideoPipeline, shipped_model  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keyframes", type=Path, default=SHIPPED_PIXEL_MODEL, help="keyframe model directory")
    parser.add_argument("--interpolation", type=Path, default=shipped_model(frames=True), help="interpolation model")
    parser.add_argument("--sr", type=Path, default=SHIPPED_SR_MODEL, help="super-resolution model directory")
    parser.add_argument("--clips", type=int, default=16, help="held-out clips for the super-resolution PSNR")
    parser.add_argument("--noise-aug", type=float, nargs="+", default=[0.0, 0.1], help="SR noise levels to score")
    parser.add_argument("--prompts", type=int, default=12, help="prompts of the quality suite (colour, then count)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps of every stage (default: each's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="benchmarks/results/cascade.json")
    return parser.parse_args(argv)


def super_resolution_psnr(sr: TextToVideoPipeline, clips: int, noise_levels: list[float]) -> list[dict]:
    """PSNR (dB, mean over clips) of the SR stage and of plain upsampling on held-out clips of its size, shrunk by
    its factor."""
    spec, stage = sr.spec, CascadePipeline(super_resolution=sr)
    data = build_dataset(sr.config.data_kind, sr.config.data, HELD_OUT_SEED)
    truth = torch.stack([data[i]["video"] for i in range(clips)])
    small = F.avg_pool3d(truth, (1, stage.sr_factor, stage.sr_factor))
    rows = [{"method": "bilinear (the stage's control)",
             "psnr_db": psnr(low_resolution(truth, stage.sr_factor), truth).mean().item()},
            {"method": "bicubic", "psnr_db": psnr(_bicubic(small, spec.height, spec.width), truth).mean().item()}]
    for level in noise_levels:
        began = time.perf_counter()
        made = stage([""] * clips, video=small, noise_aug=level).video
        rows.append({"method": f"super-resolution stage, noise_aug {level:g}",
                     "psnr_db": psnr(made, truth).mean().item(),
                     "seconds_per_clip": (time.perf_counter() - began) / clips})
    return rows


def _bicubic(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Each frame of [B, C, T, h, w] upsampled bicubically to height x width."""
    b, c, t = video.shape[:3]
    frames = video.transpose(1, 2).flatten(0, 1)
    up = F.interpolate(frames, size=(height, width), mode="bicubic", align_corners=False).clamp(-1, 1)
    return up.view(b, t, c, height, width).transpose(1, 2)


def quality(videos: torch.Tensor, suite: list[dict], reference_roughness: float) -> dict:
    """Colour, count, identity and roughness (over the simulator's) of one video per suite entry."""
    rows = [score_video(video, want) for video, want in zip(videos, suite)]
    one = [r["colour_ok"] for r, w in zip(rows, suite) if w["count"] == 1]
    two = [r["count_ok"] for r, w in zip(rows, suite) if w["count"] == 2]
    return {"colour_accuracy": float(np.mean(one)) if one else float("nan"),
            "two_ball_count_accuracy": float(np.mean(two)) if two else float("nan"),
            "identity_persistence": float(np.nanmean([r["identity_persistence"] for r in rows])),
            "roughness_vs_simulator": float(np.nanmean([r["roughness"] for r in rows])) / reference_roughness}


def equal_parameter_model(pipe: TextToVideoPipeline, parameters: int, frames: int, scale: int):
    """(pipeline of an untrained VideoUNet like `pipe`'s, widened to about `parameters`, making `frames` frames at
    `scale` x its size, its parameter count)."""
    best = None
    for channels in range(pipe.model.config.channels, 4 * pipe.model.config.channels, 8):
        config = with_overrides(pipe.config, [f"model.channels={channels}"])
        model = build_model(config.model_name, config.model)
        count = sum(p.numel() for p in model.parameters())
        if best is None or abs(count - parameters) < abs(best[2] - parameters):
            best = (config, model, count)
        if count > parameters:
            break
    config, model, count = best
    config = with_overrides(config, [f"data.num_frames={frames}", f"data.size={pipe.spec.height * scale}"])
    return TextToVideoPipeline(model, config, text_encoder=pipe.text_encoder), count


def generation(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Rows of the generation table, and the parameter counts."""
    keyframes = TextToVideoPipeline.from_pretrained(args.keyframes)
    interpolation = TextToVideoPipeline.from_pretrained(args.interpolation)
    sr = TextToVideoPipeline.from_pretrained(args.sr)
    suite = [w for w in prompt_suite() if "direction" not in w][:args.prompts]
    prompts, count = [w["prompt"] for w in suite], len(suite)
    steps = dict(steps=args.steps)
    rows, video, fps, spent = [], None, None, 0.0
    stages = [("one stage = keyframes", CascadePipeline(keyframes), 1),
              ("+ interpolation", CascadePipeline(None, interpolation), 1),
              ("+ super-resolution: the cascade", CascadePipeline(super_resolution=sr), 2)]
    params = {"keyframes": sum(p.numel() for p in keyframes.model.parameters()),
              "interpolation": sum(p.numel() for p in interpolation.model.parameters()),
              "super-resolution": sum(p.numel() for p in sr.model.parameters())}
    total = 0
    for (name, stage, scale), part in zip(stages, params.values()):
        began = time.perf_counter()
        result = stage(prompts, video=video, fps=fps, **steps)
        spent += time.perf_counter() - began
        video, fps, total = result.video, result.fps, total + part
        reference = simulator_roughness(keyframes, count, video.shape[2], fps, scale)
        rows.append({"pipeline": name, "shape": list(video.shape[1:]), "fps": fps, "params_m": total / 1e6,
                     **quality(video, suite, reference), "seconds_per_video": spent / count})
    one, one_count = equal_parameter_model(keyframes, total, video.shape[2], 2)
    params["one stage at equal parameters"] = one_count
    began = time.perf_counter()
    made = one(prompts[:2], **steps, progress=False)
    rows.append({"pipeline": "one stage at the cascade's size and parameters (untrained: speed only)",
                 "shape": list(made.shape[1:]), "fps": fps, "params_m": one_count / 1e6,
                 "seconds_per_video": (time.perf_counter() - began) / 2})
    return rows, params


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for row in rows:
        cells = [row.get(c, "n/a") for c in columns]
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    sr = TextToVideoPipeline.from_pretrained(args.sr)
    upsampling = super_resolution_psnr(sr, args.clips, args.noise_aug)
    print(table(upsampling, ["method", "psnr_db", "seconds_per_clip"]))
    rows, params = generation(args)
    print(table(rows, ["pipeline", "shape", "params_m", "colour_accuracy", "two_ball_count_accuracy",
                       "identity_persistence", "roughness_vs_simulator", "seconds_per_video"]))
    report = {"stages": {"keyframes": relative(args.keyframes), "interpolation": relative(args.interpolation),
                         "super_resolution": relative(args.sr)}, "held_out_seed": HELD_OUT_SEED,
              "steps": args.steps, "parameters": params, "super_resolution_psnr": upsampling, "generation": rows,
              "machine": machine_info(torch.device("cpu"))}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
