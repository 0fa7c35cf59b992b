"""Video files and frames: the only package that knows about uint8, `[T, H, W, C]`, codecs and containers."""

from kinema.video.convert import as_rgb, from_uint8, to_uint8, upscale_nearest
from kinema.video.io import (
    READABLE_SUFFIXES,
    VIDEO_FORMATS,
    VideoWriter,
    decode_frames,
    format_from_path,
    probe_video,
    read_video,
    write_video,
)
from kinema.video.sheet import contact_sheet, write_contact_sheet

__all__ = [
    "READABLE_SUFFIXES",
    "VIDEO_FORMATS",
    "VideoWriter",
    "as_rgb",
    "contact_sheet",
    "decode_frames",
    "format_from_path",
    "from_uint8",
    "probe_video",
    "read_video",
    "to_uint8",
    "upscale_nearest",
    "write_contact_sheet",
    "write_video",
]
