"""The denoising training loss, with optional per-frame noise levels and known frames.

The "simple" loss of Ho et al. 2020 (eq. 14), generalised to any schedule and target:
E_{t, eps} || model(x_t, t) - target ||^2. With `per_frame_noise` every frame gets its own
level t, as in diffusion forcing (Chen et al. 2024); given (conditioning) pixels carry
no loss, and wholly given frames are passed clean at t = 0. With `temporal` weights the temporal regularisers
of chapter 11.1.1 (kinema.diffusion.temporal_loss) are added on the model's x0 estimate, each frame pair weighted
by alpha(t_i) alpha(t_(i+1)) (alpha(t)^2 = SNR / (1 + SNR) for one level per sample): the term fades out at the
noisy levels, where the x0 estimate is a blurred mean whose frame differences are not the data's.
"""

from collections.abc import Callable

import torch
from torch import Tensor

from kinema.diffusion.parameterization import check_prediction, to_x0_eps, training_target
from kinema.diffusion.schedules import NoiseSchedule
from kinema.diffusion.temporal_loss import temporal_loss, temporal_weights
from kinema.errors import KinemaError


Generators = torch.Generator | list[torch.Generator] | None


def draw(sampler: Callable[..., Tensor], shape: torch.Size, generator: Generators, **kwargs) -> Tensor:
    """`sampler(shape)` (torch.rand, torch.randn), each sample from its own generator when given a list of them
    (diffusers' `randn_tensor` pattern), so a sample's draws do not depend on the batch it is in."""
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise KinemaError(f"{len(generator)} generators for a batch of {shape[0]}")
        return torch.cat([sampler((1, *shape[1:]), generator=g, **kwargs) for g in generator])
    return sampler(shape, generator=generator, **kwargs)


class DiffusionLoss:
    """Mean squared error between the network output and its target at random noise levels."""

    def __init__(self, schedule: NoiseSchedule, prediction: str, per_frame_noise: bool = False, temporal=None):
        self.schedule = schedule                          # alpha(t), sigma(t)
        self.prediction = check_prediction(prediction)    # "eps" | "v" | "x0" | "flow"
        self.per_frame_noise = per_frame_noise            # one level per frame ([B, T]) instead of per sample
        self.temporal = temporal_weights(temporal)        # {pixel, feature, flow: weight}, e.g. train.temporal_loss

    def noise_and_target(self, x0: Tensor, t: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """(x_t, target) for clean video x0 `[B, C, T, H, W]`, levels t `[B]` or `[B, T]` and noise like x0."""
        alpha, sigma = self.schedule.alpha_sigma_like(t, x0)
        x_t = alpha * x0 + sigma * noise
        return x_t, training_target(self.prediction, x0, noise, alpha, sigma)

    def sample_levels(self, x0: Tensor, generator: Generators = None) -> Tensor:
        """Uniform noise levels in [0, 1]: `[B, T]` with per-frame noise, else `[B]`."""
        shape = x0.shape[:1] + x0.shape[2:3] if self.per_frame_noise else x0.shape[:1]
        dtype = torch.promote_types(x0.dtype, torch.float32)
        return draw(torch.rand, shape, generator, device=x0.device, dtype=dtype)

    def __call__(
        self,
        model_fn: Callable[[Tensor, Tensor], Tensor],
        x0: Tensor,
        generator: Generators = None,
        known: Tensor | None = None,
        levels: Tensor | None = None,
    ) -> Tensor:
        """Scalar loss of `model_fn(x_t, t)` on clean video x0; `generator` may be a list of one generator per sample.

        `known` [B, 1, T, H, W] bool marks given pixels (kinema.diffusion.frame_tasks): they carry no loss, and a
        wholly given frame is passed clean at level 0. `levels` [B, T] sets frames' noise levels (NaN keeps the
        drawn one)."""
        t = self.sample_levels(x0, generator)
        noise = draw(torch.randn, x0.shape, generator, device=x0.device, dtype=x0.dtype)
        if known is None and levels is None:
            x_t, target = self.noise_and_target(x0, t, noise)
            output = self._checked(model_fn(x_t, t), x0)
            return (output - target).square().mean() + self._temporal(output, x_t, x0, t)

        frames = x0.shape[:1] + x0.shape[2:3]
        t = t[:, None].expand(frames) if t.ndim == 1 else t
        if levels is not None:
            if levels.shape != frames:
                raise KinemaError(f"levels must be [B, T] = {list(frames)}, got {list(levels.shape)}")
            levels = levels.to(t)
            t = torch.where(torch.isnan(levels), t, levels)
        if known is None:
            x_t, target = self.noise_and_target(x0, t, noise)
            output = self._checked(model_fn(x_t, t), x0)
            return (output - target).square().mean() + self._temporal(output, x_t, x0, t)
        if known.dtype != torch.bool or known.shape != (x0.shape[0], 1, *x0.shape[2:]):
            raise KinemaError(f"known must be a bool tensor of shape {[x0.shape[0], 1, *x0.shape[2:]]}, "
                              f"got {known.dtype} {list(known.shape)}")
        whole = known.flatten(3).all(dim=3)  # [B, 1, T]: frames given entirely
        t = t.masked_fill(whole[:, 0], 0.0)
        x_t, target = self.noise_and_target(x0, t, noise)
        # VP schedules keep a little noise at t = 0 (sigma = 0.01 for "linear"): pass given frames exactly clean.
        x_t = torch.where(whole[..., None, None], x0, x_t)
        output = self._checked(model_fn(x_t, t), x0)
        squared_error = (output - target).square()
        weight = (~known).to(squared_error.dtype).expand_as(squared_error)
        return (squared_error * weight).sum() / weight.sum().clamp(min=1) + self._temporal(output, x_t, x0, t, known)

    def _temporal(self, output: Tensor, x_t: Tensor, x0: Tensor, t: Tensor, known: Tensor | None = None) -> Tensor:
        """The weighted temporal regularisers on the x0 estimate (given pixels replaced by x0), pairs weighted by
        alpha(t_i) alpha(t_(i+1)); 0 when no term is on."""
        if not self.temporal:
            return x0.new_zeros(())
        alpha, sigma = self.schedule.alpha_sigma_like(t, x0)
        estimate = to_x0_eps(self.prediction, output, x_t, alpha, sigma)[0]
        if known is not None:
            estimate = torch.where(known, x0, estimate)
        signal = self.schedule.alpha_sigma(t)[0].to(x0.dtype)
        pair_weight = signal.square() if t.ndim == 1 else signal[:, :-1] * signal[:, 1:]
        return temporal_loss(estimate, x0, self.temporal, pair_weight=pair_weight)

    @staticmethod
    def _checked(output: Tensor, x0: Tensor) -> Tensor:
        """The model output, if it has the video's shape."""
        if output.shape != x0.shape:
            raise KinemaError(f"model output shape {tuple(output.shape)} does not match input {tuple(x0.shape)}")
        return output
