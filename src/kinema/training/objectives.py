"""What a training run optimises, apart from the loop: the denoiser's diffusion objective (`kinema train`) and the
autoencoder's reconstruction objective (`kinema train-vae`).

An objective builds the model the loop trains, turns a batch into a loss, writes the periodic samples and the
config.json of checkpoints; the loop (`kinema.training.trainer.Trainer`: AdamW, warmup, clipping, EMA, checkpoints,
exact resume, the NaN guard, FSDP, TensorBoard, time limit, Ctrl-C) is the same for both.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from kinema.autoencoder.latent_space import LatentSpace
from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.controls import CONTROL_MAPS, resized_control, training_controls
from kinema.conditioning.prompts import prompt_conditioning
from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.diffusion import DiffusionLoss, build_schedule
from kinema.diffusion.frame_tasks import PIXEL_TASKS, draw_frame_tasks
from kinema.diffusion.loss import draw
from kinema.errors import KinemaError
from kinema.models.pretrained import init_from_pretrained, read_config
from kinema.models.registry import build_model


class DiffusionObjective:
    """Denoising at random noise levels (`DiffusionLoss`), with text / label / fps conditioning, caption and label
    dropout for guidance, and frame tasks; periodic samples are generated videos."""

    write_model_files: Callable | None = None  # checkpoints hold the model config and its sampling spec (default)
    find_unused_parameters = False  # every parameter takes part in every step (DDP needs no search)
    read_config: Callable = staticmethod(read_config)

    def __init__(self, config: Config, text_encoder: TextEncoder):
        self.config, self.text_encoder = config, text_encoder
        self.loss_fn = DiffusionLoss(build_schedule(config.diffusion.schedule, config.diffusion.shift),
                                     config.diffusion.prediction, config.diffusion.per_frame_noise,
                                     temporal=config.train.temporal_loss)
        self.accelerator: Accelerator | None = None
        self.latents = LatentSpace.load(config.autoencoder) if config.autoencoder else None  # a latent model

    def new_model(self) -> nn.Module:
        """The denoiser the config describes, freshly initialised."""
        return build_model(self.config.model_name, self.config.model)

    def setup(self, model: nn.Module, accelerator: Accelerator, resume: bool) -> None:
        """Fine-tuning start, gradient checkpointing, and the checks of the model against text and frame tasks."""
        self.accelerator = accelerator
        train = self.config.train
        if train.init_from and not resume:
            new = init_from_pretrained(model, train.init_from)
            accelerator.print(f"initialised from {train.init_from}" + (f"; new: {', '.join(new)}" if new else ""))
        model.gradient_checkpointing = train.gradient_checkpointing  # a KinemaError where unsupported
        text_dim = model.text_dim
        if text_dim and text_dim != self.text_encoder.dim:
            raise KinemaError(f"config key 'model.text_dim' is {text_dim} but text encoder "
                              f"'{train.text_encoder}' gives {self.text_encoder.dim}-d tokens")
        pixel_tasks = sorted(set(train.frame_tasks) & set(PIXEL_TASKS))
        if pixel_tasks and not model.frame_conditioning:
            raise KinemaError(f"config key 'train.frame_tasks': {', '.join(pixel_tasks)} give parts of frames, which "
                              f"only a model with model.frame_conditioning=true can read")
        if self.latents is not None:
            self._check_latent_model(model)
            self.latents.to(accelerator.device)

    def _check_latent_model(self, model: nn.Module) -> None:
        """One-line errors for a latent model whose channels, data or losses do not fit its autoencoder."""
        latents, data = self.latents, self.config.data
        if model.in_channels != latents.channels:
            raise KinemaError(f"config key 'model.in_channels' is {model.in_channels} but autoencoder "
                              f"'{self.config.autoencoder}' makes {latents.channels}-channel latents")
        latents.latent_size(data.num_frames, data.size, data.size)
        if self.config.train.temporal_loss.feature > 0:
            raise KinemaError("config key 'train.temporal_loss.feature' compares RGB frames: a latent model's "
                              "estimates are latents (use pixel or flow)")

    def conditioning(self, model: nn.Module, batch: dict, generators: list[torch.Generator]) -> Conditioning:
        """Text (with caption dropout for guidance) and its motion words, plus class labels and fps when the model
        reads them."""
        captions = list(batch["caption"])
        device = self.accelerator.device
        drop = draw(torch.rand, torch.Size([len(captions)]), generators, device=device).cpu()
        drop = drop < self.config.train.caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        fields = self.accelerator.unwrap_model(model).conditioning_fields
        extra = {name: batch[key] for name, key in (("labels", "label"), ("fps", "fps"))
                 if name in fields and key in batch}
        if "labels" in extra:  # label dropout: -1 is the null class that class guidance contrasts with
            dropped = draw(torch.rand, torch.Size([len(captions)]), generators, device=device)
            extra["labels"] = extra["labels"].masked_fill(dropped.to(extra["labels"].device) <
                                                          self.config.train.label_dropout, -1)
        cond = prompt_conditioning(captions, self.text_encoder, fields)
        return replace(cond, **extra).to(device)

    def _frame_tasks(self, model: nn.Module, video: Tensor, cond: Conditioning,
                     generators: list[torch.Generator]) -> tuple[Tensor | None, Tensor | None]:
        """(known pixels, per-frame levels) of each sample's frame task (`train.frame_tasks`), or (None, None);
        a frame-conditioned model also gets the known pixels in `cond`."""
        if not self.config.train.frame_tasks:
            return None, None
        known, levels = draw_frame_tasks(self.config.train.frame_tasks, video.shape, generators)
        known, levels = known.to(video.device), levels.to(video.device)
        if "frames" in self.accelerator.unwrap_model(model).conditioning_fields:
            cond.frames, cond.frame_mask = video, known
        return known, levels

    def loss(self, model: nn.Module, batch: dict, generators: list[torch.Generator],
             step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The diffusion loss of one micro-batch (no other terms to log); a latent model denoises its clips'
        latents: cached ones (`kinema cache-latents`), or a posterior sample drawn from each sample's generator."""
        cond = self.conditioning(model, batch, generators)
        video = self._clean(model, batch, generators, cond)
        known, levels = self._frame_tasks(model, video, cond, generators)
        with self.accelerator.autocast():
            loss = self.loss_fn(lambda x, t: model(x, t, cond), video, generator=generators, known=known,
                                levels=levels)
        return loss, {}

    def _clean(self, model: nn.Module, batch: dict, generators: list[torch.Generator], cond: Conditioning) -> Tensor:
        """The clean videos (or latents) the model learns to make; a model with controls or knobs also gets them in
        `cond`, made from the batch's ground truth (kinema.conditioning.controls)."""
        device = self.accelerator.device
        denoiser = self.accelerator.unwrap_model(model)
        controlled = bool(denoiser.controls or denoiser.attributes)
        if "latent" in batch:
            if self.latents is None:
                raise KinemaError("the data holds latents (from kinema cache-latents): set model.autoencoder to the "
                                  "autoencoder that made them")
            if controlled:
                raise KinemaError("model.controls and model.attributes are made from pixel clips: train on the video "
                                  "data, not on cached latents")
            return batch["latent"].to(device, torch.float32)
        video = batch["video"].to(device)
        if controlled:
            video, cond.control, cond.attributes = training_controls(
                denoiser.controls, denoiser.attributes, batch, video, generators, self.config.train.control_dropout)
        residual = self.config.diffusion.residual_of
        if residual:  # SR3 / Imagen Video: the model learns the clip minus its map, made before noise augmentation
            base = CONTROL_MAPS[residual].from_batch(batch, video, {}).to(video)
            if base.shape != video.shape:
                raise KinemaError(f"config key 'diffusion.residual_of': map '{residual}' is {list(base.shape)}, the "
                                  f"clips {list(video.shape)}: give a map with the video's channels (low_res_x2)")
            video = video - base
        if self.latents is not None:
            video = self.latents.encode(video, generators)
        cond.control = resized_control(cond.control, video.shape[2:])
        return video

    def write_samples(self, model: nn.Module, output_dir: Path, step: int, writer: SummaryWriter) -> None:
        """Generate `sample.prompts` with the EMA model."""
        from kinema.training.samples import write_samples

        write_samples(model, self.config, self.text_encoder, output_dir, step, writer)


class AutoencoderObjective:
    """Reconstruction + perceptual + KL (+ a 3D patch critic after `loss.disc_start`) of a causal video autoencoder
    (`kinema.autoencoder.losses`); periodic samples are reconstructions of the first training clips."""

    find_unused_parameters = True  # the critic takes no part before loss.disc_start

    def __init__(self, config):
        from kinema.autoencoder.config import read_run_config, write_run_files

        self.config = config  # AutoencoderRunConfig
        self.write_model_files, self.read_config = write_run_files, read_run_config
        self.accelerator: Accelerator | None = None
        self._sample_clips: Tensor | None = None

    def new_model(self) -> nn.Module:
        """The autoencoder (and its critic) the config describes, freshly initialised."""
        from kinema.autoencoder import CausalVideoVAE
        from kinema.autoencoder.losses import AutoencoderTraining

        return AutoencoderTraining(CausalVideoVAE(self.config.autoencoder), self.config.loss,
                                   self.config.train.temporal_loss)

    def setup(self, model: nn.Module, accelerator: Accelerator, resume: bool) -> None:
        """Nothing to prepare: the run config was checked when it was read."""
        self.accelerator = accelerator

    def loss(self, model: nn.Module, batch: dict, generators: list[torch.Generator],
             step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The autoencoder's loss of one micro-batch, and its terms."""
        video = batch["video"].to(self.accelerator.device)
        with self.accelerator.autocast():
            return model(video, generators, step)

    @torch.no_grad()
    def write_samples(self, model: nn.Module, output_dir: Path, step: int, writer: SummaryWriter) -> None:
        """Write samples/step_N.png: rows of clips, each followed by its reconstruction (posterior mean)."""
        from einops import rearrange

        from kinema.data.registry import build_dataset
        from kinema.video import contact_sheet, write_contact_sheet

        if self._sample_clips is None:  # the same clips at every step
            dataset = build_dataset(self.config.data_kind, self.config.data, self.config.train.seed)
            self._sample_clips = next(iter(DataLoader(dataset, batch_size=2)))["video"]
        vae = model.vae
        was_training = vae.training
        clips = self._sample_clips.to(next(vae.parameters()).device)
        pairs = rearrange(torch.stack([clips, vae.decode(vae.eval().encode(clips).mode()).clamp(-1, 1)], 1),
                          "b two c t h w -> (b two) c t h w")
        vae.train(was_training)
        write_contact_sheet(output_dir / "samples" / f"step_{step:07d}.png", pairs.cpu(), scale=2)
        writer.add_image("reconstructions", contact_sheet(pairs.cpu(), scale=2), step, dataformats="HWC")
