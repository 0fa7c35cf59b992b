"""Feature extractors for FVD / KVD / frame FID: Kinema's own small video network, and I3D from a TorchScript file.

Every extractor maps videos [B, 3, T, H, W] in [-1, 1] to features [B, D] (`videos`) and, when it
has an image counterpart for per-frame FID, frames [N, 3, H, W] to [N, D'] (`frames`).

- `KinemaVideoFeatures`: `VideoFeatureNet`, a ~0.1M-parameter network trained by
  `python -m kinema.metrics.train_features` on the physics-balls data to name the balls' colours and
  count, their mean velocity, and whether a clip plays forward, reversed, shuffled or frozen; its
  pooled temporal features make FVD sensitive to broken motion (the content bias of I3D), and its
  per-frame encoder gives frame FID. Shipped in kinema/pretrained/video_features, so it works offline.
  Inputs are resized to its training size (32x32, area / bilinear); any number of frames.
- `I3DFeatures`: the Kinetics-400 I3D the literature uses, from a TorchScript file the user gives,
  with one of two conventions (`I3D_PRESETS`):
  * "stylegan-v" (StyleGAN-V, Skorokhodov et al. 2022, which matches the original TF FVD up to
    resizing): the clip in [-1, 1] at its own size goes to the StyleGAN-V `i3d_torchscript.pt` called as
    `model(x, rescale=False, resize=True, return_features=True)`: the network resizes every frame to
    224x224 (no crop, aspect ratio not kept) and returns the 400 logits as features. Real clips are
    read with consecutive frames (stride 1) unless `--real-stride` says otherwise.
  * "videogpt" (VideoGPT / TATS): each frame's short side is resized to 224 (bilinear) and the centre
    224x224 is cropped, values in [-1, 1]; the TorchScript module is called as `model(x)` on
    [B, 3, T, 224, 224] and its output (the 400 logits) is the feature.
  I3D has no per-frame counterpart here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from kinema.errors import KinemaError

SHIPPED_FEATURES = Path(__file__).resolve().parent.parent / "pretrained" / "video_features"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
I3D_PRESETS = ("stylegan-v", "videogpt")
ORDERS = ("forward", "reversed", "shuffled", "frozen")  # what the network learns to tell apart


@dataclass
class VideoFeatureNetConfig:
    """Sizes of `VideoFeatureNet` and the data it was trained on."""

    size: int = 32  # frames are resized to size x size
    width: int = 16  # channels of the first conv; doubled twice
    frame_dim: int = 64  # per-frame feature size (frame FID)
    video_dim: int = 64  # clip feature size (FVD / KVD)
    num_colors: int = 8  # colour-presence head
    max_balls: int = 3  # count head: 0 .. max_balls


class VideoFeatureNet(nn.Module):
    """Frame encoder (3 strided convs; 4x4 average grid + global max; linear) + two temporal convs, mean over time."""

    def __init__(self, config: VideoFeatureNetConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.convs = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GELU(),
        )
        self.where = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten())  # coarse layout: positions
        self.what = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())  # anywhere in the frame: colours
        self.frame_out = nn.Linear(4 * w * 17, config.frame_dim)
        self.temporal = nn.Sequential(
            nn.GELU(), nn.Conv1d(config.frame_dim, config.video_dim, 3, padding=1),
            nn.GELU(), nn.Conv1d(config.video_dim, config.video_dim, 3, padding=1),
        )
        self.heads = nn.ModuleDict({
            "colors": nn.Linear(config.video_dim, config.num_colors),
            "count": nn.Linear(config.video_dim, config.max_balls + 1),
            "order": nn.Linear(config.video_dim, len(ORDERS)),
            "velocity": nn.Linear(config.video_dim, 2),
        })

    def _resize(self, frames: Tensor) -> Tensor:
        size = self.config.size
        if frames.shape[-2:] == (size, size):
            return frames
        shrink = frames.shape[-1] > size and frames.shape[-2] > size
        return F.interpolate(frames, size=(size, size), mode="area" if shrink else "bilinear")

    def frame_features(self, frames: Tensor) -> Tensor:
        """Per-frame features [N, frame_dim] of frames [N, 3, H, W] in [-1, 1]."""
        maps = self.convs(self._resize(frames.float()) * 0.5 + 0.5)  # in [0, 1]: a black background is zero
        return self.frame_out(torch.cat([self.where(maps), self.what(maps)], dim=1))

    def forward(self, videos: Tensor) -> Tensor:
        """Clip features [B, video_dim] of videos [B, 3, T, H, W] in [-1, 1]."""
        frames = self.frame_features(rearrange(videos, "b c t h w -> (b t) c h w"))
        sequence = rearrange(frames, "(b t) d -> b d t", b=len(videos))
        return self.temporal(sequence).mean(dim=-1)


def save_feature_net(path: str | Path, model: VideoFeatureNet, metadata: dict) -> Path:
    """Write config.json (config + training metadata) and model.safetensors atomically."""
    from safetensors.torch import save_file

    from kinema.atomic import atomic_directory

    with atomic_directory(path) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps({"config": asdict(model.config), **metadata}, indent=2))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
    return Path(path)


def load_feature_net(path: str | Path | None = None) -> tuple[VideoFeatureNet, dict]:
    """Load a `VideoFeatureNet` directory (default: the one Kinema ships) -> (model in eval mode, metadata)."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else SHIPPED_FEATURES
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise KinemaError(f"no feature network in {path} (expected {CONFIG_FILE} and {WEIGHTS_FILE}); "
                          f"train one with: python -m kinema.metrics.train_features --out {path}")
    values = json.loads((path / CONFIG_FILE).read_text())
    model = VideoFeatureNet(VideoFeatureNetConfig(**values.pop("config")))
    model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    return model.eval().requires_grad_(False), values


class KinemaVideoFeatures:
    """Kinema's trained video feature network as an extractor: `videos` -> [B, 64], `frames` -> [N, 64]."""

    def __init__(self, path: str | Path | None = None, batch_size: int = 64):
        self.model, self.metadata = load_feature_net(path)
        self.name = "kinema-balls" if path is None else f"kinema:{Path(path).name}"
        self.batch_size = batch_size

    @torch.no_grad()
    def videos(self, videos: Tensor) -> np.ndarray:
        """Clip features [B, D] as float64."""
        _check_videos(videos, self.name)
        return torch.cat([self.model(chunk) for chunk in videos.split(self.batch_size)]).double().numpy()

    @torch.no_grad()
    def frames(self, frames: Tensor) -> np.ndarray:
        """Per-frame features [N, D'] as float64 (frame FID)."""
        return torch.cat([self.model.frame_features(chunk)
                          for chunk in frames.split(self.batch_size * 8)]).double().numpy()


class I3DFeatures:
    """The I3D network from a TorchScript file, fed by the StyleGAN-V or VideoGPT/TATS convention."""

    frames = None  # no image counterpart

    def __init__(self, path: str | Path, preset: str = "stylegan-v", batch_size: int = 8,
                 device: str | torch.device = "cpu"):
        if preset not in I3D_PRESETS:
            raise KinemaError(f"unknown I3D preset '{preset}' (choose from {', '.join(I3D_PRESETS)})")
        path = Path(path)
        if not path.is_file():
            raise KinemaError(f"I3D TorchScript file not found: {path}")
        try:
            self.model = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as error:
            raise KinemaError(f"cannot load {path} as TorchScript: {str(error).splitlines()[0]}") from None
        self.preset, self.device, self.batch_size = preset, torch.device(device), batch_size
        self.name = f"i3d-{preset}"

    def _videogpt_input(self, videos: Tensor) -> Tensor:
        """Short side to 224 (bilinear), centre crop 224x224, per frame; stays in [-1, 1]."""
        b, _, t, h, w = videos.shape
        scale = 224 / min(h, w)
        new_h, new_w = max(224, round(h * scale)), max(224, round(w * scale))
        frames = F.interpolate(rearrange(videos, "b c t h w -> (b t) c h w"), size=(new_h, new_w),
                               mode="bilinear", align_corners=False)
        top, left = (new_h - 224) // 2, (new_w - 224) // 2
        frames = frames[:, :, top: top + 224, left: left + 224]
        return rearrange(frames, "(b t) c h w -> b c t h w", b=b, t=t)

    @torch.no_grad()
    def videos(self, videos: Tensor) -> np.ndarray:
        """The 400 I3D logits per clip [B, 400] as float64."""
        _check_videos(videos, self.name)
        out = []
        for chunk in videos.split(self.batch_size):
            x = chunk.float().clamp(-1, 1).to(self.device)
            try:
                if self.preset == "stylegan-v":
                    y = self.model(x, rescale=False, resize=True, return_features=True)
                else:
                    y = self.model(self._videogpt_input(x))
            except RuntimeError as error:
                raise KinemaError(f"the I3D TorchScript does not accept the '{self.preset}' call "
                                  f"({str(error).splitlines()[0]}); see kinema.metrics.features") from None
            out.append(y.reshape(len(chunk), -1).double().cpu())
        return torch.cat(out).numpy()


def _check_videos(videos: Tensor, name: str) -> None:
    if videos.ndim != 5 or videos.shape[1] != 3:
        raise KinemaError(f"{name} features need RGB videos [B, 3, T, H, W], got shape {tuple(videos.shape)}")
