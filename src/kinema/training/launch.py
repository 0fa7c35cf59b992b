"""`kinema train --processes N` (and `kinema train-vae`): start N training processes on this machine with PyTorch's elastic launcher.

Each process then builds its `Accelerator` from the launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...):
one process per GPU with NCCL, or, on a machine without CUDA, N CPU processes with gloo (`ACCELERATE_USE_CPU`).
`--fsdp` sets the variables accelerate's FSDP plugin reads (`ACCELERATE_USE_FSDP`, `FSDP_VERSION=2`; other `FSDP_*`
variables, such as `FSDP_RESHARD_AFTER_FORWARD=false` for SHARD_GRAD_OP, pass through from the caller).
`accelerate launch --cpu` would start only one process here: its `--cpu` path runs the script once unless an MPI
hostfile is given, so Kinema calls `torch.distributed.run` itself.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from kinema.errors import KinemaError


def launched() -> bool:
    """True inside a process started by a distributed launcher (torchrun, accelerate launch)."""
    return "LOCAL_RANK" in os.environ


def launch_command(processes: int, train_args: list[str], fsdp: bool = False,
                   command: str = "train") -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run `kinema COMMAND *train_args` (train or train-vae) in `processes`
    local processes, their weights sharded (FSDP2) when `fsdp`."""
    if processes < 1:
        raise KinemaError(f"--processes must be at least 1, got {processes}")
    if fsdp and processes < 2:
        raise KinemaError(f"--fsdp shards the model over processes: give --processes 2 or more, got {processes}")
    gpus = torch.cuda.device_count()
    if 0 < gpus < processes:
        raise KinemaError(f"--processes {processes} asks for more processes than this machine's {gpus} GPU(s)")
    env = dict(os.environ)
    if gpus == 0:
        env.setdefault("ACCELERATE_USE_CPU", "true")  # gloo; and one thread per process unless the user said more
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    if fsdp:
        env.update(ACCELERATE_USE_FSDP="true", FSDP_VERSION="2")
    line = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "kinema.cli", command, *train_args]
    return line, env


def launch(processes: int, train_args: list[str], fsdp: bool = False, command: str = "train") -> int:
    """Run `kinema COMMAND *train_args` in `processes` local processes (sharded when `fsdp`); their exit code."""
    line, env = launch_command(processes, train_args, fsdp, command)
    return subprocess.run(line, env=env).returncode
