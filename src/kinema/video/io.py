"""Video files: write and read mp4 (H.264), webm (VP9) and gif through PyAV (FFmpeg).

Reading covers every container in `READABLE_SUFFIXES` (whatever FFmpeg demuxes: mpg, ts, avi,
mkv, mov, flv, wmv, ogv, ...). `probe_video` reads the container header (and the packet timestamps
where the container stores no length), decoding nothing; `read_frames_at`,
`read_clip` and `read_window` seek to the keyframe before the wanted time in containers with an
index and exact timestamps (mp4/mov, mkv/webm) and decode from the start elsewhere, so a short
clip from a long mp4 costs a short decode and nothing is lost in an AVI or MPEG stream. Every
decoded frame is kept, in decoder (display) order; its time comes from the timestamps of the
frames around it put in order (packed DivX/XviD B-frames carry them shuffled, AVI may give only
decode timestamps), or one frame period after the previous frame where none is given. The frame
shown at time t is the last frame whose time is <= t (within a quarter frame), counted from the
stream's first frame (chapter 11.1.4, fixed-rate temporal sampling). Non-square pixels are
resampled to the display aspect (the width is scaled by the sample aspect ratio).

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

import contextlib
import heapq
import itertools
import math
import numbers
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer, OutputContainer
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from av.video.stream import VideoStream
from einops import rearrange
from PIL import Image
import torch
from torch import Tensor

from kinema.atomic import atomic_path
from kinema.errors import KinemaError
from kinema.video.convert import as_rgb, from_uint8, to_uint8, upscale_nearest

VIDEO_FORMATS = ("mp4", "webm", "gif")
READABLE_SUFFIXES = (  # what the readers accept: containers FFmpeg demuxes that hold video
    ".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m1v", ".m2v", ".vob",
    ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".asf", ".ogv", ".ogg", ".dv", ".gif",
)
SEEKABLE_CONTAINERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")  # FFmpeg demuxers with an index and exact pts
_STORED_LENGTH = (*SEEKABLE_CONTAINERS, "avi", "gif")  # demuxers whose header stores the stream's length
_REORDER_DEPTH = 8  # frames held back to put shuffled timestamps in order (B-frame depth + packed chunks)

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
    path = _checked_file(path)
    if start < 0 or (num_frames is not None and num_frames < 1):
        raise KinemaError(
            f"{path}: need start >= 0 and num_frames >= 1, got start={start}, num_frames={num_frames}"
        )
    with _open_stream(path) as (container, stream, fps):
        frames, seen = _decode_rgb(container, stream, start, num_frames, _display_size(stream))
        tagged = _tagged_size(container.metadata)
    if not frames:
        raise KinemaError(f"{path}: start={start} but the video has {seen} frames")
    if num_frames is not None and len(frames) < num_frames:
        raise KinemaError(f"{path}: asked for {num_frames} frames from {start}, but the video has {seen}")
    clip = np.stack(frames)
    if tagged is not None and tagged[0] <= clip.shape[1] and tagged[1] <= clip.shape[2]:
        clip = clip[:, : tagged[0], : tagged[1]]
    return from_uint8(clip), fps


# --------------------------------------------------------------------------- writers


def _write_yuv(temp: Path, frames: np.ndarray, rate: Fraction, fmt: str) -> None:
    """Encode uint8 RGB frames `[T, H, W, 3]` as yuv420p H.264 (mp4) or VP9 (webm)."""
    with _YuvEncoder(temp, rate, fmt, frames.shape[1:3]) as encoder:
        for rgb in frames:
            encoder.encode(rgb)


class _YuvEncoder:
    """An open yuv420p H.264 (mp4) or VP9 (webm) file of frames `size` (H, W) that takes uint8 RGB frames one by one
    (odd sizes are edge-padded to even and tagged)."""

    def __init__(self, temp: Path, rate: Fraction, fmt: str, size: tuple[int, int]):
        codec, codec_options, muxer_options = _CODECS[fmt]
        self.size, self.rate, self.count = tuple(size), rate, 0
        height, width = size
        self.container = av.open(str(temp), "w", format=fmt, options=muxer_options)
        if height % 2 or width % 2:  # 4:2:0 chroma needs even sizes
            self.container.metadata[_SIZE_TAG] = f"{width}x{height}"
        self.stream = self.container.add_stream(codec, rate=rate, options=codec_options)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        context = self.stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = ColorRange.MPEG

    def encode(self, rgb: np.ndarray) -> None:
        """Encode the next frame `[H, W, 3]` uint8."""
        height, width = self.size
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p",
            dst_colorspace=Colorspace.ITU709,
            dst_color_range=ColorRange.MPEG,
            interpolation=Interpolation.AREA,  # box-filtered chroma
        )
        frame.pts, frame.time_base = self.count, 1 / self.rate
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def __enter__(self) -> "_YuvEncoder":
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()


class VideoWriter:
    """Write one video frame by frame (`write(frame [C, H, W])` in [-1, 1]) as mp4 or webm, holding one frame in
    memory, for videos of any length; the file appears, atomically, when the `with` block ends without error."""

    def __init__(self, path: str | os.PathLike, fps: float = 8, format: str | None = None, scale: int = 1):
        path = Path(path)
        self.format = format_from_path(path) if format is None else format.lower()
        if self.format not in VIDEO_FORMATS:
            raise KinemaError(f"{path}: unknown video format {format!r}; expected one of {VIDEO_FORMATS}")
        if self.format == "gif":
            raise KinemaError(f"{path}: a gif's palette needs every frame at once: write mp4 or webm frame by frame")
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise KinemaError(f"{path}: fps must be a positive number, got {fps!r}")
        self.path, self.rate, self.scale = path, Fraction(float(fps)).limit_denominator(1001), scale
        self._files = contextlib.ExitStack()
        self._encoder: _YuvEncoder | None = None

    def write(self, frame: Tensor) -> None:
        """Append one frame `[C, H, W]` in [-1, 1]; every frame must have the first one's size."""
        rgb = to_uint8(upscale_nearest(as_rgb(frame[:, None]), self.scale))[0]
        if self._encoder is None:
            temp = self._files.enter_context(atomic_path(self.path))
            self._encoder = self._files.enter_context(_YuvEncoder(temp, self.rate, self.format, rgb.shape[:2]))
        elif rgb.shape[:2] != self._encoder.size:
            raise KinemaError(f"{self.path}: frame {self._encoder.count} is {rgb.shape[1]}x{rgb.shape[0]}, the "
                              f"first was {self._encoder.size[1]}x{self._encoder.size[0]}")
        self._encoder.encode(rgb)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self._encoder is None and kind is None:
            raise KinemaError(f"{self.path}: no frame was written")
        self._files.__exit__(kind, error, trace)


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
    container: InputContainer, stream: VideoStream, start: int, num_frames: int | None, size: tuple[int, int]
) -> tuple[list[np.ndarray], int]:
    """Decode RGB frames `size` (H, W) from index `start`, at most `num_frames`; also how many frames were seen."""
    frames, seen = [], 0
    for frame in container.decode(stream):
        if seen >= start:
            frames.append(_rgb(frame, size))
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


# --------------------------------------------------------------------------- probing and seeking readers


@dataclass(frozen=True)
class VideoInfo:
    """What a container header says about a file's first video stream (times in seconds)."""

    path: str
    fps: float
    num_frames: int  # an estimate: the header's count (AVI counts dropped frames) or duration x fps
    duration: float
    width: int  # display width: coded width x sample aspect ratio (what the readers return)
    height: int
    codec: str
    container: str
    sample_aspect: float = 1.0  # pixel width / pixel height of the coded frames


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header (no decoding): fps, frame count, duration, display size, codec; KinemaError if unusable.

    Streams without a stored length (MPEG program / transport streams, flv, ogg, ...: FFmpeg guesses it from
    the bit rate) are measured by reading their packets' timestamps, still without decoding.
    """
    path = _checked_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise KinemaError(f"no video stream in {path}")
            stream = container.streams.video[0]
            is_gif = stream.codec_context.name == "gif"
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            if container.format.name not in _STORED_LENGTH:
                duration, frames = _demuxed_length(container, stream)
            elif stream.duration is not None:
                duration, frames = float(stream.duration * stream.time_base), stream.frames
            else:
                duration, frames = (container.duration or 0) / av.time_base, stream.frames
            tagged = _tagged_size(container.metadata)
            height, width = tagged or _display_size(stream)
            info = dict(codec=stream.codec_context.name, container=container.format.name, frames=frames,
                        sample_aspect=float(_sample_aspect(stream)))
        fps = _gif_fps(path) if is_gif else rate
    except av.FFmpegError as err:
        raise KinemaError(f"cannot open video file {path}: {err.strerror}") from err
    if fps <= 0 or duration <= 0 or width <= 0 or height <= 0:
        raise KinemaError(f"{path}: the header gives no usable frame rate, duration or frame size")
    num_frames = info["frames"] or max(1, round(duration * fps))
    return VideoInfo(str(path), fps, num_frames, duration, width, height, info["codec"], info["container"],
                     info["sample_aspect"])


def _demuxed_length(container: InputContainer, stream: VideoStream) -> tuple[float, int]:
    """(seconds from the first packet to the end of the last, packet count) of a stream, read without decoding."""
    period = 1.0 / float(stream.average_rate or stream.guessed_rate or 1)  # for packets that carry no duration
    first, end, count = math.inf, -math.inf, 0
    for packet in container.demux(stream):
        stamp = packet.pts if packet.pts is not None else packet.dts
        if not packet.size or stamp is None:
            continue
        count += 1
        first = min(first, float(stamp * stream.time_base))
        end = max(end, float((stamp + packet.duration) * stream.time_base) if packet.duration else
                  float(stamp * stream.time_base) + period)
    return (end - first, count) if count else (0.0, 0)


def read_frames_at(path: str | os.PathLike, times: Sequence[float]) -> tuple[Tensor, Tensor]:
    """The frames on screen at non-decreasing `times` (s): (clip `[C, T, H, W]` in [-1, 1], their timestamps `[T]`)."""
    path = _checked_file(path)
    times = [float(t) for t in times]
    if not times or times[0] < 0 or any(b < a for a, b in zip(times, times[1:])):
        raise KinemaError(f"{path}: need a non-empty, non-decreasing list of times >= 0, got {times[:4]}")
    picked: list[tuple[float, av.VideoFrame]] = []
    previous = None
    with _open_stream(path) as (container, stream, fps):
        slack = 0.25 / fps  # timestamps are rounded (webm counts milliseconds): a quarter frame absorbs that
        for stamp, frame in _frames_from(container, stream, fps, times[0] - 1.0 / fps):
            while previous is not None and len(picked) < len(times) and stamp > times[len(picked)] + slack:
                picked.append(previous)
            if len(picked) == len(times):
                break
            previous = (stamp, frame)
        else:  # the last frame stays on screen for one frame duration
            while previous is not None and len(picked) < len(times) and times[len(picked)] < previous[0] + 1.0 / fps:
                picked.append(previous)
        size = _tagged_size(container.metadata), _display_size(stream)
    if len(picked) < len(times):
        raise KinemaError(f"{path}: too short: no frame at {times[len(picked)]:.3f} s")
    return _frames_to_clip(picked, *size)


def read_clip(
    path: str | os.PathLike, start_time: float, num_frames: int, fps: float | None = None, stride: int = 1
) -> tuple[Tensor, Tensor]:
    """`num_frames` frames from `start_time` (s) at `fps` (by timestamp) or every `stride`-th frame: (clip, times)."""
    if num_frames < 1 or stride < 1 or (fps is not None and fps <= 0):
        raise KinemaError(f"{path}: need num_frames >= 1, stride >= 1 and fps > 0, got {num_frames}, {stride}, {fps}")
    if fps is not None:
        return read_frames_at(path, [start_time + k / fps for k in range(num_frames)])
    path = _checked_file(path)
    with _open_stream(path) as (container, stream, rate):
        frames = _on_screen_from(_frames_from(container, stream, rate, start_time - 1.0 / rate), start_time,
                                 0.25 / rate)
        picked = list(itertools.islice(frames, 0, (num_frames - 1) * stride + 1, stride))
        size = _tagged_size(container.metadata), _display_size(stream)
    if len(picked) < num_frames:
        raise KinemaError(f"{path}: too short for {num_frames} frames with stride {stride} from {start_time:.3f} s")
    return _frames_to_clip(picked, *size)


def read_window(
    path: str | os.PathLike,
    start_time: float,
    end_time: float,
    select: Callable[[Tensor], Tensor] | None = None,
    preview_size: int = 32,
    max_frames: int = 10_000,
) -> tuple[Tensor, Tensor]:
    """Frames with start_time <= timestamp < end_time (s): (clip `[C, T, H, W]` in [-1, 1], timestamps `[T]`).

    With `select`, only the frames it picks are converted to RGB: it gets grey previews `[1, T, h, w]` in
    [-1, 1] (longer side at most `preview_size`) and returns frame indices.
    """
    path = _checked_file(path)
    if not 0 <= start_time < end_time:
        raise KinemaError(f"{path}: need 0 <= start_time < end_time, got {start_time}, {end_time}")
    picked, previews = [], []
    with _open_stream(path) as (container, stream, fps):
        slack = 0.25 / fps
        for stamp, frame in _frames_from(container, stream, fps, start_time - 1.0 / fps):
            if stamp >= end_time - slack:
                break
            if stamp >= start_time - slack:
                picked.append((stamp, frame))
                if len(picked) > max_frames:
                    raise KinemaError(f"{path}: more than {max_frames} frames in [{start_time}, {end_time}) s")
                if select is not None:
                    previews.append(_grey_preview(frame, preview_size))
        size = _tagged_size(container.metadata), _display_size(stream)
    if not picked:
        raise KinemaError(f"{path}: too short: no frame in [{start_time:.3f}, {end_time:.3f}) s")
    if select is not None:
        chosen = select(from_uint8(np.stack(previews)[..., None]))
        picked = [picked[int(i)] for i in chosen]
    return _frames_to_clip(picked, *size)


def decode_frames(path: str | os.PathLike) -> Iterator[tuple[float, av.VideoFrame]]:
    """Every frame of a video from the first, in display order: (time in s from the first frame, frame)."""
    path = _checked_file(path)
    with _open_stream(path) as (container, stream, fps):
        yield from _frames_from(container, stream, fps, 0.0)


def _grey_preview(frame: av.VideoFrame, size: int) -> np.ndarray:
    """A small grey copy of a frame (longer side <= `size`): every k-th luma sample of YUV frames, else swscale."""
    step = max(1, math.ceil(max(frame.width, frame.height) / size))
    if frame.format.name.startswith(("yuv", "nv12", "gray")) and frame.format.name != "gray16le":
        plane = frame.planes[0]  # luma, rows padded to line_size bytes
        luma = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        luma = luma[: frame.height : step, : frame.width : step]
        if frame.format.name.startswith(("yuvj", "gray")) or frame.color_range == ColorRange.JPEG:
            return np.ascontiguousarray(luma)
        return np.clip((luma.astype(np.float32) - 16) * (255 / 219) + 0.5, 0, 255).astype(np.uint8)  # limited range
    small = frame.reformat(width=max(1, frame.width // step), height=max(1, frame.height // step), format="gray")
    return small.to_ndarray()


def _checked_file(path: str | os.PathLike) -> Path:
    """`path` as a Path if it is a non-empty regular file; KinemaError naming it otherwise."""
    path = Path(path)
    if not path.exists():
        raise KinemaError(f"video file not found: {path}")
    if not path.is_file():
        raise KinemaError(f"not a video file: {path}")
    if path.stat().st_size == 0:
        raise KinemaError(f"video file is empty: {path}")
    return path


@contextlib.contextmanager
def _open_stream(path: Path) -> Iterator[tuple[InputContainer, VideoStream, float]]:
    """Open `path` for decoding its first video stream: (container, stream, nominal fps); decoder errors name it."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise KinemaError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            if stream.codec_context.name == "gif":
                fps = _gif_fps(path)
            if fps <= 0:
                raise KinemaError(f"{path}: the container does not say its frame rate")
            yield container, stream, fps
    except av.FFmpegError as err:
        raise KinemaError(f"cannot decode video file {path}: {err.strerror}") from err


def _frames_from(
    container: InputContainer, stream: VideoStream, fps: float, time: float
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Every frame from the keyframe at or before `time` (s from the first frame) on: (time, frame) in display order.

    Seeks only in `SEEKABLE_CONTAINERS` (times count from the stream's start); elsewhere decodes from the
    first frame, whose time is 0.
    """
    if container.format.name in SEEKABLE_CONTAINERS:
        origin = stream.start_time or 0
        if time > 0:
            container.seek(origin + int(time / stream.time_base), stream=stream, backward=True, any_frame=False)
        yield from _display_times(container.decode(stream), stream.time_base, fps, origin)
        return
    first = None
    for stamp, frame in _display_times(container.decode(stream), stream.time_base, fps):
        first = stamp if first is None else first
        yield stamp - first, frame


def _display_times(
    frames: Iterable[av.VideoFrame], time_base: Fraction, fps: float, origin: int = 0
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Pair decoded frames (display order) with strictly increasing times (s): the smallest pending timestamp.

    A frame's timestamp is its pts, else its dts; the `_REORDER_DEPTH` latest are pooled and handed out
    in order, so timestamps that a container gives shuffled (packed B-frames) or late still fit their
    frames; a frame left without one is shown one frame period (1 / `fps`) after the previous frame.
    """
    pending: deque[av.VideoFrame] = deque()
    pool: list[float] = []
    last = None

    def take() -> tuple[float, av.VideoFrame]:
        nonlocal last
        while pool and last is not None and pool[0] <= last + 1e-9:  # repeated or stale timestamps
            heapq.heappop(pool)
        stamp = heapq.heappop(pool) if pool else (0.0 if last is None else last + 1.0 / fps)
        last = stamp
        return stamp, pending.popleft()

    for frame in frames:
        pending.append(frame)
        tick = frame.pts if frame.pts is not None else frame.dts
        if tick is not None:
            heapq.heappush(pool, float((tick - origin) * time_base))
        if len(pending) > _REORDER_DEPTH:
            yield take()
    while pending:
        yield take()


def _on_screen_from(
    frames: Iterator[tuple[float, av.VideoFrame]], time: float, slack: float
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Drop the frames before the one on screen at `time`, then pass the rest through."""
    previous = None
    for item in frames:
        if item[0] > time + slack:
            if previous is not None:
                yield previous
            yield item
            yield from frames
            return
        previous = item
    if previous is not None:
        yield previous


def _sample_aspect(stream: VideoStream) -> Fraction:
    """Pixel width / height: the container's value, else the codec's, else 1."""
    for value in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if value is not None and value > 0:
            return Fraction(value)
    return Fraction(1)


def _display_size(stream: VideoStream) -> tuple[int, int]:
    """(height, width) of the frames as shown: the coded width scaled by the sample aspect ratio."""
    height, width = stream.codec_context.height, stream.codec_context.width
    return height, max(1, round(width * _sample_aspect(stream)))


def _rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB `[H, W, 3]` of a frame, resampled to `size` (H, W) if its pixels are not square."""
    if (frame.height, frame.width) == size:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", height=size[0], width=size[1], interpolation=Interpolation.AREA)


def _frames_to_clip(
    picked: list[tuple[float, av.VideoFrame]], tagged: tuple[int, int] | None, size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """RGB clip `[C, T, H, W]` in [-1, 1] (display `size`, cropped to a tagged true size) and timestamps `[T]`."""
    cache: dict[int, np.ndarray] = {}  # a frame picked twice (held on screen) is converted once
    frames = [cache.setdefault(id(frame), _rgb(frame, size)) for _, frame in picked]
    clip = np.stack(frames)
    if tagged is not None and tagged[0] <= clip.shape[1] and tagged[1] <= clip.shape[2]:
        clip = clip[:, : tagged[0], : tagged[1]]
    return from_uint8(clip), torch.tensor([stamp for stamp, _ in picked], dtype=torch.float64)
