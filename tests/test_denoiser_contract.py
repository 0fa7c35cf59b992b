"""The denoiser contract (DESIGN.md, "Contracts"), checked on every registered model: the video shape, t [B] (and
[B, T] where declared), the conditioning fields it declares change its output and the others are one-line errors,
save/load, determinism, gradient checkpointing."""

from dataclasses import fields, replace

import pytest
import torch
from denoisers import TEXT, TINY_MODELS, denoiser_inputs, tiny_denoiser, tiny_run_config

from kinema.conditioning.conditioning import Conditioning
from kinema.errors import KinemaError
from kinema.models.denoiser import Denoiser
from kinema.models.pretrained import load_pretrained, read_config, save_pretrained
from kinema.models.registry import MODELS
from kinema.models.sampling_spec import SamplingSpec, read_sampling_spec

CONTROLS = dict(controls=("trajectory", "low_res_x2"), attributes=("speed", "brightness"))
FULL = {"video_unet": dict(num_classes=3, motion=True, frame_conditioning=True, **CONTROLS),
        "video_dit": dict(num_classes=3, frame_conditioning=True, **CONTROLS), "inflated_unet": {},
        "diffusers_unet3d": {}}  # every optional conditioning input each model has, switched on
NAMES = list(MODELS)


def full_model(name: str, **kw) -> Denoiser:
    return tiny_denoiser(name, **FULL[name], **kw)


def test_every_registered_model_is_a_denoiser_with_a_tiny_config():
    assert set(NAMES) == set(TINY_MODELS) == set(FULL)
    assert all(issubclass(cls, Denoiser) and cls.config_class is not None for cls in MODELS.values())


@pytest.mark.parametrize("name", NAMES)
def test_output_has_the_shape_of_the_video_and_t_is_one_level_per_video(name):
    model = full_model(name).eval()
    x, t, cond = denoiser_inputs(model)
    with torch.no_grad():
        out = model(x, t, cond)
        assert out.shape == x.shape and torch.isfinite(out).all()
        per_frame = t[:, None].expand(2, x.shape[2])
        if model.per_frame_noise:  # the same level on every frame is the shared level
            torch.testing.assert_close(model(x, per_frame, cond), out, atol=1e-5, rtol=1e-4)
        else:
            with pytest.raises(KinemaError, match="per_frame_noise"):
                model(x, per_frame, cond)
        for bad_t in (t[:1], torch.rand(2, 3), t[:, None, None]):
            with pytest.raises(KinemaError, match="t must be"):
                model(x, bad_t, cond)
        with pytest.raises(KinemaError, match=r"videos \[B"):
            model(x[:, :1], t, cond)


def changed(cond: Conditioning, field: str, model: Denoiser) -> Conditioning:
    """`cond` with `field` set to another valid value."""
    if field == "text":
        return replace(cond, text=torch.randn_like(cond.text))
    if field == "text_mask":
        mask = cond.text_mask.clone()
        mask[:, -1] = False
        return replace(cond, text_mask=mask)
    if field == "labels":
        return replace(cond, labels=(cond.labels + 1) % model.num_classes)
    if field == "motion":
        return replace(cond, motion=-cond.motion)
    if field == "frames":
        return replace(cond, frames=-cond.frames)
    if field == "frame_mask":
        return replace(cond, frame_mask=~cond.frame_mask)
    if field == "control":
        return replace(cond, control=-cond.control)
    if field == "attributes":
        return replace(cond, attributes=cond.attributes + 0.5)
    raise AssertionError(f"no alternative value for {field}")


@pytest.mark.parametrize("name", NAMES)
def test_every_declared_field_changes_the_output(name):
    model = full_model(name).eval()
    x, t, cond = denoiser_inputs(model)
    assert model.conditioning_fields  # each has at least text
    with torch.no_grad():
        out = model(x, t, cond)
        for field in model.conditioning_fields:
            assert not torch.allclose(model(x, t, changed(cond, field, model)), out, atol=1e-6), field


PLAUSIBLE = {  # a well-shaped value of every Conditioning field, for B = 2, T = 4, 8 x 8
    "text": lambda: torch.randn(2, 3, TEXT), "text_mask": lambda: torch.ones(2, 3, dtype=torch.bool),
    "labels": lambda: torch.zeros(2, dtype=torch.long), "frames": lambda: torch.zeros(2, 3, 4, 8, 8),
    "frame_mask": lambda: torch.ones(2, 1, 4, 8, 8, dtype=torch.bool), "fps": lambda: torch.full((2,), 8.0),
    "motion": lambda: torch.zeros(2, 2), "control": lambda: torch.zeros(2, 6, 4, 8, 8),
    "attributes": lambda: torch.ones(2, 2),
}


@pytest.mark.parametrize("name", NAMES)
def test_a_field_the_model_does_not_read_is_a_one_line_error(name):
    assert set(PLAUSIBLE) == {f.name for f in fields(Conditioning)}
    model = tiny_denoiser(name).eval()  # the plain tiny config: no classes, no motion
    x, t, cond = denoiser_inputs(model)
    unread = set(PLAUSIBLE) - model.conditioning_fields
    assert {"frames", "fps", "labels"} <= unread
    for field in unread:
        with pytest.raises(KinemaError, match=field) as error:
            model(x, t, replace(cond, **{field: PLAUSIBLE[field]()}))
        assert "\n" not in str(error.value)


def test_conditioning_fields_come_from_each_instance_config():
    assert tiny_denoiser("video_unet", text_dim=0).conditioning_fields == frozenset()
    assert tiny_denoiser("video_unet", num_classes=2, motion=True).conditioning_fields == {
        "text", "text_mask", "labels", "motion"}
    assert tiny_denoiser("video_dit").conditioning_fields == {"text", "text_mask"}
    assert tiny_denoiser("video_dit", num_classes=2, text_dim=0).conditioning_fields == {"labels"}
    assert tiny_denoiser("video_dit", text_dim=0, frame_conditioning=True).conditioning_fields == {
        "frames", "frame_mask"}
    assert tiny_denoiser("inflated_unet", base="unet2d", text_dim=0).conditioning_fields == frozenset()
    assert tiny_denoiser("diffusers_unet3d").conditioning_fields == {"text"}  # it has no mask for text tokens


@pytest.mark.parametrize("name", ["video_unet", "video_dit"])
def test_labels_outside_the_classes_are_errors_and_minus_one_is_no_class(name):
    model = full_model(name).eval()
    x, t, cond = denoiser_inputs(model)
    with torch.no_grad():
        for bad in ([0, 3], [-2, 0]):
            with pytest.raises(KinemaError, match="num_classes=3"):
                model(x, t, replace(cond, labels=torch.tensor(bad)))
        none = model(x, t, replace(cond, labels=torch.tensor([-1, -1])))
        torch.testing.assert_close(none, model(x, t, replace(cond, labels=None)))
        for label in range(3):  # the null class is a class of its own
            assert not torch.allclose(none, model(x, t, replace(cond, labels=torch.tensor([label, label]))))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_gives_the_same_model_and_a_sampling_spec(name, tmp_path):
    model = full_model(name).eval()
    config = tiny_run_config(model, name)
    save_pretrained(tmp_path / "m", model, config)
    loaded, loaded_config, metadata = load_pretrained(tmp_path / "m")
    assert type(loaded) is type(model) and loaded_config.to_dict() == config.to_dict()
    assert read_sampling_spec(*read_config(tmp_path / "m")) == SamplingSpec.from_config(config)
    assert metadata["sampling"]["channels"] == model.in_channels
    x, t, cond = denoiser_inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, cond), model(x, t, cond), atol=0, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_same_output(name):
    a, b = full_model(name).eval(), full_model(name).eval()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    x, t, cond = denoiser_inputs(a)
    with torch.no_grad():
        assert torch.equal(a(x, t, cond), b(x, t, cond))
        assert torch.equal(a(x, t, cond), a(x, t, cond))
    c = full_model(name, seed=1)
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(name):
    model = full_model(name).train()
    if not model.supports_gradient_checkpointing:
        with pytest.raises(KinemaError, match="gradient_checkpointing"):
            model.gradient_checkpointing = True
        return
    x, t, cond = denoiser_inputs(model)
    results = []
    for flag in (False, True):
        model.gradient_checkpointing = flag
        model.zero_grad()
        loss = model(x, t, cond).square().mean()
        loss.backward()
        results.append((loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}))
    (loss, grads), (loss_ckpt, grads_ckpt) = results
    assert grads and grads.keys() == grads_ckpt.keys()
    torch.testing.assert_close(loss_ckpt, loss)
    for key in grads:
        torch.testing.assert_close(grads_ckpt[key], grads[key], msg=key)
