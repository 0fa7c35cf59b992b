"""Kill -9 loop: `kinema train` killed with SIGKILL at random moments and resumed each time must end exactly where an
unbroken run ends, with a loadable, finite checkpoint and no temporary folder left behind.

Each round starts `kinema train` (with `--resume` once a checkpoint exists), waits until the run has written a
checkpoint newer than the one it started from, waits a random further 0 to `--max-delay` seconds (so kills land
anywhere: in a step, in a checkpoint write, in a rename) and sends SIGKILL. After `--kills` rounds the run is
resumed to its last step and every tensor of its final checkpoint (weights, EMA, optimizer moments, RNG states)
is compared with an unbroken run's. Prints a table and writes JSON.

    python benchmarks/kill_resume.py --kills 16 --steps 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from kinema.models.pretrained import load_pretrained
from kinema.training.checkpoint import latest_checkpoint, step_checkpoints

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "balls.yaml"
TINY = ["model.channels=8", "model.channel_mult=[1,2]", "model.attention=[temporal,joint]", "model.heads=2",
        "model.norm_groups=4", "model.patch_size=1", "data.num_frames=4", "data.size=16",
        "data.radius_range=[2.0,3.0]", "train.batch_size=2", "train.warmup_steps=2", "train.sample_every=0",
        "train.log_every=1", "train.checkpoint_every=1", "train.keep_checkpoints=2"]


def overrides(output_dir: Path, steps: int) -> list[str]:
    """The tiny run's `key=value` overrides of configs/balls.yaml."""
    return [*TINY, f"train.steps={steps}", f"train.output_dir={output_dir}"]


def command(output_dir: Path, steps: int, resume: bool) -> list[str]:
    return [sys.executable, "-m", "kinema.cli", "train", str(CONFIG), *overrides(output_dir, steps),
            *(["--resume"] if resume else [])]


def environment(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def newest_step(output_dir: Path) -> int:
    found = latest_checkpoint(output_dir)
    return int(found.name[5:]) if found else 0


def leftovers(output_dir: Path) -> list[str]:
    """Temporary files and folders of checkpoint writes in the run's checkpoint folder."""
    folder = output_dir / "checkpoints"
    return sorted(p.name for p in folder.glob(".*")) if folder.is_dir() else []


def train_to_end(output_dir: Path, steps: int, threads: int) -> None:
    """Run (or resume) `kinema train` to its last step; raise with its stderr when it fails."""
    resume = latest_checkpoint(output_dir) is not None
    done = subprocess.run(command(output_dir, steps, resume), env=environment(threads), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kinema train exited with {done.returncode}: {done.stderr.strip()[-2000:]}")


def kill_loop(output_dir: Path, steps: int, kills: int, max_delay: float, seed: int, threads: int) -> list[dict]:
    """`kills` rounds of start (or resume), wait for a new checkpoint and a random delay, SIGKILL."""
    rng, rounds = random.Random(seed), []
    for _ in range(kills):
        start = newest_step(output_dir)
        if start >= steps:
            break
        process = subprocess.Popen(command(output_dir, steps, start > 0), env=environment(threads),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and newest_step(output_dir) == start:
            time.sleep(0.02)
        delay = rng.uniform(0, max_delay)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        rounds.append({"started_at_step": start, "delay_s": round(delay, 3), "killed": process.returncode == -9,
                       "checkpoint_step_after": newest_step(output_dir), "leftovers": len(leftovers(output_dir))})
    return rounds


def compare(straight: Path, resumed: Path) -> dict:
    """How many of the final checkpoints' tensors differ, whether the resumed one loads, and its leftovers."""
    a, b = latest_checkpoint(straight), latest_checkpoint(resumed)
    tensors = {f.name: (load_file(str(f)), load_file(str(b / f.name))) for f in sorted(a.glob("*.safetensors"))}
    total = sum(len(x) for x, _ in tensors.values())
    differ = sum(not torch.equal(x[k], y[k]) for x, y in tensors.values() for k in x)
    model, _, _ = load_pretrained(b)  # raises on missing, corrupt or non-finite weights
    finite = all(torch.isfinite(p).all() for p in model.parameters())
    return {"final_step": int(b.name[5:]), "tensors": total, "tensors_differing": differ, "loads_and_finite": finite,
            "leftovers": leftovers(resumed), "checkpoints_kept": [p.name for p in step_checkpoints(resumed)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--max-delay", type=float, default=1.0, help="seconds after a new checkpoint to kill within")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of each kinema process")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / f"{Path(__file__).stem}.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        straight, killed = Path(work) / "straight", Path(work) / "killed"
        started = time.perf_counter()
        train_to_end(straight, args.steps, args.threads)
        rounds = kill_loop(killed, args.steps, args.kills, args.max_delay, args.seed, args.threads)
        train_to_end(killed, args.steps, args.threads)
        result = compare(straight, killed)
        seconds = time.perf_counter() - started
    print("| round | resumed from step | kill delay s | killed | checkpoint step after | temp folders |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(rounds, 1):
        print(f"| {i} | {r['started_at_step']} | {r['delay_s']} | {r['killed']} | {r['checkpoint_step_after']} | "
              f"{r['leftovers']} |")
    print(f"\nfinal step {result['final_step']}: {result['tensors_differing']} of {result['tensors']} tensors differ "
          f"from the unbroken run; loads and finite: {result['loads_and_finite']}; temp folders left: "
          f"{len(result['leftovers'])}; {seconds:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"kills": len([r for r in rounds if r["killed"]]), "steps": args.steps,
                                    "seed": args.seed, "rounds": rounds, **result, "seconds": round(seconds, 1),
                                    "machine": {"cpu": platform.processor() or platform.machine(),
                                                "cores": os.cpu_count(), "torch": torch.__version__}}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
