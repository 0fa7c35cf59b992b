"""diffusers' UNet3DConditionModel (the ModelScope text-to-video U-Net, Wang et al. 2023) as a Kinema denoiser."""

from __future__ import annotations

from dataclasses import dataclass

from einops import rearrange
from torch import Tensor

from kinema.conditioning.conditioning import Conditioning
from kinema.errors import KinemaError
from kinema.models.denoiser import Denoiser

DOWN_BLOCKS = ("DownBlock3D", "CrossAttnDownBlock3D")
UP_BLOCKS = ("UpBlock3D", "CrossAttnUpBlock3D")


@dataclass
class DiffusersUNet3DConfig:
    """Sizes of the wrapped UNet3DConditionModel; the defaults match configs/balls.yaml's VideoUNet in parameters."""

    in_channels: int = 3                              # channels of the video
    patch_size: int = 1                               # space-to-depth stem: the U-Net runs at H/p x W/p
    block_out_channels: tuple[int, ...] = (40, 80, 80)  # width per level; each level but the last halves H and W
    layers_per_block: int = 1                         # residual blocks per level
    attention_head_dim: int = 4                       # diffusers reads this as the number of attention heads
    norm_num_groups: int = 8                          # GroupNorm groups
    text_dim: int = 384                               # cross_attention_dim: text token width
    down_block_types: tuple[str, ...] = ("DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D")
    up_block_types: tuple[str, ...] = ("CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D")

    def __post_init__(self):
        for key in ("in_channels", "patch_size", "layers_per_block", "attention_head_dim", "norm_num_groups"):
            if getattr(self, key) < 1:
                raise KinemaError(f"model.{key} must be at least 1, got {getattr(self, key)}")
        if self.text_dim < 1:
            raise KinemaError(f"model.text_dim must be at least 1, got {self.text_dim}: UNet3DConditionModel always "
                              f"cross-attends to text")
        if not self.block_out_channels:
            raise KinemaError("model.block_out_channels must name at least one level")
        for width in self.block_out_channels:
            if width % self.norm_num_groups or width % self.attention_head_dim:
                raise KinemaError(f"model.block_out_channels: width {width} must be divisible by "
                                  f"model.norm_num_groups={self.norm_num_groups} and "
                                  f"model.attention_head_dim={self.attention_head_dim} (the head count)")
        for key, kinds, choices in [("down_block_types", self.down_block_types, DOWN_BLOCKS),
                                    ("up_block_types", self.up_block_types, UP_BLOCKS)]:
            if len(kinds) != len(self.block_out_channels):
                raise KinemaError(f"model.{key} has {len(kinds)} entries but model.block_out_channels has "
                                  f"{len(self.block_out_channels)}: give one block type per level")
            for kind in kinds:
                if kind not in choices:
                    raise KinemaError(f"model.{key}: unknown '{kind}' (choose from {', '.join(choices)})")


class DiffusersUNet3D(Denoiser):
    """`model(x [B,C,T,H,W], t [B], cond) -> output like x` through a diffusers UNet3DConditionModel (as `.unet`).

    The network gets t * 999 as its timestep and cond.text as its encoder_hidden_states. It takes no text attention
    mask, so it reads cond.text only (padded text tokens are attended) and refuses cond.text_mask. It has one
    timestep per video, so per-frame noise levels (t [B, T]) are refused.
    """

    config_class = DiffusersUNet3DConfig
    supports_gradient_checkpointing = False
    per_frame_noise = False

    def __init__(self, config: DiffusersUNet3DConfig):
        super().__init__(config)
        from diffusers import UNet3DConditionModel

        pixels = config.in_channels * config.patch_size ** 2
        self.unet = UNet3DConditionModel(
            in_channels=pixels, out_channels=pixels, block_out_channels=tuple(config.block_out_channels),
            layers_per_block=config.layers_per_block, attention_head_dim=config.attention_head_dim,
            norm_num_groups=config.norm_num_groups, cross_attention_dim=config.text_dim,
            down_block_types=tuple(config.down_block_types), up_block_types=tuple(config.up_block_types))

    @property
    def conditioning_fields(self) -> frozenset[str]:
        """Text tokens only: UNet3DConditionModel has no mask for them."""
        return frozenset({"text"})

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning | None = None) -> Tensor:
        cond = cond or Conditioning()
        self.check_inputs(x, t, cond)
        p = self.config.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise KinemaError(f"video size {x.shape[-2]}x{x.shape[-1]} must be divisible by model.patch_size={p}")
        h = rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)
        out = self.unet(h, t * 999, encoder_hidden_states=cond.text, return_dict=False)[0]
        return rearrange(out, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)
