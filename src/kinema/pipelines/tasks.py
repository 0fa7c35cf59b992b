"""Frame tasks: how animation, prediction, interpolation, inpainting, outpainting and editing become known pixels
(a mask over [T, H, W]) and a window schedule over the model's frame count (chapter 11.1.2 temporal chunking,
11.3.2 image animation, 11.4 interpolation, 11.5 inpainting and editing; MCVD, Voleti et al. 2022).

Each task function turns the user's frames into `KnownPixels` over the whole output; `complete` fills in the rest
with a `TextToVideoPipeline`, in one call when the output fits the model's frames, else window by window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.conditioning.anchored import PromptSpec, anchors_of, split_sequence
from kinema.errors import KinemaError
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.video import read_video

Note = Callable[[str], None]


def fit(clip: Tensor, channels: int, height: int, width: int, name: str, note: Note | None = None) -> Tensor:
    """`clip` [C, T, H, W] brought to the model's channels and size (antialiased bilinear), with a note if resized."""
    if clip.shape[-2:] != (height, width):
        if note is not None:
            note(f"{name} is {clip.shape[-1]}x{clip.shape[-2]}: resized to the model's {width}x{height}")
        clip = F.interpolate(clip.transpose(0, 1), size=(height, width), mode="bilinear", antialias=True,
                             align_corners=False).transpose(0, 1).clamp(-1, 1)
    if clip.shape[0] != channels:
        clip = clip.mean(dim=0, keepdim=True).expand(channels, *clip.shape[1:])
    return clip


def read_mask(path: str | Path, clip: Tensor) -> Tensor:
    """The hole [T, H, W] (bool, True = to fill) that a mask image (white = hole) or mask video draws on `clip`
    [C, T, H, W]; a mask of another frame size or length is an error naming the file."""
    mask = read_video(path)[0].mean(dim=0) > 0
    frames, height, width = clip.shape[1:]
    if mask.shape[1:] != (height, width) or mask.shape[0] not in (1, frames):
        kind = "image" if mask.shape[0] == 1 else f"video of {mask.shape[0]} frames"
        raise KinemaError(f"mask {path} is a {mask.shape[2]}x{mask.shape[1]} {kind}, but the video is "
                          f"{width}x{height} with {frames} frames: give a mask image of its size or a mask video "
                          f"of its size and length")
    return mask.expand(frames, height, width)


def box_hole(box: Sequence[int], frames: int, height: int, width: int) -> Tensor:
    """The hole [T, H, W] of a box (x0, y0, x1, y1[, t0, t1]): pixels x0..x1-1, y0..y1-1 of frames t0..t1-1."""
    if len(box) not in (4, 6):
        raise KinemaError(f"a box is x0,y0,x1,y1 or x0,y0,x1,y1,t0,t1, got {list(box)}")
    x0, y0, x1, y1, t0, t1 = [*box, 0, frames] if len(box) == 4 else box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and 0 <= t0 < t1 <= frames):
        raise KinemaError(f"the box {','.join(map(str, box))} does not fit the {width}x{height} video of {frames} "
                          f"frames: need 0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height}, 0 <= t0 < t1 <= {frames}")
    hole = torch.zeros(frames, height, width, dtype=torch.bool)
    hole[t0:t1, y0:y1, x0:x1] = True
    return hole


def fit_hole(hole: Tensor, height: int, width: int) -> Tensor:
    """A hole [T, H, W] resized to the model's size: a pixel is in the hole if any pixel it covers was."""
    if hole.shape[-2:] == (height, width):
        return hole
    return F.interpolate(hole[:, None].float(), size=(height, width), mode="area")[:, 0] > 0


def animation(frames: Tensor | dict[int, Tensor], num_frames: int, index: int = 0) -> KnownPixels:
    """Image animation (chapter 11.3.2): one image [C, H, W] as frame `index`, or keyframes {index: image}
    (negative = from the end)."""
    return KnownPixels.frames(frames if isinstance(frames, dict) else {index: frames}, num_frames)


def prediction(clip: Tensor, new_frames: int, context: int) -> KnownPixels:
    """Video prediction (chapter 11.1.2; MCVD's past frames): the last `context` frames of `clip` [C, T, H, W] (all
    of a shorter clip) followed by `new_frames` unknown ones."""
    if new_frames < 1 or context < 1:
        raise KinemaError(f"prediction needs at least 1 new and 1 context frame, got {new_frames} and {context}")
    given = clip[:, -context:]
    return KnownPixels.frames({i: given[:, i] for i in range(given.shape[1])}, given.shape[1] + new_frames)


def interpolation(clip: Tensor, factor: int) -> KnownPixels:
    """Frame interpolation (chapter 11.4): frame i of `clip` [C, T, H, W] at index i * factor of (T - 1) * factor + 1
    frames, the ones between unknown."""
    if factor < 1:
        raise KinemaError(f"interpolation factor must be at least 1, got {factor}")
    if clip.shape[1] < 2:
        raise KinemaError(f"interpolation needs at least 2 frames, got {clip.shape[1]}")
    return KnownPixels.frames({i * factor: clip[:, i] for i in range(clip.shape[1])},
                              (clip.shape[1] - 1) * factor + 1)


def inpainting(clip: Tensor, hole: Tensor) -> KnownPixels:
    """Inpainting (chapter 11.5): `clip` [C, T, H, W] known outside `hole` ([H, W] for every frame, or [T, H, W];
    True = to fill)."""
    if hole.shape[-2:] != clip.shape[-2:] or hole.ndim not in (2, 3) or \
            (hole.ndim == 3 and hole.shape[0] != clip.shape[1]):
        raise KinemaError(f"the hole {list(hole.shape)} does not fit the video {list(clip.shape[1:])} (T, H, W)")
    return KnownPixels(clip[None], ~hole.expand(clip.shape[1:])[None, None])


def outpainting(clip: Tensor, pad: Sequence[int]) -> KnownPixels:
    """Outpainting (chapter 11.5): `clip` [C, T, H, W] known inside a canvas grown by `pad` = (left, top, right,
    bottom) pixels."""
    if len(pad) != 4 or min(pad) < 0 or max(pad) == 0:
        raise KinemaError(f"outpainting pad must be 4 numbers left,top,right,bottom >= 0, not all 0, got {list(pad)}")
    left, top, right, bottom = pad
    video = F.pad(clip, (left, right, top, bottom))
    mask = F.pad(torch.ones(1, *clip.shape[1:]), (left, right, top, bottom)) > 0
    return KnownPixels(video[None], mask[None])


def editing(clip: Tensor) -> KnownPixels:
    """Editing (chapter 11.5; SDEdit, Meng et al. 2022): nothing of `clip` [C, T, H, W] is kept as it is; the edit
    starts from it instead, given as `init_video` with a `strength`."""
    return KnownPixels(clip[None], torch.zeros(1, 1, *clip.shape[1:], dtype=torch.bool))


def _window_prompt(prompt: PromptSpec, num_frames: int, start: int, stop: int) -> PromptSpec:
    """The part of a prompt over the whole video that falls in frames start..stop-1, anchored at the window's start."""
    if isinstance(prompt, str) and len(split_sequence(prompt)) == 1:
        return prompt
    anchors = anchors_of(prompt, num_frames)
    current = [text for frame, text in anchors if frame <= start][-1]
    return [(0, current), *[(frame - start, text) for frame, text in anchors if start < frame < stop]]


def next_window(finished: Tensor, given: Tensor, size: int, overlap: int) -> tuple[int, int, int] | None:
    """(start, stop, keep) of the next window of `size` frames over frames `finished` [T] (bool) so far, None when
    all are: it takes `overlap` finished frames before the first unfinished one (fewer if that lets it reach the
    next `given` frame) and keeps its frames up to the last given frame inside it (all at the end or when none is),
    so a stretch between given frames is made seeing the frame that closes it."""
    todo = (~finished).nonzero()[:, 0]
    if not len(todo):
        return None
    first, frames = int(todo[0]), len(finished)
    closing = given.nonzero()[:, 0]
    closing = closing[closing > first]
    start = first - overlap
    if len(closing) and start < int(closing[0]) + 1 - size <= max(first - 1, 0):
        start = int(closing[0]) + 1 - size
    start = min(max(start, 0), frames - size)
    stop = start + size
    inside = closing[closing < stop]
    return start, stop, stop if stop == frames or not len(inside) else int(inside[-1]) + 1


def complete(pipe: TextToVideoPipeline, prompts: PromptSpec | list[PromptSpec], known: KnownPixels, *,
             overlap: int | None = None, seed: int = 0, init_video: Tensor | None = None, **sampling) -> Tensor:
    """Videos [B, C, T, H, W] that keep `known` (over the whole output, one prompt per video) with the rest sampled
    by `pipe` (`sampling`: its keyword options; `init_video` + `strength` edit a video). An output longer than the
    model's frames W is made autoregressively in windows of W frames (chapter 11.1.2), each taking the frames
    finished before it as known (`overlap` of them, default W / 2) and keeping its frames up to the last given
    frame inside it; a shorter one is made in one window, padded with unknown frames at the end."""
    prompts = [prompts] if isinstance(prompts, str) or isinstance(prompts[0], tuple) else list(prompts)
    size, (frames, height, width) = pipe.spec.num_frames, known.video.shape[2:]
    overlap = size // 2 if overlap is None else overlap
    if frames < size:  # pad to one whole window, made as the model was trained
        pad = size - frames
        known = KnownPixels(F.pad(known.video, (0, 0, 0, 0, 0, pad)),
                            F.pad(known.mask, (0, 0, 0, 0, 0, pad), value=False))
        if init_video is not None:
            init_video = torch.cat([init_video, init_video[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
        return complete(pipe, prompts, known, overlap=overlap, seed=seed, init_video=init_video,
                        **sampling)[:, :, :frames]
    if frames > size and not 0 < overlap < size:
        raise KinemaError(f"window overlap must be in 1..{size - 1} (the model makes {size} frames), got {overlap}")
    video, done = known.video.clone(), known.mask.clone()
    given, window = known.whole_frames.all(dim=0), 0
    while (span := next_window(done.flatten(3).all(dim=3)[:, 0].all(dim=0), given, size, overlap)) is not None:
        start, stop, keep = span
        out = pipe([_window_prompt(p, frames, start, stop) for p in prompts], num_frames=size, height=height,
                   width=width, seed=seed + window, known=KnownPixels(video[:, :, start:stop], done[:, :, start:stop]),
                   init_video=None if init_video is None else init_video[:, :, start:stop], **sampling)
        video[:, :, start:keep], done[:, :, start:keep] = out[:, :, :keep - start], True
        window += 1
    return video
