"""Tests for PSNR on identical frames and for LPIPS / LPIPS-T through torchmetrics' LPIPS network."""

import pytest
import torch
from torch import nn
from torchmetrics.functional.image.lpips import learned_perceptual_image_patch_similarity

from kinema.metrics.frame import PSNR_CAP_DB, load_lpips, lpips, lpips_t, psnr


def test_psnr_of_identical_frames_is_the_cap_and_no_frame_is_dropped():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(2, 3, 4, 16, 16, generator=generator) * 2 - 1
    assert torch.equal(psnr(real, real), torch.full((2,), PSNR_CAP_DB, dtype=torch.float64))
    fake = (real + 0.1 * torch.randn(real.shape, generator=generator)).clamp(-1, 1)
    fake[:, :, 0] = real[:, :, 0]  # image-to-video: the first frame is given
    rest = psnr(fake[:, :, 1:], real[:, :, 1:])
    assert torch.allclose(psnr(fake, real), (PSNR_CAP_DB + 3 * rest) / 4)


class TinyAlexnet(nn.Module):
    """Five ReLU conv stages with AlexNet's LPIPS widths, standing in for torchvision's pretrained AlexNet."""

    def __init__(self, requires_grad: bool = False, pretrained: bool = True) -> None:
        super().__init__()
        widths = [3, 64, 192, 384, 256, 256]
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(a, b, 3, stride=2 if i < 2 else 1, padding=1), nn.ReLU())
                                    for i, (a, b) in enumerate(zip(widths, widths[1:])))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


@pytest.fixture
def tiny_lpips(monkeypatch):
    """torchmetrics' LPIPS (its shipped linear heads) over a small random backbone, as if torchvision were here."""
    import torchmetrics.functional.image.lpips as functional_lpips
    import torchmetrics.image.lpip as module_lpips

    monkeypatch.setattr(functional_lpips, "Alexnet", TinyAlexnet)
    monkeypatch.setattr(module_lpips, "_TORCHVISION_AVAILABLE", True)
    torch.manual_seed(0)
    distance, reason = load_lpips("alex")
    assert distance is not None, reason
    return distance


def test_lpips_matches_torchmetrics_per_frame_and_averages_over_each_clip(tiny_lpips):
    generator = torch.Generator().manual_seed(1)
    real = torch.rand(2, 3, 3, 16, 16, generator=generator) * 2 - 1
    fake = (real + 0.5 * torch.randn(real.shape, generator=generator)).clamp(-1, 1)
    fake[1] = real[1]
    frames = [v.transpose(1, 2).reshape(-1, 3, 16, 16) for v in (fake, real)]
    torch.manual_seed(0)  # the same random backbone
    reference = learned_perceptual_image_patch_similarity(*frames, net_type="alex", reduction="none")
    assert torch.allclose(tiny_lpips(*frames).float(), reference.flatten(), atol=1e-6)
    per_clip = lpips(fake, real, tiny_lpips)
    assert per_clip[0] == pytest.approx(reference.flatten()[:3].mean().item(), abs=1e-6)
    assert per_clip[0] > 0.0 and per_clip[1] == pytest.approx(0.0, abs=1e-6)


def test_lpips_t_is_zero_for_a_frozen_clip_and_grows_with_frame_changes(tiny_lpips):
    generator = torch.Generator().manual_seed(2)
    frame = torch.rand(1, 3, 1, 16, 16, generator=generator) * 2 - 1
    frozen = frame.expand(1, 3, 4, 16, 16)
    jitter = [(frozen + s * torch.randn(frozen.shape, generator=generator)).clamp(-1, 1) for s in (0.1, 0.5)]
    scores = lpips_t(torch.cat([frozen, *jitter]), tiny_lpips)
    assert scores[0] == pytest.approx(0.0, abs=1e-6) and 0.0 < scores[1] < scores[2]


def test_load_lpips_says_why_when_torchvision_is_missing_but_lets_a_bug_through(monkeypatch):
    import torchmetrics.functional.image.lpips as functional_lpips
    import torchmetrics.image.lpip as module_lpips

    monkeypatch.setattr(module_lpips, "_TORCHVISION_AVAILABLE", False)
    distance, reason = load_lpips()
    assert distance is None and "torchvision" in reason

    def broken(**kwargs):
        raise RuntimeError("a bug in the backbone")

    monkeypatch.setattr(module_lpips, "_TORCHVISION_AVAILABLE", True)
    monkeypatch.setattr(functional_lpips, "Alexnet", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        load_lpips()
