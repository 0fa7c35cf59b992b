"""FSDP (accelerate's plugin, FSDP2) on 2 gloo CPU processes trains exactly as one process at twice the batch, and its
checkpoints are whole-model files: written by 2 sharded processes they resume in 1 and export; written by 1 process
they resume in 2 sharded ones."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from accelerate.utils import DistributedType
from safetensors.torch import load_file
from test_training_dist import ROOT, TINY, assert_close, kinema, weights
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.errors import KinemaError
from kinema.training.checkpoint import LATEST_FILE
from kinema.training.fsdp import enable_fsdp
from kinema.training.trainer import Trainer

SHARDED = "FSDP2: weights, gradients, optimizer state and EMA sharded over 2 processes"


def state(checkpoint: Path) -> dict:
    """Weights, EMA and the optimizer's moments of a checkpoint."""
    return {**weights(checkpoint), **{f"optimizer.{k}": v for k, v in
                                      load_file(str(checkpoint / "optimizer.safetensors")).items()}}


def test_fsdp_processes_equal_one_process_and_checkpoints_move_between_process_counts(tmp_path, text_encoder):
    def train_here(output_dir: Path, resume: bool = False) -> Path:  # one process, batch 2, two steps
        config = load_config(ROOT / "configs/balls.yaml", [*TINY, "train.batch_size=2", "train.steps=2",
                                                           f"train.output_dir={output_dir}"])
        return Trainer(config, resume=resume, text_encoder=text_encoder, progress=False).train()

    one = tmp_path / "one"
    train_here(one)
    two = tmp_path / "two"  # two sharded processes at batch 1: one step, then continued in one process at batch 2
    stdout = kinema("train", "configs/balls.yaml", *TINY, "train.batch_size=1", "train.steps=1",
                    "train.sample_every=1", f"train.output_dir={two}", "--processes", "2", "--fsdp")
    assert SHARDED in stdout
    assert (two / "samples/step_0000001.png").is_file()  # sampled from the EMA gathered out of the shards
    assert_close(state(one / "checkpoints/step_0000001"), state(two / "checkpoints/step_0000001"))
    train_here(two, resume=True)
    assert_close(state(one / "checkpoints/step_0000002"), state(two / "checkpoints/step_0000002"))
    exported = tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", str(two / "checkpoints/step_0000001"), str(exported)])
    assert result.exit_code == 0, result.output
    assert_close(load_file(str(exported / "model.safetensors")),
                 load_file(str(one / "checkpoints/step_0000001/ema.safetensors")))

    three = tmp_path / "three"  # one process's step-1 checkpoint, continued by two sharded processes
    shutil.copytree(one / "checkpoints/step_0000001", three / "checkpoints/step_0000001")
    (three / "checkpoints" / LATEST_FILE).write_text("step_0000001")
    stdout = kinema("train", "configs/balls.yaml", *TINY, "train.batch_size=1", "train.steps=2",
                    f"train.output_dir={three}", "--processes", "2", "--fsdp", "--resume")
    assert SHARDED in stdout and "resumed from" in stdout
    assert_close(state(one / "checkpoints/step_0000002"), state(three / "checkpoints/step_0000002"))


@pytest.mark.parametrize("processes, message", [(0, "--processes must be at least 1, got 0"),
                                                 (1, "--fsdp shards the model over processes: give --processes 2")])
def test_fsdp_needs_two_processes(processes, message):
    result = CliRunner().invoke(app, ["train", "configs/balls.yaml", "--processes", str(processes), "--fsdp"])
    assert result.exit_code == 2 and message in result.output


def test_fsdp1_and_deepspeed_are_refused_in_one_line():
    fsdp1 = SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=False,
                            state=SimpleNamespace(fsdp_plugin=SimpleNamespace(fsdp_version=1)))
    with pytest.raises(KinemaError, match="FSDP version 1; Kinema trains with FSDP2: set fsdp_version: 2"):
        enable_fsdp(fsdp1)
    with pytest.raises(KinemaError, match="asks for DeepSpeed"):
        enable_fsdp(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED))
