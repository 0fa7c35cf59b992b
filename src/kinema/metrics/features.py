"""Feature extractors for FVD / KVD / frame FID: Kinema's own small video network, and any TorchScript video network.

Every extractor maps videos [B, 3, T, H, W] in [-1, 1] to features [B, D] (`videos`) and, when it
has an image counterpart for per-frame FID, frames [N, 3, H, W] to [N, D'] (`frames`).

- `KinemaVideoFeatures`: `VideoFeatureNet`, a ~0.2M-parameter two-stream network (frames and frame
  differences, Simonyan & Zisserman 2014) trained by `python -m kinema.metrics.train_features` on every
  synthetic set Kinema has (physics balls, moving digits, camera moves over noise and dead-leaves
  textures) to tell the play order (forward, reversed, shuffled, frozen), the source set, the blur and
  noise levels and the motion labels. Its pooled temporal features make FVD sensitive to broken motion
  and blur (the content bias of I3D, Ge et al. 2024), and its per-frame encoder gives frame FID. Its
  config.json records the training domain (sources, sizes, frame counts, objectives, steps, the exact
  command) and clip-feature statistics for domain checks (kinema.metrics.controls). Shipped in
  kinema/pretrained/video_features, so it works offline. Inputs are resized to 32x32 (area / bilinear);
  any number of frames >= 2.
- `I3DFeatures`: a TorchScript video network the user gives, with one of three conventions (`I3D_PRESETS`):
  * "stylegan-v" (StyleGAN-V, Skorokhodov et al. 2022, which matches the original TF FVD up to
    resizing): the clip in [-1, 1] at its own size goes to the StyleGAN-V `i3d_torchscript.pt` called as
    `model(x, rescale=False, resize=True, return_features=True)`: the network resizes every frame to
    224x224 (no crop, aspect ratio not kept) and returns the 400 logits as features. Real clips are
    read with consecutive frames (stride 1) unless `--real-stride` says otherwise.
  * "videogpt" (VideoGPT / TATS): each frame's short side is resized to 224 (bilinear) and the centre
    224x224 is cropped, values in [-1, 1]; the TorchScript module is called as `model(x)` on
    [B, 3, T, 224, 224] and its output (the 400 logits) is the feature.
  * "raw" (a VideoMAE-style feature file, or any other): the clip [B, 3, T, H, W] in [-1, 1] at its own
    size goes to `model(x)` and the output, flattened per clip, is the feature; the file does its own
    resizing and normalisation.
  These networks have no per-frame counterpart here.
"""

from __future__ import annotations

import hashlib
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
I3D_PRESETS = ("stylegan-v", "videogpt", "raw")
ORDERS = ("forward", "reversed", "shuffled", "frozen")  # play orders the network learns to tell apart
SOURCES = ("balls", "digits", "camera", "leaves")  # synthetic sets it is trained on (kinema.metrics.train_features)
MOTION_LABELS = ("object_dx", "object_dy", "pan", "tilt", "zoom", "roll")  # motion targets it regresses


@dataclass
class VideoFeatureNetConfig:
    """Sizes of `VideoFeatureNet` and of its training heads."""

    size: int = 32  # frames are resized to size x size
    width: int = 16  # channels of the first conv of each stream; doubled twice
    frame_dim: int = 64  # per-frame appearance feature size (frame FID)
    motion_dim: int = 32  # per-frame-pair motion feature size
    video_dim: int = 64  # clip feature size (FVD / KVD)
    num_sources: int = len(SOURCES)  # source-set head
    num_motion: int = len(MOTION_LABELS)  # motion-label head


def _conv_stream(channels: int, width: int) -> nn.Sequential:
    """Three strided 3x3 convs with GELU: [N, channels, S, S] -> [N, 4 width, S/8, S/8]."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.GELU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
        nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.GELU(),
    )


def _pooled(maps: Tensor) -> Tensor:
    """Coarse layout (4x4 average grid: positions) and anywhere-in-the-frame evidence (global max) of conv maps."""
    return torch.cat([F.adaptive_avg_pool2d(maps, 4).flatten(1), F.adaptive_max_pool2d(maps, 1).flatten(1)], dim=1)


class VideoFeatureNet(nn.Module):
    """Two-stream clip encoder (Simonyan & Zisserman 2014): frames and frame differences, temporal convs, time mean."""

    def __init__(self, config: VideoFeatureNetConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.appearance = _conv_stream(6, w)  # the frame and its fine detail
        self.frame_out = nn.Linear(4 * w * 17, config.frame_dim)
        self.motion = _conv_stream(6, w)  # frame t and its difference to frame t-1
        self.motion_out = nn.Linear(4 * w * 17, config.motion_dim)
        self.temporal = nn.Sequential(
            nn.GELU(), nn.Conv1d(config.frame_dim + config.motion_dim, config.video_dim, 3, padding=1),
            nn.GELU(), nn.Conv1d(config.video_dim, config.video_dim, 3, padding=1),
        )
        self.heads = nn.ModuleDict({
            "order": nn.Linear(config.video_dim, len(ORDERS)),
            "source": nn.Linear(config.video_dim, config.num_sources),
            "blur": nn.Linear(config.video_dim, 1),
            "noise": nn.Linear(config.video_dim, 1),
            "motion": nn.Linear(config.video_dim, config.num_motion),
        })

    def _resize(self, frames: Tensor) -> Tensor:
        size = self.config.size
        if frames.shape[-2:] == (size, size):
            return frames
        shrink = frames.shape[-1] > size and frames.shape[-2] > size
        return F.interpolate(frames, size=(size, size), mode="area" if shrink else "bilinear")

    def _looks(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(appearance features [N, frame_dim], frames resized and in [0, 1]) of frames [N, 3, H, W] in [-1, 1].

        Besides the resized frame, the appearance stream sees its fine detail: |x - 3x3 box mean of x| at the
        frame's own resolution, then resized, so that blur the resize would hide still shows."""
        frames = frames.float()
        detail = (frames - F.avg_pool2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), 3, stride=1)).abs()
        small = self._resize(frames) * 0.5 + 0.5  # in [0, 1]: a black background is zero
        maps = self.appearance(torch.cat([small, 4.0 * self._resize(detail)], dim=1))
        return self.frame_out(_pooled(maps)), small

    def frame_features(self, frames: Tensor) -> Tensor:
        """Per-frame appearance features [N, frame_dim] of frames [N, 3, H, W] in [-1, 1]."""
        return self._looks(frames)[0]

    def forward(self, videos: Tensor) -> Tensor:
        """Clip features [B, video_dim] of videos [B, 3, T >= 2, H, W] in [-1, 1]."""
        b, t = videos.shape[0], videos.shape[2]
        looks, frames = self._looks(rearrange(videos, "b c t h w -> (b t) c h w"))
        frames = rearrange(frames, "(b t) c h w -> b t c h w", b=b)
        pairs = torch.cat([frames[:, 1:], frames[:, 1:] - frames[:, :-1]], dim=2)
        moves = self.motion_out(_pooled(self.motion(rearrange(pairs, "b t c h w -> (b t) c h w"))))
        looks = rearrange(looks, "(b t) d -> b d t", b=b)[:, :, 1:]
        moves = rearrange(moves, "(b t) d -> b d t", b=b, t=t - 1)
        return self.temporal(torch.cat([looks, moves], dim=1)).mean(dim=-1)


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
    try:
        model = VideoFeatureNet(VideoFeatureNetConfig(**values.pop("config")))
        model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    except (TypeError, RuntimeError) as error:
        raise KinemaError(f"{path} holds a feature network of another architecture ({str(error).splitlines()[0]}); "
                          f"retrain it with: python -m kinema.metrics.train_features --out {path}") from None
    return model.eval().requires_grad_(False), values


class KinemaVideoFeatures:
    """Kinema's trained video feature network as an extractor: `videos` -> [B, 64], `frames` -> [N, 64]."""

    def __init__(self, path: str | Path | None = None, batch_size: int = 64):
        self.model, self.metadata = load_feature_net(path)
        self.name = "kinema-synthetic" if path is None else f"kinema:{Path(path).name}"
        weights = (Path(path) if path is not None else SHIPPED_FEATURES) / WEIGHTS_FILE
        self.fingerprint = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]  # keys the real-feature cache
        self.batch_size = batch_size

    @torch.no_grad()
    def videos(self, videos: Tensor) -> np.ndarray:
        """Clip features [B, D] as float64."""
        _check_videos(videos, self.name, min_frames=2)
        return torch.cat([self.model(chunk) for chunk in videos.split(self.batch_size)]).double().numpy()

    @torch.no_grad()
    def frames(self, frames: Tensor) -> np.ndarray:
        """Per-frame features [N, D'] as float64 (frame FID)."""
        return torch.cat([self.model.frame_features(chunk)
                          for chunk in frames.split(self.batch_size * 8)]).double().numpy()


class I3DFeatures:
    """A TorchScript video network (I3D, VideoMAE-style) fed by the StyleGAN-V, VideoGPT/TATS or raw convention."""

    frames = None  # no image counterpart

    def __init__(self, path: str | Path, preset: str = "stylegan-v", batch_size: int = 8,
                 device: str | torch.device = "cpu"):
        if preset not in I3D_PRESETS:
            raise KinemaError(f"unknown TorchScript preset '{preset}' (choose from {', '.join(I3D_PRESETS)})")
        path = Path(path)
        if not path.is_file():
            raise KinemaError(f"TorchScript feature file not found: {path}")
        try:
            self.model = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as error:
            raise KinemaError(f"cannot load {path} as TorchScript: {str(error).splitlines()[0]}") from None
        self.preset, self.device, self.batch_size = preset, torch.device(device), batch_size
        self.name = "torchscript-raw" if preset == "raw" else f"i3d-{preset}"

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
        """The network's output per clip [B, D] as float64 (the 400 logits for I3D)."""
        _check_videos(videos, self.name)
        out = []
        for chunk in videos.split(self.batch_size):
            x = chunk.float().clamp(-1, 1).to(self.device)
            try:
                if self.preset == "stylegan-v":
                    y = self.model(x, rescale=False, resize=True, return_features=True)
                elif self.preset == "videogpt":
                    y = self.model(self._videogpt_input(x))
                else:
                    y = self.model(x)
            except RuntimeError as error:
                raise KinemaError(f"the TorchScript network does not accept the '{self.preset}' call "
                                  f"({str(error).splitlines()[0]}); see kinema.metrics.features") from None
            out.append(y.reshape(len(chunk), -1).double().cpu())
        return torch.cat(out).numpy()


def _check_videos(videos: Tensor, name: str, min_frames: int = 1) -> None:
    if videos.ndim != 5 or videos.shape[1] != 3 or videos.shape[2] < min_frames:
        raise KinemaError(f"{name} features need RGB videos [B, 3, T >= {min_frames}, H, W], "
                          f"got shape {tuple(videos.shape)}")
