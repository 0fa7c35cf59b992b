"""Training checkpoints: model + EMA + optimizer + RNG + step, as safetensors and JSON, written atomically.

Layout of `OUTPUT/checkpoints/step_000250/`: config.json (config + step), model.safetensors,
ema.safetensors, optimizer.safetensors + trainer_state.json. `OUTPUT/checkpoints/latest` names the
newest complete checkpoint; it is rewritten (atomically) only after that checkpoint is whole.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from kinema.atomic import atomic_directory, write_text_atomic
from kinema.config import Config
from kinema.errors import KinemaError
from kinema.models.pretrained import EMA_WEIGHTS_FILE, WEIGHTS_FILE, load_weights, read_config, write_model_files

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
LATEST_FILE = "latest"


@dataclass
class TrainingState:
    """What a resumed run needs besides the weights."""

    step: int
    generator_state: torch.Tensor   # the loss's noise/caption-dropout generator
    torch_rng_state: torch.Tensor   # the global CPU generator


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step_{step:07d}"


def save_checkpoint(output_dir: str | Path, config: Config, model: nn.Module, ema: nn.Module,
                    optimizer: torch.optim.Optimizer, state: TrainingState, keep: int) -> Path:
    """Write checkpoint `step_N` atomically, point `latest` at it, and delete all but the newest `keep`."""
    path = checkpoint_dir(output_dir, state.step)
    with atomic_directory(path) as tmp:
        write_model_files(tmp, config, model.state_dict(), {"step": state.step})
        save_file({k: v.detach().contiguous().cpu() for k, v in ema.state_dict().items()}, str(tmp / EMA_WEIGHTS_FILE))
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        tensors["rng.generator"] = state.generator_state
        tensors["rng.torch"] = state.torch_rng_state
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        (tmp / STATE_FILE).write_text(json.dumps({"step": state.step, "optimizer": meta}))
    write_text_atomic(path.parent / LATEST_FILE, path.name)
    for old in sorted(path.parent.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = Path(output_dir) / "checkpoints" / LATEST_FILE
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(path: Path, config: Config, model: nn.Module, ema: nn.Module,
                    optimizer: torch.optim.Optimizer) -> TrainingState:
    """Restore weights, EMA and optimizer in place; refuse a checkpoint whose model, data or diffusion differ."""
    saved, _ = read_config(path)
    for section in ("model", "data", "diffusion"):
        ours, theirs = config.to_dict()[section], saved.to_dict()[section]
        changed = sorted(k for k in ours if ours[k] != theirs.get(k))
        if changed:
            raise KinemaError(f"cannot resume from {path}: config key '{section}.{changed[0]}' differs "
                              f"(checkpoint has {theirs.get(changed[0])!r}, config has {ours[changed[0]]!r})")
    model.load_state_dict(load_weights(path / WEIGHTS_FILE))
    ema.load_state_dict(load_weights(path / EMA_WEIGHTS_FILE))
    tensors = load_weights(path / OPTIMIZER_FILE)
    meta = json.loads((path / STATE_FILE).read_text())
    generator_state, torch_state = tensors.pop("rng.generator"), tensors.pop("rng.torch")
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    return TrainingState(step=meta["step"], generator_state=generator_state, torch_rng_state=torch_state)
