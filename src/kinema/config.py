"""Configuration: dataclasses for every section, YAML files and `key=value` overrides (OmegaConf).

`model:` and `data:` pick a registered class by `name` / `kind`; their other keys fill that class's
config dataclass, so an unknown key or a bad value is caught with the key's full name.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kinema.errors import KinemaError


@dataclass
class DiffusionConfig:
    """Noise schedule and training target (see kinema.diffusion)."""

    schedule: str = "cosine"           # linear | cosine | flow
    shift: float = 1.0                 # resolution shift of the schedule (1 = none)
    prediction: str = "v"              # eps | v | x0 | flow
    per_frame_noise: bool = False      # independent noise level per frame (diffusion forcing)


@dataclass
class TrainConfig:
    """Optimisation, logging and checkpointing of `kinema train`."""

    steps: int = 2000                  # optimizer steps in total
    batch_size: int = 8
    lr: float = 3e-4                   # peak AdamW learning rate
    lr_schedule: str = "cosine"        # constant | cosine (decay to 10% after warmup)
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0             # max global gradient norm
    ema_decay: float = 0.999
    mixed_precision: str = "no"        # no | fp16 | bf16
    gradient_checkpointing: bool = False
    caption_dropout: float = 0.1       # probability of training on the empty prompt (for guidance)
    text_encoder: str = "minilm"       # 'minilm', a local path or a hub id of a transformers text model
    seed: int = 0
    num_workers: int = 0               # DataLoader worker processes
    log_every: int = 25
    sample_every: int = 500            # write a sample video every N steps (0 = never)
    checkpoint_every: int = 250
    keep_checkpoints: int = 2          # older checkpoints are deleted
    output_dir: str = "runs/balls"
    init_from: str = ""                # fine-tune: start from this model/checkpoint directory's (EMA) weights
    time_limit_minutes: float = 0.0    # stop (with a checkpoint) after this much training time (0 = no limit)


@dataclass
class SampleConfig:
    """Defaults for generation; every field can be overridden on the command line."""

    sampler: str = "dpmpp_2m"          # ddpm | ddim | dpmpp_2m | euler | heun
    steps: int = 25
    guidance: float = 4.0              # classifier-free guidance scale (1 = off)
    direction_guidance: float = 0.0    # push toward the direction of a prompt's motion words (0 = off)
    fps: float = 8.0
    prompts: list[str] = field(default_factory=lambda: ["a red ball bounces to the left",
                                                         "a green ball and a blue ball bounce"])


@dataclass
class Config:
    """A whole Kinema run: which model and data, how to diffuse, train and sample."""

    model_name: str
    model: Any
    data_kind: str
    data: Any
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def to_dict(self) -> dict:
        """Plain nested dict, as in the YAML files (model.name and data.kind included)."""
        return {
            "model": {"name": self.model_name, **asdict(self.model)},
            "data": {"kind": self.data_kind, **asdict(self.data)},
            "diffusion": asdict(self.diffusion),
            "train": asdict(self.train),
            "sample": asdict(self.sample),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a field's type annotation; convert lists to tuples where the field is a tuple."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        return _coerce(value, next(a for a in options if a is not type(None)), key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise KinemaError(f"config key '{key}' must be a list, got {value!r}")
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis] or [Any]
        items = [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and not (isinstance(value, annotation) and
                                                      not (annotation is int and isinstance(value, bool))):
        raise KinemaError(f"config key '{key}' must be {annotation.__name__}, got {value!r}")
    return value


def dataclass_from_dict(cls: type, values: dict, prefix: str) -> Any:
    """Build dataclass `cls` from `values`, naming the full key (`prefix.key`) of any unknown or bad entry."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise KinemaError(f"unknown config key '{prefix}.{key}' (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        raise KinemaError(message if prefix in message else f"{prefix}: {message}") from None


def config_from_dict(values: dict) -> Config:
    """Validate a nested dict (as in YAML) into a `Config`."""
    from kinema.data.registry import DATASETS
    from kinema.models.registry import MODELS

    sections = {"model", "data", "diffusion", "train", "sample"}
    for key in values:
        if key not in sections:
            raise KinemaError(f"unknown config section '{key}' (known: {', '.join(sorted(sections))})")
    model = dict(values.get("model") or {})
    model_name = model.pop("name", "video_unet")
    if model_name not in MODELS:
        raise KinemaError(f"config key 'model.name': unknown model '{model_name}' (choose from {', '.join(MODELS)})")
    data = dict(values.get("data") or {})
    data_kind = data.pop("kind", "balls")
    if data_kind not in DATASETS:
        raise KinemaError(f"config key 'data.kind': unknown dataset '{data_kind}' (choose from {', '.join(DATASETS)})")
    config = Config(
        model_name=model_name,
        model=dataclass_from_dict(MODELS[model_name].config_class, model, "model"),
        data_kind=data_kind,
        data=dataclass_from_dict(DATASETS[data_kind].config_class, data, "data"),
        diffusion=dataclass_from_dict(DiffusionConfig, values.get("diffusion") or {}, "diffusion"),
        train=dataclass_from_dict(TrainConfig, values.get("train") or {}, "train"),
        sample=dataclass_from_dict(SampleConfig, values.get("sample") or {}, "sample"),
    )
    _check_choices(config)
    return config


def _check_choices(config: Config) -> None:
    from kinema.diffusion import PREDICTIONS, SAMPLERS, build_schedule

    build_schedule(config.diffusion.schedule, config.diffusion.shift)
    if config.diffusion.prediction not in PREDICTIONS:
        raise KinemaError(f"config key 'diffusion.prediction': unknown '{config.diffusion.prediction}' "
                          f"(choose from {', '.join(PREDICTIONS)})")
    if config.sample.sampler not in SAMPLERS:
        raise KinemaError(f"config key 'sample.sampler': unknown '{config.sample.sampler}' "
                          f"(choose from {', '.join(SAMPLERS)})")
    for key, value, choices in [("train.mixed_precision", config.train.mixed_precision, ("no", "fp16", "bf16")),
                                ("train.lr_schedule", config.train.lr_schedule, ("constant", "cosine"))]:
        if value not in choices:
            raise KinemaError(f"config key '{key}': unknown '{value}' (choose from {', '.join(choices)})")
    for key in ("steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
        if getattr(config.train, key) < 1:
            raise KinemaError(f"config key 'train.{key}' must be at least 1")
    for key, value in (("train.time_limit_minutes", config.train.time_limit_minutes),
                       ("sample.direction_guidance", config.sample.direction_guidance)):
        if value < 0:
            raise KinemaError(f"config key '{key}' must be at least 0, got {value}")


def _merge_overrides(values, overrides: list[str]) -> dict:
    """Apply `key=value` overrides to a nested dict or OmegaConf node; a malformed one is a one-line error."""
    for item in overrides:
        if "=" not in item:
            raise KinemaError(f"override '{item}' is not of the form key=value")
    try:
        merged = OmegaConf.merge(values, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as error:
        raise KinemaError(f"bad config override: {str(error).splitlines()[0]}") from None


def with_overrides(config: Config, overrides: list[str]) -> Config:
    """A copy of `config` with `key=value` overrides applied and validated."""
    return config_from_dict(_merge_overrides(OmegaConf.create(config.to_dict()), overrides))


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or the defaults when `path` is None) and apply `key=value` overrides."""
    base = OmegaConf.create({})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise KinemaError(f"config file not found: {path}")
        try:
            base = OmegaConf.load(path)
        except Exception as error:  # yaml's errors are many-typed; report the first line
            raise KinemaError(f"cannot parse config {path}: {str(error).splitlines()[0]}") from None
    return config_from_dict(_merge_overrides(base, overrides))
