"""Video generation from a trained denoiser: text (plain or time-anchored), class labels, classifier-free guidance,
known frames or pixels (animation, prediction, interpolation, inpainting), SDEdit from a given video, any sampler on
any time grid. Everything about the videos to make (shape, text encoder, defaults) comes from the model's sampling
spec."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from kinema.autoencoder.latent_space import LatentSpace
from kinema.conditioning.anchored import PromptPlan, PromptSpec, plan_prompts
from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.controls import resized_control, sampling_attributes, sampling_controls
from kinema.conditioning.motion_words import motion_from_prompts
from kinema.conditioning.prompts import prompt_conditioning
from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.control.direction import direction_energy
from kinema.diffusion import (batched_classifier_free_guidance, build_schedule, get_sampler, reconstruction_guidance,
                              x0_denoiser)
from kinema.diffusion.guidance import DenoiseFn
from kinema.diffusion.inversion import ddim_invert
from kinema.diffusion.time_grids import time_grid as sampling_times
from kinema.errors import KinemaError
from kinema.models.denoiser import Denoiser
from kinema.models.pretrained import load_pretrained
from kinema.models.quantize import quantize as quantize_weights
from kinema.models.sampling_spec import SamplingSpec, read_sampling_spec
from kinema.pipelines.known import KnownPixels
from kinema.video import write_contact_sheet, write_video

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "pretrained" / "balls"  # text to video
SHIPPED_FRAMES_MODEL = SHIPPED_MODEL.with_name("balls_frames")  # the same, fine-tuned on every frame task (11.1-11.5)


def shipped_model(frames: bool = False) -> Path:
    """The model Kinema ships: for text to video, or (`frames`) for known frames, long videos and streams."""
    return SHIPPED_FRAMES_MODEL if frames else SHIPPED_MODEL


def _at_least(name: str, value, minimum: float, strict: bool = False):
    """`value` when it is >= `minimum` (> with `strict`), else a one-line error naming the option."""
    if value < minimum or (strict and value == minimum):
        raise KinemaError(f"{name} must be {'greater than' if strict else 'at least'} {minimum}, got {value}")
    return value


def _is_anchors(prompt) -> bool:
    """True for one anchored prompt [(frame, text), ...] (as opposed to a list of prompts)."""
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str) for item in prompt)


class TextToVideoPipeline:
    """`pipe(prompts, labels=...) -> videos [B, C, T, H, W]` in [-1, 1] from a denoiser and its sampling spec."""

    def __init__(self, model: Denoiser, config: Config, text_encoder: TextEncoder | None = None,
                 device: str | torch.device = "cpu", spec: SamplingSpec | None = None,
                 latents: LatentSpace | None = None):
        self.model = model.eval().to(device)
        self.config = config
        self.spec = spec or SamplingSpec.from_config(config)
        if self.spec.autoencoder and latents is None:  # a latent model: its autoencoder (model.autoencoder)
            latents = LatentSpace.load(config.autoencoder)
        self.latents = None if latents is None else latents.to(device)
        self.device = torch.device(device)
        self.schedule = build_schedule(config.diffusion.schedule, config.diffusion.shift)
        self.text_encoder = text_encoder or (TextEncoder(self.spec.text_encoder) if self.uses_text else None)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
                        text_encoder: TextEncoder | None = None, frames: bool = False,
                        quantize: str | None = None) -> TextToVideoPipeline:
        """Load a model directory or training checkpoint; None loads the model Kinema ships (`frames`: the one made
        for known frames, long videos and streams, `shipped_model`); `quantize` "int8" stores its Linear and Conv
        weights as int8 (kinema.models.quantize)."""
        model, config, metadata = load_pretrained(shipped_model(frames) if path is None else path)
        model = quantize_weights(model, quantize)
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

    def _guided(self, texts: list[str], labels: Tensor | None, negative_prompt: str, guidance: float,
                known: KnownPixels | None, controls: Conditioning | None = None) -> DenoiseFn:
        """The x0 denoiser of one text per video, with classifier-free guidance, reading `known` when the model
        takes known pixels and the control maps and knobs of `controls` (both guidance branches see them: guidance
        acts on text and class only)."""
        guided = guidance != 1.0 and (self.uses_text or labels is not None)
        cond = self._conditioning(texts, labels, negative_prompt, guided)
        rows = 2 if guided else 1
        if known is not None and "frames" in self.model.conditioning_fields:
            cond.frames, cond.frame_mask = known.video.repeat(rows, 1, 1, 1, 1), known.mask.repeat(rows, 1, 1, 1, 1)
        if controls is not None:
            controls = controls.to(self.device)
            cond.control = None if controls.control is None else controls.control.repeat(rows, 1, 1, 1, 1)
            cond.attributes = None if controls.attributes is None else controls.attributes.repeat(rows, 1)
        denoise = x0_denoiser(lambda x, t: self.model(x, t, cond), self.schedule, self.config.diffusion.prediction)
        return batched_classifier_free_guidance(denoise, guidance) if guided else denoise

    def denoiser(self, plan: PromptPlan, start: int, stop: int, *, labels: Tensor | None = None,
                 guidance: float = 1.0, negative_prompt: str = "", known: KnownPixels | None = None,
                 known_guidance: float = 0.0, motion_strength: float | None = None,
                 direction_guidance: float = 0.0, controls: Conditioning | None = None) -> DenoiseFn:
        """The guided x0 denoiser of frames start..stop-1 of the videos `plan` describes: each frame's estimate is
        its phrases' estimates weighted by how much they own it; `known` (pixels of these frames) is kept by
        replacement, after `known_guidance` steps of reconstruction guidance; `motion_strength` scales motion away
        from the nearest known frame; `direction_guidance` steers single-phrase prompts with motion words;
        `controls` holds the control maps and knobs of a model trained with them."""
        texts, weights = plan.window(start, stop)
        known = None if known is None else known.to(self.device)
        estimates = [self._guided(phrases, labels, negative_prompt, guidance, known, controls) for phrases in texts]
        if len(estimates) == 1:
            denoise = estimates[0]
        else:
            shares = weights.to(self.device)[:, :, None, :, None, None]  # [B, K, 1, T, 1, 1]

            def denoise(x: Tensor, t: Tensor) -> Tensor:
                return sum(shares[:, k].to(x.dtype) * estimate(x, t) for k, estimate in enumerate(estimates))
        directions = motion_from_prompts(texts[0]).to(self.device)
        if direction_guidance > 0 and not plan.anchored and directions.any():
            denoise = reconstruction_guidance(denoise, direction_energy(directions), direction_guidance)
        if known is None:
            return denoise
        if motion_strength is not None:
            if not known.whole_frames.any(dim=1).all():
                raise KinemaError("motion strength scales motion away from a given frame: give a whole frame "
                                  "(an image or keyframe) for every video")
            denoise = known.scaling_motion(denoise, motion_strength)
        return known.keeping(denoise, known_guidance)

    def start(self, noise: Tensor, steps: int, time_grid: str, known: KnownPixels | None = None,
              init_video: Tensor | None = None, strength: float = 1.0,
              inverting: DenoiseFn | None = None) -> tuple[Tensor, Tensor]:
        """(x at the first time, the time grid) of a sampling run: `strength` < 1 starts from `init_video` noised to
        time `strength` with the grid scaled to end there (SDEdit, Meng et al. 2022), using round(steps * strength)
        steps, or, given the `inverting` denoiser, from its DDIM inversion up that grid; a model that reads known
        pixels takes wholly known frames clean at time 0 (a per-frame grid)."""
        times = sampling_times(self.schedule, max(1, round(steps * strength)), time_grid) * strength
        x = noise
        if strength < 1 and inverting is not None:
            x = ddim_invert(inverting, init_video.to(noise), times.flip(0), self.schedule)
        elif strength < 1:
            alpha, sigma = self.schedule.alpha_sigma(torch.tensor(strength, dtype=torch.float64))
            x = alpha.item() * init_video.to(noise) + sigma.item() * noise
        if known is not None and "frames" in self.model.conditioning_fields and known.whole_frames.any():
            whole = known.whole_frames.to(noise.device)
            times = times[:, None, None].repeat(1, *whole.shape).masked_fill(whole.cpu(), 0.0)
            x = torch.where(whole[:, None, :, None, None], known.video.to(noise), x)
        return x, times

    @torch.no_grad()
    def __call__(self, prompts: PromptSpec | list[PromptSpec], *, labels: int | str | Sequence[int | str] | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 steps: int | None = None, sampler: str | None = None, time_grid: str | None = None,
                 guidance: float | None = None, direction_guidance: float | None = None, seed: int = 0,
                 negative_prompt: str = "", progress: bool = True, known: KnownPixels | None = None,
                 known_guidance: float = 0.0, motion_strength: float | None = None,
                 init_video: Tensor | None = None, strength: float | None = None,
                 source_prompt: str | Sequence[str] | None = None,
                 prompt_blend: int = 4, controls: dict[str, Tensor] | None = None,
                 attributes: dict[str, float | None] | None = None) -> Tensor:
        """Generate one video per prompt (of class `labels`: one for all, or one per prompt); options left None take
        the model's sampling spec, and 0 is an error, never a default. `time_grid` spaces the sampler's times
        (uniform | trailing | karras | shifted, kinema.diffusion.time_grids).

        A prompt is a text, a "first A, then B" sequence or [(frame, text), ...] anchors: each phrase owns its frames,
        cross-faded over `prompt_blend` frames (kinema.conditioning.anchored). `guidance` s mixes conditional and
        unconditional estimates as u + s (c - u), the unconditional one with the negative prompt and no class.
        `direction_guidance` > 0 steers prompts with motion words ("to the left") along their direction by
        reconstruction guidance with a direction energy (kinema.control.direction); it costs a backward pass per step.

        `known` gives frames or pixels to keep (kinema.pipelines.known: animation, prediction, interpolation,
        inpainting); `known_guidance` adds reconstruction guidance toward them, `motion_strength` scales motion away
        from the nearest given frame. `init_video` with `strength` in [0, 1] edits a video (SDEdit): 0 returns it, 1
        samples afresh; with `source_prompt` (what the video shows, one for all or one per video; "" for none) it starts
        from the video's DDIM inversion under that prompt instead of fresh noise (kinema.diffusion.inversion), which
        keeps paths closer, and samples with DDIM unless `sampler` says otherwise. An edit keeps the video's motion:
        direction guidance is off unless given.

        `controls` gives a model trained with control maps (`model.controls`: trajectory, camera, low_res_x2, ...)
        its maps, each [1 or B, channels, T, H, W] at the video's size; `attributes` its knobs ({"speed": 2.0, ...});
        those not given read as "no control" (kinema.conditioning.controls)."""
        prompts = [prompts] if isinstance(prompts, str) or _is_anchors(prompts) else list(prompts)
        spec, defaults = self.spec, self.spec.defaults
        steps = _at_least("steps", defaults.steps if steps is None else steps, 1)
        frames = _at_least("num_frames", spec.num_frames if num_frames is None else num_frames, 1)
        height = _at_least("height", spec.height if height is None else height, 1)
        width = _at_least("width", spec.width if width is None else width, 1)
        guidance = defaults.guidance if guidance is None else guidance
        strength = 1.0 if strength is None else strength
        if not 0 <= strength <= 1:
            raise KinemaError(f"strength must be in [0, 1] (0 returns the video, 1 samples afresh), got {strength}")
        editing = init_video is not None and strength < 1  # the motion is the video's: no direction by default
        direction_guidance = _at_least("direction guidance", (0.0 if editing else defaults.direction_guidance)
                                       if direction_guidance is None else direction_guidance, 0)
        shape = (len(prompts), spec.channels, frames, height, width)
        for name, given in (("known pixels", None if known is None else known.video), ("init video", init_video)):
            if given is not None and tuple(given.shape) != shape:
                raise KinemaError(f"{name} are {list(given.shape)} but the videos to make are {list(shape)} "
                                  f"(videos, channels, frames, height, width)")
        if strength < 1 and init_video is None:
            raise KinemaError("strength below 1 edits a video: give init_video")
        if strength == 0:
            return init_video.clamp(-1, 1).cpu()
        if sampler is None:  # an inverted video walks back down the path of its inversion: DDIM's
            sampler = "ddim" if editing and source_prompt is not None else defaults.sampler
        sample_fn = get_sampler(sampler)
        label_indices = None if labels is None else self.class_labels(labels, len(prompts))
        given = known
        motion_controls = Conditioning(
            control=sampling_controls(self.model.controls, controls or {}, len(prompts), shape[2:]),
            attributes=sampling_attributes(self.model.attributes, attributes or {}, len(prompts)))
        if self.latents is not None:
            if direction_guidance > 0 or any(_is_anchors(p) for p in prompts):
                raise KinemaError("direction guidance and time-anchored prompts act on pixel frames: a latent model "
                                  "takes neither yet (set direction_guidance=0, give one text per video)")
            shape, known, init_video = self._in_latents(shape, known, init_video)
            frames = shape[2]
            motion_controls.control = resized_control(motion_controls.control, shape[2:])
        generator = torch.Generator(self.device).manual_seed(seed)
        noise = torch.randn(shape, generator=generator, device=self.device)
        plan = plan_prompts(prompts, frames, prompt_blend)
        denoise = self.denoiser(plan, 0, frames, labels=label_indices, guidance=guidance,
                                negative_prompt=negative_prompt, known=known, known_guidance=known_guidance,
                                motion_strength=motion_strength, direction_guidance=direction_guidance,
                                controls=motion_controls)
        inverting = None
        if source_prompt is not None and strength < 1:
            sources = [source_prompt] * len(prompts) if isinstance(source_prompt, str) else list(source_prompt)
            if len(sources) != len(prompts):
                raise KinemaError(f"{len(sources)} source prompts for {len(prompts)} videos: give one, or one per video")
            inverting = self.denoiser(plan_prompts(sources, frames, prompt_blend), 0, frames, labels=label_indices,
                                      known=known, controls=motion_controls)
        x, times = self.start(noise, steps, defaults.time_grid if time_grid is None else time_grid, known,
                              init_video, strength, inverting)
        with tqdm(total=len(times) - 1, desc="sampling", unit="step", disable=not progress, leave=False) as bar:
            video = sample_fn(denoise, x, times, self.schedule, generator=generator,
                              callback=lambda *_: bar.update(1))
        if self.latents is not None:
            video = self.latents.decode(video)
            if given is not None:  # the given pixels exactly, as in pixel space
                given = given.to(self.device)
                video = torch.where(given.mask, given.video.to(video), video)
        return video.clamp(-1, 1).cpu()

    def _in_latents(self, shape: tuple[int, ...], known: KnownPixels | None, init_video: Tensor | None
                    ) -> tuple[tuple[int, ...], KnownPixels | None, Tensor | None]:
        """The latent shape of videos of `shape`, and the known pixels and video to edit as latents (an element is
        known where all of its pixels are)."""
        latents = self.latents
        shape = (shape[0], latents.channels, *latents.latent_size(*shape[2:]))
        if known is not None:
            known = KnownPixels(latents.encode(known.video.to(self.device)),
                                latents.latent_mask(known.mask.to(self.device)))
        if init_video is not None:
            init_video = latents.encode(init_video.to(self.device))
        return shape, known, init_video

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
