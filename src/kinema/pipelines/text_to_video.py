"""Text-to-video generation from a trained denoiser: text encoding, class labels, classifier-free guidance, any
sampler. Everything about the videos to make (shape, text encoder, defaults) comes from the model's sampling spec."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.motion_words import motion_from_prompts
from kinema.conditioning.prompts import prompt_conditioning
from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.control.direction import direction_energy
from kinema.diffusion import (batched_classifier_free_guidance, build_schedule, get_sampler, reconstruction_guidance,
                              x0_denoiser)
from kinema.diffusion.time_grids import time_grid as sampling_times
from kinema.errors import KinemaError
from kinema.models.denoiser import Denoiser
from kinema.models.pretrained import load_pretrained
from kinema.models.sampling_spec import SamplingSpec, read_sampling_spec
from kinema.video import write_contact_sheet, write_video

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "pretrained" / "balls"


def _at_least(name: str, value, minimum: float, strict: bool = False):
    """`value` when it is >= `minimum` (> with `strict`), else a one-line error naming the option."""
    if value < minimum or (strict and value == minimum):
        raise KinemaError(f"{name} must be {'greater than' if strict else 'at least'} {minimum}, got {value}")
    return value


class TextToVideoPipeline:
    """`pipe(prompts, labels=...) -> videos [B, C, T, H, W]` in [-1, 1] from a denoiser and its sampling spec."""

    def __init__(self, model: Denoiser, config: Config, text_encoder: TextEncoder | None = None,
                 device: str | torch.device = "cpu", spec: SamplingSpec | None = None):
        self.model = model.eval().to(device)
        self.config = config
        self.spec = spec or SamplingSpec.from_config(config)
        if self.spec.autoencoder:
            raise KinemaError(f"this model denoises latents of autoencoder '{self.spec.autoencoder}', which "
                              f"TextToVideoPipeline cannot decode")
        self.device = torch.device(device)
        self.schedule = build_schedule(config.diffusion.schedule, config.diffusion.shift)
        self.text_encoder = text_encoder or (TextEncoder(self.spec.text_encoder) if self.uses_text else None)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
                        text_encoder: TextEncoder | None = None) -> TextToVideoPipeline:
        """Load a model directory or training checkpoint; None loads the model Kinema ships."""
        model, config, metadata = load_pretrained(SHIPPED_MODEL if path is None else path)
        return cls(model, config, text_encoder, device, read_sampling_spec(config, metadata))

    @property
    def uses_text(self) -> bool:
        """False for a model without text (text_dim 0): prompts then only set how many videos to make."""
        return self.model.text_dim > 0

    def class_labels(self, labels: int | str | Sequence[int | str], count: int) -> Tensor:
        """Label indices [count] from class indices or names (one for every video, or one per video)."""
        classes = self.model.num_classes
        if not classes:
            raise KinemaError("this model has no classes (model.num_classes=0): it cannot take a label")
        items = [labels] if isinstance(labels, (int, str)) else list(labels)
        if len(items) == 1:
            items *= count
        if len(items) != count:
            raise KinemaError(f"got {len(items)} labels for {count} videos: give one label, or one per prompt")
        names = self.spec.classes
        indices = []
        for item in items:
            if isinstance(item, str) and item in names:
                item = names.index(item)
            elif isinstance(item, str) and re.fullmatch(r"-?\d+", item):
                item = int(item)
            if not isinstance(item, int) or not -1 <= item < classes:
                known = f" or a name ({', '.join(names)})" if names else ""
                raise KinemaError(f"label {item!r} is not a class of this model: give 0..{classes - 1}{known}, "
                                  f"or -1 for none")
            indices.append(item)
        return torch.tensor(indices, dtype=torch.long)

    def _conditioning(self, prompts: list[str], labels: Tensor | None, negative_prompt: str,
                      guided: bool) -> Conditioning:
        """The conditional rows (prompts, labels), followed when `guided` by the unconditional ones (the negative
        prompt, no class)."""
        fields, count = self.model.conditioning_fields, len(prompts)
        texts = prompts + [negative_prompt] * count if guided else prompts
        cond = prompt_conditioning(texts, self.text_encoder, fields)
        if "labels" in fields:
            given = torch.full((count,), -1, dtype=torch.long) if labels is None else labels
            cond.labels = torch.cat([given, torch.full_like(given, -1)]) if guided else given
        return cond.to(self.device)

    @torch.no_grad()
    def __call__(self, prompts: str | list[str], *, labels: int | str | Sequence[int | str] | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 steps: int | None = None, sampler: str | None = None, time_grid: str | None = None,
                 guidance: float | None = None, direction_guidance: float | None = None, seed: int = 0,
                 negative_prompt: str = "", progress: bool = True) -> Tensor:
        """Generate one video per prompt (of class `labels`: one for all, or one per prompt); options left None take
        the model's sampling spec, and 0 is an error, never a default. `time_grid` spaces the sampler's times
        (uniform | trailing | karras | shifted, kinema.diffusion.time_grids).

        `guidance` s mixes conditional and unconditional estimates as u + s (c - u), the unconditional one with the
        negative prompt and no class. `direction_guidance` > 0 steers prompts with motion words ("to the left")
        along their direction by reconstruction guidance with a direction energy (kinema.control.direction); it
        costs a backward pass per step for those prompts."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        spec, defaults = self.spec, self.spec.defaults
        steps = _at_least("steps", defaults.steps if steps is None else steps, 1)
        frames = _at_least("num_frames", spec.num_frames if num_frames is None else num_frames, 1)
        height = _at_least("height", spec.height if height is None else height, 1)
        width = _at_least("width", spec.width if width is None else width, 1)
        guidance = defaults.guidance if guidance is None else guidance
        direction_guidance = _at_least("direction guidance", defaults.direction_guidance if direction_guidance is None
                                       else direction_guidance, 0)
        sample_fn = get_sampler(defaults.sampler if sampler is None else sampler)
        label_indices = None if labels is None else self.class_labels(labels, len(prompts))
        generator = torch.Generator(self.device).manual_seed(seed)
        noise = torch.randn((len(prompts), spec.channels, frames, height, width), generator=generator,
                            device=self.device)

        guided = guidance != 1.0 and (self.uses_text or label_indices is not None)
        cond = self._conditioning(prompts, label_indices, negative_prompt, guided)
        prediction = self.config.diffusion.prediction
        denoise = x0_denoiser(lambda x, t: self.model(x, t, cond), self.schedule, prediction)
        if guided:
            denoise = batched_classifier_free_guidance(denoise, guidance)
        directions = motion_from_prompts(prompts).to(self.device)
        if direction_guidance > 0 and directions.any():
            denoise = reconstruction_guidance(denoise, direction_energy(directions), direction_guidance)
        times = sampling_times(self.schedule, steps, defaults.time_grid if time_grid is None else time_grid)
        with tqdm(total=steps, desc="sampling", unit="step", disable=not progress, leave=False) as bar:
            video = sample_fn(denoise, noise, times, self.schedule, generator=generator,
                              callback=lambda *_: bar.update(1))
        return video.clamp(-1, 1).cpu()

    def save(self, videos: Tensor, path: str | Path, *, format: str | None = None, sheet: str | Path | None = None,
             fps: float | None = None, scale: int = 8) -> list[Path]:
        """Write each video (PATH, or PATH_i for several) at `fps` (default: the spec's) and optionally a PNG
        contact sheet of all of them."""
        path = Path(path)
        if format is not None:
            path = path.with_suffix(f".{format}")
        fps = _at_least("fps", self.spec.fps if fps is None else fps, 0, strict=True)
        names = [path] if len(videos) == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}")
                                                  for i in range(len(videos))]
        written = [write_video(name, video, fps=fps, scale=scale) for name, video in zip(names, videos)]
        if sheet is not None:
            written.append(write_contact_sheet(sheet, videos, scale=max(1, scale // 2)))
        return written
