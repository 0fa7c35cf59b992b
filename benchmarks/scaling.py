"""Scaling: training steps/s and samples/s in 1 and N processes on this machine (gloo CPU processes without CUDA,
one per GPU with it), each process at the same batch (weak scaling, as `kinema train --processes N` runs); on a
CPU each process gets one thread, so N processes use N cores.

Each run starts the processes through `torch.distributed.run`, builds Kinema's `Trainer`, trains `--warmup` steps,
then times `--steps` optimizer steps (no checkpoint writes inside the timing). Prints a table and writes JSON.

    python benchmarks/scaling.py --processes 1 2 --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
CONFIG = HERE.parents[1] / "configs" / "balls.yaml"
MODEL = ["model.channels=16", "model.channel_mult=[1,2]", "model.attention=[temporal,joint]", "model.heads=2",
         "model.norm_groups=4", "model.patch_size=1", "data.num_frames=8", "data.size=32", "train.sample_every=0"]


def worker(out: Path, warmup: int, steps: int, overrides: list[str]) -> None:
    """In each launched process: train `warmup` steps, time `steps` more; rank 0 writes the row to `out`."""
    from kinema.config import load_config
    from kinema.training.trainer import Trainer

    trainer = Trainer(load_config(CONFIG, overrides), progress=False)
    batches = trainer._step_batches()
    for _ in range(warmup):
        trainer._train_step(next(batches))
    trainer.accelerator.wait_for_everyone()
    start = time.perf_counter()
    for _ in range(steps):
        trainer._train_step(next(batches))
    trainer.accelerator.wait_for_everyone()
    seconds = time.perf_counter() - start
    if trainer.accelerator.is_main_process:
        processes, batch = trainer.accelerator.num_processes, trainer.config.train.batch_size
        out.write_text(json.dumps({"processes": processes, "batch_per_process": batch, "steps": steps,
                                   "seconds": round(seconds, 3), "steps_per_s": round(steps / seconds, 3),
                                   "samples_per_s": round(steps * processes * batch / seconds, 2),
                                   "device": trainer.accelerator.device.type}))


def run(processes: int, warmup: int, steps: int, batch: int, folder: Path) -> dict:
    """One launch of `processes` processes; the main process's row."""
    out = folder / f"p{processes}.json"
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    if not torch.cuda.is_available():  # one core per process: N processes use N cores
        env.update(ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    overrides = [*MODEL, f"train.batch_size={batch}", f"train.output_dir={folder / f'run{processes}'}"]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                    str(HERE), "--worker", str(out), "--warmup", str(warmup), "--steps", str(steps), *overrides],
                   env=env, check=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="per process")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE.parent / "results" / "scaling.json")
    args, overrides = parser.parse_known_args()
    if args.worker:
        return worker(args.worker, args.warmup, args.steps, overrides)
    with tempfile.TemporaryDirectory() as folder:
        rows = [run(n, args.warmup, args.steps, args.batch, Path(folder)) for n in args.processes]
    base = rows[0]["samples_per_s"]
    print(f"{'processes':>9} {'batch/proc':>10} {'steps/s':>8} {'samples/s':>9} {'speed-up':>8}")
    for row in rows:
        row["speedup"] = round(row["samples_per_s"] / base, 2)
        print(f"{row['processes']:>9} {row['batch_per_process']:>10} {row['steps_per_s']:>8} "
              f"{row['samples_per_s']:>9} {row['speedup']:>8}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                "torch": torch.__version__}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
