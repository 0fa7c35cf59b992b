"""The training loop (accelerate): AdamW with warmup, clipping, EMA, checkpoints, exact resume, a NaN guard.

Everything random is keyed on the step: data indices come from a resumable sampler, noise levels
and caption dropout from one saved generator, so a resumed run is bit-identical to an unbroken one.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.prompts import prompt_conditioning
from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.data.buckets import BucketBatchSampler
from kinema.data.registry import build_dataset
from kinema.data.sampler import ResumableBatchSampler, ResumableRandomSampler
from kinema.diffusion import DiffusionLoss, build_schedule
from kinema.errors import KinemaError
from kinema.models.pretrained import init_from_pretrained
from kinema.models.registry import build_model
from kinema.training.checkpoint import TrainingState, latest_checkpoint, load_checkpoint, save_checkpoint
from kinema.training.samples import write_samples


class TrainingDiverged(KinemaError):
    """The loss or gradient became NaN/Inf; training stopped without writing a checkpoint."""


def learning_rate(config: Config, step: int) -> float:
    """Linear warmup, then constant or cosine decay to 10% of the peak at the last step."""
    train = config.train
    warm = min(1.0, (step + 1) / max(1, train.warmup_steps))
    if train.lr_schedule == "constant" or step < train.warmup_steps:
        return train.lr * warm
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    return train.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    """Trains `config`'s model on `config`'s data; `train()` runs to `config.train.steps` (or `until_step`)."""

    def __init__(self, config: Config, resume: bool = False, text_encoder: TextEncoder | None = None,
                 progress: bool = True):
        self.config = config
        self.progress = progress
        train = config.train
        self.accelerator = Accelerator(mixed_precision=train.mixed_precision)
        self.output_dir = Path(train.output_dir)
        torch.manual_seed(train.seed)
        self.model = build_model(config.model_name, config.model)
        if train.init_from and not resume:
            new = init_from_pretrained(self.model, train.init_from)
            self.accelerator.print(f"initialised from {train.init_from}" +
                                   (f"; new: {', '.join(new)}" if new else ""))
        if train.gradient_checkpointing:
            if not getattr(self.model, "supports_gradient_checkpointing", False):
                raise KinemaError(f"config key 'train.gradient_checkpointing': {config.model_name} does not support it")
            self.model.gradient_checkpointing = True
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.text_encoder = text_encoder or TextEncoder(train.text_encoder, cache_size=16384)
        text_dim = getattr(config.model, "text_dim", 0)
        if text_dim and text_dim != self.text_encoder.dim:
            raise KinemaError(f"config key 'model.text_dim' is {text_dim} but text encoder "
                              f"'{train.text_encoder}' gives {self.text_encoder.dim}-d tokens")
        self.loss_fn = DiffusionLoss(build_schedule(config.diffusion.schedule, config.diffusion.shift),
                                     config.diffusion.prediction, config.diffusion.per_frame_noise)
        self.generator = torch.Generator().manual_seed(train.seed + self.accelerator.process_index)
        self.step = 0
        if resume:
            self._resume()
        self._saved_step = self.step
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)

    def _resume(self) -> None:
        path = latest_checkpoint(self.output_dir)
        if path is None:
            raise KinemaError(f"--resume: no checkpoint in {self.output_dir / 'checkpoints'}")
        state = load_checkpoint(path, self.config, self.model, self.ema.module, self.optimizer)
        self.ema.n_averaged.fill_(max(1, state.step))
        self.generator.set_state(state.generator_state)
        torch.set_rng_state(state.torch_rng_state)
        self.step = state.step
        self.accelerator.print(f"resumed from {path} at step {self.step}")

    def _loader(self):
        """Batches from the step we are at: map-style data through a resumable (bucketed) sampler; streams
        are read from their start and the batches already trained on are skipped."""
        train = self.config.train
        dataset = build_dataset(self.config.data_kind, self.config.data, train.seed)
        batch, done = train.batch_size, self.step * self.accelerator.num_processes
        workers = {"num_workers": train.num_workers, "persistent_workers": train.num_workers > 0}
        if isinstance(dataset, IterableDataset):  # every process reads the whole stream (no sharding by rank)
            loader = DataLoader(dataset, batch_size=batch, drop_last=True, **workers)
            return itertools.islice(loader, done, None)
        if getattr(self.config.data, "buckets", None):
            sampler = ResumableBatchSampler(BucketBatchSampler(dataset, batch, train.seed), start=done)
            loader = DataLoader(dataset, batch_sampler=sampler, **workers)
        else:
            sampler = ResumableRandomSampler(len(dataset), train.seed, start=done * batch)
            loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True, **workers)
        return self.accelerator.prepare_data_loader(loader, device_placement=True)

    def _conditioning(self, batch: dict) -> Conditioning:
        """Text (with caption dropout for guidance) and its motion words, plus class labels and fps when the model
        reads them."""
        captions = list(batch["caption"])
        drop = torch.rand(len(captions), generator=self.generator) < self.config.train.caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        fields = getattr(self.accelerator.unwrap_model(self.model), "conditioning_fields", frozenset())
        extra = {name: batch[key] for name, key in (("labels", "label"), ("fps", "fps"))
                 if name in fields and key in batch}
        cond = prompt_conditioning(captions, self.text_encoder, fields)
        return replace(cond, **extra).to(self.accelerator.device)

    def _save(self) -> Path | None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        state = TrainingState(self.step, self.generator.get_state(), torch.get_rng_state())
        self._saved_step = self.step
        return save_checkpoint(self.output_dir, self.config, self.accelerator.unwrap_model(self.model),
                               self.ema.module, self.optimizer, state, self.config.train.keep_checkpoints)

    def _train_step(self, batch: dict) -> tuple[float, float]:
        video = batch["video"].to(self.accelerator.device)
        cond = self._conditioning(batch)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.step)
        with self.accelerator.autocast():
            loss = self.loss_fn(lambda x, t: self.model(x, t, cond), video, generator=self.generator)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss.item()} at step {self.step + 1}; stopped without saving "
                                   f"(last good checkpoint: {latest_checkpoint(self.output_dir)})")
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        if not torch.isfinite(grad_norm):
            raise TrainingDiverged(f"gradient norm is {grad_norm.item()} at step {self.step + 1}; stopped without "
                                   f"saving (last good checkpoint: {latest_checkpoint(self.output_dir)})")
        self.optimizer.step()
        self.ema.update_parameters(self.accelerator.unwrap_model(self.model))
        self.step += 1
        return loss.item(), grad_norm.item()

    def train(self, until_step: int | None = None) -> Path | None:
        """Train until `config.train.steps` (or `until_step`, or `train.time_limit_minutes`); returns the last
        checkpoint written."""
        train = self.config.train
        last_step = min(train.steps, until_step or train.steps)
        writer = SummaryWriter(str(self.output_dir / "tensorboard")) if self.accelerator.is_main_process else None
        checkpoint = latest_checkpoint(self.output_dir)
        bar = tqdm(total=last_step, initial=self.step, desc="training", unit="step",
                   disable=not (self.progress and self.accelerator.is_main_process))
        started, started_step = time.perf_counter(), self.step
        limit = train.time_limit_minutes * 60

        def out_of_time() -> bool:  # decided together, so that every process stops at the same step
            if limit <= 0:
                return False
            late = torch.tensor(float(time.perf_counter() - started >= limit), device=self.accelerator.device)
            return bool(self.accelerator.reduce(late, "max") > 0)

        try:
            for batch in self._loader():
                if self.step >= last_step:
                    break
                loss, grad_norm = self._train_step(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if writer and self.step % train.log_every == 0:
                    rate = (self.step - started_step) / (time.perf_counter() - started)
                    for name, value in [("loss", loss), ("grad_norm", grad_norm), ("steps_per_second", rate),
                                        ("lr", learning_rate(self.config, self.step - 1))]:
                        writer.add_scalar(f"train/{name}", value, self.step)
                stop = self.step == last_step or out_of_time()
                if self.step % train.checkpoint_every == 0 or stop:
                    checkpoint = self._save() or checkpoint
                if train.sample_every and self.step % train.sample_every == 0 and writer:
                    write_samples(self.ema.module, self.config, self.text_encoder, self.output_dir, self.step, writer)
                if stop:
                    break
        except KeyboardInterrupt:
            if self.step != self._saved_step:
                checkpoint = self._save()
            raise
        finally:
            bar.close()
            if writer:
                writer.close()
        return checkpoint
