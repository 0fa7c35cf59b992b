"""Video generation from a trained denoiser: text (plain or time-anchored), class labels, classifier-free guidance,
known frames or pixels (animation, prediction, interpolation, inpainting), SDEdit from a given video, any sampler on
any time grid. Everything about the videos to make (shape, text encoder, defaults) comes from the model's sampling
spec."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial, wraps
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from kinema.autoencoder.latent_space import LatentSpace
from kinema.conditioning.anchored import PromptPlan, PromptSpec, plan_prompts
from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.controls import (camera_knobs, camera_map, resized_control, sampling_attributes,
                                          sampling_controls, trajectory_map)
from kinema.conditioning.motion_words import motion_from_prompts
from kinema.conditioning.prompts import prompt_conditioning
from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.control.binding import bind_objects, colour_directions, prompt_colours
from kinema.control.camera import camera_energy, camera_view, camera_warped, parse_camera
from kinema.control.direction import direction_energy
from kinema.control.identity_check import consistency_faults, identity_faults
from kinema.control.identity_energy import identity_energy, known_masses, named_colours, smallest_disc_area
from kinema.control.keyframe_physics import onto_keyframe_paths, sparse_keyframe_paths
from kinema.control.physics_energy import move_objects, physics_energy, project_to_physics
from kinema.control.simulated_start import simulated_start
from kinema.control.speed_energy import speed_energy
from kinema.control.trajectory import TrajectorySpec
from kinema.control.trajectory_energy import trajectory_energy
from kinema.data.physics_balls import BALL_COLORS, DIRECTION_MIN_SPEED, BouncingBallsConfig
from kinema.diffusion import (batched_classifier_free_guidance, build_schedule, get_sampler, reconstruction_guidance,
                              x0_denoiser)
from kinema.diffusion.guidance import DenoiseFn
from kinema.diffusion.inversion import ddim_invert
from kinema.diffusion.rejection import attempt_seed, fewest_faults
from kinema.diffusion.time_grids import time_grid as sampling_times
from kinema.errors import KinemaError
from kinema.models.denoiser import Denoiser
from kinema.models.pretrained import load_pretrained
from kinema.models.quantize import quantize as quantize_weights
from kinema.models.sampling_spec import SamplingSpec, read_sampling_spec
from kinema.pipelines.known import KnownPixels
from kinema.video import write_contact_sheet, write_video

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
SHIPPED_PIXEL_MODEL = PRETRAINED / "balls"  # text to video in pixels, 8 frames of 32x32
SHIPPED_LATENT_MODEL = PRETRAINED / "balls_latent"  # text to video in the shipped autoencoder's latents, 17 x 64 x 64
SHIPPED_MODEL = SHIPPED_LATENT_MODEL  # text to video, `kinema generate`'s default
SHIPPED_FRAMES_MODEL = PRETRAINED / "balls_frames"  # the pixel model fine-tuned on every frame task (11.1-11.5)
SHIPPED_CONTROL_MODEL = PRETRAINED / "balls_control"  # the pixel model fine-tuned on drawn paths and knobs (11.3)
SHIPPED_CAMERA_MODEL = PRETRAINED / "camera_discs"  # the pixel model fine-tuned on camera moves over still discs


def _named_objects(plan: PromptPlan, trajectory: TrajectorySpec | None) -> tuple[list | None, list[list]]:
    """(the trajectory objects' colours, bound by the first video's prompt: every prompt must name every object, or
    None without a trajectory; each video's objects to steer: those colours, or the ones its prompt names)."""
    prompts = [" ".join(phrases) for phrases in zip(*plan.texts)]
    bound = None if trajectory is None else [bind_objects(trajectory, prompt) for prompt in prompts][0]
    return bound, [bound or prompt_colours(prompt) for prompt in prompts]


def _on_physical_paths(video: Tensor, objects: list[list], simulator: BouncingBallsConfig, share: float) -> Tensor:
    """Videos [B, 3, T, H, W] with each video's `objects` (colours) moved `share` of the way onto the simulator's fit
    of their paths (kinema.control.physics_energy.project_to_physics)."""
    return torch.cat([project_to_physics(video[b:b + 1], colours, simulator, share)
                      for b, colours in enumerate(objects)])


def shipped_model(frames: bool = False, controls: bool = False, text: Path = SHIPPED_MODEL,
                  camera: bool = False) -> Path:
    """The model Kinema ships: for text to video (`text`, by default the default one), (`frames`) for known frames,
    long videos and streams, (`controls`) for drawn paths and the speed / brightness knobs, or (`camera`) for
    camera moves."""
    return (SHIPPED_FRAMES_MODEL if frames else SHIPPED_CONTROL_MODEL if controls else SHIPPED_CAMERA_MODEL if camera
            else text)


SPEED_GUIDANCE = 30.0  # default speed guidance with a speed knob (benchmarks/attribute_knobs.py: Spearman 0.93)


def _at_least(name: str, value, minimum: float, strict: bool = False):
    """`value` when it is >= `minimum` (> with `strict`), else a one-line error naming the option."""
    if value < minimum or (strict and value == minimum):
        raise KinemaError(f"{name} must be {'greater than' if strict else 'at least'} {minimum}, got {value}")
    return value


def _start_time(name: str, kind: str, value: float | None, default: float, applies: bool, needs: str) -> float:
    """The noise time in [0, 1) of a start made in a first step (`value`, else the model's `default`; 0 is off); a
    `value` > 0 given where it cannot apply is a one-line error: `name` `needs`."""
    if value is not None and value > 0 and not applies:
        raise KinemaError(f"{name} {needs}")
    value = default if value is None else value
    if not 0 <= value < 1:
        raise KinemaError(f"{name} must be in [0, 1) (the time a {kind} start is noised to; 0 is off), got {value}")
    return value


def first_frames(videos: Tensor) -> KnownPixels:
    """Frame 0 of each of `videos` [B, C, T, H, W], given whole."""
    mask = torch.zeros(videos.shape[0], 1, *videos.shape[2:], dtype=torch.bool, device=videos.device)
    mask[:, :, 0] = True
    return KnownPixels(videos, mask)


def _per_video(energies: list[Callable[[Tensor], Tensor]]) -> Callable[[Tensor], Tensor]:
    """One energy `E(video) -> [B]` from one energy per video of the batch."""
    return lambda video: torch.cat([energy(video[b:b + 1]) for b, energy in enumerate(energies)])


def _is_anchors(prompt) -> bool:
    """True for one anchored prompt [(frame, text), ...] (as opposed to a list of prompts)."""
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str) for item in prompt)


def _in_whole_latent_frames(call: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """`call` (the pipeline's) asked for `num_frames` a latent model cannot make (1 + k*n) from the text alone: it
    makes the fewest it can that hold them and returns their first `num_frames` (a clip's first frames are a clip)."""
    @wraps(call)
    def in_whole_frames(self, prompts, *, num_frames: int | None = None, **options) -> Tensor:
        alone = all(options.get(name) is None for name in ("known", "init_video", "trajectory", "camera"))
        if self.latents is None or num_frames is None or num_frames < 1 or not alone:
            return call(self, prompts, num_frames=num_frames, **options)
        return call(self, prompts, num_frames=self.latents.frames_holding(num_frames), **options)[:, :, :num_frames]
    return in_whole_frames


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
                        quantize: str | None = None, controls: bool = False,
                        camera: bool = False) -> TextToVideoPipeline:
        """Load a model directory or training checkpoint; None loads the model Kinema ships (`frames`: the one made
        for known frames, long videos and streams; `controls`: the one made for drawn paths and knobs; `camera`: the
        one made for camera moves; `shipped_model`); `quantize` "int8" stores its Linear and Conv weights as int8
        (kinema.models.quantize)."""
        model, config, metadata = load_pretrained(shipped_model(frames, controls, camera=camera) if path is None
                                                  else path)
        model = quantize_weights(model, quantize)
        return cls(model, config, text_encoder, device, read_sampling_spec(config, metadata))

    @property
    def uses_text(self) -> bool:
        """False for a model without text (text_dim 0): prompts then only set how many videos to make."""
        return self.model.text_dim > 0

    @property
    def simulator(self) -> BouncingBallsConfig:
        """The physics-balls simulator the model learned (the default one for other data): the guidance energies'
        gravity, ball sizes and speeds."""
        return self.config.data if self.config.data_kind == "balls" else BouncingBallsConfig()

    def named_colours(self, plan: PromptPlan, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """kinema.control.identity_energy.named_colours of frames start..stop-1 of `plan` (a model without text
        names none)."""
        texts, shares = plan.window(start, stop)
        return named_colours(texts if self.uses_text else [[""] * shares.shape[0]] * len(texts), shares)

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

    def _conditioning(self, prompts: list[str], labels: Tensor | None, negative_prompt: str | list[str],
                      guided: bool) -> Conditioning:
        """The conditional rows (prompts, labels), followed when `guided` by the unconditional ones (the negative
        prompt, one for all or one per video; no class)."""
        fields, count = self.model.conditioning_fields, len(prompts)
        negatives = [negative_prompt] * count if isinstance(negative_prompt, str) else list(negative_prompt)
        texts = prompts + negatives if guided else prompts
        cond = prompt_conditioning(texts, self.text_encoder, fields)
        if "labels" in fields:
            given = torch.full((count,), -1, dtype=torch.long) if labels is None else labels
            cond.labels = torch.cat([given, torch.full_like(given, -1)]) if guided else given
        return cond.to(self.device)

    def _guided(self, texts: list[str], labels: Tensor | None, negative_prompt: str | list[str], guidance: float,
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
                 guidance: float = 1.0, negative_prompt: str | list[str] = "", known: KnownPixels | None = None,
                 known_guidance: float = 0.0, motion_strength: float | None = None,
                 direction_guidance: float = 0.0, controls: Conditioning | None = None,
                 trajectory: TrajectorySpec | None = None, trajectory_guidance: float = 0.0,
                 physics_guidance: float = 0.0, physics_projection: float = 0.0, camera: Tensor | None = None,
                 camera_guidance: float = 0.0, identity_guidance: float = 0.0,
                 identity_masses: Tensor | None = None, speed: Tensor | None = None,
                 speed_guidance: float = 0.0) -> DenoiseFn:
        """The guided x0 denoiser of (pixel) frames start..stop-1 of the videos `plan` describes (a latent model: the
        whole clip, each latent frame owned as the frames it holds are): each frame's estimate is
        its phrases' estimates weighted by how much they own it; `known` (pixels of these frames) is kept by
        replacement, after `known_guidance` steps of reconstruction guidance; `motion_strength` scales motion away
        from the nearest known frame; `direction_guidance` steers single-phrase prompts with motion words;
        `controls` holds the control maps and knobs of a model trained with them. `trajectory_guidance` steers the
        objects of `trajectory` (over the video's frames, at its size) along their paths and `physics_guidance` the
        objects the prompts name (or the trajectory's) toward gravity, smooth acceleration and no overlap
        (`_steered`); `identity_guidance` keeps each object's count and colour over the frames: the colour masses
        `identity_masses` [B, P] (NaN rows: those the prompts name), by default those of `known`'s whole frames;
        `speed_guidance` pulls the objects' mean speed to `speed` [B] px per frame."""
        texts, weights = plan.window(start, stop)
        if self.latents is not None:  # a latent model denoises the whole clip: each latent frame's mean share
            weights = self.latents.frame_shares(weights)
        known = None if known is None else known.to(self.device)
        estimates = [self._guided(phrases, labels, negative_prompt, guidance, known, controls) for phrases in texts]
        if len(estimates) == 1:
            denoise = estimates[0]
        else:
            shares = weights.to(self.device)[:, :, None, :, None, None]  # [B, K, 1, T, 1, 1]

            def denoise(x: Tensor, t: Tensor) -> Tensor:
                return sum(shares[:, k].to(x.dtype) * estimate(x, t) for k, estimate in enumerate(estimates))
        denoise = self._steered(denoise, plan, start, stop, direction_guidance, trajectory, trajectory_guidance,
                                physics_guidance, physics_projection, camera, camera_guidance, identity_guidance,
                                known, identity_masses, speed, speed_guidance)
        if known is None:
            return denoise
        if motion_strength is not None:
            if not known.whole_frames.any(dim=1).all():
                raise KinemaError("motion strength scales motion away from a given frame: give a whole frame "
                                  "(an image or keyframe) for every video")
            denoise = known.scaling_motion(denoise, motion_strength)
        return known.keeping(denoise, known_guidance)

    def _on_keyframe_paths(self, video: Tensor, known: KnownPixels, strength: float) -> Tensor:
        """`video` with each object seen in every wholly given frame of a video with sparse keyframes moved `strength`
        of the way onto the physical path through its given positions nearest to where it is drawn
        (kinema.control.keyframe_physics); the given pixels kept."""
        paths = sparse_keyframe_paths(known.video, known.whole_frames, self.simulator)
        if not any(found.colours for found in paths):
            return video
        moved = onto_keyframe_paths(video.clamp(-1, 1), paths, strength)
        return torch.where(known.mask.to(video.device), known.video.to(video), moved)

    def _steered(self, denoise: DenoiseFn, plan: PromptPlan, start: int, stop: int, direction_guidance: float,
                 trajectory: TrajectorySpec | None, trajectory_guidance: float, physics_guidance: float,
                 physics_projection: float, camera: Tensor | None = None, camera_guidance: float = 0.0,
                 identity_guidance: float = 0.0, known: KnownPixels | None = None,
                 identity_masses: Tensor | None = None, speed: Tensor | None = None,
                 speed_guidance: float = 0.0) -> DenoiseFn:
        """`denoise` with one reconstruction guidance by the weighted sum of the direction, trajectory, physics,
        camera and identity energies that are on (kinema.control; `camera`: steps [T-1, 4] of frames start..stop-1;
        identity: masses kept as `identity_masses` or `known`'s whole frames give, else as the prompts' colours ask,
        or, for a model without text, each colour's own; speed: each object's mean speed toward `speed` [B] px per
        frame), then, with `physics_projection` in (0, 1], each estimate's objects moved that share of the way onto
        the simulator's fit of their paths at times <= 0.5 (project_to_physics). A latent model's energies and
        projection read its decoded estimate (kinema.autoencoder.latent_space)."""
        bound, objects = _named_objects(plan, trajectory)
        energies = []
        directions = motion_from_prompts(plan.texts[0]).to(self.device)
        if direction_guidance > 0 and not plan.anchored and directions.any():
            energies.append((direction_guidance, direction_energy(directions)))
        if bound is not None and trajectory_guidance > 0:
            targets = trajectory.positions()[:, start:stop].to(self.device).expand(len(objects), -1, -1, -1)
            radii = torch.tensor([[o.radius for o in trajectory.objects]] * len(objects), device=self.device)
            energies.append((trajectory_guidance, trajectory_energy(targets, radii, bound)))
        simulator = self.simulator
        if physics_guidance > 0:
            energies.append((physics_guidance, _per_video([physics_energy(colours, simulator)
                                                           for colours in objects])))
        if speed is not None and speed_guidance > 0:
            energies.append((speed_guidance, _per_video([speed_energy(speed[b:b + 1].to(self.device), colours,
                                                                      simulator)
                                                         for b, colours in enumerate(objects)])))
        if camera is not None and camera_guidance > 0:
            steps = camera[start : max(start, stop - 1)].to(self.device).expand(len(objects), -1, -1)
            energies.append((camera_guidance, camera_energy(steps)))
        if identity_guidance > 0:
            named, unnamed = self.named_colours(plan, start, stop)
            masses = identity_masses if identity_masses is not None or known is None else \
                known_masses(known.video, known.whole_frames)
            energies.append((identity_guidance, identity_energy(named.to(self.device), unnamed.to(self.device),
                                                                simulator, masses)))
        pixels = (lambda x0: x0) if self.latents is None else self.latents.decode_differentiable
        if energies:
            denoise = reconstruction_guidance(denoise, lambda x0: sum(w * energy(pixels(x0)) for w, energy in energies),
                                              1.0)
        if physics_projection == 0:
            return denoise

        def projected(x: Tensor, t: Tensor) -> Tensor:
            x0 = denoise(x, t)
            if t.max() > 0.5:  # the estimate holds no object worth fitting yet
                return x0
            video = x0 if self.latents is None else self.latents.decode(x0)
            moved = _on_physical_paths(video, objects, simulator, physics_projection)
            return moved if self.latents is None else self.latents.encode(moved)

        return projected

    def _drawn_controls(self, controls: dict[str, Tensor] | None, prompts: list, trajectory: TrajectorySpec | None,
                        camera: Tensor | None, height: int, width: int) -> dict[str, Tensor]:
        """The control maps given, plus the trajectory drawn as the `trajectory` map and the camera's flow as the
        `camera` map for a model trained with them (kinema.conditioning.controls)."""
        controls = dict(controls or {})
        if trajectory is not None and "trajectory" in self.model.controls and "trajectory" not in controls:
            texts = [" ".join(text for _, text in p) if _is_anchors(p) else str(p) for p in prompts]
            colours = [bind_objects(trajectory, text) for text in texts][0]
            rgb = torch.tensor([BALL_COLORS.get(c, (1.0, 1.0, 1.0)) if c else (1.0, 1.0, 1.0) for c in colours])
            radii = torch.tensor([[o.radius for o in trajectory.objects]])
            controls["trajectory"] = trajectory_map(trajectory.positions()[None], radii, rgb[None], height, width)
        if camera is not None and "camera" in self.model.controls and "camera" not in controls:
            controls["camera"] = camera_map(camera[None], height, width)
        return controls

    def start(self, noise: Tensor, steps: int, time_grid: str, known: KnownPixels | None = None,
              init_video: Tensor | None = None, strength: float = 1.0,
              inverting: DenoiseFn | None = None) -> tuple[Tensor, Tensor]:
        """(x at the first time, the time grid) of a sampling run: `strength` < 1 starts from `init_video` noised to
        time `strength` with the grid scaled to end there (SDEdit, Meng et al. 2022), using round(steps * strength)
        steps, or, given the `inverting` denoiser, from its DDIM inversion up that grid of `steps` steps (the
        inversion's error, which the edit's guidance amplifies, falls with the step size); a model that reads known
        pixels takes wholly known frames clean at time 0 (a per-frame grid)."""
        count = steps if inverting is not None else max(1, round(steps * strength))
        times = sampling_times(self.schedule, count, time_grid) * strength
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
    @_in_whole_latent_frames
    def __call__(self, prompts: PromptSpec | list[PromptSpec], *, labels: int | str | Sequence[int | str] | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 steps: int | None = None, sampler: str | None = None, time_grid: str | None = None,
                 guidance: float | None = None, direction_guidance: float | None = None, seed: int = 0,
                 negative_prompt: str = "", progress: bool = True, known: KnownPixels | None = None,
                 known_guidance: float = 0.0, motion_strength: float | None = None,
                 init_video: Tensor | None = None, strength: float | None = None,
                 source_prompt: str | Sequence[str] | None = None,
                 prompt_blend: int = 4, controls: dict[str, Tensor] | None = None,
                 attributes: dict[str, float | None] | None = None, trajectory: TrajectorySpec | None = None,
                 trajectory_guidance: float | None = None, physics_guidance: float = 0.0,
                 physics_projection: float = 0.0, trajectory_projection: float = 0.0,
                 camera: str | Tensor | None = None,
                 camera_guidance: float | None = None, camera_warp: float | None = None,
                 identity_guidance: float | None = None, keyframe_physics: float | None = None,
                 retries: int | None = None, speed_guidance: float | None = None,
                 physics_start: float | None = None) -> Tensor:
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
        from the nearest given frame. Animating one given frame (an image), direction guidance is off unless given
        (nothing given says how fast the balls go, and pushing a ball pinned in that frame breaks it up) and identity
        guidance defaults to the model's `animate_identity_guidance`. With any frame given whole, a video whose made
        frames lose, add, resize or recolour a ball of the given frames (kinema.control.identity_check) is sampled
        again with fresh noise up to `retries` times, keeping each video's attempt with the fewest such frames
        (kinema.diffusion.rejection; default: the model's `sample.retries`, 2 unless its spec says otherwise); so is
        a video made from one text per video alone whose frames disagree on their balls, show other ball colours
        than the text names or whose ball does not go the way its clause asks (`consistency_faults`), unless the
        camera moves (objects then leave and enter the view by design). `physics_start` in [0, 1) (default: the
        model's `sample.animate_physics_start` animating one given frame per video, else `sample.physics_start`; 0
        is off) starts sampling from the objects of that frame, or of
        a first video's frame 0 made from the text alone, run forward and back by the simulator, each along the
        direction its clause of the prompt asks (kinema.control.simulated_start; a new draw of velocities for each
        retry), noised to time `physics_start`, as an edit is (PhysGen, Liu et al. 2024); not with a camera move, an
        edit, time-anchored prompts or other given pixels (objects there move as given).
        `init_video` with `strength` in [0, 1] edits a video (SDEdit): 0 returns it, 1 samples afresh; with
        `source_prompt` (what the video shows, one for all or one per video; "" for none) it starts from the video's
        DDIM inversion under that prompt instead of fresh noise (kinema.diffusion.inversion), which
        keeps paths closer, over `steps` steps each way, and samples with DDIM unless `sampler` says otherwise; the
        source prompt is then the negative prompt unless one is given, so that guidance amplifies the edit's direction
        (target - source) and an edit to the source prompt returns the video at any scale (negative-prompt inversion,
        Miyake et al. 2023). An edit's `guidance` and `identity_guidance` default to the model's `edit_guidance` and
        `edit_identity_guidance` (the colours the prompt names, pulled in over the old ones), and it keeps the video's
        motion: direction guidance is off unless given.

        `controls` gives a model trained with control maps (`model.controls`: trajectory, camera, low_res_x2, ...)
        its maps, each [1 or B, channels, T, H, W] at the video's size; `attributes` its knobs ({"speed": 2.0, ...});
        those not given read as "no control" (kinema.conditioning.controls). A model trained on the residual over a
        map (`diffusion.residual_of`, a cascade's super-resolution stage) needs that map and returns the video minus
        it.

        `trajectory` (kinema.control.trajectory; rescaled to the video's size and frames) gives each object the prompt
        names a path, followed by reconstruction guidance with weight `trajectory_guidance` (default 1 with a
        trajectory) on a trajectory energy (kinema.control.trajectory_energy); `physics_guidance` pushes the objects
        toward constant gravity, smooth acceleration and no overlap (kinema.control.physics_energy), and
        `physics_projection` in [0, 1] moves each estimate's objects that share of the way onto the simulator's fit of
        their paths in the later half of the steps (a latent model's finished video once more, in pixels);
        `trajectory_projection` in [0, 1] moves each finished video's objects that share of the way onto their asked
        paths (by warping their pixels, as the physics projection does; projected sampling's last step, Christopher
        et al. 2024). `identity_guidance` (default: the model's sampling spec) keeps each object's count and colour
        over the frames: those of the wholly given frames, else those the prompt names, else (no colour named, or a
        model without text) each colour's own mass over time (kinema.control.identity_energy).
        All guidance energies share one backward pass per step. `keyframe_physics` in [0, 1] (default 1 for a pixel
        model of the balls data, else 0) moves each object seen in every given frame of a video with sparse keyframes
        (3 or more unknown frames between two) that share of the way, once sampled, onto the physical path
        through its given positions nearest to where the model drew it (kinema.control.keyframe_physics).

        A model trained with the `trajectory` control (or `camera`) also reads the trajectory drawn as its control map
        (or the camera's flow); one trained with `camera_view` reads the given frame 0 (known pixels), else a first
        video's frame 0, rendered along the move (kinema.control.camera.camera_view; two passes). `camera` is a move
        ('pan-left:2,zoom-in:1.02', a per-step CSV / JSON file, or steps [T-1, 4]; kinema.control.camera);
        `camera_guidance` (default 1 for a model without the camera control, else 0) steers the video toward it by
        reconstruction guidance with a photometric camera energy. `camera_warp` in [0, 1) (default: the model's
        `sample.camera_warp`; 0 is off) makes a camera move in two passes: a first video's frame 0 is carried along the
        move (kinema.control.camera.camera_warped), and that start is noised to time `camera_warp` and denoised again,
        as an edit is (training-free camera control, Hou et al. 2024); the model then only redraws what the warp blurs
        or brings into view."""
        prompts = [prompts] if isinstance(prompts, str) or _is_anchors(prompts) else list(prompts)
        spec, defaults = self.spec, self.spec.defaults
        steps = _at_least("steps", defaults.steps if steps is None else steps, 1)
        frames = _at_least("num_frames", spec.num_frames if num_frames is None else num_frames, 1)
        height = _at_least("height", spec.height if height is None else height, 1)
        width = _at_least("width", spec.width if width is None else width, 1)
        strength = 1.0 if strength is None else strength
        if not 0 <= strength <= 1:
            raise KinemaError(f"strength must be in [0, 1] (0 returns the video, 1 samples afresh), got {strength}")
        editing = init_video is not None and strength < 1  # the motion is the video's: no direction by default
        animating = known is not None and known.one_frame  # nothing given says how the balls move
        guidance = (defaults.edit_guidance if editing else defaults.guidance) if guidance is None else guidance
        direction_guidance = _at_least("direction guidance", (0.0 if editing or animating else
                                                              defaults.direction_guidance)
                                       if direction_guidance is None else direction_guidance, 0)
        trajectory_guidance = _at_least("trajectory guidance", (0.0 if trajectory is None else 1.0)
                                        if trajectory_guidance is None else trajectory_guidance, 0)
        physics_guidance = _at_least("physics guidance", physics_guidance, 0)
        keyframe_physics = (1.0 if self.config.data_kind == "balls" else 0.0) if keyframe_physics is None \
            else keyframe_physics
        if not 0 <= keyframe_physics <= 1:
            raise KinemaError(f"keyframe physics must be in [0, 1] (the share of the way onto a physical path through "
                              f"the keyframes), got {keyframe_physics}")
        identity_guidance = _at_least("identity guidance", (
            defaults.edit_identity_guidance if editing else defaults.animate_identity_guidance if animating
            else defaults.identity_guidance) if identity_guidance is None else identity_guidance, 0)
        retries = _at_least("retries", defaults.retries if retries is None else retries, 0)
        speed = (attributes or {}).get("speed")
        speed_guidance = _at_least("speed guidance", (0.0 if speed is None else SPEED_GUIDANCE)
                                   if speed_guidance is None else speed_guidance, 0)
        if speed_guidance > 0 and speed is None:
            raise KinemaError("speed guidance pulls the objects toward the speed knob: give attributes={'speed': "
                              "px per frame} (--speed), or speed_guidance=0")
        for name, value, onto in (("physics", physics_projection, "a simulated path"),
                                  ("trajectory", trajectory_projection, "its asked path")):
            if not 0 <= value <= 1:
                raise KinemaError(f"{name} projection must be in [0, 1] (the share of the way onto {onto}), got "
                                  f"{value}")
        if trajectory_projection > 0 and trajectory is None:
            raise KinemaError("trajectory projection moves objects onto their paths: give a trajectory "
                              "(--trajectory), or trajectory_projection=0")
        if trajectory is not None:
            if height != width:
                raise KinemaError(f"a trajectory is drawn in a square frame: the videos are {height}x{width}")
            trajectory = trajectory.resized(width, frames)
        if camera is not None:
            camera = camera if isinstance(camera, Tensor) else parse_camera(camera, frames)
            if tuple(camera.shape) != (frames - 1, 4):
                raise KinemaError(f"camera steps must be [{frames - 1}, 4] for {frames} frames, got "
                                  f"{list(camera.shape)}")
        camera_guidance = _at_least("camera guidance", (0.0 if camera is None or "camera" in self.model.controls
                                                         else 1.0) if camera_guidance is None else camera_guidance, 0)
        camera_warp = _start_time("camera warp", "warped", camera_warp, defaults.camera_warp,
                                  camera is not None and init_video is None and known is None,
                                  "starts from a first video carried along a camera move: give camera, and no "
                                  "init_video or known pixels")
        warping = camera is not None and camera_warp > 0 and init_video is None and known is None
        physics_start = _start_time("physics start", "simulated", physics_start, defaults.animate_physics_start
                                    if animating else defaults.physics_start, init_video is None and camera is None,
                                    "runs the objects of a frame forward: give no init_video or camera")
        if physics_start > 0 and spec.channels != 3:
            raise KinemaError(f"physics start reads coloured objects: this model makes {spec.channels}-channel videos")
        controls = self._drawn_controls(controls, prompts, trajectory, camera, height, width)
        if camera is not None:  # a model with camera knobs reads the move's mean as well
            attributes = {**camera_knobs(self.model.attributes, camera), **(attributes or {})}
        residual = self.config.diffusion.residual_of
        if residual and residual not in controls:
            raise KinemaError(f"this model makes a video minus its '{residual}' map (a cascade stage trained with "
                              f"diffusion.residual_of): run it with kinema cascade, or give controls={{'{residual}': "
                              f"...}} and add the map back")
        shape = (len(prompts), spec.channels, frames, height, width)
        for name, given in (("known pixels", None if known is None else known.video), ("init video", init_video)):
            if given is not None and tuple(given.shape) != shape:
                raise KinemaError(f"{name} are {list(given.shape)} but the videos to make are {list(shape)} "
                                  f"(videos, channels, frames, height, width)")
        if strength < 1 and init_video is None:
            raise KinemaError("strength below 1 edits a video: give init_video")
        viewing = camera is not None and "camera_view" in self.model.controls and "camera_view" not in controls
        if viewing and known is not None and bool(known.mask[:, :, 0].all()):  # the given frame 0, seen along the move
            controls["camera_view"], viewing = camera_view(known.video[:, :, 0], camera[None]), False
        if strength == 0:
            return init_video.clamp(-1, 1).cpu()
        if sampler is None:  # an inverted video walks back down the path of its inversion: DDIM's
            sampler = "ddim" if editing and source_prompt is not None else defaults.sampler
        sample_fn = get_sampler(sampler)
        label_indices = None if labels is None else self.class_labels(labels, len(prompts))
        given = known
        pixel_shape = shape[2:]
        sampling_controls(self.model.controls, controls, len(prompts), pixel_shape)  # bad maps fail before sampling
        identity_masses = None
        if self.latents is not None:
            if given is not None:  # what the given frames show, read on their pixels
                identity_masses = known_masses(given.video.to(self.device), given.whole_frames.to(self.device))
            shape, known, init_video = self.in_latents(shape, known, init_video)

        def conditioning(maps: dict[str, Tensor]) -> Conditioning:
            """The control maps (at the model's size) and knobs of a model trained with them."""
            control = sampling_controls(self.model.controls, maps, len(prompts), pixel_shape)
            return Conditioning(control=control if self.latents is None else resized_control(control, shape[2:]),
                                attributes=sampling_attributes(self.model.attributes, attributes or {}, len(prompts)))

        motion_controls = conditioning(controls)
        plan = plan_prompts(prompts, frames, prompt_blend)
        sources = None
        if source_prompt is not None and strength < 1:
            sources = [source_prompt] * len(prompts) if isinstance(source_prompt, str) else list(source_prompt)
            if len(sources) != len(prompts):
                raise KinemaError(f"{len(sources)} source prompts for {len(prompts)} videos: give one, or one per "
                                  "video")
            negative_prompt = negative_prompt or sources  # guide from what the video shows (Miyake et al. 2023)
        def steered(motion_controls: Conditioning) -> DenoiseFn:
            return self.denoiser(plan, 0, frames, labels=label_indices, guidance=guidance,
                                 negative_prompt=negative_prompt, known=known, known_guidance=known_guidance,
                                 motion_strength=motion_strength, direction_guidance=direction_guidance,
                                 controls=motion_controls, trajectory=trajectory,
                                 trajectory_guidance=trajectory_guidance, physics_guidance=physics_guidance,
                                 physics_projection=physics_projection, camera=camera,
                                 camera_guidance=camera_guidance, identity_guidance=identity_guidance,
                                 identity_masses=identity_masses,
                                 speed=None if speed is None else torch.full((len(prompts),), float(speed)),
                                 speed_guidance=speed_guidance)

        denoise = steered(motion_controls)
        inverting = None if sources is None else self.denoiser(
            plan_prompts(sources, frames, prompt_blend), 0, frames, labels=label_indices, known=known,
            controls=motion_controls)
        time_grid = defaults.time_grid if time_grid is None else time_grid

        simulating = (physics_start > 0 and init_video is None and camera is None and (animating or known is None)
                      and not plan.anchored)  # given frames, an edit, a camera or anchored phrases move them as given

        def sample(attempt: int, start: Tensor | None = None, start_time: float | None = None,
                   desc: str | None = None, simulate: bool = simulating, steer: DenoiseFn | None = None) -> Tensor:
            if start is None and simulate:  # the given frame's objects, or a first video's frame 0's, simulated
                frame = given if given is not None else first_frames(sample(attempt, simulate=False))
                start = self.simulated_starts(frame, plan, attempt_seed(seed, attempt), trajectory).to(self.device)
                start, start_time = (start if self.latents is None else self.latents.encode(start)), physics_start
                desc = desc or "sampling from the simulated start" + (f" again ({attempt})" if attempt else "")
            start, start_time = (init_video, strength) if start is None else (start, start_time)
            generator = torch.Generator(self.device).manual_seed(attempt_seed(seed, attempt))
            noise = torch.randn(shape, generator=generator, device=self.device)
            x, times = self.start(noise, steps, time_grid, known, start, start_time, inverting)
            desc = desc or ("sampling" if attempt == 0 else f"sampling again ({attempt})")
            with tqdm(total=len(times) - 1, desc=desc, unit="step", disable=not progress, leave=False) as bar:
                video = sample_fn(steer or denoise, x, times, self.schedule, generator=generator,
                                  callback=lambda *_: bar.update(1))
            video = self.pixels_of(video, given)
            if physics_projection > 0 and self.latents is not None:  # decoding moved the projected balls again
                video = _on_physical_paths(video, _named_objects(plan, trajectory)[1], self.simulator,
                                           physics_projection)
            if trajectory_projection > 0:
                video = self._on_trajectory(video, trajectory, plan, trajectory_projection)
            if given is not None and keyframe_physics > 0:
                video = self._on_keyframe_paths(video, given.to(self.device), keyframe_physics)
            return video.clamp(-1, 1)

        if warping or viewing:  # a first video's frame 0 carried along the move: noised and denoised again, and / or
            first = sample(0)   # rendered as the `camera_view` map of a model trained to read it
            start = camera_warped(first, camera.to(self.device)) if warping else None
            steer = steered(conditioning({**controls, "camera_view": camera_view(first[:, :, 0], camera[None])})) \
                if viewing else None
            return sample(1, start if start is None or self.latents is None else self.latents.encode(start),
                          camera_warp if warping else None, "redrawing frame 0 along the move", steer=steer).cpu()
        disc_area = smallest_disc_area(self.simulator, width)
        moves_camera = camera is not None or "camera" in self.model.controls  # objects leave and enter the view
        if given is not None and given.whole_frames.any():
            faults = partial(identity_faults, whole_frames=given.whole_frames, disc_area=disc_area)
        elif given is None and init_video is None and not plan.anchored and not moves_camera:
            named = [{colour for colour in prompt_colours(text) if colour} for text in plan.texts[0]]
            faults = partial(consistency_faults, disc_area=disc_area, named=named,
                             directions=[colour_directions(text) for text in plan.texts[0]],
                             least_step=DIRECTION_MIN_SPEED * width / self.simulator.size,
                             scene_required=self.config.data_kind == "balls")
        else:  # pixels given in part, an edit, time-anchored prompts or a moving camera (objects change by design)
            return sample(0).cpu()
        return fewest_faults(sample, faults, retries).cpu()

    @staticmethod
    def _on_trajectory(video: Tensor, trajectory: TrajectorySpec, plan: PromptPlan, share: float) -> Tensor:
        """Videos [B, 3, T, H, W] with each object of `trajectory` (at the videos' size and frames; bound to it by the
        first video's prompt, as guidance binds them) moved `share` of the way onto its path."""
        colours = _named_objects(plan, trajectory)[0]
        targets = trajectory.positions().to(video.device).expand(len(video), -1, -1, -1)
        return move_objects(video, colours, targets, share)

    def simulated_starts(self, known: KnownPixels, plan: PromptPlan, seed: int,
                         trajectory: TrajectorySpec | None = None) -> Tensor:
        """[B, C, T, H, W]: the objects of each video's one whole given frame run forward and back by the simulator
        in copies of it, each along the direction its clause of the prompt asks (kinema.control.simulated_start);
        those of a `trajectory` (at the videos' size and frames) along their asked paths instead."""
        frames = known.video.shape[2]
        colours = _named_objects(plan, trajectory)[0] or []
        asked = {colour: path for colour, path in zip(colours, trajectory.positions())} if colours else None
        starts = []
        for b, (text, given) in enumerate(zip(map(" ".join, zip(*plan.texts)), known.whole_frames)):
            index = int(given.nonzero()[0, 0])
            rng = np.random.default_rng([seed, b])
            starts.append(simulated_start(known.video[b, :, index], index, frames, self.simulator,
                                          colour_directions(text), rng, asked_paths=asked))
        return torch.stack(starts)

    def pixels_of(self, sampled: Tensor, given: KnownPixels | None = None) -> Tensor:
        """The videos a sampler returned, in pixels: a latent model's decoded with the `given` pixels put back
        exactly, as in pixel space."""
        if self.latents is None:
            return sampled
        video = self.latents.decode(sampled)
        return video if given is None else torch.where(given.mask.to(self.device), given.video.to(video), video)

    def in_latents(self, shape: tuple[int, ...], known: KnownPixels | None, init_video: Tensor | None = None
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
