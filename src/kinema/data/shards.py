"""Clip and latent caches in tar shards (webdataset layout), read back at random or streamed (chapter 11.1.4).

`write_shards` runs a dataset once (optionally through an encoder, e.g. a video autoencoder, so a
latent model never decodes or encodes a video again) and stores each item as tar members sharing
one key: tensors as `.npy` (no pickle), strings as `.txt`, numbers in `.json`. `ShardDataset`
indexes local shards and reads any item by seeking to its members (map-style: shuffling, exact
resume and DataLoader workers work as for any dataset); `stream_shards` reads shards sequentially
through webdataset from files, `http://` or `pipe:` URLs, for data that does not fit on one disk.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset
from webdataset.shardlists import expand_urls

from kinema.atomic import atomic_directory
from kinema.errors import KinemaError

SHARD_PATTERN = "shard-%06d.tar"
VIDEO_DTYPES = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32}


@dataclass
class ShardsConfig:
    """Pre-made shards to train on (`data.kind: shards`); num_frames and size must match what they hold."""

    urls: str = ""  # a folder of .tar shards, or a brace pattern such as data/shard-{000000..000099}.tar
    stream: bool = False  # read sequentially with webdataset (also http:// and pipe: URLs) instead of indexing
    shuffle_buffer: int = 0  # streaming only: items held for shuffling (0 = shard order)
    num_frames: int = 8
    size: int = 32

    def __post_init__(self):
        if not self.urls:
            raise KinemaError("ShardsConfig.urls: set data.urls to a folder of .tar shards or a shard pattern")
        if self.num_frames < 1 or self.size < 1 or self.shuffle_buffer < 0:
            raise KinemaError(f"ShardsConfig: need num_frames, size >= 1 and shuffle_buffer >= 0, got "
                              f"{self.num_frames}, {self.size}, {self.shuffle_buffer}")


def shard_urls(urls: str) -> list[str]:
    """Shard files or URLs: every .tar in a folder, else the brace-expanded pattern."""
    if os.path.isdir(urls):
        found = sorted(str(p) for p in Path(urls).glob("*.tar"))
        if not found:
            raise KinemaError(f"no .tar shards in {urls}")
        return found
    return expand_urls(urls)


# ------------------------------------------------------------------------------------------ encoding


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def encode_item(item: dict, video_dtype: str = "uint8") -> dict[str, bytes]:
    """One dataset item as tar members: tensors -> .npy (video as `video_dtype`), str -> .txt, numbers -> .json."""
    members, numbers = {}, {}
    for key, value in item.items():
        if key == "video" and isinstance(value, Tensor):
            video = value.detach().float().cpu()
            if video_dtype == "uint8":  # [-1, 1] -> levels 0..255, as the video files hold them
                members["video.npy"] = _npy(((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
            else:
                members["video.npy"] = _npy(video.numpy().astype(VIDEO_DTYPES[video_dtype]))
        elif isinstance(value, Tensor):
            members[f"{key}.npy"] = _npy(value.detach().cpu().numpy())
        elif isinstance(value, str):
            members[f"{key}.txt"] = value.encode("utf-8")
        elif isinstance(value, (bool, int, float)):
            numbers[key] = value
        else:
            raise KinemaError(f"cannot store item field '{key}' of type {type(value).__name__} in a shard")
    if numbers:
        members["numbers.json"] = json.dumps(numbers).encode("utf-8")
    return members


def decode_item(members: dict[str, bytes]) -> dict:
    """Inverse of `encode_item` (a uint8 video comes back as float in [-1, 1])."""
    item = {}
    for name, data in members.items():
        if name.startswith("__"):
            continue
        key, _, kind = name.partition(".")
        if kind == "npy":
            array = np.load(io.BytesIO(data), allow_pickle=False)
            tensor = torch.from_numpy(np.array(array))
            item[key] = tensor.float() / 127.5 - 1.0 if key == "video" and array.dtype == np.uint8 else tensor
        elif kind == "txt":
            item[key] = data.decode("utf-8")
        elif kind == "json":
            item.update(json.loads(data))
    return item


def write_shards(
    dataset: Dataset,
    out: str | os.PathLike,
    encode: Callable[[Tensor], Tensor] | None = None,
    items_per_shard: int = 1000,
    batch_size: int = 8,
    num_workers: int = 0,
    video_dtype: str = "uint8",
    keep_video: bool = False,
) -> list[Path]:
    """Store every item of `dataset` in `out/shard-NNNNNN.tar` (replacing `out` atomically); returns the shards.

    With `encode` (a batch `[B, C, T, H, W]` -> `[B, c, t, h, w]`, e.g. an autoencoder's encoder), each item
    also gets `latent` (float16) and its video is dropped unless `keep_video`.
    """
    if video_dtype not in VIDEO_DTYPES or items_per_shard < 1:
        raise KinemaError(f"write_shards: video_dtype in {list(VIDEO_DTYPES)}, items_per_shard >= 1; got "
                          f"{video_dtype!r}, {items_per_shard}")
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    with atomic_directory(out) as folder:
        with wds.ShardWriter(str(folder / SHARD_PATTERN), maxcount=items_per_shard, verbose=0, encoder=False) as sink:
            index = 0
            for items in loader:
                if encode is not None:
                    with torch.no_grad():
                        latents = encode(torch.stack([item["video"] for item in items]))
                    for item, latent in zip(items, latents):
                        item["latent"] = latent.to(torch.float16)
                        if not keep_video:
                            del item["video"]
                for item in items:
                    sink.write({"__key__": f"{index:09d}", **encode_item(item, video_dtype)})
                    index += 1
    return sorted(Path(out).glob("*.tar"))


# ------------------------------------------------------------------------------------------ reading


class ShardDataset(Dataset):
    """Random access to items in local tar shards (the tar headers are indexed once, members read by offset)."""

    def __init__(self, urls: str):
        self.index: list[tuple[str, dict[str, tuple[int, int]]]] = []  # (shard, member name -> (offset, size))
        for shard in shard_urls(urls):
            if not os.path.isfile(shard):
                raise KinemaError(f"shard not found: {shard} (use stream: true for remote URLs)")
            items: dict[str, dict[str, tuple[int, int]]] = {}
            try:
                with tarfile.open(shard, "r:") as tar:
                    for member in tar:
                        if member.isfile():
                            key, _, name = member.name.partition(".")
                            items.setdefault(key, {})[name] = (member.offset_data, member.size)
            except tarfile.TarError as error:
                raise KinemaError(f"cannot read shard {shard}: {error}") from None
            self.index.extend((shard, members) for _, members in sorted(items.items()))
        if not self.index:
            raise KinemaError(f"no items in the shards {urls}")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:
        shard, members = self.index[index]
        data = {}
        with open(shard, "rb") as handle:
            for name, (offset, size) in members.items():
                handle.seek(offset)
                data[name] = handle.read(size)
        return decode_item(data)


def stream_shards(urls: str, shuffle_buffer: int = 0, seed: int = 0, rank: int = 0,
                  processes: int = 1) -> IterableDataset:
    """Stream items from shard files or URLs with webdataset (split across DataLoader workers by shard, and across
    `processes` training processes by item: process `rank` keeps item `rank` of every `processes` in a row)."""
    # every process reads every shard (nodesplitter=None) and keeps its own items: no process runs out before another
    pipeline = wds.WebDataset(shard_urls(urls), shardshuffle=False, empty_check=False, nodesplitter=None)
    if shuffle_buffer:  # the same seed in every process: all shuffle alike, then each keeps its own items
        pipeline = pipeline.shuffle(shuffle_buffer, rng=random.Random(seed))
    if processes > 1:
        pipeline = pipeline.compose(partial(_every_nth, rank=rank, processes=processes))
    return pipeline.compose(_decode_stream)  # not .map: webdataset's map puts "__key__" back into each item


def _every_nth(samples, rank: int, processes: int):
    """Item `rank` of each full run of `processes` items (a short last run is dropped, so that every process gets
    as many items and none waits at the end of the stream for the others); before decoding, so each process
    decodes only its own items."""
    run = []
    for sample in samples:
        run.append(sample)
        if len(run) == processes:
            yield run[rank]
            run = []


def _decode_stream(samples):
    """Decode webdataset samples (dicts of member bytes plus "__key__" / "__url__" strings) into items."""
    for sample in samples:
        yield decode_item({k: v for k, v in sample.items() if isinstance(v, bytes)})


def build_shards(config: ShardsConfig, seed: int) -> Dataset:
    """The dataset for `data.kind: shards`, checked against config.num_frames and size."""
    if config.stream:  # in a distributed run (torch.distributed initialised), each process streams its own items
        split = torch.distributed.is_initialized()
        rank, processes = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if split else (0, 1)
        dataset = stream_shards(config.urls, config.shuffle_buffer, seed, rank, processes)
    else:
        dataset = ShardDataset(config.urls)
    first = next(iter(dataset)) if config.stream else dataset[0]
    if "video" in first and (first["video"].shape[1], first["video"].shape[-1]) != (config.num_frames, config.size):
        raise KinemaError(f"config keys 'data.num_frames', 'data.size' ({config.num_frames}, {config.size}) do not "
                          f"match the clips in the shards, shape {tuple(first['video'].shape)}")
    return dataset
