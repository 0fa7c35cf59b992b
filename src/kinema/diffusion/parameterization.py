"""What the network predicts, and how to turn its output back into (x0, eps).

With x_t = alpha x0 + sigma eps the targets are
  "eps"  -> eps                          (Ho et al. 2020)
  "x0"   -> x0
  "v"    -> alpha eps - sigma x0         (Salimans & Ho 2022, sec. 4)
  "flow" -> eps - x0, the velocity dx_t/dt of the flow schedule (Liu et al. 2022; Lipman et al. 2022).
alpha and sigma are tensors that broadcast against the video (see `NoiseSchedule.alpha_sigma_like`).
"""

from collections.abc import Callable

from torch import Tensor

from kinema.diffusion.schedules import NoiseSchedule
from kinema.errors import KinemaError

PREDICTIONS = ("eps", "v", "x0", "flow")

# Recovering x0 from an eps prediction divides by alpha, and eps from an x0 prediction
# divides by sigma. At the ends of a schedule (alpha = 0 at t = 1 for "flow", sigma -> 0
# near t = 0) that quantity is not determined by the output; the divisor is floored here
# so the result stays finite. Samplers never need it there: they evaluate at t > 0, and
# use x0 predictions when alpha = 0.
DIVISOR_FLOOR = 1e-4


def check_prediction(prediction: str) -> str:
    """Return `prediction` if it is a known target name, else raise KinemaError."""
    if prediction not in PREDICTIONS:
        raise KinemaError(f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}")
    return prediction


def training_target(prediction: str, x0: Tensor, noise: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The regression target of a network that predicts `prediction`."""
    check_prediction(prediction)
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha * noise - sigma * x0
    return noise - x0


def to_x0_eps(prediction: str, output: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Invert `training_target`: (x0, eps) from the network output at x_t (divisors floored, see DIVISOR_FLOOR)."""
    check_prediction(prediction)
    if prediction == "eps":
        x0 = (x_t - sigma * output) / alpha.clamp(min=DIVISOR_FLOOR)
        return x0, output
    if prediction == "x0":
        return output, (x_t - alpha * output) / sigma.clamp(min=DIVISOR_FLOOR)
    if prediction == "v":  # alpha^2 + sigma^2 = 1 is not assumed
        norm = alpha**2 + sigma**2
        return (alpha * x_t - sigma * output) / norm, (sigma * x_t + alpha * output) / norm
    # flow: x_t = alpha x0 + sigma (u + x0)  =>  x0 = (x_t - sigma u) / (alpha + sigma)
    x0 = (x_t - sigma * output) / (alpha + sigma)
    return x0, output + x0


def x0_denoiser(
    model_fn: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule, prediction: str
) -> Callable[[Tensor, Tensor], Tensor]:
    """Wrap `model_fn(x_t, t) -> output` into the samplers' `denoise_fn(x_t, t) -> x0_hat`."""
    check_prediction(prediction)

    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = schedule.alpha_sigma_like(t, x_t)
        return to_x0_eps(prediction, model_fn(x_t, t), x_t, alpha, sigma)[0]

    return denoise
