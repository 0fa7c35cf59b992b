"""What each frame task makes of the user's files (chapter 11.1-11.5): the known pixels, `complete`'s options, the
written frame rate and notes on resized inputs; one place for the command line and the studio."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from kinema.errors import KinemaError
from kinema.models.sampling_spec import SamplingSpec
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.tasks import (animation, box_hole, editing, fit, fit_hole, inpainting, interpolation,
                                    outpainting, prediction, read_mask)
from kinema.video import read_video


@dataclass
class TaskInputs:
    """A frame task ready to run: `complete(pipe, prompts, known, **options)`, written at `fps` (None: the model's)."""

    known: KnownPixels
    options: dict = field(default_factory=dict)
    fps: float | None = None
    notes: list[str] = field(default_factory=list)  # "clip.mp4 is 64x48: resized to the model's 32x32"


def read_fitted(path: Path, spec: SamplingSpec, notes: list[str]):
    """(clip [C, T, H, W] brought to the model's channels and size, noting in `notes` if resized; its fps) of an
    image or video file."""
    clip, fps = read_video(path)
    return fit(clip, spec.channels, spec.height, spec.width, str(path), notes.append), fps


def animate_inputs(spec: SamplingSpec, images: dict[int, Path], num_frames: int | None = None,
                   motion_strength: float | None = None, physics_start: float | None = None) -> TaskInputs:
    """Image animation or keyframes (chapter 11.3.2): each image at its frame index (negative: from the end); one
    image may start from its objects run forward by the simulator (`physics_start`, the pipeline's)."""
    if not images:
        raise KinemaError("animate needs an image, or --keyframe INDEX:IMAGE (repeatable)")
    if num_frames is not None and num_frames < 1:
        raise KinemaError(f"--num-frames must be at least 1, got {num_frames}")
    notes = []
    frames = {index: read_fitted(path, spec, notes)[0][:, 0] for index, path in images.items()}
    known = animation(frames, spec.num_frames if num_frames is None else num_frames)
    return TaskInputs(known, {"motion_strength": motion_strength, "physics_start": physics_start}, None, notes)


def predict_inputs(spec: SamplingSpec, clip: Path, frames: int | None = None, context: int | None = None
                   ) -> TaskInputs:
    """Video prediction (chapter 11.1.2): `frames` new ones after the clip's last `context` frames (default: half the
    model's frames, also the overlap of the windows)."""
    context = spec.num_frames // 2 if context is None else context
    if not 1 <= context < spec.num_frames:
        raise KinemaError(f"--context must be 1..{spec.num_frames - 1} (the model makes {spec.num_frames} frames at "
                          f"a time), got {context}")
    frames = spec.num_frames - context if frames is None else frames
    if frames < 1:
        raise KinemaError(f"--frames must be at least 1, got {frames}")
    notes = []
    video, fps = read_fitted(clip, spec, notes)
    return TaskInputs(prediction(video, frames, context), {"overlap": min(context, video.shape[1])}, fps, notes)


def interpolate_inputs(spec: SamplingSpec, clip: Path, factor: int) -> TaskInputs:
    """Frame interpolation (chapter 11.4): `factor` - 1 new frames between each pair, at `factor` times the fps."""
    if factor < 2:
        raise KinemaError(f"--factor must be at least 2, got {factor}")
    notes = []
    video, fps = read_fitted(clip, spec, notes)
    return TaskInputs(interpolation(video, factor), {}, fps * factor, notes)


def inpaint_inputs(spec: SamplingSpec, clip: Path, mask: Path | None = None, box: Sequence[int] | None = None,
                   pad: Sequence[int] | None = None) -> TaskInputs:
    """Inpainting a hole drawn by a mask file (white = hole) or a box, or outpainting a canvas grown by `pad`
    (chapter 11.5)."""
    if sum(given is not None for given in (mask, box, pad)) != 1:
        raise KinemaError("inpaint takes one of --mask, --box and --pad")
    raw, fps = read_video(clip)
    hole = None if mask is None else read_mask(mask, raw)
    hole = box_hole(box, *raw.shape[1:]) if box is not None else hole
    notes = []
    video = fit(raw, spec.channels, spec.height, spec.width, str(clip), notes.append)
    known = outpainting(video, pad) if pad is not None else inpainting(video, fit_hole(hole, spec.height, spec.width))
    return TaskInputs(known, {}, fps, notes)


def edit_inputs(spec: SamplingSpec, clip: Path, strength: float = 0.6, source: str | None = None) -> TaskInputs:
    """Editing (chapter 11.5): SDEdit at `strength`, or from the clip's DDIM inversion under the `source` prompt."""
    if not 0 <= strength <= 1:
        raise KinemaError(f"--strength must be in [0, 1] (0 returns the video, 1 samples afresh), got {strength}")
    notes = []
    video, fps = read_fitted(clip, spec, notes)
    options = {"init_video": video[None], "strength": strength, "source_prompt": source}
    return TaskInputs(editing(video), options, fps, notes)
