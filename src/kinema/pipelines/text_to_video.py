"""Text-to-video generation from a trained denoiser: text encoding, classifier-free guidance, any sampler."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.motion_words import motion_from_prompts
from kinema.conditioning.prompts import prompt_conditioning
from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.control.direction import direction_energy
from kinema.diffusion import (batched_classifier_free_guidance, build_schedule, get_sampler, reconstruction_guidance,
                              x0_denoiser)
from kinema.errors import KinemaError
from kinema.models.pretrained import load_pretrained
from kinema.video import write_contact_sheet, write_video

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "pretrained" / "balls"


class TextToVideoPipeline:
    """`pipe(prompts) -> videos [B, C, T, H, W]` in [-1, 1] from a text-conditioned denoiser."""

    def __init__(self, model: nn.Module, config: Config, text_encoder: TextEncoder | None = None,
                 device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.config = config
        self.device = torch.device(device)
        self.schedule = build_schedule(config.diffusion.schedule, config.diffusion.shift)
        self.text_encoder = text_encoder or (TextEncoder(config.train.text_encoder) if self.uses_text else None)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
                        text_encoder: TextEncoder | None = None) -> TextToVideoPipeline:
        """Load a model directory or training checkpoint; None loads the model Kinema ships."""
        model, config, _ = load_pretrained(SHIPPED_MODEL if path is None else path)
        return cls(model, config, text_encoder, device)

    @property
    def uses_text(self) -> bool:
        """False for an unconditional model (text_dim 0): prompts then only set how many videos to make."""
        return getattr(self.config.model, "text_dim", 0) > 0

    def _conditioning(self, prompts: list[str], negative_prompt: str, guided: bool) -> Conditioning:
        if not self.uses_text:
            return Conditioning()
        texts = prompts + [negative_prompt] * len(prompts) if guided else prompts
        fields = getattr(self.model, "conditioning_fields", frozenset())
        return prompt_conditioning(texts, self.text_encoder, fields).to(self.device)

    @torch.no_grad()
    def __call__(self, prompts: str | list[str], *, num_frames: int | None = None, steps: int | None = None,
                 sampler: str | None = None, guidance: float | None = None, direction_guidance: float | None = None,
                 seed: int = 0, negative_prompt: str = "", progress: bool = True) -> Tensor:
        """Generate one video per prompt; unset options take the model config's `sample` defaults.

        `direction_guidance` > 0 steers prompts with motion words ("to the left") along their direction by
        reconstruction guidance with a direction energy (kinema.control.direction); it costs a backward pass per
        step for those prompts."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        defaults = self.config.sample
        steps = steps or defaults.steps
        guidance = defaults.guidance if guidance is None else guidance
        direction_guidance = defaults.direction_guidance if direction_guidance is None else direction_guidance
        sample_fn = get_sampler(sampler or defaults.sampler)
        if steps < 1:
            raise KinemaError(f"steps must be at least 1, got {steps}")
        if direction_guidance < 0:
            raise KinemaError(f"direction guidance must be at least 0, got {direction_guidance}")
        frames = num_frames or self.config.data.num_frames
        if frames < 1:
            raise KinemaError(f"num_frames must be at least 1, got {frames}")
        size = self.config.data.size
        shape = (len(prompts), self.config.model.in_channels, frames, size, size)
        generator = torch.Generator(self.device).manual_seed(seed)
        noise = torch.randn(shape, generator=generator, device=self.device)

        guided = guidance != 1.0 and self.uses_text
        cond = self._conditioning(prompts, negative_prompt, guided)
        prediction = self.config.diffusion.prediction
        denoise = x0_denoiser(lambda x, t: self.model(x, t, cond), self.schedule, prediction)
        if guided:
            denoise = batched_classifier_free_guidance(denoise, guidance)
        directions = motion_from_prompts(prompts).to(self.device)
        if direction_guidance > 0 and directions.any():
            denoise = reconstruction_guidance(denoise, direction_energy(directions), direction_guidance)
        with tqdm(total=steps, desc="sampling", unit="step", disable=not progress, leave=False) as bar:
            video = sample_fn(denoise, noise, self.schedule, steps, generator=generator,
                              callback=lambda *_: bar.update(1))
        return video.clamp(-1, 1).cpu()

    def save(self, videos: Tensor, path: str | Path, *, format: str | None = None, sheet: str | Path | None = None,
             fps: float | None = None, scale: int = 8) -> list[Path]:
        """Write each video (PATH, or PATH_i for several) and optionally a PNG contact sheet of all of them."""
        path = Path(path)
        if format is not None:
            path = path.with_suffix(f".{format}")
        fps = fps or self.config.sample.fps
        names = [path] if len(videos) == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}")
                                                  for i in range(len(videos))]
        written = [write_video(name, video, fps=fps, scale=scale) for name, video in zip(names, videos)]
        if sheet is not None:
            written.append(write_contact_sheet(sheet, videos, scale=max(1, scale // 2)))
        return written
