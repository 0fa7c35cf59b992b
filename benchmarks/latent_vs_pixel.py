"""Latent vs pixel denoiser at the same output size (chapter 11.4): training steps per second and peak memory of
`configs/balls_latent.yaml` (a VideoUNet on the 5 x 16 x 16 x 4 latents of the configs/vae_balls.yaml autoencoder,
encoding each batch on the fly, or reading cached latents) against a pixel VideoUNet making the same 17 x 64 x 64
videos (configs/balls.yaml's model: a 2x2 stem, widths 48-96-96). Prints a table, writes JSON.

Each variant runs in a freshly spawned process with `--threads` torch threads: `--warmup` steps, then `--steps`
timed training steps (forward, backward, AdamW) at `--batch` clips of physics balls. Speed and memory do not depend
on the weights, so the autoencoder is untrained unless `--autoencoder` names one.
- steps/s: timed steps over their wall time; CPU s/step: the process's CPU time per step (with one thread, what a
  step takes on an idle core whatever else the machine runs);
- peak MB: the process's peak resident memory (ru_maxrss) or, on a GPU, max_memory_allocated.

    python benchmarks/latent_vs_pixel.py                         # one thread, batch 4
    python benchmarks/latent_vs_pixel.py --steps 2 --warmup 1 --batch 1 --json /tmp/latent_smoke.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_timing import machine_info  # noqa: E402

RSS_UNIT = 1 if sys.platform == "darwin" else 1024
VARIANTS = ("pixel", "latent, encoded on the fly", "latent, cached")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="clips per training step")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per variant")
    parser.add_argument("--autoencoder", type=Path, default=None, help="autoencoder directory (default: untrained)")
    parser.add_argument("--json", default="benchmarks/results/latent_vs_pixel.json")
    args = parser.parse_args(argv)
    for name in ("batch", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def _configs(autoencoder: str):
    """(pixel config, latent config) making the same 17 x 64 x 64 videos."""
    from kinema.config import load_config

    latent = load_config(ROOT / "configs" / "balls_latent.yaml", [f"model.autoencoder={autoencoder}"])
    pixel = load_config(ROOT / "configs" / "balls.yaml")
    return replace(pixel, data=latent.data), latent


def _measure(variant: str, autoencoder: str, args: argparse.Namespace) -> dict:
    """Train `variant` for warmup + steps steps in this (spawned) process; its speed and peak memory."""
    from kinema.autoencoder.latent_space import LatentSpace
    from kinema.conditioning.prompts import prompt_conditioning
    from kinema.conditioning.text import TextEncoder
    from kinema.data.registry import build_dataset
    from kinema.diffusion import DiffusionLoss, build_schedule
    from kinema.models.registry import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pixel, latent = _configs(autoencoder)
    config = pixel if variant == "pixel" else latent
    model = build_model(config.model_name, config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = DiffusionLoss(build_schedule("cosine"), "v")
    space = None if variant == "pixel" else LatentSpace.load(autoencoder)
    data = build_dataset("balls", config.data, 0)
    items = [data[i] for i in range(args.batch)]
    video = torch.stack([item["video"] for item in items])
    cond = prompt_conditioning([item["caption"] for item in items], TextEncoder(), model.conditioning_fields)
    cached = space.encode(video) if variant == "latent, cached" else None
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        x0 = video if space is None else cached if cached is not None else space.encode(video, [generator] * len(video))
        optimizer.zero_grad()
        loss_fn(lambda x, t: model(x, t, cond), x0, generator=generator).backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"variant": variant, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "input": list(video.shape if space is None else (len(video), space.channels,
                                                               *space.latent_size(*video.shape[2:]))),
            "steps_per_s": args.steps / wall, "cpu_s_per_step": cpu / args.steps,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT / 2**20}


def run(args: argparse.Namespace) -> dict:
    """Every variant in its own process; the report (also written as JSON)."""
    from kinema.autoencoder import CausalVideoVAE, save_autoencoder
    from kinema.autoencoder.config import load_autoencoder_config

    with tempfile.TemporaryDirectory() as folder:
        autoencoder = args.autoencoder
        if autoencoder is None:
            torch.manual_seed(0)
            vae = CausalVideoVAE(load_autoencoder_config(ROOT / "configs" / "vae_balls.yaml").autoencoder)
            autoencoder = save_autoencoder(Path(folder) / "vae", vae)
        rows = []
        for variant in VARIANTS:  # one at a time: the variants do not share the CPU
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows.append(pool.submit(_measure, variant, str(autoencoder), args).result())
    pixel = rows[0]
    for row in rows:
        row["speedup_vs_pixel"] = row["steps_per_s"] / pixel["steps_per_s"]
        row["cpu_speedup_vs_pixel"] = pixel["cpu_s_per_step"] / row["cpu_s_per_step"]
        row["memory_vs_pixel"] = row["peak_mb"] / pixel["peak_mb"]
    report = {"batch": args.batch, "steps": args.steps, "threads": args.threads,
              "autoencoder": "untrained configs/vae_balls.yaml" if args.autoencoder is None else str(args.autoencoder),
              "machine": machine_info(torch.device("cpu")), "rows": rows}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return report


def table(report: dict) -> str:
    lines = ["| variant | params M | denoiser input | steps/s | CPU s/step | peak MB | CPU speed-up | memory |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['variant']} | {r['params_m']:.2f} | {r['input']} | {r['steps_per_s']:.3f} | "
                     f"{r['cpu_s_per_step']:.2f} | {r['peak_mb']:.0f} | {r['cpu_speedup_vs_pixel']:.2f}x | "
                     f"{r['memory_vs_pixel']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    report = run(parse_args(argv))
    print(table(report))
    return report


if __name__ == "__main__":
    main()
