"""Progressive distillation (Salimans & Ho 2022, Alg. 2) with classifier-free guidance distilled in (Meng et al.
2023, "On distillation of guided diffusion models", sec. 4.1): a student, a copy of its teacher, learns to take in
one DDIM step what the teacher takes in two on the uniform time grid; each round halves the step count (e.g. 32 ->
16 -> 8 -> 4) and the student becomes the next round's teacher. The teacher's target uses its guided estimate
u + w (c - u) at the teacher's guidance scale w, so the student samples with guidance 1: one network call per step.
Text, class labels and known frames or pixels reach teacher and student alike; a latent teacher is distilled on the
latents of its training clips, and the student keeps its autoencoder.

The student's x0 target at time t, step 1/N: z_s = two teacher DDIM steps t -> t - 1/2N -> s = t - 1/N from z_t, and
x0~ = (z_s - (sigma_s / sigma_t) z_t) / (alpha_s - (sigma_s / sigma_t) alpha_t), the x0 that one DDIM step t -> s
needs to land on z_s (x0~ = z_s where s = 0, where the sampler returns its estimate). The loss is the squared x0
error weighted by max(SNR_t, 1), the truncated SNR weighting of Salimans & Ho (sec. 4). The learning rate falls
linearly to 0 in every round, as in their appendix; it plays the part of a weight average, so no EMA is kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm

from kinema.autoencoder.latent_space import LatentSpace
from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.prompts import prompt_conditioning
from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.data.registry import build_dataset
from kinema.diffusion import batched_classifier_free_guidance, build_schedule, x0_denoiser
from kinema.diffusion.frame_tasks import draw_frame_tasks
from kinema.diffusion.samplers import DenoiseFn, sample_ddim
from kinema.diffusion.schedules import NoiseSchedule
from kinema.errors import KinemaError
from kinema.models.pretrained import load_pretrained, save_pretrained
from kinema.models.sampling_spec import read_sampling_spec


@dataclass
class Batch:
    """Clean videos [B, C, T, H, W] and what the networks read: `cond` the student, `pair` (None: no guidance) the
    guided teacher, 2B rows: `cond`'s, then the unconditional ones (encoded together, as the pipeline does); `known`
    pixels [B, 1, T, H, W] (or None)."""

    video: Tensor
    cond: Conditioning
    pair: Conditioning | None = None
    known: Tensor | None = None


@dataclass
class DistillOptions:
    """How to distill: the student's final step count, the first teacher's, and the optimisation of each round."""

    steps: int = 4                       # DDIM steps of the final student
    teacher_steps: int | None = None     # of the first teacher: steps * 2^k (default: the least >= its sampling steps)
    iterations_per_round: int = 500
    lr: float = 1e-4
    batch_size: int = 4
    guidance: float | None = None        # the teacher's guidance scale (default: its sampling default)
    time_limit_minutes: float = 0.0      # the whole run (0 = none); each round gets an equal share
    seed: int = 0
    device: str = "cpu"                  # where teacher, student and autoencoder run
    workers: int = 0                     # data-loading processes that make the clips (0 = in this one)


def first_teacher_steps(steps: int, teacher_steps: int | None, sampling_steps: int) -> int:
    """`teacher_steps`, or by default the least steps * 2^k (k >= 1) that reaches the teacher's sampling steps."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise KinemaError(f"--steps must be a whole number >= 1, got {steps!r}")
    if teacher_steps is not None:
        return teacher_steps
    doubled = 2 * steps
    while doubled < sampling_steps:
        doubled *= 2
    return doubled


def round_steps(steps: int, teacher_steps: int) -> list[int]:
    """The student step counts of the rounds: teacher_steps / 2, ..., steps (teacher_steps must be steps * 2^k)."""
    ratio = teacher_steps / steps
    if teacher_steps <= steps or ratio != 2 ** round(math.log2(ratio)):
        raise KinemaError(f"--teacher-steps must be --steps times a power of two (2, 4, 8, ...): got {teacher_steps} "
                          f"for {steps} steps")
    return [teacher_steps // 2**k for k in range(1, round(math.log2(ratio)) + 1)]


def _batch_times(times: Tensor, whole: Tensor | None) -> Tensor:
    """Per-frame times [B, T] with wholly known frames held at 0, or [B] when no frame is wholly known (as the
    samplers call a denoiser)."""
    if whole is None or not whole.any():
        return times
    return times[:, None].expand(whole.shape).masked_fill(whole, 0.0)


def _frame_levels(values: Tensor, x: Tensor) -> Tensor:
    """[B] or [B, T] levels as [B, 1, T or 1, 1, 1] factors in x's dtype."""
    values = values[:, None] if values.ndim == 1 else values
    return values[:, None, :, None, None].to(device=x.device, dtype=x.dtype)


def two_step_target(teacher_fn: DenoiseFn, x_t: Tensor, index: Tensor, steps: int, schedule: NoiseSchedule,
                    whole: Tensor | None = None) -> Tensor:
    """The student's x0 target at times index / steps ([B] whole numbers in 1..steps): two teacher DDIM steps
    (Salimans & Ho 2022, Alg. 2), inverted through one student DDIM step; `whole` [B, T] marks frames held clean."""
    index = index.double().cpu()
    grid = torch.stack([index, index - 0.5, index - 1]) / steps  # [3, B]
    frames = whole.cpu() if whole is not None else torch.zeros(len(index), x_t.shape[2], dtype=torch.bool)
    grid = grid[:, :, None].expand(3, *frames.shape).masked_fill(frames, 0.0)  # [3, B, T]: per-frame grid
    z_s = sample_ddim(teacher_fn, x_t, grid, schedule)
    alpha_t, sigma_t = schedule.alpha_sigma(grid[0])
    alpha_s, sigma_s = schedule.alpha_sigma(grid[2])
    ratio = sigma_s / sigma_t
    target = (z_s - _frame_levels(ratio, x_t) * x_t) / _frame_levels(alpha_s - ratio * alpha_t, x_t)
    return torch.where(_frame_levels(grid[2] == 0, x_t).bool(), z_s, target)


def distillation_loss(student_fn: DenoiseFn, teacher_fn: DenoiseFn, x0: Tensor, steps: int, schedule: NoiseSchedule,
                      generator: torch.Generator | None = None, known: Tensor | None = None) -> Tensor:
    """max(SNR_t, 1) ||student x0 - two-step teacher target||^2 at t = i / steps, i uniform in 1..steps (Salimans &
    Ho 2022, Alg. 2); `known` [B, 1, T, H, W] pixels carry no loss and wholly known frames stay clean at t = 0."""
    index = torch.randint(1, steps + 1, (len(x0),), generator=generator, device=generator.device if generator
                          else "cpu").cpu()
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    whole = None if known is None else known.flatten(3).all(dim=3)[:, 0].cpu()  # [B, T]
    t = _batch_times(index.double() / steps, whole)
    alpha, sigma = schedule.alpha_sigma(t)
    x_t = _frame_levels(alpha, x0) * x0 + _frame_levels(sigma, x0) * noise
    if whole is not None:  # VP schedules keep a little noise at t = 0: pass given frames exactly clean
        x_t = torch.where(whole.to(x0.device)[:, None, :, None, None], x0, x_t)
    with torch.no_grad():
        target = two_step_target(teacher_fn, x_t, index, steps, schedule, whole)
    model_t = t.to(device=x0.device, dtype=torch.promote_types(x0.dtype, torch.float32))
    weight = _frame_levels(torch.where(t > 0, (alpha / sigma).square().clamp(min=1), 0.0), x0)  # 0: held frames
    error = weight * (student_fn(x_t, model_t) - target).square()
    if known is None:
        return error.mean()
    free = (~known).to(error.dtype).expand_as(error)
    return (error * free).sum() / free.sum().clamp(min=1)


def _denoisers(teacher: nn.Module, student: nn.Module, batch: Batch, schedule: NoiseSchedule, prediction: str,
               guidance: float) -> tuple[DenoiseFn, DenoiseFn]:
    """(guided teacher, conditional student) x0 denoisers of one batch."""
    student_fn = x0_denoiser(lambda x, t: student(x, t, batch.cond), schedule, prediction)
    if batch.pair is None or guidance == 1:
        return x0_denoiser(lambda x, t: teacher(x, t, batch.cond), schedule, prediction), student_fn
    pair_fn = x0_denoiser(lambda x, t: teacher(x, t, batch.pair), schedule, prediction)
    return batched_classifier_free_guidance(pair_fn, guidance), student_fn


def distill_round(teacher: nn.Module, student: nn.Module, batches: Iterator[Batch], schedule: NoiseSchedule,
                  prediction: str, steps: int, iterations: int, lr: float, guidance: float = 1.0,
                  generator: torch.Generator | None = None, deadline: float | None = None,
                  progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Train `student` for `iterations` Adam steps (or until time.perf_counter() passes `deadline`) to take one
    DDIM step of `steps` where `teacher` (guided by `guidance`) takes two; returns the losses. The learning rate
    falls linearly to 0 over the iterations, or over the time to `deadline` when that ends the round first."""
    teacher.eval().requires_grad_(False)
    student.train().requires_grad_(True)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    started = time.perf_counter()
    losses = []
    for i, batch in zip(range(iterations), batches):
        done = i / iterations
        if deadline is not None:
            done = max(done, (time.perf_counter() - started) / max(deadline - started, 1e-9))
            if i > 0 and done >= 1:
                break
        for group in optimizer.param_groups:
            group["lr"] = lr * (1 - done)
        teacher_fn, student_fn = _denoisers(teacher, student, batch, schedule, prediction, guidance)
        loss = distillation_loss(student_fn, teacher_fn, batch.video, steps, schedule, generator, batch.known)
        if not torch.isfinite(loss):
            raise KinemaError(f"distillation diverged: the loss is {loss.item()} at iteration {i + 1} of the "
                              f"{steps}-step round; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if progress is not None:
            progress(i, loss.item())
    return losses


def _data(config: Config, model: nn.Module, options: DistillOptions, text_encoder: TextEncoder | None,
          guidance: float) -> Iterator[Batch]:
    """Endless batches, on `options.device`, of the teacher's training data with the conditioning its model reads:
    the captions (and an empty prompt, no class, for guidance), labels, and known pixels drawn from its
    `train.frame_tasks`; for a latent teacher, the latents (posterior means) of the clips."""
    dataset = build_dataset(config.data_kind, config.data, options.seed)
    latents = LatentSpace.load(config.autoencoder).to(options.device) if config.autoencoder else None
    generator = torch.Generator().manual_seed(options.seed)
    fields = model.conditioning_fields
    guided = guidance != 1 and ("text" in fields or "labels" in fields)
    shuffle = not isinstance(dataset, IterableDataset)
    while True:
        loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=shuffle, drop_last=True,
                            generator=generator, num_workers=options.workers, worker_init_fn=_one_thread)
        for item in loader:
            video = item["video"].to(options.device)
            captions = list(item["caption"]) if "caption" in item else [""] * len(video)
            cond = prompt_conditioning(captions, text_encoder, fields).to(options.device)
            pair = prompt_conditioning(captions + [""] * len(video), text_encoder, fields) if guided else None
            pair = None if pair is None else pair.to(options.device)
            if "labels" in fields and "label" in item:
                cond.labels = item["label"].long().to(options.device)
                if pair is not None:
                    pair.labels = torch.cat([cond.labels, torch.full_like(cond.labels, -1)])
            known = None
            if "frames" in fields and config.train.frame_tasks:
                seeds = torch.randint(0, 2**62, (len(video),), generator=generator).tolist()
                known, _ = draw_frame_tasks(config.train.frame_tasks, video.shape,
                                            [torch.Generator().manual_seed(s) for s in seeds])
                known = known.to(options.device)
            if latents is not None:  # a latent teacher: the clips' latents, known where all their pixels are
                video = latents.encode(video)
                known = None if known is None else latents.latent_mask(known)
            if known is not None:
                cond.frames, cond.frame_mask = video, known
                if pair is not None:
                    pair.frames, pair.frame_mask = video.repeat(2, 1, 1, 1, 1), known.repeat(2, 1, 1, 1, 1)
            yield Batch(video, cond, pair, known)


def _one_thread(worker: int) -> None:
    """A data-loading process computes on one thread: the processes are the parallelism."""
    torch.set_num_threads(1)


def _check_source(config: Config, output: Path, source: Path) -> None:
    """One-line errors for what this distillation cannot do, before any work."""
    if config.diffusion.prediction == "eps":
        raise KinemaError(f"{source} predicts eps: progressive distillation needs diffusion.prediction v, x0 or flow "
                          f"(an eps model cannot give x0 at full noise; Salimans & Ho 2022, sec. 4)")
    if output.resolve() == source.resolve():
        raise KinemaError(f"distill output {output} is the teacher itself: choose a new directory")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise KinemaError(f"distill output {output} exists and is not an empty directory: choose a new one")


def distill(source: str | Path, output: str | Path, options: DistillOptions | None = None,
            text_encoder: TextEncoder | None = None, progress: bool = True,
            log: Callable[[str], None] = print) -> Path:
    """Distill the model or checkpoint directory `source` into a model directory `output` whose sampling defaults
    are DDIM, `options.steps` steps on the uniform grid, guidance 1 (`kinema generate -c OUTPUT` samples it), and no
    direction guidance: reconstruction guidance differentiates a denoiser's estimate of x0, and a student's is the
    end of its long jump, not that (steered at the teacher's 0.3, most of its videos broke up); the physics start
    and the re-draw check still send its balls the asked way."""
    options = options or DistillOptions()
    source, output = Path(source), Path(output)
    teacher, config, metadata = load_pretrained(source)
    spec = read_sampling_spec(config, metadata)
    _check_source(config, output, source)
    defaults = spec.defaults
    teacher_steps = first_teacher_steps(options.steps, options.teacher_steps, defaults.steps)
    rounds = round_steps(options.steps, teacher_steps)
    guidance = defaults.guidance if options.guidance is None else options.guidance
    for name, value, low in (("--iterations-per-round", options.iterations_per_round, 1),
                             ("--batch-size", options.batch_size, 1), ("--workers", options.workers, 0)):
        if value < low:
            raise KinemaError(f"{name} must be at least {low}, got {value}")
    if not options.lr > 0 or not guidance >= 0 or not options.time_limit_minutes >= 0:
        raise KinemaError(f"--lr must be > 0, --guidance and --time-limit-minutes >= 0: got {options.lr}, "
                          f"{guidance}, {options.time_limit_minutes}")
    if teacher.text_dim and text_encoder is None:
        text_encoder = TextEncoder(spec.text_encoder or config.train.text_encoder)
    if teacher.text_dim and text_encoder.dim != teacher.text_dim:
        raise KinemaError(f"text encoder '{text_encoder.name}' gives {text_encoder.dim}-d tokens but {source} reads "
                          f"{teacher.text_dim}-d text")
    schedule = build_schedule(config.diffusion.schedule, config.diffusion.shift)
    teacher.to(options.device)
    generator = torch.Generator(options.device).manual_seed(options.seed)
    batches = _data(config, teacher, options, text_encoder, guidance)
    started, limit = time.perf_counter(), options.time_limit_minutes * 60
    history = []
    for r, steps in enumerate(rounds):
        student = deepcopy(teacher)
        deadline = started + limit * (r + 1) / len(rounds) if limit > 0 else None
        with tqdm(total=options.iterations_per_round, desc=f"distilling {2 * steps} -> {steps} steps", unit="it",
                  disable=not progress, leave=False) as bar:
            def advance(i: int, loss: float) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")

            losses = distill_round(teacher, student, batches, schedule, config.diffusion.prediction, steps,
                                   options.iterations_per_round, options.lr, guidance if r == 0 else 1.0, generator,
                                   deadline, advance)
        tenth = max(1, len(losses) // 10)
        first, last = sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth
        history.append({"steps": steps, "iterations": len(losses), "first_tenth_loss": first,
                        "last_tenth_loss": last, "seconds": round(time.perf_counter() - started, 1)})
        log(f"round {r + 1}/{len(rounds)}: {2 * steps} -> {steps} steps, {len(losses)} iterations, mean loss of the "
            f"first and last tenth {first:.4g} -> {last:.4g}")
        teacher = student.eval()
    sample = replace(config.sample, sampler="ddim", steps=options.steps, time_grid="uniform", guidance=1.0,
                     direction_guidance=0.0)
    record = {"teacher": str(source), "teacher_steps": teacher_steps, "teacher_guidance": guidance,
              "lr": options.lr, "batch_size": options.batch_size, "rounds": history}
    return save_pretrained(output, teacher.cpu(), replace(config, sample=sample),
                           {"step": metadata.get("step"), "distillation": record})
