"""diffusers' UNet3DConditionModel behind Kinema's denoiser contract (checked with every model in
test_denoiser_contract.py): the same network as calling diffusers directly, parameter-matched to the shipped VideoUNet,
trainable and sampled through the CLI; bad input fails clearly."""

from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES
from denoisers import TEXT, TINY_MODELS, denoiser_inputs, tiny_denoiser
from diffusers import UNet3DConditionModel
from einops import rearrange
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.errors import KinemaError
from kinema.models.diffusers_unet3d import DiffusersUNet3DConfig
from kinema.models.registry import build_model
from kinema.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
TINY = TINY_MODELS["diffusers_unet3d"]
TINY_MODEL = ["model.name=diffusers_unet3d", "model.block_out_channels=[8,16]", "model.attention_head_dim=2",
              "model.norm_num_groups=4", "model.down_block_types=[DownBlock3D,CrossAttnDownBlock3D]",
              "model.up_block_types=[CrossAttnUpBlock3D,UpBlock3D]"]


def test_equals_calling_diffusers_directly_with_the_same_weights():
    model = tiny_denoiser("diffusers_unet3d", patch_size=2).eval()
    direct = UNet3DConditionModel(in_channels=12, out_channels=12, block_out_channels=(8, 16), layers_per_block=1,
                                  attention_head_dim=2, norm_num_groups=4, cross_attention_dim=TEXT,
                                  down_block_types=TINY["down_block_types"], up_block_types=TINY["up_block_types"])
    direct.load_state_dict({k.removeprefix("unet."): v for k, v in model.state_dict().items()})
    direct.eval()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in direct.parameters())
    x, t, cond = denoiser_inputs(model)
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


def test_a_video_size_the_stem_cannot_split_is_a_one_line_error():
    model = tiny_denoiser("diffusers_unet3d", patch_size=2)
    x, t, cond = denoiser_inputs(model, size=7)
    with pytest.raises(KinemaError, match="patch_size"):
        model(x, t, cond)


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
