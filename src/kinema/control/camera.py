"""Camera moves: `--camera` specs, their flow fields and a photometric camera energy (chapter 11.3 global motion).

A camera move is one row [pan, tilt, zoom, roll] per frame step t -> t+1:
- pan, tilt: how far the camera moves right / down, in pixels per step (the picture slides the other way);
- zoom: the scale factor per step (1: none, > 1: zoom in, the picture grows about the frame centre);
- roll: degrees per step the camera turns clockwise (the picture turns anticlockwise about the centre).
Each step is one similarity transform of the picture, p' = s R(-roll) p - (pan, tilt) in pixel coordinates
centred on the frame centre (first turn and scale about the centre, then shift), so its flow F(t -> t+1) is the
chapter's global-motion field: pan (u, v) = (-pan, 0), zoom (u, v) = gamma (x - c_x, y - c_y) with gamma = s - 1,
so div F = 2 (s - 1), and roll (u, v) ~ omega (-(y - c_y), x - c_x) with omega = -roll in radians.
Seen backwards, F(t+1 -> t) = (1/s - 1)(p - c) has divergence -2 (s - 1) / s.

The camera-motion dataset (`kinema.data.camera`) holds per clip one vector [pan, tilt, log zoom, roll] with the
same signs; `camera_steps` / `dataset_camera` convert between the two (the zoom: s = exp(log zoom)), exactly for
its clips, which move one way at a time (its pans are in texture pixels, which a zoom or roll would rescale).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from kinema.errors import KinemaError
from kinema.video.flow import inside_frame, warp
from kinema.video.motion import affine_flow

FIELDS = ("pan", "tilt", "zoom", "roll")
NO_MOTION = (0.0, 0.0, 1.0, 0.0)
MOVES = {  # word -> (index in FIELDS, sign): pan-left:2 is pan -2 px, zoom-out:1.02 is zoom 1 / 1.02
    "pan-right": (0, 1), "pan-left": (0, -1), "tilt-down": (1, 1), "tilt-up": (1, -1),
    "zoom-in": (2, 1), "zoom-out": (2, -1), "roll-cw": (3, 1), "roll-ccw": (3, -1),
}
FILE_SUFFIXES = (".csv", ".json")


def camera_steps(camera: Tensor, num_frames: int) -> Tensor:
    """The camera-motion dataset's per-clip vector [.., 4] (pan, tilt, log zoom, roll) -> steps [.., T-1, 4]."""
    steps = torch.cat([camera[..., :2], camera[..., 2:3].exp(), camera[..., 3:]], dim=-1)
    return steps[..., None, :].expand(*camera.shape[:-1], num_frames - 1, 4)


def dataset_camera(steps: Tensor) -> Tensor:
    """Steps [.., T-1, 4] -> the camera-motion dataset's vector [.., 4] (pan, tilt, log zoom, roll), their mean."""
    mean = steps.mean(dim=-2)
    return torch.cat([mean[..., :2], steps[..., 2:3].log().mean(dim=-2), mean[..., 3:]], dim=-1)


def camera_matrix(camera: Tensor) -> Tensor:
    """Camera steps [.., 4] -> the picture's similarity map [.., 2, 3] = [s R(-roll) | -(pan, tilt)]."""
    angle = torch.deg2rad(camera[..., 3])
    scale = camera[..., 2]
    cos, sin = scale * angle.cos(), scale * angle.sin()
    row_x = torch.stack([cos, sin, -camera[..., 0]], dim=-1)
    row_y = torch.stack([-sin, cos, -camera[..., 1]], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)


def camera_from_matrix(matrix: Tensor) -> Tensor:
    """The camera step [.., 4] of an affine map [.., 2, 3]: its closest similarity s R(phi) gives zoom s and roll
    -phi; its shift gives pan and tilt (the inverse of `camera_matrix`)."""
    a = (matrix[..., 0, 0] + matrix[..., 1, 1]) / 2
    b = (matrix[..., 1, 0] - matrix[..., 0, 1]) / 2  # similarity [[a, -b], [b, a]] = s R(phi)
    return torch.stack([-matrix[..., 0, 2], -matrix[..., 1, 2], torch.hypot(a, b),
                        -torch.rad2deg(torch.atan2(b, a))], dim=-1)


def _homogeneous(maps: Tensor) -> Tensor:
    """Affine maps [.., 2, 3] -> [.., 3, 3]."""
    return torch.cat([maps, maps.new_tensor([0.0, 0.0, 1.0]).expand(*maps.shape[:-2], 1, 3)], dim=-2)


def camera_path(camera: Tensor) -> Tensor:
    """Steps [.., T-1, 4] -> the picture's map from frame 0 to each frame t, [.., T, 2, 3] (frame 0: the identity)."""
    maps = [torch.eye(3, dtype=camera.dtype, device=camera.device).expand(*camera.shape[:-2], 3, 3)]
    for step in _homogeneous(camera_matrix(camera)).unbind(-3):
        maps.append(step @ maps[-1])
    return torch.stack(maps, dim=-3)[..., :2, :]


def _checked_steps(camera: Tensor, frames: int) -> Tensor:
    """Camera steps [.., T-1, 4] in float64, or a one-line error when they do not fit `frames` frames."""
    if camera.ndim < 2 or tuple(camera.shape[-2:]) != (frames - 1, 4):
        raise KinemaError(f"camera steps must be [{frames - 1}, 4] for {frames} frames, got {list(camera.shape)}")
    return camera.to(torch.float64)


def _from_first(camera: Tensor, height: int, width: int) -> Tensor:
    """Flows [.., T, 2, H, W] that fetch, for each pixel of frame t, where frame 0 saw that point."""
    return affine_flow(torch.linalg.inv(_homogeneous(camera_path(camera)))[..., :2, :], height, width)


def camera_view(first: Tensor, camera: Tensor) -> Tensor:
    """What a moving camera sees of a still picture: frames 0 [B, C, H, W] carried along camera steps [B or 1, T-1, 4]
    -> [B, C + 1, T, H, W], each frame the picture where frame 0 saw it (else 0) and a last channel 1 there (else 0).
    The `camera_view` control map: a render of the first frame along the camera path, as warp-conditioned camera
    control conditions on renders of a scene along it (Ren et al. 2025, "GEN3C")."""
    batch, _, height, width = first.shape
    frames = camera.shape[-2] + 1
    flows = _from_first(_checked_steps(camera, frames), height, width).to(first.device, first.dtype)
    flows = flows.expand(batch, -1, -1, -1, -1).flatten(0, 1)  # [B T, 2, H, W]
    seen = inside_frame(flows)[:, None].to(first.dtype)
    carried = warp(first.repeat_interleave(frames, dim=0), flows) * seen
    return rearrange(torch.cat([carried, seen], dim=1), "(b t) c h w -> b c t h w", b=batch)


def camera_warped(videos: Tensor, camera: Tensor) -> Tensor:
    """Videos [B, C, T, H, W] remade as a still scene seen by camera steps [T-1, 4]: each frame shows frame 0 carried
    along the move where frame 0 saw it, else the previous remade frame carried one step, else (what just came into
    view) the video's own frame; the start of a camera-controlled sample (warp, then re-noise and denoise:
    training-free camera control, Hou et al. 2024, "CamTrol")."""
    batch, channels, frames, height, width = videos.shape
    if camera.ndim != 2:
        raise KinemaError(f"camera steps must be [{frames - 1}, 4] for {frames} frames, got {list(camera.shape)}")
    camera = _checked_steps(camera.to(videos.device), frames)
    view = camera_view(videos[:, :, 0], camera[None])
    from_previous = affine_flow(torch.linalg.inv(_homogeneous(camera_matrix(camera)))[:, :2], height, width)
    remade = [videos[:, :, 0]]
    for t in range(1, frames):
        previous = from_previous[t - 1 : t].to(videos.dtype).expand(batch, -1, -1, -1)
        carried = torch.where(inside_frame(previous)[:, None], warp(remade[-1], previous), videos[:, :, t])
        remade.append(torch.where(view[:, channels:, t] > 0, view[:, :channels, t], carried))
    return torch.stack(remade, dim=2)


def camera_flow(camera: Tensor, height: int, width: int) -> Tensor:
    """Flow [.., 2, H, W] (dx, dy px) that a static scene shows from frame t to t+1 under camera steps [.., 4]."""
    if camera.ndim < 1 or camera.shape[-1] != 4:
        raise KinemaError(f"camera steps must be [.., 4] (pan, tilt, zoom, roll), got shape {tuple(camera.shape)}")
    return affine_flow(camera_matrix(camera), height, width)


def _parse_moves(spec: str) -> Tensor:
    """'pan-left:2,zoom-in:1.02' -> one step [4]."""
    step = list(NO_MOTION)
    given: dict[int, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        word, colon, value = part.partition(":")
        word = word.strip().lower()
        if word not in MOVES:
            raise KinemaError(f"camera '{part}': unknown move '{word}' (choose from {', '.join(MOVES)})")
        try:
            amount = float(value) if colon else math.nan
        except ValueError:
            amount = math.nan
        index, sign = MOVES[word]
        if not math.isfinite(amount) or amount < (1 if index == 2 else 0):
            need = "a zoom factor >= 1 per step" if index == 2 else "a number >= 0 per step"
            raise KinemaError(f"camera '{part}': expected {word}:VALUE with {need}")
        if index in given:
            raise KinemaError(f"camera '{part}': {FIELDS[index]} already set by '{given[index]}'")
        given[index] = part
        step[index] = amount ** sign if index == 2 else sign * amount
    return torch.tensor(step)


def _row(values: list, where: str) -> list[float]:
    """One file row of four numbers, checked."""
    try:
        row = [float(v) for v in values]
    except (TypeError, ValueError):
        raise KinemaError(f"{where}: expected numbers pan,tilt,zoom,roll, got {values}") from None
    if len(row) != 4 or not all(math.isfinite(v) for v in row) or row[2] <= 0:
        raise KinemaError(f"{where}: expected 4 finite numbers pan,tilt,zoom,roll with zoom > 0, got {values}")
    return row


def _read_rows(path: Path) -> list[list[float]]:
    """Rows [pan, tilt, zoom, roll] of a CSV (optional header line) or JSON (list of lists or of objects) file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise KinemaError(f"camera file {path}: cannot read it ({error.strerror})") from None
    if path.suffix.lower() == ".csv":
        lines = [line for line in csv.reader(text.splitlines()) if line and any(cell.strip() for cell in line)]
        if lines and [cell.strip().lower() for cell in lines[0]] == list(FIELDS):
            lines = lines[1:]
        return [_row(line, f"camera file {path} row {i + 1}") for i, line in enumerate(lines)]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise KinemaError(f"camera file {path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, list):
        raise KinemaError(f"camera file {path}: expected a list of per-step rows, got {type(data).__name__}")
    rows = []
    for i, item in enumerate(data):
        where = f"camera file {path} row {i + 1}"
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(FIELDS))
            if unknown:
                raise KinemaError(f"{where}: unknown key '{unknown[0]}' (keys: {', '.join(FIELDS)})")
            item = [item.get(name, default) for name, default in zip(FIELDS, NO_MOTION)]
        elif not isinstance(item, list):
            raise KinemaError(f"{where}: expected [pan, tilt, zoom, roll] or an object with those keys")
        rows.append(_row(item, where))
    return rows


def parse_camera(spec: str | Path, num_frames: int) -> Tensor:
    """A camera move -> steps [T-1, 4] (pan px, tilt px, zoom factor, roll deg per step; see the module docstring):
    'pan-left:2,tilt-up:1,zoom-in:1.02,roll-cw:0.5' (every step alike) or a CSV / JSON file of T-1 rows."""
    if num_frames < 2:
        raise KinemaError(f"a camera move needs at least 2 frames, got num_frames={num_frames}")
    text = str(spec).strip()
    if isinstance(spec, Path) or text.lower().endswith(FILE_SUFFIXES) or Path(text).is_file():
        path = Path(spec)
        if path.suffix.lower() not in FILE_SUFFIXES:
            raise KinemaError(f"camera file {path}: expected a .csv or .json file")
        rows = _read_rows(path)
        if len(rows) != num_frames - 1:
            raise KinemaError(f"camera file {path}: {len(rows)} rows, need one per frame step ({num_frames - 1} "
                              f"for {num_frames} frames)")
        return torch.tensor(rows, dtype=torch.float32)
    if not text:
        raise KinemaError("camera: empty move (e.g. 'pan-left:2,zoom-in:1.02')")
    return _parse_moves(text).expand(num_frames - 1, 4).clone()


def camera_energy(camera: Tensor) -> Callable[[Tensor], Tensor]:
    """Energy `E(video [B, C, T, H, W]) -> [B]` of how far a video is from moving by camera steps [B, T-1, 4]:
    frame t against frame t+1 warped back along the camera's flow (brightness constancy, chapter 11.1.3),
    squared error over the pixels that stay in view, times the frame area; differentiable in the video."""
    if camera.ndim != 3 or camera.shape[-1] != 4:
        raise KinemaError(f"camera energy needs steps [B, T-1, 4], got shape {tuple(camera.shape)}")

    def energy(video: Tensor) -> Tensor:
        batch, _, frames, height, width = video.shape
        if (batch, frames - 1) != tuple(camera.shape[:2]):
            raise KinemaError(f"camera steps {tuple(camera.shape)} do not fit videos {tuple(video.shape)}: "
                              f"need [{batch}, {frames - 1}, 4]")
        flow = camera_flow(camera.to(video), height, width).flatten(0, 1)  # [B (T-1), 2, H, W]
        following = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w")
        current = rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w")
        error = (warp(following, flow) - current).square().mean(1)  # [B (T-1), H, W]
        seen = inside_frame(flow).to(video.dtype)
        per_step = (error * seen).sum((-2, -1)) / seen.sum((-2, -1)).clamp(min=1.0)
        return height * width * per_step.view(batch, frames - 1).mean(1)

    return energy
