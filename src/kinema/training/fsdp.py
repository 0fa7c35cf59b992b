"""Fully sharded data parallel training (Zhao et al. 2023, "PyTorch FSDP"; FSDP2 `fully_shard`, through accelerate's
FSDP plugin) with whole-model checkpoints.

Accelerate applies its FSDP plugin only on accelerators: N CPU processes (gloo) asking for FSDP silently run DDP.
`enable_fsdp` applies the plugin there too (FSDP2 runs on CPU), so a sharded run is the same on a laptop and on GPUs.
Kinema's checkpoints stay whole-model files in every case: the full state dicts are gathered to process 0 on save
and loaded back into the shards on resume (torch.distributed.checkpoint.state_dict with full_state_dict=True), so a
checkpoint written by any number of processes resumes in any other number and `kinema export` reads it as it is.
The EMA is a second sharded module with the model's placements: each process averages its own shards.
"""

from __future__ import annotations

from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, parse_flag_from_env
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.optim import Optimizer

from kinema.errors import KinemaError

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on process 0's CPU only
SCATTER = StateDictOptions(full_state_dict=True)                   # every process passes the whole tensors


def enable_fsdp(accelerator: Accelerator) -> bool:
    """Whether this run shards its model with accelerate's FSDP plugin (`ACCELERATE_USE_FSDP`, as `accelerate launch`
    with an FSDP config or `kinema train --fsdp` set it), CPU processes included; FSDP1 and DeepSpeed are refused."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise KinemaError("the accelerate config asks for DeepSpeed, which Kinema's trainer does not support; use "
                          "DDP, or FSDP with fsdp_version: 2")
    if accelerator.distributed_type == DistributedType.MULTI_CPU and parse_flag_from_env("ACCELERATE_USE_FSDP"):
        plugin = FullyShardedDataParallelPlugin()  # from the same FSDP_* variables accelerate reads on GPUs
        if accelerator.mixed_precision != "no":
            plugin.set_mixed_precision(accelerator.mixed_precision)
        # an AcceleratorState made later copies PartialState's type, so both are set, as accelerate does on GPUs
        for state in (accelerator.state, PartialState()):
            state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
    if accelerator.distributed_type != DistributedType.FSDP:
        return False
    if not accelerator.is_fsdp2:
        raise KinemaError(f"the accelerate config asks for FSDP version {accelerator.state.fsdp_plugin.fsdp_version}; "
                          "Kinema trains with FSDP2: set fsdp_version: 2 (FSDP_VERSION=2)")
    return True


def sharded(module: nn.Module) -> bool:
    """True for a module sharded by FSDP2."""
    return isinstance(module, FSDPModule)


def shard_like(copy: nn.Module, model: nn.Module, accelerator: Accelerator) -> None:
    """Shard `copy` (an EMA of `model`) in place over the processes, devices and offload policy of the sharded
    `model`; every parameter gets the same dim-0 placement, so the two are averaged shard by shard."""
    mesh = next(model.parameters()).device_mesh
    fully_shard(copy, mesh=mesh, offload_policy=accelerator.state.fsdp_plugin.cpu_offload)


def full_state_dict(module: nn.Module) -> dict:
    """`module`'s whole state dict; a sharded one is gathered to process 0 (the others get {}), so every process
    must call this."""
    return get_model_state_dict(module, options=GATHER) if sharded(module) else module.state_dict()


def load_full_state_dict(module: nn.Module, state: dict) -> None:
    """Load whole tensors into `module`, sharded or not (each process keeps its own shards)."""
    if sharded(module):
        set_model_state_dict(module, state, options=SCATTER)
    else:
        module.load_state_dict(state)


def full_optimizer_state(model: nn.Module, optimizer: Optimizer) -> dict:
    """The optimizer's whole state in `Optimizer.state_dict()` form (parameters numbered in param-group order), which
    loads in any number of processes; a sharded model's is gathered to process 0 (the others get {})."""
    if not sharded(model):
        return optimizer.state_dict()
    state = get_optimizer_state_dict(model, optimizer, options=GATHER)
    if not state:
        return {}
    names = [name for group in state["param_groups"] for name in group["params"]]
    index = {name: i for i, name in enumerate(names)}
    groups = [{**group, "params": [index[name] for name in group["params"]]} for group in state["param_groups"]]
    return {"state": {index[name]: slots for name, slots in state["state"].items()}, "param_groups": groups}


def load_full_optimizer_state(model: nn.Module, optimizer: Optimizer, state: dict) -> None:
    """Load a whole optimizer state (`Optimizer.state_dict()` form) into the optimizer of `model`, sharded or not."""
    if not sharded(model):
        optimizer.load_state_dict(state)
        return
    name_of = {id(p): name for name, p in model.named_parameters()}
    names = [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]
    groups = [{**group, "params": [names[i] for i in group["params"]]} for group in state["param_groups"]]
    keyed = {"state": {names[int(i)]: slots for i, slots in state["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, keyed, options=SCATTER)
