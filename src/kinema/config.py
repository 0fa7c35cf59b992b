"""Configuration: dataclasses for every section, YAML files and `key=value` overrides (OmegaConf).

`model:` and `data:` pick a registered class by `name` / `kind`; their other keys fill that class's
config dataclass, so an unknown key or a bad value is caught with the key's full name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kinema.diffusion.frame_tasks import FRAME_TASKS
from kinema.diffusion.rejection import RETRIES
from kinema.errors import KinemaError


def _checked(default: Any, rule: str, test: Callable[[Any], bool], each: bool = True) -> Any:
    """A dataclass field whose value `dataclass_from_dict` checks (`test`, on each item of a list when `each`)."""
    default_kw = {"default_factory": default} if callable(default) else {"default": default}
    return field(**default_kw, metadata={"rule": rule, "test": test, "each": each})


def at_least(low: float, default: Any) -> Any:
    """A field that must be >= `low` (every item, for a list); `default` may be a factory."""
    return _checked(default, f"at least {low}", lambda v: v >= low)


def above(low: float, default: Any) -> Any:
    """A field that must be > `low`."""
    return _checked(default, f"greater than {low}", lambda v: v > low)


def within(low: float, high: float, default: Any) -> Any:
    """A field that must lie in [`low`, `high`] (e.g. a probability)."""
    return _checked(default, f"in [{low}, {high}]", lambda v: low <= v <= high)


def one_of(choices: tuple[str, ...], default: Any) -> Any:
    """A field whose value (or every item) must be one of `choices`."""
    return _checked(default, f"one of {', '.join(choices)}", lambda v: v in choices)


def non_empty(default: Any) -> Any:
    """A string or list field that must not be empty."""
    return _checked(default, "non-empty", lambda v: len(v) > 0, each=False)


def check_field(spec: dataclasses.Field, value: Any, key: str) -> None:
    """Raise a one-line KinemaError naming `key` when `value` breaks the rule in `spec`'s metadata."""
    if "test" not in spec.metadata:
        return
    items = value if spec.metadata["each"] and isinstance(value, (list, tuple)) else [value]
    if not all(spec.metadata["test"](item) for item in items):
        raise KinemaError(f"config key '{key}' must be {spec.metadata['rule']}, got {value!r}")


@dataclass
class DiffusionConfig:
    """Noise schedule and training target (see kinema.diffusion)."""

    schedule: str = "cosine"           # linear | cosine | flow
    shift: float = above(0, 1.0)       # resolution shift of the schedule (1 = none)
    prediction: str = "v"              # eps | v | x0 | flow
    per_frame_noise: bool = False      # independent noise level per frame (diffusion forcing)
    residual_of: str = ""              # a control map, e.g. low_res_x2: diffuse clip - its clean map (SR3 residual)


@dataclass
class TemporalLossConfig:
    """Weights of the temporal regularisers on the model's x0 estimate (kinema.diffusion.temporal_loss; 0 = off)."""

    pixel: float = at_least(0, 0.0)    # frame-difference consistency in pixels
    feature: float = at_least(0, 0.0)  # the same on the shipped video feature network's per-frame features
    flow: float = at_least(0, 0.0)     # warping residual along the clip's optical flow, occlusions masked


@dataclass
class TrainConfig:
    """Optimisation, logging and checkpointing of `kinema train`."""

    steps: int = at_least(1, 2000)     # optimizer steps in total
    batch_size: int = at_least(1, 8)
    grad_accum: int = at_least(1, 1)   # micro-batches of batch_size per optimizer step (the step sees their sum)
    lr: float = above(0, 3e-4)         # peak AdamW learning rate
    lr_schedule: str = one_of(("constant", "cosine"), "cosine")  # cosine: decay to 10% after warmup
    warmup_steps: int = at_least(0, 100)
    weight_decay: float = at_least(0, 0.01)
    grad_clip: float = above(0, 1.0)   # max global gradient norm
    ema_decay: float = within(0, 1, 0.999)
    mixed_precision: str = one_of(("no", "fp16", "bf16"), "no")
    gradient_checkpointing: bool = False
    compile: bool = False              # torch.compile the denoiser (a GPU speed-up; same results within tolerance)
    caption_dropout: float = within(0, 1, 0.1)  # probability of training on the empty prompt (for guidance)
    label_dropout: float = within(0, 1, 0.1)  # probability of training without the class label (class guidance)
    control_dropout: float = within(0, 1, 0.1)  # probability of training without each control map / knob
    frame_tasks: tuple[str, ...] = one_of(FRAME_TASKS, ())  # each sample draws one (kinema.diffusion.frame_tasks)
    text_encoder: str = non_empty("minilm")  # 'minilm', a local path or a hub id of a transformers text model
    seed: int = at_least(0, 0)
    num_workers: int = at_least(0, 0)  # DataLoader worker processes
    log_every: int = at_least(1, 25)
    sample_every: int = at_least(0, 500)  # write a sample video every N steps (0 = never)
    checkpoint_every: int = at_least(1, 250)
    keep_checkpoints: int = at_least(1, 2)  # older checkpoints are deleted
    output_dir: str = non_empty("runs/balls")
    init_from: str = ""                # fine-tune: start from this model/checkpoint directory's (EMA) weights
    time_limit_minutes: float = at_least(0, 0.0)  # stop (with a checkpoint) after this much training time (0 = none)
    temporal_loss: TemporalLossConfig = field(default_factory=TemporalLossConfig)  # e.g. {pixel: 0.1, flow: 0.05}


@dataclass
class SampleConfig:
    """Defaults for generation; every field can be overridden on the command line."""

    sampler: str = "dpmpp_2m"          # ddpm | ddim | dpmpp_2m | euler | heun
    steps: int = at_least(1, 25)
    time_grid: str = "uniform"         # uniform | trailing | karras | shifted: how the sampler's times are spaced
    guidance: float = at_least(0, 4.0)  # classifier-free guidance scale (1 = off)
    edit_guidance: float = at_least(0, 10.0)  # the same for edits (strength < 1): the edit direction amplified
    direction_guidance: float = at_least(0, 0.0)  # push toward the direction of a prompt's motion words (0 = off)
    identity_guidance: float = at_least(0, 0.0)  # keep each object's count and colour over the frames (0 = off)
    edit_identity_guidance: float = at_least(0, 0.0)  # the same for edits, toward the colours the prompt names
    animate_identity_guidance: float = at_least(0, 0.0)  # the same animating one given frame, toward its objects
    camera_warp: float = _checked(0.0, "in [0, 1)", lambda v: 0 <= v < 1)  # 0 = off; else a camera move starts
    # from frame 0 warped along it, noised to this time (kinema.control.camera.camera_warped)
    physics_start: float = _checked(0.0, "in [0, 1)", lambda v: 0 <= v < 1)  # 0 = off; else a video starts from a
    # first video's frame-0 objects run forward by the simulator, noised to this time (kinema.control.simulated_start)
    animate_physics_start: float = _checked(0.0, "in [0, 1)", lambda v: 0 <= v < 1)  # the same animating one frame
    retries: int = at_least(0, RETRIES)  # fresh draws of a video whose balls break (kinema.diffusion.rejection)
    fps: float = above(0, 8.0)
    prompts: list[str] = non_empty(lambda: ["a red ball bounces to the left", "a green ball and a blue ball bounce"])


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
    autoencoder: str = ""  # model.autoencoder: the autoencoder directory of a latent model ('' = pixels)

    def to_dict(self) -> dict:
        """Plain nested dict, as in the YAML files (model.name, model.autoencoder and data.kind included)."""
        return {
            "model": {"name": self.model_name, **({"autoencoder": self.autoencoder} if self.autoencoder else {}),
                      **asdict(self.model)},
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
    if dataclasses.is_dataclass(annotation):  # a nested section, e.g. train.temporal_loss
        return dataclass_from_dict(annotation, value, key)
    if origin is typing.Union or origin is getattr(__import__("types"), "UnionType", None):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        return _coerce(value, next(a for a in options if a is not type(None)), key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise KinemaError(f"config key '{key}' must be a list, got {value!r}")
        args = typing.get_args(annotation)
        fixed = origin is tuple and Ellipsis not in args and len(args) > 0
        if fixed and len(value) != len(args):
            raise KinemaError(f"config key '{key}' must be a list of {len(args)} values, got {value!r}")
        items = [_coerce(v, args[i] if fixed else (args or [Any])[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, float) and not math.isfinite(value):
        raise KinemaError(f"config key '{key}' must be a finite number, got {value!r}")
    if annotation in (int, float, str, bool) and not (isinstance(value, annotation) and
                                                      not (annotation is int and isinstance(value, bool))):
        raise KinemaError(f"config key '{key}' must be {annotation.__name__}, got {value!r}")
    return value


def dataclass_from_dict(cls: type, values: dict, prefix: str) -> Any:
    """Build dataclass `cls` from `values`, naming the full key (`prefix.key`) of any unknown or bad entry."""
    if not isinstance(values, Mapping):
        raise KinemaError(f"config section '{prefix}' must be a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise KinemaError(f"unknown config key '{prefix}.{key}' (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in values.items()}
    for key, value in kwargs.items():
        check_field(known[key], value, f"{prefix}.{key}")
    try:
        return cls(**kwargs)
    except ValueError as error:  # the class's own checks (__post_init__); KinemaError is a ValueError
        message = str(error).replace(f"{cls.__name__}.", f"{prefix}.").replace(f"{cls.__name__}:", f"{prefix}:")
        raise KinemaError(message if prefix in message else f"{prefix}: {message}") from None


def config_from_dict(values: dict) -> Config:
    """Validate a nested dict (as in YAML) into a `Config`."""
    from kinema.data.registry import DATASETS
    from kinema.models.registry import MODELS

    sections = {"model", "data", "diffusion", "train", "sample"}
    if not isinstance(values, Mapping):
        raise KinemaError(f"a config must be a mapping of sections ({', '.join(sorted(sections))}), "
                          f"got {type(values).__name__}")
    for key in values:
        if key not in sections:
            raise KinemaError(f"unknown config section '{key}' (known: {', '.join(sorted(sections))})")
        if values[key] is not None and not isinstance(values[key], Mapping):
            raise KinemaError(f"config section '{key}' must be a mapping of keys to values, got {values[key]!r}")
    model = dict(values.get("model") or {})
    model_name = model.pop("name", "video_unet")
    autoencoder = model.pop("autoencoder", "")
    if not isinstance(autoencoder, str):
        raise KinemaError(f"config key 'model.autoencoder' must be an autoencoder directory (a path), got "
                          f"{autoencoder!r}")
    if not isinstance(model_name, str) or model_name not in MODELS:
        raise KinemaError(f"config key 'model.name': unknown model '{model_name}' (choose from {', '.join(MODELS)})")
    data = dict(values.get("data") or {})
    data_kind = data.pop("kind", "balls")
    if not isinstance(data_kind, str) or data_kind not in DATASETS:
        raise KinemaError(f"config key 'data.kind': unknown dataset '{data_kind}' (choose from {', '.join(DATASETS)})")
    config = Config(
        model_name=model_name,
        model=dataclass_from_dict(MODELS[model_name].config_class, model, "model"),
        data_kind=data_kind,
        data=dataclass_from_dict(DATASETS[data_kind].config_class, data, "data"),
        diffusion=dataclass_from_dict(DiffusionConfig, values.get("diffusion") or {}, "diffusion"),
        train=dataclass_from_dict(TrainConfig, values.get("train") or {}, "train"),
        sample=dataclass_from_dict(SampleConfig, values.get("sample") or {}, "sample"),
        autoencoder=autoencoder,
    )
    _check_choices(config)
    return config


def _check_choices(config: Config) -> None:
    from kinema.diffusion import PREDICTIONS, SAMPLERS, TIME_GRIDS, build_schedule

    build_schedule(config.diffusion.schedule, config.diffusion.shift)
    if config.diffusion.prediction not in PREDICTIONS:
        raise KinemaError(f"config key 'diffusion.prediction': unknown '{config.diffusion.prediction}' "
                          f"(choose from {', '.join(PREDICTIONS)})")
    residual, controls = config.diffusion.residual_of, tuple(getattr(config.model, "controls", ()))
    if residual and (residual not in controls or config.autoencoder):
        raise KinemaError(f"config key 'diffusion.residual_of': '{residual}' must be one of the pixel model's "
                          f"model.controls ({', '.join(controls) or 'none'}), e.g. low_res_x2")
    if config.sample.sampler not in SAMPLERS:
        raise KinemaError(f"config key 'sample.sampler': unknown '{config.sample.sampler}' "
                          f"(choose from {', '.join(SAMPLERS)})")
    if config.sample.time_grid not in TIME_GRIDS:
        raise KinemaError(f"config key 'sample.time_grid': unknown '{config.sample.time_grid}' "
                          f"(choose from {', '.join(TIME_GRIDS)})")


def _merge_overrides(values, overrides: list[str]) -> dict:
    """Apply `key=value` overrides to a nested dict or OmegaConf node; a malformed one is a one-line error."""
    for item in overrides:
        if "=" not in item:
            raise KinemaError(f"override '{item}' is not of the form key=value")
        try:  # one at a time, so that an error names its override; merging a list into a mapping is a TypeError
            values = OmegaConf.merge(values, OmegaConf.from_dotlist([item]))
        except (OmegaConfBaseException, yaml.YAMLError, TypeError) as error:
            raise KinemaError(f"bad config override '{item}': {' '.join(str(error).split())}") from None
    try:
        return OmegaConf.to_container(OmegaConf.create(values), resolve=True)
    except OmegaConfBaseException as error:
        raise KinemaError(f"bad config value: {' '.join(str(error).split())}") from None


def with_overrides(config: Config, overrides: list[str]) -> Config:
    """A copy of `config` with `key=value` overrides applied and validated."""
    return config_from_dict(_merge_overrides(OmegaConf.create(config.to_dict()), overrides))


def read_yaml_config(path: str | Path, sections: str) -> DictConfig:
    """A YAML config file as an OmegaConf mapping; a missing or unreadable file, or one that is not a mapping of
    `sections` (named in the error), is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise KinemaError(f"config file not found: {path}")
    try:
        base = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError, OSError) as error:
        # OmegaConf reports a YAML file holding a bare number or string as an IOError
        raise KinemaError(f"cannot read config {path}: {' '.join(str(error).split())}") from None
    if not isinstance(base, DictConfig):
        raise KinemaError(f"config {path} must be a mapping of sections ({sections}), not a {type(base).__name__}")
    return base


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or the defaults when `path` is None) and apply `key=value` overrides."""
    base = OmegaConf.create({}) if path is None else read_yaml_config(path, "model, data, ...")
    return config_from_dict(_merge_overrides(base, overrides))
