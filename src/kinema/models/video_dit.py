"""VideoDiT: a diffusion transformer on spatio-temporal patches (chapter 11.2.5; Peebles & Xie 2023, DiT).

Patchify with (pt, ph, pw): pt = 1 keeps every frame ("per-frame" patches), pt > 1 makes cubes. Positions:
separable sin-cos PE(t) + PE(h, w), learned per-axis tables, or 3D rotary. Blocks attend fully over all
tokens or factorized (spatial within a frame, then temporal at each position, with the temporal masks of
11.2.3). The noise level (per frame), class label and pooled text modulate every block by adaLN-Zero; text
tokens enter through cross-attention. Sizes are named presets (`VIDEO_DIT_PRESETS`, S/B/L x patch).
Optional token pruning (11.2.6) drops the most static tokens after the first frame: they skip the blocks and
reuse the update of the same position one frame earlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from einops import rearrange, reduce
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.controls import ATTRIBUTES, CONTROL_MAPS, attribute_scales, check_names, control_channels
from kinema.config import at_least
from kinema.errors import KinemaError
from kinema.models.denoiser import Denoiser
from kinema.nn.attention import TEMPORAL_MASKS, Attention, temporal_mask
from kinema.nn.embeddings import AttributeEmbedding, LearnedPositionEmbedding3d, NoiseLevelEmbedding, sincos_position_embedding_3d

POSITION_KINDS = ("sincos", "learned", "rope3d")
DIT_ATTENTION = ("factorized", "full")
_SIZES = {"T": (4, 128, 4), "S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16)}  # depth, width, heads
_PATCHES = {"2": (1, 2, 2), "4": (1, 4, 4), "2x2x2": (2, 2, 2), "4x4x4": (4, 4, 4)}
VIDEO_DIT_PRESETS: dict[str, dict] = {
    f"{size}/{patch}": {"depth": depth, "hidden_size": width, "heads": heads, "patch_size": _PATCHES[patch]}
    for size, (depth, width, heads) in _SIZES.items() for patch in _PATCHES
}


@dataclass
class VideoDiTConfig:
    """Sizes and choices of a VideoDiT; `preset` (e.g. 'S/2') fills depth, hidden_size, heads and patch_size."""

    in_channels: int = at_least(1, 3)                 # channels of the video
    preset: str = ""                                  # named size from VIDEO_DIT_PRESETS ('' = the fields below)
    patch_size: tuple[int, ...] = (1, 2, 2)           # (pt, ph, pw); pt = 1 per-frame patches, pt > 1 cubes
    hidden_size: int = at_least(1, 128)               # token width
    depth: int = at_least(1, 4)                       # transformer blocks
    heads: int = at_least(1, 4)                       # attention heads
    mlp_ratio: int = at_least(1, 4)                   # MLP hidden width / token width
    attention: str = "factorized"                     # factorized (spatial, then temporal) | full
    positions: str = "sincos"                         # sincos | learned | rope3d
    max_grid: tuple[int, ...] = at_least(1, (16, 32, 32))  # largest token grid (t, h, w) of 'learned' positions
    text_dim: int = at_least(0, 384)                  # text token width (cross-attention); 0 = no text
    num_classes: int = at_least(0, 0)                 # class labels for adaLN (0 = none)
    frame_conditioning: bool = False                  # also read known frames/pixels (cond.frames, cond.frame_mask)
    controls: tuple[str, ...] = ()                    # dense control maps (cond.control): trajectory, camera, ...
    attributes: tuple[str, ...] = ()                  # scalar knobs (cond.attributes): speed, brightness, ...
    temporal_mask: str = "bidirectional"              # bidirectional | causal
    temporal_window: int = at_least(0, 0)             # attend only to token frames this close (0 = all)
    prune_static: float = 0.0                         # fraction of tokens after frame 0 skipped as static (full)

    def __post_init__(self):
        check_names("model.controls", self.controls, CONTROL_MAPS)
        check_names("model.attributes", self.attributes, ATTRIBUTES)
        if self.preset:
            if self.preset not in VIDEO_DIT_PRESETS:
                raise KinemaError(f"model.preset: unknown '{self.preset}' (choose from {', '.join(VIDEO_DIT_PRESETS)})")
            defaults = {f.name: f.default for f in fields(self)}
            for key, value in VIDEO_DIT_PRESETS[self.preset].items():
                current = getattr(self, key)
                if current not in (defaults[key], value):
                    raise KinemaError(f"model.{key}={current} conflicts with model.preset={self.preset} ({value})")
                setattr(self, key, value)
        for key, value, choices in [("attention", self.attention, DIT_ATTENTION),
                                    ("positions", self.positions, POSITION_KINDS),
                                    ("temporal_mask", self.temporal_mask, TEMPORAL_MASKS)]:
            if value not in choices:
                raise KinemaError(f"model.{key}: unknown '{value}' (choose from {', '.join(choices)})")
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise KinemaError(f"model.patch_size must be three sizes (pt, ph, pw) >= 1, got {self.patch_size}")
        if self.hidden_size % self.heads:
            raise KinemaError(f"model.hidden_size={self.hidden_size} must be divisible by model.heads={self.heads}")
        if not 0.0 <= self.prune_static < 1.0:
            raise KinemaError(f"model.prune_static must be in [0, 1), got {self.prune_static}")
        if self.prune_static and self.attention != "full":
            raise KinemaError("model.prune_static needs model.attention=full (pruned tokens leave no regular grid)")


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x * (1 + scale) + shift."""
    return x * (1 + scale) + shift


#################################################################################
#                              Core VideoDiT block                              #
#################################################################################

class VideoDiTBlock(nn.Module):
    """adaLN-Zero transformer block: (spatial + temporal) or full self-attention, text cross-attention, MLP."""

    def __init__(self, dim: int, heads: int, factorized: bool, text_dim: int, mlp_ratio: int, rope: bool):
        super().__init__()
        self.factorized = factorized
        rotary = {"rotary": rope, "rotary_axes": 3}
        self.norm_attn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, **rotary)
        self.norm_temporal = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) if factorized else None
        self.temporal = Attention(dim, heads, **rotary) if factorized else None
        self.norm_cross = nn.LayerNorm(dim) if text_dim else None
        self.cross = Attention(dim, heads, context_dim=text_dim) if text_dim else None
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, (9 if factorized else 6) * dim))

    def forward(self, x: Tensor, cond: Tensor, grid: tuple[int, int], positions: Tensor, frames: Tensor,
                text: Tensor | None, text_mask: Tensor | None, mask_kind: str, window: int | None) -> Tensor:
        """x [B, N, D] tokens; cond [B, N, D] per token; grid (t, h*w); positions [N, 3] or [B, N, 3]."""
        mods = self.ada(cond).chunk(9 if self.factorized else 6, dim=-1)
        t, s = grid
        h = modulate(self.norm_attn(x), mods[0], mods[1])
        if self.factorized:
            h = rearrange(h, "b (t s) d -> (b t) s d", t=t)
            h = self.attn(h, positions=positions[:s])
            x = x + mods[2] * rearrange(h, "(b t) s d -> b (t s) d", t=t)
            h = rearrange(modulate(self.norm_temporal(x), mods[3], mods[4]), "b (t s) d -> (b s) t d", t=t)
            h = self.temporal(h, mask=temporal_mask(t, mask_kind, window, device=x.device), positions=positions[::s])
            x = x + mods[5] * rearrange(h, "(b s) t d -> b (t s) d", s=s)
        else:
            mask = temporal_mask(t, mask_kind, window, device=x.device)
            if mask is not None:  # the frame-level mask, lifted to every pair of tokens
                mask = mask[frames[..., :, None], frames[..., None, :]]
                mask = mask[:, None] if mask.ndim == 3 else mask
            x = x + mods[2] * self.attn(h, mask=mask, positions=positions)
        if self.cross is not None:
            context_mask = None if text_mask is None else text_mask[:, None, None, :]
            x = x + self.cross(self.norm_cross(x), context=text, mask=context_mask)
        shift, scale, gate = mods[-3:]
        return x + gate * self.mlp(modulate(self.norm_mlp(x), shift, scale))


class FinalLayer(nn.Module):
    """adaLN then a linear map of each token back to its (pt ph pw C) pixels; zero-initialised."""

    def __init__(self, dim: int, pixels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, pixels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        shift, scale = self.ada(cond).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


#################################################################################
#                                   VideoDiT                                    #
#################################################################################

class VideoDiT(Denoiser):
    """Video diffusion transformer: `model(x [B,C,T,H,W], t [B] or [B,T], cond) -> output like x`."""

    config_class = VideoDiTConfig
    supports_gradient_checkpointing = True

    def __init__(self, config: VideoDiTConfig):
        super().__init__(config)
        dim, patch = config.hidden_size, tuple(config.patch_size)
        self.patch_embed = nn.Conv3d(config.in_channels, dim, patch, stride=patch)
        # known pixels + mask, added to the patch tokens; zero and without bias (see VideoUNet.frames_in)
        self.frames_embed = (nn.Conv3d(config.in_channels + 1, dim, patch, stride=patch, bias=False)
                             if config.frame_conditioning else None)
        # control maps, added to the patch tokens through a zero layer (ControlNet's zero convolution)
        self.control_embed = (nn.Conv3d(control_channels(config.controls), dim, patch, stride=patch, bias=False)
                              if config.controls else None)
        self.noise_embed = NoiseLevelEmbedding(dim)
        self.attribute_embed = AttributeEmbedding(dim, attribute_scales(config.attributes)) if config.attributes \
            else None
        self.label_embed = nn.Embedding(config.num_classes + 1, dim) if config.num_classes else None  # +1: null
        self.text_pool = nn.Linear(config.text_dim, dim) if config.text_dim else None
        self.positions = (LearnedPositionEmbedding3d(dim, *config.max_grid) if config.positions == "learned"
                          else None)
        self.blocks = nn.ModuleList(
            VideoDiTBlock(dim, config.heads, config.attention == "factorized", config.text_dim, config.mlp_ratio,
                          config.positions == "rope3d")
            for _ in range(config.depth))
        self.final = FinalLayer(dim, math.prod(patch) * config.in_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: xavier linears, patch embed like a linear, and zero for every adaLN modulation and the
        output layer, so each block starts as the identity (adaLN-Zero) and the model outputs zeros."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.weight.shape[0], -1))
        nn.init.normal_(self.noise_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.noise_embed.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
            if block.cross is not None:  # ungated: its zero output projection keeps the block an identity
                nn.init.zeros_(block.cross.to_out.weight)
        for embed in (self.frames_embed, self.control_embed):
            if embed is not None:
                nn.init.zeros_(embed.weight)
        if self.attribute_embed is not None:  # xavier above re-drew its zero output layer
            nn.init.zeros_(self.attribute_embed.mlp[-1].weight)
        for layer in (self.final.ada[-1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def num_classes(self) -> int:
        """`model.num_classes`: labels embedded by adaLN beside the noise level."""
        return self.config.num_classes

    def _condition(self, t: Tensor, cond: Conditioning, batch: int, frames: int) -> Tensor:
        """Per-token-frame conditioning [B, T/pt, D]: noise level (+ class label + pooled text)."""
        if t.ndim == 1:
            t = t[:, None].expand(batch, frames)
        c = reduce(self.noise_embed(t), "b (t pt) d -> b t d", "mean", pt=self.config.patch_size[0])
        if self.label_embed is not None:
            labels = cond.labels if cond.labels is not None else torch.full((batch,), -1, device=t.device)
            c = c + self.label_embed(self.null_label_index(labels))[:, None]
        if self.text_pool is not None:
            weights = (torch.ones(cond.text.shape[:2], device=t.device) if cond.text_mask is None
                       else cond.text_mask.float())
            pooled = (cond.text * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)
            c = c + self.text_pool(pooled)[:, None]
        if self.attribute_embed is not None:  # no knobs given read as "not given"
            values = (torch.full((batch, len(self.config.attributes)), float("nan"), device=t.device)
                      if cond.attributes is None else cond.attributes)
            c = c + self.attribute_embed(values.float())[:, None].to(c.dtype)
        return c

    def _static_tokens(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Indices [B, K] of the tokens kept: all of frame 0, and the most moving share of the others."""
        t, s = grid
        pt, ph, pw = self.config.patch_size
        patches = rearrange(x, "b c (t pt) (h ph) (w pw) -> b t (h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
        motion = (patches[:, 1:] - patches[:, :-1]).abs().mean(-1)  # M = |x_t - x_{t-1}| per token
        motion = torch.cat([torch.full_like(motion[:, :1], float("inf")), motion], 1).flatten(1)
        keep = s + math.ceil((1 - self.config.prune_static) * (t - 1) * s)
        return motion.topk(keep, dim=1).indices.sort(dim=1).values

    def forward(self, x: Tensor, t: Tensor, cond: Conditioning | None = None) -> Tensor:
        cond = cond or Conditioning()
        self.check_inputs(x, t, cond)
        b, _, frames, height, width = x.shape
        pt, ph, pw = self.config.patch_size
        if frames % pt or height % ph or width % pw:
            raise KinemaError(f"video {frames}x{height}x{width} must be divisible by the patch size {pt}x{ph}x{pw}")
        grid = (frames // pt, height // ph, width // pw)
        embedded = self.patch_embed(x)
        if self.frames_embed is not None and cond.frames is not None:
            embedded = embedded + self.frames_embed(self.known_pixels(x, cond))
        if self.control_embed is not None and cond.control is not None:
            embedded = embedded + self.control_embed(cond.control.to(x.dtype))
        tokens = rearrange(embedded, "b d t h w -> b (t h w) d")
        if self.config.positions == "sincos":
            tokens = tokens + sincos_position_embedding_3d(*grid, tokens.shape[-1], device=x.device).to(tokens.dtype)
        elif self.config.positions == "learned":
            tokens = tokens + self.positions(*grid)
        axes = torch.meshgrid(*(torch.arange(n, device=x.device) for n in grid), indexing="ij")
        positions = torch.stack([a.flatten() for a in axes], dim=-1)  # [N, 3] (frame, row, column)
        frame_cond = self._condition(t, cond, b, frames)
        token_frames = positions[:, 0]
        inputs = tokens
        keep = None
        if self.config.prune_static and grid[0] > 1:
            keep = self._static_tokens(x, (grid[0], grid[1] * grid[2]))
            tokens = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
            positions, token_frames = positions[keep], token_frames[keep]
        token_cond = frame_cond[torch.arange(b, device=x.device)[:, None], token_frames.expand(b, -1)]
        for block in self.blocks:
            args = (tokens, token_cond, (grid[0], grid[1] * grid[2]), positions, token_frames, cond.text,
                    cond.text_mask, self.config.temporal_mask, self.config.temporal_window or None)
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, *args, use_reentrant=False)
            else:
                tokens = block(*args)
        if keep is not None:
            tokens = self._reuse_static(inputs, tokens, keep, grid)
            token_cond = frame_cond.repeat_interleave(grid[1] * grid[2], dim=1)
        out = self.final(tokens, token_cond)
        return rearrange(out, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=grid[0], h=grid[1],
                         pt=pt, ph=ph, pw=pw)

    @staticmethod
    def _reuse_static(inputs: Tensor, kept: Tensor, keep: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """Full token grid: pruned tokens = their input + the block update of the same position one frame back."""
        update = torch.zeros_like(inputs).scatter(1, keep[..., None].expand_as(kept),
                                                  kept - inputs.gather(1, keep[..., None].expand_as(kept)))
        was_kept = torch.zeros(inputs.shape[:2], dtype=torch.bool, device=inputs.device).scatter(1, keep, True)
        update = rearrange(update, "b (t s) d -> b t s d", t=grid[0])
        was_kept = rearrange(was_kept, "b (t s) -> b t s 1", t=grid[0])
        frames = [update[:, 0]]
        for i in range(1, grid[0]):
            frames.append(torch.where(was_kept[:, i], update[:, i], frames[-1]))
        return inputs + rearrange(torch.stack(frames, 1), "b t s d -> b (t s) d")
