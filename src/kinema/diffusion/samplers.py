"""Samplers: stateless functions from noise x_1 to a clean sample over a time grid, all with one signature.

    sampler(denoise_fn, x, times, schedule, *, generator=None, callback=None, **options) -> Tensor

`times` is a grid of `steps + 1` decreasing times from (at most) 1 to exactly 0: 1-D (one time for the whole batch,
e.g. from `time_grids.time_grid(schedule, steps, "karras")`: the grid is a choice separate from the sampler,
k-diffusion style) or per frame, `[steps + 1, T]` or `[steps + 1, B, T]` (chapter 11.1.2; diffusion forcing, Chen et
al. 2024; FIFO-Diffusion, Kim et al. 2024). A per-frame grid never rises and may stop above 0 (a FIFO queue steps
each frame one level per call); a frame whose time does not change in a step (a given frame held at 0, a frame waiting
at 1) is left exactly as it is. `denoise_fn(x_t, t) -> x0_hat` returns
the clean estimate (wrap a network with `parameterization.x0_denoiser`); t is `[B]` when every frame of a video is at
one time, else `[B, T]`. `x` is the sample at times[0], used as is: for the flow schedule x_1 = eps exactly; for the
VP schedules alpha(1) < 1e-2 and sigma(1) ~ 1, so the missing alpha(1) x0 term is below the noise, as in DDPM. A
step that reaches t = 0 returns x0_hat from the last nonzero time, so the result is clean. `callback(i, steps, x,
x0_hat)` runs after every step.

Euler and Heun integrate the probability-flow ODE in its flow-matching form: z = x / (alpha + sigma)
= (1 - k) x0 + k eps with k = sigma / (alpha + sigma) in [0, 1], a straight line in k for one data
point (rectified flow, Liu et al. 2022). For the flow schedule z = x and k = t', which is how
diffusers' FlowMatchEuler/Heun schedulers step; k stays bounded where sigma / alpha does not
(alpha(1) ~ 0, e.g. cosine), so a first step from pure noise is as accurate as any other.

Step formulas use lambda = log(alpha / sigma) and h = lambda_s - lambda_t for a step
t -> s; alpha(1) = 0 ("flow") gives lambda_t = -inf, h = inf, which every formula takes.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from kinema.diffusion.schedules import NoiseSchedule
from kinema.errors import KinemaError

DenoiseFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, int, Tensor, Tensor], None] | None


@dataclass
class Levels:
    """alpha, sigma, lambda = log(alpha / sigma) and the flow form (c, k) = (alpha + sigma, sigma / c) of one time:
    float64 scalars for a 1-D grid, `[B, T]` tensors for a per-frame one."""

    time: Tensor
    alpha: Tensor
    sigma: Tensor
    lam: Tensor

    @classmethod
    def at(cls, schedule: NoiseSchedule, time: Tensor) -> "Levels":
        alpha, sigma = schedule.alpha_sigma(time)
        return cls(time, alpha, sigma, 0.5 * schedule.log_snr(time))

    @property
    def scale(self) -> Tensor:
        return self.alpha + self.sigma

    @property
    def k(self) -> Tensor:
        return self.sigma / (self.alpha + self.sigma)


@dataclass
class Step:
    """Step i of a grid, from time t to time s, and which frames it moves and finishes (None: all of them)."""

    i: int
    t: Levels
    s: Levels
    moving: Tensor | None    # [B, T] bool for a per-frame grid: t > s
    finishing: Tensor | None  # [B, T] bool for a per-frame grid: t > s = 0

    @property
    def per_frame(self) -> bool:
        return self.moving is not None

    def ends(self) -> bool:
        """True when every frame that moves reaches t = 0 (only x0_hat is needed)."""
        return bool((self.s.time == 0).all()) if not self.per_frame else bool((self.s.time[self.moving] == 0).all())


def _video(value: Tensor, x: Tensor) -> Tensor:
    """A level as a factor for x: a scalar, or `[B, T]` as `[B, 1, T, 1, 1]`, in x's dtype on x's device."""
    if value.ndim == 2:
        value = value[:, None, :, None, None]
    return value.to(device=x.device, dtype=x.dtype)


def _denoise(denoise_fn: DenoiseFn, x: Tensor, levels: Levels) -> Tensor:
    """x0_hat at `levels`' time: t `[B]` (at least float32) when each video's frames share it, else `[B, T]`."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    time = levels.time
    if time.ndim == 0:
        return denoise_fn(x, torch.full(x.shape[:1], time.item(), dtype=dtype, device=x.device))
    time = time[:, 0] if bool((time == time[:, :1]).all()) else time
    return denoise_fn(x, time.to(device=x.device, dtype=dtype))


def _grid(times: Tensor, x: Tensor) -> Tensor:
    """`times` checked: 1-D, or per frame expanded to `[steps + 1, B, T]` (else a KinemaError naming the fault)."""
    if not isinstance(times, Tensor) or times.ndim not in (1, 2, 3) or len(times) < 2:
        shape = tuple(times.shape) if isinstance(times, Tensor) else type(times).__name__
        raise KinemaError(f"sampling times must be a grid of steps + 1 >= 2 times: [steps + 1], [steps + 1, T] or "
                          f"[steps + 1, B, T], got {shape}")
    grid = times.detach().double().cpu()
    if grid.ndim > 1:
        frames = (x.shape[2],) if grid.ndim == 2 else (x.shape[0], x.shape[2])
        if tuple(grid.shape[1:]) != frames:
            raise KinemaError(f"per-frame sampling times must be [steps + 1, {', '.join(map(str, frames))}] for "
                              f"videos {list(x.shape)}, got {list(grid.shape)}")
        grid = grid.reshape(len(grid), -1, x.shape[2]).expand(len(grid), x.shape[0], x.shape[2])
    rising = (grid[1:] > grid[:-1]).any() if grid.ndim > 1 else not (grid[1:] < grid[:-1]).all()
    ends = (grid[-1] == 0).all() if grid.ndim == 1 else (grid[-1] >= 0).all()  # a per-frame grid may stop early
    if not (torch.isfinite(grid).all() and (grid[0] <= 1).all() and ends and not rising
            and (grid.ndim == 1 or (grid[1:] < grid[:-1]).any())):
        shown = ", ".join(f"{v:.4g}" for v in grid.reshape(len(grid), -1)[:6, 0].tolist())
        target = "exactly 0" if grid.ndim == 1 else "at least 0 (exactly 0 for a frame to come out clean)"
        raise KinemaError(f"sampling times must {'decrease strictly' if grid.ndim == 1 else 'never rise'} from "
                          f"<= 1 to {target}, got [{shown}{', ...' if len(grid) > 6 else ''}] ending at "
                          f"{grid[-1].min().item() if grid.ndim > 1 else grid[-1].item():.4g}")
    return grid


def _steps(times: Tensor, x: Tensor, schedule: NoiseSchedule) -> Iterator[Step]:
    """The steps t -> s of a valid time grid (else a KinemaError naming what is wrong)."""
    grid = _grid(times, x)
    levels = [Levels.at(schedule, time) for time in grid]
    for i, (t, s) in enumerate(zip(levels[:-1], levels[1:])):
        if grid.ndim == 1:
            yield Step(i, t, s, None, None)
        else:
            moving = t.time > s.time
            yield Step(i, t, s, moving, moving & (s.time == 0))


def _finish(step: Step, x: Tensor, x0: Tensor, stepped: Tensor | None) -> Tensor:
    """The sample after `step`: x0_hat where frames reach 0, `stepped` where they move on, x where they stand."""
    if not step.per_frame:
        return x0 if step.s.time == 0 else stepped
    moving, finishing = _video(step.moving, x).bool(), _video(step.finishing, x).bool()
    return torch.where(finishing, x0, torch.where(moving, stepped, x) if stepped is not None else x)


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _flow_velocity(x: Tensor, x0: Tensor, at: Levels) -> Tensor:
    """dz/dk = eps_hat - x0_hat = (x / c - x0_hat) / k, the probability-flow ODE's slope in flow form."""
    return (x / _video(at.scale, x) - x0) / _video(at.k, x)


def _flow_step(x: Tensor, velocity: Tensor, t: Levels, s: Levels) -> Tensor:
    """x_s = c_s (z_t + (k_s - k_t) velocity): one step of the flow-form ODE from (c_t, k_t) to (c_s, k_s)."""
    return _video(s.scale, x) * (x / _video(t.scale, x) + _video(s.k - t.k, x) * velocity)


def _integrate(denoise_fn: DenoiseFn, x: Tensor, times: Tensor, schedule: NoiseSchedule, callback: Callback,
               update: Callable[[Step, Tensor, Tensor], Tensor]) -> Tensor:
    """The loop every sampler shares: x0_hat at each step's time, then `update(step, x, x0_hat)` to the next time
    (skipped when every moving frame reaches 0, where x0_hat is the result), standing frames kept as they are."""
    steps = len(times) - 1
    for step in _steps(times, x, schedule):
        x0 = _denoise(denoise_fn, x, step.t)
        x = _finish(step, x, x0, None if step.ends() else update(step, x, x0))
        if callback is not None:
            callback(step.i, steps, x, x0)
    return x


def sample_ddpm(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Ancestral sampling from the posterior q(x_s | x_t, x0_hat) (Ho et al. 2020, eqs. 6-7)."""

    def update(step: Step, x: Tensor, x0: Tensor) -> Tensor:
        t, s = step.t, step.s
        keep = torch.exp(-(s.lam - t.lam))          # alpha_t sigma_s / (alpha_s sigma_t)
        fresh = -torch.expm1(-2 * (s.lam - t.lam))  # 1 - keep^2
        # posterior mean  (sigma_s / sigma_t) keep x_t + alpha_s fresh x0,  variance  sigma_s^2 fresh
        return (_video(s.sigma / t.sigma * keep, x) * x + _video(s.alpha * fresh, x) * x0
                + _video(s.sigma * fresh.sqrt(), x) * _noise(x, generator))

    return _integrate(denoise_fn, x, times, schedule, callback, update)


def sample_ddim(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12); `eta` = 0 is deterministic, `eta` = 1 matches DDPM's posterior."""

    def update(step: Step, x: Tensor, x0: Tensor) -> Tensor:
        t, s = step.t, step.s
        eps = (x - _video(t.alpha, x) * x0) / _video(t.sigma, x)
        spread = eta * s.sigma * torch.sqrt(-torch.expm1(-2 * (s.lam - t.lam)))
        stepped = _video(s.alpha, x) * x0 + _video((s.sigma**2 - spread**2).clamp(min=0).sqrt(), x) * eps
        return stepped + _video(spread, x) * _noise(x, generator) if eta > 0 else stepped

    return _integrate(denoise_fn, x, times, schedule, callback, update)


def sample_dpmpp_2m(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """DPM-Solver++(2M): second-order multistep data prediction in lambda (Lu et al. 2022, Alg. 2).

    With a per-frame grid each frame keeps its own history, from the steps it moved in."""
    history = {"x0": torch.zeros_like(x), "h": torch.tensor(math.inf, dtype=torch.float64)}

    def update(step: Step, x: Tensor, x0: Tensor) -> Tensor:
        t, s = step.t, step.s
        h, previous_h = s.lam - t.lam, history["h"]
        # extrapolate x0 with r = h_prev / h; no finite previous step (h_prev = inf, or alpha = 0): first order
        usable = torch.isfinite(previous_h) & (previous_h > 0) & torch.isfinite(h)
        half_inverse_r = torch.where(usable, 0.5 * h / previous_h, torch.zeros_like(h))
        data = _video(1 + half_inverse_r, x) * x0 - _video(half_inverse_r, x) * history["x0"]
        if step.per_frame:
            history["x0"] = torch.where(_video(step.moving, x).bool(), x0, history["x0"])
            history["h"] = torch.where(step.moving, h, previous_h)
        else:
            history["x0"], history["h"] = x0, h
        return _video(s.sigma / t.sigma, x) * x - _video(s.alpha * torch.expm1(-h), x) * data

    return _integrate(denoise_fn, x, times, schedule, callback, update)


def sample_euler(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Euler on the probability-flow ODE in flow form (Karras et al. 2022, Alg. 1 minus the correction).

    The flow form is straight for one data point, so this step equals DDIM with eta = 0."""

    def update(step: Step, x: Tensor, x0: Tensor) -> Tensor:
        return _flow_step(x, _flow_velocity(x, x0, step.t), step.t, step.s)

    return _integrate(denoise_fn, x, times, schedule, callback, update)


def sample_heun(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Heun's 2nd-order method on the probability-flow ODE in flow form (Karras et al. 2022, Alg. 1).

    Two network calls per step; the last step (to t = 0) is Euler, as in the paper."""

    def update(step: Step, x: Tensor, x0: Tensor) -> Tensor:
        velocity = _flow_velocity(x, x0, step.t)
        x_euler = _flow_step(x, velocity, step.t, step.s)
        if step.per_frame:  # frames that finish or stand are evaluated where they will be
            x_euler = _finish(step, x, x0, x_euler)
        velocity_s = _flow_velocity(x_euler, _denoise(denoise_fn, x_euler, step.s), step.s)
        return _flow_step(x, 0.5 * (velocity + velocity_s), step.t, step.s)

    return _integrate(denoise_fn, x, times, schedule, callback, update)


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler": sample_euler,
    "heun": sample_heun,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """The sampler function called `name`."""
    if name not in SAMPLERS:
        raise KinemaError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
