"""Many processes train exactly as one: 2 gloo CPU processes at batch B end with the weights of 1 process at batch
2B, a checkpoint written by 2 processes resumes in 1 (and exports) and in 2 (every rank's generators are saved, each in
its own file), and data is split across processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES
from safetensors.torch import load_file
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.data.shards import write_shards
from kinema.training.checkpoint import LATEST_FILE
from kinema.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
TINY = [*TINY_OVERRIDES, "train.checkpoint_every=1"]


def kinema(*args: str) -> str:
    """Run the `kinema` CLI; its stdout (the test fails with its stderr if it fails)."""
    done = subprocess.run([sys.executable, "-m", "kinema.cli", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return {**load_file(str(checkpoint / "model.safetensors")),
            **{f"ema.{k}": v for k, v in load_file(str(checkpoint / "ema.safetensors")).items()}}


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    far = [k for k in a if not torch.allclose(a[k], b[k], atol=2e-6, rtol=1e-4)]
    assert far == [], far[:5]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, str]:
    """`kinema train --processes 2` at batch 1 per process, two steps, a checkpoint at each: its folder and stdout
    (one run read by two tests: two processes take seconds to start)."""
    two = tmp_path_factory.mktemp("two")
    stdout = kinema("train", "configs/balls.yaml", *TINY, "train.batch_size=1", "train.steps=2",
                    f"train.output_dir={two}", "--processes", "2")
    return two, stdout


def resumable_copy(run: Path, folder: Path) -> Path:
    """`folder` holding `run`'s step-1 checkpoint as its latest: the run as if it had stopped after step 1."""
    shutil.copytree(run / "checkpoints/step_0000001", folder / "checkpoints/step_0000001")
    (folder / "checkpoints" / LATEST_FILE).write_text("step_0000001")
    return folder


def test_two_processes_at_batch_b_equal_one_at_2b_and_their_checkpoint_resumes_in_one(tmp_path, text_encoder,
                                                                                       two_processes):
    def train_here(output_dir: Path, resume: bool = False) -> Path:  # one process, batch 2, two steps
        config = load_config(ROOT / "configs/balls.yaml", [*TINY, "train.batch_size=2", "train.steps=2",
                                                           f"train.output_dir={output_dir}"])
        return Trainer(config, resume=resume, text_encoder=text_encoder, progress=False).train()

    one = tmp_path / "one"  # caption dropout, noise levels and noise are drawn per sample
    train_here(one)
    two, stdout = two_processes  # two processes, batch 1 each
    assert stdout.count("done: ") == 1
    assert (two / "checkpoints/step_0000001/rng_rank1.safetensors").exists()  # two processes did run
    for step in ("step_0000001", "step_0000002"):
        assert_close(weights(one / "checkpoints" / step), weights(two / "checkpoints" / step))
    continued = resumable_copy(two, tmp_path / "continued")  # step 2 in one process at batch 2
    train_here(continued, resume=True)
    assert_close(weights(one / "checkpoints/step_0000002"), weights(continued / "checkpoints/step_0000002"))
    exported = tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", str(two / "checkpoints/step_0000001"), str(exported)])
    assert result.exit_code == 0, result.output
    model = load_file(str(exported / "model.safetensors"))
    ema = load_file(str(two / "checkpoints/step_0000001/ema.safetensors"))
    assert model.keys() == ema.keys() and all(torch.equal(model[k], ema[k]) for k in ema)


def test_two_processes_save_every_ranks_generators_and_resume_exactly(tmp_path, two_processes):
    """The run stopped after step 1 and resumed under torchrun itself ends bit for bit where the unbroken one does."""
    two, stdout = two_processes
    assert stdout.count("done: ") == 1  # printed once, by the main process
    final = two / "checkpoints/step_0000002"
    ranks = [load_file(str(final / f"rng_rank{rank}.safetensors")) for rank in (0, 1)]
    assert not (final / "rng_rank2.safetensors").exists()
    assert set(ranks[0]) == set(ranks[1]) == {"torch"}  # noise comes from per-sample generators keyed on the step
    stopped = resumable_copy(two, tmp_path / "stopped")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "kinema.cli", "train", "configs/balls.yaml", *TINY, "train.batch_size=1",
                           "train.steps=2", f"train.output_dir={stopped}", "--resume"],
                          cwd=ROOT, env={**ENV, "ACCELERATE_USE_CPU": "true"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for file in sorted(final.glob("*.safetensors")):
        a, b = load_file(str(file)), load_file(str(stopped / "checkpoints/step_0000002" / file.name))
        assert [k for k in a if not torch.equal(a[k], b[k])] == [], file.name


def test_each_process_gets_its_own_clips_from_streams_and_indexed_shards(tmp_path):
    clips = [{"video": torch.zeros(3, 4, 16, 16), "caption": f"clip {i}"} for i in range(12)]
    write_shards(clips, tmp_path / "shards", items_per_shard=5, video_dtype="float32")
    overrides = [o for o in TINY if not o.startswith("data.")] + [
        "data.kind=shards", f"data.urls={tmp_path / 'shards'}", "data.num_frames=4", "data.size=16",
        "train.batch_size=2", f"train.output_dir={tmp_path / 'run'}"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "tests/training_dist_worker.py", str(tmp_path), "3", *overrides],
                          cwd=ROOT, env={**ENV, "ACCELERATE_USE_CPU": "true"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("stream", "indexed"):
        seen = [json.loads((tmp_path / f"{name}-rank{rank}.json").read_text()) for rank in (0, 1)]
        assert len(seen[0]) == len(seen[1]) == 6, seen  # 3 steps of batch 2 in each process: one pass over 12
        assert set(seen[0]).isdisjoint(seen[1]), (name, seen)
        assert sorted(seen[0] + seen[1], key=lambda c: int(c.split()[1])) == [f"clip {i}" for i in range(12)]


def test_processes_must_be_at_least_one():
    result = CliRunner().invoke(app, ["train", "configs/balls.yaml", "--processes", "0"])
    assert result.exit_code == 2 and "--processes must be at least 1, got 0" in result.output


def test_train_vae_in_two_processes_trains_like_one_at_twice_the_batch(tmp_path):
    """With the critic on from step 0: its adaptive weight takes the whole batch's gradients."""
    from test_train_vae import TINY_RUN

    from kinema.autoencoder.config import load_autoencoder_config

    run = [*TINY_RUN, "train.checkpoint_every=1", "train.steps=1", "loss.disc_start=0"]
    config = load_autoencoder_config(ROOT / "configs/vae_balls.yaml", [*run, f"train.output_dir={tmp_path / 'one'}"])
    Trainer(config, progress=False).train()
    kinema("train-vae", "configs/vae_balls.yaml", *run, "train.batch_size=1", f"train.output_dir={tmp_path / 'two'}",
           "--processes", "2")
    step = "checkpoints/step_0000001"
    assert (tmp_path / "two" / step / "rng_rank1.safetensors").exists()
    assert (tmp_path / "two/autoencoder/config.json").exists()
    one, two = weights(tmp_path / "one" / step), weights(tmp_path / "two" / step)
    assert one.keys() == two.keys() and any(k.startswith("discriminator.") for k in one)
    # Adam's first step is +-lr for any gradient far above its eps, so the few weights whose gradient is float
    # noise (zero-initialised layers over black background) may step the other way; all others agree
    close = sum(torch.isclose(one[k], two[k], atol=2e-6, rtol=1e-4).sum().item() for k in one)
    assert close >= 0.998 * sum(v.numel() for v in one.values())


def test_autoencoder_runs_let_ddp_skip_the_critic_before_it_joins(tmp_path, text_encoder):
    """Before loss.disc_start the critic has no gradients: DDP must be told to look for unused parameters; a
    denoiser uses all of its parameters at every step, so its runs skip that search."""
    from test_train_vae import TINY_RUN

    from kinema.autoencoder.config import load_autoencoder_config

    vae = load_autoencoder_config(ROOT / "configs/vae_balls.yaml", [*TINY_RUN, f"train.output_dir={tmp_path / 'v'}"])
    assert Trainer(vae, progress=False).accelerator.ddp_handler.find_unused_parameters
    denoiser = load_config(ROOT / "configs/balls.yaml", [*TINY, f"train.output_dir={tmp_path / 'd'}"])
    assert not Trainer(denoiser, text_encoder=text_encoder, progress=False).accelerator.ddp_handler \
        .find_unused_parameters
