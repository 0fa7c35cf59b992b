"""Video files: write and read mp4 (H.264), webm (VP9) and gif through PyAV (FFmpeg).

Encoding choices:
- mp4: H.264 yuv420p at CRF 12 (near-transparent), BT.709 limited range, fast-start.
- webm: VP9 yuv420p in constant-quality mode (CRF 15), BT.709 limited range.
  4:2:0 chroma covers 2x2 pixel blocks: H.264 cannot code odd sizes at all, and odd VP9
  frames get misaligned chroma, so odd frames are edge-padded to even and the true size is
  stored in a container tag that `read_video` crops back to (other players show the pad).
- gif: one 256-colour palette shared by all frames (median cut, no dithering, so flat
  areas stay flat and do not flicker), loops forever; frame delays are whole hundredths
  of a second, so the stored rate is the requested one to within that rounding.
RGB -> YUV uses area averaging for the chroma planes, so flat 2x2 blocks keep their colour.
Every write goes to a temporary file beside the target and is renamed over it at the end.
"""

import math
import numbers
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer, OutputContainer
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from av.video.stream import VideoStream
from einops import rearrange
from PIL import Image
from torch import Tensor

from kinema.atomic import atomic_path
from kinema.errors import KinemaError
from kinema.video.convert import as_rgb, from_uint8, to_uint8, upscale_nearest

VIDEO_FORMATS = ("mp4", "webm", "gif")

_SIZE_TAG = "kinema_frame_size"  # container tag "WxH" when the coded frames were padded
_BT709 = 1  # ITU-T H.273 code point for BT.709 primaries, transfer and matrix
_GIF_TICKS_PER_SECOND = 100  # GIF frame delays count hundredths of a second
_GIF_MIN_DELAY = 2  # players stretch shorter delays, so 50 fps is the fastest honest GIF

_CODECS = {  # format -> (encoder, encoder options, muxer options)
    "mp4": ("libx264", {"crf": "12", "preset": "medium"}, {"movflags": "+faststart+use_metadata_tags"}),
    "webm": (
        "libvpx-vp9",
        {"crf": "15", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
        {},
    ),
}


def format_from_path(path: str | os.PathLike) -> str:
    """Container format named by a file's suffix: one of `VIDEO_FORMATS`."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in VIDEO_FORMATS:
        raise KinemaError(
            f"{path}: unknown video suffix {Path(path).suffix or '(none)'!r}; expected one of {VIDEO_FORMATS}"
        )
    return suffix


def write_video(
    path: str | os.PathLike,
    video: Tensor,
    fps: float = 8,
    format: str | None = None,
    scale: int = 1,
) -> Path:
    """Write one clip `[C, T, H, W]` in [-1, 1] as mp4, webm or gif (from the suffix unless `format`)."""
    path = Path(path)
    fmt = format_from_path(path) if format is None else format.lower()
    if fmt not in VIDEO_FORMATS:
        raise KinemaError(f"{path}: unknown video format {format!r}; expected one of {VIDEO_FORMATS}")
    if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise KinemaError(f"{path}: fps must be a positive number, got {fps!r}")
    fps = float(fps)
    if fmt == "gif" and fps > _GIF_TICKS_PER_SECOND / _GIF_MIN_DELAY:
        raise KinemaError(f"{path}: gif cannot play faster than 50 fps, got fps={fps}")
    frames = to_uint8(upscale_nearest(as_rgb(video), scale))
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as temp:
        if fmt == "gif":
            _write_gif(temp, frames, fps)
        else:
            _write_yuv(temp, frames, rate, fmt)
    return path


def read_video(
    path: str | os.PathLike, num_frames: int | None = None, start: int = 0
) -> tuple[Tensor, float]:
    """Decode frames `start .. start + num_frames` (all by default): (clip `[C, T, H, W]` in [-1, 1], fps)."""
    path = Path(path)
    if not path.exists():
        raise KinemaError(f"video file not found: {path}")
    if not path.is_file():
        raise KinemaError(f"not a video file: {path}")
    if path.stat().st_size == 0:
        raise KinemaError(f"video file is empty: {path}")
    if start < 0 or (num_frames is not None and num_frames < 1):
        raise KinemaError(
            f"{path}: need start >= 0 and num_frames >= 1, got start={start}, num_frames={num_frames}"
        )
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise KinemaError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames, seen = _decode_rgb(container, stream, start, num_frames)
            tagged = _tagged_size(container.metadata)
            is_gif = stream.codec_context.name == "gif"
            rate = stream.average_rate or stream.guessed_rate
        fps = _gif_fps(path) if is_gif else float(rate or 0)
    except av.FFmpegError as err:
        raise KinemaError(f"cannot decode video file {path}: {err.strerror}") from err
    if not frames:
        raise KinemaError(f"{path}: start={start} but the video has {seen} frames")
    if num_frames is not None and len(frames) < num_frames:
        raise KinemaError(f"{path}: asked for {num_frames} frames from {start}, but the video has {seen}")
    if fps <= 0:
        raise KinemaError(f"{path}: the container does not say its frame rate")
    clip = np.stack(frames)
    if tagged is not None and tagged[0] <= clip.shape[1] and tagged[1] <= clip.shape[2]:
        clip = clip[:, : tagged[0], : tagged[1]]
    return from_uint8(clip), fps


# --------------------------------------------------------------------------- writers


def _write_yuv(temp: Path, frames: np.ndarray, rate: Fraction, fmt: str) -> None:
    """Encode uint8 RGB frames `[T, H, W, 3]` as yuv420p H.264 (mp4) or VP9 (webm)."""
    codec, codec_options, muxer_options = _CODECS[fmt]
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:  # 4:2:0 chroma needs even sizes
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    with av.open(str(temp), "w", format=fmt, options=muxer_options) as container:
        if frames.shape[1:3] != (height, width):
            container.metadata[_SIZE_TAG] = f"{width}x{height}"
        stream = container.add_stream(codec, rate=rate, options=codec_options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = ColorRange.MPEG
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p",
                dst_colorspace=Colorspace.ITU709,
                dst_color_range=ColorRange.MPEG,
                interpolation=Interpolation.AREA,  # box-filtered chroma
            )
            frame.pts, frame.time_base = index, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _write_gif(temp: Path, frames: np.ndarray, fps: float) -> None:
    """Encode uint8 RGB frames `[T, H, W, 3]` as a looping gif with one shared palette."""
    count, height, width, _ = frames.shape
    indices, palette = _shared_palette(frames)
    ticks = [round(i * _GIF_TICKS_PER_SECOND / fps) for i in range(count + 1)]
    delay = {ticks[i]: ticks[i + 1] - ticks[i] for i in range(count)}  # pts -> display time
    tick = Fraction(1, _GIF_TICKS_PER_SECOND)
    with av.open(str(temp), "w", format="gif", options={"loop": "0"}) as container:
        stream = container.add_stream("gif", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        stream.codec_context.time_base = tick
        for index in range(count):
            frame = av.VideoFrame.from_ndarray((indices[index], palette), format="pal8")
            frame.pts, frame.time_base = ticks[index], tick
            _mux_gif(container, stream.encode(frame), delay)
        _mux_gif(container, stream.encode(None), delay)


def _mux_gif(container: OutputContainer, packets: list[av.Packet], delay: dict[int, int]) -> None:
    """Mux gif packets, each carrying its frame's display time (the gif delay)."""
    for packet in packets:
        packet.duration = delay[packet.pts]
        container.mux(packet)


def _shared_palette(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median-cut palette over all frames: (indices `[T, H, W]` uint8, palette `[256, 4]` ARGB)."""
    count = frames.shape[0]
    sheet = Image.fromarray(rearrange(frames, "t h w c -> (t h) w c"))
    indexed = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    colours = np.asarray(indexed.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256]
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 0] = 255  # opaque
    palette[: len(colours), 1:] = colours
    return rearrange(np.asarray(indexed), "(t h) w -> t h w", t=count), palette


# --------------------------------------------------------------------------- readers


def _decode_rgb(
    container: InputContainer, stream: VideoStream, start: int, num_frames: int | None
) -> tuple[list[np.ndarray], int]:
    """Decode RGB frames from index `start`, at most `num_frames`; also how many frames were seen."""
    frames, seen = [], 0
    for frame in container.decode(stream):
        if seen >= start:
            frames.append(frame.to_ndarray(format="rgb24"))
        seen += 1
        if num_frames is not None and len(frames) == num_frames:
            break
    return frames, seen


def _tagged_size(metadata: dict[str, str]) -> tuple[int, int] | None:
    """True (height, width) written by `write_video` for padded frames, if the tag is present."""
    value = next((v for k, v in metadata.items() if k.lower() == _SIZE_TAG), None)
    if value is None:
        return None
    width, _, height = value.partition("x")
    if not (width.isdigit() and height.isdigit()):
        return None
    return int(height), int(width)


def _gif_fps(path: Path) -> float:
    """Frames per second of a gif from its frame delays (the demuxer's own guess uses only a few)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        delays = [packet.duration or 0 for packet in container.demux(stream) if packet.size]
    total = sum(delays) * stream.time_base
    return len(delays) / float(total) if total > 0 else 0.0
