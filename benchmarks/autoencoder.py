"""The causal video autoencoder through its chunked path: seconds per frame and peak memory by video length (flat
memory: the issue's target is <= 1.2x the 17-frame peak at 1025 frames), and with --checkpoint the reconstruction
quality of a trained one on held-out synthetic clips. Prints a table, writes JSON.

Speed and memory do not depend on the weights, so they are measured on an untrained autoencoder (the default
`CausalVAEConfig`, seed 0) at 64x64 unless --checkpoint names one. Each length runs in a freshly spawned process
with one torch thread: frames are made on the fly and never stored, each chunk of `--chunk` latent frames is
encoded (posterior mode) and decoded, and only running sums are kept, so the process's memory is the autoencoder's.
- enc / dec ms per frame: wall time of the encoder / decoder calls over the frames; CPU ms: the process's CPU time
  for the same calls (with one thread, what they would take on an idle core, whatever else the machine runs);
- peak MB: the process's peak resident memory (CPU: ru_maxrss; CUDA: max_memory_allocated); added MB: that peak
  minus the footprint after the model is built and one 17-frame chunk has warmed it up. On Linux the spawned process
  runs with glibc's mmap threshold fixed at 128 KiB (MALLOC_MMAP_THRESHOLD_): otherwise glibc raises it as tensors
  are freed, keeps their memory in its heap, and the resident size wanders by +-100 MB with the allocation history
  rather than with live memory.
Quality (--checkpoint): `--clips` clips of 1 + k*n frames per dataset (balls, digits, camera; seed 987654, which
training runs, seeded from 0 by default, do not draw), reconstructed chunk by chunk from the posterior mode:
frame PSNR / SSIM (kinema.metrics.frame) and the flicker of the reconstructions next to the originals' flicker
(kinema.metrics.temporal; a ratio above 1 means the autoencoder adds flicker). Balls keep their size relative to
the frame (the 32x32 set's radii times size / 32, as configs/vae_balls.yaml trains on). Next to each PSNR stands
the floor: the PSNR of the clip's background alone (every pixel its per-channel median), which an autoencoder
that has learned nothing but the background already scores; on sparse clips it is high (about 16 dB on the
64x64 balls, more with small balls).

    python benchmarks/autoencoder.py                                   # 17 vs 1025 frames, untrained, 64x64
    python benchmarks/autoencoder.py --checkpoint src/kinema/pretrained/balls_vae --frames 17 --clips 16 \
        --json benchmarks/results/autoencoder_balls_vae.json
    python benchmarks/autoencoder.py --frames 5 9 --size 16 --json /tmp/autoencoder_smoke.json   # smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from kinema.autoencoder import CausalVAEConfig, CausalVideoVAE, iter_reconstruct, load_autoencoder
from kinema.autoencoder.streaming import ChunkDecoder, iter_encode
from kinema.data.registry import DATASETS, build_dataset
from kinema.metrics.frame import psnr, ssim
from kinema.metrics.temporal import temporal_scores
from kinema.video import as_rgb

RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
HELD_OUT_SEED = 987654
QUALITY_SETS = ("balls", "digits", "camera")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="autoencoder directory (default: untrained)")
    parser.add_argument("--frames", nargs="+", type=int, default=[17, 1025], help="video lengths (1 + k*n)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width")
    parser.add_argument("--chunk", type=int, default=4, help="latent frames per chunk")
    parser.add_argument("--clips", type=int, default=16, help="held-out clips per dataset (with --checkpoint)")
    parser.add_argument("--clip-frames", type=int, default=17, help="frames per quality clip (1 + k*n)")
    parser.add_argument("--datasets", nargs="+", default=list(QUALITY_SETS), choices=QUALITY_SETS,
                        help="synthetic sets for the quality scores")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/autoencoder.json"))
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> CausalVideoVAE:
    """The autoencoder under test, in eval mode on the device."""
    if args.checkpoint is not None:
        return load_autoencoder(args.checkpoint)[0].to(args.device)
    torch.manual_seed(0)
    return CausalVideoVAE(CausalVAEConfig()).eval().to(args.device)


def _peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT / 2**20


def stream(args: argparse.Namespace, frames: int) -> dict:
    """Encode and decode one video of `frames` frames chunk by chunk, made frame by frame: times and memory."""
    torch.set_num_threads(args.threads)
    vae = load(args)
    generator = torch.Generator().manual_seed(0)

    def video(count: int):
        for _ in range(count):
            yield (torch.rand(1, 3, 1, args.size, args.size, generator=generator) * 2 - 1).to(args.device)

    for _ in iter_reconstruct(vae, video(1 + 4 * vae.temporal_factor), args.chunk):  # warm-up, not counted
        pass
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    footprint = _peak_mb(args.device)
    decode, count, checksum = ChunkDecoder(vae), 0, 0.0
    wall, cpu = {"encode": 0.0, "decode": 0.0}, {"encode": 0.0, "decode": 0.0}
    posteriors = iter_encode(vae, video(frames), args.chunk)

    def timed(part: str, work):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work()
        wall[part] += time.perf_counter() - started
        cpu[part] += time.process_time() - started_cpu
        return result

    while (posterior := timed("encode", lambda: next(posteriors, None))) is not None:
        piece = timed("decode", lambda: decode(posterior.mode()))
        checksum += float(piece.float().mean())  # keeps the work honest (synchronises on CUDA)
        count += piece.shape[2]
    peak = _peak_mb(args.device)
    return {"frames": count, "enc_ms_per_frame": 1000 * wall["encode"] / count,
            "dec_ms_per_frame": 1000 * wall["decode"] / count, "enc_cpu_ms_per_frame": 1000 * cpu["encode"] / count,
            "dec_cpu_ms_per_frame": 1000 * cpu["decode"] / count, "peak_mb": peak, "added_mb": peak - footprint}


def in_fresh_process(args: argparse.Namespace, frames: int) -> dict:
    """`stream` in a newly spawned interpreter, so that its peak memory is its own."""
    print(f"streaming {frames} frames", file=sys.stderr)
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")  # read by glibc when the spawned process starts
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(stream, args, frames).result()


def quality_config(kind: str, args: argparse.Namespace):
    """The held-out set's config at the benchmark's size and length (balls: radii scaled with the size)."""
    config_class = DATASETS[kind].config_class
    if kind != "balls":
        return config_class(num_frames=args.clip_frames, size=args.size)
    default = config_class()
    scale = args.size / default.size
    return config_class(num_frames=args.clip_frames, size=args.size,
                        radius_range=tuple(r * scale for r in default.radius_range))


def background(video: Tensor) -> Tensor:
    """The flat video of `video`'s per-channel median: what an autoencoder that knows only the background makes."""
    median = video.transpose(0, 1).flatten(1).median(dim=1).values
    return median.view(1, -1, 1, 1, 1).expand_as(video)


def quality(args: argparse.Namespace, vae: CausalVideoVAE) -> dict:
    """PSNR, SSIM and flicker of chunked reconstructions of held-out clips, per dataset."""
    report = {}
    for kind in args.datasets:
        dataset = build_dataset(kind, quality_config(kind, args), seed=HELD_OUT_SEED)
        scores = {"psnr": [], "psnr_background": [], "ssim": [], "flicker": [], "flicker_original": []}
        for index in range(args.clips):
            clip = as_rgb(dataset[index]["video"])[None].to(args.device)
            pieces = list(iter_reconstruct(vae, clip, args.chunk))
            original = torch.cat([p[0] for p in pieces], 2).cpu()
            rebuilt = torch.cat([p[1] for p in pieces], 2).clamp(-1, 1).cpu()
            scores["psnr"].append(psnr(rebuilt, original).item())
            scores["psnr_background"].append(psnr(background(original), original).item())
            scores["ssim"].append(ssim(rebuilt, original).item())
            scores["flicker"].append(temporal_scores(rebuilt)["flicker"].item())
            scores["flicker_original"].append(temporal_scores(original)["flicker"].item())
        means = {k: sum(v) / len(v) for k, v in scores.items()}
        means["flicker_ratio"] = means["flicker"] / max(means["flicker_original"], 1e-12)
        report[kind] = means
    return report


def table(report: dict) -> str:
    """Markdown tables of the numbers."""
    lines = ["| frames | enc ms/frame | dec ms/frame | enc CPU ms/frame | dec CPU ms/frame | peak MB | added MB |",
             "|---|---|---|---|---|---|---|"]
    for row in report["streaming"]:
        lines.append(f"| {row['frames']} | {row['enc_ms_per_frame']:.1f} | {row['dec_ms_per_frame']:.1f} | "
                     f"{row['enc_cpu_ms_per_frame']:.1f} | {row['dec_cpu_ms_per_frame']:.1f} | {row['peak_mb']:.0f} | "
                     f"{row['added_mb']:.0f} |")
    lines.append(f"\npeak memory at {report['streaming'][-1]['frames']} frames / at {report['streaming'][0]['frames']}"
                 f": {report['peak_ratio']:.3f}")
    if report.get("quality"):
        lines += ["", "| data | PSNR dB | background alone dB | SSIM | flicker | original flicker | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for kind, row in report["quality"].items():
            lines.append(f"| {kind} | {row['psnr']:.2f} | {row['psnr_background']:.2f} | {row['ssim']:.4f} | "
                         f"{row['flicker']:.4f} | "
                         f"{row['flicker_original']:.4f} | {row['flicker_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    vae = load(args)
    report = {
        "config": vae.config.to_dict(), "parameters": sum(p.numel() for p in vae.parameters()),
        "checkpoint": str(args.checkpoint) if args.checkpoint else None, "size": args.size, "chunk": args.chunk,
        "threads": args.threads, "device": args.device,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__},
        "streaming": [in_fresh_process(args, frames) for frames in args.frames],
    }
    report["peak_ratio"] = report["streaming"][-1]["peak_mb"] / report["streaming"][0]["peak_mb"]
    if args.checkpoint is not None:
        torch.set_num_threads(args.threads)
        report["quality"] = quality(args, vae)
    print(table(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
