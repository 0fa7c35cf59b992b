"""The training loop (accelerate): AdamW with warmup, clipping, EMA, checkpoints, exact resume, a NaN guard; one
loop for every objective (`kinema.training.objectives`: a denoiser's diffusion loss, an autoencoder's reconstruction
loss).

Everything random is keyed on the step: data indices come from a resumable sampler; noise levels, noise and
caption dropout come from one generator per sample on the training device, seeded by the sample's index in the
global batch stream, so N processes at batch B train exactly as one process at batch N*B; the global CPU/CUDA
generators and the fp16 loss scaler are saved with every checkpoint, so a resumed run is bit-identical to an
unbroken one. A fresh run never writes over another run's checkpoints, and a checkpoint is never written with
non-finite weights nor cut short by Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import uuid
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, gather_object
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from kinema.atomic import interrupts_deferred
from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.data.buckets import BucketBatchSampler
from kinema.data.registry import build_dataset
from kinema.data.sampler import ResumableBatchSampler, ResumableRandomSampler
from kinema.errors import KinemaError
from kinema.training.checkpoint import (TrainingState, checkpoint_dir, checkpoints_folder, clear_checkpoints,
                                        load_checkpoint, remove_stale_writes, resume_checkpoint, save_checkpoint,
                                        step_checkpoints)
from kinema.training.fsdp import enable_fsdp, full_optimizer_state, full_state_dict, shard_like
from kinema.training.objectives import AutoencoderObjective, DiffusionObjective


class TrainingDiverged(KinemaError):
    """The loss, gradient or weights became NaN/Inf; training stopped without writing a checkpoint."""


def learning_rate(config: Config, step: int) -> float:
    """Linear warmup, then constant or cosine decay to 10% of the peak at the last step."""
    train = config.train
    warm = min(1.0, (step + 1) / max(1, train.warmup_steps))
    if train.lr_schedule == "constant" or step < train.warmup_steps:
        return train.lr * warm
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    return train.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    """Trains `config`'s model on `config`'s data; `train()` runs to `config.train.steps` (or `until_step`).

    The objective is the diffusion loss of `config`'s denoiser (a `Config`), or `AutoencoderObjective` for an
    autoencoder run config (`kinema.autoencoder.config`)."""

    def __init__(self, config, resume: bool = False, text_encoder: TextEncoder | None = None,
                 progress: bool = True, overwrite: bool = False):
        self.config = config
        self.progress = progress
        train = config.train
        objective = DiffusionObjective if isinstance(config, Config) else AutoencoderObjective
        ddp = DistributedDataParallelKwargs(find_unused_parameters=objective.find_unused_parameters)
        self.accelerator = Accelerator(mixed_precision=train.mixed_precision, kwargs_handlers=[ddp])
        self.sharded = enable_fsdp(self.accelerator)  # FSDP2: model, gradients, optimizer state and EMA in shards
        self.output_dir = Path(train.output_dir)
        self._claim_output_dir(resume, overwrite)
        torch.manual_seed(train.seed)
        if objective is DiffusionObjective:
            self.objective = DiffusionObjective(config, text_encoder or TextEncoder(train.text_encoder,
                                                                                    cache_size=16384))
        else:
            self.objective = AutoencoderObjective(config)
        self.model = self.objective.new_model()
        self.objective.setup(self.model, self.accelerator, resume)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay))
        self.ema.to(self.accelerator.device)  # averaged where the model trains: no per-step copies between devices
        if train.compile:  # in place, after the EMA copy: parameter names and checkpoints stay the same
            self.model.compile()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.step = 0
        self.run_id = uuid.uuid4().hex  # names this run's checkpoints, so that pruning never touches another run's
        self.last_checkpoint: Path | None = None  # the newest checkpoint of this run on disk
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        if self.sharded:
            shard_like(self.ema.module, self.model, self.accelerator)
            self.accelerator.print(f"FSDP2: weights, gradients, optimizer state and EMA sharded over "
                                   f"{self.accelerator.num_processes} processes")
        self._tidy_output_dir(overwrite)
        if resume:
            self._resume()
        self._saved_step = self.step

    def _claim_output_dir(self, resume: bool, overwrite: bool) -> None:
        """Refuse a fresh run into a folder holding checkpoints unless `overwrite`."""
        if resume and overwrite:
            raise KinemaError("--resume and --overwrite exclude each other: continue the run, or replace it")
        found = step_checkpoints(self.output_dir)
        if found and not resume and not overwrite:
            raise KinemaError(f"{checkpoints_folder(self.output_dir)} already holds checkpoints (newest "
                              f"{found[-1].name}); continue that run with --resume, choose another "
                              "train.output_dir, or replace them with --overwrite")

    def _tidy_output_dir(self, overwrite: bool) -> None:
        """Once everything else is ready: delete the old checkpoints when `overwrite`, and what killed checkpoint
        writes left behind."""
        if self.accelerator.is_main_process:
            found = step_checkpoints(self.output_dir)
            if found and overwrite:
                clear_checkpoints(self.output_dir)
                self.accelerator.print(f"--overwrite: deleted {len(found)} checkpoint(s) in "
                                       f"{checkpoints_folder(self.output_dir)}")
            removed = remove_stale_writes(self.output_dir)
            if removed:
                self.accelerator.print(f"removed {len(removed)} unfinished checkpoint write(s) left by a killed run")
        self.accelerator.wait_for_everyone()

    @property
    def loss_fn(self):
        """The diffusion objective's loss (a `DiffusionLoss`); replaceable, e.g. to record its calls."""
        return self.objective.loss_fn

    @loss_fn.setter
    def loss_fn(self, value) -> None:
        self.objective.loss_fn = value

    def _conditioning(self, batch: dict, generators: list[torch.Generator]) -> Conditioning:
        """The diffusion objective's conditioning of `batch` (text, labels, fps), as the training step draws it."""
        return self.objective.conditioning(self.model, batch, generators)

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """This process's global generators: the CPU one and, on a GPU, the CUDA one."""
        states = {"torch": torch.get_rng_state()}
        if self.accelerator.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.accelerator.device)
        return states

    def _resume(self) -> None:
        path, note = resume_checkpoint(self.output_dir)
        if note:
            self.accelerator.print(note)
        state = load_checkpoint(path, self.config, self.accelerator.unwrap_model(self.model), self.ema.module,
                                self.optimizer, self.objective.read_config)
        self.ema.n_averaged.fill_(max(1, state.step))
        rank = self.accelerator.process_index
        if rank < len(state.rng):
            torch.set_rng_state(state.rng[rank]["torch"])
            if "cuda" in state.rng[rank] and self.accelerator.device.type == "cuda":
                torch.cuda.set_rng_state(state.rng[rank]["cuda"], self.accelerator.device)
        else:
            self.accelerator.print(f"warning: {path} was written by {len(state.rng)} process(es); process {rank} "
                                   "starts fresh random streams, so this run will not repeat an unbroken one exactly")
        if state.scaler and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state.scaler)
        self.step, self.run_id, self.last_checkpoint = state.step, state.run_id, path
        self.accelerator.print(f"resumed from {path} at step {self.step}")

    def _loader(self):
        """Batches from the step we are at: map-style data through a resumable (bucketed) sampler; streams
        are read from their start and the batches already trained on are skipped."""
        train = self.config.train
        dataset = build_dataset(self.config.data_kind, self.config.data, train.seed)
        batch, done = train.batch_size, self.step * self.accelerator.num_processes * train.grad_accum
        # an own generator for the workers' base seed: iterating a DataLoader would otherwise draw from the global
        # one, and each resume would shift it by one draw
        workers = {"num_workers": train.num_workers, "persistent_workers": train.num_workers > 0,
                   "generator": torch.Generator().manual_seed(train.seed)}
        if isinstance(dataset, IterableDataset):  # a stream hands each process its own items (data/shards.py)
            loader = DataLoader(dataset, batch_size=batch, drop_last=True, **workers)
            return itertools.islice(loader, done // self.accelerator.num_processes, None)
        if getattr(self.config.data, "buckets", None):
            sampler = ResumableBatchSampler(BucketBatchSampler(dataset, batch, train.seed), start=done)
            loader = DataLoader(dataset, batch_sampler=sampler, **workers)
        else:
            sampler = ResumableRandomSampler(len(dataset), train.seed, start=done * batch)
            loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True, **workers)
        return self.accelerator.prepare_data_loader(loader, device_placement=True)

    def sample_generators(self, micro_batch: int, size: int) -> list[torch.Generator]:
        """One generator per sample of this process's `micro_batch`-th micro-batch (of `size`), on the training
        device, seeded by the sample's index in the global stream: micro-batch m of process r holds global batch
        m * processes + r, as the data loader shards it."""
        device, processes = self.accelerator.device, self.accelerator.num_processes
        first = (micro_batch * processes + self.accelerator.process_index) * size
        seed = self.config.train.seed << 40
        return [torch.Generator(device).manual_seed((seed + first + i) % 2**63) for i in range(size)]

    def _save(self) -> Path | None:
        """Write a checkpoint of this step (every process's generators included); Ctrl-C waits until it is whole."""
        rng = gather_object([self._rng_states()])
        model = self.accelerator.unwrap_model(self.model)  # whole state dicts, gathered from the shards under FSDP
        weights, averaged = full_state_dict(model), full_state_dict(self.ema.module)
        optimizer = full_optimizer_state(model, self.optimizer)
        self.accelerator.wait_for_everyone()
        with interrupts_deferred():
            if self.accelerator.is_main_process:
                scaler = self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else None
                state = TrainingState(self.step, self.run_id, rng, scaler)
                save_checkpoint(self.output_dir, self.config, weights, averaged, optimizer, state,
                                self.config.train.keep_checkpoints, self.objective.write_model_files)
            self.accelerator.wait_for_everyone()
            self.last_checkpoint, self._saved_step = checkpoint_dir(self.output_dir, self.step), self.step
        return self.last_checkpoint

    def _sampling_model(self) -> torch.nn.Module | None:
        """The EMA model that the main process samples from (others get None); under FSDP it is gathered whole from
        the shards, so every process must call this."""
        if not self.sharded:
            return self.ema.module if self.accelerator.is_main_process else None
        averaged = full_state_dict(self.ema.module)
        if not self.accelerator.is_main_process:
            return None
        model = self.objective.new_model()
        model.load_state_dict(averaged)
        return model.to(self.accelerator.device)

    def _stopped(self, what: str) -> TrainingDiverged:
        return TrainingDiverged(f"{what} at step {self.step + 1}; stopped without saving "
                                f"(last good checkpoint: {self.last_checkpoint or 'none'})")

    def _non_finite_weight(self) -> str | None:
        """The name of a weight that is NaN/Inf (one device sync when all are finite), or None."""
        named = list(self.accelerator.unwrap_model(self.model).named_parameters())
        if torch.stack([torch.isfinite(p).all() for _, p in named]).all():
            return None
        return next(name for name, p in named if not torch.isfinite(p).all())

    def _step_batches(self):
        """The loader's batches in groups of `train.grad_accum`, one group per optimizer step."""
        batches, size = iter(self._loader()), self.config.train.grad_accum
        while len(group := list(itertools.islice(batches, size))) == size:
            yield group

    def _train_step(self, batches: list[dict]) -> tuple[float, float, dict[str, float]]:
        """One optimizer step on the summed gradients of `batches` (each loss divided by their number, so that the
        step equals one on their concatenation); (loss, gradient norm, the objective's terms averaged)."""
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total, terms = 0.0, {}
        for i, batch in enumerate(batches):
            size = len(batch["latent"] if "latent" in batch else batch["video"])  # cached latents have no video
            generators = self.sample_generators(self.step * len(batches) + i, size)
            loss, parts = self.objective.loss(self.model, batch, generators, self.step)
            loss = loss / len(batches)
            for name, value in parts.items():
                terms[name] = terms.get(name, 0.0) + value.item() / len(batches)
            if not torch.isfinite(loss):
                raise self._stopped(f"loss is {loss.item() * len(batches)}")
            last = i == len(batches) - 1  # gradients are averaged across processes once, after the last
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.model):
                self.accelerator.backward(loss)
            total += loss.item()
        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        if not torch.isfinite(grad_norm):
            raise self._stopped(f"gradient norm is {grad_norm.item()}")
        self.optimizer.step()
        bad = self._non_finite_weight()
        if bad:
            raise self._stopped(f"weight '{bad}' is not finite after the update (learning rate "
                                f"{learning_rate(self.config, self.step)})")
        self.ema.update_parameters(self.accelerator.unwrap_model(self.model))
        self.step += 1
        return total, grad_norm.item(), terms

    def train(self, until_step: int | None = None) -> Path | None:
        """Train until `config.train.steps` (or `until_step`, or `train.time_limit_minutes`); returns the last
        checkpoint written."""
        train = self.config.train
        last_step = min(train.steps, until_step or train.steps)
        writer = SummaryWriter(str(self.output_dir / "tensorboard")) if self.accelerator.is_main_process else None
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
            for batches in self._step_batches():
                if self.step >= last_step:
                    break
                loss, grad_norm, terms = self._train_step(batches)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if writer and self.step % train.log_every == 0:
                    rate = (self.step - started_step) / (time.perf_counter() - started)
                    for name, value in [("loss", loss), ("grad_norm", grad_norm), ("steps_per_second", rate),
                                        ("lr", learning_rate(self.config, self.step - 1)), *terms.items()]:
                        writer.add_scalar(f"train/{name}", value, self.step)
                stop = self.step == last_step or out_of_time()
                if self.step % train.checkpoint_every == 0 or stop:
                    self._save()
                if train.sample_every and self.step % train.sample_every == 0:
                    model = self._sampling_model()  # every process takes part under FSDP
                    if writer:
                        self.objective.write_samples(model, self.output_dir, self.step, writer)
                if stop:
                    break
        except KeyboardInterrupt:
            if self.step != self._saved_step:
                self._save()
            raise
        finally:
            bar.close()
            if writer:
                writer.close()
        return self.last_checkpoint
