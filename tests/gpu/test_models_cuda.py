"""The models on a CUDA device: bf16 and fp16 training steps are finite and close to fp32, the fused SDPA kernels
(flash / memory-efficient) equal the math backend, and a seeded sample on CUDA equals the same sample on CPU.
Runs only where CUDA is available."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from kinema.conditioning.conditioning import Conditioning
from kinema.diffusion import build_schedule, get_sampler, time_grid, x0_denoiser
from kinema.models.video_dit import VideoDiT, VideoDiTConfig
from kinema.models.video_unet import VideoUNet, VideoUNetConfig
from kinema.nn.attention import VideoTransformerBlock

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
TEXT_DIM = 32


@pytest.fixture(autouse=True)
def exact_float32():
    """fp32 references without TF32, so that "close to fp32" compares against true float32."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def randomized(module: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Seeded random weights in every zero-initialised layer, so all of the network carries signal and gradient."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(std * torch.randn(p.shape, generator=generator))
    return module


def models() -> dict[str, torch.nn.Module]:
    """A small VideoUNet and VideoDiT with text cross-attention and temporal attention."""
    torch.manual_seed(0)
    unet = VideoUNet(VideoUNetConfig(channels=32, channel_mult=(1, 2), attention=("temporal", "joint"), heads=2,
                                     text_dim=TEXT_DIM, norm_groups=8))
    dit = VideoDiT(VideoDiTConfig(hidden_size=64, depth=2, heads=4, text_dim=TEXT_DIM, positions="rope3d"))
    return {"unet": randomized(unet), "dit": randomized(dit)}


def inputs(batch: int = 2, frames: int = 4, size: int = 16):
    """Seeded x_t, t, conditioning and a v-target, drawn on CPU (the same numbers on every device)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, frames, size, size, generator=generator)
    t = torch.rand(batch, generator=generator)
    text = torch.randn(batch, 6, TEXT_DIM, generator=generator)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:batch]
    target = torch.randn(x.shape, generator=generator)
    return x, t, Conditioning(text=text, text_mask=mask), target


def train_step(model: torch.nn.Module, dtype: torch.dtype) -> tuple[float, torch.Tensor, torch.Tensor]:
    """One MSE training step on CUDA under autocast(`dtype`) with a loss scaler for fp16: loss, gradient, weights."""
    model = model.to(CUDA).train()
    model.zero_grad(set_to_none=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    x, t, cond, target = (a.to(CUDA) for a in inputs())
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        out = model(x, t, cond)
    loss = F.mse_loss(out.float(), target)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).float()
    scaler.step(optimizer)
    scaler.update()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()]).float()
    return loss.item(), grad, weights


@pytest.mark.parametrize("name", ["unet", "dit"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_mixed_precision_training_step_is_finite_and_close_to_fp32(name, dtype):
    loss32, grad32, weights32 = train_step(models()[name], torch.float32)
    loss, grad, weights = train_step(models()[name], dtype)
    assert torch.isfinite(torch.tensor(loss)) and torch.isfinite(grad).all() and torch.isfinite(weights).all()
    assert loss == pytest.approx(loss32, rel=2e-2)
    assert F.cosine_similarity(grad, grad32, dim=0) > 0.99
    assert (grad.norm() / grad32.norm()).item() == pytest.approx(1, abs=5e-2)
    assert (weights - weights32).abs().max() < 5e-3  # AdamW moves each weight by about lr: the same way


BLOCKS = {"spatial": {"spatial": "spatial"}, "joint causal": {"spatial": "joint", "temporal_mask_kind": "causal"},
          "axial": {"spatial": "axial"},
          "windowed": {"spatial": "windowed", "window": (2, 4, 4), "window_overlap": (0, 1, 1), "global_tokens": 2},
          "temporal window": {"spatial": None, "temporal_window": 1},
          "multi-scale causal": {"spatial": None, "temporal_scales": (1, 0), "temporal_mask_kind": "causal"}}


@pytest.mark.parametrize("name", list(BLOCKS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_fused_sdpa_kernels_equal_the_math_backend(name, dtype):
    generator = torch.Generator().manual_seed(2)
    block = VideoTransformerBlock(64, heads=4, text_dim=TEXT_DIM, **BLOCKS[name])
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    block = block.to(CUDA, dtype).eval()
    x = torch.randn(2, 64, 4, 8, 8, generator=generator).to(CUDA, dtype)
    text = torch.randn(2, 6, TEXT_DIM, generator=generator).to(CUDA, dtype)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3], device=CUDA)
    with torch.no_grad():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            fused = block(x, text, mask)
        with sdpa_kernel(SDPBackend.MATH):
            reference = block(x, text, mask)
    assert torch.isfinite(fused).all()
    tolerance = 2e-2 if dtype == torch.bfloat16 else 5e-3
    torch.testing.assert_close(fused.float(), reference.float(), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_seeded_sample_on_cuda_equals_the_same_sample_on_cpu(name):
    model = models()[name].eval()
    schedule = build_schedule("cosine")
    _, _, cond, _ = inputs(batch=1)
    noise = torch.randn(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(3))  # drawn on CPU, then moved

    def sample(device: torch.device) -> torch.Tensor:
        net, c = model.to(device), cond.to(device)
        denoise = x0_denoiser(lambda x, t: net(x, t, c), schedule, "v")
        with torch.no_grad():
            return get_sampler("dpmpp_2m")(denoise, noise.to(device), time_grid(schedule, 8), schedule,
                                           generator=torch.Generator(device).manual_seed(4)).cpu()

    on_cpu = sample(torch.device("cpu"))
    on_cuda = sample(CUDA)
    assert on_cuda.std() > 0.1  # a real sample, not a constant
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-3, atol=1e-3)
