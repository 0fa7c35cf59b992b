"""Benchmark: Kinema's shipped VideoUNet against a parameter-matched diffusers UNet3DConditionModel.

Both models get the same inputs (a video batch [B, 3, T, H, W] in [-1, 1], text tokens [B, 12, 384])
in the same process, and their timing runs are interleaved step by step (alternating which goes
first) so that load on the machine hits both alike. Measured per model:

1. training steps/s: forward + v-prediction MSE loss (kinema.diffusion.DiffusionLoss) + backward + AdamW;
2. peak memory of a training step, each model in a fresh process: the rise of peak RSS
   (ru_maxrss) over the footprint after model construction, or torch.cuda.max_memory_allocated on CUDA;
3. seconds per generated video: DPM-Solver++(2M) sampling of one video with classifier-free
   guidance (batch 2 per step), through Kinema's sampler for both models;
4. parameter counts (the diffusers model is sized to match Kinema's within ~10%).

Kinema's U-Net runs behind a 2x2 space-to-depth stem (configs/balls.yaml, patch_size 2), diffusers'
at full resolution; `--diffusers-patch 2` gives diffusers the same stem to separate the two effects.
diffusers' network (configs/balls_diffusers_unet3d.yaml) runs behind Kinema's adapter
(kinema.models.diffusers_unet3d), which gives it t * 999 as its timestep; its output is read as a
v-prediction (only timing matters).

    python benchmarks/unet_vs_diffusers.py                        # full run: table + JSON
    python benchmarks/unet_vs_diffusers.py --steps 2 --warmup 1 --sample-steps 2 --videos 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from model_timing import add_timing_options, check_timing_options, kinema_adapter, machine_info, measure

from kinema.config import load_config
from kinema.models.registry import build_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("kinema", "diffusers")


def build(name: str, args: argparse.Namespace):
    """The model called `name` and an adapter `fn(x, t [B] in [0, 1], text, mask) -> output like x`."""
    model = build_model(*model_config(name, args))
    return model, kinema_adapter(model)


def model_config(name: str, args: argparse.Namespace) -> tuple[str, object]:
    """Registry name and model config of `name`: configs/balls.yaml, or the parameter-matched diffusers U-Net."""
    if name == "kinema":
        config = load_config(ROOT / "configs" / "balls.yaml")
    else:
        config = load_config(ROOT / "configs" / "balls_diffusers_unet3d.yaml",
                             [f"model.patch_size={args.diffusers_patch}"])
    return config.model_name, config.model


def run(args: argparse.Namespace) -> dict:
    """Both models measured by `model_timing.measure`, plus the Kinema / diffusers ratios."""
    results = measure(build, MODELS, args)
    k, d = results["kinema"], results["diffusers"]
    results["ratio"] = {"params": k["params"] / d["params"],
                        "train_speed": k["train_steps_per_s"] / d["train_steps_per_s"],
                        "peak_memory": k["peak_mb"] / d["peak_mb"] if d["peak_mb"] > 0 else None,
                        "video_speed": d["s_per_video"] / k["s_per_video"]}
    return results


def table(results: dict) -> str:
    """Markdown table of the results, with the Kinema / diffusers ratio row."""
    rows = ["| model | params | train steps/s | peak MB | s/video |", "|---|---|---|---|---|"]
    for name, label in (("kinema", "Kinema VideoUNet"), ("diffusers", "diffusers UNet3DConditionModel")):
        r = results[name]
        rows.append(f"| {label} | {r['params'] / 1e6:.2f}M | {r['train_steps_per_s']:.3f} | {r['peak_mb']:.0f} | "
                    f"{r['s_per_video']:.2f} |")
    q = results["ratio"]
    memory = "n/a" if q["peak_memory"] is None else f"{q['peak_memory']:.2f}x"
    rows.append(f"| Kinema / diffusers | {q['params']:.2f}x | {q['train_speed']:.2f}x | {memory} | "
                f"{q['video_speed']:.2f}x |")
    return "\n".join(rows) + "\n(ratio row: speeds > 1 mean Kinema is faster; params and memory are Kinema's share)"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_options(parser)
    parser.add_argument("--diffusers-patch", type=int, default=1, help="space-to-depth stem for diffusers (1 = none)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "unet_vs_diffusers.json")
    args = parser.parse_args()
    check_timing_options(parser, args)
    if args.size % (4 * args.diffusers_patch) or args.size % 8:
        parser.error(f"--size {args.size} must be divisible by 8 and by 4 x --diffusers-patch")
    return args


def main() -> None:
    args = parse_args()
    results = run(args)
    print(table(results))
    if not 0.9 <= results["ratio"]["params"] <= 1.1:
        print(f"warning: parameter counts differ by more than 10% ({results['ratio']['params']:.2f}x)", file=sys.stderr)
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {"machine": machine_info(torch.device(args.device)), "settings": settings,
              "diffusers_config": asdict(model_config("diffusers", args)[1]), **results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
