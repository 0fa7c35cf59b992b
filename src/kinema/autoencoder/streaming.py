"""Any video length at flat memory: chunked causal encode / decode and spatial tiling (chapter 11.4).

Chunks: the encoder takes 1 + k*c frames, then k*c frames at a time (c = `chunk_latent_frames`), and every
causal layer carries its boundary features to the next chunk in a `StreamState`, so the result equals the
one-shot encoding up to float rounding; the decoder likewise takes c latent frames at a time. Memory is that of
one chunk, whatever the length. Tiles: frames larger than `tile` pixels are cut into overlapping tiles, each
encoded or decoded on its own (with its own stream state) and blended back with weights that ramp linearly
across the overlap, as in the tiled VAEs of diffusers; this is approximate near tile edges but seam-free.
All functions run without autograd (inference).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from kinema.autoencoder.causal_vae import CausalVideoVAE, DiagonalGaussian
from kinema.autoencoder.layers import StreamState
from kinema.errors import KinemaError

Frames = Tensor | Iterable[Tensor]  # a video [B, C, T, H, W], or pieces of one: [B, C, t, H, W] or frames [C, H, W]


@dataclass(frozen=True)
class Tiling:
    """Square tiles of `size` pixels whose neighbours share `overlap` pixels (both multiples of the spatial
    factor)."""

    size: int
    overlap: int

    def check(self, factor: int) -> None:
        """One-line KinemaError unless size and overlap suit an autoencoder with spatial factor `factor`."""
        if self.size < 1 or self.size % factor or self.overlap % factor or not 0 <= self.overlap < self.size:
            raise KinemaError(f"tiles need a size and overlap that are multiples of {factor} with 0 <= overlap < "
                              f"size, got size {self.size}, overlap {self.overlap}")

    def scaled(self, factor: int) -> Tiling:
        """The same tiling in latent pixels."""
        return Tiling(self.size // factor, self.overlap // factor)


def _starts(length: int, size: int, overlap: int) -> list[int]:
    """Tile starts along an axis: every size - overlap pixels, the last one flush with the end."""
    if length <= size:
        return [0]
    return [*range(0, length - size, size - overlap), length - size]


def _ramp(length: int, overlap: int, before: bool, after: bool) -> Tensor:
    """Blend weights along one axis of a tile: rising linearly over the overlap with a tile before, falling over
    the overlap with a tile after, 1 elsewhere."""
    weights = torch.ones(length)
    steps = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    if overlap and before:
        weights[:overlap] = steps
    if overlap and after:
        weights[length - overlap:] = torch.minimum(weights[length - overlap:], steps.flip(0))
    return weights


def _tiles(height: int, width: int, tiling: Tiling) -> list[tuple[slice, slice, Tensor]]:
    """(rows, columns, blend weights [h, w]) of every tile covering a height x width frame."""
    tiles = []
    rows, cols = _starts(height, tiling.size, tiling.overlap), _starts(width, tiling.size, tiling.overlap)
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            h, w = min(tiling.size, height), min(tiling.size, width)
            weight = _ramp(h, tiling.overlap, i > 0, i < len(rows) - 1)[:, None] * \
                _ramp(w, tiling.overlap, j > 0, j < len(cols) - 1)[None, :]
            tiles.append((slice(top, top + h), slice(left, left + w), weight))
    return tiles


class _Tiled:
    """Run a per-tile function over a chunk and blend the tiles' outputs back with linear ramps; tiles are cut by
    `tiling` at the input and blended by `out_tiling` at the output (the same grid at the other resolution), one
    stream state per tile."""

    def __init__(self, tiling: Tiling | None, out_tiling: Tiling | None, height: int, width: int, factor: float):
        self.factor, self.tiles = factor, None  # output pixels per input pixel
        if tiling is not None and max(height, width) > tiling.size:
            inputs = _tiles(height, width, tiling)
            outputs = _tiles(round(height * factor), round(width * factor), out_tiling)
            self.tiles = [(rows, cols, out_rows, out_cols, weight)
                          for (rows, cols, _), (out_rows, out_cols, weight) in zip(inputs, outputs)]
        self.states = [StreamState() for _ in self.tiles or [None]]

    def __call__(self, run, x: Tensor) -> list[Tensor]:
        if self.tiles is None:
            return run(x, self.states[0])
        size = (round(x.shape[-2] * self.factor), round(x.shape[-1] * self.factor))
        total, weights = None, torch.zeros(size, device=x.device)
        for (rows, cols, out_rows, out_cols, weight), state in zip(self.tiles, self.states):
            outputs = run(x[..., rows, cols], state)
            total = total or [out.new_zeros(*out.shape[:-2], *size) for out in outputs]
            for acc, out in zip(total, outputs):
                acc[..., out_rows, out_cols] += out * weight.to(out.device)
            weights[out_rows, out_cols] += weight.to(weights.device)
        return [acc / weights for acc in total]


def _pieces(frames: Frames) -> Iterator[Tensor]:
    """Pieces [B, C, t, H, W] of a video given whole, in pieces, or as frames [C, H, W]."""
    if isinstance(frames, Tensor):
        yield frames
        return
    for piece in frames:
        yield piece[None, :, None] if piece.ndim == 3 else piece


def frame_chunks(frames: Frames, temporal_factor: int, chunk_latent_frames: int, trim: bool = False
                 ) -> Iterator[Tensor]:
    """Regroup a video into the encoder's chunks: 1 + k*c frames, then k*c at a time (the last may be shorter but
    whole groups of k). A tail that is no whole group is an error, or dropped with `trim`."""
    if chunk_latent_frames < 1:
        raise KinemaError(f"chunk_latent_frames must be at least 1, got {chunk_latent_frames}")
    k, buffered, count, want = temporal_factor, [], 0, 1 + temporal_factor * chunk_latent_frames
    total = 0
    for piece in _pieces(frames):
        if piece.ndim != 5:
            raise KinemaError(f"video pieces must be [B, C, t, H, W] or frames [C, H, W], got shape "
                              f"{tuple(piece.shape)}")
        buffered.append(piece)
        count, total = count + piece.shape[2], total + piece.shape[2]
        while count >= want:
            video = torch.cat(buffered, dim=2)
            yield video[:, :, :want]
            buffered, count, want = [video[:, :, want:]], count - want, k * chunk_latent_frames
    seen = sum(p.shape[2] for p in buffered)
    started = want == k * chunk_latent_frames  # the first chunk (with frame 0 alone) is out
    whole = seen - seen % k if started else (seen - 1) // k * k + 1 if seen else 0
    if whole != seen and not trim:
        raise KinemaError(f"the autoencoder needs 1 + k*n frames with k={k}, got {total} frames")
    if whole > 0:
        yield torch.cat(buffered, dim=2)[:, :, :whole]


def _encoded_chunks(vae: CausalVideoVAE, frames: Frames, chunk_latent_frames: int, tiling: Tiling | None,
                    trim: bool) -> Iterator[tuple[Tensor, DiagonalGaussian]]:
    """(chunk of frames, posterior over its latents) for each chunk of a stream."""
    tiled = None
    if tiling is not None:
        tiling.check(vae.spatial_factor)
    with torch.no_grad():
        for chunk in frame_chunks(frames, vae.temporal_factor, chunk_latent_frames, trim):
            if tiled is None:
                out_tiling = tiling.scaled(vae.spatial_factor) if tiling else None
                tiled = _Tiled(tiling, out_tiling, *chunk.shape[-2:], 1 / vae.spatial_factor)

            def run(x, state):
                posterior = vae.encode(x, state)
                return [posterior.mean, posterior.logvar]

            yield chunk, DiagonalGaussian(*tiled(run, chunk))


def iter_encode(vae: CausalVideoVAE, frames: Frames, chunk_latent_frames: int = 4, tiling: Tiling | None = None,
                trim: bool = False) -> Iterator[DiagonalGaussian]:
    """Posteriors over consecutive latent chunks of a video of any length (flat memory), `frames` whole, in pieces
    or frame by frame; `trim` drops a tail that is no whole group of k frames."""
    for _, posterior in _encoded_chunks(vae, frames, chunk_latent_frames, tiling, trim):
        yield posterior


def encode_chunked(vae: CausalVideoVAE, frames: Frames, chunk_latent_frames: int = 4,
                   tiling: Tiling | None = None) -> DiagonalGaussian:
    """The posterior over a whole video's latents, computed chunk by chunk (equals `vae.encode` untiled)."""
    parts = list(iter_encode(vae, frames, chunk_latent_frames, tiling))
    if not parts:
        raise KinemaError("the autoencoder got a video with no frames")
    return DiagonalGaussian(torch.cat([p.mean for p in parts], 2), torch.cat([p.logvar for p in parts], 2))


def _latent_chunks(latents: Tensor | Iterable[Tensor], chunk_latent_frames: int) -> Iterator[Tensor]:
    """Latent pieces [B, z, t, h, w] cut into chunks of at most `chunk_latent_frames` frames."""
    if chunk_latent_frames < 1:
        raise KinemaError(f"chunk_latent_frames must be at least 1, got {chunk_latent_frames}")
    for piece in [latents] if isinstance(latents, Tensor) else latents:
        if piece.ndim != 5:
            raise KinemaError(f"latents must be [B, z, t, h, w], got shape {tuple(piece.shape)}")
        yield from piece.split(chunk_latent_frames, dim=2)


class ChunkDecoder:
    """Decode a latent stream chunk by chunk: each call continues the video where the previous one stopped."""

    def __init__(self, vae: CausalVideoVAE, tiling: Tiling | None = None):
        if tiling is not None:
            tiling.check(vae.spatial_factor)
        self.vae, self.tiling, self.tiled = vae, tiling, None

    def __call__(self, z: Tensor) -> Tensor:
        if self.tiled is None:
            latent = self.tiling.scaled(self.vae.spatial_factor) if self.tiling else None
            self.tiled = _Tiled(latent, self.tiling, *z.shape[-2:], self.vae.spatial_factor)
        with torch.no_grad():
            return self.tiled(lambda x, state: [self.vae.decode(x, state)], z)[0]


def iter_decode(vae: CausalVideoVAE, latents: Tensor | Iterable[Tensor], chunk_latent_frames: int = 4,
                tiling: Tiling | None = None) -> Iterator[Tensor]:
    """Consecutive pieces [B, C, t, H, W] of the video decoded from latents of any length (flat memory)."""
    decode = ChunkDecoder(vae, tiling)
    for chunk in _latent_chunks(latents, chunk_latent_frames):
        yield decode(chunk)


def decode_chunked(vae: CausalVideoVAE, latents: Tensor | Iterable[Tensor], chunk_latent_frames: int = 4,
                   tiling: Tiling | None = None) -> Tensor:
    """The whole decoded video, computed chunk by chunk (equals `vae.decode` untiled)."""
    return torch.cat(list(iter_decode(vae, latents, chunk_latent_frames, tiling)), dim=2)


def iter_reconstruct(vae: CausalVideoVAE, frames: Frames, chunk_latent_frames: int = 4,
                     tiling: Tiling | None = None, trim: bool = False) -> Iterator[tuple[Tensor, Tensor]]:
    """(frames, their reconstruction from the posterior mode) chunk by chunk, for a video of any length."""
    decode = ChunkDecoder(vae, tiling)
    for chunk, posterior in _encoded_chunks(vae, frames, chunk_latent_frames, tiling, trim):
        yield chunk, decode(posterior.mode())
