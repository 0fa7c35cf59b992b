"""Video files, uint8 conversion and contact sheets (kinema.video)."""

import numpy as np
import pytest
import torch
from PIL import Image

import kinema.video.io as video_io
from kinema.errors import KinemaError
from kinema.video import (
    VIDEO_FORMATS,
    as_rgb,
    contact_sheet,
    format_from_path,
    from_uint8,
    read_video,
    to_uint8,
    upscale_nearest,
    write_contact_sheet,
    write_video,
)

BACKGROUND = (200, 30, 60)  # every channel different, so a channel swap shows
SQUARE = (20, 220, 90)
# Largest per-pixel error (uint8 levels) allowed after a round trip: yuv420p codecs at high
# quality on flat colours whose edges lie on the 2x2 chroma grid; gif keeps <= 256 colours exactly.
TOLERANCE = {"mp4": 16, "webm": 16, "gif": 2}


def moving_square(frames: int = 8, height: int = 32, width: int = 32) -> torch.Tensor:
    """A flat background with a square moving 2 px right per frame, as `[3, T, H, W]` in [-1, 1]."""
    pixels = np.empty((frames, height, width, 3), dtype=np.uint8)
    pixels[...] = BACKGROUND
    for t in range(frames):
        pixels[t, 4:12, 2 + 2 * t : 10 + 2 * t] = SQUARE
    return from_uint8(pixels)


def max_level_error(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest absolute difference between two clips, in uint8 levels."""
    return int(np.abs(to_uint8(a).astype(np.int16) - to_uint8(b).astype(np.int16)).max())


@pytest.mark.parametrize("fmt", VIDEO_FORMATS)
def test_round_trip_keeps_frames_size_fps_and_colours(tmp_path, fmt):
    video = moving_square()
    fps = 10.0
    path = write_video(tmp_path / f"clip.{fmt}", video, fps=fps)
    back, back_fps = read_video(path)
    assert back.shape == video.shape
    assert back.dtype == torch.float32
    assert back_fps == pytest.approx(fps, abs=1e-6)
    assert max_level_error(back, video) <= TOLERANCE[fmt]
    # the tolerance is tight enough to see a reversed clip or swapped channels
    assert max_level_error(back, video.flip(1)) > TOLERANCE[fmt]
    assert max_level_error(back, video.flip(0)) > TOLERANCE[fmt]


@pytest.mark.parametrize("fmt", VIDEO_FORMATS)
@pytest.mark.parametrize("scale", [1, 3])
def test_odd_sizes_and_scale_read_back_at_exact_size(tmp_path, fmt, scale):
    video = moving_square(frames=5, height=15, width=17)
    back, _ = read_video(write_video(tmp_path / f"odd.{fmt}", video, scale=scale))
    assert back.shape == (3, 5, 15 * scale, 17 * scale)
    assert max_level_error(back, upscale_nearest(video, scale)) <= TOLERANCE[fmt]


def test_format_argument_overrides_suffix(tmp_path):
    path = write_video(tmp_path / "clip.bin", moving_square(frames=3), format="gif")
    assert path.read_bytes().startswith(b"GIF89a")


def test_gif_loops_forever_and_keeps_fractional_rates(tmp_path):
    path = write_video(tmp_path / "clip.gif", moving_square(), fps=8)
    assert b"NETSCAPE2.0\x03\x01\x00\x00" in path.read_bytes()  # loop count 0 = forever
    _, fps = read_video(path)
    assert fps == pytest.approx(8.0, abs=1e-6)  # 12.5 cs frames alternate 12 / 13 cs


def test_gray_video_is_written_as_rgb(tmp_path):
    gray = moving_square()[:1]
    back, _ = read_video(write_video(tmp_path / "gray.gif", gray))
    assert back.shape == (3, *gray.shape[1:])
    assert max_level_error(back, gray.expand(3, -1, -1, -1)) <= TOLERANCE["gif"]


def test_read_window_returns_the_requested_frames(tmp_path):
    video = moving_square()
    path = write_video(tmp_path / "clip.gif", video)
    window, _ = read_video(path, num_frames=3, start=2)
    assert window.shape[1] == 3
    assert max_level_error(window, video[:, 2:5]) <= TOLERANCE["gif"]
    with pytest.raises(KinemaError, match="clip.gif"):
        read_video(path, num_frames=3, start=6)
    with pytest.raises(KinemaError, match="clip.gif"):
        read_video(path, start=8)


def test_write_creates_parent_dirs_and_leaves_no_temp_files(tmp_path):
    path = write_video(tmp_path / "a" / "b" / "clip.mp4", moving_square(frames=2))
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", moving_square(frames=2))
    before = path.read_bytes()
    real_write = video_io._write_yuv

    def write_then_crash(*args):
        real_write(*args)
        raise RuntimeError("crash after encoding")

    monkeypatch.setattr(video_io, "_write_yuv", write_then_crash)
    with pytest.raises(RuntimeError):
        write_video(path, moving_square(frames=4))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


@pytest.mark.parametrize("contents", [None, b"", b"this is not a video" * 20])
def test_unreadable_files_raise_one_line_error_naming_the_path(tmp_path, contents):
    path = tmp_path / "broken.mp4"
    if contents is not None:
        path.write_bytes(contents)
    with pytest.raises(KinemaError) as caught:
        read_video(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_write_arguments_raise(tmp_path):
    video = moving_square(frames=2)
    with pytest.raises(KinemaError, match=r"\.avi"):
        write_video(tmp_path / "clip.avi", video)
    with pytest.raises(KinemaError, match="fps"):
        write_video(tmp_path / "clip.mp4", video, fps=0)
    with pytest.raises(KinemaError, match="50 fps"):
        write_video(tmp_path / "clip.gif", video, fps=60)
    with pytest.raises(KinemaError, match="scale"):
        write_video(tmp_path / "clip.mp4", video, scale=0)
    with pytest.raises(KinemaError, match=r"\(1, 3, 2, 32, 32\)"):
        write_video(tmp_path / "clip.mp4", video[None])
    assert not list(tmp_path.iterdir())


def test_format_from_path():
    assert format_from_path("a/b.MP4") == "mp4"
    assert format_from_path("b.webm") == "webm"
    with pytest.raises(KinemaError, match=r"\.mov"):
        format_from_path("b.mov")


def test_uint8_round_trip_is_exact_and_maps_axes():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(4, 5, 6, 3), dtype=np.uint8)
    video = from_uint8(frames)
    assert video.shape == (3, 4, 5, 6)
    assert video.min() >= -1 and video.max() <= 1
    assert video[2, 1, 3, 4] == pytest.approx(frames[1, 3, 4, 2] / 127.5 - 1)
    np.testing.assert_array_equal(to_uint8(video), frames)


def test_to_uint8_clamps_and_rejects_bad_input():
    video = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 5)
    assert to_uint8(video).ravel().tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(KinemaError, match="NaN"):
        to_uint8(torch.full((3, 1, 2, 2), float("nan")))
    with pytest.raises(KinemaError, match=r"\(3, 2, 2\)"):
        to_uint8(torch.zeros(3, 2, 2))


def test_upscale_nearest_and_as_rgb():
    video = torch.arange(4.0).reshape(1, 1, 2, 2)
    big = upscale_nearest(video, 2)
    assert big.shape == (1, 1, 4, 4)
    assert big[0, 0, 3, 0] == video[0, 0, 1, 0] and big[0, 0, 1, 3] == video[0, 0, 0, 1]
    assert as_rgb(video).shape == (3, 1, 2, 2)
    with pytest.raises(KinemaError, match="C = 1 or 3"):
        as_rgb(torch.zeros(2, 1, 2, 2))


def test_contact_sheet_puts_frame_j_of_video_i_at_row_i_column_j():
    batch, frames, height, width, scale, gap = 2, 3, 4, 5, 2, 3
    # frame j of video i is a flat colour that encodes (i, j)
    levels = torch.tensor([[[i / 2, j / 3, -0.5] for j in range(frames)] for i in range(batch)])
    videos = levels.permute(0, 2, 1)[..., None, None].expand(batch, 3, frames, height, width)
    sheet = contact_sheet(videos, scale=scale, gap=gap)
    cell_h, cell_w = height * scale, width * scale
    assert sheet.shape == (batch * cell_h + (batch - 1) * gap, frames * cell_w + (frames - 1) * gap, 3)
    assert sheet.dtype == np.uint8
    for i in range(batch):
        for j in range(frames):
            expected = to_uint8(videos[i, :, j : j + 1, :1, :1]).ravel()
            top, left = i * (cell_h + gap), j * (cell_w + gap)
            np.testing.assert_array_equal(sheet[top, left], expected)
            np.testing.assert_array_equal(sheet[top + cell_h - 1, left + cell_w - 1], expected)
    assert (sheet[cell_h : cell_h + gap] == 255).all()  # separator between the rows
    assert (sheet[:, cell_w : cell_w + gap] == 255).all()  # separator between the columns


def test_contact_sheet_of_one_clip_without_gap_is_its_frames_side_by_side():
    video = moving_square(frames=3, height=6, width=4)
    sheet = contact_sheet(video, gap=0)
    frames = to_uint8(video)
    np.testing.assert_array_equal(sheet, np.concatenate(list(frames), axis=1))


def test_write_contact_sheet_png(tmp_path):
    videos = moving_square(frames=2, height=8, width=8)[None].repeat(2, 1, 1, 1, 1)
    path = write_contact_sheet(tmp_path / "sheets" / "grid.png", videos, scale=2)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), contact_sheet(videos, scale=2))
    with pytest.raises(KinemaError, match="grid.jpg"):
        write_contact_sheet(tmp_path / "grid.jpg", videos)
