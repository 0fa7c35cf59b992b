"""The `kinema` command line: thin wrappers over the library; bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

from kinema.errors import KinemaError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Kinema: build, train, sample and measure video diffusion models.")


def user_errors(command):
    """Turn KinemaError (and missing files) into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KinemaError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KinemaError(f"--device {name}: CUDA is not available on this machine")
    return name


def _generate(checkpoint: Path | None, prompts: list[str], output: Path, format: str | None, sheet: Path | None,
              seed: int, num_frames: int | None, steps: int | None, sampler: str | None, guidance: float | None,
              scale: int, fps: float | None, device: str) -> None:
    from kinema.pipelines.text_to_video import TextToVideoPipeline
    from kinema.video import VIDEO_FORMATS, format_from_path

    if format is not None and format not in VIDEO_FORMATS:
        raise KinemaError(f"--format must be one of {', '.join(VIDEO_FORMATS)}, got '{format}'")
    if format is None:
        format_from_path(output)
    if scale < 1:
        raise KinemaError(f"--scale must be at least 1, got {scale}")
    pipe = TextToVideoPipeline.from_pretrained(checkpoint, device=_device(device))
    videos = pipe(prompts, seed=seed, num_frames=num_frames, steps=steps, sampler=sampler, guidance=guidance)
    for path in pipe.save(videos, output, format=format, sheet=sheet, fps=fps, scale=scale):
        typer.echo(f"wrote {path}")


FORMAT = typer.Option(None, "--format", "-f", help="mp4 | webm | gif (default: from the output suffix)")
SHEET = typer.Option(None, "--sheet", help="also write a PNG contact sheet (rows: videos, columns: frames)")
SEED = typer.Option(0, "--seed", help="random seed of the initial noise")
FRAMES = typer.Option(None, "--num-frames", help="frames to generate (default: the model's training length)")
STEPS = typer.Option(None, "--steps", help="sampler steps (default: the model's config)")
SAMPLER = typer.Option(None, "--sampler", help="ddpm | ddim | dpmpp_2m | euler | heun")
GUIDANCE = typer.Option(None, "--guidance", help="classifier-free guidance scale (1 = off)")
SCALE = typer.Option(8, "--scale", help="nearest-neighbour upscaling of the written video")
FPS = typer.Option(None, "--fps", help="frame rate of the written video")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")


@app.command()
@user_errors
def generate(
    prompt: str = typer.Argument(..., help="what to generate, e.g. 'a red ball and a blue ball bounce'"),
    output: Path = typer.Option(Path("kinema.mp4"), "--output", "-o", help="video file to write"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="model or checkpoint directory "
                                              "(default: the model Kinema ships)"),
    format: Optional[str] = FORMAT, sheet: Optional[Path] = SHEET, seed: int = SEED,
    num_frames: Optional[int] = FRAMES, steps: Optional[int] = STEPS, sampler: Optional[str] = SAMPLER,
    guidance: Optional[float] = GUIDANCE, scale: int = SCALE, fps: Optional[float] = FPS, device: str = DEVICE,
):
    """Generate a video from a text prompt (with the shipped model unless --checkpoint is given)."""
    _generate(checkpoint, [prompt], output, format, sheet, seed, num_frames, steps, sampler, guidance, scale, fps,
              device)


@app.command()
@user_errors
def sample(
    checkpoint: Path = typer.Argument(..., help="model or training checkpoint directory"),
    output: Path = typer.Option(Path("sample.mp4"), "--output", "-o", help="video file to write (PATH_i for several)"),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="prompt (repeatable; default: the "
                                               "checkpoint's sample.prompts)"),
    format: Optional[str] = FORMAT, sheet: Optional[Path] = SHEET, seed: int = SEED,
    num_frames: Optional[int] = FRAMES, steps: Optional[int] = STEPS, sampler: Optional[str] = SAMPLER,
    guidance: Optional[float] = GUIDANCE, scale: int = SCALE, fps: Optional[float] = FPS, device: str = DEVICE,
):
    """Sample videos from any checkpoint."""
    from kinema.models.pretrained import read_config

    prompts = prompt or read_config(checkpoint)[0].sample.prompts
    _generate(checkpoint, prompts, output, format, sheet, seed, num_frames, steps, sampler, guidance, scale, fps,
              device)


@app.command()
@user_errors
def train(
    config: Path = typer.Argument(..., help="YAML config, e.g. configs/balls.yaml"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. train.steps=2000"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint in train.output_dir"),
):
    """Train a model from a config; Ctrl-C saves a checkpoint, --resume continues exactly."""
    from kinema.config import load_config
    from kinema.training.trainer import Trainer

    cfg = load_config(config, overrides or [])
    trainer = Trainer(cfg, resume=resume)
    try:
        checkpoint = trainer.train()
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted at step {trainer.step}; continue with: kinema train {config} "
                   f"{' '.join(overrides or [])} --resume".replace("  ", " "), err=True)
        raise typer.Exit(130) from None
    typer.echo(f"done: {checkpoint}")


@app.command()
@user_errors
def info(checkpoint: Path = typer.Argument(..., help="model or training checkpoint directory")):
    """Print a checkpoint's config, parameter count and training step."""
    from omegaconf import OmegaConf

    from kinema.models.pretrained import load_pretrained

    model, config, metadata = load_pretrained(checkpoint)
    parameters = sum(p.numel() for p in model.parameters())
    typer.echo(f"checkpoint: {checkpoint}")
    typer.echo(f"model: {config.model_name}, {parameters:,} parameters")
    typer.echo(f"step: {metadata.get('step', 'unknown')}")
    typer.echo(OmegaConf.to_yaml(OmegaConf.create(config.to_dict())).rstrip())


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
