"""Int8 weights for inference: the weight of every Linear and Conv1d/2d/3d layer is stored as int8 with one float
scale per output channel (symmetric absmax rounding, w ~ scale * round(w / scale), |round| <= 127) and dequantized
as the layer runs, through a torch parametrization (per-channel symmetric weight quantization, Krishnamoorthi 2018,
"Quantizing deep convolutional networks for efficient inference", sec. 2). Biases, norms and embeddings stay float.

Why not a library: torchao's int8 configs (`Int8WeightOnlyConfig`, `Int8DynamicActivationInt8WeightConfig`) quantize
Linear layers only and fail on convolutions, and `torch.ao.quantization` (dynamic int8, also Linear only) is
deprecated; a Kinema denoiser holds about as many weights in Conv3d layers as in Linear ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from kinema.errors import KinemaError

QUANTIZATIONS = ("int8",)
INT8_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Int8Weight(nn.Module):
    """The parametrization of an int8 weight: `forward(q) = q * scale`, one scale per output channel."""

    def __init__(self, scale: Tensor):
        super().__init__()
        self.register_buffer("scale", scale)

    def forward(self, quantized: Tensor) -> Tensor:
        return quantized.to(self.scale.dtype) * self.scale


def quantize_int8(model: nn.Module) -> nn.Module:
    """Store the weights of `model`'s Linear and Conv layers as int8 (in place, frozen, eval mode); returns it."""
    model.eval().requires_grad_(False)
    for layer in list(model.modules()):  # a list: registering adds modules
        if not isinstance(layer, INT8_LAYERS) or parametrize.is_parametrized(layer, "weight"):
            continue
        weight = layer.weight.detach()
        scale = weight.abs().amax(dim=tuple(range(1, weight.ndim)), keepdim=True).clamp(min=1e-12) / 127
        layer.weight = nn.Parameter((weight / scale).round().clamp(-127, 127).to(torch.int8), requires_grad=False)
        parametrize.register_parametrization(layer, "weight", Int8Weight(scale), unsafe=True)  # int8 -> float
    return model


def int8_weights(model: nn.Module) -> tuple[int, int]:
    """(weights stored as int8, all weights) of `model`, counted in elements."""
    total = int8 = 0
    for name, tensor in model.state_dict().items():
        if ".parametrizations." in name and name.endswith(".scale"):
            continue  # the scales of int8 weights
        if tensor.is_floating_point() or tensor.dtype == torch.int8:
            total += tensor.numel()
            int8 += tensor.numel() if tensor.dtype == torch.int8 else 0
    return int8, total


def quantize(model: nn.Module, method: str | None) -> nn.Module:
    """`model` with its weights quantized by `method` (one of QUANTIZATIONS; None leaves it as it is)."""
    if method is None:
        return model
    if method != "int8":
        raise KinemaError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got '{method}'")
    return quantize_int8(model)
