"""The `kinema` command line: thin wrappers over the library; bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from kinema.errors import KinemaError

try:  # typer >= 0.22 carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:
    from click import exceptions as click_exceptions
NO_ARGS_IS_HELP = getattr(click_exceptions, "NoArgsIsHelpError", ())  # click < 8.2 prints the help without raising


def _fail(message: str, code: int = 2):
    """Print `message` as one line on stderr and exit with `code`."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _one_line_usage_errors():
    """Click's usage errors (missing argument, bad option value, unknown command) as one line, exit code 2."""
    try:
        yield
    except NO_ARGS_IS_HELP:
        raise
    except click_exceptions.UsageError as error:
        where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
        _fail(where + error.format_message(), error.exit_code)


class OneLineErrorGroup(TyperGroup):
    """The `kinema` group: usage errors of the group and of every command print as one line."""

    def make_context(self, *args, **kwargs):
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line_usage_errors():
            return super().invoke(ctx)


app = typer.Typer(cls=OneLineErrorGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Kinema: build, train, sample and measure video diffusion models.")


def _os_error_message(error: OSError) -> str:
    """'Permission denied: runs/x' from an OSError (disk full, permission, missing or wrong kind of path)."""
    files = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
    reason = error.strerror or str(error)
    return f"{reason}: {files}" if files else reason


def user_errors(command):
    """Turn KinemaError and OSError (permission, disk full, missing file) into one line on stderr, exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KinemaError as error:
            _fail(error)
        except BrokenPipeError:  # `kinema ... | head`: the reader left; click exits quietly
            raise
        except OSError as error:
            _fail(f"{_os_error_message(error)} (kinema {command.__name__.rstrip('_')})")

    return wrapper


def _device(name: str) -> str:
    """The torch device of a --device choice (auto | cpu | cuda | cuda:N), checked against this machine."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if name != "cpu" and not (kind == "cuda" and (not index or index.isdigit())):
        raise KinemaError(f"--device must be auto, cpu, cuda or cuda:N, got '{name}'")
    if kind == "cuda" and not torch.cuda.is_available():
        raise KinemaError(f"--device {name}: CUDA is not available on this machine")
    if index and int(index) >= torch.cuda.device_count():
        raise KinemaError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def _check_writable(path: Path | None) -> None:
    """Fail before any work when `path` could not be written: it is a folder, or a file stands where its folder
    must be."""
    if path is not None and path.is_dir():
        raise KinemaError(f"cannot write {path}: it is a directory")
    for folder in (path.parents if path is not None else ()):
        if folder.exists():
            if not folder.is_dir():
                raise KinemaError(f"cannot write {path}: {folder} is not a directory")
            return


def _prompt_spec(prompt: str | None, prompt_at: list[str] | None):
    """The prompt argument, or the anchors [(frame, text), ...] of repeated --prompt-at FRAME:TEXT."""
    if bool(prompt_at) == (prompt is not None):
        raise KinemaError("give a prompt or --prompt-at FRAME:TEXT (repeatable), not both" if prompt_at else
                          "give a prompt, or --prompt-at FRAME:TEXT (repeatable)")
    if not prompt_at:
        return prompt
    anchors = []
    for item in prompt_at:
        frame, colon, text = item.partition(":")
        if not colon or not frame.strip().isdigit():
            raise KinemaError(f"--prompt-at must be FRAME:TEXT with a frame number, e.g. 32:'a blue ball', got "
                              f"'{item}'")
        anchors.append((int(frame), text.strip()))
    return anchors


def _generate(checkpoint: Path | None, prompts: list, output: Path, format: str | None, sheet: Path | None,
              scale: int, fps: float | None, device: str, long: dict | None = None, task=None,
              quantize: str | None = None, **sampling) -> None:
    """Sample `prompts` (`sampling`: the pipeline's keyword options) and write the videos; one prompt asking for
    more frames than the model makes streams through the `long` options (kinema.pipelines.long_video); a frame
    task `task(pipe, prompts, **sampling)` (kinema.pipelines.tasks) makes the videos in place of the pipeline."""
    from kinema.diffusion import SAMPLERS, TIME_GRIDS
    from kinema.pipelines.text_to_video import TextToVideoPipeline
    from kinema.video import VIDEO_FORMATS, format_from_path

    if format is not None and format not in VIDEO_FORMATS:
        raise KinemaError(f"--format must be one of {', '.join(VIDEO_FORMATS)}, got '{format}'")
    if format is None:
        format_from_path(output)
    if scale < 1:
        raise KinemaError(f"--scale must be at least 1, got {scale}")
    if fps is not None and not fps > 0:
        raise KinemaError(f"--fps must be greater than 0, got {fps}")
    if sampling.get("guidance") is not None and not sampling["guidance"] >= 0:
        raise KinemaError(f"--guidance must be at least 0 (1 = off), got {sampling['guidance']}")
    _check_identity_guidance(sampling.get("identity_guidance"))
    for option, value, choices in (("--sampler", sampling.get("sampler"), SAMPLERS),
                                   ("--time-grid", sampling.get("time_grid"), TIME_GRIDS)):
        if value is not None and value not in choices:
            raise KinemaError(f"{option} must be one of {', '.join(choices)}, got '{value}'")
    for path in (output, sheet):
        _check_writable(path)
    frames = sampling.pop("num_frames", None)
    longer = long is not None and frames is not None and frames > _model_spec(checkpoint).num_frames
    knobs = {name: value for name, value in sampling.pop("attributes", {}).items() if value is not None}
    if knobs and longer:
        raise KinemaError(f"--{'/--'.join(knobs).replace('_', '-')}: knobs apply to videos of the model's length, "
                          f"not to longer ones yet")
    if knobs:
        sampling["attributes"] = knobs
    controls = "trajectory" in sampling or bool(knobs)  # the shipped model for drawn paths and knobs reads them
    pipe = TextToVideoPipeline.from_pretrained(checkpoint, device=_device(device), frames=longer or task is not None,
                                               quantize=quantize, controls=controls and task is None,
                                               camera="camera" in sampling and task is None)
    if longer:
        from kinema.pipelines.long_video import write_long

        if sheet is not None:
            raise KinemaError(f"--sheet holds every frame: leave it out for videos longer than the model's "
                              f"{pipe.spec.num_frames} frames")
        written = write_long(pipe, prompts[0], frames, output, fps=fps, format=format, scale=scale, progress=True,
                             **long, **sampling)
        typer.echo(f"wrote {written}")
        return
    videos = pipe(prompts, num_frames=frames, **sampling) if task is None else task(pipe, prompts, **sampling)
    for path in pipe.save(videos, output, format=format, sheet=sheet, fps=fps, scale=scale):
        typer.echo(f"wrote {path}")


def _check_identity_guidance(weight: float | None) -> None:
    """A one-line error for a negative (or NaN) --identity-guidance."""
    if weight is not None and not weight >= 0:
        raise KinemaError(f"--identity-guidance must be at least 0 (0 = off), got {weight}")


FORMAT = typer.Option(None, "--format", "-f", help="mp4 | webm | gif (default: from the output suffix)")
SHEET = typer.Option(None, "--sheet", help="also write a PNG contact sheet (rows: videos, columns: frames)")
SEED = typer.Option(0, "--seed", help="random seed of the initial noise")
FRAMES = typer.Option(None, "--num-frames", help="frames to generate (default: the model's training length)")
STEPS = typer.Option(None, "--steps", help="sampler steps (default: the model's config)")
SAMPLER = typer.Option(None, "--sampler", help="ddpm | ddim | dpmpp_2m | euler | heun")
TIME_GRID = typer.Option(None, "--time-grid", help="spacing of the sampler's times: uniform | trailing | karras | "
                         "shifted (default: the model's config)")
GUIDANCE = typer.Option(None, "--guidance", help="classifier-free guidance scale (1 = off)")
DIRECTION = typer.Option(None, "--direction-guidance", help="steer prompts with direction words ('to the left') "
                         "their way (0 = off; default: the model's config)")
SCALE = typer.Option(8, "--scale", help="nearest-neighbour upscaling of the written video")
FPS = typer.Option(None, "--fps", help="frame rate of the written video")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")
LABEL = typer.Option(None, "--label", "-l", help="class of a class-conditional model: index or name (repeatable: one "
                     "per prompt; guided against no class by --guidance)")
HEIGHT = typer.Option(None, "--height", help="video height (default: the model's sampling size)")
PROMPT_AT = typer.Option(None, "--prompt-at", help="FRAME:TEXT, the phrase from that frame on (repeatable; instead "
                         "of a prompt), e.g. --prompt-at 0:'a red ball falls' --prompt-at 32:'a blue ball bounces'")
LONG_MODE = typer.Option("window", "--long-mode", help="beyond the model's frames: window (autoregressive, with "
                         "overlap) | fifo (a queue of rising noise levels, FIFO-Diffusion)")
WINDOW = typer.Option(None, "--window", help="frames per model call beyond the model's frames (default: the model's "
                      "frames)")
OVERLAP = typer.Option(None, "--overlap", help="window mode: frames each window shares with the previous one "
                       "(default: half the window)")
PARTITIONS = typer.Option(2, "--partitions", help="fifo mode: windows in the queue (steps per frame = window x "
                          "partitions)")
WIDTH = typer.Option(None, "--width", help="video width (default: the model's sampling size)")
SPEED = typer.Option(None, "--speed", help="knob of a model trained with it (model.attributes): objects' mean speed, "
                     "px per frame at the model's size")
BRIGHTNESS = typer.Option(None, "--brightness", help="knob of a model trained with it: brightness gain (1 = the "
                          "training clips', 0.5 darker, 1.5 brighter)")
MOTION_AMOUNT = typer.Option(None, "--motion-amount", help="knob of a model trained with it: mean absolute change "
                             "between frames, in [0, 1] pixel units")
NEGATIVE = typer.Option("", "--negative-prompt", help="what the video should not show: guidance (--guidance above "
                        "1) steers away from it")
IDENTITY = typer.Option(None, "--identity-guidance", help="keep each ball's count and colour over the frames (those "
                        "of the given frames, else the prompt's colours) by guidance (0 = off; default: the model's "
                        "config)")
RETRIES = typer.Option(None, "--retries", help="sample again, up to this many times, a video whose made frames "
                       "lose, add, resize or recolour a ball (of the given frames, or, from text alone, of most of "
                       "its frames, or show other ball colours than the prompt names); the best attempt is kept "
                       "(default: the model's, 2 unless its spec says otherwise, 8 for the shipped latent model; "
                       "0 = off)")
QUANTIZE = typer.Option(None, "--quantize", help="int8: run with 8-bit weights (Linear and Conv layers; smaller, "
                        "close to the float model)")


@app.command()
@user_errors
def generate(
    prompt: Optional[str] = typer.Argument(None, help="what to generate, e.g. 'a red ball and a blue ball bounce', or "
                                           "'first a red ball falls, then a blue ball bounces to the left'"),
    output: Path = typer.Option(Path("kinema.mp4"), "--output", "-o", help="video file to write"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="model or checkpoint directory "
                                              "(default: the model Kinema ships, 17 frames of 64x64)"),
    format: Optional[str] = FORMAT, sheet: Optional[Path] = SHEET, seed: int = SEED,
    num_frames: Optional[int] = FRAMES, steps: Optional[int] = STEPS, sampler: Optional[str] = SAMPLER,
    time_grid: Optional[str] = TIME_GRID, guidance: Optional[float] = GUIDANCE,
    direction_guidance: Optional[float] = DIRECTION, scale: int = SCALE,
    fps: Optional[float] = FPS, device: str = DEVICE, label: Optional[list[str]] = LABEL,
    height: Optional[int] = HEIGHT, width: Optional[int] = WIDTH, prompt_at: Optional[list[str]] = PROMPT_AT,
    long_mode: str = LONG_MODE, window: Optional[int] = WINDOW, overlap: Optional[int] = OVERLAP,
    partitions: int = PARTITIONS, quantize: Optional[str] = QUANTIZE,
    speed: Optional[float] = SPEED, brightness: Optional[float] = BRIGHTNESS,
    motion_amount: Optional[float] = MOTION_AMOUNT, negative_prompt: str = NEGATIVE,
    identity_guidance: Optional[float] = IDENTITY, retries: Optional[int] = RETRIES,
    trajectory: Optional[Path] = typer.Option(None, "--trajectory", help="JSON or YAML file of object paths (kinema "
                                              "trajectory); each object must be named in the prompt"),
    trajectory_guidance: Optional[float] = typer.Option(None, "--trajectory-guidance", help="how hard guidance pulls "
                                                        "objects onto their paths (default 1 with --trajectory)"),
    physics_guidance: float = typer.Option(0.0, "--physics-guidance", help="push the objects toward constant "
                                           "gravity, smooth acceleration and no overlap (0 = off; try 1-5)"),
    physics_projection: float = typer.Option(0.0, "--physics-projection", help="0..1: move the objects that share "
                                             "of the way onto a simulated path in the later sampling steps"),
    trajectory_projection: float = typer.Option(0.0, "--trajectory-projection", help="0..1: move the --trajectory "
                                                "objects of the finished video that share of the way onto their "
                                                "paths"),
    camera: Optional[str] = typer.Option(None, "--camera", help="camera move per frame step, e.g. "
                                         "'pan-left:2,zoom-in:1.02' (pan/tilt px, zoom factor, roll deg), or a CSV / "
                                         "JSON file of one row per step; without -c, the shipped camera model (still "
                                         "discs) makes it; a model trained with the camera_view map reads a first "
                                         "video's frame 0 rendered along the move"),
    camera_guidance: Optional[float] = typer.Option(None, "--camera-guidance", help="how hard guidance pulls the "
                                                    "video toward the camera move (default 1, or 0 for a model "
                                                    "trained with the camera control)"),
    camera_warp: Optional[float] = typer.Option(None, "--camera-warp", help="0..1: start from a first video's frame "
                                                "0 carried along the move, noised to this time, and denoise it "
                                                "again (default: the model's, 0.5 for the shipped camera model; 0 = "
                                                "off)"),
    speed_guidance: Optional[float] = typer.Option(None, "--speed-guidance", help="how hard guidance pulls the "
                                                   "objects' mean speed toward --speed (default 30 with --speed, "
                                                   "0 = off)"),
    physics_start: Optional[float] = typer.Option(None, "--physics-start", help="0..1: start from a first video's "
                                                  "frame-0 balls run forward by the simulator, noised to this time, "
                                                  "and denoise it again (default: the model's; 0 = off)"),
):
    """Generate a video from a text prompt (the shipped model unless --checkpoint); longer ones window by window.

    Longer than the model's frames, a video is made window by window at flat memory and written frame by frame."""
    long = dict(mode=long_mode, window=window, overlap=overlap, partitions=partitions)
    if prompt is None and not prompt_at and not _model_spec(checkpoint).text_encoder:
        prompt = ""  # a model without text needs none
    spec = _prompt_spec(prompt, prompt_at)
    steering = _steering(spec, trajectory, trajectory_guidance, physics_guidance, physics_projection,
                         trajectory_projection)
    steering.update({name: value for name, value in (("camera", camera), ("camera_guidance", camera_guidance),
                                                      ("camera_warp", camera_warp), ("speed_guidance", speed_guidance))
                     if value is not None})
    if steering and num_frames is not None and \
            num_frames > _model_spec(checkpoint, controls="trajectory" in steering).num_frames:
        raise KinemaError("--trajectory, --camera, physics and speed guidance steer one window of the model's "
                          "frames: leave out --num-frames or give at most the model's")
    for name, value in (("identity_guidance", identity_guidance), ("retries", retries),
                        ("physics_start", physics_start)):
        if value is not None:
            steering[name] = value
    _generate(checkpoint, [spec], output, format, sheet, scale, fps, device, long,
              quantize=quantize, seed=seed, num_frames=num_frames, steps=steps, sampler=sampler, time_grid=time_grid,
              guidance=guidance, direction_guidance=direction_guidance, labels=label or None, height=height,
              width=width, attributes=dict(speed=speed, brightness=brightness, motion_amount=motion_amount),
              negative_prompt=negative_prompt, **steering)


def _steering(prompt, trajectory: Path | None, trajectory_guidance: float | None, physics_guidance: float,
              physics_projection: float, trajectory_projection: float) -> dict:
    """The pipeline's trajectory and physics options that are on, the trajectory file read and bound to the prompt
    (kinema.control.binding) before any model loads."""
    from kinema.control.binding import bound_trajectory

    steering = {name: value for name, value in (("physics_guidance", physics_guidance),
                                                 ("physics_projection", physics_projection),
                                                 ("trajectory_projection", trajectory_projection)) if value}
    if trajectory_guidance is not None:
        steering["trajectory_guidance"] = trajectory_guidance
    if trajectory is not None:
        steering["trajectory"] = bound_trajectory(trajectory, prompt if isinstance(prompt, str) else
                                                  " ".join(text for _, text in prompt))
    return steering


@app.command()
@user_errors
def cascade(
    prompt: str = typer.Argument(..., help="what to generate, e.g. 'a red ball bounces'"),
    output: Path = typer.Option(Path("kinema.mp4"), "--output", "-o", help="video file to write"),
    stages: Optional[str] = typer.Option(None, "--stages", help="KEYFRAMES,INTERP,SR model directories; 'shipped' "
                                         "takes Kinema's model for that stage, 'none' leaves it out (default: all "
                                         "shipped)"),
    video: Optional[Path] = typer.Option(None, "--video", help="start from this video instead of keyframes (with "
                                         "KEYFRAMES = none)"),
    factor: Optional[int] = typer.Option(None, "--factor", help="frames the interpolation stage makes per keyframe "
                                         "step (default: its fps / the keyframe stage's fps, else 2)"),
    noise_aug: float = typer.Option(0.1, "--noise-aug", help="noise level of the low-res video the "
                                    "super-resolution stage reads (its training drew 0..0.5)"),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help="keyframes to generate (default: the "
                                             "keyframe model's length)"),
    seed: int = SEED, steps: Optional[int] = STEPS, scale: int = typer.Option(4, "--scale", help="nearest-neighbour "
                                                                              "upscaling of the written video"),
    device: str = DEVICE,
):
    """Cascaded generation: keyframes -> temporal interpolation -> spatial super-resolution (Imagen Video style)."""
    from kinema.pipelines.cascade import CascadePipeline, stage_paths
    from kinema.pipelines.tasks import fit
    from kinema.video import read_video, write_video

    if scale < 1:
        raise KinemaError(f"--scale must be at least 1, got {scale}")
    _check_writable(output)
    paths = stage_paths(stages)
    if (video is None) == (paths[0] is None):
        raise KinemaError("give a keyframe stage or --video (with KEYFRAMES = none in --stages), not both")
    clip, fps = read_video(video) if video is not None else (None, None)
    pipe = CascadePipeline.from_pretrained(*paths, factor=factor, device=_device(device))
    if clip is not None:  # brought to the first stage's input size, with a note
        clip = fit(clip, *pipe.input_shape(), str(video), lambda note: typer.echo(f"note: {note}", err=True))
    result = pipe(prompt, video=None if clip is None else clip[None], fps=fps, num_frames=num_frames, seed=seed,
                  steps=steps, noise_aug=noise_aug, progress=True)
    for run in result.stages:
        typer.echo(f"{run.name}: {' x '.join(map(str, run.shape))} (B x C x T x H x W) in {run.seconds:.1f} s")
    typer.echo(f"wrote {write_video(output, result.video[0], fps=result.fps, scale=scale)}")


@app.command(name="stream")
@user_errors
def stream_(
    prompt: Optional[str] = typer.Argument(None, help="what to generate, e.g. 'a red ball bounces'"),
    output: Path = typer.Option(Path("frames"), "--output", "-o", help="folder for the frames, frame_00000.png, ..."),
    frames: int = typer.Option(64, "--frames", help="frames to make"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="model or checkpoint directory "
                                              "(default: the model Kinema ships)"),
    prompt_at: Optional[list[str]] = PROMPT_AT, long_mode: str = LONG_MODE, window: Optional[int] = WINDOW,
    overlap: Optional[int] = OVERLAP, partitions: int = PARTITIONS, seed: int = SEED, steps: Optional[int] = STEPS,
    sampler: Optional[str] = SAMPLER, time_grid: Optional[str] = TIME_GRID, guidance: Optional[float] = GUIDANCE,
    direction_guidance: Optional[float] = DIRECTION, scale: int = SCALE, device: str = DEVICE,
    label: Optional[list[str]] = LABEL, height: Optional[int] = HEIGHT, width: Optional[int] = WIDTH,
    quantize: Optional[str] = QUANTIZE, identity_guidance: Optional[float] = IDENTITY,
):
    """Write PNG frames as soon as each is final, at flat memory; print the time to the first frame and frames/s."""
    from kinema.pipelines.long_video import generate_long, throughput, timed
    from kinema.pipelines.text_to_video import TextToVideoPipeline
    from kinema.video import write_contact_sheet

    if output.exists() and not output.is_dir():
        raise KinemaError(f"cannot write frames into {output}: it is not a directory")
    spec = _prompt_spec(prompt, prompt_at)
    _check_identity_guidance(identity_guidance)
    pipe = TextToVideoPipeline.from_pretrained(checkpoint, device=_device(device), frames=True, quantize=quantize)
    made = generate_long(pipe, spec, frames, mode=long_mode, window=window, overlap=overlap, partitions=partitions,
                         seed=seed, steps=steps, sampler=sampler, time_grid=time_grid, guidance=guidance,
                         direction_guidance=direction_guidance, identity_guidance=identity_guidance,
                         labels=label or None, height=height, width=width)
    output.mkdir(parents=True, exist_ok=True)
    seconds = []
    for index, (frame, elapsed) in enumerate(timed(made)):
        write_contact_sheet(output / f"frame_{index:05d}.png", frame[:, None], scale=scale, gap=0)
        seconds.append(elapsed)
    first, rate = throughput(seconds)
    typer.echo(f"wrote {len(seconds)} frames to {output}: first frame after {first:.2f} s, then {rate:.2f} frames/s")


@app.command()
@user_errors
def sample(
    checkpoint: Path = typer.Argument(..., help="model or training checkpoint directory"),
    output: Path = typer.Option(Path("sample.mp4"), "--output", "-o", help="video file to write (PATH_i for several)"),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="prompt (repeatable; default: the "
                                               "checkpoint's sample.prompts)"),
    format: Optional[str] = FORMAT, sheet: Optional[Path] = SHEET, seed: int = SEED,
    num_frames: Optional[int] = FRAMES, steps: Optional[int] = STEPS, sampler: Optional[str] = SAMPLER,
    time_grid: Optional[str] = TIME_GRID, guidance: Optional[float] = GUIDANCE,
    direction_guidance: Optional[float] = DIRECTION, scale: int = SCALE,
    fps: Optional[float] = FPS, device: str = DEVICE, label: Optional[list[str]] = LABEL,
    height: Optional[int] = HEIGHT, width: Optional[int] = WIDTH, quantize: Optional[str] = QUANTIZE,
):
    """Sample videos from any checkpoint."""
    from kinema.models.pretrained import read_config
    from kinema.models.sampling_spec import read_sampling_spec

    prompts = prompt or read_sampling_spec(*read_config(checkpoint)).defaults.prompts
    _generate(checkpoint, prompts, output, format, sheet, scale, fps, device, quantize=quantize, seed=seed,
              num_frames=num_frames, steps=steps, sampler=sampler, time_grid=time_grid, guidance=guidance,
              direction_guidance=direction_guidance, labels=label or None, height=height, width=width)


def _numbers(option: str, text: str, counts: tuple[int, ...]) -> list[int]:
    """The whole numbers 'a,b,c,...' of an option, as many as one of `counts`."""
    values = text.split(",")
    if len(values) not in counts or not all(re.fullmatch(r"\s*-?\d+\s*", value) for value in values):
        raise KinemaError(f"{option} takes {' or '.join(map(str, counts))} whole numbers separated by commas, got "
                          f"'{text}'")
    return [int(value) for value in values]


def _model_spec(checkpoint: Path | None, frames: bool = False, controls: bool = False):
    """The sampling spec (frames, size, channels) of a model directory, read without loading its weights (None: the
    shipped model for text, for known frames, or for drawn paths and knobs)."""
    from kinema.models.pretrained import read_config
    from kinema.models.sampling_spec import read_sampling_spec
    from kinema.pipelines.text_to_video import shipped_model

    return read_sampling_spec(*read_config(shipped_model(frames, controls) if checkpoint is None else checkpoint))


def _task_spec(options: dict):
    """The sampling spec of the model a frame task runs (the shipped one made for known frames unless -c)."""
    return _model_spec(options["checkpoint"], frames=True)


TASK_OPTIONS = {  # options every frame task takes: name -> (type, option)
    "output": (Path, typer.Option(Path("kinema.mp4"), "--output", "-o", help="video file to write")),
    "prompt": (str, typer.Option("", "--prompt", "-p", help="what the video shows, e.g. 'a red ball bounces'")),
    "checkpoint": (Optional[Path], typer.Option(None, "--checkpoint", "-c", help="model or checkpoint directory "
                                                "(default: the model Kinema ships)")),
    "known_guidance": (float, typer.Option(0.0, "--known-guidance", help="also pull the frames to make toward the "
                                           "given pixels by reconstruction guidance (0 = off; a backward pass per "
                                           "step)")),
    "seed": (int, SEED), "steps": (Optional[int], STEPS), "sampler": (Optional[str], SAMPLER),
    "time_grid": (Optional[str], TIME_GRID), "guidance": (Optional[float], GUIDANCE),
    "negative_prompt": (str, NEGATIVE), "format": (Optional[str], FORMAT),
    "sheet": (Optional[Path], SHEET), "scale": (int, SCALE), "fps": (Optional[float], FPS), "device": (str, DEVICE),
    "quantize": (Optional[str], QUANTIZE), "identity_guidance": (Optional[float], IDENTITY),
    "keyframe_physics": (Optional[float], typer.Option(None, "--keyframe-physics", help="0..1: move each ball seen "
                                                       "in every given frame that share of the way onto the physical "
                                                       "path through them, when 3 or more frames lie between two "
                                                       "given ones (default: 1 for a balls model)")),
    "retries": (Optional[int], RETRIES),
}


def task_command(command):
    """A frame-task command: `command(..., options)` also takes the `TASK_OPTIONS` it does not declare itself,
    handed to it as one dict `options`."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "options"]
    shared = [name for name in TASK_OPTIONS if name not in {p.name for p in own}]

    @functools.wraps(command)
    def wrapper(**kwargs):
        options = {name: kwargs.pop(name) for name in shared}
        return command(**kwargs, options=options)

    wrapper.__signature__ = inspect.Signature(own + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=TASK_OPTIONS[name][1],
                          annotation=TASK_OPTIONS[name][0]) for name in shared])
    return wrapper


def _run_task(options: dict, inputs) -> None:
    """Fill in the unknown pixels of a frame task's inputs (kinema.pipelines.task_inputs) with the model
    (kinema.pipelines.tasks.complete) and write the video at --fps, else the inputs' fps, else the model's; the notes
    on the inputs are printed once every option is accepted."""
    from kinema.pipelines.tasks import complete

    def run(pipe, prompts, **sampling):
        for note in inputs.notes:
            typer.echo(f"note: {note}", err=True)
        return complete(pipe, prompts, inputs.known, **inputs.options, **sampling)

    o = dict(options)
    _generate(o.pop("checkpoint"), [o.pop("prompt")], o.pop("output"), o.pop("format"), o.pop("sheet"),
              o.pop("scale"), o.pop("fps") or inputs.fps, o.pop("device"), task=run, **o)


@app.command()
@user_errors
@task_command
def animate(
    image: Optional[Path] = typer.Argument(None, help="the image to animate: frame 0 (the last frame with --last)"),
    last: bool = typer.Option(False, "--last", help="the image is the last frame, not the first"),
    keyframe: Optional[list[str]] = typer.Option(None, "--keyframe", help="INDEX:IMAGE, a frame given at INDEX "
                                                 "(negative: from the end; repeatable), e.g. --keyframe 0:a.png "
                                                 "--keyframe 15:b.png"),
    motion_strength: Optional[float] = typer.Option(None, "--motion-strength", help="how much moves: 0 = still, "
                                                    "1 = as the model makes it (the default), more exaggerates"),
    physics_start: Optional[float] = typer.Option(None, "--physics-start", help="0..1: start from the image's balls "
                                                  "run forward by the simulator, noised to this time (default: the "
                                                  "model's, 0.6 for the shipped model; 0 = off)"),
    num_frames: Optional[int] = FRAMES, options: dict = None,
):
    """Animate an image, or join keyframes, into a video (the given frames come out unchanged)."""
    from kinema.pipelines.task_inputs import animate_inputs

    paths = {} if image is None else {-1 if last else 0: image}
    for item in keyframe or []:
        index, _, path = item.partition(":")
        if not path or not re.fullmatch(r"\s*-?\d+\s*", index):
            raise KinemaError(f"--keyframe must be INDEX:IMAGE, e.g. 0:a.png, got '{item}'")
        paths[int(index)] = Path(path)
    _run_task(options, animate_inputs(_task_spec(options), paths, num_frames, motion_strength, physics_start))


@app.command()
@user_errors
@task_command
def predict(
    clip: Path = typer.Argument(..., help="the video to continue"),
    frames: Optional[int] = typer.Option(None, "--frames", help="new frames to make (default: the model's frames "
                                         "minus the context)"),
    context: Optional[int] = typer.Option(None, "--context", help="last frames of the clip to continue from, also "
                                          "the overlap of the windows (default: half the model's frames)"),
    options: dict = None,
):
    """Continue a video from its last frames; the output holds those frames, unchanged, then the new ones."""
    from kinema.pipelines.task_inputs import predict_inputs

    _run_task(options, predict_inputs(_task_spec(options), clip, frames, context))


@app.command()
@user_errors
@task_command
def interpolate(
    clip: Path = typer.Argument(..., help="the video to make smoother"),
    factor: int = typer.Option(2, "--factor", help="frame i goes to i x FACTOR, with FACTOR - 1 new frames between "
                               "each pair (the frame rate grows as much)"),
    options: dict = None,
):
    """Make in-between frames (frame-rate up-conversion); the given frames come out unchanged."""
    from kinema.pipelines.task_inputs import interpolate_inputs

    _run_task(options, interpolate_inputs(_task_spec(options), clip, factor))


@app.command()
@user_errors
@task_command
def inpaint(
    clip: Path = typer.Argument(..., help="the video to repair or extend"),
    mask: Optional[Path] = typer.Option(None, "--mask", help="mask image (every frame) or video of the clip's size: "
                                        "white = the hole to fill"),
    box: Optional[str] = typer.Option(None, "--box", help="x0,y0,x1,y1[,t0,t1]: fill pixels x0..x1-1, y0..y1-1 of "
                                      "the clip (in frames t0..t1-1)"),
    pad: Optional[str] = typer.Option(None, "--pad", help="L,T,R,B: outpaint, growing the canvas by this many "
                                      "pixels at the left, top, right and bottom (the canvas must suit the model, "
                                      "e.g. sides divisible by 8)"),
    options: dict = None,
):
    """Fill a hole in a video (--mask or --box) or grow its canvas (--pad); the known pixels stay as they were."""
    from kinema.pipelines.task_inputs import inpaint_inputs

    pads = None if pad is None else _numbers("--pad", pad, (4,))
    boxes = None if box is None else _numbers("--box", box, (4, 6))
    _run_task(options, inpaint_inputs(_task_spec(options), clip, mask, boxes, pads))


@app.command()
@user_errors
@task_command
def edit(
    clip: Path = typer.Argument(..., help="the video to edit"),
    prompt: str = typer.Argument(..., help="what the edited video shows, e.g. 'a blue ball bounces'"),
    strength: float = typer.Option(0.6, "--strength", help="0 returns the video, 1 samples afresh; between, the "
                                   "motion is kept and what the prompt says changes"),
    source: Optional[str] = typer.Option(None, "--source", help="what the video shows, e.g. 'a red ball bounces': "
                                         "the edit starts from the video's DDIM inversion under it instead of fresh "
                                         "noise, which keeps paths closer, and guidance steers from it to the prompt "
                                         "(it is the negative prompt unless --negative-prompt is given)"),
    options: dict = None,
):
    """Edit a video with a prompt (SDEdit, or from its DDIM inversion): keep its motion, change what it shows.
    Guidance defaults to the model's edit guidance (sample.edit_guidance), stronger than for generation, and identity
    guidance to sample.edit_identity_guidance (30 for the shipped model: the prompt's colours pulled in)."""
    from kinema.pipelines.task_inputs import edit_inputs

    _run_task({**options, "prompt": prompt}, edit_inputs(_task_spec(options), clip, strength, source))


RESUME = typer.Option(False, "--resume", help="continue from the newest checkpoint in train.output_dir")
OVERWRITE = typer.Option(False, "--overwrite", help="delete the checkpoints already in train.output_dir and start "
                         "afresh (without it, a fresh run there is refused)")
PROCESSES = typer.Option(1, "--processes", help="train in this many processes on this machine, one per GPU (or gloo "
                         "CPU processes without CUDA); each takes train.batch_size per step")
FSDP = typer.Option(False, "--fsdp", help="with --processes: shard weights, gradients, optimizer state and EMA over "
                    "the processes (FSDP2 through accelerate); checkpoints stay whole")


def _launch_if_asked(command: str, config: Path, overrides: Optional[list[str]], resume: bool, overwrite: bool,
                     processes: int, fsdp: bool) -> None:
    """Start `kinema COMMAND` in `processes` processes (and exit with their code) when asked and not started yet."""
    from kinema.training.launch import launch, launched

    if (processes != 1 or fsdp) and not launched():
        flags = ["--resume"] * resume + ["--overwrite"] * overwrite
        raise typer.Exit(launch(processes, [str(config), *(overrides or []), *flags], fsdp, command))


@app.command()
@user_errors
def train(
    config: Path = typer.Argument(..., help="YAML config, e.g. configs/balls.yaml"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. train.steps=2000"),
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    processes: int = PROCESSES,
    fsdp: bool = FSDP,
):
    """Train a model from a config; Ctrl-C saves a checkpoint, --resume continues exactly."""
    from kinema.config import load_config

    cfg = load_config(config, overrides or [])  # checked here, before any process starts
    _launch_if_asked("train", config, overrides, resume, overwrite, processes, fsdp)
    from kinema.training.trainer import Trainer

    checkpoint = _run_trainer(Trainer(cfg, resume=resume, overwrite=overwrite), f"train {config}", overrides)
    if checkpoint is not None:
        typer.echo(f"done: {checkpoint}")


def _run_trainer(trainer, command: str, overrides: Optional[list[str]]) -> Optional[Path]:
    """Train to the end; the last checkpoint on the main process (None on the others). Ctrl-C says what was saved
    and how to continue (`kinema COMMAND ... --resume`), exit code 130."""
    try:
        checkpoint = trainer.train()
    except KeyboardInterrupt:
        again = f"kinema {command} {' '.join(overrides or [])} --resume".replace("  ", " ")
        saved = trainer.last_checkpoint
        typer.echo(f"\ninterrupted at step {trainer.step}; " + (f"saved {saved}; continue with: {again}" if saved else
                   "no checkpoint was written yet, nothing to resume"), err=True)
        raise typer.Exit(130) from None
    return checkpoint if trainer.accelerator.is_main_process else None


@app.command("cache-latents")
@user_errors
def cache_latents_(
    config: Path = typer.Argument(..., help="YAML config of a latent model (with model.autoencoder)"),
    out: Path = typer.Argument(..., help="folder of .tar shards to write (replaced)"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. data.size=64"),
    items: Optional[int] = typer.Option(None, "--items", help="clips to encode (default: all the data has)"),
    items_per_shard: int = typer.Option(1000, "--items-per-shard", help="clips per .tar shard"),
):
    """Encode a config's training clips once with its autoencoder into latent shards (train with data.kind=shards)."""
    from kinema.autoencoder.cache import cache_latents
    from kinema.config import load_config

    if items_per_shard < 1:
        raise KinemaError(f"--items-per-shard must be at least 1, got {items_per_shard}")
    shards = cache_latents(load_config(config, overrides or []), out, items, items_per_shard)
    typer.echo(f"wrote {len(shards)} shard(s) to {out}")


@app.command("train-vae")
@user_errors
def train_vae(
    config: Path = typer.Argument(..., help="YAML config, e.g. configs/vae_balls.yaml"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. train.steps=2000"),
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    processes: int = PROCESSES,
    fsdp: bool = FSDP,
):
    """Train a causal video autoencoder; Ctrl-C saves a checkpoint, --resume continues exactly.

    At the end its EMA weights and measured latent scale go to OUTPUT_DIR/autoencoder (what `kinema vae -c` reads)."""
    from kinema.autoencoder.config import load_autoencoder_config
    from kinema.autoencoder.export import export_autoencoder
    from kinema.training.trainer import Trainer

    cfg = load_autoencoder_config(config, overrides or [])  # checked here, before any process starts
    _launch_if_asked("train-vae", config, overrides, resume, overwrite, processes, fsdp)
    checkpoint = _run_trainer(Trainer(cfg, resume=resume, overwrite=overwrite), f"train-vae {config}", overrides)
    if checkpoint is not None:
        directory, latents = export_autoencoder(checkpoint, Path(cfg.train.output_dir) / "autoencoder")
        typer.echo(f"done: {checkpoint}\nwrote {directory} (latent_scale {latents.scale:.4g}, "
                   f"latent_shift {latents.shift:.4g})")


@app.command()
@user_errors
def trajectory(
    file: Path = typer.Argument(..., help="trajectory file (JSON or YAML): size, num_frames, objects with curves"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw every object's curve into this PNG"),
    size: Optional[int] = typer.Option(None, "--size", help="describe and draw in an NxN frame (default: the "
                                       "file's size)"),
):
    """Check a trajectory file; print each object's curve, length and mean speed; --plot draws the curves."""
    from kinema.control.plot import describe_paths, plot_trajectories
    from kinema.control.trajectory import read_trajectory_file

    _check_writable(plot)
    paths = read_trajectory_file(file)
    for line in describe_paths(paths, size):
        typer.echo(line)
    if plot is not None:
        typer.echo(f"wrote {plot_trajectories(paths, plot, size)}")


@app.command()
@user_errors
def studio(
    host: str = typer.Option("127.0.0.1", "--host", help="address to serve on (0.0.0.0: every network interface)"),
    port: int = typer.Option(7860, "--port", help="port to serve on (0: a free one)"),
    model: Optional[Path] = typer.Option(None, "--model", help="model or checkpoint directory to start with "
                                         "(default: the models Kinema ships)"),
    gallery: Path = typer.Option(Path("kinema-gallery"), "--gallery", help="folder that keeps every result with its "
                                 "settings and command"),
    device: str = DEVICE,
):
    """Start Kinema Studio: a local web page to generate, animate, draw paths and keep a gallery (offline)."""
    import socket

    try:
        from kinema.studio.app import launch
    except ImportError as error:
        raise KinemaError(f"kinema studio needs the studio extra ({error.name} is missing): pip install "
                          f"'kinema[studio]'")
    if not 0 <= port < 65536:
        raise KinemaError(f"--port must be 0..65535, got {port}")
    with socket.socket() as probe:  # a port in use or a bad address is named now, not by the web server
        try:
            probe.bind((host, port))
        except OSError as error:
            raise KinemaError(f"cannot serve on {host}:{port}: {error.strerror or error} (--port 0 picks a free "
                              f"port)")
        port = probe.getsockname()[1]
    gallery.mkdir(parents=True, exist_ok=True)
    launch(None if model is None else str(model), gallery, host, port, _device(device))


@app.command()
@user_errors
def info(checkpoint: Path = typer.Argument(..., help="model or training checkpoint directory")):
    """Print a checkpoint's config, parameter count and training step (a denoiser's or an autoencoder's)."""
    from omegaconf import OmegaConf

    from kinema.autoencoder import CausalVideoVAE
    from kinema.autoencoder.config import is_autoencoder_checkpoint, read_run_config
    from kinema.autoencoder.directory import KIND, read_autoencoder_config
    from kinema.models.pretrained import load_pretrained

    if is_autoencoder_checkpoint(checkpoint):
        config, metadata = read_run_config(checkpoint)
        name, model, values = "causal video autoencoder", CausalVideoVAE(config.autoencoder), config.to_dict()
    elif _config_values(checkpoint / "config.json").get("kind") == KIND:
        architecture, latents, metadata = read_autoencoder_config(checkpoint)
        name, model = "causal video autoencoder", CausalVideoVAE(architecture)
        values = {"autoencoder": architecture.to_dict(), "latent_scale": latents.scale, "latent_shift": latents.shift}
    else:
        model, config, metadata = load_pretrained(checkpoint)
        name, values = config.model_name, config.to_dict()
    parameters = sum(p.numel() for p in model.parameters())
    typer.echo(f"checkpoint: {checkpoint}")
    typer.echo(f"model: {name}, {parameters:,} parameters")
    typer.echo(f"step: {metadata.get('step', 'unknown')}")
    typer.echo(OmegaConf.to_yaml(OmegaConf.create(values)).rstrip())


def _config_values(config_file: Path) -> dict:
    """The JSON object in `config_file`; {} when it is missing, unreadable, not UTF-8, not JSON or not an object."""
    try:
        values = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def _is_kinema_model(config_file: Path) -> bool:
    """Whether `config_file` is the config.json of a Kinema model or checkpoint directory."""
    return "kinema" in _config_values(config_file)


@app.command()
@user_errors
def export(checkpoint: Path = typer.Argument(..., help="training checkpoint directory"),
           output: Path = typer.Argument(..., help="model directory to write (config.json + model.safetensors)"),
           overrides: Optional[list[str]] = typer.Argument(None, help="sampling defaults to store, e.g. "
                                                           "sample.guidance=3 sample.steps=25"),
           force: bool = typer.Option(False, "--force", help="also write into a non-empty folder that is not a "
                                      "Kinema model (its other files are kept)"),
           half: bool = typer.Option(False, "--half", help="store the weights as float16: half the size; they load "
                                     "back as float32")):
    """Write a checkpoint's EMA weights and config as a model (or autoencoder) directory.

    Nothing else in OUTPUT is deleted; a train-vae checkpoint becomes an autoencoder directory, its latent scale
    measured from its data."""
    from kinema.autoencoder.config import is_autoencoder_checkpoint
    from kinema.config import with_overrides
    from kinema.models.pretrained import CONFIG_FILE, EMA_WEIGHTS_FILE, WEIGHTS_FILE, load_pretrained, save_pretrained
    from kinema.models.sampling_spec import SPEC_KEY

    if is_autoencoder_checkpoint(checkpoint):
        from kinema.autoencoder.export import export_autoencoder

        if overrides:
            raise KinemaError(f"an autoencoder has no sampling defaults to change: '{overrides[0].split('=')[0]}'")
        directory, latents = export_autoencoder(checkpoint, output)
        typer.echo(f"wrote {directory} (latent_scale {latents.scale:.4g}, latent_shift {latents.shift:.4g})")
        return
    for item in overrides or []:
        if not item.startswith("sample."):
            raise KinemaError(f"export can only change sampling defaults (sample.*), not '{item.split('=')[0]}'")
    if output.exists() and not output.is_dir():
        raise KinemaError(f"export output {output} exists and is not a directory")
    existing = output.is_dir() and any(output.iterdir())
    if existing and (output / EMA_WEIGHTS_FILE).exists():
        raise KinemaError(f"export output {output} holds a training checkpoint ({EMA_WEIGHTS_FILE}): "
                          f"export into another directory")
    if existing and not _is_kinema_model(output / CONFIG_FILE):
        foreign = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if (output / name).exists()]
        if foreign:
            raise KinemaError(f"export output {output} already has a {foreign[0]} that is not Kinema's: "
                              f"export into another directory")
        if not force:
            raise KinemaError(f"export output {output} is not empty and not a Kinema model directory: choose a new "
                              f"directory, or pass --force to add the model files (other files are kept)")
    model, config, metadata = load_pretrained(checkpoint, prefer_ema=True)
    records = {key: value for key, value in metadata.items() if key != SPEC_KEY}  # the step, how it was distilled
    save_pretrained(output, model.half() if half else model, with_overrides(config, overrides or []),
                    {"step": metadata.get("step"), **records}, keep_other_files=existing)
    typer.echo(f"wrote {output}")


@app.command()
@user_errors
def distill(
    checkpoint: Path = typer.Argument(..., help="the teacher: a model or training checkpoint directory"),
    output: Path = typer.Option(..., "--output", "-o", help="model directory to write (new or empty)"),
    steps: int = typer.Option(4, "--steps", help="sampling steps of the distilled model"),
    teacher_steps: Optional[int] = typer.Option(None, "--teacher-steps", help="DDIM steps of the first teacher: "
                                                "STEPS x 2^k, halved each round (default: the least >= the "
                                                "teacher's sampling steps)"),
    iterations: int = typer.Option(500, "--iterations-per-round", help="optimizer steps per halving round"),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate, falling linearly to 0 in every round"),
    batch_size: int = typer.Option(4, "--batch-size", help="clips per step, from the teacher's training data"),
    guidance: Optional[float] = typer.Option(None, "--guidance", help="the teacher's classifier-free guidance scale, "
                                             "distilled in (default: the teacher's)"),
    time_limit: float = typer.Option(0.0, "--time-limit-minutes", help="stop each round early so that the whole "
                                     "run takes at most this long (0 = no limit)"),
    seed: int = typer.Option(0, "--seed", help="random seed of the data order and the noise"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    workers: int = typer.Option(0, "--workers", help="data-loading processes that make the clips (0 = in the main "
                                "one); the student is the same for any number"),
):
    """Distil a model into one that samples in --steps DDIM steps, guidance included (progressive distillation).

    One network call per step; OUTPUT is a model directory for `kinema generate -c OUTPUT`."""
    from kinema.training.distill import DistillOptions
    from kinema.training.distill import distill as run_distillation

    options = DistillOptions(steps=steps, teacher_steps=teacher_steps, iterations_per_round=iterations, lr=lr,
                             batch_size=batch_size, guidance=guidance, time_limit_minutes=time_limit, seed=seed,
                             device=_device(device), workers=workers)
    written = run_distillation(checkpoint, output, options, log=lambda line: typer.echo(line, err=True))
    typer.echo(f"wrote {written}")


@app.command()
@user_errors
def prep(
    src: Path = typer.Argument(..., help="folder of videos (searched recursively)"),
    out: Path = typer.Argument(..., help="output folder for manifest.jsonl (reruns skip finished files)"),
    workers: int = typer.Option(2, "--workers", "-j", help="parallel processes"),
    cut_threshold: float = typer.Option(3.0, "--cut-threshold", help="a cut changes this many times more than the "
                                        "frames around it (> 1)"),
    cut_min_change: float = typer.Option(0.1, "--cut-min-change", help="and at least this much (colour-histogram "
                                         "distance in (0, 1])"),
    min_shot: float = typer.Option(1.0, "--min-shot", help="seconds; shorter shots are filtered"),
    min_sharpness: float = typer.Option(0.0, "--min-sharpness", help="variance of the Laplacian at 128 lines; "
                                        "below = blurred"),
    min_motion: float = typer.Option(0.0, "--min-motion", help="frame widths per second; below = static"),
    max_motion: float = typer.Option(0.0, "--max-motion", help="frame widths per second; above = too shaky (0 = off)"),
    min_brightness: float = typer.Option(0.05, "--min-brightness", help="mean grey level in [0, 1]"),
    max_brightness: float = typer.Option(0.95, "--max-brightness", help="mean grey level in [0, 1]"),
    max_blockiness: float = typer.Option(0.0, "--max-blockiness", help="block-edge ratio; above = compression "
                                         "artifacts (0 = off)"),
):
    """Split videos into shots at scene cuts, score and filter them, write OUT/manifest.jsonl for data.kind=folder."""
    from kinema.data.prep import PrepOptions, prepare

    if workers < 1:
        raise KinemaError(f"--workers must be at least 1, got {workers}")
    options = PrepOptions(cut_threshold=cut_threshold, cut_min_change=cut_min_change, min_shot_seconds=min_shot,
                          min_sharpness=min_sharpness, min_motion=min_motion, max_motion=max_motion,
                          min_brightness=min_brightness, max_brightness=max_brightness, max_blockiness=max_blockiness)
    counts = prepare(src, out, options, workers=workers)
    typer.echo(f"{counts['files']} files ({counts['analysed']} analysed now): {counts.get('ok', 0)} shots kept, "
               f"{counts.get('filtered', 0)} filtered, {counts.get('bad', 0)} bad files, {counts['skipped']} "
               f"skipped (not video) -> {out / 'manifest.jsonl'}")


@app.command()
@user_errors
def arch(
    variants: Optional[list[str]] = typer.Argument(None, help="variants to compare (default: the whole grid)"),
    width: int = typer.Option(32, "--width", help="shared width (U-Net channels; DiT tokens are 2x)"),
    frames: int = typer.Option(8, "--frames", help="frames of the input video"),
    size: int = typer.Option(32, "--size", help="height and width of the input video"),
    batch: int = typer.Option(2, "--batch", help="batch size of the input"),
    repeats: int = typer.Option(3, "--repeats", help="timed steps per variant (the median is reported)"),
    json_path: Path = typer.Option(Path("arch.json"), "--json", help="JSON file to write"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also write a PNG chart"),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="also write the docs page, e.g. "
                                            "docs/architectures.md"),
    list_variants: bool = typer.Option(False, "--list", help="list the variants and exit"),
    device: str = DEVICE,
):
    """Compare architectures (chapter 11.2): parameters, FLOPs, memory and step time at the same width and input."""
    from kinema import arch_report

    if list_variants:
        for variant in arch_report.VARIANTS.values():
            typer.echo(f"{variant.name:22} {variant.family:17} {variant.model_name}")
        return
    for path in (json_path, plot, markdown):
        _check_writable(path)
    report = arch_report.run_report(variants, width=width, frames=frames, size=size, batch=batch, repeats=repeats,
                                    device=_device(device), progress=lambda name: typer.echo(f"measuring {name}",
                                                                                             err=True))
    typer.echo(arch_report.markdown_table(report))
    typer.echo(f"wrote {arch_report.write_json(report, json_path)}")
    if plot is not None:
        typer.echo(f"wrote {arch_report.write_plot(report, plot)}")
    if markdown is not None:
        command = " ".join(["kinema arch", *(variants or []), f"--width {width} --frames {frames} --size {size} "
                            f"--batch {batch} --repeats {repeats} --markdown {markdown}"])
        typer.echo(f"wrote {arch_report.write_markdown(report, markdown, command)}")


@app.command(name="eval")
@user_errors
def eval_(
    real: str = typer.Option(..., "--real", help="real set: a folder of videos or a dataset config "
                             "(configs/balls.yaml)"),
    fake: list[str] = typer.Option(..., "--fake", help="generated set (repeatable): a folder of videos, a checkpoint, "
                                   "or a run's checkpoints folder (every step_* in it)"),
    out: Path = typer.Option(Path("report.json"), "--out", "-o", help="JSON report; a .md table (and a .png plot "
                             "for several sets) is written beside it"),
    num_samples: int = typer.Option(256, "--num-samples", "-n", help="clips per set"),
    num_frames: Optional[int] = typer.Option(None, "--num-frames", help="frames per clip (default: the real set's)"),
    size: Optional[str] = typer.Option(None, "--size", help="bring every clip to HxW pixels, e.g. 64x64 (default: "
                                       "as read; then a folder's videos must share one size)"),
    resize: str = typer.Option("crop", "--resize", help="how --size is reached: crop (cover, centre crop) | pad "
                               "(fit, black bars) | stretch"),
    real_stride: int = typer.Option(1, "--real-stride", help="take every k-th frame of the real videos"),
    features: str = typer.Option("kinema", "--features", help="'kinema' (shipped network, offline), a feature "
                                 "network directory, or a TorchScript file (I3D, VideoMAE-style) or http(s) URL "
                                 "(downloaded once)"),
    i3d_preset: str = typer.Option("stylegan-v", "--i3d-preset", help="stylegan-v | videogpt (I3D) | raw (any "
                                   "TorchScript [B,3,T,H,W] in [-1,1] -> features) for a TorchScript file"),
    bootstrap: int = typer.Option(100, "--bootstrap", help="bootstrap rounds for 95% intervals (0: none)"),
    paired: bool = typer.Option(False, "--paired", help="fake i was made for real i: PSNR/SSIM/LPIPS, trajectory "
                                "error"),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="local CLIP directory for CLIP-SIM"),
    sampler_steps: Optional[list[int]] = typer.Option(None, "--sampler-steps", help="sample checkpoints with this "
                                                      "many steps (repeatable: plots metric vs steps)"),
    sampler: Optional[str] = SAMPLER, guidance: Optional[float] = GUIDANCE, seed: int = SEED,
    device: str = DEVICE,
):
    """Measure generated videos against real ones: FVD/KVD/FID, frame, temporal, text and ball physics metrics."""
    from kinema.evaluation import EvalOptions, evaluate, markdown_table, parse_size, write_reports

    options = EvalOptions(num_samples=num_samples, num_frames=num_frames, size=parse_size(size) if size else None,
                          resize=resize, real_stride=real_stride, features=features,
                          i3d_preset=i3d_preset, bootstrap=bootstrap, paired=paired, clip_model=clip_model,
                          sampler_steps=list(sampler_steps or []), sampler=sampler, guidance=guidance, seed=seed,
                          device=_device(device))
    reports = evaluate(real, list(fake), options)
    typer.echo(markdown_table(reports))
    for path in write_reports(reports, out):
        typer.echo(f"wrote {path}")
    for warning in dict.fromkeys(w for report in reports for w in report["warnings"]):
        typer.echo(f"warning: {warning}", err=True)


vae_app = typer.Typer(cls=OneLineErrorGroup, add_completion=False, no_args_is_help=True,
                      help="Encode, decode and reconstruct videos with a causal video autoencoder (any length, flat "
                      "memory).")
app.add_typer(vae_app, name="vae")
VAE_DIR = typer.Option(None, "--autoencoder", "-c", show_default=False,
                       help="autoencoder directory (config.json + model.safetensors; default: the shipped one, "
                       "trained on 64x64 balls)")
VAE_CHUNK = typer.Option(4, "--chunk", help="latent frames per chunk: memory grows with it, not with the video")
VAE_TILE = typer.Option(0, "--tile", help="cut frames larger than this many pixels into blended tiles (0 = off)")
VAE_OVERLAP = typer.Option(16, "--tile-overlap", help="pixels that neighbouring tiles share")


def _autoencoder(directory: Optional[Path], device: str, tile: int, overlap: int):
    """The autoencoder of a directory (None: the shipped one) on `device`, and the tiling of --tile / --tile-overlap."""
    from kinema.autoencoder import Tiling, load_autoencoder
    from kinema.autoencoder.directory import SHIPPED_AUTOENCODER

    vae, _, _ = load_autoencoder(directory or SHIPPED_AUTOENCODER)
    tiling = Tiling(tile, overlap) if tile else None
    if tiling is not None:
        tiling.check(vae.spatial_factor)
    return vae.to(_device(device)), tiling


def _notes(notes: list[str]) -> None:
    for note in notes:
        typer.echo(f"note: {note}", err=True)


@vae_app.command(name="encode")
@user_errors
def vae_encode(video: Path = typer.Argument(..., help="video file to encode"),
               autoencoder: Optional[Path] = VAE_DIR,
               output: Path = typer.Option(Path("latents.safetensors"), "--output", "-o", help="latents file to "
                                           "write (safetensors: the posterior mean [1, z, t, h, w])"),
               chunk: int = VAE_CHUNK, tile: int = VAE_TILE, tile_overlap: int = VAE_OVERLAP, device: str = DEVICE):
    """Encode a video into autoencoder latents, chunk by chunk."""
    from kinema.autoencoder.video_files import encode_video_file

    _check_writable(output)
    vae, tiling = _autoencoder(autoencoder, device, tile, tile_overlap)
    latents, notes = encode_video_file(vae, video, output, chunk, tiling)
    _notes(notes)
    typer.echo(f"wrote {output}: latents {list(latents.shape)}")


@vae_app.command(name="decode")
@user_errors
def vae_decode(latents: Path = typer.Argument(..., help="latents file written by kinema vae encode"),
               autoencoder: Optional[Path] = VAE_DIR,
               output: Path = typer.Option(Path("decoded.mp4"), "--output", "-o", help="video file to write (mp4 | "
                                           "webm)"),
               fps: Optional[float] = typer.Option(None, "--fps", help="frame rate (default: the encoded video's)"),
               chunk: int = VAE_CHUNK, tile: int = VAE_TILE, tile_overlap: int = VAE_OVERLAP, device: str = DEVICE):
    """Decode autoencoder latents into a video, chunk by chunk."""
    from kinema.autoencoder.video_files import decode_latent_file

    _check_writable(output)
    vae, tiling = _autoencoder(autoencoder, device, tile, tile_overlap)
    frames = decode_latent_file(vae, latents, output, chunk, tiling, fps)
    typer.echo(f"wrote {output}: {frames} frames")


@vae_app.command(name="reconstruct")
@user_errors
def vae_reconstruct(video: Path = typer.Argument(..., help="video file to encode and decode"),
                    autoencoder: Optional[Path] = VAE_DIR,
                    output: Optional[Path] = typer.Option(None, "--output", "-o", help="also write the "
                                                          "reconstruction (mp4 | webm)"),
                    chunk: int = VAE_CHUNK, tile: int = VAE_TILE, tile_overlap: int = VAE_OVERLAP,
                    device: str = DEVICE):
    """Encode and decode a video chunk by chunk; print the reconstruction's PSNR and SSIM."""
    from kinema.autoencoder.video_files import reconstruct_video_file

    _check_writable(output)
    vae, tiling = _autoencoder(autoencoder, device, tile, tile_overlap)
    scores, notes = reconstruct_video_file(vae, video, output, chunk, tiling)
    _notes(notes)
    typer.echo(f"{scores['frames']} frames: PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
    if output is not None:
        typer.echo(f"wrote {output}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
