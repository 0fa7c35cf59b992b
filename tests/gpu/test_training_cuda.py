"""The trainer on a CUDA device: noise drawn there, EMA kept there, the fp16 loss scaler and the CUDA generator saved,
and an fp16 run stopped and resumed equal to an unbroken one. Runs only where CUDA is available."""

import json

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from kinema.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def deterministic_fp16():
    """A fresh accelerate state (another test may have fixed its mixed precision) and deterministic kernels."""
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    yield
    torch.use_deterministic_algorithms(False)
    AcceleratorState._reset_state(reset_partial_state=True)


def fp16(tiny_config, *overrides):
    return tiny_config("train.mixed_precision=fp16", *overrides)


def test_noise_ema_scaler_and_cuda_rng_live_on_the_gpu_and_are_saved(tiny_config, text_encoder):
    trainer = Trainer(fp16(tiny_config, "train.steps=2"), text_encoder=text_encoder, progress=False)
    assert {g.device.type for g in trainer.sample_generators(0, 2)} == {"cuda"}
    assert {p.device.type for p in trainer.ema.parameters()} == {"cuda"}
    assert trainer.accelerator.scaler is not None
    path = trainer.train()
    assert set(load_file(str(path / "rng_rank0.safetensors"))) == {"torch", "cuda"}
    scaler = json.loads((path / "trainer_state.json").read_text())["scaler"]
    assert scaler["scale"] == trainer.accelerator.scaler.get_scale() > 0


def test_fp16_stop_and_resume_on_the_gpu_is_exact(tiny_config, tmp_path, text_encoder):
    straight = Trainer(fp16(tiny_config, "train.steps=4", f"train.output_dir={tmp_path / 'a'}"),
                       text_encoder=text_encoder, progress=False).train()
    config = fp16(tiny_config, "train.steps=4", f"train.output_dir={tmp_path / 'b'}")
    Trainer(config, text_encoder=text_encoder, progress=False).train(until_step=2)
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.cuda.manual_seed(1234)  # a new process: the CUDA generator is anywhere
    resumed = Trainer(config, resume=True, text_encoder=text_encoder, progress=False)
    assert resumed.accelerator.scaler.get_scale() == json.loads(
        (tmp_path / "b/checkpoints/step_0000002/trainer_state.json").read_text())["scaler"]["scale"]
    final = resumed.train()
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng_rank0.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(final / name))
        assert [k for k in a if not torch.equal(a[k], b[k])] == [], name
