"""`kinema eval`: compare generated videos with real ones on every metric of kinema.metrics; JSON, Markdown, plot.

Sources (`load_source`): a folder of videos (every container the video readers take, and
subfolders of PNG / JPEG frames, sorted by name; captions from NAME.txt beside a video when present), a YAML config whose `data:` section
names a dataset (clips 0..N-1 of it, with ground truth such as ball positions), or, for generated
videos, a model or training checkpoint directory that is sampled with TextToVideoPipeline on the
real set's captions. A checkpoints folder (holding step_* directories) stands for all of its
checkpoints. With `size` every set is brought to one frame size (`fit_size`: crop, pad or stretch).

Per generated set (`evaluate`): FVD and KVD on clip features and frame FID on frame features
(bootstrap 95% intervals for FVD and frame FID), temporal and motion scores, ball identity and
physics scores, CLIP-SIM with a local CLIP model, and, for paired sets (fake i made for real i),
PSNR / SSIM / LPIPS and the ball trajectory error against the real clip's ground truth. A metric
that cannot be computed says "unavailable" and why; no number is made up. Real-set features are
cached on disk, keyed by the source, sample count, frames, stride, seed and extractor.

Next to FVD every report carries its controls (kinema.metrics.controls): the real-vs-real split
baseline (FVD between two random halves of the real set, its spread over `control_splits` splits),
the shuffled-time control (FVD of the real set against the same clips shuffled in time) and
warnings, also printed on stderr by `kinema eval`, when the data lie outside the feature network's
recorded training domain or when the sets are too small for FVD to separate them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kinema.atomic import atomic_path, write_text_atomic
from kinema.errors import KinemaError

RESIZE_MODES = ("crop", "pad", "stretch")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # a folder of these is one clip, frames in name order
LOWER_IS_BETTER = {"fvd", "kvd", "frame_fid", "flicker", "warping_error", "lpips", "lpips_t", "color_drift",
                   "gravity_residual", "roughness", "target_error"}


@dataclass
class EvalOptions:
    """What `kinema eval` computes and how (CLI flags of the same names)."""

    num_samples: int = 256          # clips per set
    num_frames: int | None = None   # frames per clip (default: the real set's)
    size: tuple[int, int] | None = None  # (H, W) every set is brought to (default: as read; one size per set)
    resize: str = "crop"            # how to reach `size`: crop (cover, centre crop) | pad (fit, black bars) | stretch
    real_stride: int = 1            # take every k-th frame of real videos
    features: str = "kinema"        # 'kinema' (shipped network), a feature-net directory, an I3D .pt file or URL
    i3d_preset: str = "stylegan-v"  # stylegan-v | videogpt (for an I3D file)
    bootstrap: int = 100            # bootstrap rounds for the intervals (0: none)
    control_splits: int = 10        # random real/real splits for the FVD split baseline
    kvd_subsets: int = 100
    paired: bool = False            # fake i was made for real i: frame metrics and trajectory error
    clip_model: str | None = None   # local CLIP directory for CLIP-SIM
    sampler_steps: list[int] = field(default_factory=list)  # sample a checkpoint with each of these step counts
    sampler: str | None = None
    guidance: float | None = None
    seed: int = 0
    batch_size: int = 32            # sampling batch
    cache_dir: str = str(Path.home() / ".cache" / "kinema" / "eval")
    device: str = "cpu"


@dataclass
class VideoSet:
    """Videos [N, 3, T, H, W] in [-1, 1] with captions and whatever ground truth the source had."""

    videos: Tensor
    captions: list[str]
    description: str
    positions: Tensor | None = None   # [N, T, max_balls, 2] px
    num_balls: Tensor | None = None   # [N]
    step: int | None = None           # training step of the checkpoint that made them
    sampler_steps: int | None = None


# ------------------------------------------------------------------------------------------ sources


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' (e.g. 64x64) -> (H, W); a one-line error naming --size otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
        raise KinemaError(f"--size must be HxW in pixels, e.g. 64x64, got {text!r}")
    return int(parts[0]), int(parts[1])


def fit_size(video: Tensor, size: tuple[int, int], mode: str) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """Bring one clip [C, T, H, W] to `size` (H, W) by `mode`, with the pixel map p' = p * scale + offset.

    crop: the smallest aspect-preserving resize that covers the size, centre-cropped; pad: the
    largest that fits, centred on black; stretch: resized to the size, aspect ratio not kept.
    Points (x, y) are in pixel units (pixel (i, j) covers [j, j+1] x [i, i+1]).
    """
    import torch.nn.functional as F

    from kinema.data.transforms import crop, resize, resize_to_cover

    (height, width), (h, w) = size, video.shape[-2:]
    if mode == "stretch":
        return resize(video, height, width), np.array([width / w, height / h]), np.zeros(2)
    if mode == "crop":
        covered = resize_to_cover(video, height, width)
        top, left = (covered.shape[-2] - height) // 2, (covered.shape[-1] - width) // 2
        scale = np.array([covered.shape[-1] / w, covered.shape[-2] / h])
        return crop(covered, height, width), scale, np.array([-left, -top], dtype=np.float64)
    if mode == "pad":
        factor = min(height / h, width / w)
        inner = resize(video, max(1, round(h * factor)), max(1, round(w * factor)))
        top, left = (height - inner.shape[-2]) // 2, (width - inner.shape[-1]) // 2
        padding = (left, width - inner.shape[-1] - left, top, height - inner.shape[-2] - top)
        scale = np.array([inner.shape[-1] / w, inner.shape[-2] / h])
        return F.pad(inner, padding, value=-1.0), scale, np.array([left, top], dtype=np.float64)
    raise KinemaError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")


def _fit_set(videos: VideoSet, size: tuple[int, int] | None, mode: str) -> VideoSet:
    """Every clip of a set brought to `size` by `mode` (ball positions moved with the pixels); as is without a size."""
    if size is None:
        return videos
    fitted = [fit_size(clip, size, mode) for clip in videos.videos]
    positions = videos.positions
    if positions is not None:
        scale, offset = (torch.as_tensor(np.stack([fit[i] for fit in fitted]), dtype=positions.dtype) for i in (1, 2))
        positions = positions * scale[:, None, None] + offset[:, None, None]  # [N, T, balls, 2] * [N, 1, 1, 2]
    return VideoSet(torch.stack([clip for clip, _, _ in fitted]), videos.captions,
                    f"{videos.description} ({size[0]}x{size[1]} by {mode})", positions, videos.num_balls,
                    videos.step, videos.sampler_steps)


def _frame_files(folder: Path) -> list[Path]:
    """The image files (IMAGE_SUFFIXES) in a folder, in name order; [] for anything else."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_frame_folder(folder: Path, num_frames: int | None) -> Tensor:
    """One clip [3, T, H, W] in [-1, 1] from the first `num_frames` (default: all) images of a folder."""
    from PIL import Image

    from kinema.video import from_uint8

    files = _frame_files(folder)[:num_frames]
    if num_frames is not None and len(files) < num_frames:
        raise KinemaError(f"{folder}: asked for {num_frames} frames, but it holds {len(files)} images")
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                frames.append(np.asarray(image.convert("RGB")))
        except OSError as error:
            raise KinemaError(f"{file}: not a readable image ({str(error).splitlines()[0]})") from None
    if len({frame.shape for frame in frames}) > 1:
        raise KinemaError(f"{folder}: frames differ in size {sorted({frame.shape[:2] for frame in frames})}")
    return from_uint8(np.stack(frames))


def _read_folder(path: Path, count: int, frames: int | None, stride: int, size: tuple[int, int] | None,
                 mode: str) -> VideoSet:
    from kinema.video.io import READABLE_SUFFIXES, read_video

    files = sorted(p for p in path.iterdir()
                   if (p.suffix.lower() in READABLE_SUFFIXES and p.is_file()) or _frame_files(p))[:count]
    if not files:
        raise KinemaError(f"no videos ({', '.join(READABLE_SUFFIXES)}) or folders of images "
                          f"({', '.join(IMAGE_SUFFIXES)}) in {path}")
    clips = []
    for file in files:
        wanted = None if frames is None else frames * stride
        clip = read_video(file, num_frames=wanted)[0] if file.is_file() else _read_frame_folder(file, wanted)
        clips.append(clip[:, ::stride] if size is None else fit_size(clip[:, ::stride], size, mode)[0])
    shapes = {tuple(c.shape) for c in clips}
    if len(shapes) > 1:
        raise KinemaError(f"videos in {path} differ in shape {sorted(shapes)}; pass --num-frames, and --size HxW "
                          f"(with --resize {'|'.join(RESIZE_MODES)}) to bring them to one size")
    captions = [f.with_suffix(".txt").read_text().strip() if f.with_suffix(".txt").is_file() else "" for f in files]
    described = str(path) if size is None else f"{path} ({size[0]}x{size[1]} by {mode})"
    return VideoSet(torch.stack(clips), captions, described)


def _read_dataset(path: Path, count: int, frames: int | None, stride: int, seed: int) -> VideoSet:
    from kinema.config import load_config
    from kinema.data.registry import build_dataset

    config = load_config(path, [f"data.num_frames={frames * stride}"] if frames else [])
    dataset = build_dataset(config.data_kind, config.data, seed)
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    videos = torch.stack([item["video"][:, ::stride] for item in items])
    positions = num_balls = None
    if "positions" in items[0]:
        positions = torch.stack([item["positions"][::stride] for item in items])
        num_balls = torch.stack([torch.as_tensor(item["num_balls"]) for item in items])
    return VideoSet(videos, [item["caption"] for item in items], f"{path} (data: {config.data_kind}, seed {seed})",
                    positions, num_balls)


def _sample_checkpoint(path: Path, captions: list[str], options: EvalOptions, frames: int | None,
                       steps: int | None) -> VideoSet:
    from kinema.models.pretrained import read_config
    from kinema.pipelines.text_to_video import TextToVideoPipeline

    pipe = TextToVideoPipeline.from_pretrained(path, device=options.device)
    videos = [pipe(captions[i: i + options.batch_size], num_frames=frames, steps=steps, sampler=options.sampler,
                   guidance=options.guidance, seed=options.seed + i, progress=False)
              for i in range(0, len(captions), options.batch_size)]
    step = read_config(path)[1].get("step")
    used = pipe.spec.defaults.steps if steps is None else steps
    return VideoSet(torch.cat(videos), list(captions), f"{path} ({used} sampler steps)", step=step,
                    sampler_steps=used)


def expand_checkpoints(path: Path) -> list[Path]:
    """A checkpoint directory itself, or every step_* checkpoint (in step order) in a checkpoints folder."""
    steps = sorted(p for p in path.glob("step_*") if (p / "config.json").is_file())
    return steps if steps and not (path / "config.json").is_file() else [path]


def load_source(source: str | Path, options: EvalOptions, *, captions: list[str] | None = None,
                frames: int | None = None, sampler_steps: int | None = None) -> VideoSet:
    """Read a folder of videos, a dataset config (.yaml) or (with `captions`) sample a checkpoint directory."""
    path = Path(source)
    count, frames = options.num_samples, frames or options.num_frames
    if count < 2:
        raise KinemaError(f"--num-samples must be at least 2, got {count}")
    if options.resize not in RESIZE_MODES:
        raise KinemaError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {options.resize!r}")
    if not path.exists():
        raise KinemaError(f"eval source not found: {path}")
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return _fit_set(_read_dataset(path, count, frames, options.real_stride if captions is None else 1, options.seed),
                        options.size, options.resize)
    if path.is_dir() and (path / "config.json").is_file():
        if captions is None:
            raise KinemaError(f"{path} is a checkpoint: it can only be the generated (--fake) set")
        prompts = [captions[i % len(captions)] for i in range(count)]
        return _fit_set(_sample_checkpoint(path, prompts, options, frames, sampler_steps), options.size, options.resize)
    if path.is_dir():
        return _read_folder(path, count, frames, options.real_stride if captions is None else 1, options.size,
                            options.resize)
    raise KinemaError(f"eval source {path} is neither a folder of videos, a .yaml config nor a checkpoint")


# ------------------------------------------------------------------------------------------ features


def download_cached(url: str, cache_dir: Path | None = None) -> Path:
    """Fetch `url` once into the cache (default ~/.cache/kinema/downloads) and return the local file."""
    from urllib.error import URLError

    cache_dir = cache_dir or Path.home() / ".cache" / "kinema" / "downloads"
    target = cache_dir / Path(url.split("?")[0]).name
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except (URLError, OSError, ValueError) as error:
            raise KinemaError(f"cannot download {url}: {str(error).splitlines()[0]}") from None
    return target


def load_extractor(options: EvalOptions):
    """The feature extractor named by `options.features`."""
    from kinema.metrics.features import I3DFeatures, KinemaVideoFeatures

    if options.features == "kinema":
        return KinemaVideoFeatures()
    if options.features.startswith(("http://", "https://")):
        return I3DFeatures(download_cached(options.features), options.i3d_preset, device=options.device)
    path = Path(options.features)
    if path.is_file():
        return I3DFeatures(path, options.i3d_preset, device=options.device)
    if path.is_dir():
        return KinemaVideoFeatures(path)
    raise KinemaError(f"--features must be 'kinema', a feature-network directory or an I3D TorchScript file, "
                      f"got {options.features}")


def _features(extractor, videos: Tensor) -> dict[str, np.ndarray]:
    from einops import rearrange

    out = {"video": extractor.videos(videos)}
    if extractor.frames is not None:
        out["frame"] = extractor.frames(rearrange(videos, "b c t h w -> (b t) c h w"))
    return out


def real_features(real: VideoSet, source: str, extractor, options: EvalOptions) -> dict[str, np.ndarray]:
    """Features of the real set and of its time-shuffled copy ("shuffled"), cached on disk per set and extractor."""
    from kinema.metrics.controls import shuffled_in_time

    key = json.dumps([str(Path(source).resolve()), _source_stamp(Path(source)), len(real.videos),
                      list(real.videos.shape[1:]), options.real_stride, options.seed, extractor.name,
                      getattr(extractor, "preset", ""), getattr(extractor, "fingerprint", "")])
    file = Path(options.cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    if file.is_file():
        with np.load(file, allow_pickle=False) as cached:
            return {name: cached[name] for name in cached.files}
    features = _features(extractor, real.videos)
    features["shuffled"] = extractor.videos(shuffled_in_time(real.videos, options.seed))
    with atomic_path(file) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **features)
    return features


def _source_stamp(path: Path) -> list:
    """What identifies a source's content: file sizes and times of a folder, the text of a config."""
    if path.is_file():
        return [path.read_text()]
    return sorted([p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in path.iterdir() if p.is_file())


# ------------------------------------------------------------------------------------------ metrics


def _entry(value: float, ci: tuple[float, float] | None = None) -> dict:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {"value": "unavailable", "reason": "nothing to measure (e.g. no balls or too few frames)"}
    entry = {"value": float(value)}
    if ci is not None:
        entry["ci95"] = [float(ci[0]), float(ci[1])]
    return entry


def _unavailable(reason: str) -> dict:
    return {"value": "unavailable", "reason": reason}


def _mean(values: Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _ball_entry(values: Tensor, not_applicable: list[str]) -> dict:
    """A ball score: the mean over the clips it applies to; "not applicable" and why when it applies to none."""
    reasons = [reason for reason in not_applicable if reason]
    if not reasons:
        return _entry(_mean(values))
    common = max(set(reasons), key=reasons.count)
    if len(reasons) == len(not_applicable):
        return {"value": "not applicable", "reason": f"{common} (all {len(reasons)} clips)"}
    return {**_entry(_mean(values)), "not_applicable": f"{len(reasons)} of {len(not_applicable)} clips: {common}"}


def set_scores(videos: VideoSet, lpips=None, target: VideoSet | None = None) -> dict[str, dict]:
    """Scores of one set on its own: temporal, motion, ball identity and physics (+ LPIPS-T, trajectory error)."""
    from kinema.metrics.frame import lpips_t
    from kinema.metrics.physics import ball_scores
    from kinema.metrics.temporal import temporal_scores

    scores = {name: _entry(_mean(v)) for name, v in temporal_scores(videos.videos).items()}
    scores["lpips_t"] = _entry(_mean(lpips_t(videos.videos, lpips[0]))) if lpips and lpips[0] else \
        _unavailable(f"LPIPS not available: {lpips[1] if lpips else 'not requested'}")
    positions = counts = None
    if target is not None and target.positions is not None:
        positions, counts = target.positions, target.num_balls
    balls = ball_scores(videos.videos, target_positions=positions, target_counts=counts)
    scores.update({name: _ball_entry(values, balls.not_applicable) for name, values in balls.scores.items()})
    return scores


def clip_similarity(videos: VideoSet, model_path: str | None) -> dict:
    """CLIP-SIM entry: mean over clips and frames of cos(CLIP image, CLIP text), or unavailable."""
    if model_path is None:
        return _unavailable("no local CLIP model given (--clip-model DIR)")
    if not any(videos.captions):
        return _unavailable("the generated set has no captions")
    from kinema.metrics.text_alignment import clip_sim

    return _entry(_mean(clip_sim(videos.videos, videos.captions, model_path)))


def distances(real: dict[str, np.ndarray], fake: dict[str, np.ndarray], options: EvalOptions) -> dict[str, dict]:
    """FVD, KVD and frame FID with bootstrap intervals."""
    from kinema.metrics.distances import bootstrap_interval, frechet_distance_from_features, kernel_distance

    def with_ci(a: np.ndarray, b: np.ndarray) -> dict:
        ci = bootstrap_interval(frechet_distance_from_features, a, b, options.bootstrap, seed=options.seed) \
            if options.bootstrap >= 2 else None
        return _entry(frechet_distance_from_features(a, b), ci)

    out = {"fvd": with_ci(real["video"], fake["video"]),
           "kvd": _entry(kernel_distance(real["video"], fake["video"], options.kvd_subsets, seed=options.seed))}
    out["frame_fid"] = with_ci(real["frame"], fake["frame"]) if "frame" in real else \
        _unavailable("the feature extractor has no per-frame counterpart")
    return out


def real_controls(real: VideoSet, features: dict[str, np.ndarray], extractor, options: EvalOptions) -> dict:
    """The real set's FVD split baseline, shuffled-time control and domain check (kinema.metrics.controls)."""
    from kinema.metrics.controls import domain_warnings, shuffled_control, split_baseline

    domain, warnings = domain_warnings(getattr(extractor, "metadata", {}), tuple(real.videos.shape[1:]),
                                       features["video"])
    return {"fvd_real_split": split_baseline(features["video"], options.control_splits, options.seed),
            "fvd_real_vs_shuffled": shuffled_control(features["video"], features["shuffled"]),
            "domain": domain, "warnings": warnings}


def paired_scores(real: VideoSet, fake: VideoSet, lpips) -> dict[str, dict]:
    """PSNR, SSIM and LPIPS of fake i against real i."""
    from kinema.metrics.frame import lpips as lpips_distance
    from kinema.metrics.frame import psnr, ssim

    if real.videos.shape != fake.videos.shape:
        reason = f"paired sets differ in shape: {tuple(real.videos.shape)} vs {tuple(fake.videos.shape)}"
        return {name: _unavailable(reason) for name in ("psnr", "ssim", "lpips")}
    return {"psnr": _entry(_mean(psnr(fake.videos, real.videos))),
            "ssim": _entry(_mean(ssim(fake.videos, real.videos))),
            "lpips": _entry(_mean(lpips_distance(fake.videos, real.videos, lpips[0]))) if lpips[0] else
            _unavailable(f"LPIPS not available: {lpips[1]}")}


def evaluate(real_source: str | Path, fake_sources: list[str | Path], options: EvalOptions) -> list[dict]:
    """One report per generated set (each checkpoint x sampler-steps count) against one real set."""
    from kinema.metrics.controls import separation_warnings
    from kinema.metrics.frame import load_lpips

    for source in fake_sources:
        if not Path(source).exists():
            raise KinemaError(f"eval source not found: {source}")
    real = load_source(real_source, options)
    extractor = load_extractor(options)
    real_feats = real_features(real, str(real_source), extractor, options)
    controls = real_controls(real, real_feats, extractor, options)
    lpips = load_lpips()
    reference = {"fvd": controls["fvd_real_split"], **set_scores(real, lpips)}
    fakes: list[tuple[str, int | None]] = []
    for source in fake_sources:
        for path in expand_checkpoints(Path(source)):
            is_checkpoint = (path / "config.json").is_file()
            for steps in (options.sampler_steps or [None]) if is_checkpoint else [None]:
                fakes.append((str(path), steps))
    reports = []
    for source, steps in fakes:
        fake = load_source(source, options, captions=real.captions, frames=real.videos.shape[2],
                           sampler_steps=steps)
        metrics = distances(real_feats, _features(extractor, fake.videos), options)
        metrics.update(paired_scores(real, fake, lpips) if options.paired else
                       {name: _unavailable("unpaired sets (pass --paired when fake i was made for real i)")
                        for name in ("psnr", "ssim", "lpips")})
        metrics.update(set_scores(fake, lpips, real if options.paired else None))
        metrics["clip_sim"] = clip_similarity(fake, options.clip_model)
        warnings = controls["warnings"] + separation_warnings(
            metrics["fvd"]["value"], controls["fvd_real_split"], controls["fvd_real_vs_shuffled"], len(fake.videos))
        reports.append({
            "real": real.description, "fake": fake.description, "step": fake.step,
            "sampler_steps": fake.sampler_steps, "num_samples": len(fake.videos),
            "shape": list(fake.videos.shape[1:]), "features": extractor.name,
            "options": {k: v for k, v in asdict(options).items() if k != "cache_dir"},
            "metrics": metrics, "real_reference": reference,
            "controls": {k: v for k, v in controls.items() if k != "warnings"}, "warnings": warnings,
        })
    return reports


# ------------------------------------------------------------------------------------------ output


def _cell(entry: dict | None) -> str:
    if entry is None:
        return ""
    value = entry["value"]
    if isinstance(value, str):
        return value
    text = f"{value:.4g}"
    if "std" in entry:  # a spread over repeats, e.g. the FVD split baseline
        return text + f" ± {entry['std']:.3g} [{entry['min']:.4g}, {entry['max']:.4g}]"
    return text + (f" [{entry['ci95'][0]:.4g}, {entry['ci95'][1]:.4g}]" if "ci95" in entry else "")


def markdown_table(reports: list[dict]) -> str:
    """One row per metric, one column per generated set, and the real set's own value for reference."""
    headers = [Path(r["fake"].split(" (")[0]).name + (f" ({r['sampler_steps']} steps)" if r["sampler_steps"] else "")
               for r in reports]
    lines = ["| metric | " + " | ".join(headers) + " | real |", "|---" * (len(reports) + 2) + "|"]
    for name in reports[0]["metrics"]:
        arrow = " (lower is better)" if name in LOWER_IS_BETTER else ""
        cells = [_cell(r["metrics"][name]) for r in reports]
        real = _cell(reports[0]["real_reference"].get(name))
        lines.append(f"| {name}{arrow} | " + " | ".join(cells) + f" | {real} |")
    notes = {f"{name}: {entry['reason']}" for r in reports for name, entry in r["metrics"].items() if "reason" in entry}
    return "\n".join(lines + [""] + _control_lines(reports[0]["controls"]) + [f"- {note}" for note in sorted(notes)]
                     + [f"- warning: {w}" for w in dict.fromkeys(w for r in reports for w in r["warnings"])]) + "\n"


def _control_lines(controls: dict) -> list[str]:
    """The FVD controls under the table: split baseline (the fvd row's real column) and shuffled-time control."""
    split = controls["fvd_real_split"]
    halves = f" ({split['clips_per_half']} clips each, {split['splits']} splits)" if "splits" in split else ""
    return [f"- fvd real column: FVD between two random halves of the real set{halves}, mean ± std [min, max]: "
            f"{_cell(split)}",
            f"- fvd shuffled-time control: real set vs the same clips shuffled in time: "
            f"{_cell(controls['fvd_real_vs_shuffled'])}"]


def plot_reports(reports: list[dict], path: str | Path, metrics: tuple[str, ...] = ("fvd", "frame_fid",
                 "count_constancy", "color_persistence", "physics_plausibility", "motion_consistency")) -> Path:
    """Metric vs training step (several checkpoints) or vs sampler steps, one panel per metric, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_sampler = len({r["sampler_steps"] for r in reports}) > 1
    axis = "sampler_steps" if by_sampler else "step"
    x = [r[axis] if r[axis] is not None else i for i, r in enumerate(reports)]
    figure, panels = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.0), squeeze=False)
    for panel, name in zip(panels[0], metrics):
        points = [(xi, r["metrics"][name]["value"]) for xi, r in zip(x, reports)
                  if not isinstance(r["metrics"].get(name, {}).get("value", ""), str)]
        if points:
            panel.plot(*zip(*sorted(points)), marker="o")
        panel.set_title(name + (" (lower better)" if name in LOWER_IS_BETTER else ""), fontsize=9)
        panel.set_xlabel("sampler steps" if by_sampler else "training step")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return Path(path)


def write_reports(reports: list[dict], out: str | Path, plot: bool = True) -> list[Path]:
    """Write OUT (JSON: one report, or a list), OUT with .md (table) and, for several reports, a .png plot."""
    out = Path(out)
    write_text_atomic(out, json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    table = out.with_suffix(".md")
    write_text_atomic(table, markdown_table(reports))
    written = [out, table]
    if plot and len(reports) > 1:
        written.append(plot_reports(reports, out.with_suffix(".png")))
    return written
