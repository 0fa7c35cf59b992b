"""Camera motion over textures: pan, tilt, zoom and roll with the motion parameters as labels (chapter 11.1.4).

A virtual camera looks at a photograph (scikit-learn's bundled sample images), a seeded noise texture or a seeded
field of still discs (the balls dataset's sizes and palette). Frame t shows the texture points
p = c + t (pan, tilt) + R(t roll) q / exp(t zoom) for the output pixel offsets q from the centre, sampled
bilinearly, so pan > 0 moves the camera right (the picture slides left), tilt > 0 moves it down, zoom > 0 zooms in
and roll > 0 turns it clockwise (the picture turns anticlockwise). One motion per clip, its signed speed drawn
from the config.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig, render_balls
from kinema.data.synthetic import SyntheticDataset
from kinema.errors import KinemaError

MOTIONS = ("pan", "tilt", "zoom", "roll")  # label index = position here; `camera` holds the four speeds
TEXTURES = ("photo", "noise", "discs")
DISC_AREA_FRACTION = 0.12  # share of a disc field covered by discs (about 6 discs in a 32x32 view)
MIN_TEXTURE_STD = 0.1  # a view flatter than this (in [-1, 1] units) is drawn again


@dataclass
class CameraMotionConfig:
    """Which camera moves, how fast (per frame) and over what (`data.kind: camera`)."""

    num_frames: int = 8  # T
    size: int = 32  # H = W
    motions: tuple[str, ...] = MOTIONS
    max_pan: float = 2.0  # px per frame, for pan and tilt
    max_zoom: float = 0.06  # log scale per frame
    max_roll: float = 5.0  # degrees per frame
    texture: str = "photo"  # photo | noise | discs
    fps: float = 8.0

    def __post_init__(self):
        self.motions = tuple(self.motions)
        name = type(self).__name__
        if not self.motions or any(m not in MOTIONS for m in self.motions):
            raise KinemaError(f"{name}.motions must be names from {MOTIONS}, got {self.motions}")
        if self.texture not in TEXTURES:
            raise KinemaError(f"{name}.texture: unknown '{self.texture}' (choose from {', '.join(TEXTURES)})")
        if self.num_frames < 1 or self.size < 4 or min(self.max_pan, self.max_zoom, self.max_roll) <= 0:
            raise KinemaError(f"{name}: need num_frames >= 1, size >= 4 and positive max speeds")


@functools.lru_cache(maxsize=4)
def photo_textures(side: int) -> tuple[Tensor, ...]:
    """scikit-learn's sample photographs as `[3, H, W]` in [-1, 1], scaled so the shorter side is `side`."""
    from sklearn.datasets import load_sample_images

    textures = []
    for image in load_sample_images().images:
        picture = rearrange(torch.from_numpy(image.copy()).float() / 127.5 - 1.0, "h w c -> 1 c h w")
        scale = side / min(picture.shape[-2:])
        textures.append(F.interpolate(picture, scale_factor=scale, mode="bilinear", antialias=True)[0])
    return tuple(textures)


def noise_texture(side: int, rng: np.random.Generator) -> Tensor:
    """Colour noise with a natural-image spectrum (amplitude ~ 1 / frequency^1.5), `[3, side, side]` in [-1, 1]."""
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(side), np.fft.rfftfreq(side), indexing="ij"))
    amplitude = np.where(frequency > 0, np.maximum(frequency, 1.0 / side) ** -1.5, 0.0)
    spectrum = amplitude * np.exp(2j * np.pi * rng.random((3, *frequency.shape)))
    texture = np.fft.irfft2(spectrum, s=(side, side))
    texture /= np.abs(texture).max(axis=(1, 2), keepdims=True)
    return torch.from_numpy(texture.astype(np.float32))


def disc_texture(side: int, rng: np.random.Generator) -> Tensor:
    """Still discs of the balls dataset's radii and colours scattered over black, `[3, side, side]` in [-1, 1]."""
    low, high = BouncingBallsConfig.radius_range
    count = round(DISC_AREA_FRACTION * side * side / (math.pi * ((low + high) / 2) ** 2))
    radii = rng.uniform(low, high, count)
    colors = np.array(list(BALL_COLORS.values()))[rng.integers(len(BALL_COLORS), size=count)]
    return render_balls(rng.uniform(0, side, (1, count, 2)), radii, colors, side)[:, 0]


def texture_side(config: CameraMotionConfig) -> int:
    """Texture side that holds every view of a clip at the config's fastest zoom-out and pan."""
    steps = config.num_frames - 1
    reach = config.size / math.sqrt(2) * math.exp(config.max_zoom * steps) + 2
    return max(4 * config.size, math.ceil(2 * reach + config.max_pan * steps) + 4)


def camera_caption(motion: str, speed: float, limit: float) -> str:
    """'the camera pans left slowly', 'the camera zooms in', ... from the signed speed of one motion."""
    words = {"pan": ("pans right", "pans left"), "tilt": ("tilts down", "tilts up"),
             "zoom": ("zooms in", "zooms out"), "roll": ("rotates clockwise", "rotates anticlockwise")}[motion]
    pace = " slowly" if abs(speed) < 0.5 * limit else " quickly"
    return f"the camera {words[0] if speed > 0 else words[1]}{pace}"


def render_camera(texture: Tensor, centre: tuple[float, float], camera: Tensor, num_frames: int, size: int) -> Tensor:
    """Frames `[3, T, size, size]` seen by a camera at texture point `centre` (x, y) moving by `camera` per frame."""
    pan, tilt, zoom, roll = camera.tolist()
    _, height, width = texture.shape
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    qy, qx = torch.meshgrid(offsets, offsets, indexing="ij")
    grids = []
    for t in range(num_frames):
        angle, scale = math.radians(roll * t), math.exp(zoom * t)
        px = centre[0] + pan * t + (math.cos(angle) * qx - math.sin(angle) * qy) / scale
        py = centre[1] + tilt * t + (math.sin(angle) * qx + math.cos(angle) * qy) / scale
        grids.append(torch.stack([(px + 0.5) / width * 2 - 1, (py + 0.5) / height * 2 - 1], dim=-1))
    frames = F.grid_sample(texture[None].expand(num_frames, -1, -1, -1), torch.stack(grids), mode="bilinear",
                           padding_mode="border", align_corners=False)
    return rearrange(frames, "t c h w -> c t h w")


class CameraMotion(SyntheticDataset):
    """Map-style camera-motion clips, deterministic in (seed, index): video, caption, label and `camera` speeds."""

    config_class = CameraMotionConfig

    def __getitem__(self, index: int) -> dict:
        """{"video", "caption", "label" (index in MOTIONS), "camera": [pan px, tilt px, zoom, roll deg] per frame}."""
        self.check_index(index)
        config = self.config
        rng = np.random.default_rng([self.seed, index])
        motion = config.motions[int(rng.integers(len(config.motions)))]
        limits = {"pan": config.max_pan, "tilt": config.max_pan, "zoom": config.max_zoom, "roll": config.max_roll}
        limit = limits[motion]
        speed = float(rng.uniform(0.25, 1.0) * limit * rng.choice([-1.0, 1.0]))
        camera = torch.zeros(4)
        camera[MOTIONS.index(motion)] = speed
        steps = config.num_frames - 1
        reach = config.size / math.sqrt(2) * math.exp(max(0.0, -camera[2].item()) * steps) + 2  # view half-diagonal
        side = texture_side(config)
        if config.texture == "photo":
            photos = photo_textures(side)
            texture = photos[int(rng.integers(len(photos)))]
        elif config.texture == "discs":
            texture = disc_texture(side, rng)
        else:
            texture = noise_texture(side, rng)
        _, height, width = texture.shape
        travel_x, travel_y = camera[0].item() * steps, camera[1].item() * steps
        for _ in range(8):  # avoid views of a featureless patch (a clear sky), which show no motion
            centre = (float(rng.uniform(reach - min(0.0, travel_x), width - reach - max(0.0, travel_x))),
                      float(rng.uniform(reach - min(0.0, travel_y), height - reach - max(0.0, travel_y))))
            x, y, half = int(centre[0]), int(centre[1]), config.size // 2
            if texture[:, y - half : y + half, x - half : x + half].std() > MIN_TEXTURE_STD:
                break
        video = render_camera(texture, centre, camera, config.num_frames, config.size)
        return {
            "video": video.clamp(-1, 1).contiguous(),
            "caption": camera_caption(motion, speed, limit),
            "label": torch.tensor(MOTIONS.index(motion)),
            "camera": camera,
        }
