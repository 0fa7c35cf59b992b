"""The time grid as a user choice: `sample.time_grid`, the pipeline's `time_grid=`, `--time-grid` on the CLI."""

import pytest
import torch
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.diffusion import build_schedule, time_grid
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.pipelines.text_to_video import TextToVideoPipeline


def _pipeline_and_seen_times(config):
    """A tiny unconditional pipeline and the list its model appends each call's noise level to."""
    torch.manual_seed(0)
    model = build_model(config.model_name, config.model)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(round(args[1][0].item(), 6)))
    return TextToVideoPipeline(model, config), seen


def _expected(config, steps, spacing):
    schedule = build_schedule(config.diffusion.schedule, config.diffusion.shift)
    return [round(t, 6) for t in time_grid(schedule, steps, spacing)[:-1].tolist()]


def test_config_key_takes_every_grid_and_names_itself_when_wrong():
    for spacing in ("uniform", "trailing", "karras", "shifted"):
        assert load_config(None, [f"sample.time_grid={spacing}"]).sample.time_grid == spacing
    with pytest.raises(KinemaError, match=r"sample\.time_grid.*'log'.*karras"):
        load_config(None, ["sample.time_grid=log"])


def test_pipeline_samples_on_the_chosen_grid_and_defaults_to_the_config(tiny_config):
    config = tiny_config("model.text_dim=0", "sample.time_grid=shifted", "diffusion.schedule=flow")
    pipe, seen = _pipeline_and_seen_times(config)
    pipe([""], steps=4, retries=0, progress=False)
    assert seen == _expected(config, 4, "shifted")
    seen.clear()
    pipe([""], steps=4, time_grid="karras", retries=0, progress=False)
    assert seen == _expected(config, 4, "karras")
    assert _expected(config, 4, "karras") != _expected(config, 4, "shifted")


def test_pipeline_steps_zero_and_an_unknown_grid_are_errors(tiny_config):
    pipe, seen = _pipeline_and_seen_times(tiny_config("model.text_dim=0"))
    with pytest.raises(KinemaError, match="steps"):
        pipe([""], steps=0, progress=False)
    with pytest.raises(KinemaError, match="'log'"):
        pipe([""], steps=2, time_grid="log", progress=False)
    assert seen == []


def test_cli_time_grid_option(tmp_path, tiny_config):
    config = tiny_config("model.text_dim=0")
    model = save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config, {"step": 1})
    runner = CliRunner()
    result = runner.invoke(app, ["sample", str(model), "-o", str(tmp_path / "k.gif"), "-p", "x", "--steps", "2",
                                 "--time-grid", "karras", "--scale", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k.gif").exists()
    result = runner.invoke(app, ["generate", "x", "-c", str(model), "-o", str(tmp_path / "l.gif"),
                                 "--time-grid", "log"])
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "'log'" in lines[0], result.output
