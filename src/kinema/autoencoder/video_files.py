"""Video files through the autoencoder at flat memory: encode to a latents file, decode one, reconstruct and score.

Frames are read one by one and written one by one (mp4 / webm), so a video of any length costs the memory of one
chunk. A video whose size is not a multiple of the spatial factor s is resized to the nearest one, and frames
past the last whole group of k are dropped; each such change comes back as a one-line note. Latents files are
safetensors holding `latents` `[1, z, t, h, w]` (the posterior mean, before any latent normalisation) with the
frame rate and the decoded video's size in their metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from kinema.atomic import atomic_path
from kinema.autoencoder.causal_vae import CausalVideoVAE
from kinema.autoencoder.streaming import Tiling, iter_decode, iter_encode, iter_reconstruct
from kinema.data.transforms import resize
from kinema.errors import KinemaError
from kinema.metrics.frame import psnr, ssim
from kinema.video import VideoWriter, decode_frames, from_uint8, probe_video

LATENTS_KEY = "latents"
LATENTS_FORMAT = "kinema-autoencoder-latents"


def fitting_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """The nearest height and width that are multiples of `factor` (at least `factor`; halves round up)."""
    return tuple(max(factor, int(side / factor + 0.5) * factor) for side in (height, width))


class VideoFrames:
    """The frames of a video file one by one, `[1, 3, 1, H, W]` in [-1, 1], resized to a multiple of the
    autoencoder's spatial factor; `count` is the number read so far and `notes` say what was changed."""

    def __init__(self, path: str | Path, factor: int):
        self.info = probe_video(path)
        self.size = fitting_size(self.info.height, self.info.width, factor)
        self.count, self.notes = 0, []
        if self.size != (self.info.height, self.info.width):
            self.notes.append(f"resized {self.info.width}x{self.info.height} to {self.size[1]}x{self.size[0]} "
                              f"(a multiple of {factor})")

    def __iter__(self) -> Iterator[torch.Tensor]:
        display = (self.info.height, self.info.width)
        for _, frame in decode_frames(self.info.path):
            width = round(frame.width * self.info.sample_aspect)  # square pixels, as the readers give them
            rgb = frame.to_ndarray(format="rgb24", width=width, height=frame.height)[: display[0], : display[1]]
            self.count += 1
            yield resize(from_uint8(rgb[None]), *self.size)[None]


def _trim_note(frames: VideoFrames, used: int, k: int) -> None:
    """Note the frames dropped after the last whole group of k."""
    if frames.count > used:
        frames.notes.append(f"trimmed {frames.count} frames to {used} (1 + k*n with k={k})")


def encode_video_file(vae: CausalVideoVAE, video: str | Path, output: str | Path, chunk_latent_frames: int = 4,
                      tiling: Tiling | None = None) -> tuple[torch.Tensor, list[str]]:
    """Encode a video file chunk by chunk into a latents file: (latents [1, z, t, h, w], notes)."""
    frames = VideoFrames(video, vae.spatial_factor)
    device = next(vae.parameters()).device
    parts = [p.mode().cpu() for p in iter_encode(vae, (f.to(device) for f in frames), chunk_latent_frames, tiling,
                                                  trim=True)]
    if not parts:
        raise KinemaError(f"{video}: no frames to encode")
    latents = torch.cat(parts, dim=2)
    _trim_note(frames, 1 + vae.temporal_factor * (latents.shape[2] - 1), vae.temporal_factor)
    metadata = {"format": LATENTS_FORMAT, "fps": repr(frames.info.fps), "height": str(frames.size[0]),
                "width": str(frames.size[1]), "frames": str(1 + vae.temporal_factor * (latents.shape[2] - 1))}
    with atomic_path(output) as tmp:
        save_file({LATENTS_KEY: latents.contiguous()}, str(tmp), metadata=metadata)
    return latents, frames.notes


def read_latents(path: str | Path) -> tuple[torch.Tensor, float]:
    """(latents [B, z, t, h, w], fps) from a latents file written by `encode_video_file`."""
    path = Path(path)
    if not path.is_file():
        raise KinemaError(f"latents file not found: {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise KinemaError(f"corrupt latents file {path}: {str(error).splitlines()[0]}") from None
    latents = tensors.get(LATENTS_KEY)
    if latents is None or latents.ndim != 5 or not latents.is_floating_point():
        raise KinemaError(f"{path} holds no '{LATENTS_KEY}' tensor [B, z, t, h, w] (write one with kinema vae encode)")
    if not torch.isfinite(latents).all():
        raise KinemaError(f"{path}: the latents are not finite (NaN or infinity)")
    try:
        fps = float(metadata.get("fps", 8.0))
    except ValueError:
        raise KinemaError(f"{path}: metadata fps is not a number: {metadata['fps']!r}") from None
    return latents.float(), fps


def decode_latent_file(vae: CausalVideoVAE, latents: str | Path, output: str | Path, chunk_latent_frames: int = 4,
                       tiling: Tiling | None = None, fps: float | None = None) -> int:
    """Decode a latents file chunk by chunk into a video file (mp4 or webm); returns the frames written."""
    z, stored_fps = read_latents(latents)
    vae.check_latents(z)
    if len(z) != 1:
        raise KinemaError(f"{latents} holds {len(z)} videos; decode writes one video file, so give one")
    written = 0
    device = next(vae.parameters()).device
    with VideoWriter(output, fps=fps or stored_fps) as writer:
        for piece in iter_decode(vae, z.to(device), chunk_latent_frames, tiling):
            for frame in piece[0].cpu().unbind(1):
                writer.write(frame)
                written += 1
    return written


def reconstruct_video_file(vae: CausalVideoVAE, video: str | Path, output: str | Path | None,
                           chunk_latent_frames: int = 4, tiling: Tiling | None = None) -> tuple[dict, list[str]]:
    """Encode and decode a video file chunk by chunk, writing the reconstruction (mp4 or webm) when `output` is
    given: ({frames, psnr, ssim} averaged over frames, notes)."""
    frames = VideoFrames(video, vae.spatial_factor)
    device = next(vae.parameters()).device
    totals, count = {"psnr": 0.0, "ssim": 0.0}, 0
    writer = VideoWriter(output, fps=frames.info.fps) if output is not None else None
    stream = iter_reconstruct(vae, (f.to(device) for f in frames), chunk_latent_frames, tiling, trim=True)
    with writer if writer is not None else nullcontext():
        for original, reconstruction in stream:
            reconstruction, length = reconstruction.clamp(-1, 1).cpu(), original.shape[2]
            totals["psnr"] += psnr(reconstruction, original.cpu()).item() * length
            totals["ssim"] += ssim(reconstruction, original.cpu()).item() * length
            count += length
            for frame in reconstruction[0].unbind(1) if writer is not None else ():
                writer.write(frame)
    if count == 0:
        raise KinemaError(f"{video}: no frames to reconstruct")
    _trim_note(frames, count, vae.temporal_factor)
    return {"frames": count, **{k: v / count for k, v in totals.items()}}, frames.notes

