"""`kinema eval`: compare generated videos with real ones on every metric of kinema.metrics; JSON, Markdown, plot.

Sources (`load_source`): a folder of videos (mp4 / webm / gif, sorted by name; captions from NAME.txt
beside a video when present), a YAML config whose `data:` section names a dataset (clips 0..N-1 of
it, with ground truth such as ball positions), or, for generated videos, a model or training
checkpoint directory that is sampled with TextToVideoPipeline on the real set's captions. A
checkpoints folder (holding step_* directories) stands for all of its checkpoints.

Per generated set (`evaluate`): FVD and KVD on clip features and frame FID on frame features
(bootstrap 95% intervals for FVD and frame FID), temporal and motion scores, ball identity and
physics scores, CLIP-SIM with a local CLIP model, and, for paired sets (fake i made for real i),
PSNR / SSIM / LPIPS and the ball trajectory error against the real clip's ground truth. A metric
that cannot be computed says "unavailable" and why; no number is made up. Real-set features are
cached on disk, keyed by the source, sample count, frames, stride, seed and extractor.
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

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
LOWER_IS_BETTER = {"fvd", "kvd", "frame_fid", "flicker", "warping_error", "lpips", "lpips_t", "color_drift",
                   "gravity_residual", "roughness", "target_error"}


@dataclass
class EvalOptions:
    """What `kinema eval` computes and how (CLI flags of the same names)."""

    num_samples: int = 256          # clips per set
    num_frames: int | None = None   # frames per clip (default: the real set's)
    real_stride: int = 1            # take every k-th frame of real videos
    features: str = "kinema"        # 'kinema' (shipped network), a feature-net directory, an I3D .pt file or URL
    i3d_preset: str = "stylegan-v"  # stylegan-v | videogpt (for an I3D file)
    bootstrap: int = 100            # bootstrap rounds for the intervals (0: none)
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


def _read_folder(path: Path, count: int, frames: int | None, stride: int) -> VideoSet:
    from kinema.video import read_video

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)[:count]
    if not files:
        raise KinemaError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {path}")
    clips = []
    for file in files:
        clip, _ = read_video(file, num_frames=None if frames is None else frames * stride)
        clips.append(clip[:, ::stride])
    shapes = {tuple(c.shape) for c in clips}
    if len(shapes) > 1:
        raise KinemaError(f"videos in {path} differ in shape {sorted(shapes)}; pass --num-frames and use one size")
    captions = [f.with_suffix(".txt").read_text().strip() if f.with_suffix(".txt").is_file() else "" for f in files]
    return VideoSet(torch.stack(clips), captions, str(path))


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
    used = steps or pipe.config.sample.steps
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
    if not path.exists():
        raise KinemaError(f"eval source not found: {path}")
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return _read_dataset(path, count, frames, options.real_stride if captions is None else 1, options.seed)
    if path.is_dir() and (path / "config.json").is_file():
        if captions is None:
            raise KinemaError(f"{path} is a checkpoint: it can only be the generated (--fake) set")
        prompts = [captions[i % len(captions)] for i in range(count)]
        return _sample_checkpoint(path, prompts, options, frames, sampler_steps)
    if path.is_dir():
        return _read_folder(path, count, frames, options.real_stride if captions is None else 1)
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
    """Features of the real set, from the on-disk cache when the same set was measured before."""
    key = json.dumps([str(Path(source).resolve()), _source_stamp(Path(source)), len(real.videos),
                      list(real.videos.shape[1:]), options.real_stride, options.seed, extractor.name,
                      getattr(extractor, "preset", "")])
    file = Path(options.cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    if file.is_file():
        with np.load(file, allow_pickle=False) as cached:
            return {name: cached[name] for name in cached.files}
    features = _features(extractor, real.videos)
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
    scores.update({name: _entry(_mean(values)) for name, values in balls.items()})
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
    from kinema.metrics.frame import load_lpips

    for source in fake_sources:
        if not Path(source).exists():
            raise KinemaError(f"eval source not found: {source}")
    real = load_source(real_source, options)
    extractor = load_extractor(options)
    real_feats = real_features(real, str(real_source), extractor, options)
    lpips = load_lpips()
    reference = set_scores(real, lpips)
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
        reports.append({
            "real": real.description, "fake": fake.description, "step": fake.step,
            "sampler_steps": fake.sampler_steps, "num_samples": len(fake.videos),
            "shape": list(fake.videos.shape[1:]), "features": extractor.name,
            "options": {k: v for k, v in asdict(options).items() if k != "cache_dir"},
            "metrics": metrics, "real_reference": reference,
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
    return "\n".join(lines + [""] + [f"- {note}" for note in sorted(notes)]) + "\n"


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
