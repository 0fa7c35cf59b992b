"""Videos of any length at flat memory, as generators that yield each frame as soon as it is final (chapter 11.1.2,
temporal chunking; 11.5, real-time synthesis).

Two schedules over the model's window of W frames, both from the pipeline's building blocks (`pipe.denoiser`,
`pipe.start` and a sampler), so that only one window (or one queue) is ever in memory:

  window  autoregressive with overlap (MCVD, Voleti et al. 2022): window k starts where window k-1's new frames end
          minus `overlap`; those last frames of the output are given to it as known frames (with any keyframes that
          fall in it), and its other frames are sampled afresh. Each window is final when sampled. Two guards keep
          the balls from drifting away window after window (a ball that shrinks a little per window, or vanishes
          once and is then copied on as empty frames): identity guidance (kinema.control.identity_energy, at least
          LONG_IDENTITY_GUIDANCE by default) toward the first window's colour masses for a single-phrase prompt
          (a colour it names at least the smallest ball; toward each frame's phrase's colours for a time-anchored
          one), and a window whose new frames lack a colour their phrase names is sampled again with fresh noise,
          up to `retries` times, keeping the sample with the fewest such frames (rejection sampling).
  fifo    FIFO-Diffusion (Kim et al. 2024) with diffusion-forcing levels (Chen et al. 2024): a queue of
          L = W * partitions frames on the diagonal of an L-step time grid, the front least noisy. Every iteration each
          frame takes one step down its ladder in ONE sampler call on a 2-row per-frame grid, the network run on each
          partition of W frames; the front frame reaches 0 and leaves, a noise frame joins at the back at t = 1. The
          queue is filled from pure noise by a warm-up in which the frames step down to the diagonal, the front first
          (one sampler call on a triangular per-frame grid), as a model trained with per-frame levels can do.

Prompts are a `PromptPlan` over the whole length, so time-anchored prompts ("first A, then B", or anchors) work in
both modes: each window reads its frames' phrases and weights. A latent model makes window mode's windows in its
latent space, each a whole clip of its autoencoder (1 + k*n frames), the overlap given as pixels and kept exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from kinema.conditioning.anchored import PromptPlan, PromptSpec, plan_prompts
from kinema.control.identity_energy import colour_masses, smallest_disc_area
from kinema.data.physics_balls import BALL_COLORS
from kinema.diffusion import get_sampler
from kinema.diffusion.guidance import DenoiseFn
from kinema.diffusion.rejection import RETRIES, attempt_seed, fewest_faults
from kinema.diffusion.time_grids import time_grid as sampling_times
from kinema.errors import KinemaError
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.video.io import VideoWriter

MODES = ("window", "fifo")
FIFO_SAMPLERS = ("ddim", "euler", "ddpm", "heun")  # one-step samplers: multistep history does not survive a shift
LONG_IDENTITY_GUIDANCE = 2.0  # the least default identity guidance in window mode: windows keep the first one's balls


def _noise_generator(seed: int, index: int, device: torch.device, attempt: int = 0) -> torch.Generator:
    """The generator of window (or queue frame) `index` (its `attempt`-th re-sampling): its noise depends on nothing
    else, so a later window never changes an earlier one."""
    return torch.Generator(device).manual_seed(attempt_seed(seed * 1_000_003 + index, attempt))


def _keyframes_in(keyframes: dict[int, Tensor], start: int, stop: int) -> dict[int, Tensor]:
    """The keyframes of frames start..stop-1, indexed from `start`."""
    return {index - start: frame for index, frame in keyframes.items() if start <= index < stop}


def _known(frames: dict[int, Tensor], count: int) -> KnownPixels | None:
    """Whole frames {index: [C, H, W]} of a window of `count` frames, or None when none is given."""
    return KnownPixels.frames(frames, count) if frames else None


def _extended(plan: PromptPlan, extra: int) -> PromptPlan:
    """`plan` with `extra` more frames owned as its last frame is (the noise frames behind a draining FIFO queue)."""
    tail = plan.weights[:, :, -1:].expand(-1, -1, extra)
    return PromptPlan(plan.texts, torch.cat([plan.weights, tail], dim=2))


class LongVideo:
    """A checked request for one video of `num_frames` frames; iterate it for its frames [C, H, W] in [-1, 1]."""

    def __init__(self, pipe: TextToVideoPipeline, prompt: PromptSpec, num_frames: int, *, mode: str = "window",
                 window: int | None = None, overlap: int | None = None, partitions: int = 2,
                 keyframes: dict[int, Tensor] | None = None, labels: int | str | None = None,
                 steps: int | None = None, sampler: str | None = None, time_grid: str | None = None,
                 guidance: float | None = None, direction_guidance: float | None = None,
                 identity_guidance: float | None = None, negative_prompt: str = "", seed: int = 0,
                 prompt_blend: int = 4, height: int | None = None, width: int | None = None, retries: int = RETRIES,
                 progress: bool = False):
        spec, defaults = pipe.spec, pipe.spec.defaults
        if mode not in MODES:
            raise KinemaError(f"long video mode must be one of {', '.join(MODES)}, got '{mode}'")
        if pipe.latents is not None and mode == "fifo":
            raise KinemaError("fifo mode steps frame by frame at per-frame noise levels: a latent model makes its "
                              "frames in windows (mode window)")
        if num_frames < 1:
            raise KinemaError(f"num_frames must be at least 1, got {num_frames}")
        window = spec.num_frames if window is None else window
        if window < 1:
            raise KinemaError(f"window must be at least 1 frame, got {window}")
        overlap = window // 2 if overlap is None else overlap
        if not 0 <= overlap < window:
            raise KinemaError(f"overlap must be 0 .. window - 1 = {window - 1} frames (the window is {window}), "
                              f"got {overlap}")
        if retries < 0:
            raise KinemaError(f"retries must be at least 0, got {retries}")
        self.retries = retries
        if partitions < 1:
            raise KinemaError(f"partitions must be at least 1, got {partitions}")
        self.sampler = sampler or ("ddim" if mode == "fifo" else defaults.sampler)
        get_sampler(self.sampler)
        if mode == "fifo" and self.sampler not in FIFO_SAMPLERS:
            raise KinemaError(f"fifo mode steps each frame once per queue shift: use a one-step sampler "
                              f"({', '.join(FIFO_SAMPLERS)}), not '{self.sampler}'")
        self.steps = defaults.steps if steps is None else steps
        if self.steps < 1:
            raise KinemaError(f"steps must be at least 1, got {self.steps}")
        self.shape = (spec.channels, spec.height if height is None else height, spec.width if width is None else width)
        if min(self.shape[1:]) < 1:
            raise KinemaError(f"height and width must be at least 1, got {self.shape[1]}x{self.shape[2]}")
        self.keyframes = {}
        for index, frame in (keyframes or {}).items():
            if not 0 <= index < num_frames:
                raise KinemaError(f"keyframe index {index} is beyond the video's {num_frames} frames "
                                  f"(0..{num_frames - 1})")
            if tuple(frame.shape) != self.shape:
                raise KinemaError(f"keyframe {index} is {list(frame.shape)} but the frames to make are "
                                  f"{list(self.shape)} (channels, height, width)")
            self.keyframes[index] = frame
        self.pipe, self.mode, self.num_frames, self.seed, self.progress = pipe, mode, num_frames, seed, progress
        self.window, self.overlap, self.partitions = min(window, num_frames), overlap, partitions
        if pipe.latents is not None:  # every window is a whole clip of the autoencoder's
            pipe.latents.latent_size(self.window, *self.shape[1:])
        self.time_grid = defaults.time_grid if time_grid is None else time_grid
        sampling_times(pipe.schedule, 1, self.time_grid)  # an unknown grid is named now, not after the first window
        self.plan = plan_prompts([prompt], num_frames, prompt_blend)
        self.options = dict(
            labels=None if labels is None else pipe.class_labels(labels, 1), negative_prompt=negative_prompt,
            guidance=defaults.guidance if guidance is None else guidance,
            direction_guidance=defaults.direction_guidance if direction_guidance is None else direction_guidance,
            identity_guidance=identity_guidance if identity_guidance is not None else defaults.identity_guidance
            if mode == "fifo" else max(defaults.identity_guidance, LONG_IDENTITY_GUIDANCE))
        self.reference: Tensor | None = None  # [1, P] colour masses every window keeps (identity guidance)
        if self.options["identity_guidance"] < 0:
            raise KinemaError(f"identity guidance must be at least 0 (0 = off), got "
                              f"{self.options['identity_guidance']}")

    def __iter__(self) -> Iterator[Tensor]:
        frames = self._windows() if self.mode == "window" else self._fifo()
        with tqdm(total=self.num_frames, desc=f"{self.mode} frames", unit="frame", disable=not self.progress,
                  leave=False) as bar:
            for frame in frames:
                bar.update(1)
                yield frame

    def _denoiser(self, plan: PromptPlan, start: int, stop: int, known: KnownPixels | None) -> DenoiseFn:
        """The pipeline's denoiser of frames start..stop-1, its identity guidance toward the first window's balls (a
        single-phrase prompt) or toward each frame's phrase's colours (a time-anchored one, NaN masses)."""
        masses = self.reference
        if plan.anchored or masses is None:
            masses = torch.full((1, len(BALL_COLORS)), math.nan, device=self.pipe.device)
        return self.pipe.denoiser(plan, start, stop, known=known, identity_masses=masses, **self.options)

    def _anchor(self, video: Tensor) -> None:
        """Keep the colour masses of the first window `video` [C, T, H, W] as the reference of every later window."""
        if self.reference is not None or self.options["identity_guidance"] == 0:
            return
        named, unnamed = self.pipe.named_colours(self.plan, 0, video.shape[1])
        masses = colour_masses(video[None].to(self.pipe.device)).mean(-1)
        area = smallest_disc_area(self.pipe.simulator, video.shape[-1])
        named, unnamed = named.mean(-1).to(masses), unnamed.mean(-1, keepdim=True).to(masses)
        self.reference = named * masses.clamp(min=area) + unnamed * masses

    # ------------------------------------------------------------------ autoregressive windows with overlap

    def _windows(self) -> Iterator[Tensor]:
        """Window after window; each yields its new frames, and its last frames are known to the next."""
        done, index, previous, previous_start = 0, 0, None, 0
        while done < self.num_frames:
            stop = min(done + self.window - (self.overlap if previous is not None else 0), self.num_frames)
            start = stop - self.window
            given = _keyframes_in(self.keyframes, start, stop)
            if previous is not None:  # start > previous_start and done - start <= window: within the last window
                given.update({i - start: previous[:, i - previous_start] for i in range(start, done)})
            previous = self._sample_window(start, stop, _known(given, self.window), index)
            self._anchor(previous)
            previous_start, index = start, index + 1
            for i in range(done, stop):
                yield previous[:, i - start]
            done = stop

    @torch.no_grad()
    def _sample_window(self, start: int, stop: int, known: KnownPixels | None, index: int) -> Tensor:
        """Frames start..stop-1 [C, T, H, W] in [-1, 1] (on the CPU), keeping `known`."""
        pipe = self.pipe
        if known is not None and known.whole_frames.all():  # dense keyframes: nothing left to sample
            return known.video[0].clamp(-1, 1).cpu()
        given, shape = known, (1, self.shape[0], stop - start, *self.shape[1:])
        if pipe.latents is not None:
            shape, known, _ = pipe.in_latents(shape, known)
        denoise = self._denoiser(self.plan, start, stop, known)

        def sample(attempt: int) -> Tensor:
            generator = _noise_generator(self.seed, index, pipe.device, attempt)
            noise = torch.randn(shape, generator=generator, device=pipe.device)
            x, times = pipe.start(noise, self.steps, self.time_grid, known)
            sampled = get_sampler(self.sampler)(denoise, x, times, pipe.schedule, generator=generator)
            return pipe.pixels_of(sampled, given).clamp(-1, 1)

        return fewest_faults(sample, lambda video: self._missing(video[0], start, stop, given), self.retries)[0].cpu()

    def _missing(self, video: Tensor, start: int, stop: int, known: KnownPixels | None) -> Tensor:
        """How many sampled frames of `video` [C, T, H, W] (frames start..stop-1) lack a colour their phrase names:
        its read-out mass under half the simulator's smallest disc."""
        named, _ = self.pipe.named_colours(self.plan, start, stop)
        asked = named[0].to(video.device) >= 0.5  # [P, T]
        masses = colour_masses(video[None])[0]
        lacking = (asked & (masses < smallest_disc_area(self.pipe.simulator, video.shape[-1]) / 2)).any(0)
        if known is not None:
            lacking &= ~known.whole_frames[0].to(lacking.device)
        return lacking.sum()[None]

    # ------------------------------------------------------------------ FIFO queue with diagonal levels

    def _fifo(self) -> Iterator[Tensor]:
        """Warm the queue up to the diagonal, then emit its front frame once per step."""
        length = self.window * self.partitions
        plan = _extended(self.plan, length)
        grid = sampling_times(self.pipe.schedule, length, self.time_grid)  # [L + 1], 1 .. 0
        position = torch.arange(length)
        ladder = length - 1 - position  # the grid index of each queue position on the diagonal
        shift = torch.stack([grid[ladder], grid[ladder + 1]])[:, None]  # [2, 1, L]: one step down for every frame
        warm_up = grid[torch.minimum(position[:, None], ladder[None])][:, None]  # [L, 1, L]: row j, min(j, ladder)
        queue = torch.cat([self._fresh(i) for i in range(length)], dim=2)
        if length > 1:
            queue = self._fifo_step(queue, warm_up, plan, 0)
        for front in range(self.num_frames):
            queue = self._fifo_step(queue, shift, plan, front)
            yield queue[0, :, 0].clamp(-1, 1).cpu()
            queue = torch.cat([queue[:, :, 1:], self._fresh(front + length)], dim=2)

    def _fresh(self, index: int) -> Tensor:
        """Pure noise for frame `index` [1, C, 1, H, W] (its own generator: the same frame gets the same noise)."""
        generator = _noise_generator(self.seed, index, self.pipe.device)
        return torch.randn((1, self.shape[0], 1, *self.shape[1:]), generator=generator, device=self.pipe.device)

    @torch.no_grad()
    def _fifo_step(self, queue: Tensor, times: Tensor, plan: PromptPlan, front: int) -> Tensor:
        """`queue` (frames front.. front + L - 1) after one sampler call on the per-frame grid `times`, the network run
        on each partition of W frames alone."""
        width = self.window
        parts = [self._denoiser(plan, front + a, front + a + width,
                                _known(_keyframes_in(self.keyframes, front + a, front + a + width), width))
                 for a in range(0, queue.shape[2], width)]

        def denoise(x: Tensor, t: Tensor) -> Tensor:
            return torch.cat([part(x[:, :, i * width:(i + 1) * width], t[:, i * width:(i + 1) * width] if t.ndim == 2
                                   else t) for i, part in enumerate(parts)], dim=2)

        generator = _noise_generator(self.seed, -1 - front, self.pipe.device)
        return get_sampler(self.sampler)(denoise, queue, times, self.pipe.schedule, generator=generator)


def generate_long(pipe: TextToVideoPipeline, prompt: PromptSpec, num_frames: int, **options) -> Iterator[Tensor]:
    """The frames [C, H, W] in [-1, 1] of one video of any length, each as soon as it is final (see `LongVideo` for
    the options: mode window | fifo, window, overlap, partitions, keyframes, sampler settings, identity_guidance and
    window mode's retries); bad options are a KinemaError here, before any work."""
    return iter(LongVideo(pipe, prompt, num_frames, **options))


def stream(pipe: TextToVideoPipeline, prompt: PromptSpec, frames: int, **options) -> Iterator[Tensor]:
    """`for frame in stream(pipe, "a red ball bounces", frames=512)`: `generate_long` under a streaming name."""
    return generate_long(pipe, prompt, frames, **options)


def collect_long(pipe: TextToVideoPipeline, prompt: PromptSpec, num_frames: int, **options) -> Tensor:
    """The whole video [1, C, T, H, W] of `generate_long` (memory grows with the length: for tests and short runs)."""
    return torch.stack(list(generate_long(pipe, prompt, num_frames, **options)), dim=1)[None]


def write_long(pipe: TextToVideoPipeline, prompt: PromptSpec, num_frames: int, path: str | Path, *,
               fps: float | None = None, format: str | None = None, scale: int = 1, **options) -> Path:
    """Write `generate_long`'s frames to a video file one by one, at flat memory (mp4 or webm)."""
    frames = generate_long(pipe, prompt, num_frames, **options)
    with VideoWriter(path, fps=pipe.spec.fps if fps is None else fps, format=format, scale=scale) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def timed(frames: Iterator[Tensor]) -> Iterator[tuple[Tensor, float]]:
    """(frame, seconds since the first frame was asked for) of each frame of `frames`."""
    began = time.perf_counter()
    for frame in frames:
        yield frame, time.perf_counter() - began


def throughput(seconds: list[float]) -> tuple[float, float]:
    """(time to the first frame in s, frames per second after it; NaN for one frame) from `timed`'s seconds."""
    later = len(seconds) - 1
    return seconds[0], later / (seconds[-1] - seconds[0]) if later and seconds[-1] > seconds[0] else float("nan")
