"""Nothing lost, exact resume: stops at any step resume bit-for-bit, a fresh run never deletes another run's
checkpoints, `--resume` falls back past a broken `latest`, Ctrl-C never cuts a checkpoint write short."""

import collections
import copy
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kinema.errors import KinemaError
from kinema.training import checkpoint as checkpoint_module
from kinema.training.checkpoint import latest_checkpoint
from kinema.training.trainer import Trainer


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two OpenMP threads spin and run 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fresh(text_encoder):
    """The session's text encoder with an empty prompt cache, as a new process would have it."""
    encoder = copy.copy(text_encoder)
    encoder._cache = collections.OrderedDict()
    return encoder


def checkpoint_tensors(path):
    """Every tensor of a training checkpoint: weights, EMA, optimizer moments and RNG states, by file and name."""
    return {f"{file.name}:{k}": v for file in sorted(path.glob("*.safetensors")) for k, v in load_file(file).items()}


def assert_identical(a, b):
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


def test_stopping_at_several_steps_resumes_bit_for_bit(tiny_config, tmp_path, text_encoder):
    def config(name):
        return tiny_config("train.steps=8", "train.checkpoint_every=100", f"train.output_dir={tmp_path / name}")

    straight = Trainer(config("straight"), text_encoder=fresh(text_encoder), progress=False).train()
    Trainer(config("stopped"), text_encoder=fresh(text_encoder), progress=False).train(until_step=3)
    for stop in (5, 7, None):
        torch.manual_seed(stop or 0)  # a new process: the global generator is anywhere
        resumed = Trainer(config("stopped"), resume=True, text_encoder=fresh(text_encoder), progress=False)
        final = resumed.train(until_step=stop)
    assert final.name == straight.name == "step_0000008"
    assert_identical(checkpoint_tensors(straight), checkpoint_tensors(final))
    assert len(checkpoint_tensors(final)) > 3 * sum(1 for _ in resumed.model.parameters())  # model, EMA, moments


def test_a_prompt_embeds_the_same_whatever_its_batch(text_encoder):
    prompt = "a red ball bounces to the left"
    alone = fresh(text_encoder).encode([prompt])[0][0]
    in_batch = fresh(text_encoder).encode([prompt, "a green ball and a blue ball bounce off the top wall", ""])[0][0]
    assert torch.equal(alone, in_batch[: alone.shape[0]])


def test_a_fresh_run_refuses_a_folder_with_checkpoints(tiny_config, text_encoder):
    config = tiny_config("train.steps=2", "train.checkpoint_every=1")
    Trainer(config, text_encoder=text_encoder, progress=False).train()
    before = sorted(os.listdir(f"{config.train.output_dir}/checkpoints"))
    with pytest.raises(KinemaError, match="--resume.*--overwrite"):
        Trainer(tiny_config("train.steps=1"), text_encoder=text_encoder, progress=False)
    assert sorted(os.listdir(f"{config.train.output_dir}/checkpoints")) == before

    replaced = Trainer(tiny_config("train.steps=1"), text_encoder=text_encoder, progress=False, overwrite=True).train()
    assert replaced.is_dir() and latest_checkpoint(config.train.output_dir) == replaced
    assert sorted(os.listdir(replaced.parent)) == ["latest", "step_0000001"]


def test_pruning_keeps_the_newest_of_this_run_and_nothing_of_another(tiny_config, text_encoder):
    config = tiny_config("train.steps=2", "train.checkpoint_every=1", "train.keep_checkpoints=2")
    Trainer(config, text_encoder=text_encoder, progress=False).train()
    folder = Path(config.train.output_dir) / "checkpoints"
    shutil.copytree(folder / "step_0000002", folder / "step_0000900")  # another run's checkpoint, at a higher step
    state = json.loads((folder / "step_0000900/trainer_state.json").read_text())
    (folder / "step_0000900/trainer_state.json").write_text(json.dumps({**state, "run": "another run"}))
    resumed = Trainer(tiny_config("train.steps=5", "train.checkpoint_every=1", "train.keep_checkpoints=2"),
                      resume=True, text_encoder=text_encoder, progress=False)
    assert resumed.step == 2
    last = resumed.train()
    assert last.name == "step_0000005" and latest_checkpoint(config.train.output_dir) == last
    assert sorted(os.listdir(folder)) == ["latest", "step_0000004", "step_0000005", "step_0000900"]


def test_resume_falls_back_when_latest_is_missing_corrupt_or_points_nowhere(tiny_config, text_encoder):
    config = tiny_config("train.steps=3", "train.checkpoint_every=1", "train.keep_checkpoints=3")
    Trainer(config, text_encoder=text_encoder, progress=False).train()
    folder = config.train.output_dir + "/checkpoints"
    os.remove(f"{folder}/step_0000003/ema.safetensors")  # the newest is incomplete
    for pointer in ["step_0000003", "step_0000042", "\x00garbage", None]:
        if pointer is None:
            os.remove(f"{folder}/latest")
        else:
            with open(f"{folder}/latest", "w") as file:
                file.write(pointer)
        assert Trainer(config, resume=True, text_encoder=text_encoder, progress=False).step == 2, pointer


def test_resume_without_a_complete_checkpoint_names_the_problem(tiny_config, text_encoder):
    config = tiny_config("train.steps=1")
    Trainer(config, text_encoder=text_encoder, progress=False).train()
    with open(config.train.output_dir + "/checkpoints/step_0000001/trainer_state.json", "w") as file:
        file.write('{"step": 1, "optim')
    with pytest.raises(KinemaError, match="trainer_state.json is not JSON"):
        Trainer(config, resume=True, text_encoder=text_encoder, progress=False)


def test_killed_writes_are_cleaned_up_at_start(tiny_config, text_encoder):
    config = tiny_config("train.steps=1")
    Trainer(config, text_encoder=text_encoder, progress=False).train()
    folder = config.train.output_dir + "/checkpoints"
    os.makedirs(f"{folder}/.step_0000002.tmp-abc123")
    with open(f"{folder}/.step_0000002.tmp-abc123/model.safetensors", "wb") as file:
        file.write(b"half a checkpoint")
    with open(f"{folder}/.latest.tmp-xyz", "w") as file:
        file.write("step_00")
    os.rename(f"{folder}/step_0000001", f"{folder}/.step_0000001.old-77")  # killed between the renames of a rewrite
    os.makedirs(f"{folder}/unrelated")
    trainer = Trainer(config, resume=True, text_encoder=text_encoder, progress=False)
    assert trainer.step == 1
    assert sorted(os.listdir(folder)) == ["latest", "step_0000001", "unrelated"]


@pytest.fixture
def default_ctrl_c():
    """Ctrl-C raises KeyboardInterrupt, as in a fresh process, whatever handler an earlier test left installed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_checkpoint_write_finishes_it_first(tiny_config, text_encoder, monkeypatch, default_ctrl_c):
    config = tiny_config("train.steps=5", "train.checkpoint_every=2")
    real_write = checkpoint_module.write_model_files

    def write_then_ctrl_c(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the write
        real_write(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "write_model_files", write_then_ctrl_c)
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.step == 2 and trainer.last_checkpoint.name == "step_0000002"
    assert latest_checkpoint(config.train.output_dir) == trainer.last_checkpoint
    monkeypatch.undo()
    assert Trainer(config, resume=True, text_encoder=text_encoder, progress=False).step == 2


def test_the_cli_refuses_a_fresh_run_and_says_truthfully_what_ctrl_c_saved(tmp_path, text_encoder, monkeypatch):
    from conftest import TINY_OVERRIDES
    from typer.testing import CliRunner

    from kinema.cli import app

    monkeypatch.setattr("kinema.training.trainer.TextEncoder", lambda *args, **kwargs: text_encoder)
    run = ["train", "configs/balls.yaml", *TINY_OVERRIDES, f"train.output_dir={tmp_path / 'run'}",
           "train.checkpoint_every=100"]
    done = CliRunner().invoke(app, [*run, "train.steps=1"])
    assert done.exit_code == 0 and Path(done.stdout.split("done: ")[1].strip()).is_dir(), done.stdout

    again = CliRunner().invoke(app, [*run, "train.steps=1"])
    assert again.exit_code == 2 and again.stderr.count("\n") == 1 and "--overwrite" in again.stderr, again.stderr

    real_step, steps = Trainer._train_step, []

    def interrupt_second_step(self, batches):
        if steps:
            raise KeyboardInterrupt
        steps.append(1)
        return real_step(self, batches)

    monkeypatch.setattr(Trainer, "_train_step", interrupt_second_step)
    stopped = CliRunner().invoke(app, [*run, "train.steps=3", "--overwrite"])
    assert stopped.exit_code == 130
    assert f"interrupted at step 1; saved {tmp_path / 'run/checkpoints/step_0000001'}; continue" in stopped.stderr
    assert latest_checkpoint(tmp_path / "run").name == "step_0000001"
    steps.clear()

    def interrupt_at_once(self, batches):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_step", interrupt_at_once)
    nothing = CliRunner().invoke(app, [*run, "train.steps=3", "--overwrite"])
    assert nothing.exit_code == 130 and "no checkpoint was written yet" in nothing.stderr, nothing.stderr
    assert not (tmp_path / "run/checkpoints/step_0000001").exists()  # --overwrite asked for it to go
