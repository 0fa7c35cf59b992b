"""Latent caches (chapter 11.4): encode a run's training clips once with its autoencoder, so that a latent model
trains from shards of latents and never runs the encoder again (`kinema cache-latents`)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Subset

from kinema.autoencoder.latent_space import LatentSpace
from kinema.config import Config
from kinema.data.registry import build_dataset
from kinema.data.shards import write_shards
from kinema.errors import KinemaError


def cache_latents(config: Config, out: str | Path, items: int | None = None, items_per_shard: int = 1000,
                  batch_size: int = 8) -> list[Path]:
    """Write the first `items` clips (all, when None) of `config`'s training data as shards holding each clip's
    normalised latents (the posterior mean, `LatentSpace.encode`) in `latent` next to its caption and labels; train on
    them with `data.kind=shards data.urls=OUT` and the same `model.autoencoder`."""
    if not config.autoencoder:
        raise KinemaError("config key 'model.autoencoder' is empty: latents need the autoencoder that makes them")
    space = LatentSpace.load(config.autoencoder)
    data = config.data
    space.latent_size(data.num_frames, data.size, data.size)
    dataset = build_dataset(config.data_kind, data, config.train.seed)
    if items is not None:
        if not 1 <= items <= len(dataset):
            raise KinemaError(f"--items must be in 1..{len(dataset)} (the clips the data has), got {items}")
        dataset = Subset(dataset, range(items))
    return write_shards(dataset, out, encode=space.encode, items_per_shard=items_per_shard, batch_size=batch_size)
