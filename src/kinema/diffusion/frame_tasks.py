"""Frame tasks: which pixels of a training clip are given and which noise level each frame gets, so that one model
learns to animate, predict, interpolate, inpaint, outpaint and denoise frames at different levels (chapter 11.1.2,
11.3.2, 11.4, 11.5; MCVD, Voleti et al. 2022: masked past and future frames; diffusion forcing, Chen et al. 2024:
per-frame noise levels; FIFO-Diffusion, Kim et al. 2024: a diagonal of levels).

  none       nothing given: plain generation
  first      frame 0 given (image animation)            last      the last frame given
  keyframes  2 .. T/2 random frames given               prefix    the first 1 .. T-1 frames given (prediction)
  sparse     every r-th frame given (interpolation)     box       all but a space-time box given (inpainting)
  outpaint   a centre region given in every frame       forcing   nothing given, an independent level per frame
  diagonal   nothing given, levels rising linearly along the frames (a FIFO queue's window)

Each sample draws its task and the task's sizes from its own generator (see `DiffusionLoss`), so a batch's draws do
not depend on its partners.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kinema.errors import KinemaError

FRAME_TASKS = ("none", "first", "last", "keyframes", "prefix", "sparse", "box", "outpaint", "forcing", "diagonal")
PIXEL_TASKS = ("box", "outpaint")  # tasks that give parts of frames: only a frame-conditioned model can read them


def _integer(low: int, high: int, generator: torch.Generator) -> int:
    """A whole number in [low, high], drawn from `generator`."""
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=generator.device).item())


def _uniform(generator: torch.Generator, count: int = 1) -> Tensor:
    """`count` floats in [0, 1) on the CPU, drawn from `generator`."""
    return torch.rand(count, generator=generator, device=generator.device, dtype=torch.float64).cpu()


def draw_frame_task(name: str, frames: int, height: int, width: int,
                    generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """(known [1, T, H, W] bool, levels [T] or None) of task `name` (see the module doc) for one clip."""
    known = torch.zeros(1, frames, height, width, dtype=torch.bool)
    many = frames > 1
    if name == "first":
        known[:, 0] = True
    elif name == "last":
        known[:, -1] = True
    elif name == "keyframes" and many:
        count = _integer(min(2, frames - 1), max(min(2, frames - 1), frames // 2), generator)
        chosen = torch.randperm(frames, generator=generator, device=generator.device)[:count].cpu()
        known[:, chosen] = True
    elif name == "prefix" and many:
        known[:, :_integer(1, frames - 1, generator)] = True
    elif name == "sparse" and many:
        stride = _integer(2, max(2, frames - 1), generator)
        known[:, _integer(0, stride - 1, generator)::stride] = True
    elif name == "box":
        first, last = sorted(_integer(0, frames - 1, generator) for _ in range(2))
        box_h, box_w = _integer(max(1, height // 4), max(1, 3 * height // 4), generator), \
            _integer(max(1, width // 4), max(1, 3 * width // 4), generator)
        top, left = _integer(0, height - box_h, generator), _integer(0, width - box_w, generator)
        known[:] = True
        known[:, first:last + 1, top:top + box_h, left:left + box_w] = False
    elif name == "outpaint":
        top, bottom = _integer(0, height // 4, generator), _integer(0, height // 4, generator)
        left, right = _integer(0, width // 4, generator), _integer(0, width // 4, generator)
        known[:, :, top:height - bottom, left:width - right] = True
    elif name == "forcing":
        return known, _uniform(generator, frames).float()
    elif name == "diagonal":
        span, start = _uniform(generator, 2).tolist()
        span = 0.1 + 0.9 * span
        levels = start * (1 - span) + span * torch.arange(1, frames + 1, dtype=torch.float64) / frames
        return known, levels.float()
    elif name not in FRAME_TASKS:
        raise KinemaError(f"unknown frame task '{name}' (choose from {', '.join(FRAME_TASKS)})")
    return known, None


def draw_frame_tasks(names: tuple[str, ...] | list[str], shape: torch.Size,
                     generators: list[torch.Generator]) -> tuple[Tensor, Tensor]:
    """(known [B, 1, T, H, W] bool, levels [B, T] with NaN where a sample keeps its drawn level) for a batch of
    video shape [B, C, T, H, W]: each sample draws one of `names` (repeat a name to weight it)."""
    batch, _, frames, height, width = shape
    known = torch.zeros(batch, 1, frames, height, width, dtype=torch.bool)
    levels = torch.full((batch, frames), float("nan"))
    for i, generator in enumerate(generators):
        name = names[_integer(0, len(names) - 1, generator)]
        known[i], drawn = draw_frame_task(name, frames, height, width, generator)
        if drawn is not None:
            levels[i] = drawn
    return known, levels
