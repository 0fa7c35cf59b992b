"""Timing and memory harness shared by the model benchmarks (unet_vs_diffusers.py, peers.py).

A model enters as `build(name, args) -> (model, fn)` with `fn(x, t [B] in [0, 1], text, mask) -> output like x`;
`build` must be a module-level function so that a spawned process can rebuild the model. Measured per model:
training steps/s (forward + v-prediction MSE loss + backward + AdamW, timed in turns with the other models),
peak memory of a training step in a fresh process, and seconds per video sampled with DPM-Solver++(2M) and
classifier-free guidance (batch 2 per step), through Kinema's sampler for every model. Every sampled video also
records its network evaluations and their input shape (equal for every model) and the process's CPU seconds next to
wall-clock seconds: on a shared machine wall-clock times of one video swing several-fold with the load (recorded as
the load average), while CPU seconds at `--threads 1` stay comparable.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import diffusers
import torch

from kinema.conditioning.conditioning import Conditioning
from kinema.diffusion import (DiffusionLoss, batched_classifier_free_guidance, build_schedule, get_sampler, time_grid,
                              x0_denoiser)

TEXT_TOKENS, TEXT_DIM = 12, 384
GUIDANCE = 4.0
RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
Build = Callable[[str, argparse.Namespace], tuple]


def kinema_adapter(model) -> Callable:
    """`fn(x, t, text, mask)` for a Kinema denoiser, passing the text mask only to a model that reads one."""
    if "text_mask" in model.conditioning_fields:
        return lambda x, t, text, mask: model(x, t, Conditioning(text=text, text_mask=mask))
    return lambda x, t, text, mask: model(x, t, Conditioning(text=text))


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One model with its optimizer and fixed seeded inputs: timed training steps and sampling runs."""

    def __init__(self, build: Build, name: str, args: argparse.Namespace):
        self.device = torch.device(args.device)
        torch.manual_seed(0)
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
    def sample_video(self, steps: int, seed: int) -> dict:
        """Wall-clock and CPU seconds to sample one video with classifier-free guidance (conditional + null text in
        one batch of 2), and the network evaluations it took with their input shape."""
        self.model.eval()
        synchronize(self.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        text = torch.cat([self.text[:1], self.null_text])
        mask = self.mask[:1].expand(2, -1)
        shapes = []

        def network(x, t):
            shapes.append(list(x.shape))
            return self.fn(x, t, text, mask)
        denoise = x0_denoiser(network, self.schedule, "v")
        generator = torch.Generator(self.device).manual_seed(seed)
        noise = torch.randn((1, *self.video.shape[1:]), generator=generator, device=self.device)
        get_sampler("dpmpp_2m")(batched_classifier_free_guidance(denoise, GUIDANCE), noise,
                                time_grid(self.schedule, steps), self.schedule, generator=generator)
        synchronize(self.device)
        return {"s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start,
                "network_calls": len(shapes), "input_shapes": sorted({tuple(shape) for shape in shapes})}


def peak_memory_mb(build: Build, name: str, args: argparse.Namespace) -> float:
    """MB that two training steps add to the peak footprint after model construction (run in a fresh process)."""
    runner = Runner(build, name, args)
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


def in_fresh_process(build: Build, name: str, args: argparse.Namespace) -> float:
    """`peak_memory_mb` in a newly spawned interpreter, so one model's allocations cannot hide another's."""
    print(f"measuring peak memory of {name} in a fresh process", file=sys.stderr)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(peak_memory_mb, build, name, args).result()


def measure(build: Build, names: tuple[str, ...], args: argparse.Namespace) -> dict:
    """Peak memory per model in fresh processes, then interleaved timings in this process: results per name."""
    # Memory first: Linux carries a parent's peak RSS into a child's ru_maxrss across exec, so the children
    # must start while this process holds no model.
    peak_mb = {name: in_fresh_process(build, name, args) for name in names}
    runners = {name: Runner(build, name, args) for name in names}
    train_s, videos = {name: [] for name in names}, {name: [] for name in names}
    print(f"timing {args.warmup} + {args.steps} training steps per model", file=sys.stderr)
    for step in range(args.warmup + args.steps):
        order = names if step % 2 == 0 else names[::-1]  # alternate who goes first
        for name in order:
            seconds = runners[name].train_step(step)
            if step >= args.warmup:
                train_s[name].append(seconds)
    print(f"timing {args.videos} sampled video(s) per model", file=sys.stderr)
    for i in range(args.videos):
        for name in names if i % 2 == 0 else names[::-1]:
            videos[name].append(runners[name].sample_video(args.sample_steps, seed=i))
    calls = {(v["network_calls"], *v["input_shapes"]) for name in names for v in videos[name]}
    if len(calls) > 1:
        raise RuntimeError(f"the models were sampled with different network calls or shapes: {calls}")
    return {name: {"params": runners[name].params,
                   "train_steps_per_s": len(train_s[name]) / sum(train_s[name]),
                   "peak_mb": peak_mb[name],
                   "s_per_video": sum(v["s"] for v in videos[name]) / len(videos[name]),
                   "cpu_s_per_video": sum(v["cpu_s"] for v in videos[name]) / len(videos[name]),
                   "network_calls_per_video": videos[name][0]["network_calls"],
                   "network_input_shape": videos[name][0]["input_shapes"][0],
                   "train_step_s": train_s[name], "video_s": [v["s"] for v in videos[name]]} for name in names}


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
            "load_average_1_5_15_min": os.getloadavg(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def add_timing_options(parser: argparse.ArgumentParser, **defaults) -> None:
    """The options every model benchmark shares (inputs, step counts, device), with per-script defaults."""
    d = {"batch": 8, "frames": 8, "size": 32, "steps": 20, "warmup": 3, "sample_steps": 25, "videos": 2, **defaults}
    parser.add_argument("--batch", type=int, default=d["batch"], help="training batch size")
    parser.add_argument("--frames", type=int, default=d["frames"])
    parser.add_argument("--size", type=int, default=d["size"], help="height = width in pixels")
    parser.add_argument("--steps", type=int, default=d["steps"], help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=d["warmup"], help="untimed training steps per model first")
    parser.add_argument("--sample-steps", type=int, default=d["sample_steps"], help="sampler steps per video")
    parser.add_argument("--videos", type=int, default=d["videos"], help="videos sampled per model (times are averaged)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: PyTorch's default); 1 keeps "
                        "times comparable on a machine shared with other work")


def check_timing_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject step counts below one."""
    if args.steps < 1 or args.videos < 1 or args.sample_steps < 1:
        parser.error("--steps, --videos and --sample-steps must be at least 1")
    if args.threads < 0:
        parser.error("--threads must be 0 (default) or more")
    if args.threads:
        torch.set_num_threads(args.threads)
