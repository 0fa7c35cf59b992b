"""Periodic samples during training: a video and a contact sheet per step, also shown in TensorBoard."""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torch.utils.tensorboard import SummaryWriter

from kinema.conditioning.text import TextEncoder
from kinema.config import Config
from kinema.video import contact_sheet, write_contact_sheet, write_video


def write_samples(model: nn.Module, config: Config, text_encoder: TextEncoder, output_dir: Path, step: int,
                  writer: SummaryWriter | None = None) -> Path:
    """Sample `config.sample.prompts` with `model`, write samples/step_N.{mp4,png}, log the sheet."""
    from kinema.pipelines.text_to_video import TextToVideoPipeline

    device = next(model.parameters()).device
    was_training = model.training
    pipe = TextToVideoPipeline(model, config, text_encoder, device=device)
    videos = pipe(config.sample.prompts, seed=0, progress=False)
    model.train(was_training)
    folder = output_dir / "samples"
    for i, video in enumerate(videos):
        write_video(folder / f"step_{step:07d}_{i}.mp4", video, fps=config.sample.fps, scale=4)
    sheet = write_contact_sheet(folder / f"step_{step:07d}.png", videos, scale=2)
    if writer is not None:
        writer.add_image("samples", contact_sheet(videos, scale=2), step, dataformats="HWC")
    return sheet
