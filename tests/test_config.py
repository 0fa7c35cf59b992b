"""Config: YAML + key=value overrides land on typed dataclasses; mistakes name the key."""

import pytest
import yaml

from kinema.config import load_config
from kinema.errors import KinemaError


def test_overrides_reach_typed_fields():
    config = load_config("configs/balls.yaml", ["train.steps=20", "model.channels=64", "model.channel_mult=[1,2]",
                                                "model.attention=[temporal,joint]", "diffusion.shift=2"])
    assert config.train.steps == 20 and config.model.channels == 64
    assert config.model.channel_mult == (1, 2) and config.diffusion.shift == 2.0


def test_round_trip_through_dict():
    from kinema.config import config_from_dict

    config = load_config("configs/balls.yaml")
    assert config_from_dict(config.to_dict()).to_dict() == config.to_dict()


@pytest.mark.parametrize("override,key", [
    ("model.widht=3", "model.widht"), ("data.frames=3", "data.frames"), ("trian.steps=3", "trian"),
    ("train.batch_size=1.5", "train.batch_size"), ("train.mixed_precision=fp8", "fp8"),
    ("model.channel_mult=[1,2]", "model.attention"), ("data.max_balls=99", "max_balls"),
    ("sample.sampler=nope", "sample.sampler"), ("train.steps=0", "train.steps"),
    ("train.time_limit_minutes=-1", "train.time_limit_minutes"),
    ("sample.direction_guidance=-0.5", "sample.direction_guidance"),
])
def test_bad_keys_and_values_name_the_key(override, key):
    with pytest.raises(KinemaError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_config("configs/balls.yaml", [override])


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path("configs").glob("*.yaml")), ids=str)
def test_every_committed_config_loads_and_builds_its_model(path):
    from kinema.autoencoder import CausalVideoVAE
    from kinema.autoencoder.config import load_autoencoder_config
    from kinema.models.registry import build_model

    if "autoencoder" in yaml.safe_load(path.read_text()):  # a kinema train-vae config
        model = CausalVideoVAE(load_autoencoder_config(path).autoencoder)
    else:
        config = load_config(path)
        model = build_model(config.model_name, config.model)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("cls", ["DiffusionConfig", "TrainConfig", "SampleConfig"])
def test_every_number_of_a_run_section_declares_its_range(cls):
    """A new numeric key cannot slip in unchecked: its field carries the rule that load_config enforces."""
    import dataclasses
    import typing

    import kinema.config

    config_class = getattr(kinema.config, cls)
    hints = typing.get_type_hints(config_class)
    unchecked = [f.name for f in dataclasses.fields(config_class)
                 if hints[f.name] in (int, float) and "rule" not in f.metadata]
    assert not unchecked
    defaults = config_class()
    for spec in dataclasses.fields(config_class):  # the defaults keep their own rules
        kinema.config.check_field(spec, getattr(defaults, spec.name), spec.name)


@pytest.mark.parametrize("override,message", [
    ("train.grad_clip=-1", "'train.grad_clip' must be greater than 0, got -1.0"),
    ("train.caption_dropout=1.5", "'train.caption_dropout' must be in [0, 1], got 1.5"),
    ("train.warmup_steps=-5", "'train.warmup_steps' must be at least 0, got -5"),
    ("model.heads=0", "'model.heads' must be at least 1, got 0"),
    ("train.lr=.inf", "'train.lr' must be a finite number, got inf"),
    ("data.radius_range=[1.0,2.0,3.0]", "'data.radius_range' must be a list of 2 values"),
])
def test_range_errors_say_what_is_allowed(override, message):
    with pytest.raises(KinemaError) as error:
        load_config("configs/balls.yaml", [override])
    assert message in str(error.value)


def test_balls_that_cannot_fit_are_refused_before_training():
    with pytest.raises(KinemaError, match="cannot place 2 balls of radius up to 4.5 .* 16px box"):
        load_config("configs/balls.yaml", ["data.size=16"])
    assert load_config("configs/balls.yaml", ["data.size=16", "data.radius_range=[2.0,3.0]"]).data.size == 16
