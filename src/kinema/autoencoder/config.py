"""The config of `kinema train-vae`: sections `autoencoder:` (a `CausalVAEConfig`), `data:` (any dataset, as in
`kinema train`), `loss:` and `train:` (the `TrainConfig` of `kinema train`); YAML + `key=value` overrides, every key
checked, as in `kinema.config`. Also the config.json of its training checkpoints."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from kinema.autoencoder.causal_vae import CausalVAEConfig
from kinema.config import TrainConfig, _merge_overrides, at_least, dataclass_from_dict, one_of, read_yaml_config
from kinema.errors import KinemaError

RUN_KEY = "kinema_autoencoder_run"  # the run config's key in a training checkpoint's config.json
SECTIONS = ("autoencoder", "data", "loss", "train")


@dataclass
class AutoencoderLossConfig:
    """Weights of the autoencoder's loss terms (`kinema.autoencoder.losses`)."""

    reconstruction: str = one_of(("l1", "l2"), "l1")  # per-value reconstruction error
    perceptual_weight: float = at_least(0, 0.1)  # LPIPS-style distance in Kinema's video features (0 = off)
    kl_weight: float = at_least(0, 1e-6)   # KL to N(0, I), per value as in LDM
    disc_weight: float = at_least(0, 0.5)  # adversarial term (times the adaptive weight); 0 = no critic at all
    disc_adaptive: bool = True             # VQGAN's gradient-norm ratio at the decoder's last layer
    disc_start: int = at_least(0, 2000)    # the critic is run and trained from this step on
    disc_channels: int = at_least(1, 32)   # width of the 3D patch critic
    disc_layers: int = at_least(1, 2)      # its strided layers after the first
    scale_batches: int = at_least(1, 8)    # batches whose posterior means give the latent scale and shift


@dataclass
class AutoencoderRunConfig:
    """A whole `kinema train-vae` run."""

    autoencoder: CausalVAEConfig
    data_kind: str
    data: Any
    loss: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/vae"))

    def to_dict(self) -> dict:
        """Plain nested dict, as in the YAML files (data.kind included)."""
        return {"autoencoder": self.autoencoder.to_dict(), "data": {"kind": self.data_kind, **asdict(self.data)},
                "loss": asdict(self.loss), "train": asdict(self.train)}


def autoencoder_config_from_dict(values: Mapping) -> AutoencoderRunConfig:
    """Validate a nested dict (as in YAML) into an `AutoencoderRunConfig`; one-line errors naming the key."""
    from kinema.data.registry import DATASETS

    if not isinstance(values, Mapping):
        raise KinemaError(f"a train-vae config must be a mapping of sections ({', '.join(SECTIONS)}), "
                          f"got {type(values).__name__}")
    for key in values:
        if key not in SECTIONS:
            raise KinemaError(f"unknown config section '{key}' of train-vae (known: {', '.join(SECTIONS)})")
    data = dict(values.get("data") or {})
    data_kind = data.pop("kind", "balls")
    if not isinstance(data_kind, str) or data_kind not in DATASETS:
        raise KinemaError(f"config key 'data.kind': unknown dataset '{data_kind}' (choose from {', '.join(DATASETS)})")
    train = {"output_dir": "runs/vae", **(values.get("train") or {})}
    config = AutoencoderRunConfig(
        autoencoder=dataclass_from_dict(CausalVAEConfig, values.get("autoencoder") or {}, "autoencoder"),
        data_kind=data_kind,
        data=dataclass_from_dict(DATASETS[data_kind].config_class, data, "data"),
        loss=dataclass_from_dict(AutoencoderLossConfig, values.get("loss") or {}, "loss"),
        train=dataclass_from_dict(TrainConfig, train, "train"),
    )
    _check_clip_shape(config)
    for key in ("frame_tasks", "init_from", "gradient_checkpointing"):  # what only a denoiser's training reads
        if getattr(config.train, key):
            raise KinemaError(f"config key 'train.{key}' is not supported by train-vae; remove it")
    return config


def _check_clip_shape(config: AutoencoderRunConfig) -> None:
    """The data's clips must fit the autoencoder: 1 + k*n frames, sides divisible by s."""
    k, s = config.autoencoder.temporal_downsample, config.autoencoder.spatial_downsample
    frames = config.data.num_frames
    if (frames - 1) % k:
        raise KinemaError(f"config key 'data.num_frames' must be 1 + k*n with k = autoencoder.temporal_downsample = "
                          f"{k} (e.g. {1 + k * max(1, (frames - 1) // k)}), got {frames}")
    buckets = getattr(config.data, "buckets", None)  # only folder datasets have aspect buckets
    for height, width in buckets or [(config.data.size, config.data.size)]:
        if height % s or width % s:
            key = "data.buckets" if buckets else "data.size"
            raise KinemaError(f"config key '{key}': clip sides must be divisible by autoencoder.spatial_downsample = "
                              f"{s}, got {height}x{width}")


def load_autoencoder_config(path: str | Path, overrides: list[str] = ()) -> AutoencoderRunConfig:
    """Read a train-vae YAML config and apply `key=value` overrides."""
    return autoencoder_config_from_dict(_merge_overrides(read_yaml_config(path, ", ".join(SECTIONS)), overrides))


def write_run_files(directory: Path, config: AutoencoderRunConfig, state: dict[str, torch.Tensor],
                    metadata: dict | None = None) -> None:
    """A training checkpoint's config.json (the run config + metadata such as the step) and model.safetensors."""
    (directory / "config.json").write_text(json.dumps({RUN_KEY: config.to_dict(), **(metadata or {})}, indent=2))
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(directory / "model.safetensors"))


def is_autoencoder_checkpoint(path: str | Path) -> bool:
    """Whether `path` holds a `kinema train-vae` checkpoint (its config.json has the run config)."""
    try:
        return RUN_KEY in json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def read_run_config(path: str | Path) -> tuple[AutoencoderRunConfig, dict]:
    """The run config and the metadata (step, latent statistics) of a `kinema train-vae` checkpoint."""
    file = Path(path) / "config.json"
    try:
        values = json.loads(file.read_text())
    except (OSError, ValueError):
        raise KinemaError(f"not a train-vae checkpoint: {file} is missing or not JSON") from None
    if not isinstance(values, dict) or not isinstance(values.get(RUN_KEY), dict):
        raise KinemaError(f"not a train-vae checkpoint: {file} has no '{RUN_KEY}' section")
    return autoencoder_config_from_dict(values.pop(RUN_KEY)), values
