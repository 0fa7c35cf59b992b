"""From a `kinema train-vae` checkpoint to an autoencoder directory: the EMA autoencoder and its latent scale and
shift, measured from the training data (the scaling factor of LDM, Rombach et al. 2022, sec. 4.3.2 and app. G)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from kinema.autoencoder.causal_vae import CausalVideoVAE
from kinema.autoencoder.config import AutoencoderRunConfig, read_run_config
from kinema.autoencoder.directory import LatentNormalization, read_autoencoder_config, save_autoencoder
from kinema.errors import KinemaError
from kinema.models.pretrained import load_weights, weights_file


@torch.no_grad()
def latent_statistics(vae: nn.Module, videos: Iterable[Tensor]) -> LatentNormalization:
    """The latent normalisation from the posterior means of `videos` (batches [B, 3, T, H, W]): shift = their mean,
    scale = 1 / their standard deviation over every element, so that (mean - shift) * scale has mean 0 and
    variance 1."""
    count, total, squares = 0, torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    device = next(vae.parameters()).device
    for video in videos:
        mean = vae.encode(video.to(device)).mean.double()
        count, total, squares = count + mean.numel(), total + mean.sum(), squares + mean.pow(2).sum()
    if count == 0:
        raise KinemaError("latent statistics need at least one batch of videos")
    shift = total / count
    std = (squares / count - shift ** 2).clamp_min(0).sqrt()
    if not std > 0:
        raise KinemaError("the posterior means are constant over the data: the latent scale is undefined")
    return LatentNormalization(scale=(1 / std).item(), shift=shift.item())


def training_videos(config: AutoencoderRunConfig) -> Iterable[Tensor]:
    """The first `loss.scale_batches` batches of the run's data, in the dataset's own order (the same every time)."""
    from kinema.data.registry import build_dataset

    dataset = build_dataset(config.data_kind, config.data, config.train.seed)
    loader = DataLoader(dataset, batch_size=config.train.batch_size)
    return (batch["video"] for batch in itertools.islice(loader, config.loss.scale_batches))


def export_autoencoder(checkpoint: str | Path, output: str | Path) -> tuple[Path, LatentNormalization]:
    """Write the EMA autoencoder of a train-vae checkpoint, with its latent normalisation measured from the run's
    data, as an autoencoder directory (`kinema vae ... -c OUTPUT`); an existing autoencoder directory is replaced,
    any other non-empty folder refused."""
    checkpoint, output = Path(checkpoint), Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        try:
            read_autoencoder_config(output)
        except KinemaError:
            raise KinemaError(f"export output {output} exists and is not an autoencoder directory: choose a new "
                              f"directory") from None
    config, metadata = read_run_config(checkpoint)
    file = weights_file(checkpoint)
    vae = CausalVideoVAE(config.autoencoder)
    try:
        vae.load_state_dict({k.removeprefix("vae."): v for k, v in load_weights(file).items() if k.startswith("vae.")})
    except RuntimeError as error:
        raise KinemaError(f"weights in {file} do not match the autoencoder in its config.json: "
                          f"{str(error).splitlines()[0]}") from None
    latents = latent_statistics(vae.eval(), training_videos(config))
    return save_autoencoder(output, vae, latents, {"step": metadata.get("step")}), latents
