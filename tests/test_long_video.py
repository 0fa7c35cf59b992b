"""Long videos and streaming (chapter 11.1.2; FIFO-Diffusion, Kim et al. 2024): the FIFO queue emits every frame once
and in order, a window never depends on what comes after it, the overlap given to a window is the previous output
bit-exact, the model never sees more than one window, time-anchored phrases own their ranges in both modes, windows keep
the first window's balls (identity guidance) and one that loses a named ball is sampled again, the writer takes frames
one by one, and the CLI streams PNGs and refuses bad input in one line."""

from dataclasses import replace

import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import DiffusionConfig
from kinema.control.identity_energy import colour_masses, smallest_disc_area
from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig
from kinema.diffusion import build_schedule
from kinema.diffusion.samplers import sample_ddim
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.pipelines import long_video, text_to_video
from kinema.pipelines.long_video import collect_long, generate_long, stream
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.video import VideoWriter, read_video, write_video

SMALL = dict(height=8, width=8, steps=2, guidance=1.0, direction_guidance=0.0, identity_guidance=0.0)


def pipeline(text_dim: int = 0, prediction: str = "v") -> TextToVideoPipeline:
    model = tiny_denoiser("video_unet", text_dim=text_dim, frame_conditioning=True, perturb=0.2).eval()
    config = replace(tiny_run_config(model, "video_unet"), diffusion=DiffusionConfig(prediction=prediction))
    return TextToVideoPipeline(model, config, text_encoder=FlagText(text_dim) if text_dim else None)


class FlagText:
    """A text encoder whose tokens say only whether the prompt asks for red (+1) or not (-1)."""

    def __init__(self, dim: int):
        self.dim = dim

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        flags = torch.tensor([1.0 if "red" in text else -1.0 for text in texts])
        return flags[:, None, None].expand(-1, 1, self.dim).clone(), torch.ones(len(texts), 1, dtype=torch.bool)


def positions_denoiser(pipe: TextToVideoPipeline, calls: list):
    """A pipe.denoiser whose clean estimate of absolute frame i is the flat image i / 100 (records start, stop)."""
    def denoiser(plan, start, stop, **options):
        calls.append((start, stop))
        index = torch.arange(start, stop, dtype=torch.float32)[None, None, :, None, None] / 100
        return lambda x, t: index.expand_as(x).to(x)
    return denoiser


@pytest.mark.parametrize("mode", ["fifo", "window"])
def test_every_frame_comes_out_once_and_in_order(mode, monkeypatch):
    pipe, calls = pipeline(), []
    monkeypatch.setattr(pipe, "denoiser", positions_denoiser(pipe, calls))
    frames = list(generate_long(pipe, "", 11, mode=mode, window=2, overlap=1, partitions=3, **SMALL))
    assert len(frames) == 11
    for index, frame in enumerate(frames):
        torch.testing.assert_close(frame, torch.full((3, 8, 8), index / 100), rtol=0, atol=1e-6)
    assert {stop - start for start, stop in calls} == {2}  # the network only ever sees one window


def test_a_fifo_step_moves_every_frame_one_level_and_emits_the_front():
    seen, first_step = [], []
    grid = torch.tensor([[0.25, 0.5, 0.75], [0.0, 0.25, 0.5]])  # a FIFO shift: a per-frame grid that stops above 0
    x = torch.randn(1, 3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    x0 = torch.rand(1, 3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    out = sample_ddim(lambda x, t: seen.append(t) or x0, x, grid, build_schedule("cosine"))
    sample_ddim(lambda x, t: x0, x, torch.cat([grid, torch.zeros(1, 3)]), build_schedule("cosine"),
                callback=lambda i, steps, x, x0_hat: first_step.append(x) if i == 0 else None)
    torch.testing.assert_close(out, first_step[0], rtol=0, atol=0)  # the first step of the run to 0
    torch.testing.assert_close(out[:, :, 0], x0[:, :, 0], rtol=0, atol=0)  # the front frame is clean
    assert not torch.allclose(out[:, :, 1:], x0[:, :, 1:]) and torch.equal(seen[0], grid[:1])


def test_a_window_never_depends_on_later_windows(monkeypatch):
    pipe = pipeline()
    widths = []
    forward = pipe.model.forward
    pipe.model.forward = lambda x, t, cond: widths.append(x.shape[2]) or forward(x, t, cond)
    options = dict(mode="window", window=4, overlap=2, seed=3, **SMALL)
    frames = generate_long(pipe, "", 10, **options)
    first = [next(frames) for _ in range(4)]  # window 0 is final before window 1 is sampled
    assert len(widths) == SMALL["steps"]
    before = torch.stack(first + list(frames), dim=1)
    make = long_video._noise_generator
    monkeypatch.setattr(long_video, "_noise_generator",
                        lambda seed, index, device, attempt=0: make(seed + 99 * (index >= 2), index, device, attempt))
    after = collect_long(pipe, "", 10, **options)[0]
    assert torch.equal(before[:, :6], after[:, :6])  # windows 0 and 1 (frames 0..5) are untouched
    assert (before[:, 6:] - after[:, 6:]).abs().amax(dim=(0, 2, 3)).min() > 1e-3
    assert set(widths) == {4}  # never more than one window in the network


def test_the_overlap_given_to_a_window_is_the_previous_output_bit_exact(monkeypatch):
    pipe = pipeline()
    given = []
    denoiser = pipe.denoiser
    monkeypatch.setattr(pipe, "denoiser",
                        lambda plan, start, stop, known=None, **kw: given.append((start, known)) or
                        denoiser(plan, start, stop, known=known, **kw))
    video = collect_long(pipe, "", 11, mode="window", window=4, overlap=2, **SMALL)[0]
    assert [start for start, _ in given] == [0, 2, 4, 6, 7]  # the last window ends at the video's end
    assert given[0][1] is None
    for (start, known), done in zip(given[1:], [4, 6, 8, 10]):
        assert known.whole_frames[0].tolist() == [start + i < done for i in range(4)]
        assert torch.equal(known.video[0, :, :done - start], video[:, start:done])


def test_fifo_runs_the_network_on_one_window_at_a_time():
    pipe = pipeline()
    sizes = []
    forward = pipe.model.forward
    pipe.model.forward = lambda x, t, cond: sizes.append((tuple(x.shape), tuple(t.shape))) or forward(x, t, cond)
    video = collect_long(pipe, "", 5, mode="fifo", window=2, partitions=2, **SMALL)
    assert video.shape == (1, 3, 5, 8, 8) and video.abs().max() <= 1
    assert {shape for shape, _ in sizes} == {(1, 3, 2, 8, 8)}
    assert {times for _, times in sizes} == {(1,), (1, 2)}  # per-frame levels, or one shared by the partition
    assert len(sizes) == 2 * (3 + 5)  # 2 partitions x (3 warm-up steps + one step per frame)


@pytest.mark.parametrize("mode,prompt", [
    ("window", "first a red ball falls, then a blue ball bounces"),
    ("fifo", [(0, "a red ball falls"), (8, "a blue ball bounces")]),
])
def test_each_phrase_owns_its_range_of_frames(mode, prompt, monkeypatch):
    pipe = pipeline(text_dim=16, prediction="x0")
    monkeypatch.setattr(pipe.model, "forward", lambda x, t, cond: 0.8 * cond.text[:, :1, :1, None, None].expand_as(x))
    video = collect_long(pipe, prompt, 16, mode=mode, window=4, partitions=2, prompt_blend=4, **SMALL)[0]
    brightness = video.mean(dim=(0, 2, 3))
    torch.testing.assert_close(brightness[:6], torch.full((6,), 0.8))   # red owns 0..7, blended over 6..9
    torch.testing.assert_close(brightness[10:], torch.full((6,), -0.8))  # blue owns 8..15
    assert 0.8 > brightness[7] > brightness[8] > -0.8


def red_square_when(show) -> torch.Tensor:
    """A clean estimate of 4 black 8x8 frames holding a red 3x3 square when `show()` is true."""
    def estimate(x, t):
        x0 = -torch.ones_like(x)
        if show():
            x0[:, 0, :, 2:5, 2:5] = 1.0
        return x0
    return estimate


@pytest.mark.parametrize("retries,first_shows,samplings,red", [(2, False, 2, True), (0, False, 1, False),
                                                               (2, True, 1, True)])
def test_a_window_that_loses_the_named_ball_is_sampled_again(retries, first_shows, samplings, red, monkeypatch):
    pipe, starts = pipeline(text_dim=4), []
    start = pipe.start
    monkeypatch.setattr(pipe, "start", lambda *args: starts.append(1) or start(*args))
    monkeypatch.setattr(pipe, "denoiser", lambda *args, **kw: red_square_when(lambda: first_shows or len(starts) > 1))
    video = collect_long(pipe, "a red ball bounces", 4, window=4, retries=retries, **SMALL)[0]
    assert len(starts) == samplings
    assert bool((video[0, :, 2:5, 2:5] > 0.9).all()) == red


@pytest.mark.parametrize("prompt,anchored", [("a red ball bounces", False),
                                             ("first a red ball bounces, then a blue ball bounces", True)])
def test_identity_guidance_keeps_the_first_windows_balls_in_every_later_window(prompt, anchored, monkeypatch):
    pipe, references = pipeline(text_dim=4), []
    energy = text_to_video.identity_energy
    monkeypatch.setattr(text_to_video, "identity_energy", lambda *args: references.append(args[3]) or energy(*args))
    video = collect_long(pipe, prompt, 4, window=2, overlap=1, **{**SMALL, "identity_guidance": 2.0})
    assert len(references) == 3 and references[0].isnan().all()  # windows 0..1, 1..2, 2..3; the first has none
    if anchored:  # each frame keeps the colours of its own phrase (kinema.control.identity_energy)
        assert all(reference.isnan().all() for reference in references)
        return
    masses = colour_masses(video[:, :, :2]).mean(-1)
    area = smallest_disc_area(BouncingBallsConfig(), 8)
    expected = torch.zeros_like(masses)
    red = list(BALL_COLORS).index("red")
    expected[:, red] = masses[:, red].clamp(min=area)  # the named colour, at least the smallest ball; others none
    for reference in references[1:]:
        torch.testing.assert_close(reference, expected)


@pytest.mark.parametrize("options,match", [
    (dict(mode="window", window=4, overlap=4), "overlap must be 0 .. window - 1"),
    (dict(mode="spiral"), "mode must be one of"),
    (dict(mode="fifo", sampler="dpmpp_2m"), "one-step sampler"),
    (dict(partitions=0), "partitions must be at least 1"),
    (dict(keyframes={20: torch.zeros(3, 8, 8)}), "keyframe index 20"),
])
def test_bad_long_video_options_are_named_before_any_work(options, match):
    pipe = pipeline()
    pipe.model.forward = None  # any work would fail otherwise
    with pytest.raises(KinemaError, match=match):
        stream(pipe, "", frames=12, **{**SMALL, **options})
    with pytest.raises(KinemaError, match="prompt anchor at frame 999"):
        generate_long(pipe, [(0, "a"), (999, "b")], 12, **SMALL)


def test_keyframes_come_back_in_both_modes():
    pipe = pipeline()
    key = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    for mode in ("window", "fifo"):
        video = collect_long(pipe, "", 6, mode=mode, window=2, keyframes={4: key}, **SMALL)
        assert torch.equal(video[0, :, 4], key)


def test_the_video_writer_takes_frames_one_by_one(tmp_path):
    rows = torch.linspace(-0.6, 0.6, 6)[None, None, :, None]
    clip = (rows * torch.tensor([1.0, -1.0, 0.5])[:, None, None, None] + torch.linspace(-0.3, 0.3, 5)[None, :, None,
            None]).expand(3, 5, 6, 10).contiguous()  # smooth frames, each its own: the codec keeps them closely
    with VideoWriter(tmp_path / "one.mp4", fps=8, scale=2) as writer:
        for t in range(5):
            writer.write(clip[:, t])
    write_video(tmp_path / "all.mp4", clip, fps=8, scale=2)
    one, fps = read_video(tmp_path / "one.mp4")
    assert fps == 8 and one.shape == (3, 5, 12, 20) and torch.equal(one, read_video(tmp_path / "all.mp4")[0])
    assert (one - clip.repeat_interleave(2, 2).repeat_interleave(2, 3)).abs().max() < 0.06
    with pytest.raises(KinemaError, match="palette needs every frame"):
        VideoWriter(tmp_path / "x.gif")
    with pytest.raises(ValueError), VideoWriter(tmp_path / "broken.mp4") as writer:
        writer.write(clip[:, 0])
        raise ValueError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.mp4", "one.mp4"]  # nothing half-written is left


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pipe = pipeline()
    return save_pretrained(tmp_path_factory.mktemp("model") / "model", pipe.model, pipe.config, {"step": 1})


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


TINY_CLI = ["--height", "8", "--width", "8", "--steps", "2", "--guidance", "1", "--window", "2", "--scale", "1"]


def test_stream_writes_each_frame_and_prints_the_timing(tmp_path, checkpoint):
    code, output = run("stream", "a red ball bounces", "--frames", "5", "-o", tmp_path / "frames", "-c", checkpoint,
                       *TINY_CLI, "--long-mode", "fifo")
    assert code == 0, output
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{i:05d}.png" for i in range(5)]
    assert "wrote 5 frames" in output and "first frame after" in output and "frames/s" in output


def test_generate_beyond_the_models_frames_writes_the_long_video(tmp_path, checkpoint):
    code, output = run("generate", "--prompt-at", "0:a red ball", "--prompt-at", "6:a blue ball", "--num-frames", 10,
                       "-o", tmp_path / "long.mp4", "-c", checkpoint, *TINY_CLI)
    assert code == 0, output
    assert read_video(tmp_path / "long.mp4")[0].shape == (3, 10, 8, 8)


@pytest.mark.parametrize("args,needle", [
    (["generate", "--prompt-at", "0:a", "--prompt-at", "999:b", "--num-frames", 64], "prompt anchor at frame 999"),
    (["generate", "x", "--num-frames", 64, "--overlap", 2], "overlap must be 0 .. window - 1 = 1"),
    (["generate", "x", "--num-frames", 64, "--sheet", "s.png"], "--sheet holds every frame"),
    (["generate", "x", "--prompt-at", "0:a", "--num-frames", 64], "not both"),
    (["stream", "--prompt-at", "a blue ball"], "--prompt-at must be FRAME:TEXT"),
    (["stream", "x", "--long-mode", "fifo", "--sampler", "dpmpp_2m"], "one-step sampler"),
])
def test_bad_long_video_input_is_one_line_and_exit_2(args, needle, checkpoint, tmp_path):
    code, output = run(*args, "-o", tmp_path / "out.mp4", "-c", checkpoint, *TINY_CLI)
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], output
    assert not (tmp_path / "out.mp4").exists()
