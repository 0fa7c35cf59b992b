"""A 3D patch discriminator and the hinge losses of adversarial autoencoder training.

The critic is PatchGAN's (Isola et al. 2017, pix2pix) with 3D convolutions, as the video autoencoders of MAGVIT (Yu
et al. 2023) and Open-Sora use: strided convs over time and space, each logit judging one space-time patch of the
clip. GroupNorm instead of BatchNorm: no running statistics, so the critic is a pure function of its weights (it is
called with detached weights for the generator's term, see `kinema.autoencoder.losses`). Hinge losses as in
Geometric GAN (Lim & Ye 2017) and VQGAN (Esser et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class DiscriminatorConfig:
    """Sizes of `PatchDiscriminator3d`."""

    channels: int = 32   # width of the first conv; doubled per layer up to 8x
    layers: int = 2      # strided (2x in time and space) convs after the first


def _block(cin: int, cout: int, norm: bool) -> list[nn.Module]:
    """A 3x4x4 conv halving time and space, (GroupNorm), LeakyReLU(0.2)."""
    conv = nn.Conv3d(cin, cout, (3, 4, 4), stride=2, padding=1, bias=not norm)
    return [conv, *([nn.GroupNorm(min(32, cout // 4), cout)] if norm else []), nn.LeakyReLU(0.2)]


class PatchDiscriminator3d(nn.Module):
    """3D PatchGAN critic: videos [B, 3, T, H, W] in [-1, 1] -> one logit per space-time patch [B, 1, t, h, w]."""

    def __init__(self, config: DiscriminatorConfig, in_channels: int = 3):
        super().__init__()
        widths = [config.channels * min(2 ** i, 8) for i in range(config.layers + 1)]
        layers = _block(in_channels, widths[0], norm=False)
        for cin, cout in zip(widths, widths[1:]):
            layers += _block(cin, cout, norm=True)
        layers.append(nn.Conv3d(widths[-1], 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, video: Tensor) -> Tensor:
        return self.net(video)


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The critic's hinge loss: (mean relu(1 - D(x)) + mean relu(1 + D(x_hat))) / 2 (VQGAN)."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """The generator's adversarial loss under a hinge critic: -mean D(x_hat)."""
    return -fake_logits.mean()
