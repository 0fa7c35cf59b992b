"""Cascaded generation (chapter 11.4; Imagen Video, Ho et al. 2022; SVD, Blattmann et al. 2023): keyframes from a
text-to-video model, in-between frames from a frame-conditioned model, then a larger frame size from a
super-resolution model conditioned on the upsampled video (noised to the `noise_aug` level it was trained with).

Each stage is an ordinary Kinema model (`TextToVideoPipeline`); any stage can be left out. The interpolation stage is
the interpolation frame task (`kinema.pipelines.tasks`), window by window when the video is longer than its frames;
the super-resolution stage reads control `low_res_x2` or `low_res_x4` (kinema.conditioning.controls) and runs over
windows of its own frame count, each keeping the frames made before it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.conditioning.anchored import PromptSpec
from kinema.errors import KinemaError
from kinema.models.pretrained import load_pretrained
from kinema.models.sampling_spec import read_sampling_spec
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.tasks import complete, interpolation, next_window
from kinema.pipelines.text_to_video import SHIPPED_FRAMES_MODEL, SHIPPED_PIXEL_MODEL, TextToVideoPipeline

SR_CONTROLS = {"low_res_x2": 2, "low_res_x4": 4}  # the super-resolution controls and their size factors
SHIPPED_SR_MODEL = Path(__file__).resolve().parent.parent / "pretrained" / "balls_sr"  # 32x32 -> 64x64, when shipped
STAGES = ("keyframes", "interpolation", "super-resolution")


def stage_paths(stages: str | None = None) -> tuple[Path | None, Path | None, Path | None]:
    """The model directories of "KEYFRAMES,INTERP,SR" (None: all shipped): each a directory, `shipped` (or empty)
    for the model Kinema ships for that stage, or `none` to leave the stage out."""
    entries = ["shipped"] * 3 if stages is None else [entry.strip() for entry in stages.split(",")]
    if len(entries) != 3:
        raise KinemaError(f"--stages takes three entries KEYFRAMES,INTERP,SR (a model directory, 'shipped' or "
                          f"'none'), got '{stages}'")
    shipped = (SHIPPED_PIXEL_MODEL, SHIPPED_FRAMES_MODEL, SHIPPED_SR_MODEL)  # the 32x32 models SR enlarges
    paths = []
    for name, entry, default in zip(STAGES, entries, shipped):
        if entry.lower() == "none":
            paths.append(None)
        elif entry.lower() in ("", "shipped"):
            if not default.is_dir():
                raise KinemaError(f"Kinema ships no {name} model: train one (kinema train configs/cascade_sr.yaml, "
                                  f"then kinema export CHECKPOINT DIR) and give it in --stages, or 'none'")
            paths.append(default)
        else:
            paths.append(Path(entry))
    if not any(paths):
        raise KinemaError("--stages leaves every stage out: give at least one model")
    return tuple(paths)


@dataclass
class StageRun:
    """What one stage made: its name, the videos' shape [B, C, T, H, W] and the seconds it took."""

    name: str
    shape: tuple[int, ...]
    seconds: float


@dataclass
class CascadeResult:
    """The cascade's videos [B, C, T, H, W] in [-1, 1], their frame rate and each stage's run."""

    video: Tensor
    fps: float
    stages: list[StageRun] = field(default_factory=list)


def _sr_factor(pipe: TextToVideoPipeline) -> int:
    """The size factor of a super-resolution stage (its low-res control), or a one-line error."""
    names = [name for name in pipe.model.controls if name in SR_CONTROLS]
    if len(names) != 1:
        raise KinemaError(f"the super-resolution stage must read one low-res control (low_res_x2 or low_res_x4), it "
                          f"reads {', '.join(pipe.model.controls) or 'none'}: train it with "
                          f"model.controls=[low_res_x2] (configs/cascade_sr.yaml)")
    residual = pipe.config.diffusion.residual_of
    if residual and residual != names[0]:
        raise KinemaError(f"the super-resolution stage diffuses the residual of '{residual}', not of its low-res "
                          f"control {names[0]}: train it with diffusion.residual_of={names[0]}")
    return SR_CONTROLS[names[0]]


def _same_frames(name: str, pipe: TextToVideoPipeline, channels: int, height: int, width: int, before: str) -> None:
    """A one-line error when stage `name` does not make videos of the given channels and frame size."""
    spec = pipe.spec
    if (spec.channels, spec.height, spec.width) != (channels, height, width):
        raise KinemaError(f"the {name} stage makes {spec.channels}-channel {spec.width}x{spec.height} frames but the "
                          f"{before} gives {channels}-channel {width}x{height} ones: give stages whose sizes match")


class CascadePipeline:
    """`pipe(prompts) -> CascadeResult`: keyframes -> temporal interpolation -> spatial super-resolution (each
    optional)."""

    def __init__(self, keyframes: TextToVideoPipeline | None = None, interpolation: TextToVideoPipeline | None = None,
                 super_resolution: TextToVideoPipeline | None = None, factor: int | None = None):
        if keyframes is None and interpolation is None and super_resolution is None:
            raise KinemaError("a cascade needs at least one stage")
        if interpolation is not None and "frames" not in interpolation.model.conditioning_fields:
            raise KinemaError("the interpolation stage must read known frames: train it with "
                              "model.frame_conditioning=true and train.frame_tasks (configs/balls_frames.yaml)")
        if factor is None:  # the stages' frame rates tell it (2 fps keyframes, an 8 fps interpolator: 4), else 2
            ratio = interpolation.spec.fps / keyframes.spec.fps if keyframes and interpolation else 1.0
            factor = round(ratio) if round(ratio) >= 2 and abs(ratio - round(ratio)) < 1e-6 else 2
        if interpolation is not None and factor < 2:
            raise KinemaError(f"the interpolation factor must be at least 2, got {factor}")
        self.keyframes, self.interpolation, self.super_resolution = keyframes, interpolation, super_resolution
        self.factor = factor if interpolation is not None else 1
        self.sr_factor = 1 if super_resolution is None else _sr_factor(super_resolution)
        if keyframes is not None and interpolation is not None:
            spec = keyframes.spec
            _same_frames("interpolation", interpolation, spec.channels, spec.height, spec.width, "keyframe stage")
        last = interpolation or keyframes
        if last is not None and super_resolution is not None:
            spec, s = last.spec, self.sr_factor
            _same_frames("super-resolution", super_resolution, spec.channels, spec.height * s, spec.width * s,
                         f"previous stage x{s}")

    @classmethod
    def from_pretrained(cls, keyframes: str | Path | None, interpolation: str | Path | None,
                        super_resolution: str | Path | None, factor: int | None = None,
                        device: str | torch.device = "cpu") -> CascadePipeline:
        """A cascade of model directories or checkpoints (None leaves a stage out); stages reading text through the
        same encoder share it."""
        pipes, encoders = [], {}
        for path in (keyframes, interpolation, super_resolution):
            pipe = None
            if path is not None:
                model, config, metadata = load_pretrained(path)
                spec = read_sampling_spec(config, metadata)
                pipe = TextToVideoPipeline(model, config, encoders.get(spec.text_encoder), device, spec)
                if pipe.text_encoder is not None:
                    encoders[spec.text_encoder] = pipe.text_encoder
            pipes.append(pipe)
        return cls(*pipes, factor)

    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the videos a cascade without a keyframe stage starts from."""
        first = self.interpolation or self.super_resolution
        s = 1 if self.interpolation is not None else self.sr_factor
        return first.spec.channels, first.spec.height // s, first.spec.width // s

    def interpolate(self, prompts: list[PromptSpec], video: Tensor, *, seed: int, steps: int | None,
                    progress: bool) -> Tensor:
        """Frame i of `video` [B, C, T, H, W] at i * factor of (T - 1) * factor + 1 frames, the rest made by the
        interpolation stage (the interpolation frame task, window by window; keyframes fix the motion, so no
        direction guidance)."""
        tasks = [interpolation(clip, self.factor) for clip in video]
        known = KnownPixels(torch.cat([task.video for task in tasks]), torch.cat([task.mask for task in tasks]))
        return complete(self.interpolation, prompts, known, seed=seed, steps=steps, direction_guidance=0.0,
                        progress=progress)

    def upsample(self, prompts: list[PromptSpec], video: Tensor, *, seed: int, steps: int | None, noise_aug: float,
                 progress: bool) -> Tensor:
        """`video` [B, C, T, H, W] at the super-resolution stage's size: its control is the video upsampled
        (trilinear, as in training) plus `noise_aug` x Gaussian noise, its knob `noise_aug`; windows of the stage's
        frames, each keeping the frames made before it (replacement). A stage trained on residuals
        (`diffusion.residual_of`, SR3 / Imagen Video) makes the video minus its upsampled input, added back here."""
        pipe, s = self.super_resolution, self.sr_factor
        b, c, frames, h, w = video.shape
        up = F.interpolate(video.float(), size=(frames, h * s, w * s), mode="trilinear", align_corners=False)
        low = up + noise_aug * torch.randn(up.shape, generator=torch.Generator().manual_seed(seed))
        base = up if pipe.config.diffusion.residual_of else torch.zeros_like(up)  # what the stage's output adds to
        size = min(pipe.spec.num_frames, frames)
        out = torch.zeros(b, c, frames, h * s, w * s)
        done = torch.zeros(frames, dtype=torch.bool)
        window = 0
        while (span := next_window(done, torch.zeros_like(done), size, size // 2)) is not None:
            start, stop, _ = span
            mask = done[start:stop].view(1, 1, -1, 1, 1).expand(b, 1, -1, h * s, w * s)
            made = pipe(prompts, num_frames=stop - start, height=h * s, width=w * s, seed=seed + window, steps=steps,
                        known=KnownPixels(out[:, :, start:stop] - base[:, :, start:stop], mask.clone())
                        if done[start:stop].any() else None,
                        controls={name: low[:, :, start:stop] for name in pipe.model.controls if name in SR_CONTROLS},
                        attributes={"noise_aug": noise_aug} if "noise_aug" in pipe.model.attributes else None,
                        progress=progress)
            out[:, :, start:stop], done[start:stop] = made + base[:, :, start:stop], True
            window += 1
        return out

    def __call__(self, prompts: PromptSpec | list[PromptSpec], *, video: Tensor | None = None,
                 fps: float | None = None, num_frames: int | None = None, seed: int = 0, steps: int | None = None,
                 noise_aug: float = 0.1, progress: bool = False) -> CascadeResult:
        """One video per prompt through every stage; without a keyframe stage the cascade starts from `video`
        [B, C, T, H, W] (one per prompt) at `fps` (default: the next stage's). `num_frames` keyframes (default: the
        keyframe stage's frames); `steps` for every stage (default: each stage's own); `noise_aug` the noise level
        of the super-resolution stage's low-res condition."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not 0 <= noise_aug <= 1:
            raise KinemaError(f"noise_aug must be in [0, 1] (the stage was trained on [0, 0.5]), got {noise_aug}")
        runs: list[StageRun] = []

        def timed(name: str, make, *args, **options) -> Tensor:
            began = time.perf_counter()
            out = make(*args, **options)
            runs.append(StageRun(name, tuple(out.shape), time.perf_counter() - began))
            return out

        if self.keyframes is not None:
            video = timed("keyframes", self.keyframes, prompts, num_frames=num_frames, seed=seed, steps=steps,
                          progress=progress)
            fps = self.keyframes.spec.fps
        elif video is None or video.ndim != 5 or video.shape[0] != len(prompts):
            raise KinemaError(f"without a keyframe stage the cascade starts from a video [B, C, T, H, W] with one row "
                              f"per prompt ({len(prompts)}), got {None if video is None else list(video.shape)}")
        else:
            channels, height, width = self.input_shape()
            if (video.shape[1], *video.shape[3:]) != (channels, height, width):
                raise KinemaError(f"the cascade's first stage takes {channels}-channel {width}x{height} videos, got "
                                  f"{video.shape[1]}-channel {video.shape[4]}x{video.shape[3]}: give sizes that match")
            fps = (self.interpolation or self.super_resolution).spec.fps if fps is None else fps
        if self.interpolation is not None:
            video = timed("interpolation", self.interpolate, prompts, video, seed=seed, steps=steps,
                          progress=progress)
        if self.super_resolution is not None:
            video = timed("super-resolution", self.upsample, prompts, video, seed=seed, steps=steps,
                          noise_aug=noise_aug, progress=progress)
        return CascadeResult(video.clamp(-1, 1), fps * self.factor, runs)
