"""Two CPU processes (gloo) under torchrun: every rank's generators are saved, each in its own file, and a two-process
run stopped and resumed ends exactly where the unbroken one does."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from conftest import TINY_OVERRIDES
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def train_two_processes(output_dir: Path, *args: str) -> str:
    """`kinema train` in two gloo processes; its stdout."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "kinema.cli", "train", "configs/balls.yaml", *TINY_OVERRIDES, "train.steps=2",
                           "train.checkpoint_every=1", f"train.output_dir={output_dir}", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_two_processes_save_every_ranks_generators_and_resume_exactly(tmp_path):
    stdout = train_two_processes(tmp_path / "unbroken")
    assert stdout.count("done: ") == 1  # printed once, by the main process
    final = tmp_path / "unbroken/checkpoints/step_0000002"
    ranks = [load_file(str(final / f"rng_rank{rank}.safetensors")) for rank in (0, 1)]
    assert not (final / "rng_rank2.safetensors").exists()
    assert set(ranks[0]) == set(ranks[1]) == {"torch"}  # noise comes from per-sample generators keyed on the step

    stopped = tmp_path / "stopped/checkpoints"  # the same run, as if it had stopped after step 1
    shutil.copytree(tmp_path / "unbroken/checkpoints/step_0000001", stopped / "step_0000001")
    (stopped / "latest").write_text("step_0000001")
    train_two_processes(tmp_path / "stopped", "--resume")
    for file in sorted(final.glob("*.safetensors")):
        a, b = load_file(str(file)), load_file(str(stopped / "step_0000002" / file.name))
        assert [k for k in a if not torch.equal(a[k], b[k])] == [], file.name
