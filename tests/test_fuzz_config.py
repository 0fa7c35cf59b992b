"""Property-based fuzz: random `key=value` overrides and CLI options either work or fail as one KinemaError line."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import DiffusionConfig, SampleConfig, TrainConfig, load_config
from kinema.data.registry import DATASETS
from kinema.errors import KinemaError
from kinema.models.registry import MODELS

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _keys() -> list[str]:
    """Every config key Kinema knows (all models' and datasets' fields), plus a few it does not."""
    keys = {"model.name", "data.kind", "model.nope", "train.nope", "nope.steps", "train", "model"}
    for section, classes in [("model", [m.config_class for m in MODELS.values()]),
                             ("data", [d.config_class for d in DATASETS.values()]),
                             ("diffusion", [DiffusionConfig]), ("train", [TrainConfig]), ("sample", [SampleConfig])]:
        keys |= {f"{section}.{f.name}" for cls in classes for f in dataclasses.fields(cls)}
    return sorted(keys)


NAMES = [*MODELS, *DATASETS, "cosine", "flow", "v", "eps", "ddim", "euler", "temporal", "joint", "none", "fp16",
         "red", "pan_left", "noise", "center", "random", "S/2", "full", "rope3d"]
SCALARS = st.one_of(
    st.integers(-5, 5).map(str), st.integers(-10**9, 10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr).map(lambda s: {"nan": ".nan", "inf": ".inf",
                                                                          "-inf": "-.inf"}.get(s, s)),
    st.sampled_from(["true", "false", "null", "''", "~", "[]", "{}", "${nope}", "${oc.env:NOPE}", "[1,", "{a: 1",
                     "'", "\"", "a=b", ",", "[[1,2],[3]]", "{steps: 3}"]),
    st.sampled_from(NAMES),
    st.text(alphabet="abc019-_.:/[]{}$,' ", max_size=12),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4).map(lambda items: f"[{','.join(items)}]"))
OVERRIDES = st.lists(st.tuples(st.sampled_from(_keys()), VALUES).map("=".join), min_size=1, max_size=4)
BASES = [None, "configs/balls.yaml", "configs/balls_dit.yaml", "configs/balls_diffusers_unet3d.yaml"]


@FUZZ
@given(base=st.sampled_from(BASES), overrides=OVERRIDES)
def test_random_overrides_load_or_fail_as_one_line(base, overrides):
    try:
        load_config(base, overrides)
    except KinemaError as error:
        message = str(error)
        assert message.strip() and "\n" not in message, message


class ReachedWork(Exception):
    """Raised in place of the real work: the command's input was accepted."""


def _reached(*args, **kwargs):
    raise ReachedWork


OPTION_VALUES = st.one_of(st.integers(-3, 3).map(str), st.sampled_from(["1e9", "-1e9", "nan", "inf", "-inf", "x",
                                                                         "", "0.5", "cuda", "tpu", "cpu", "gif",
                                                                         "avi", "x.mp4", "x.bmp", "cuda:9", "64x64", "0x8",
                                                                         "crop", "pad", "raw"]))
COMMANDS = {
    "generate": ["--steps", "--num-frames", "--guidance", "--direction-guidance", "--scale", "--fps", "--device",
                 "--format", "--sampler", "--seed", "--output"],
    "arch": ["--width", "--frames", "--size", "--batch", "--repeats", "--device", "--json"],
    "prep": ["--workers", "--cut-threshold", "--min-shot", "--min-sharpness", "--min-motion", "--max-motion",
             "--min-brightness", "--max-brightness", "--max-blockiness"],
    "eval": ["--num-samples", "--num-frames", "--size", "--resize", "--real-stride", "--i3d-preset", "--bootstrap",
             "--sampler-steps", "--guidance", "--device", "--out"],
}


@pytest.fixture
def stubbed_work(monkeypatch, tmp_path):
    """Training, sampling, the architecture report, prep and evaluation raise ReachedWork instead of running."""
    monkeypatch.setattr("kinema.training.trainer.Trainer", _reached)
    monkeypatch.setattr("kinema.pipelines.text_to_video.TextToVideoPipeline.from_pretrained", _reached)
    monkeypatch.setattr("kinema.arch_report.run_report", _reached)
    monkeypatch.setattr("kinema.data.prep.prepare", _reached)
    monkeypatch.setattr("kinema.evaluation.evaluate", _reached)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    return tmp_path


def _assert_accepted_or_one_line(result) -> None:
    if isinstance(result.exception, ReachedWork) or result.exit_code == 0:
        return
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), \
        f"exit {result.exit_code}, stderr {result.stderr!r}, exception {result.exception!r}"


@FUZZ
@given(data=st.data())
def test_random_cli_options_run_or_fail_as_one_line(stubbed_work, data):
    from pathlib import Path

    command = data.draw(st.sampled_from([*COMMANDS, "train"]))
    if command == "train":
        root = Path(__file__).resolve().parents[1]
        args = ["train", str(root / data.draw(st.sampled_from(BASES[1:]))), *data.draw(OVERRIDES)]
    else:
        options = data.draw(st.lists(st.tuples(st.sampled_from(COMMANDS[command]), OPTION_VALUES), max_size=3))
        args = {"generate": ["generate", "a ball"], "arch": ["arch"], "prep": ["prep", "videos", "out"],
                "eval": ["eval", "--real", "videos", "--fake", "videos"]}[command]
        args = args + [token for pair in options for token in pair]
    _assert_accepted_or_one_line(CliRunner().invoke(app, args))
