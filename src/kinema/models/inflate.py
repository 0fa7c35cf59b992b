"""Inflating a 2D image denoiser into a video denoiser with zero-initialised motion modules (chapter 11.2.6).

The "shared backbone + light temporal module" design of the chapter, as in AnimateDiff (Guo et al. 2023)
and Make-A-Video (Singer et al. 2022): the 2D U-Net (a diffusers `UNet2DModel` or `UNet2DConditionModel`,
built from the config, loaded from a local diffusers directory, or passed in) runs on every frame;
after each of its residual blocks a temporal transformer block mixes frames at every pixel. The motion
modules start as the identity, so at initialisation the video model equals the image model applied frame
by frame; `freeze_2d` trains only the motion modules. The 2D weights keep their names under `unet.`, and
the 2D architecture is recorded in the config (`unet_config`), so a checkpoint loads without the original.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from einops import rearrange
from torch import Tensor, nn

from kinema.conditioning.conditioning import Conditioning
from kinema.config import at_least
from kinema.errors import KinemaError
from kinema.models.denoiser import Denoiser
from kinema.nn.attention import VideoTransformerBlock

BASES = ("unet2d", "unet2d_condition")


@dataclass
class InflatedUNetConfig:
    """A diffusers 2D U-Net (fresh, or `pretrained` from a local directory) plus motion modules."""

    in_channels: int = at_least(1, 3)                 # channels of the video
    base: str = "unet2d_condition"                    # unet2d (unconditional) | unet2d_condition (text)
    pretrained: str = ""                              # local diffusers U-Net directory to inflate ('' = fresh)
    block_out_channels: tuple[int, ...] = at_least(1, (32, 64))  # fresh U-Net: width per level
    layers_per_block: int = at_least(1, 1)            # fresh U-Net: residual blocks per level
    attention_head_dim: int = at_least(1, 8)          # fresh U-Net: width of a spatial attention head
    norm_num_groups: int = at_least(1, 8)             # fresh U-Net: GroupNorm groups
    text_dim: int = at_least(0, 384)                  # unet2d_condition: cross_attention_dim (text token width)
    motion_heads: int = at_least(1, 4)                # heads of each motion module's temporal attention
    motion_after: tuple[str, ...] = ("ResnetBlock2D",)  # 2D module classes followed by a motion module
    freeze_2d: bool = False                           # train only the motion modules
    unet_config: dict = field(default_factory=dict)   # the 2D net's diffusers config, recorded when it is built

    def __post_init__(self):
        if self.base not in BASES:
            raise KinemaError(f"model.base: unknown '{self.base}' (choose from {', '.join(BASES)})")
        if self.base == "unet2d" and self.text_dim:
            raise KinemaError("model.base=unet2d is unconditional: set model.text_dim=0")
        if self.pretrained and not self.unet_config and not Path(self.pretrained).is_dir():
            raise KinemaError(f"model.pretrained: no diffusers model directory at {self.pretrained}")


def build_unet2d(config: InflatedUNetConfig) -> nn.Module:
    """The diffusers 2D U-Net of `config`: its recorded `unet_config` (weights to be loaded), else loaded from
    `pretrained`, else fresh with (cross-)attention on every level but the first, highest-resolution one."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    cls = UNet2DConditionModel if config.base == "unet2d_condition" else UNet2DModel
    if config.unet_config:
        return cls.from_config(config.unet_config)
    if config.pretrained:
        return cls.from_pretrained(config.pretrained, local_files_only=True)
    levels = len(config.block_out_channels)
    common = dict(in_channels=config.in_channels, out_channels=config.in_channels,
                  block_out_channels=tuple(config.block_out_channels), layers_per_block=config.layers_per_block,
                  attention_head_dim=config.attention_head_dim, norm_num_groups=config.norm_num_groups)
    attention = "Attn" if cls is UNet2DModel else "CrossAttn"
    down = ("DownBlock2D",) + (f"{attention}DownBlock2D",) * (levels - 1)
    up = (f"{attention}UpBlock2D",) * (levels - 1) + ("UpBlock2D",)
    if cls is UNet2DModel:
        return cls(down_block_types=down, up_block_types=up, **common)
    return cls(down_block_types=down, up_block_types=up, cross_attention_dim=config.text_dim, **common)


class MotionModule(nn.Module):
    """Temporal self-attention (rotary frame positions) + MLP at every pixel; the identity at initialisation."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.block = VideoTransformerBlock(channels, heads, spatial=None, temporal=True)

    def forward(self, x: Tensor, frames: int) -> Tensor:
        """x [(B T), C, H, W] from the 2D network -> the same layout with frames mixed."""
        video = rearrange(x, "(b t) c h w -> b c t h w", t=frames)
        return rearrange(self.block(video), "b c t h w -> (b t) c h w")


class InflatedUNet(Denoiser):
    """A 2D diffusers U-Net applied per frame, with a motion module after every `motion_after` block; it reads
    text (+ mask) when its base is unet2d_condition."""

    config_class = InflatedUNetConfig
    supports_gradient_checkpointing = True

    def __init__(self, config: InflatedUNetConfig, unet2d: nn.Module | None = None):
        super().__init__(config)
        self.unet = unet2d if unet2d is not None else build_unet2d(config)
        config.unet_config = json.loads(json.dumps(dict(self.unet.config)))  # plain JSON types
        self.motion = nn.ModuleDict()
        self._frames: int | None = None  # frames of the latest call (kept for checkpoint recomputation)
        for name, module in self.unet.named_modules():
            if type(module).__name__ in config.motion_after:
                key = name.replace(".", "_")
                self.motion[key] = MotionModule(module.out_channels, config.motion_heads)
                module.register_forward_hook(partial(self._motion_hook, key))
        if not len(self.motion):
            raise KinemaError(f"model.motion_after: no module of class {', '.join(config.motion_after)} in the 2D net")
        if config.freeze_2d:
            self.unet.requires_grad_(False)

    def _motion_hook(self, key: str, module: nn.Module, args, output: Tensor) -> Tensor:
        return output if self._frames is None else self.motion[key](output, self._frames)

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning | None = None) -> Tensor:
        cond = cond or Conditioning()
        self.check_inputs(x, t, cond)
        b, _, frames = x.shape[:3]
        if self.gradient_checkpointing != self.unet.is_gradient_checkpointing:
            (self.unet.enable_gradient_checkpointing if self.gradient_checkpointing
             else self.unet.disable_gradient_checkpointing)()
        if t.ndim == 1:
            t = t[:, None].expand(b, frames)
        kwargs = {}
        if cond.text is not None:
            kwargs["encoder_hidden_states"] = cond.text.repeat_interleave(frames, dim=0)
            if cond.text_mask is not None:
                kwargs["encoder_attention_mask"] = cond.text_mask.repeat_interleave(frames, dim=0)
        self._frames = frames
        out = self.unet(rearrange(x, "b c t h w -> (b t) c h w"), rearrange(t, "b t -> (b t)") * 1000.0,
                        **kwargs).sample  # diffusers U-Nets take timesteps on the 0..1000 scale
        return rearrange(out, "(b t) c h w -> b c t h w", b=b)


def inflate(unet2d: nn.Module, motion_heads: int = 4, freeze_2d: bool = False,
            motion_after: tuple[str, ...] = ("ResnetBlock2D",)) -> InflatedUNet:
    """Wrap a diffusers `UNet2DModel` / `UNet2DConditionModel` into a video denoiser.

    The 2D model becomes `.unet` of the result and gains the motion-module hooks: deep-copy it first to keep a
    plain image model."""
    conditioned = type(unet2d).__name__ == "UNet2DConditionModel"
    config = InflatedUNetConfig(in_channels=unet2d.config.in_channels,
                                base="unet2d_condition" if conditioned else "unet2d",
                                text_dim=unet2d.config.cross_attention_dim if conditioned else 0,
                                motion_heads=motion_heads, motion_after=tuple(motion_after), freeze_2d=freeze_2d)
    return InflatedUNet(config, unet2d)
