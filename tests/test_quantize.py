"""Int8 inference: Linear and Conv weights really stored as int8, outputs close to the float model's, and
`--quantize int8` generating end to end."""

from copy import deepcopy

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from denoisers import denoiser_inputs, tiny_denoiser
from kinema.cli import app
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.models.quantize import int8_weights, quantize, quantize_int8
from kinema.models.registry import build_model
from kinema.pipelines.text_to_video import TextToVideoPipeline


@pytest.mark.parametrize("name", ["video_unet", "video_dit"])
def test_int8_weights_are_int8_and_the_output_stays_close(name):
    model = tiny_denoiser(name, perturb=0.05)
    x, t, cond = denoiser_inputs(model, batch=2, frames=4, size=8)
    with torch.no_grad():
        reference = model(x, t, cond)
        quantized = quantize_int8(deepcopy(model))
        output = quantized(x, t, cond)
    layers = [m for m in quantized.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    assert layers and all(m.parametrizations.weight.original.dtype == torch.int8 for m in layers)
    state = quantized.state_dict()
    assert any(k.endswith("weight.original") and v.dtype == torch.int8 and v.ndim == 5 for k, v in state.items())
    stored, total = int8_weights(quantized)
    assert stored > 0.9 * total  # nearly every weight is in a Linear or Conv layer
    error = (output - reference).norm() / reference.norm()
    assert 0 < error < 0.05, error  # 8-bit rounding of each weight is within 0.4% of its channel's largest


def test_int8_rounds_each_output_channel_to_its_own_scale():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -0.5, 0.25], [100.0, 3.0, -50.0]]))
    quantize_int8(layer)
    assert torch.equal(layer.parametrizations.weight.original, torch.tensor([[127, -64, 32], [127, 4, -64]],
                                                                              dtype=torch.int8))
    assert torch.allclose(layer.weight, torch.tensor([[1.0, -64 / 127, 32 / 127], [100.0, 400 / 127, -6400 / 127]]))


def test_unknown_quantization_is_an_error():
    with pytest.raises(KinemaError, match="--quantize must be one of int8"):
        quantize(nn.Linear(2, 2), "int4")


@pytest.fixture
def model_dir(tmp_path, tiny_config):
    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config.model_name, config.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return save_pretrained(tmp_path / "model", model, config)


def test_generate_with_int8_weights_end_to_end(tmp_path, model_dir, text_encoder):
    pipes = [TextToVideoPipeline.from_pretrained(model_dir, text_encoder=text_encoder, quantize=q)
             for q in (None, "int8")]
    assert all(m.parametrizations.weight.original.dtype == torch.int8 for m in pipes[1].model.modules()
               if isinstance(m, nn.Conv3d))
    videos = [pipe(["a red ball bounces"], progress=False, steps=2) for pipe in pipes]
    assert (videos[1] - videos[0]).norm() < 0.05 * videos[0].norm()
    result = CliRunner().invoke(app, ["generate", "a red ball bounces", "-c", str(model_dir), "--quantize", "int8",
                                      "-o", str(tmp_path / "v.mp4")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v.mp4").stat().st_size > 0
    result = CliRunner().invoke(app, ["generate", "a ball", "-c", str(model_dir), "--quantize", "int4",
                                      "-o", str(tmp_path / "w.mp4")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "--quantize must be one of int8" in lines[0], result.output
