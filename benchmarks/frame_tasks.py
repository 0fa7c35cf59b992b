"""Frames as conditions, measured: prediction, interpolation, animation, inpainting and SDEdit edits of held-out
physics-balls clips, against the classical baselines (chapter 11.1.2, 11.3.2, 11.4, 11.5; exercise 11.1).

Held-out data: clips of the "balls" dataset (kinema.data.physics_balls) drawn with `--data-seed` (default
20261129). Clip i of a BouncingBalls dataset is a pure function of (seed, i), and training draws its clips with
`train.seed` (1 for configs/balls_frames.yaml, 0 for the text-to-video model), so these clips were never trained
on. They have the model's frames and size, the ball counts of its training data, and each task prompts with the
clip's own caption. Tasks, all through the Python API (TextToVideoPipeline, KnownPixels):

- prediction: the first k frames given (k = 2, 4), the rest made; PSNR, SSIM and tracked ball-position error
  (px; kinema.metrics.balls tracks the balls in the made frames and in the ground truth) over the made frames,
  against copying the last given frame and per-pixel linear extrapolation x_(t+1) = clip(2 x_t - x_(t-1));
- interpolation: every other frame given (and the last), or only the first and the last; the same scores over
  the made frames, against the linear blend of the two nearest given frames and Farneback flow interpolation
  (OpenCV flow both ways, intermediate flows as in Super SloMo, Jiang et al. 2018, eq. 4, both frames warped
  and blended);
- animation: frame 0 given; its PSNR against the input (replacement keeps it exactly), and how often the clip
  keeps its ball count and colours in every frame (kinema.metrics.physics.identity_scores), next to how often
  the real clips do, how often no ball moves at all, and how often each ball the caption sends to the left or the
  right moves that way on average;
- inpainting: a space-time box over the first ball (frames T/4..3T/4, a 3/8-side square) made anew; PSNR of the
  pixels outside the box (kept by replacement) and inside it against the truth, next to filling the hole with
  the frame before it;
- edit: the caption with the first ball's colour changed to one absent from the clip, from the clip noised to each
  strength (SDEdit) or from its DDIM inversion to that strength under its own caption, the negative prompt by
  default (edit_inverted), both at the model's edit guidance; mean distance (px) of the tracked paths from the
  input's, the share of clips within 2 px, how often the balls' colours become the asked ones (the majority colour
  class of each track), and both.

    python benchmarks/frame_tasks.py                                   # the shipped model, 32 clips
    python benchmarks/frame_tasks.py --checkpoint runs/balls_frames/checkpoints/step_0002400 --clips 8

Prints Markdown tables and writes benchmarks/results/frame_tasks.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

from kinema.control.binding import colour_directions
from kinema.data.physics_balls import BALL_COLORS, BallsClip, BouncingBalls
from kinema.errors import KinemaError
from kinema.metrics.balls import BallTracks, track_balls
from kinema.metrics.frame import PSNR_CAP_DB, psnr, ssim
from kinema.metrics.physics import STILL, identity_scores, target_scores
from kinema.metrics.temporal import farneback_flow
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_timing import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 20261129
STRENGTHS = (0.2, 0.4, 0.6, 0.8)
PATH_TOLERANCE_PX = 2.0
EDITED_SHARE = 0.8  # edits that must change the colour with the path kept
TASKS = ("predict_2", "predict_4", "interpolate_every_other", "interpolate_first_last", "animate", "inpaint", "edit",
         "edit_inverted")


# ---------------------------------------------------------------------------------------------
# Data and baselines
# ---------------------------------------------------------------------------------------------


def held_out_clips(pipe: TextToVideoPipeline, count: int, seed: int) -> list[BallsClip]:
    """`count` simulator clips at the model's frames and size, with its training data's ball counts."""
    spec, config = pipe.spec, pipe.config
    if config.data_kind != "balls" or spec.height != spec.width or spec.channels != 3:
        raise KinemaError(f"the frame-task benchmark needs a model of square RGB balls clips, got data "
                          f"'{config.data_kind}' at {spec.channels}x{spec.height}x{spec.width}")
    data = dataclasses.replace(config.data, num_frames=spec.num_frames, size=spec.height)
    dataset = BouncingBalls(data, length=count, seed=seed)
    return [dataset.clip(i) for i in range(count)]


def copy_last(video: Tensor, given: int) -> Tensor:
    """Prediction baseline: frames `given`.. are copies of frame given-1 ([B, C, T, H, W])."""
    out = video.clone()
    out[:, :, given:] = video[:, :, given - 1: given]
    return out


def linear_extrapolation(video: Tensor, given: int) -> Tensor:
    """Prediction baseline: each pixel continues x_(t+1) = clip(2 x_t - x_(t-1), -1, 1) from the given frames."""
    out = video.clone()
    for t in range(given, video.shape[2]):
        out[:, :, t] = (2 * out[:, :, t - 1] - out[:, :, t - 2]).clamp(-1, 1)
    return out


def _between(given: list[int], t: int) -> tuple[int, int, float]:
    """The given frames just before and after frame t, and t's fraction of the way between them."""
    before, after = max(i for i in given if i < t), min(i for i in given if i > t)
    return before, after, (t - before) / (after - before)


def linear_blend(video: Tensor, given: list[int]) -> Tensor:
    """Interpolation baseline: each missing frame is the blend (1 - s) x_before + s x_after of its given neighbours."""
    out = video.clone()
    for t in sorted(set(range(video.shape[2])) - set(given)):
        before, after, s = _between(given, t)
        out[:, :, t] = torch.lerp(video[:, :, before], video[:, :, after], s)
    return out


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image(x + flow(x)) by bilinear sampling (border pixels repeat)."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def flow_frame(first: Tensor, second: Tensor, s: float) -> Tensor:
    """The frame a fraction s from `first` to `second` ([C, H, W] in [-1, 1]) by Farneback flow both ways: flows
    from time s, F_s0 = -(1-s) s F_01 + s^2 F_10 and F_s1 = (1-s)^2 F_01 - s (1-s) F_10 (Super SloMo, eq. 4), warp
    each frame to time s and blend them (1-s : s)."""
    images = [np.ascontiguousarray(((f.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy(), dtype=np.float32)
              for f in (first, second)]
    grey = [cv2.cvtColor(np.round(255 * image).astype(np.uint8), cv2.COLOR_RGB2GRAY) for image in images]
    f01, f10 = farneback_flow(grey[0], grey[1]), farneback_flow(grey[1], grey[0])
    from_s0, from_s1 = -(1 - s) * s * f01 + s * s * f10, (1 - s) ** 2 * f01 - s * (1 - s) * f10
    blend = (1 - s) * _warp(images[0], from_s0) + s * _warp(images[1], from_s1)
    return torch.from_numpy(blend).permute(2, 0, 1) * 2 - 1


def flow_interpolation(video: Tensor, given: list[int]) -> Tensor:
    """Interpolation baseline: each missing frame by `flow_frame` between its given neighbours."""
    out = video.clone()
    for t in sorted(set(range(video.shape[2])) - set(given)):
        before, after, s = _between(given, t)
        for b in range(len(video)):
            out[b, :, t] = flow_frame(video[b, :, before], video[b, :, after], s)
    return out


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def position_error(made: Tensor, truth: Tensor, frames: list[int]) -> tuple[float, float]:
    """(mean px distance, coverage) of the balls tracked in `made` from those tracked in `truth` ([3, T, H, W])
    over `frames`: tracks matched by the Hungarian method on mean distance (kinema.metrics.physics.target_scores)."""
    made_tracks, true_tracks = track_balls(made), track_balls(truth)
    sliced = dataclasses.replace(made_tracks, centres=made_tracks.centres[:, frames])
    scores = target_scores(sliced, true_tracks.centres[:, frames].transpose(1, 0, 2))
    return scores["target_error"], scores["target_coverage"]


def frame_scores(made: Tensor, truth: Tensor, frames: list[int]) -> dict[str, list[float]]:
    """Per clip: PSNR and SSIM over `frames` of [B, 3, T, H, W] videos, and the tracked ball-position error."""
    errors = [position_error(m, t, frames) for m, t in zip(made, truth)]
    return {"psnr": psnr(made[:, :, frames], truth[:, :, frames]).tolist(),
            "ssim": ssim(made[:, :, frames], truth[:, :, frames]).tolist(),
            "position_error_px": [e for e, _ in errors], "position_coverage": [c for _, c in errors]}


def masked_psnr(made: Tensor, truth: Tensor, mask: Tensor) -> float:
    """PSNR (dB, capped at PSNR_CAP_DB) of one clip's pixels where `mask` (broadcast over channels) is True."""
    mask = mask.expand_as(truth)
    value = peak_signal_noise_ratio(made[mask].float(), truth[mask].float(), data_range=2.0)
    return float(value.clamp(max=PSNR_CAP_DB))


def track_colours(tracks: BallTracks) -> set[str]:
    """The colour names of the balls followed for at least half the clip (each track's majority colour class)."""
    frames = tracks.labels.shape[1]
    return {tracks.palette[np.bincount(labels[labels >= 0]).argmax()]
            for labels in tracks.labels if (labels >= 0).sum() * 2 >= frames}


def identity_kept(video: Tensor) -> dict[str, float]:
    """1/0 per check of one clip: the same ball count in every frame, the same colours, both, and no ball moving."""
    tracks = track_balls(video)
    scores = identity_scores(tracks)
    steps = np.linalg.norm(np.diff(tracks.centres, axis=1), axis=-1)
    steps = steps[np.isfinite(steps)]
    count, colours = scores["count_constancy"] == 1, scores["color_constancy"] == 1
    return {"count_kept": float(count), "colours_kept": float(colours), "both_kept": float(count and colours),
            "still": float(not steps.size or steps.max() < STILL)}


def asked_directions(caption: str) -> dict[str, int]:
    """{colour: -1 (left) or +1 (right)} for each ball the caption sends to the left or the right."""
    return {colour: int(np.sign(x)) for colour, (x, _) in colour_directions(caption).items() if x}


def direction_kept(video: Tensor, caption: str) -> float:
    """1 when every ball the caption sends left or right moves that way on average (its tracks' mean horizontal
    step), 0 when one does not, NaN when the caption asks no direction."""
    asked = asked_directions(caption)
    if not asked:
        return float("nan")
    tracks = track_balls(video)
    for colour, sign in asked.items():
        rows = [k for k, labels in enumerate(tracks.labels) if (labels >= 0).any()
                and tracks.palette[np.bincount(labels[labels >= 0]).argmax()] == colour]
        steps = np.diff(tracks.centres[rows, :, 0], axis=1)
        if not np.isfinite(steps).any() or np.sign(np.nanmean(steps)) != sign:
            return 0.0
    return 1.0


def recoloured(clip: BallsClip, seed: int, index: int) -> tuple[str, set[str]]:
    """The clip's caption with its first ball's colour changed to one absent from the clip, and the colours asked."""
    match = re.search(r"\ban? (\w+) ball\b", clip.caption)
    if match is None or match.group(1) not in clip.color_names:
        raise KinemaError(f"cannot find the first ball's colour in the caption {clip.caption!r}")
    old = match.group(1)
    absent = [name for name in BALL_COLORS if name not in clip.color_names]
    new = absent[np.random.default_rng([seed, index]).integers(len(absent))]
    article = "an" if new[0] in "aeiou" else "a"
    caption = clip.caption[:match.start()] + f"{article} {new} ball" + clip.caption[match.end():]
    return caption, {new if name == old else name for name in clip.color_names}


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------


def frame_mask(shape: tuple[int, ...], given: list[int]) -> Tensor:
    """[B, 1, T, H, W] bool, True on the given frames, for videos of `shape` [B, C, T, H, W]."""
    mask = torch.zeros(shape[0], 1, *shape[2:], dtype=torch.bool)
    mask[:, :, given] = True
    return mask


def box_mask(clips: list[BallsClip], shape: tuple[int, ...]) -> tuple[Tensor, int]:
    """([B, 1, T, H, W] bool, its first frame): a box of side 3/8 of the frame over frames T/4..3T/4-1 centred on
    the first ball at the middle frame (shifted to fit)."""
    _, _, frames, height, width = shape
    side, t0 = max(1, 3 * height // 8), max(1, frames // 4)  # a frame before the hole, for the baseline
    t1 = max(t0 + 1, 3 * frames // 4)
    mask = torch.zeros(shape[0], 1, frames, height, width, dtype=torch.bool)
    for b, clip in enumerate(clips):
        x, y = clip.positions[(t0 + t1) // 2, 0].tolist()
        left, top = (int(np.clip(round(c - side / 2), 0, limit - side)) for c, limit in ((x, width), (y, height)))
        mask[b, :, t0:t1, top:top + side, left:left + side] = True
    return mask, t0


class Runner:
    """Runs the model over the clips in batches and keeps the seconds it spent per clip and task."""

    def __init__(self, pipe: TextToVideoPipeline, args: argparse.Namespace):
        self.pipe, self.args, self.seconds = pipe, args, {}

    def __call__(self, task: str, captions: list[str], clips: Tensor, mask: Tensor | None = None,
                 strength: float | None = None, sources: list[str] | None = None) -> Tensor:
        """The model's videos for `captions`: the clips' pixels under `mask` known, or edits at `strength` (SDEdit,
        or from the clips' DDIM inversion under their `sources` captions)."""
        started, out = time.perf_counter(), []
        for start in range(0, len(captions), self.args.batch):
            part = slice(start, start + self.args.batch)
            known = None if mask is None else KnownPixels(clips[part], mask[part])
            out.append(self.pipe(captions[part], known=known, steps=self.args.steps, seed=self.args.seed + start,
                                 init_video=None if strength is None else clips[part], strength=strength,
                                 source_prompt=None if sources is None else sources[part], progress=False,
                                 identity_guidance=self.args.identity_guidance,
                                 direction_guidance=self.args.direction_guidance,
                                 keyframe_physics=self.args.keyframe_physics, retries=self.args.retries,
                                 physics_guidance=self.args.physics_guidance,
                                 physics_start=self.args.physics_start if task == "animate" else None))
        self.seconds[task] = (time.perf_counter() - started) / len(captions)
        return torch.cat(out)


def prediction(run: Runner, captions: list[str], clips: Tensor, given: int) -> dict:
    """First `given` frames known: the model, copying the last frame and linear extrapolation."""
    frames = list(range(given, clips.shape[2]))
    made = run(f"predict_{given}", captions, clips, frame_mask(clips.shape, list(range(given))))
    return {"given_frames": list(range(given)),
            "kinema": frame_scores(made, clips, frames),
            "copy_last": frame_scores(copy_last(clips, given), clips, frames),
            "linear_extrapolation": frame_scores(linear_extrapolation(clips, given), clips, frames)}


def interpolation(run: Runner, name: str, captions: list[str], clips: Tensor, given: list[int]) -> dict:
    """The `given` frames known, the others in between made: the model, linear blend and Farneback flow."""
    frames = sorted(set(range(clips.shape[2])) - set(given))
    made = run(name, captions, clips, frame_mask(clips.shape, given))
    return {"given_frames": given,
            "kinema": frame_scores(made, clips, frames),
            "linear_blend": frame_scores(linear_blend(clips, given), clips, frames),
            "farneback_flow": frame_scores(flow_interpolation(clips, given), clips, frames)}


def animation(run: Runner, captions: list[str], clips: Tensor) -> dict:
    """Frame 0 known: its PSNR against the input, and identity kept in the made clips and in the real ones."""
    made = run("animate", captions, clips, frame_mask(clips.shape, [0]))
    kept = [{**identity_kept(v), "direction_kept": direction_kept(v, c)} for v, c in zip(made, captions)]
    real = [{**identity_kept(v), "direction_kept": direction_kept(v, c)} for v, c in zip(clips, captions)]
    return {"frame0_psnr": psnr(made[:, :, :1], clips[:, :, :1]).tolist(),
            "kinema": {k: [row[k] for row in kept] for k in kept[0]},
            "real": {k: [row[k] for row in real] for k in real[0]}}


def inpainting(run: Runner, clips_info: list[BallsClip], captions: list[str], clips: Tensor) -> dict:
    """A space-time box unknown, the rest known: PSNR outside (kept) and inside (made) for the model and for the
    hole filled with the frame before it."""
    hole, start = box_mask(clips_info, clips.shape)
    made = run("inpaint", captions, clips, ~hole)
    copied = torch.where(hole, clips[:, :, start - 1: start], clips)
    return {name: {"psnr_outside": [masked_psnr(v, c, ~m) for v, c, m in zip(video, clips, hole)],
                   "psnr_inside": [masked_psnr(v, c, m) for v, c, m in zip(video, clips, hole)]}
            for name, video in (("kinema", made), ("copy_previous_frame", copied))}


def edit(run: Runner, clips_info: list[BallsClip], clips: Tensor, seed: int, inverted: bool) -> dict:
    """The first ball recoloured in the caption, at each strength, by SDEdit or (`inverted`) from the clip's DDIM
    inversion under its own caption: path error and colour changed."""
    asked = [recoloured(clip, seed, i) for i, clip in enumerate(clips_info)]
    sources = [clip.caption for clip in clips_info] if inverted else None
    frames = list(range(clips.shape[2]))
    out = {"prompts": [caption for caption, _ in asked]}
    for strength in run.args.strengths:
        made = run(f"edit{'_inverted' * inverted}_{strength}", [caption for caption, _ in asked], clips,
                   strength=strength, sources=sources)
        errors = [position_error(m, c, frames)[0] for m, c in zip(made, clips)]
        kept = [float(e <= PATH_TOLERANCE_PX) for e in errors]
        changed = [float(track_colours(track_balls(m)) == colours) for m, (_, colours) in zip(made, asked)]
        out[str(strength)] = {"path_error_px": errors, "path_kept": kept, "colour_changed": changed,
                              "both": [k * c for k, c in zip(kept, changed)]}
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def mean(values: list[float]) -> float:
    """Mean over the clips where the score exists (NaN when none has it)."""
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else float("nan")


def summary(report: dict) -> dict:
    """The means of every per-clip list, and whether each target of the issue is met."""
    def means(node):
        if isinstance(node, dict):
            return {k: means(v) for k, v in node.items() if k not in ("prompts", "given_frames")}
        return mean(node)

    m = means(report["tasks"])
    targets = {}
    for task in ("predict_2", "predict_4", "interpolate_every_other", "interpolate_first_last"):
        if task not in m:
            continue
        ours, baselines = m[task]["kinema"], [row for name, row in m[task].items() if name != "kinema"]
        targets[f"{task}: beats every baseline on PSNR and position error"] = all(
            ours["psnr"] > row["psnr"] and ours["position_error_px"] < row["position_error_px"] for row in baselines)
    if "animate" in m:
        animate = m["animate"]
        targets["animate: frame 0 PSNR >= 35 dB"] = animate["frame0_psnr"] >= 35
        targets["animate: count and colours kept as often as in real clips"] = \
            animate["kinema"]["both_kept"] >= animate["real"]["both_kept"]
    if "inpaint" in m:
        targets["inpaint: pixels outside the hole >= 40 dB"] = m["inpaint"]["kinema"]["psnr_outside"] >= 40
    for task in ("edit", "edit_inverted"):
        if task not in m:
            continue
        targets[f"{task}: mean path error <= {PATH_TOLERANCE_PX:g} px at strength <= 0.6"] = all(
            m[task][str(s)]["path_error_px"] <= PATH_TOLERANCE_PX for s in STRENGTHS if s <= 0.6 and str(s) in m[task])
        targets[f"{task}: at strength 0.6, colour changed as asked with the path kept in >= {EDITED_SHARE:g} of "
                f"clips"] = m[task]["0.6"]["both"] >= EDITED_SHARE
    return {"means": m, "targets": targets}


def table(report: dict) -> str:
    """Markdown tables of the means of the tasks that ran."""
    m = report["summary"]["means"]
    lines = ["| task | method | PSNR dB | SSIM | ball position error px | balls covered |", "|---|---|---|---|---|---|"]
    for task in ("predict_2", "predict_4", "interpolate_every_other", "interpolate_first_last"):
        for method, row in m.get(task, {}).items():
            lines.append(f"| {task} | {method} | {row['psnr']:.2f} | {row['ssim']:.3f} | "
                         f"{row['position_error_px']:.2f} | {row['position_coverage']:.2f} |")
    if "animate" in m:
        a = m["animate"]
        lines += ["", "| animate | frame-0 PSNR dB | count kept | colours kept | both kept | no ball moves | "
                  "direction as captioned |", "|---|---|---|---|---|---|---|"]
        for name in ("kinema", "real"):
            psnr0 = f"{a['frame0_psnr']:.1f}" if name == "kinema" else "-"
            row = a[name]
            lines.append(f"| {name} | {psnr0} | {row['count_kept']:.2f} | {row['colours_kept']:.2f} | "
                         f"{row['both_kept']:.2f} | {row['still']:.2f} | {row['direction_kept']:.2f} |")
    if "inpaint" in m:
        lines += ["", "| inpaint | PSNR outside dB | PSNR inside dB |", "|---|---|---|"]
        lines += [f"| {name} | {row['psnr_outside']:.1f} | {row['psnr_inside']:.2f} |"
                  for name, row in m["inpaint"].items()]
    edits = [task for task in ("edit", "edit_inverted") if task in m]
    if edits:
        lines += ["", f"| edit | strength | path error px | paths within {PATH_TOLERANCE_PX:g} px | "
                  f"colour changed as asked | both |", "|---|---|---|---|---|---|"]
        lines += [f"| {task} | {s} | {row['path_error_px']:.2f} | {row['path_kept']:.2f} | "
                  f"{row['colour_changed']:.2f} | {row['both']:.2f} |" for task in edits for s, row in
                  ((s, m[task][str(s)]) for s in STRENGTHS if str(s) in m[task])]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if met else 'no'} |" for name, met in report["summary"]["targets"].items()]
    return "\n".join(lines)


def checkpoint_name(path: str | None) -> str:
    """The checkpoint as the report names it: relative to the repository when inside it, else its folder's name."""
    if path is None:
        return "shipped (balls_frames)"
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="model directory or checkpoint (default: the shipped frames model)")
    parser.add_argument("--clips", type=int, default=32, help="held-out clips per task")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    parser.add_argument("--data-seed", type=int, default=HELD_OUT_SEED, help="dataset seed of the held-out clips")
    parser.add_argument("--batch", type=int, default=8, help="videos per sampling run")
    parser.add_argument("--tasks", type=lambda text: text.split(","), default=None,
                        help=f"comma-separated tasks to run (default: all of {','.join(TASKS)})")
    parser.add_argument("--strengths", type=float, nargs="+", default=list(STRENGTHS),
                        help=f"edit strengths (default: {' '.join(map(str, STRENGTHS))}; the targets read 0.6)")
    parser.add_argument("--json", default="benchmarks/results/frame_tasks.json")
    parser.add_argument("--identity-guidance", type=float, default=None,
                        help="identity guidance weight (default: the model's)")
    parser.add_argument("--direction-guidance", type=float, default=None,
                        help="direction guidance weight (default: the pipeline's, off animating one frame)")
    parser.add_argument("--physics-guidance", type=float, default=0.0, help="physics guidance weight (default 0)")
    parser.add_argument("--retries", type=int, default=None,
                        help="re-samplings of a video that breaks its given frames' balls (default: the pipeline's)")
    parser.add_argument("--keyframe-physics", type=float, default=None,
                        help="share of the way onto physical paths through sparse keyframes (default: the pipeline's)")
    parser.add_argument("--physics-start", type=float, default=None,
                        help="animating: the time a simulated start is noised to, 0 = off (default: the model's)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tasks or ()) - set(TASKS))
    if unknown:
        parser.error(f"--tasks: unknown {', '.join(unknown)} (choose from {', '.join(TASKS)})")
    for name in ("clips", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def run(args: argparse.Namespace) -> dict:
    """Every task on `args.clips` held-out clips; the report (per-clip scores, means, targets) also goes to JSON."""
    pipe = TextToVideoPipeline.from_pretrained(args.checkpoint, frames=True)
    started = time.perf_counter()
    info = held_out_clips(pipe, args.clips, args.data_seed)
    clips, captions = torch.stack([clip.video for clip in info]), [clip.caption for clip in info]
    frames = clips.shape[2]
    runner = Runner(pipe, args)
    every_other = sorted(set(range(0, frames, 2)) | {frames - 1})
    makers = {
        **{f"predict_{k}": lambda k=k: prediction(runner, captions, clips, k) for k in (2, 4) if k < frames},
        "interpolate_every_other": lambda: interpolation(runner, "interpolate_every_other", captions, clips,
                                                         every_other),
        "interpolate_first_last": lambda: interpolation(runner, "interpolate_first_last", captions, clips,
                                                        [0, frames - 1]),
        "animate": lambda: animation(runner, captions, clips),
        "inpaint": lambda: inpainting(runner, info, captions, clips),
        "edit": lambda: edit(runner, info, clips, args.data_seed, inverted=False),
        "edit_inverted": lambda: edit(runner, info, clips, args.data_seed, inverted=True),
    }
    tasks = {name: make() for name, make in makers.items() if args.tasks is None or name in args.tasks}
    defaults = pipe.spec.defaults
    report = {
        "checkpoint": checkpoint_name(args.checkpoint),
        "data": {"dataset": "balls", "seed": args.data_seed, "clips": args.clips, "num_frames": frames,
                 "size": clips.shape[-1], "held_out": "clips of BouncingBalls(seed=data seed); training draws its "
                 "clips with train.seed (1 for configs/balls_frames.yaml, 0 for the text-to-video model), so none "
                 "of these was trained on", "captions": captions},
        "sampling": {"sampler": defaults.sampler, "steps": args.steps or defaults.steps, "guidance": defaults.guidance,
                     "edit_guidance": defaults.edit_guidance, "edit_identity_guidance": defaults.edit_identity_guidance,
                     "direction_guidance": args.direction_guidance,  # None: the default (off animating one frame)
                     "seed": args.seed,
                     "identity_guidance": args.identity_guidance,  # None: the default (animating: the next)
                     "animate_identity_guidance": defaults.animate_identity_guidance,
                     "keyframe_physics": args.keyframe_physics, "retries": args.retries,  # None: the default
                     "physics_guidance": args.physics_guidance,
                     "physics_start": defaults.animate_physics_start if args.physics_start is None
                     else args.physics_start},
        "machine": machine_info(pipe.device),
        "seconds_per_clip": {**runner.seconds, "total": (time.perf_counter() - started) / args.clips},
        "tasks": tasks,
    }
    report["summary"] = summary(report)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> dict:
    """Run every task, print the tables and return the report."""
    args = parse_args(argv)
    report = run(args)
    print(table(report))
    print(f"{report['seconds_per_clip']['total']:.1f} s per clip; wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
