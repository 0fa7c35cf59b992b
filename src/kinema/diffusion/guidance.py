"""Guidance: wrappers that turn denoisers into guided denoisers `denoise_fn(x_t, t) -> x0_hat`.

Classifier-free guidance (Ho & Salimans 2022) mixes a conditional and an unconditional
estimate, x0_hat = u + scale (c - u); it comes as two functions or as one batched call
of 2B rows. Gradient guidance nudges x0_hat down the gradient of a differentiable energy
(trajectory, physics, smoothness), taken at x0_hat or back through the network to x_t.
Wrappers compose: guide a guided denoiser again.
"""

from collections.abc import Callable

import torch
from torch import Tensor

DenoiseFn = Callable[[Tensor, Tensor], Tensor]


def classifier_free_guidance(cond_fn: DenoiseFn, uncond_fn: DenoiseFn, scale: float) -> DenoiseFn:
    """x0_hat = u + scale (c - u); scale 1 calls only `cond_fn`, scale 0 only `uncond_fn`."""
    if scale == 1:
        return cond_fn
    if scale == 0:
        return uncond_fn

    def guided(x_t: Tensor, t: Tensor) -> Tensor:
        return torch.lerp(uncond_fn(x_t, t), cond_fn(x_t, t), scale)

    return guided


def batched_classifier_free_guidance(pair_fn: DenoiseFn, scale: float) -> DenoiseFn:
    """CFG in one network call: `pair_fn` gets x_t and t repeated to 2B rows, conditional rows first.

    The caller's `pair_fn` pairs rows [:B] with the condition and rows [B:] with the null
    condition (e.g. a `Conditioning` batch concatenated with its empty version). With
    scale 1 guidance is a no-op: use the conditional denoiser directly to halve the work.
    """

    def guided(x_t: Tensor, t: Tensor) -> Tensor:
        cond, uncond = pair_fn(torch.cat([x_t, x_t]), torch.cat([t, t])).chunk(2)
        return torch.lerp(uncond, cond, scale)

    return guided


def gradient_guidance(denoise_fn: DenoiseFn, energy_fn: Callable[[Tensor], Tensor], weight: float) -> DenoiseFn:
    """x0_hat - weight * grad E(x0_hat): energy descent on the clean estimate at every step.

    The gradient is taken with respect to x0_hat only, not back through the network, which
    keeps it as cheap as one energy evaluation and works with every sampler (they all
    consume x0_hat). It is one gradient step of the backward guidance of universal
    guidance (Bansal et al. 2023, sec. 3.2), and a cheaper relative of reconstruction
    guidance (Ho et al. 2022, "Video diffusion models", sec. 3.1), which differentiates
    through the network with respect to x_t. `energy_fn(x0)` returns a scalar or one
    energy per sample, which are summed.
    """

    def guided(x_t: Tensor, t: Tensor) -> Tensor:
        x0 = denoise_fn(x_t, t)
        with torch.enable_grad():
            point = x0.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(energy_fn(point).sum(), point)
        return x0 - weight * gradient

    return guided


def reconstruction_guidance(denoise_fn: DenoiseFn, energy_fn: Callable[[Tensor], Tensor], weight: float) -> DenoiseFn:
    """x0_hat - weight * grad_{x_t} E(x0_hat(x_t)): the energy's gradient taken back through the denoiser.

    Reconstruction guidance (Ho et al. 2022, "Video diffusion models", sec. 3.1) and the forward guidance of
    universal guidance (Bansal et al. 2023, sec. 3.1): the push lies along directions the network can follow,
    so the video stays one the model would draw, at the price of a backward pass per step. Use it where
    `gradient_guidance`'s pixel-space push would paint the change in (moving a whole object, not sharpening it).
    """

    def guided(x_t: Tensor, t: Tensor) -> Tensor:
        with torch.enable_grad():
            point = x_t.detach().requires_grad_(True)
            x0 = denoise_fn(point, t)
            (gradient,) = torch.autograd.grad(energy_fn(x0).sum(), point)
        return x0.detach() - weight * gradient

    return guided
