"""Benchmark: better samples at equal training time? Two models trained for the same minutes, then scored.

`--pair unet` (default): Kinema's VideoUNet against a parameter-matched diffusers U-Net, configs/balls.yaml and
configs/balls_diffusers_unet3d.yaml (diffusers' UNet3DConditionModel, 4.67M parameters against 4.80M).
`--pair latent` (chapter 11.4): the latent model of configs/balls_latent.yaml (its denoiser on the shipped
autoencoder's latents) against configs/balls.yaml's pixel model making the same 17 x 64 x 64 videos of the same data.

Each model is trained by `kinema train` in a fresh process for the same wall-clock minutes
(train.time_limit_minutes), one after the other, never at once. Data, diffusion, optimiser, batch and EMA are the
same; train.steps is set out of reach, so the
time limit ends both runs and the learning rate stays near its peak after warm-up. The EMA decay is
shortened (--ema-decay 0.98: a horizon of ~50 steps) so that the slower model's few hundred steps are not
still averaged with its initial weights. The EMA weights of
each final checkpoint are then scored as in shipped_model_quality.py (colour, count, direction,
identity over prompts x seeds, roughness over the simulator's), sampled with each model's own sample defaults.

Per model: minutes trained, steps done, steps/s, final loss (the mean training loss over the last 10%
of steps, from TensorBoard; latent and pixel losses are not comparable) and the scores; then a row of the first
model against the second (ratios for steps, differences for scores).

    python benchmarks/equal_time_quality.py                                     # full run: 10 minutes per model
    python benchmarks/equal_time_quality.py --pair latent --minutes 20 \
        --json benchmarks/results/latent_vs_pixel_quality.json
    python benchmarks/equal_time_quality.py --minutes 0.1 --seeds 1 --prompts-per-family 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from shipped_model_quality import SCORES, evaluate, family_of, prompt_suite, relative, simulator_roughness
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from unet_vs_diffusers import machine_info

from kinema.conditioning.text import TextEncoder
from kinema.models.pretrained import read_config
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.training.checkpoint import latest_checkpoint

ROOT = Path(__file__).resolve().parent.parent
LATENT_DATA = ["data.num_frames=17", "data.size=64", "data.radius_range=[6.0,9.0]"]  # configs/balls_latent.yaml's
PAIRS = {  # name: {model: (config, overrides, label)}, the first model compared against the second
    "unet": {"kinema": (ROOT / "configs" / "balls.yaml", [], "Kinema VideoUNet"),
             "diffusers": (ROOT / "configs" / "balls_diffusers_unet3d.yaml", [], "diffusers UNet3DConditionModel")},
    "latent": {"latent": (ROOT / "configs" / "balls_latent.yaml", [], "latent VideoUNet (shipped autoencoder)"),
               "pixel": (ROOT / "configs" / "balls.yaml", LATENT_DATA, "pixel VideoUNet (2x2 stem)")},
}

def train(name: str, args: argparse.Namespace) -> tuple[Path, float]:
    """Run `kinema train` for `name` in a fresh process until its time limit; returns its output directory and the
    process's wall-clock minutes (start-up included)."""
    config, overrides, _ = PAIRS[args.pair][name]
    if name == "diffusers":
        overrides = [*overrides, f"model.patch_size={args.diffusers_patch}"]
    output = args.output_dir / name
    command = [sys.executable, "-m", "kinema.cli", "train", str(config), f"train.time_limit_minutes={args.minutes}",
               "train.steps=100000", f"train.output_dir={output}", "train.sample_every=0",
               "train.checkpoint_every=1000000", "train.log_every=1", f"train.ema_decay={args.ema_decay}", *overrides]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="") if args.device == "cpu" else None
    print(f"training {name} for {args.minutes:g} minutes: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    if subprocess.run(command, env=env).returncode:
        sys.exit(f"kinema train failed for {name}")
    return output, (time.perf_counter() - started) / 60


def training_stats(output: Path) -> dict:
    """Steps, steps/s, minutes trained and final loss of a finished run, from its checkpoint and TensorBoard."""
    checkpoint = latest_checkpoint(output)
    steps = read_config(checkpoint)[1]["step"]
    events = EventAccumulator(str(output / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    rate = events.Scalars("train/steps_per_second")[-1].value  # logged every step: steps / seconds since the start
    losses = [e.value for e in events.Scalars("train/loss") if e.step > 0.9 * steps]
    return {"checkpoint": relative(checkpoint), "steps": steps, "steps_per_s": rate,
            "minutes_trained": steps / rate / 60, "final_loss": float(np.mean(losses))}


def quality(checkpoint: Path, args: argparse.Namespace, suite: list[dict],
            text_encoder: TextEncoder) -> tuple[int, dict]:
    """Parameters and shipped_model_quality scores of a checkpoint's EMA weights with its own sample defaults."""
    pipe = TextToVideoPipeline.from_pretrained(checkpoint, device=args.device, text_encoder=text_encoder)
    defaults = pipe.config.sample
    scores = evaluate(pipe, defaults.guidance, defaults.steps, defaults.sampler, args.seeds, suite,
                      reference_roughness=simulator_roughness(pipe, len(suite) * args.seeds))
    return sum(p.numel() for p in pipe.model.parameters()), scores


def reduced_suite(per_family: int) -> list[dict]:
    """The first `per_family` prompts of each family of the quality suite (0 = all of them)."""
    kept, counts = [], {}
    for want in prompt_suite():
        counts[family_of(want)] = counts.get(family_of(want), 0) + 1
        if not per_family or counts[family_of(want)] <= per_family:
            kept.append(want)
    return kept


def run(args: argparse.Namespace) -> dict:
    """Train both models one after the other, then score both."""
    training, models = {}, list(PAIRS[args.pair])
    for name in models:
        output, wall_minutes = train(name, args)
        training[name] = {"wall_minutes": wall_minutes, **training_stats(output)}
    suite, text_encoder = reduced_suite(args.prompts_per_family), TextEncoder()
    results = {}
    for name in models:
        print(f"scoring {name}: {len(suite)} prompts x {args.seeds} seeds", file=sys.stderr, flush=True)
        params, scores = quality(latest_checkpoint(args.output_dir / name), args, suite, text_encoder)
        results[name] = {"params": params, "training": training[name], "quality": scores}
    k, d = results[models[0]], results[models[1]]
    kt, dt = k["training"], d["training"]
    results[f"{models[0]}_vs_{models[1]}"] = {
        "params": k["params"] / d["params"], "steps": kt["steps"] / dt["steps"],
        "steps_per_s": kt["steps_per_s"] / dt["steps_per_s"], "final_loss": kt["final_loss"] - dt["final_loss"],
        **{key: k["quality"][key] - d["quality"][key] for key in SCORES}}
    return results


def table(results: dict, pair: str) -> str:
    """Markdown table: one row per model, then the first against the second (ratios for size and speed, else
    differences)."""
    rows = ["| model | params | minutes | steps | steps/s | final loss | " + " | ".join(SCORES.values()) + " |",
            "|---" * (6 + len(SCORES)) + "|"]
    models = PAIRS[pair]
    for name, (_, _, label) in models.items():
        r, q = results[name]["training"], results[name]["quality"]
        rows.append(f"| {label} | {results[name]['params'] / 1e6:.2f}M | {r['minutes_trained']:.2f} | {r['steps']} | "
                    f"{r['steps_per_s']:.3f} | {r['final_loss']:.4f} | "
                    + " | ".join(f"{q[key]:.2f}" for key in SCORES) + " |")
    first, second = models
    q = results[f"{first}_vs_{second}"]
    rows.append(f"| {first} vs {second} | {q['params']:.2f}x | | {q['steps']:.2f}x | {q['steps_per_s']:.2f}x | "
                f"{q['final_loss']:+.4f} | " + " | ".join(f"{q[key]:+.2f}" for key in SCORES) + " |")
    return "\n".join(rows) + "\n(last row: ratios for params, steps and steps/s; differences for loss and scores)"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", default="unet", choices=list(PAIRS), help="the two models (module docstring)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes per model")
    parser.add_argument("--seeds", type=int, default=2, help="videos sampled per prompt")
    parser.add_argument("--prompts-per-family", type=int, default=0,
                        help="score only the first N prompts of each family (colour, count, direction; 0 = all 16)")
    parser.add_argument("--ema-decay", type=float, default=0.98, help="train.ema_decay of both runs")
    parser.add_argument("--diffusers-patch", type=int, default=1, help="space-to-depth stem for diffusers (1 = none)")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="training runs go to OUTPUT_DIR/<model> (default: runs/equal_time_quality/<time>)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="for training and sampling")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "equal_time_quality.json")
    args = parser.parse_args()
    if args.minutes <= 0 or args.seeds < 1 or args.prompts_per_family < 0:
        parser.error("--minutes and --seeds must be positive, --prompts-per-family at least 0")
    args.output_dir = args.output_dir or ROOT / "runs" / "equal_time_quality" / time.strftime("%Y%m%d-%H%M%S")
    taken = [str(args.output_dir / name) for name in PAIRS[args.pair] if (args.output_dir / name).exists()]
    if taken:
        parser.error(f"{', '.join(taken)} already exist: remove them or pass another --output-dir")
    return args


def main() -> None:
    args = parse_args()
    results = run(args)
    print(table(results, args.pair))
    settings = {key: relative(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {"machine": machine_info(torch.device(args.device)), "settings": settings, **results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
