"""Training checkpoints: model + EMA + optimizer + per-rank RNG + step, as safetensors and JSON, written atomically.

Layout of `OUTPUT/checkpoints/step_0000250/`: config.json (config + step), model.safetensors, ema.safetensors,
optimizer.safetensors, rng_rank{N}.safetensors (one per process) and trainer_state.json (step, run id, optimizer
hyper-parameters, loss scaler). `OUTPUT/checkpoints/latest` names the newest complete checkpoint; it is rewritten
(atomically) only after that checkpoint is whole. Every checkpoint carries the id of its run, so pruning deletes
only older checkpoints of the same run, never anything else in the folder.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file
from torch import nn

from kinema.atomic import atomic_directory, remove_leftovers, write_text_atomic
from kinema.config import Config
from kinema.errors import KinemaError
from kinema.models.pretrained import (CONFIG_FILE, EMA_WEIGHTS_FILE, WEIGHTS_FILE, first_non_finite, load_weights,
                                      read_config, write_model_files)
from kinema.training.fsdp import load_full_optimizer_state, load_full_state_dict

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
LATEST_FILE = "latest"
STEP_PATTERN = re.compile(r"step_(\d+)")


def rng_file(rank: int) -> str:
    """The file holding process `rank`'s random generator states."""
    return f"rng_rank{rank}.safetensors"


@dataclass
class TrainingState:
    """What a resumed run needs besides the weights."""

    step: int
    run_id: str                                   # the run this checkpoint belongs to (pruning stays inside it)
    rng: list[dict[str, torch.Tensor]]            # per process: named generator states ("torch", "cuda")
    scaler: dict | None = None                    # fp16 loss scaler state (torch.amp.GradScaler.state_dict())


class NonFiniteWeights(KinemaError):
    """A checkpoint would hold NaN or infinite weights."""


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


def checkpoints_folder(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return checkpoints_folder(output_dir) / f"step_{step:07d}"


def _read_state(path: Path) -> dict:
    """trainer_state.json of a checkpoint, with a one-line error when it is missing or corrupt."""
    file = path / STATE_FILE
    if not file.is_file():
        raise KinemaError(f"checkpoint {path} is incomplete: {STATE_FILE} is missing")
    try:
        meta = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KinemaError(f"checkpoint {path} is corrupt: {file} is not JSON") from None
    if not (isinstance(meta, dict) and isinstance(meta.get("step"), int) and isinstance(meta.get("optimizer"), dict)):
        raise KinemaError(f"checkpoint {path} is corrupt: {file} lacks 'step' or 'optimizer'")
    return meta


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` is not a complete training checkpoint (one line), or None when it is."""
    for name in (CONFIG_FILE, WEIGHTS_FILE, EMA_WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE):
        if not (path / name).is_file():
            return f"checkpoint {path} is incomplete: {name} is missing"
    try:
        _read_state(path)
    except KinemaError as error:
        return str(error)
    return None


def step_checkpoints(output_dir: str | Path) -> list[Path]:
    """Every `step_N` folder of a run, oldest step first."""
    folder = checkpoints_folder(output_dir)
    found = [p for p in folder.glob("step_*") if STEP_PATTERN.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def save_checkpoint(output_dir: str | Path, config: Config, model: nn.Module | dict, ema: nn.Module | dict,
                    optimizer: torch.optim.Optimizer | dict, state: TrainingState, keep: int,
                    write_model: Callable | None = None) -> Path:
    """Write checkpoint `step_N` atomically, point `latest` at it, and delete all but the newest `keep` checkpoints
    of the same run (never the one just written); refuse non-finite weights. Model, EMA and optimizer may be given
    as their whole state dicts (gathered from sharded processes). `write_model(dir, config, weights, metadata)`
    writes config.json and the weights (default: a denoiser's `write_model_files`)."""
    weights, averaged, optimizer_state = (part if isinstance(part, dict) else part.state_dict()
                                          for part in (model, ema, optimizer))
    for name, tensors in (("model", weights), ("EMA", averaged)):
        bad = first_non_finite(tensors)
        if bad:
            raise NonFiniteWeights(f"refusing to save step {state.step}: {name} weight '{bad}' is not finite")
    path = checkpoint_dir(output_dir, state.step)
    with atomic_directory(path) as tmp:
        (write_model or write_model_files)(tmp, config, weights, {"step": state.step})
        save_file({k: v.detach().contiguous().cpu() for k, v in averaged.items()}, str(tmp / EMA_WEIGHTS_FILE))
        tensors, meta = _flatten_optimizer(optimizer_state)
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        for rank, generators in enumerate(state.rng):
            save_file({k: v.contiguous().cpu() for k, v in generators.items()}, str(tmp / rng_file(rank)))
        (tmp / STATE_FILE).write_text(json.dumps({"step": state.step, "run": state.run_id, "processes": len(state.rng),
                                                  "scaler": state.scaler, "optimizer": meta}))
    write_text_atomic(path.parent / LATEST_FILE, path.name)
    _prune(output_dir, path, state.run_id, keep)
    return path


def _run_of(path: Path) -> str | None:
    try:
        return _read_state(path).get("run")
    except KinemaError:
        return None


def _prune(output_dir: str | Path, written: Path, run_id: str, keep: int) -> None:
    """Delete this run's checkpoints other than `written` and the newest `keep - 1` before it."""
    ours = [p for p in step_checkpoints(output_dir) if p != written and _run_of(p) == run_id]
    for old in ours[:max(0, len(ours) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def _pointed(output_dir: str | Path) -> Path | None:
    """The checkpoint `latest` names, if the pointer file is readable."""
    pointer = checkpoints_folder(output_dir) / LATEST_FILE
    try:
        name = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return pointer.parent / name if STEP_PATTERN.fullmatch(name) else None


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run: the one `latest` names, or when that is missing, corrupt or names
    an incomplete folder, the complete checkpoint with the highest step; None when there is none."""
    pointed = _pointed(output_dir)
    if pointed is not None and checkpoint_problem(pointed) is None:
        return pointed
    complete = [p for p in step_checkpoints(output_dir) if checkpoint_problem(p) is None]
    return complete[-1] if complete else None


def resume_checkpoint(output_dir: str | Path) -> tuple[Path, str | None]:
    """The checkpoint `--resume` continues from, and a note when it is not the one `latest` names; a one-line
    error when the run has no complete checkpoint."""
    path = latest_checkpoint(output_dir)
    if path is None:
        found = step_checkpoints(output_dir)
        reason = f" ({checkpoint_problem(found[-1])})" if found else ""
        raise KinemaError(f"--resume: no checkpoint to continue from in {checkpoints_folder(output_dir)}{reason}")
    pointed = _pointed(output_dir)
    note = None if pointed == path else (f"'{LATEST_FILE}' does not name a complete checkpoint; resuming from the "
                                         f"newest complete one, {path.name}")
    return path, note


def remove_stale_writes(output_dir: str | Path) -> list[Path]:
    """Remove the temporary folders that checkpoint writes killed midway (kill -9) left in this run's folder."""
    folder = checkpoints_folder(output_dir)
    return remove_leftovers(folder, "step_*") + remove_leftovers(folder, LATEST_FILE) if folder.is_dir() else []


def clear_checkpoints(output_dir: str | Path) -> None:
    """Delete every checkpoint of a run folder (asked for with `kinema train --overwrite`)."""
    folder = checkpoints_folder(output_dir)
    for path in step_checkpoints(output_dir):
        shutil.rmtree(path)
    (folder / LATEST_FILE).unlink(missing_ok=True)


def load_checkpoint(path: Path, config: Config, model: nn.Module, ema: nn.Module,
                    optimizer: torch.optim.Optimizer, read: Callable = read_config) -> TrainingState:
    """Restore weights, EMA and optimizer in place (into each process's shards under FSDP); refuse a checkpoint whose
    config differs outside `train` and `sample` (model, data, diffusion or loss). `read(path)` -> (config, metadata)
    reads its config.json (default: a denoiser's)."""
    saved, _ = read(path)
    for section in [name for name in config.to_dict() if name not in ("train", "sample")]:
        ours, theirs = config.to_dict()[section], saved.to_dict()[section]
        # model.autoencoder: a checkpoint names its own copy of the autoencoder
        changed = sorted(k for k in ours if ours[k] != theirs.get(k) and (section, k) != ("model", "autoencoder"))
        if changed:
            raise KinemaError(f"cannot resume from {path}: config key '{section}.{changed[0]}' differs "
                              f"(checkpoint has {theirs.get(changed[0])!r}, config has {ours[changed[0]]!r})")
    meta = _read_state(path)
    load_full_state_dict(model, load_weights(path / WEIGHTS_FILE))
    load_full_state_dict(ema, load_weights(path / EMA_WEIGHTS_FILE))
    tensors = load_weights(path / OPTIMIZER_FILE)
    rng = [load_weights(path / rng_file(rank)) for rank in range(meta.get("processes", 0))]
    if not rng and "rng.generator" in tensors:  # checkpoints written before per-rank RNG files
        rng = [{"generator": tensors.pop("rng.generator"), "torch": tensors.pop("rng.torch")}]
    load_full_optimizer_state(model, optimizer, _unflatten_optimizer(tensors, meta["optimizer"]))
    return TrainingState(step=meta["step"], run_id=meta.get("run") or path.name, rng=rng, scaler=meta.get("scaler"))
