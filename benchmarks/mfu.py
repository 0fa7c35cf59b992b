"""Benchmark: model FLOP utilisation (MFU) of VideoDiT-B/L training in bf16, with and without torch.compile.

MFU = (FLOPs of one training step x steps per second) / the device's peak dense FLOP/s (PaLM, Chowdhery et al.
2022, appendix B). FLOPs of forward + backward are counted by torch.utils.flop_counter on one step (matmuls,
convolutions and attention; element-wise work is not counted, as in the usual definition); the optimizer step
(AdamW) is timed but not counted. The peak is the data-sheet bf16 dense figure of a known GPU
(`--peak-tflops` for others); on CPU it is measured, as the float32 rate of a large matmul.

    python benchmarks/mfu.py --device cuda                     # VideoDiT-B/2 and L/2, eager and compiled
    python benchmarks/mfu.py --tiny --json /tmp/mfu.json       # CPU: a tiny DiT in float32, to test the script
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
from model_timing import machine_info, synchronize
from torch.utils.flop_counter import FlopCounterMode

from kinema.arch_report import _CPU_ATTENTION
from kinema.conditioning.conditioning import Conditioning
from kinema.models.video_dit import VideoDiT, VideoDiTConfig

ROOT = Path(__file__).resolve().parent.parent
TEXT_TOKENS, TEXT_DIM = 32, 384
# Data-sheet dense bf16 peaks in TFLOP/s (no sparsity), matched against torch.cuda.get_device_name.
GPU_PEAK_TFLOPS = {"H200": 989.5, "H100 SXM": 989.5, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
                   "GH200": 989.5, "B200": 2250.0, "A100": 312.0, "L40S": 362.05, "L4": 121.0, "A10": 125.0}


def gpu_peak_tflops(device: torch.device) -> float | None:
    """The bf16 dense peak of a known GPU by name, or None."""
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_PEAK_TFLOPS.items() if key in name), None)


def cpu_peak_tflops(size: int = 1024, repeats: int = 5) -> float:
    """Measured float32 matmul rate of this CPU (the best of `repeats`), in TFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e12


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build(preset: str, args: argparse.Namespace) -> VideoDiT:
    """A VideoDiT of `preset` ('tiny' = a 2-block width-64 model) with text cross-attention."""
    if preset == "tiny":
        config = VideoDiTConfig(hidden_size=64, depth=2, heads=4, text_dim=TEXT_DIM, positions="rope3d")
    else:
        config = VideoDiTConfig(preset=preset, text_dim=TEXT_DIM, positions="rope3d")
    return VideoDiT(config).to(args.device)


def measure(preset: str, compiled: bool, args: argparse.Namespace) -> dict:
    """FLOPs of one training step, then steps/s and peak memory over `args.steps` timed steps."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build(preset, args).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, generator=generator).to(device)
    t = torch.rand(args.batch, generator=generator).to(device)
    cond = Conditioning(text=torch.randn(args.batch, TEXT_TOKENS, TEXT_DIM, generator=generator)).to(device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())

    def loss_and_backward(net):
        with autocast:
            out = net(x, t, cond)
        out.float().square().mean().backward()

    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        loss_and_backward(model)
    flops = counter.get_total_flops()
    if compiled:
        model.compile()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_and_backward(model)
        optimizer.step()

    for _ in range(args.warmup):  # includes compilation
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    steps_per_s = args.steps / (time.perf_counter() - start)
    return {"model": f"VideoDiT-{preset}", "compiled": compiled, "params": sum(p.numel() for p in model.parameters()),
            "flops_per_step": flops, "steps_per_s": steps_per_s, "samples_per_s": steps_per_s * args.batch,
            "achieved_tflops": flops * steps_per_s / 1e12,
            "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


def table(rows: list[dict], peak: float) -> str:
    """Markdown table of the rows, with MFU against `peak` TFLOP/s."""
    lines = [f"| model | compile | params | TFLOP/step | steps/s | samples/s | TFLOP/s | MFU (peak {peak:.3g} TFLOP/s) |"
             " peak MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        memory = "n/a" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        lines.append(f"| {r['model']} | {'yes' if r['compiled'] else 'no'} | {r['params'] / 1e6:.1f}M | "
                     f"{r['flops_per_step'] / 1e12:.3g} | {r['steps_per_s']:.3g} | {r['samples_per_s']:.3g} | "
                     f"{r['achieved_tflops']:.3g} | {100 * r['mfu']:.1f}% | {memory} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; `--tiny` sets a small CPU run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="B/2,L/2", help="VideoDiT presets, comma-separated ('tiny' on CPU)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="height = width in pixels")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--compile", default="both", choices=("both", "yes", "no"), help="torch.compile the model")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak (default: known / measured)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--tiny", action="store_true", help="tiny DiT, 2x2x16x16 inputs, 1 step, eager (CPU test)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "mfu.json")
    args = parser.parse_args(argv)
    if args.tiny:
        args.presets, args.batch, args.frames, args.size, args.steps, args.warmup = "tiny", 2, 2, 16, 1, 1
        args.compile = "no" if args.compile == "both" else args.compile
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    peak = args.peak_tflops or (gpu_peak_tflops(device) if device.type == "cuda" else cpu_peak_tflops())
    if peak is None:
        sys.exit(f"unknown GPU '{torch.cuda.get_device_name(device)}': give its bf16 peak with --peak-tflops")
    modes = {"both": (False, True), "yes": (True,), "no": (False,)}[args.compile]
    rows = []
    for preset in args.presets.split(","):
        for compiled in modes:
            print(f"measuring VideoDiT-{preset}, compile={compiled}", file=sys.stderr)
            row = measure(preset, compiled, args)
            row["mfu"] = row["achieved_tflops"] / peak
            rows.append(row)
    print(table(rows, peak))
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {"machine": machine_info(device), "settings": settings, "peak_tflops": peak,
              "precision": "bf16 autocast" if device.type == "cuda" else "float32", "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
