"""Registry of denoiser architectures: `name -> class` (each class carries its `config_class`)."""

from __future__ import annotations

from kinema.models.denoiser import Denoiser
from kinema.models.diffusers_unet3d import DiffusersUNet3D
from kinema.models.inflate import InflatedUNet
from kinema.models.video_dit import VideoDiT
from kinema.models.video_unet import VideoUNet

MODELS: dict[str, type[Denoiser]] = {
    "video_unet": VideoUNet,
    "video_dit": VideoDiT,
    "inflated_unet": InflatedUNet,
    "diffusers_unet3d": DiffusersUNet3D,
}


def build_model(name: str, config) -> Denoiser:
    """Instantiate the registered architecture `name` from its config dataclass."""
    return MODELS[name](config)
