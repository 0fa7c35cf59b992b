"""One studio request as the `kinema` command that makes the same video, and running it through the pipelines
(kinema.pipelines: text_to_video, long_video, tasks); the studio has no sampling logic of its own."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from kinema.errors import KinemaError
from kinema.pipelines import task_inputs
from kinema.studio.models import Pipelines

TASKS = ("generate", "animate", "predict", "interpolate", "inpaint", "edit")
FILE_OPTIONS = {"mask": "--mask", "trajectory": "--trajectory"}  # input files the commands take as options
POSITIONAL_FILE = {"animate": "image", "predict": "clip", "interpolate": "clip", "inpaint": "clip", "edit": "clip"}
SAMPLING = ("seed", "steps", "sampler", "guidance", "negative_prompt")  # every command's sampler options
GENERATE_ONLY = ("num_frames", "label", "direction_guidance", "trajectory_guidance", "trajectory_projection", "camera",
                 "camera_guidance", "speed", "brightness", "motion_amount")
TASK_ONLY = {"animate": ("last", "num_frames", "motion_strength"), "predict": ("frames", "context"),
             "interpolate": ("factor",), "inpaint": ("pad",), "edit": ("strength", "source")}
KNOBS = ("speed", "brightness", "motion_amount")
VIDEO_FILE, SHEET_FILE = "video.mp4", "sheet.png"


@dataclass
class Job:
    """A request: the `task` (a kinema command), its prompt, the model directory (None: the one Kinema ships), its
    input files by role (image, clip, mask, trajectory; relative to the folder it runs in), its options by the
    command's option names (None: left to the model's defaults) and the upscaling of the written video."""

    task: str
    prompt: str = ""
    model: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    scale: int = 8

    def __post_init__(self):
        if self.task not in TASKS:
            raise KinemaError(f"unknown task '{self.task}': one of {', '.join(TASKS)}")
        allowed = set(SAMPLING) | set(GENERATE_ONLY if self.task == "generate" else TASK_ONLY[self.task])
        unknown = sorted(set(self.options) - allowed)
        if unknown:
            raise KinemaError(f"kinema {self.task} takes no option {', '.join(unknown)}")
        self.options = {name: value for name, value in self.options.items()
                         if value is not None and value is not False and value != ""}
        if self.task in POSITIONAL_FILE and POSITIONAL_FILE[self.task] not in self.inputs:
            raise KinemaError(f"{self.task} needs {'an image' if self.task == 'animate' else 'a video'}: upload one")

    def arguments(self) -> list[str]:
        """The `kinema` command line (without `kinema`) that makes this job's video in its folder."""
        words = [self.task]
        if self.task in POSITIONAL_FILE:
            words.append(self.inputs[POSITIONAL_FILE[self.task]])
        if self.task in ("generate", "edit"):
            words.append(self.prompt)
        elif self.prompt:
            words += ["--prompt", self.prompt]
        for role, option in FILE_OPTIONS.items():
            if role in self.inputs:
                words += [option, self.inputs[role]]
        model = self.model if self.model is not None else _shipped_text_model(self)
        if model is not None:
            words += ["--checkpoint", str(model)]
        for name, value in self.options.items():
            option = "--" + name.replace("_", "-")
            if value is True:
                words.append(option)
            else:
                words += [option, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
        return words + ["--scale", str(self.scale), "--output", VIDEO_FILE, "--sheet", SHEET_FILE]

    def command(self) -> str:
        """The equivalent shell command, run in the job's folder."""
        return shlex.join(["kinema", *self.arguments()])


def _shipped_text_model(job: Job) -> Path | None:
    """The directory a text-only `generate` job on the shipped models runs (the 32x32 text model, or the frames
    model beyond its frames), which `kinema generate` must be told: its own default is the 64x64 latent model; None
    for other jobs, whose shipped model `kinema generate` picks as the studio does."""
    steered = "trajectory" in job.inputs or {"camera", *KNOBS} & set(job.options)
    if job.task != "generate" or steered:
        return None
    longer = job.options.get("num_frames", 0) > Pipelines.spec(None).num_frames
    return Pipelines.directory(None, frames=longer)


@dataclass
class Finished:
    """The videos [B, C, T, H, W] in [-1, 1] a job made, and their frame rate."""

    videos: Tensor
    fps: float


def run(job: Job, pipelines: Pipelines, folder: Path) -> Iterator[Tensor | Finished]:
    """Run `job` on the files in `folder`: a video longer than the model's frames yields each frame [C, H, W] as it is
    final; the last item is always `Finished`."""
    options = dict(job.options)
    sampling = {name: options.pop(name) for name in SAMPLING if name in options}
    spec = pipelines.spec(job.model)
    if job.task != "generate":
        inputs = _task_inputs(job, spec, folder, options)
        pipe = pipelines.get(job.model, frames=True)
        from kinema.pipelines.tasks import complete

        videos = complete(pipe, [job.prompt], inputs.known, **inputs.options, **sampling)
        yield Finished(videos, inputs.fps or pipe.spec.fps)
        return
    frames = options.pop("num_frames", None)
    if "label" in options:
        sampling["labels"] = options.pop("label")
    if frames is not None and frames > spec.num_frames:
        if set(options) - {"direction_guidance"} or "trajectory" in job.inputs:
            raise KinemaError("paths, camera moves and knobs steer one window of the model's frames: ask for at most "
                              f"{spec.num_frames} frames with them")
        yield from _long(job, pipelines, frames, {**sampling, **options})
        return
    attributes = {name: options.pop(name) for name in KNOBS if name in options}
    if "trajectory" in job.inputs:
        from kinema.control.binding import bound_trajectory

        options["trajectory"] = bound_trajectory(folder / job.inputs["trajectory"], job.prompt)
    controls = "trajectory" in options or bool(attributes)
    pipe = pipelines.get(job.model, controls=controls, camera="camera" in options and not controls)
    videos = pipe([job.prompt], num_frames=frames, attributes=attributes or None, **sampling, **options)
    yield Finished(videos, pipe.spec.fps)


def _long(job: Job, pipelines: Pipelines, frames: int, sampling: dict) -> Iterator[Tensor | Finished]:
    """A video longer than the model's frames, window by window (kinema.pipelines.long_video), frame by frame."""
    from kinema.pipelines.long_video import generate_long

    pipe = pipelines.get(job.model, frames=True)
    made = []
    for frame in generate_long(pipe, job.prompt, frames, **sampling):
        made.append(frame)
        yield frame
    yield Finished(torch.stack(made, dim=1)[None], pipe.spec.fps)


def _task_inputs(job: Job, spec, folder: Path, options: dict) -> task_inputs.TaskInputs:
    """The frame task's known pixels and options from the job's files in `folder`."""
    files = {role: folder / name for role, name in job.inputs.items()}
    if job.task == "animate":
        index = -1 if options.get("last") else 0
        return task_inputs.animate_inputs(spec, {index: files["image"]}, options.get("num_frames"),
                                          options.get("motion_strength"))
    if job.task == "predict":
        return task_inputs.predict_inputs(spec, files["clip"], options.get("frames"), options.get("context"))
    if job.task == "interpolate":
        return task_inputs.interpolate_inputs(spec, files["clip"], options.get("factor", 2))
    if job.task == "inpaint":
        return task_inputs.inpaint_inputs(spec, files["clip"], files.get("mask"), None, options.get("pad"))
    return task_inputs.edit_inputs(spec, files["clip"], options.get("strength", 0.6), options.get("source"))
