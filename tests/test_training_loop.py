"""The training loop's parts, each against a closed form: LR schedule, EMA, mixed precision, gradient checkpointing,
periodic samples and the NaN guard (loss, gradient, weights after the step, and no non-finite checkpoint ever)."""

import math
import re
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file, save_file

import kinema.models.video_unet as video_unet
from kinema.errors import KinemaError
from kinema.models.pretrained import load_pretrained
from kinema.training import trainer as trainer_module
from kinema.training.checkpoint import NonFiniteWeights, TrainingState, latest_checkpoint, save_checkpoint
from kinema.training.trainer import Trainer, TrainingDiverged, learning_rate
from test_training_resume import one_thread  # noqa: F401  (autouse fixture)


def test_learning_rate_warms_up_linearly_then_decays_on_a_cosine_to_a_tenth(tiny_config):
    config = tiny_config("train.lr=2.0", "train.warmup_steps=4", "train.steps=14")
    expected = {0: 0.5, 1: 1.0, 3: 2.0, 4: 2.0, 9: 2.0 * 0.55, 14: 0.2, 20: 0.2}
    for step, lr in expected.items():
        assert learning_rate(config, step) == pytest.approx(lr), step
    constant = tiny_config("train.lr=2.0", "train.warmup_steps=4", "train.lr_schedule=constant")
    assert [learning_rate(constant, s) for s in (0, 3, 9, 1000)] == pytest.approx([0.5, 2.0, 2.0, 2.0])


def test_the_trainer_applies_the_schedule_at_every_step(tiny_config, text_encoder):
    trainer = Trainer(tiny_config("train.lr=0.01", "train.warmup_steps=2", "train.steps=4"),
                      text_encoder=text_encoder, progress=False)
    real_loss, used = trainer.loss_fn, []

    def recording_loss(*args, **kwargs):
        used.append(trainer.optimizer.param_groups[0]["lr"])
        return real_loss(*args, **kwargs)

    trainer.loss_fn = recording_loss
    trainer.train()
    assert used == pytest.approx([0.005, 0.01, 0.01, 0.0055])


def test_ema_is_the_exponential_average_of_the_weights_after_each_step(tiny_config, text_encoder):
    decay = 0.6
    trainer = Trainer(tiny_config("train.steps=3", f"train.ema_decay={decay}"), text_encoder=text_encoder,
                      progress=False)
    real_update, history = trainer.ema.update_parameters, []

    def recording_update(model):
        history.append({k: v.detach().clone() for k, v in model.named_parameters()})
        real_update(model)

    trainer.ema.update_parameters = recording_update
    trainer.train()
    first, second, third = history
    averaged = dict(trainer.ema.module.named_parameters())
    for name, value in averaged.items():  # e1 = p1, e_k = d e_(k-1) + (1 - d) p_k
        expected = decay ** 2 * first[name] + decay * (1 - decay) * second[name] + (1 - decay) * third[name]
        assert torch.allclose(value, expected, atol=1e-6), name
    assert not torch.allclose(averaged[name], third[name], atol=1e-6)  # not simply the last weights


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state; a run with another mixed precision needs it reset."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_mixed_precision_runs_the_model_in_bf16_and_keeps_fp32_weights(tiny_config, text_encoder,
                                                                            fresh_accelerate_state):
    trainer = Trainer(tiny_config("train.steps=2", "train.mixed_precision=bf16"), text_encoder=text_encoder,
                      progress=False)
    dtypes = []
    convs = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv3d)]
    convs[0].register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    path = trainer.train()
    assert dtypes and set(dtypes) == {torch.bfloat16}
    weights = load_file(str(path / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values())
    assert any(not torch.equal(before[k], weights[k]) for k in weights)


def test_gradient_checkpointing_recomputes_and_gives_the_same_training(tiny_config, tmp_path, text_encoder,
                                                                     monkeypatch):
    plain = load_file(str(Trainer(tiny_config("train.steps=2", f"train.output_dir={tmp_path / 'plain'}"),
                                  text_encoder=text_encoder, progress=False).train() / "model.safetensors"))
    calls = []
    real_checkpoint = video_unet.checkpoint
    monkeypatch.setattr(video_unet, "checkpoint", lambda *a, **k: calls.append(1) or real_checkpoint(*a, **k))
    trainer = Trainer(tiny_config("train.steps=2", "train.gradient_checkpointing=true",
                                  f"train.output_dir={tmp_path / 'checkpointed'}"),
                      text_encoder=text_encoder, progress=False)
    checkpointed = load_file(str(trainer.train() / "model.safetensors"))
    assert len(calls) >= 2
    for key in plain:
        assert torch.allclose(plain[key], checkpointed[key], atol=1e-6), key


def test_samples_are_written_every_sample_every_steps(tiny_config, text_encoder):
    config = tiny_config("train.steps=3", "train.sample_every=2", "sample.steps=1", "data.num_frames=2")
    Trainer(config, text_encoder=text_encoder, progress=False).train()
    samples = sorted(p.name for p in (Path(config.train.output_dir) / "samples").iterdir())
    assert samples == ["step_0000002.png", "step_0000002_0.mp4"]
    assert (Path(config.train.output_dir) / "samples/step_0000002_0.mp4").stat().st_size > 0


def test_a_nan_gradient_stops_before_the_update(tiny_config, text_encoder):
    config = tiny_config("train.steps=3", "train.checkpoint_every=1")
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    good = trainer.train(until_step=1)
    parameter = next(trainer.model.parameters())
    parameter.register_hook(lambda grad: torch.full_like(grad, float("nan")))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match=r"gradient norm is nan at step 2.*step_0000001"):
        trainer.train()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert latest_checkpoint(config.train.output_dir) == good


def test_weights_are_checked_after_the_step_and_never_saved_non_finite(tiny_config, text_encoder, monkeypatch):
    config = tiny_config("train.steps=3", "train.checkpoint_every=1")
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    good = trainer.train(until_step=1)
    monkeypatch.setattr(trainer_module, "learning_rate", lambda config, step: math.inf)  # train.lr=.inf from step 2
    with pytest.raises(TrainingDiverged, match=r"weight '.+' is not finite after the update .*at step 2"):
        trainer.train()
    assert latest_checkpoint(config.train.output_dir) == good
    assert sorted(p.name for p in good.parent.iterdir()) == ["latest", "step_0000001"]
    load_pretrained(good)  # the last good checkpoint is whole and finite
    with pytest.raises(NonFiniteWeights, match="not finite"):
        state = TrainingState(2, trainer.run_id, [trainer._rng_states()])
        save_checkpoint(config.train.output_dir, config, trainer.model, trainer.ema.module, trainer.optimizer, state, 2)
    assert sorted(p.name for p in good.parent.iterdir()) == ["latest", "step_0000001"]


def test_loading_refuses_non_finite_weights(tiny_config, text_encoder):
    path = Trainer(tiny_config("train.steps=1"), text_encoder=text_encoder, progress=False).train()
    for file in ("ema.safetensors", "model.safetensors"):
        weights = load_file(str(path / file))
        name = sorted(weights)[3]
        weights[name] = torch.full_like(weights[name], float("nan"))
        save_file(weights, str(path / file))
        with pytest.raises(KinemaError, match=f"{file} are not finite .*'{re.escape(name)}'"):
            load_pretrained(path, prefer_ema=file.startswith("ema"))


def test_noise_generator_and_ema_live_on_the_training_device(tiny_config, text_encoder):
    trainer = Trainer(tiny_config("train.steps=1"), text_encoder=text_encoder, progress=False)
    device = trainer.accelerator.device
    assert {g.device.type for g in trainer.sample_generators(0, 2)} == {device.type}
    assert {p.device.type for p in trainer.ema.parameters()} == {device.type}


def test_every_torch_load_in_the_library_says_weights_only():
    source = Path(__file__).parents[1] / "src"
    calls = [(f, m.group(0)) for f in source.rglob("*.py")
             for m in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", f.read_text())]
    assert [c for c in calls if "weights_only=True" not in c[1]] == []


def test_gradient_accumulation_equals_the_larger_batch(tiny_config, tmp_path, text_encoder):
    def fixed_level_loss(model_fn, x0, generator=None, known=None, levels=None):  # no draws: both runs see one x_t
        return (model_fn(0.8 * x0, torch.full(x0.shape[:1], 0.3)) - x0).square().mean()

    def final_weights(name, *overrides, stop_at=None):
        config = tiny_config("train.steps=2", "train.caption_dropout=0", f"train.output_dir={tmp_path / name}",
                             *overrides)
        trainer = Trainer(config, text_encoder=text_encoder, progress=False)
        trainer.loss_fn = fixed_level_loss
        if stop_at:  # and resumed: the data position counts micro-batches
            trainer.train(until_step=stop_at)
            trainer = Trainer(config, resume=True, text_encoder=text_encoder, progress=False)
            trainer.loss_fn = fixed_level_loss
        return load_file(str(trainer.train() / "model.safetensors"))

    large = final_weights("large", "train.batch_size=4")
    accumulated = final_weights("accumulated", "train.batch_size=2", "train.grad_accum=2", stop_at=1)
    small = final_weights("small", "train.batch_size=2")
    for key in large:
        assert torch.allclose(large[key], accumulated[key], atol=1e-5), key
    assert not all(torch.allclose(large[k], small[k], atol=1e-5) for k in large)  # it can tell batches apart
