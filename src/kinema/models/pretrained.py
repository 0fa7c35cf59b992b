"""Save and load a model as safetensors weights + a JSON config (no pickle, ever)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kinema.atomic import atomic_directory
from kinema.conditioning.controls import CONTROL_MAPS
from kinema.config import Config, config_from_dict
from kinema.errors import KinemaError
from kinema.models.registry import build_model
from kinema.models.sampling_spec import AUTOENCODER_FOLDER, SPEC_KEY, SamplingSpec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EMA_WEIGHTS_FILE = "ema.safetensors"


def write_model_files(directory: Path, config: Config, state: dict[str, torch.Tensor],
                      metadata: dict | None = None) -> None:
    """Write config.json (the config, its sampling spec and optional metadata such as the training step) and
    model.safetensors; a latent model also gets a copy of its autoencoder (AUTOENCODER_FOLDER), which its config
    then names, so that the directory is whole wherever it goes."""
    spec = SamplingSpec.from_config(config)
    if config.autoencoder:
        from kinema.autoencoder.directory import load_autoencoder, write_autoencoder_files

        vae, latents, _ = load_autoencoder(config.autoencoder)
        (directory / AUTOENCODER_FOLDER).mkdir()
        write_autoencoder_files(directory / AUTOENCODER_FOLDER, vae, latents)
        config = replace(config, autoencoder=AUTOENCODER_FOLDER)
    values = {"kinema": config.to_dict(), SPEC_KEY: spec.to_dict(), **(metadata or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(values, indent=2))
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(directory / WEIGHTS_FILE))


def save_pretrained(path: str | Path, model: nn.Module, config: Config, metadata: dict | None = None,
                    keep_other_files: bool = False) -> Path:
    """Write a loadable model directory atomically (`keep_other_files`: into an existing one, keeping the rest)."""
    with atomic_directory(path, keep_other_files) as tmp:
        write_model_files(tmp, config, model.state_dict(), metadata)
    return Path(path)


def read_directory_config(path: Path, what: str) -> dict:
    """The JSON object in the config.json of a `what` directory ("checkpoint", "autoencoder"); a missing directory
    or file, or a file that is not a JSON object, is a one-line error naming it."""
    file = path / CONFIG_FILE
    if not path.is_dir():
        raise KinemaError(f"{what} not found: {path} (expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE})")
    if not file.is_file():
        raise KinemaError(f"not a Kinema {what} directory: {path} has no {CONFIG_FILE}")
    try:
        values = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KinemaError(f"corrupt {what} config: {file} is not JSON") from None
    if not isinstance(values, dict):
        raise KinemaError(f"corrupt {what} config: {file} is not a JSON object")
    return values


def read_config(path: str | Path) -> tuple[Config, dict]:
    """The `Config` and the extra metadata (e.g. step) stored in a model or checkpoint directory."""
    path = Path(path)
    file = path / CONFIG_FILE
    values = read_directory_config(path, "checkpoint")
    if values.get("kind") == "autoencoder":
        raise KinemaError(f"{path} is an autoencoder directory, not a denoiser: use it with 'kinema vae' or as "
                          f"model.autoencoder")
    if not isinstance(values.get("kinema"), dict):
        raise KinemaError(f"not a Kinema checkpoint config: {file} has no 'kinema' section")
    config = config_from_dict(values.pop("kinema"))
    if config.autoencoder == AUTOENCODER_FOLDER:  # the directory's own copy
        config = replace(config, autoencoder=str(path / AUTOENCODER_FOLDER))
    return config, values


def first_non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or infinity, or None."""
    return next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)


def load_weights(file: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, with a one-line error naming it when it is missing, corrupt or not finite."""
    if not file.is_file():
        raise KinemaError(f"checkpoint weights missing: {file}")
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as error:
        raise KinemaError(f"corrupt checkpoint weights {file}: {str(error).splitlines()[0]}") from None
    bad = first_non_finite(state)
    if bad:
        raise KinemaError(f"checkpoint weights {file} are not finite (NaN or infinity in '{bad}')")
    return state


def weights_file(path: Path, prefer_ema: bool = True) -> Path:
    """The EMA weights of a checkpoint when present (and preferred), else its model weights."""
    ema = path / EMA_WEIGHTS_FILE
    if prefer_ema and ema.exists() and not ema.is_file():
        raise KinemaError(f"checkpoint EMA weights {ema} are not a file; remove or rename it")
    return ema if prefer_ema and ema.exists() else path / WEIGHTS_FILE


CONTROL_INPUTS = ("control_in.weight", "control_embed.weight")  # the layers that read the control maps, per model


def _regrouped_controls(weight: torch.Tensor, own: torch.Tensor, old: tuple[str, ...],
                        new: tuple[str, ...]) -> torch.Tensor:
    """A control input layer's weight for the model's maps `new`, from one trained on maps `old`: each map's block of
    input channels is the trained one where `old` has the map, else the new layer's own (zero) initialisation."""
    blocks = [CONTROL_MAPS[name].channels for name in old]
    per_channel = weight.shape[1] // max(1, sum(blocks))
    trained = dict(zip(old, weight.split([n * per_channel for n in blocks], dim=1)))
    fresh = own.split([CONTROL_MAPS[name].channels * per_channel for name in new], dim=1)
    return torch.cat([trained.get(name, block).to(own.dtype) for name, block in zip(new, fresh)], dim=1)


def init_from_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Start `model` from the (EMA) weights of a model or checkpoint directory, to fine-tune it; returns the names
    of the model's tensors the file lacks (new layers, which keep their initialisation). A model that reads other
    control maps than the file's keeps the trained input channels of the maps both read (maps it adds start at zero,
    ControlNet-style). A weight the model does not have, or has in another shape, is an error."""
    path = Path(path)
    config = read_config(path)[0]
    file = weights_file(path)
    state, own = load_weights(file), model.state_dict()
    old, new = tuple(getattr(config.model, "controls", ())), tuple(getattr(model, "controls", ()))
    for key in CONTROL_INPUTS:
        if key in state and key in own and old != new:
            state[key] = _regrouped_controls(state[key], own[key], old, new)
    foreign = [k for k in state if k not in own or state[k].shape != own[k].shape]
    if foreign:
        raise KinemaError(f"config key 'train.init_from': {len(foreign)} weight(s) in {file} do not fit the model "
                          f"(e.g. '{foreign[0]}'); change the model config to match it")
    model.load_state_dict(state, strict=False)
    return [k for k in own if k not in state]


def load_pretrained(path: str | Path, prefer_ema: bool = True) -> tuple[nn.Module, Config, dict]:
    """Build the model recorded in `path/config.json` and load its (EMA, when present) weights."""
    path = Path(path)
    config, metadata = read_config(path)
    model = build_model(config.model_name, config.model)
    file = weights_file(path, prefer_ema)
    state = load_weights(file)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise KinemaError(f"weights in {file} do not match the model in its config.json: {first}") from None
    return model.eval(), config, metadata
