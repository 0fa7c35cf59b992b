"""The training loss of the causal video autoencoder: reconstruction (L1/L2), a perceptual term, KL, and a 3D
patch critic switched on after `disc_start` steps (LDM, Rombach et al. 2022; VQGAN, Esser et al. 2021).

One backward and one optimizer train autoencoder and critic together: the generator's adversarial term goes
through the critic with its weights detached (`torch.func.functional_call`), and the critic's hinge term sees the
reconstruction detached, so each network gets gradients only from its own term. The adversarial term is weighted
adaptively as in VQGAN (eq. 7): the ratio of the gradient norms of the reconstruction+perceptual loss and of the
adversarial loss at the decoder's last layer, times `disc_weight`, so that neither drowns the other whatever their
scales; `disc_adaptive=false` uses `disc_weight` alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.func import functional_call

from kinema.autoencoder.discriminator import (DiscriminatorConfig, PatchDiscriminator3d, hinge_discriminator_loss,
                                              hinge_generator_loss)
from kinema.diffusion.loss import Generators, draw
from kinema.diffusion.temporal_loss import temporal_loss, temporal_weights


class PerceptualDistance:
    """LPIPS-style distance (Zhang et al. 2018) without learned weights, in the features of Kinema's shipped video
    network (`kinema.metrics.features`): per layer, activations unit-normalised over channels, squared distance
    summed over channels and averaged over positions; summed over the three conv layers of both streams (frames and
    frame differences). The network is frozen and in eval mode; gradients reach only the compared videos."""

    def __init__(self, path=None):
        from kinema.metrics.features import load_feature_net

        self.net, _ = load_feature_net(path)
        self.layers = [m for stream in (self.net.appearance, self.net.motion) for m in stream if isinstance(m, nn.GELU)]

    def to(self, device: torch.device) -> PerceptualDistance:
        self.net.to(device)
        return self

    def _features(self, video: Tensor) -> list[Tensor]:
        """The activations after each conv of both streams, for videos [B, 3, T, H, W] (one frame: appearance only)."""
        found: list[Tensor] = []
        hooks = [layer.register_forward_hook(lambda module, inputs, output: found.append(output))
                 for layer in self.layers]
        try:
            if video.shape[2] >= 2:
                self.net(video)
            else:
                self.net.frame_features(rearrange(video, "b c t h w -> (b t) c h w"))
        finally:
            for hook in hooks:
                hook.remove()
        return found

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Distance per clip [B] between videos x and y [B, 3, T, H, W] in [-1, 1]."""
        b = x.shape[0]
        total = x.new_zeros(b, dtype=torch.float32)
        for features in self._features(torch.cat([x, y])):
            fx, fy = F.normalize(features.float(), dim=1, eps=1e-10).chunk(2)
            total = total + (fx - fy).pow(2).sum(1).reshape(b, -1).mean(1)
        return total


def reconstruction_loss(x: Tensor, y: Tensor, kind: str) -> Tensor:
    """Mean absolute ("l1") or squared ("l2") error per clip [B]."""
    error = (x - y).abs() if kind == "l1" else (x - y).pow(2)
    return error.flatten(1).mean(1)


def _mean_over_processes(gradient: Tensor) -> Tensor:
    """The gradient of the whole batch when training runs in several processes (each holds its share's)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gradient = gradient.clone()
        torch.distributed.all_reduce(gradient)
        gradient /= torch.distributed.get_world_size()
    return gradient


def adaptive_weight(nll: Tensor, adversarial: Tensor, last_layer: Tensor) -> Tensor:
    """VQGAN's eq. 7: ||grad nll|| / (||grad adversarial|| + 1e-4) at the decoder's last layer, clamped to [0, 1e4],
    detached (it weights the adversarial term; no gradient flows through it). The gradients are the whole batch's
    across processes, so N processes weight the term as one process with N times the batch does."""
    nll_grad, = torch.autograd.grad(nll, last_layer, retain_graph=True)
    adv_grad, = torch.autograd.grad(adversarial, last_layer, retain_graph=True)
    nll_grad, adv_grad = _mean_over_processes(nll_grad), _mean_over_processes(adv_grad)
    return (nll_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


class AutoencoderTraining(nn.Module):
    """What `kinema train-vae` optimises: the autoencoder and (when `disc_weight > 0`) its critic, one loss over both;
    `forward(video, generator, step)` -> (loss, named terms for logging). `temporal`: the weights of the temporal
    regularisers (`train.temporal_loss`, `kinema.diffusion.temporal_loss`) on the reconstruction."""

    def __init__(self, vae: nn.Module, loss, temporal=None):
        super().__init__()
        self.vae = vae
        self.loss = loss  # AutoencoderLossConfig
        self.temporal = temporal_weights(temporal)
        self.discriminator = (PatchDiscriminator3d(DiscriminatorConfig(loss.disc_channels, loss.disc_layers))
                              if loss.disc_weight > 0 else None)
        # a plain attribute, not a submodule: the frozen feature network is neither trained, averaged nor saved
        self.perceptual = PerceptualDistance() if loss.perceptual_weight > 0 else None

    def adversarial_on(self, step: int) -> bool:
        """Whether the critic takes part at `step` (before `disc_start` it is not even run)."""
        return self.discriminator is not None and step >= self.loss.disc_start

    def forward(self, video: Tensor, generator: Generators, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, detached terms) of clips [B, 3, 1 + k*n, H, W] at training step `step`; the posterior sample's
        noise comes from `generator` (one per clip)."""
        posterior = self.vae.encode(video)
        noise = draw(torch.randn, posterior.mean.shape, generator, device=video.device, dtype=posterior.mean.dtype)
        reconstruction = self.vae.decode(posterior.mean + posterior.std * noise)  # one generator per clip
        terms = {"reconstruction": reconstruction_loss(reconstruction, video, self.loss.reconstruction).mean()}
        nll = terms["reconstruction"]
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual.to(video.device)(reconstruction, video).mean()
            nll = nll + self.loss.perceptual_weight * terms["perceptual"]
        if self.temporal and video.shape[2] >= 2:
            terms["temporal"] = temporal_loss(reconstruction, video, self.temporal)
            nll = nll + terms["temporal"]
        # the KL summed over latent elements per clip, over the clip's number of values: with a per-value
        # reconstruction loss, kl_weight then means what it means in LDM (whose losses are sums over values)
        terms["kl"] = posterior.kl().mean() / video[0].numel()
        loss = nll + self.loss.kl_weight * terms["kl"]
        if self.adversarial_on(step):
            critic = self.discriminator
            frozen = {name: p.detach() for name, p in critic.named_parameters()}
            terms["generator"] = hinge_generator_loss(functional_call(critic, frozen, (reconstruction,)))
            weight = torch.tensor(self.loss.disc_weight, device=video.device)
            if self.loss.disc_adaptive and torch.is_grad_enabled():
                weight = weight * adaptive_weight(nll, terms["generator"], self.vae.last_layer_weight)
            terms["generator_weight"] = weight
            terms["discriminator"] = hinge_discriminator_loss(critic(video), critic(reconstruction.detach()))
            loss = loss + weight * terms["generator"] + terms["discriminator"]
        return loss, {name: value.detach() for name, value in terms.items()}
