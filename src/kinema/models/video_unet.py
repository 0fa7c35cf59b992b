"""VideoUNet: a residual video U-Net whose convolutions, attention, recurrence and temporal pyramid are config
choices (chapter 11.2.1-11.2.4).

By default, residual blocks use factorized (2+1)D convolutions (Tran et al. 2018) with identity-initialised
temporal kernels; attention levels follow the factorized space-time design of Video Diffusion
Models (Ho et al. 2022): spatial (or joint) self-attention, text cross-attention, temporal
self-attention with rotary frame positions. An optional space-to-depth stem (`patch_size`, as in
"simple diffusion", Hoogeboom et al. 2023) runs the whole U-Net at lower resolution, which is where
CPU time goes. The noise level may differ per frame (t is [B] or [B, T]); with `motion`, an overall
direction (`Conditioning.motion`) joins it as a per-frame embedding (chapter 11.3).

Other choices swap in full 3D / pseudo-3D / depthwise-separable convolutions (`conv`), parallel,
interleaved, axial or windowed attention (`attention`), causal or local temporal masks and multi-scale
temporal heads, ConvGRU / ConvLSTM / gated-residual recurrence after each residual block (`recurrent`),
and temporal down/up-sampling at chosen levels (`temporal_downsample`, the temporal pyramid of 11.2.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.controls import ATTRIBUTES, CONTROL_MAPS, attribute_scales, check_names, control_channels
from kinema.config import at_least
from kinema.errors import KinemaError
from kinema.models.denoiser import Denoiser
from kinema.nn.attention import TEMPORAL_MASKS, VideoTransformerBlock
from kinema.nn.conv import CONV_KINDS, SpatialConv, video_conv
from kinema.nn.embeddings import AttributeEmbedding, DirectionEmbedding, NoiseLevelEmbedding
from kinema.nn.recurrent import RECURRENT_KINDS, recurrent_block

ATTENTION_KINDS = ("none", "temporal", "spatial", "joint", "parallel", "interleaved", "axial", "windowed")


@dataclass
class VideoUNetConfig:
    """Sizes of a VideoUNet; `attention` gives one kind per resolution level (see ATTENTION_KINDS)."""

    in_channels: int = at_least(1, 3)                 # channels of the video (3 for RGB)
    patch_size: int = at_least(1, 1)                  # space-to-depth stem: the U-Net runs at H/p x W/p
    channels: int = at_least(1, 32)                   # width of the first level
    channel_mult: tuple[int, ...] = at_least(1, (1, 2, 4))  # width multiplier per level; each level halves H and W
    num_res_blocks: int = at_least(1, 1)              # residual blocks per level
    attention: tuple[str, ...] = ("none", "temporal", "spatial")  # attention kind per level
    heads: int = at_least(1, 4)                       # attention heads
    text_dim: int = at_least(0, 384)                  # text token width; 0 for an unconditional model
    motion: bool = False                              # also read cond.motion, an overall [B, 2] direction
    num_classes: int = at_least(0, 0)                 # class labels (cond.labels) joining the noise level (0 = none)
    frame_conditioning: bool = False                  # also read known frames/pixels (cond.frames, cond.frame_mask)
    controls: tuple[str, ...] = ()                    # dense control maps (cond.control): trajectory, camera, ...
    attributes: tuple[str, ...] = ()                  # scalar knobs (cond.attributes): speed, brightness, ...
    temporal_kernel_size: int = at_least(1, 3)        # k_t of the video convolutions
    norm_groups: int = at_least(1, 8)                 # GroupNorm groups
    conv: str = "factorized"                          # factorized | full3d | p3d_a | p3d_b | p3d_c | depthwise3d
    temporal_mask: str = "bidirectional"              # bidirectional | causal (temporal and joint attention)
    temporal_window: int = at_least(0, 0)             # attend only to frames within this distance (0 = all)
    temporal_scales: tuple[int, ...] = ()             # multi-scale temporal heads: windows (0 = global); () = off
    window: tuple[int, ...] = (2, 4, 4)               # (Tb, Hb, Wb) blocks of 'windowed' attention
    window_overlap: tuple[int, ...] = (0, 0, 0)       # (To, Ho, Wo) key overlap of neighbouring blocks
    global_tokens: int = at_least(0, 0)               # learned global tokens of 'windowed' attention
    recurrent: str = "none"                           # none | convgru | convlstm | gated_residual after each block
    bidirectional: bool = False                       # run convgru / convlstm both ways
    temporal_downsample: tuple[bool, ...] = ()        # per down step: also halve T (empty = never)

    def __post_init__(self):
        check_names("model.controls", self.controls, CONTROL_MAPS)
        check_names("model.attributes", self.attributes, ATTRIBUTES)
        if len(self.attention) != len(self.channel_mult):
            raise KinemaError(f"model.attention has {len(self.attention)} entries but model.channel_mult has "
                              f"{len(self.channel_mult)}: give one attention kind per level")
        for kind in self.attention:
            if kind not in ATTENTION_KINDS:
                raise KinemaError(f"model.attention: unknown kind '{kind}' (choose from {', '.join(ATTENTION_KINDS)})")
        for mult in self.channel_mult:
            if (self.channels * mult) % self.norm_groups or (self.channels * mult) % self.heads:
                raise KinemaError(f"model.channels*{mult} = {self.channels * mult} must be divisible by "
                                  f"model.norm_groups={self.norm_groups} and model.heads={self.heads}")
        for key, value, choices in [("conv", self.conv, CONV_KINDS),
                                    ("temporal_mask", self.temporal_mask, TEMPORAL_MASKS),
                                    ("recurrent", self.recurrent, ("none", *RECURRENT_KINDS))]:
            if value not in choices:
                raise KinemaError(f"model.{key}: unknown '{value}' (choose from {', '.join(choices)})")
        if self.bidirectional and self.recurrent not in ("convgru", "convlstm"):
            raise KinemaError("model.bidirectional needs model.recurrent=convgru or convlstm")
        if len(self.window) != 3 or len(self.window_overlap) != 3 or min(self.window) < 1:
            raise KinemaError(f"model.window {self.window} and model.window_overlap {self.window_overlap} must each "
                              f"be three sizes (T, H, W), blocks at least 1")
        if self.temporal_downsample and len(self.temporal_downsample) != len(self.channel_mult) - 1:
            raise KinemaError(f"model.temporal_downsample has {len(self.temporal_downsample)} entries: give one per "
                              f"down step ({len(self.channel_mult) - 1}) or none")


class ResBlock(nn.Module):
    """Residual block of two video convolutions ((2+1)D by default) with per-frame scale/shift from the noise
    level; the second convolution starts at zero, so the block starts as its skip connection."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int, temporal_kernel_size: int,
                 conv: str = "factorized"):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = video_conv(conv, in_channels, out_channels, 3, temporal_kernel_size)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = video_conv(conv, out_channels, out_channels, 3, temporal_kernel_size)
        self.conv2.zero_output_()
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.emb(F.silu(emb)), "b t (two c) -> two b c t 1 1", two=2)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve H and W with a stride-2 convolution per frame; with `temporal`, also halve T by averaging frame pairs
    (the temporal pyramid of chapter 11.2.4)."""

    def __init__(self, channels: int, temporal: bool = False):
        super().__init__()
        self.temporal = temporal
        self.conv = SpatialConv(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.avg_pool3d(x, (2, 1, 1)) if self.temporal else x


class Upsample(nn.Module):
    """Double H and W (nearest), then a 3x3 convolution per frame; with `temporal`, first double T (linear)."""

    def __init__(self, channels: int, temporal: bool = False):
        super().__init__()
        self.temporal = temporal
        self.conv = SpatialConv(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        if self.temporal:
            x = F.interpolate(x, scale_factor=(2, 1, 1), mode="trilinear", align_corners=False)
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


def attention_block(kind: str, channels: int, config: VideoUNetConfig, index: int) -> nn.Module:
    """The attention block after one residual block; `index` numbers blocks through the network ('interleaved'
    alternates spatial-only and temporal-only blocks by it)."""
    if kind == "none":
        return nn.Identity()
    spatial = {"spatial": "spatial", "joint": "joint", "parallel": "spatial", "axial": "axial",
               "windowed": "windowed", "interleaved": None if index % 2 else "spatial"}.get(kind)
    return VideoTransformerBlock(
        channels, config.heads, spatial=spatial, temporal=kind != "interleaved" or spatial is None,
        text_dim=config.text_dim if spatial and config.text_dim else None,
        temporal_mask_kind=config.temporal_mask, temporal_window=config.temporal_window or None,
        arrangement="parallel" if kind == "parallel" else "serial", temporal_scales=config.temporal_scales or None,
        window=config.window, window_overlap=config.window_overlap, global_tokens=config.global_tokens,
    )


class Level(nn.Module):
    """Residual blocks of one resolution, each followed by a recurrent block (when configured) and an attention
    block (when the level has one); `first_index` numbers this level's first block within the network."""

    def __init__(self, in_channels: list[int], out_channels: int, kind: str, config: VideoUNetConfig, emb_dim: int,
                 first_index: int = 0):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c, out_channels, emb_dim, config.norm_groups, config.temporal_kernel_size,
                                          config.conv)
                                 for c in in_channels)
        self.attn = nn.ModuleList(attention_block(kind, out_channels, config, first_index + i)
                                  for i in range(len(in_channels)))
        self.recurrent = None if config.recurrent == "none" else nn.ModuleList(
            recurrent_block(config.recurrent, out_channels, config.bidirectional) for _ in in_channels)


class VideoUNet(Denoiser):
    """Text-conditioned video U-Net: `model(x [B,C,T,H,W], t [B] or [B,T], cond) -> output like x`."""

    config_class = VideoUNetConfig
    supports_gradient_checkpointing = True

    def __init__(self, config: VideoUNetConfig):
        super().__init__(config)
        widths = [config.channels * m for m in config.channel_mult]
        emb_dim = 4 * config.channels
        self.noise_embed = NoiseLevelEmbedding(emb_dim)
        self.direction_embed = DirectionEmbedding(emb_dim) if config.motion else None
        self.label_embed = nn.Embedding(config.num_classes + 1, emb_dim) if config.num_classes else None  # +1: null
        self.text_pool = nn.Linear(config.text_dim, emb_dim) if config.text_dim else None
        pixels = config.in_channels * config.patch_size ** 2
        self.conv_in = SpatialConv(pixels, widths[0], 3)
        # known pixels + mask, added to the stem; zero and without bias, so a model fine-tuned from one without it
        # starts unchanged and "nothing known" reads as zero
        self.frames_in = (nn.Conv3d((config.in_channels + 1) * config.patch_size ** 2, widths[0], (1, 3, 3),
                                    padding=(0, 1, 1), bias=False) if config.frame_conditioning else None)
        if self.frames_in is not None:
            nn.init.zeros_(self.frames_in.weight)
        # control maps, added to the stem through a zero layer (ControlNet's zero convolution)
        self.control_in = (nn.Conv3d(control_channels(config.controls) * config.patch_size ** 2, widths[0], (1, 3, 3),
                                     padding=(0, 1, 1), bias=False) if config.controls else None)
        if self.control_in is not None:
            nn.init.zeros_(self.control_in.weight)
        self.attribute_embed = AttributeEmbedding(emb_dim, attribute_scales(config.attributes)) if config.attributes \
            else None

        temporal = config.temporal_downsample or (False,) * (len(widths) - 1)
        self.down_levels, self.downsamplers = nn.ModuleList(), nn.ModuleList()
        skips, width, blocks = [widths[0]], widths[0], 0
        for i, (w, kind) in enumerate(zip(widths, config.attention)):
            ins = [width] + [w] * (config.num_res_blocks - 1)
            self.down_levels.append(Level(ins, w, kind, config, emb_dim, blocks))
            blocks += len(ins)
            skips += [w] * config.num_res_blocks
            width = w
            last = i == len(widths) - 1
            self.downsamplers.append(nn.Identity() if last else Downsample(w, temporal[i]))
            if not last:
                skips.append(w)
        self.mid = Level([width, width], width, config.attention[-1], config, emb_dim, blocks)
        blocks += 2

        self.up_levels, self.upsamplers = nn.ModuleList(), nn.ModuleList()
        for i, (w, kind) in reversed(list(enumerate(zip(widths, config.attention)))):
            ins = []
            for _ in range(config.num_res_blocks + 1):
                ins.append(width + skips.pop())
                width = w
            self.up_levels.append(Level(ins, w, kind, config, emb_dim, blocks))
            blocks += len(ins)
            self.upsamplers.append(Upsample(w, temporal[i - 1]) if i > 0 else nn.Identity())

        self.norm_out = nn.GroupNorm(config.norm_groups, widths[0])
        self.conv_out = SpatialConv(widths[0], pixels, 3)
        nn.init.zeros_(self.conv_out.conv.weight)
        nn.init.zeros_(self.conv_out.conv.bias)

    def _run(self, module: nn.Module, *args) -> Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def _level(self, level: Level, h: Tensor, emb: Tensor, text, text_mask, skips: list[Tensor] | None,
               collect: list[Tensor] | None) -> Tensor:
        if emb.shape[1] != h.shape[2]:  # a temporally downsampled level: average the per-frame embedding to match
            emb = reduce(emb, "b (t r) d -> b t d", "mean", t=h.shape[2])
        for i, (res, attn) in enumerate(zip(level.res, level.attn)):
            if skips is not None:
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._run(res, h, emb)
            if level.recurrent is not None:
                h = self._run(level.recurrent[i], h)
            if not isinstance(attn, nn.Identity):
                h = self._run(attn, h, text, text_mask)
            if collect is not None:
                collect.append(h)
        return h

    @property
    def num_classes(self) -> int:
        """`model.num_classes`: labels embedded beside the noise level."""
        return self.config.num_classes

    def extra_conditioning_fields(self) -> set[str]:
        """`motion` when the config asks for it."""
        return {"motion"} if self.config.motion else set()

    def check_inputs(self, x: Tensor, t: Tensor, cond: Conditioning) -> None:
        """The base checks, plus the shape of cond.motion."""
        super().check_inputs(x, t, cond)
        if cond.motion is not None and cond.motion.shape != (x.shape[0], 2):
            raise KinemaError(f"cond.motion must be [B, 2] (x, y direction), got {list(cond.motion.shape)}")

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning | None = None) -> Tensor:
        cond = cond or Conditioning()
        self.check_inputs(x, t, cond)
        b, _, frames, h, w = x.shape
        p = self.config.patch_size
        levels = p * 2 ** (len(self.config.channel_mult) - 1)
        if h % levels or w % levels:
            raise KinemaError(f"video size {h}x{w} must be divisible by {levels} for this VideoUNet")
        frame_levels = 2 ** sum(self.config.temporal_downsample)
        if frames % frame_levels:
            raise KinemaError(f"{frames} frames must be divisible by {frame_levels} for this VideoUNet's temporal "
                              f"downsampling")
        if t.ndim == 1:
            t = t[:, None].expand(b, frames)
        emb = self.noise_embed(t)
        text, text_mask = cond.text, cond.text_mask
        if self.text_pool is not None:
            weights = torch.ones(text.shape[:2], device=x.device) if text_mask is None else text_mask.float()
            pooled = (text * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
            emb = emb + self.text_pool(pooled)[:, None]
        if self.direction_embed is not None:  # no direction given reads as (0, 0), what prompts without one get
            direction = x.new_zeros(b, 2) if cond.motion is None else cond.motion.to(x.dtype)
            emb = emb + self.direction_embed(direction, frames)
        if self.label_embed is not None:  # no label given reads as the null class
            labels = x.new_full((b,), -1, dtype=torch.long) if cond.labels is None else cond.labels
            emb = emb + self.label_embed(self.null_label_index(labels))[:, None]
        if self.attribute_embed is not None:  # no knobs given read as "not given"
            values = (x.new_full((b, len(self.config.attributes)), float("nan")) if cond.attributes is None
                      else cond.attributes.to(x.dtype))
            emb = emb + self.attribute_embed(values)[:, None]

        to_patches = "b c t (h p1) (w p2) -> b (c p1 p2) t h w"
        h = self.conv_in(rearrange(x, to_patches, p1=p, p2=p))
        if self.frames_in is not None and cond.frames is not None:
            h = h + self.frames_in(rearrange(self.known_pixels(x, cond), to_patches, p1=p, p2=p))
        if self.control_in is not None and cond.control is not None:
            h = h + self.control_in(rearrange(cond.control.to(x.dtype), to_patches, p1=p, p2=p))
        skips = [h]
        for level, down in zip(self.down_levels, self.downsamplers):
            h = self._level(level, h, emb, text, text_mask, None, skips)
            if not isinstance(down, nn.Identity):
                h = down(h)
                skips.append(h)
        h = self._level(self.mid, h, emb, text, text_mask, None, None)
        for level, up in zip(self.up_levels, self.upsamplers):
            h = self._level(level, h, emb, text, text_mask, skips, None)
            h = up(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return rearrange(out, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)
