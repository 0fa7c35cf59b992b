"""Tiny denoisers for tests: one small config per registered model, inputs carrying every field a model reads, and a
tiny causal autoencoder for latent models."""

from __future__ import annotations

import torch

from kinema.autoencoder import CausalVAEConfig, CausalVideoVAE
from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.controls import control_channels
from kinema.config import Config
from kinema.data.registry import DATASETS
from kinema.models.denoiser import Denoiser
from kinema.models.registry import MODELS, build_model

TEXT = 16  # text token width of the tiny models
TINY_MODELS: dict[str, dict] = {
    "video_unet": dict(channels=8, channel_mult=(1, 2), attention=("temporal", "spatial"), heads=2, norm_groups=4,
                       text_dim=TEXT),
    "video_dit": dict(hidden_size=24, depth=2, heads=2, text_dim=TEXT),
    "inflated_unet": dict(block_out_channels=(8, 16), norm_num_groups=4, attention_head_dim=4, motion_heads=2,
                          text_dim=TEXT),
    "diffusers_unet3d": dict(block_out_channels=(8, 16), attention_head_dim=2, norm_num_groups=4, text_dim=TEXT,
                             down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
                             up_block_types=("CrossAttnUpBlock3D", "UpBlock3D")),
}


def tiny_model_config(name: str = "video_unet", **fields):
    """The config dataclass of tiny model `name`, with `fields` changed."""
    return MODELS[name].config_class(**{**TINY_MODELS[name], **fields})


def tiny_denoiser(name: str = "video_unet", perturb: float = 0.05, seed: int = 0, **fields) -> Denoiser:
    """Tiny model `name` (seeded); `perturb` moves every weight off its zero init, so that every input reaches the
    output (0 keeps the initialisation)."""
    torch.manual_seed(seed)
    model = build_model(name, tiny_model_config(name, **fields))
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(perturb * torch.randn_like(p))
    return model


def tiny_run_config(model: Denoiser, name: str) -> Config:
    """A whole Config around `model` (registered as `name`) with the default bouncing-balls data."""
    return Config(name, model.config, "balls", DATASETS["balls"].config_class())


def denoiser_inputs(model: Denoiser, batch: int = 2, frames: int = 4, size: int = 8, seed: int = 1
                    ) -> tuple[torch.Tensor, torch.Tensor, Conditioning]:
    """Seeded (x, t [B], cond) for `model`, with every conditioning field it reads set."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, model.in_channels, frames, size, size, generator=generator) * 2 - 1
    t = torch.rand(batch, generator=generator)
    fields = model.conditioning_fields
    cond = Conditioning()
    if "text" in fields:
        cond.text = torch.randn(batch, 3, model.text_dim, generator=generator)
    if "text_mask" in fields:
        cond.text_mask = torch.ones(batch, 3, dtype=torch.bool)
    if "labels" in fields:
        cond.labels = torch.arange(batch) % model.num_classes
    if "motion" in fields:
        cond.motion = torch.randn(batch, 2, generator=generator)
    if "frames" in fields:
        cond.frames = torch.rand(x.shape, generator=generator) * 2 - 1
        cond.frame_mask = torch.rand(batch, 1, *x.shape[2:], generator=generator) < 0.5
    if "control" in fields:
        cond.control = torch.randn(batch, control_channels(model.controls), *x.shape[2:], generator=generator)
    if "attributes" in fields:
        cond.attributes = torch.rand(batch, len(model.attributes), generator=generator) * 2
    return x, t, cond


def tiny_vae(seed: int = 0, latent_channels: int = 4, spatial: int = 4, temporal: int = 2) -> CausalVideoVAE:
    """A seeded, untrained causal autoencoder: 1 + temporal*n frames of sides divisible by `spatial`."""
    torch.manual_seed(seed)
    config = CausalVAEConfig(channels=8, channel_mult=(1, 2), norm_groups=4, latent_channels=latent_channels,
                             spatial_downsample=spatial, temporal_downsample=temporal)
    return CausalVideoVAE(config).eval()
