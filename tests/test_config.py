"""Config: YAML + key=value overrides land on typed dataclasses; mistakes name the key."""

import pytest

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
    from kinema.models.registry import build_model

    config = load_config(path)
    model = build_model(config.model_name, config.model)
    assert sum(p.numel() for p in model.parameters()) > 0
