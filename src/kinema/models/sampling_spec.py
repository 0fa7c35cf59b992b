"""The sampling spec stored with every model directory (DESIGN.md, "Contracts"): what generating from the model
needs (video shape, text encoder, autoencoder, class names, sampler defaults), so that pipelines never read the
training config's data or train sections."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from kinema.config import Config, SampleConfig, dataclass_from_dict
from kinema.errors import KinemaError

SPEC_KEY = "sampling"  # the spec's key in a model directory's config.json
AUTOENCODER_FOLDER = "autoencoder"  # a latent model directory's copy of its autoencoder


def _class_names(config: Config) -> list[str]:
    """Names of the label indices the training data gives, where the data config alone tells them."""
    if config.data_kind == "digits":
        return [str(digit) for digit in range(10)]
    if config.data_kind == "camera":
        from kinema.data.camera import MOTIONS

        return list(MOTIONS)
    return []


@dataclass
class SamplingSpec:
    """Shape and defaults of generation: videos [B, channels, num_frames, height, width] written at `defaults.fps`."""

    num_frames: int
    height: int
    width: int
    channels: int
    text_encoder: str = ""        # text encoder of the prompts ('' = the model reads no text)
    autoencoder: str = ""         # latent autoencoder directory ('' = the model denoises pixels)
    classes: list[str] = field(default_factory=list)  # names of the class labels (index = label), when known
    defaults: SampleConfig = field(default_factory=SampleConfig)  # sampler, steps, guidance, fps, prompts, ...

    @property
    def fps(self) -> float:
        """Frame rate of the written videos."""
        return self.defaults.fps

    @classmethod
    def from_config(cls, config: Config) -> SamplingSpec:
        """Derive the spec from a training config (at save time, and for model directories written without one):
        the data's clip length and size (with aspect buckets: the first bucket), the model's channels (a latent
        model: its autoencoder's video channels, the autoencoder kept in the model directory's AUTOENCODER_FOLDER),
        the text encoder when the model reads text, and the config's `sample` section."""
        data = config.data
        buckets = getattr(data, "buckets", None)  # only folder datasets have aspect buckets
        height, width = tuple(buckets[0]) if buckets else (data.size, data.size)
        text = config.model.text_dim > 0
        channels = config.model.in_channels
        if config.autoencoder:
            from kinema.autoencoder.directory import read_autoencoder_config

            channels = read_autoencoder_config(config.autoencoder)[0].in_channels
        return cls(num_frames=data.num_frames, height=height, width=width, channels=channels,
                   text_encoder=config.train.text_encoder if text else "",
                   autoencoder=AUTOENCODER_FOLDER if config.autoencoder else "", classes=_class_names(config),
                   defaults=config.sample)

    def to_dict(self) -> dict:
        """Plain JSON values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SamplingSpec:
        """Validate a stored spec; a bad entry is a one-line error naming its key."""
        if not isinstance(values, dict):
            raise KinemaError(f"'{SPEC_KEY}' in a model's config.json must be a mapping, got {values!r}")
        values = dict(values)
        defaults = dataclass_from_dict(SampleConfig, values.pop("defaults", {}) or {}, f"{SPEC_KEY}.defaults")
        spec = dataclass_from_dict(cls, values, SPEC_KEY)
        spec.defaults = defaults
        for key in ("num_frames", "height", "width", "channels"):
            if getattr(spec, key) < 1:
                raise KinemaError(f"'{SPEC_KEY}.{key}' must be at least 1, got {getattr(spec, key)}")
        return spec


def read_sampling_spec(config: Config, metadata: dict) -> SamplingSpec:
    """The spec of a model directory (`read_config`'s config and metadata): the stored one, or for directories
    written before specs existed, the one derived from their config."""
    if SPEC_KEY in metadata:
        return SamplingSpec.from_dict(metadata[SPEC_KEY])
    return SamplingSpec.from_config(config)
