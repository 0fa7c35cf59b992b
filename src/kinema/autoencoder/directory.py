"""Autoencoder directories: config.json (`kind: "autoencoder"`, the architecture, the latent scale and shift) +
model.safetensors, written atomically and read without pickle, like the denoiser directories of
`kinema.models.pretrained`.

Latent diffusion trains on normalised latents `(z - latent_shift) * latent_scale` (Rombach et al. 2022, sec. 4.3
and appendix G: the scale makes the latents' variance about 1); training measures the two numbers from data and
stores them here. An untouched autoencoder stores scale 1 and shift 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from kinema.atomic import atomic_directory
from kinema.autoencoder.causal_vae import CausalVAEConfig, CausalVideoVAE
from kinema.config import dataclass_from_dict
from kinema.errors import KinemaError
from kinema.models.pretrained import CONFIG_FILE, WEIGHTS_FILE, load_weights, read_directory_config, weights_file

KIND = "autoencoder"
CONFIG_KEY = "autoencoder"  # the architecture's section in config.json
SHIPPED_AUTOENCODER = Path(__file__).resolve().parent.parent / "pretrained" / "balls_vae"  # configs/vae_balls.yaml


@dataclass
class LatentNormalization:
    """The affine map from autoencoder latents to the denoiser's: (z - shift) * scale, and back."""

    scale: float = 1.0
    shift: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.scale) and math.isfinite(self.shift) and self.scale > 0):
            raise KinemaError(f"latent_scale must be a positive finite number and latent_shift finite, got "
                              f"{self.scale!r}, {self.shift!r}")

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Autoencoder latents -> denoiser latents."""
        return (z - self.shift) * self.scale

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Denoiser latents -> autoencoder latents."""
        return latents / self.scale + self.shift


def write_autoencoder_files(directory: Path, vae: CausalVideoVAE, latents: LatentNormalization | None = None,
                            metadata: dict | None = None, state: dict[str, torch.Tensor] | None = None) -> None:
    """Write config.json and model.safetensors (the model's weights, or `state`, e.g. EMA weights) into
    `directory`."""
    from safetensors.torch import save_file

    latents = latents or LatentNormalization()
    values = {"kind": KIND, CONFIG_KEY: vae.config.to_dict(), "latent_scale": latents.scale,
              "latent_shift": latents.shift, **(metadata or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(values, indent=2))
    state = vae.state_dict() if state is None else state
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(directory / WEIGHTS_FILE))


def save_autoencoder(path: str | Path, vae: CausalVideoVAE, latents: LatentNormalization | None = None,
                     metadata: dict | None = None) -> Path:
    """Write a loadable autoencoder directory atomically (replacing an old one)."""
    with atomic_directory(path) as tmp:
        write_autoencoder_files(tmp, vae, latents, metadata)
    return Path(path)


def read_autoencoder_config(path: str | Path) -> tuple[CausalVAEConfig, LatentNormalization, dict]:
    """(architecture, latent normalisation, other metadata) of an autoencoder directory; a denoiser directory or a
    bad file is a one-line error naming it."""
    path = Path(path)
    file = path / CONFIG_FILE
    values = read_directory_config(path, "autoencoder")
    if values.get("kind") != KIND:
        what = "a denoiser model directory" if "kinema" in values else "not a Kinema autoencoder"
        raise KinemaError(f"{path} is {what}, not an autoencoder ({file} lacks \"kind\": \"{KIND}\")")
    config = dataclass_from_dict(CausalVAEConfig, values.pop(CONFIG_KEY, {}), CONFIG_KEY)
    try:
        latents = LatentNormalization(float(values.pop("latent_scale", 1.0)), float(values.pop("latent_shift", 0.0)))
    except (TypeError, ValueError) as error:
        raise KinemaError(f"{file}: {str(error).splitlines()[0]}") from None
    values.pop("kind")
    return config, latents, values


def load_autoencoder(path: str | Path = SHIPPED_AUTOENCODER,
                     prefer_ema: bool = True) -> tuple[CausalVideoVAE, LatentNormalization, dict]:
    """Build the autoencoder recorded in `path/config.json` (default: the shipped one) and load its (EMA, when present)
    weights, in eval mode."""
    path = Path(path)
    config, latents, metadata = read_autoencoder_config(path)
    vae = CausalVideoVAE(config)
    file = weights_file(path, prefer_ema)
    try:
        vae.load_state_dict(load_weights(file))
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise KinemaError(f"weights in {file} do not match the autoencoder in its {CONFIG_FILE}: {first}") from None
    return vae.eval(), latents, metadata
