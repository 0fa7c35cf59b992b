"""diffusers' UNet3DConditionModel behind Kinema's denoiser contract: the same network as calling diffusers directly,
parameter-matched to the shipped VideoUNet, trainable, saved and loaded, sampled through the CLI; bad input fails
clearly."""

from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES
from diffusers import UNet3DConditionModel
from einops import rearrange
from typer.testing import CliRunner

from kinema.cli import app
from kinema.conditioning.conditioning import Conditioning
from kinema.config import Config, load_config
from kinema.data.registry import DATASETS
from kinema.errors import KinemaError
from kinema.models.diffusers_unet3d import DiffusersUNet3D, DiffusersUNet3DConfig
from kinema.models.pretrained import load_pretrained, save_pretrained
from kinema.models.registry import build_model
from kinema.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
TEXT = 16
TINY = dict(block_out_channels=(8, 16), attention_head_dim=2, norm_num_groups=4, text_dim=TEXT,
            down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
            up_block_types=("CrossAttnUpBlock3D", "UpBlock3D"))
TINY_MODEL = ["model.name=diffusers_unet3d", "model.block_out_channels=[8,16]", "model.attention_head_dim=2",
              "model.norm_num_groups=4", "model.down_block_types=[DownBlock3D,CrossAttnDownBlock3D]",
              "model.up_block_types=[CrossAttnUpBlock3D,UpBlock3D]"]


def make(**fields) -> DiffusersUNet3D:
    torch.manual_seed(0)
    return DiffusersUNet3D(DiffusersUNet3DConfig(**{**TINY, **fields}))


def inputs(batch=2):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, 4, 8, 8, generator=generator) * 2 - 1
    cond = Conditioning(text=torch.randn(batch, 3, TEXT, generator=generator), text_mask=torch.ones(batch, 3).bool())
    return x, torch.rand(batch, generator=generator), cond


def test_output_has_the_input_shape_and_finite_gradients():
    model = make(patch_size=2)
    x, t, cond = inputs()
    out = model(x, t, cond)
    assert out.shape == x.shape
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_equals_calling_diffusers_directly_with_the_same_weights():
    model = make(patch_size=2).eval()
    direct = UNet3DConditionModel(in_channels=12, out_channels=12, block_out_channels=(8, 16), layers_per_block=1,
                                  attention_head_dim=2, norm_num_groups=4, cross_attention_dim=TEXT,
                                  down_block_types=TINY["down_block_types"], up_block_types=TINY["up_block_types"])
    direct.load_state_dict({k.removeprefix("unet."): v for k, v in model.state_dict().items()})
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in direct.parameters())
    x, t, cond = inputs()
    patches = rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=2, p2=2)
    with torch.no_grad():
        expected = direct(patches, t * 999, encoder_hidden_states=cond.text).sample
        torch.testing.assert_close(model(x, t, cond), rearrange(expected, "b (c p1 p2) t h w -> b c t (h p1) (w p2)",
                                                                p1=2, p2=2))


def test_config_file_matches_the_shipped_video_unet_in_parameters():
    diffusers = load_config(ROOT / "configs" / "balls_diffusers_unet3d.yaml")
    assert diffusers.model == DiffusersUNet3DConfig()
    kinema = load_config(ROOT / "configs" / "balls.yaml")
    counts = [sum(p.numel() for p in build_model(c.model_name, c.model).parameters()) for c in (diffusers, kinema)]
    assert 0.9 <= counts[0] / counts[1] <= 1.1


def test_save_load_round_trip_gives_equal_outputs(tmp_path):
    model = make()
    config = Config("diffusers_unet3d", model.config, "balls", DATASETS["balls"].config_class())
    save_pretrained(tmp_path / "m", model, config)
    loaded, loaded_config, _ = load_pretrained(tmp_path / "m")
    assert isinstance(loaded, DiffusersUNet3D) and loaded_config.to_dict() == config.to_dict()
    x, t, cond = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, cond), model.eval()(x, t, cond))


def test_trains_with_kinema_train_and_its_checkpoint_samples(tmp_path, text_encoder):
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("model.")]
    config = load_config(None, [*overrides, *TINY_MODEL, "train.steps=2", f"train.output_dir={tmp_path / 'run'}"])
    checkpoint = Trainer(config, text_encoder=text_encoder, progress=False).train()
    assert checkpoint.name == "step_0000002" and (checkpoint / "ema.safetensors").is_file()
    runner = CliRunner()
    result = runner.invoke(app, ["info", str(checkpoint)])
    assert result.exit_code == 0 and "diffusers_unet3d" in result.output and "step: 2" in result.output, result.output
    result = runner.invoke(app, ["sample", str(checkpoint), "-o", str(tmp_path / "s.mp4"), "--steps", "1"])
    assert result.exit_code == 0 and (tmp_path / "s.mp4").is_file(), result.output


@pytest.mark.parametrize("change, message", [
    (dict(t=torch.rand(2, 4)), "per-frame"),
    (dict(cond=Conditioning(text=torch.randn(2, 3, TEXT), motion=torch.zeros(2, 2))), "motion"),
    (dict(cond=Conditioning()), "cond.text is required"),
    (dict(cond=Conditioning(text=torch.randn(2, 3, TEXT + 1))), "width"),
    (dict(x=torch.randn(2, 3, 4, 7, 7)), "patch_size"),
])
def test_bad_input_raises_a_clear_value_error(change, message):
    model = make(patch_size=2)
    x, t, cond = inputs()
    args = {"x": x, "t": t, "cond": cond, **change}
    with pytest.raises(ValueError, match=message):
        model(args["x"], args["t"], args["cond"])


@pytest.mark.parametrize("override, key", [
    ("model.down_block_types=[DownBlock3D]", "model.down_block_types"),
    ("model.up_block_types=[UpBlock3D,UpBlock2D,UpBlock3D]", "model.up_block_types"),
    ("model.norm_num_groups=7", "model.block_out_channels"),
    ("model.text_dim=0", "model.text_dim"),
    ("model.patch_size=0", "model.patch_size"),
])
def test_bad_config_names_the_key(override, key):
    with pytest.raises(KinemaError, match=key):
        load_config(ROOT / "configs" / "balls_diffusers_unet3d.yaml", [override])
