"""Trained motion controls (chapter 11.3.3-11.3.5): the dense control maps and scalar knobs a denoiser can be
conditioned on, made from a training batch's ground truth or given by the user at sampling time.

A model names its maps (`model.controls`, e.g. [trajectory, camera]) and knobs (`model.attributes`, e.g. [speed,
brightness], SVD-style micro-conditioning, Blattmann et al. 2023). `Conditioning.control` stacks the maps' channels
in that order, `Conditioning.attributes` the knobs. Maps enter through zero-initialised layers (ControlNet, Zhang et
al. 2023), so adding a control to a trained model changes nothing until it learns to use it. A map of zeros means
"no control" and NaN "knob not given": training drops each with probability `train.control_dropout`, so a model
samples with any subset.

Maps: `trajectory` (Gaussian heatmaps of the objects' centres, each in its object's colour), `object_flow` (each
object's displacement to the next frame on its disc), `camera` (the flow a static scene shows under the camera's
motion), `camera_view` (the clip's frame 0 as the moving camera sees it, and where it is in view: a render along the
camera path; at sampling, of a first video's frame 0), `low_res_x2` / `low_res_x4` (the clip at half / quarter size,
upsampled back: the condition of a super-resolution stage, Imagen Video / SVD; noised by `noise_aug` when the model
reads that knob). Knobs: `speed` (objects' mean px per frame), `brightness` (a gain on the clip, drawn in training),
`motion_amount` (mean absolute frame difference, SVD's motion bucket), `noise_aug` (the noise level of the low-res
condition), `camera_pan` / `camera_tilt` / `camera_zoom` / `camera_roll` (the camera's mean move per step, as the
camera-motion dataset holds it: px, px, log scale, degrees; one global number each, where the `camera` map gives the
same move pixel by pixel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.diffusion.loss import draw
from kinema.errors import KinemaError

FLOW_SCALE = 4.0  # flow maps are given in units of 4 px, so typical motions are ~1
BRIGHTNESS_RANGE = (0.5, 1.5)  # the gain drawn per training clip
NOISE_AUG_MAX = 0.5  # the low-res condition's noise level is drawn from U[0, NOISE_AUG_MAX] in training


@dataclass(frozen=True)
class ControlMap:
    """A dense map of `channels` per pixel and frame; `from_batch(batch, video, extras)` makes it in training."""

    channels: int
    from_batch: Callable[[dict, Tensor, dict], Tensor]


@dataclass(frozen=True)
class Attribute:
    """A scalar knob; `scale` maps typical values to the noise-level embedding's 0..1000 range."""

    scale: float
    from_batch: Callable[[dict, Tensor, dict], Tensor]


def _object_tracks(batch: dict, key: str = "positions") -> tuple[Tensor, Tensor]:
    """(positions [B, K, T, 2] px, radii [B, K]) of a batch with object ground truth (the physics balls)."""
    if key not in batch or "radii" not in batch:
        raise KinemaError(f"this control needs object positions in the data (batch keys '{key}' and 'radii', as the "
                          f"balls dataset gives): the data has {', '.join(sorted(batch))}")
    return batch[key].float().transpose(1, 2), batch["radii"].float()


def trajectory_map(positions: Tensor, radii: Tensor, colours: Tensor, height: int, width: int) -> Tensor:
    """Each object's Gaussian heatmap in its colour, the maximum over objects: positions [B, K, T, 2] px, radii
    [B, K], colours [B, K, 3] RGB in [0, 1] (white when not known) -> the `trajectory` map [B, 3, T, H, W]. The
    colour binds each path to its object ("the red ball" follows the red path)."""
    from kinema.control.heatmaps import trajectory_heatmaps

    objects = positions.shape[1]
    if objects == 0:
        return positions.new_zeros(positions.shape[0], 3, positions.shape[2], height, width)
    blobs = torch.stack([trajectory_heatmaps(positions[:, k : k + 1], radii[:, k : k + 1], height, width)
                         for k in range(objects)], dim=1)  # [B, K, 1, T, H, W]
    return (blobs * colours[:, :, :, None, None, None].to(blobs)).amax(dim=1)


def _trajectory_map(batch: dict, video: Tensor, extras: dict) -> Tensor:
    positions, radii = _object_tracks(batch)
    return trajectory_map(positions.to(video.device), radii.to(video.device), batch["colors"].float().to(video.device),
                          *video.shape[-2:])


def _object_flow_map(batch: dict, video: Tensor, extras: dict) -> Tensor:
    from kinema.control.heatmaps import sparse_flow

    positions, radii = _object_tracks(batch)
    return sparse_flow(positions.to(video.device), radii.to(video.device), *video.shape[-2:]) / FLOW_SCALE


def camera_map(steps: Tensor, height: int, width: int) -> Tensor:
    """Per-step camera motion [B, T-1, 4] -> the camera control map [B, 2, T, H, W]: the flow of step t-1 -> t at
    frame t, zero at frame 0."""
    from kinema.control.camera import camera_flow

    flow = camera_flow(steps, height, width) / FLOW_SCALE  # [B, T-1, 2, H, W]
    return F.pad(flow.transpose(1, 2), (0, 0, 0, 0, 1, 0))


def _batch_camera(batch: dict, video: Tensor, name: str) -> Tensor:
    """The batch's per-clip camera vectors [B, 4] (pan, tilt, log zoom, roll), or a one-line error naming `name`."""
    if "camera" not in batch:
        raise KinemaError(f"{name} needs per-clip camera motion in the data (batch key 'camera', as the camera dataset "
                          f"gives)")
    return batch["camera"].float().to(video.device)


def _camera_map(batch: dict, video: Tensor, extras: dict) -> Tensor:
    from kinema.control.camera import camera_steps

    steps = camera_steps(_batch_camera(batch, video, "control 'camera'"), video.shape[2])
    return camera_map(steps, *video.shape[-2:])


def _camera_view_map(batch: dict, video: Tensor, extras: dict) -> Tensor:
    from kinema.control.camera import camera_steps, camera_view

    steps = camera_steps(_batch_camera(batch, video, "control 'camera_view'"), video.shape[2])
    return camera_view(video[:, :, 0], steps)


def _camera_part(index: int) -> Callable[[dict, Tensor, dict], Tensor]:
    def part(batch: dict, video: Tensor, extras: dict) -> Tensor:
        return _batch_camera(batch, video, f"knob '{CAMERA_KNOBS[index]}'")[:, index]

    return part


def low_resolution(video: Tensor, factor: int) -> Tensor:
    """The clip at 1/factor size (area averaging), upsampled back (bilinear): what a super-resolution stage sees."""
    small = F.avg_pool3d(video, (1, factor, factor))
    return F.interpolate(small, size=video.shape[2:], mode="trilinear", align_corners=False)


def _low_res_map(factor: int) -> Callable[[dict, Tensor, dict], Tensor]:
    def make(batch: dict, video: Tensor, extras: dict) -> Tensor:
        low = low_resolution(video, factor)
        if "noise_aug" in extras:  # Imagen Video's noise augmentation: the stage learns to fix a noisy condition
            level = extras["noise_aug"].to(video)[:, None, None, None, None]
            low = low + level * extras["noise"](low.shape)
        return low

    return make


def _speed(batch: dict, video: Tensor, extras: dict) -> Tensor:
    positions, radii = _object_tracks(batch)
    step = (positions[:, :, 1:] - positions[:, :, :-1]).norm(dim=-1).mean(-1)  # [B, K]
    present = (radii > 0).float()
    return (step * present).sum(1) / present.sum(1).clamp(min=1)


def _brightness(batch: dict, video: Tensor, extras: dict) -> Tensor:
    return extras["brightness"]


def motion_amount(video: Tensor) -> Tensor:
    """Mean absolute difference of consecutive frames in [0, 1] units: [B, C, T, H, W] -> [B]."""
    return (video[:, :, 1:] - video[:, :, :-1]).abs().mean((1, 2, 3, 4)) / 2


def _motion_amount(batch: dict, video: Tensor, extras: dict) -> Tensor:
    return motion_amount(video)


def _noise_aug(batch: dict, video: Tensor, extras: dict) -> Tensor:
    return extras["noise_aug"]


CAMERA_KNOBS = ("camera_pan", "camera_tilt", "camera_zoom", "camera_roll")  # the order of the dataset's vector
CONTROL_MAPS: dict[str, ControlMap] = {
    "trajectory": ControlMap(3, _trajectory_map),
    "object_flow": ControlMap(2, _object_flow_map),
    "camera": ControlMap(2, _camera_map),
    "camera_view": ControlMap(4, _camera_view_map),
    "low_res_x2": ControlMap(3, _low_res_map(2)),
    "low_res_x4": ControlMap(3, _low_res_map(4)),
}
ATTRIBUTES: dict[str, Attribute] = {
    "speed": Attribute(100.0, _speed),
    "brightness": Attribute(500.0, _brightness),
    "motion_amount": Attribute(5000.0, _motion_amount),
    "noise_aug": Attribute(1000.0, _noise_aug),
    "camera_pan": Attribute(250.0, _camera_part(0)),
    "camera_tilt": Attribute(250.0, _camera_part(1)),
    "camera_zoom": Attribute(8000.0, _camera_part(2)),
    "camera_roll": Attribute(100.0, _camera_part(3)),
}


def check_names(key: str, names: tuple[str, ...], known: dict) -> None:
    """One-line error for an unknown or repeated control / attribute name in config key `key`."""
    for name in names:
        if name not in known:
            raise KinemaError(f"config key '{key}': unknown '{name}' (choose from {', '.join(known)})")
    if len(set(names)) != len(names):
        raise KinemaError(f"config key '{key}' names a control twice: {list(names)}")


def control_channels(names: tuple[str, ...]) -> int:
    """Channels of `Conditioning.control` for these maps."""
    return sum(CONTROL_MAPS[name].channels for name in names)


def attribute_scales(names: tuple[str, ...]) -> list[float]:
    """The embedding scale of each knob."""
    return [ATTRIBUTES[name].scale for name in names]


def camera_knobs(attributes: tuple[str, ...], steps: Tensor) -> dict[str, float]:
    """The camera knobs of `attributes` for a camera move of steps [T-1, 4]: its mean, as the dataset holds it."""
    from kinema.control.camera import dataset_camera

    vector = dataset_camera(steps.float()).tolist()
    return {name: vector[i] for i, name in enumerate(CAMERA_KNOBS) if name in attributes}


def training_controls(controls: tuple[str, ...], attributes: tuple[str, ...], batch: dict, video: Tensor,
                      generators: list[torch.Generator], dropout: float) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(the clip after knob augmentations, control maps [B, Cc, T, H, W] or None, knobs [B, A] or None) for pixel
    clips `video` [B, C, T, H, W]; each map is zeroed and each knob set to NaN with probability `dropout`."""
    b, device = video.shape[0], video.device

    def uniform() -> Tensor:
        return draw(torch.rand, torch.Size([b]), generators, device=device)

    kept = {name: uniform() >= dropout for name in (*controls, *attributes)}

    def augmentation(name: str, low: float, high: float, neutral: float) -> Tensor:
        """A level drawn in [low, high], or the neutral one where the knob is dropped (not given = the data as is)."""
        return torch.where(kept[name], low + (high - low) * uniform(), torch.full((b,), neutral, device=device))

    extras: dict = {"noise": lambda shape: draw(torch.randn, torch.Size(shape), generators, device=device)}
    if "brightness" in attributes:
        extras["brightness"] = gain = augmentation("brightness", *BRIGHTNESS_RANGE, 1.0)
        video = (((video + 1) / 2) * gain[:, None, None, None, None]).clamp(0, 1) * 2 - 1
    if "noise_aug" in attributes:
        extras["noise_aug"] = augmentation("noise_aug", 0.0, NOISE_AUG_MAX, 0.0)
    control = None
    if controls:
        control = torch.cat([CONTROL_MAPS[name].from_batch(batch, video, extras).to(video)
                             * kept[name][:, None, None, None, None] for name in controls], dim=1)
    values = None
    if attributes:
        values = torch.stack([torch.where(kept[name], ATTRIBUTES[name].from_batch(batch, video, extras).to(video),
                                          torch.tensor(float("nan"), device=device)) for name in attributes], dim=1)
    return video, control, values


def resized_control(control: Tensor | None, shape: tuple[int, ...]) -> Tensor | None:
    """Maps made at pixel resolution, resized (area) to the (T, H, W) of what the model denoises, e.g. a latent
    model's grid; None stays None."""
    if control is None or tuple(control.shape[2:]) == tuple(shape):
        return control
    return F.interpolate(control, size=tuple(shape), mode="area")


def sampling_controls(controls: tuple[str, ...], given: dict[str, Tensor], batch: int,
                      shape: tuple[int, int, int]) -> Tensor | None:
    """`Conditioning.control` [B, Cc, T, H, W] from the maps the user gives (each [B or 1, channels, T, H, W] at the
    pixel size `shape` = (T, H, W)); maps not given are zeros. One-line errors for maps the model does not read."""
    unknown = sorted(set(given) - set(controls))
    if unknown:
        raise KinemaError(f"this model reads no control {', '.join(unknown)} (it reads "
                          f"{', '.join(controls) or 'none'}): train one with model.controls=[...]")
    if not controls:
        return None
    maps = []
    for name in controls:
        channels = CONTROL_MAPS[name].channels
        value = given.get(name)
        if value is None:
            maps.append(torch.zeros(batch, channels, *shape))
            continue
        if value.ndim != 5 or value.shape[0] not in (1, batch) or tuple(value.shape[1:]) != (channels, *shape):
            raise KinemaError(f"control '{name}' must be [B, {channels}, {', '.join(map(str, shape))}], got "
                              f"{list(value.shape)}")
        maps.append(value.float().expand(batch, -1, -1, -1, -1))
    return torch.cat(maps, dim=1)


def sampling_attributes(attributes: tuple[str, ...], given: dict[str, float], batch: int) -> Tensor | None:
    """`Conditioning.attributes` [B, A] from the knobs the user gives; knobs not given are NaN (the learned
    "not given"). One-line errors for knobs the model does not read."""
    unknown = sorted(name for name, value in given.items() if value is not None and name not in attributes)
    if unknown:
        raise KinemaError(f"this model reads no knob {', '.join(unknown)} (it reads {', '.join(attributes) or 'none'})"
                          f": train one with model.attributes=[...]")
    if not attributes:
        return None
    row = [float("nan") if given.get(name) is None else float(given[name]) for name in attributes]
    return torch.tensor(row).expand(batch, -1).clone()
