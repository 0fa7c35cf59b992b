"""The readers on the codecs and containers of real footage: every frame, in order, at its time, at display aspect."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from kinema.video.io import probe_video, read_clip, read_frames_at, read_video, read_window

STEP = 8  # frame i is a flat grey of level 8 i + 4, so its index survives lossy coding


def levels(count: int, height: int, width: int) -> np.ndarray:
    """Flat grey RGB frames `[T, H, W, 3]` whose level encodes their index."""
    values = (np.arange(count) * STEP + 4).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (count, height, width, 3)).copy()


def indices(clip: torch.Tensor) -> list[int]:
    """Frame indices of a clip of `levels` frames."""
    return torch.round(((clip.mean(dim=(0, 2, 3)) + 1) * 127.5 - 4) / STEP).long().tolist()


def encode(path, muxer: str, codec: str, count: int = 24, size=(24, 32), fps: int = 24, pts=None,
           b_frames: int = 0, sar: Fraction | None = None, time_base: Fraction | None = None) -> None:
    """Encode `levels` frames with `codec` into `muxer`; `pts` (in `time_base`, default 1 / fps) makes it VFR."""
    with av.open(str(path), "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        context = stream.codec_context
        if codec in ("mpeg4", "mpeg1video", "mjpeg"):
            context.qmin = context.qmax = 2  # fine quantiser: grey levels 8 apart stay apart
        if b_frames:
            context.max_b_frames = b_frames
        if sar is not None:
            context.sample_aspect_ratio = sar
        if time_base is not None:
            context.time_base = time_base
        for index, rgb in enumerate(levels(count, *size)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index if pts is None else pts[index]
            frame.time_base = time_base or Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


N_VOP = bytes.fromhex("000001b6504f")  # P-VOP header, time increment 0 (5 bits at 24 fps), vop_coded = 0


def encode_packed_divx(path, count: int = 24, fps: int = 24, size=(24, 32)) -> None:
    """An XVID/DivX-style AVI with packed B-frames: chunks I0 | P2 B1 | N-VOP | P4 B3 | N-VOP ... (one per frame)."""
    context = av.CodecContext.create("mpeg4", "w")
    context.height, context.width = size
    context.pix_fmt, context.time_base, context.framerate = "yuv420p", Fraction(1, fps), Fraction(fps)
    context.max_b_frames, context.qmin, context.qmax = 1, 2, 2
    packets = []
    for index, rgb in enumerate(levels(count, *size)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = index
        packets += context.encode(frame)
    packets += context.encode(None)
    data, order, keys = [bytes(p) for p in packets], [p.pts for p in packets], [p.is_keyframe for p in packets]
    vop = data[0].find(b"\x00\x00\x01\xb6")  # DivX user data ending in 'p' marks the stream as packed
    data[0] = data[0][:vop] + b"\x00\x00\x01\xb2DivX503b1393p" + data[0][vop:]
    chunks, k = [], 0
    while k < len(data):
        if k + 1 < len(data) and order[k + 1] < order[k]:  # a P-frame followed by the B-frame shown before it
            chunks += [(data[k] + data[k + 1], keys[k]), (N_VOP, False)]
            k += 2
        else:
            chunks.append((data[k], keys[k]))
            k += 1
    assert len(chunks) == count
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for number, (payload, key) in enumerate(chunks):
            packet = av.Packet(payload)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, number, number, Fraction(1, fps)
            packet.is_keyframe = key
            container.mux(packet)


CASES = {  # name -> (file name, muxer, codec, encode options)
    "mpeg4 avi, 2 B-frames": ("b.avi", "avi", "mpeg4", {"b_frames": 2}),
    "mpeg1 mpg, 2 B-frames": ("m.mpg", "mpeg", "mpeg1video", {"b_frames": 2}),
    "h264 mp4, B-frames": ("h.mp4", "mp4", "libx264", {}),
    "vp9 webm": ("v.webm", "webm", "libvpx-vp9", {}),
    "mjpeg avi": ("j.avi", "avi", "mjpeg", {}),
    "vp9 webm, odd size": ("o.webm", "webm", "libvpx-vp9", {"size": (17, 33)}),
    "mpeg4 avi, odd size": ("o.avi", "avi", "mpeg4", {"size": (17, 33), "b_frames": 2}),
    "h264 ts": ("t.ts", "mpegts", "libx264", {}),
    "flv": ("f.flv", "flv", "flv", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_frame_comes_back_in_order_at_its_time(tmp_path, case):
    name, muxer, codec, options = CASES[case]
    path = tmp_path / name
    encode(path, muxer, codec, **options)
    expected = list(range(24))
    video, fps = read_video(path)
    assert indices(video) == expected and fps == pytest.approx(24)
    window, times = read_window(path, 0.0, 10.0)
    assert indices(window) == expected
    assert times.tolist() == pytest.approx([i / 24 for i in expected], abs=2e-3)
    clip, times = read_clip(path, start_time=0.5, num_frames=12)  # 12 consecutive frames from frame 12
    assert indices(clip) == list(range(12, 24))
    assert times.tolist() == pytest.approx([i / 24 for i in range(12, 24)], abs=2e-3)
    height, width = options.get("size", (24, 32))
    assert video.shape[-2:] == (height, width) and clip.shape[-2:] == (height, width)


def test_packed_divx_b_frames_lose_no_frame(tmp_path):
    path = tmp_path / "xvid.avi"
    encode_packed_divx(path, count=24)
    clip, times = read_clip(path, start_time=0.0, num_frames=12)
    assert indices(clip) == list(range(12))  # not 0, 1, 3, 5, ... as when shuffled timestamps drop frames
    assert times.tolist() == pytest.approx([i / 24 for i in range(12)])
    later, times = read_frames_at(path, [0.5, 0.75])
    assert indices(later) == [12, 18] and times.tolist() == pytest.approx([0.5, 0.75])
    assert indices(read_video(path)[0]) == list(range(24))


@pytest.mark.parametrize("name, muxer, codec", [("gap.avi", "avi", "mpeg4"), ("gap.mkv", "matroska", "libx264"),
                                                ("gap.mp4", "mp4", "libx264")])
def test_variable_frame_rate_and_dropped_frames_keep_their_times(tmp_path, name, muxer, codec):
    ticks = [0, 1, 2, 3, 10, 11, 12, 20, 21, 40, 41, 42, 43, 44, 60, 61, 62, 63, 64, 65]  # gaps = dropped frames
    path = tmp_path / name
    encode(path, muxer, codec, count=len(ticks), pts=ticks, fps=24)
    window, times = read_window(path, 0.0, 10.0)
    assert indices(window) == list(range(len(ticks)))
    assert times.tolist() == pytest.approx([t / 24 for t in ticks], abs=2e-3)
    held, _ = read_frames_at(path, [0.2, 0.5, 1.0])  # frames on screen through the gaps
    assert indices(held) == [3, 6, 8]


@pytest.mark.parametrize("name, muxer, codec", [("sar.avi", "avi", "mpeg4"), ("sar.mp4", "mp4", "libx264"),
                                                ("sar.mkv", "matroska", "libx264")])
def test_non_square_pixels_are_shown_at_display_aspect(tmp_path, name, muxer, codec):
    path = tmp_path / name
    encode(path, muxer, codec, count=4, size=(24, 32), sar=Fraction(2, 1))
    info = probe_video(path)
    assert (info.height, info.width, info.sample_aspect) == (24, 64, 2.0)
    assert read_video(path)[0].shape == (3, 4, 24, 64)
    assert read_clip(path, 0.0, 2)[0].shape == (3, 2, 24, 64)
    assert read_window(path, 0.0, 1.0)[0].shape == (3, 4, 24, 64)
