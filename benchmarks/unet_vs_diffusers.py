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
import multiprocessing
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import diffusers
import torch

from kinema.conditioning.conditioning import Conditioning
from kinema.config import load_config
from kinema.diffusion import (DiffusionLoss, batched_classifier_free_guidance, build_schedule, get_sampler, time_grid,
                              x0_denoiser)
from kinema.models.registry import build_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("kinema", "diffusers")
TEXT_TOKENS, TEXT_DIM = 12, 384
GUIDANCE = 4.0
RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux


def build(name: str, args: argparse.Namespace):
    """The model called `name` and an adapter `fn(x, t [B] in [0, 1], text, mask) -> output like x`."""
    torch.manual_seed(0)
    model = build_model(*model_config(name, args))
    return model, lambda x, t, text, mask: model(x, t, Conditioning(text=text, text_mask=mask))


def model_config(name: str, args: argparse.Namespace) -> tuple[str, object]:
    """Registry name and model config of `name`: configs/balls.yaml, or the parameter-matched diffusers U-Net."""
    if name == "kinema":
        config = load_config(ROOT / "configs" / "balls.yaml")
    else:
        config = load_config(ROOT / "configs" / "balls_diffusers_unet3d.yaml",
                             [f"model.patch_size={args.diffusers_patch}"])
    return config.model_name, config.model


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One model with its optimizer and fixed seeded inputs: timed training steps and sampling runs."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.device = torch.device(args.device)
        model, fn = build(name, args)
        self.model, self.fn = model.to(self.device), fn
        self.params = sum(p.numel() for p in model.parameters())
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.schedule = build_schedule("cosine")
        self.loss = DiffusionLoss(self.schedule, "v")
        inputs = torch.Generator().manual_seed(1)
        self.video = torch.rand(args.batch, 3, args.frames, args.size, args.size, generator=inputs) * 2 - 1
        self.text = torch.randn(args.batch, TEXT_TOKENS, TEXT_DIM, generator=inputs)
        self.null_text = torch.randn(1, TEXT_TOKENS, TEXT_DIM, generator=inputs)
        self.video, self.text, self.null_text = (v.to(self.device) for v in (self.video, self.text, self.null_text))
        self.mask = torch.ones(args.batch, TEXT_TOKENS, dtype=torch.bool, device=self.device)

    def train_step(self, seed: int) -> float:
        """Seconds for one forward + loss + backward + AdamW step (noise and levels seeded by `seed`)."""
        self.model.train()
        synchronize(self.device)
        start = time.perf_counter()
        generator = torch.Generator(self.device).manual_seed(seed)
        loss = self.loss(lambda x, t: self.fn(x, t, self.text, self.mask), self.video, generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        synchronize(self.device)
        return time.perf_counter() - start

    @torch.no_grad()
    def sample_video(self, steps: int, seed: int) -> float:
        """Seconds to sample one video with classifier-free guidance (conditional + null text in one batch of 2)."""
        self.model.eval()
        synchronize(self.device)
        start = time.perf_counter()
        text = torch.cat([self.text[:1], self.null_text])
        denoise = x0_denoiser(lambda x, t: self.fn(x, t, text, self.mask[:2]), self.schedule, "v")
        generator = torch.Generator(self.device).manual_seed(seed)
        noise = torch.randn((1, *self.video.shape[1:]), generator=generator, device=self.device)
        get_sampler("dpmpp_2m")(batched_classifier_free_guidance(denoise, GUIDANCE), noise,
                                time_grid(self.schedule, steps), self.schedule, generator=generator)
        synchronize(self.device)
        return time.perf_counter() - start


def peak_memory_mb(name: str, args: argparse.Namespace) -> float:
    """MB that two training steps add to the peak footprint after model construction (run in a fresh process)."""
    runner = Runner(name, args)
    if runner.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runner.device)
        baseline = torch.cuda.memory_allocated(runner.device)
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT
    for step in range(2):  # the second step runs with AdamW's state already allocated
        runner.train_step(step)
    if runner.device.type == "cuda":
        return (torch.cuda.max_memory_allocated(runner.device) - baseline) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT - baseline) / 2**20


def in_fresh_process(name: str, args: argparse.Namespace) -> float:
    """`peak_memory_mb` in a newly spawned interpreter, so one model's allocations cannot hide the other's."""
    print(f"measuring peak memory of {name} in a fresh process", file=sys.stderr)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(peak_memory_mb, name, args).result()


def machine_info(device: torch.device) -> dict:
    """Versions, threads and processor of this run."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu, "torch_threads": torch.get_num_threads(),
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def run(args: argparse.Namespace) -> dict:
    """Peak memory per model in fresh processes, then interleaved timings in this process."""
    # Memory first: Linux carries a parent's peak RSS into a child's ru_maxrss across exec, so the children
    # must start while this process holds no model.
    peak_mb = {name: in_fresh_process(name, args) for name in MODELS}
    runners = {name: Runner(name, args) for name in MODELS}
    train_s, video_s = {name: [] for name in MODELS}, {name: [] for name in MODELS}
    print(f"timing {args.warmup} + {args.steps} training steps per model", file=sys.stderr)
    for step in range(args.warmup + args.steps):
        for name in MODELS if step % 2 == 0 else MODELS[::-1]:  # alternate who goes first
            seconds = runners[name].train_step(step)
            if step >= args.warmup:
                train_s[name].append(seconds)
    print(f"timing {args.videos} sampled video(s) per model", file=sys.stderr)
    for i in range(args.videos):
        for name in MODELS if i % 2 == 0 else MODELS[::-1]:
            video_s[name].append(runners[name].sample_video(args.sample_steps, seed=i))
    results = {name: {"params": runners[name].params,
                      "train_steps_per_s": len(train_s[name]) / sum(train_s[name]),
                      "peak_mb": peak_mb[name],
                      "s_per_video": sum(video_s[name]) / len(video_s[name]),
                      "train_step_s": train_s[name], "video_s": video_s[name]} for name in MODELS}
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
    parser.add_argument("--batch", type=int, default=8, help="training batch size")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="height = width in pixels")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps per model first")
    parser.add_argument("--sample-steps", type=int, default=25, help="sampler steps per video")
    parser.add_argument("--videos", type=int, default=2, help="videos sampled per model (times are averaged)")
    parser.add_argument("--diffusers-patch", type=int, default=1, help="space-to-depth stem for diffusers (1 = none)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "unet_vs_diffusers.json")
    args = parser.parse_args()
    if args.steps < 1 or args.videos < 1 or args.sample_steps < 1:
        parser.error("--steps, --videos and --sample-steps must be at least 1")
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
