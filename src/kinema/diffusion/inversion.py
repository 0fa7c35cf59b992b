"""DDIM inversion: run the deterministic sampler backwards, from a clean video up to a noise level (Song et al. 2021,
sec. 4.3; used for text-guided editing by Mokady et al. 2023).

Each step t -> s (s > t) keeps the DDIM update x_s = alpha_s x0_hat + sigma_s eps_hat with the estimates taken at
(x_t, t): the path that DDIM sampling walks down again, so sampling the inverted noise with the same prompt gives the
video back up to the discretisation error, and sampling it with another prompt changes what the prompt says while
the layout and motion, which the inverted noise encodes, stay. Compared with SDEdit's fresh noise at the same
strength, objects keep their paths more closely.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kinema.diffusion.guidance import DenoiseFn
from kinema.diffusion.schedules import NoiseSchedule
from kinema.errors import KinemaError


def ddim_invert(denoise_fn: DenoiseFn, video: Tensor, times: Tensor, schedule: NoiseSchedule) -> Tensor:
    """The noisy video at `times[-1]` whose DDIM path down the reversed grid leads to `video` ([B, C, T, H, W]).

    `times` is a 1-D grid rising from 0 (e.g. a sampler's grid flipped). At t = 0 the clean video is its own
    estimate and carries no noise; the first step takes eps_hat from the model at the next level, on the video
    scaled to that level (the noise the model reads into the clean video)."""
    if times.ndim != 1 or len(times) < 2 or times[0] != 0 or not bool((times[1:] > times[:-1]).all()):
        raise KinemaError(f"DDIM inversion needs a 1-D grid rising from 0, got {times.tolist()}")
    x = video
    batch = video.shape[0]
    for t, s in zip(times[:-1].tolist(), times[1:].tolist()):
        alpha_s, sigma_s = (v.item() for v in schedule.alpha_sigma(torch.tensor(s, dtype=torch.float64)))
        if t == 0:
            probe = alpha_s * x
            eps = (probe - alpha_s * denoise_fn(probe, x.new_full((batch,), s))) / sigma_s
            x0 = x
        else:
            alpha_t, sigma_t = (v.item() for v in schedule.alpha_sigma(torch.tensor(t, dtype=torch.float64)))
            x0 = denoise_fn(x, x.new_full((batch,), t))
            eps = (x - alpha_t * x0) / sigma_t
        x = alpha_s * x0 + sigma_s * eps
    return x
