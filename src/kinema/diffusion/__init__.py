"""Diffusion: noise schedules, model parameterisations, the training loss, time grids, samplers and guidance."""

from kinema.diffusion.guidance import (batched_classifier_free_guidance, classifier_free_guidance, gradient_guidance,
                                       reconstruction_guidance)
from kinema.diffusion.loss import DiffusionLoss
from kinema.diffusion.parameterization import PREDICTIONS, to_x0_eps, training_target, x0_denoiser
from kinema.diffusion.samplers import SAMPLERS, get_sampler
from kinema.diffusion.schedules import SCHEDULES, NoiseSchedule, broadcast_levels, build_schedule
from kinema.diffusion.time_grids import TIME_GRIDS, time_grid

__all__ = [
    "PREDICTIONS",
    "SAMPLERS",
    "SCHEDULES",
    "TIME_GRIDS",
    "DiffusionLoss",
    "NoiseSchedule",
    "batched_classifier_free_guidance",
    "broadcast_levels",
    "build_schedule",
    "classifier_free_guidance",
    "get_sampler",
    "gradient_guidance",
    "reconstruction_guidance",
    "time_grid",
    "to_x0_eps",
    "training_target",
    "x0_denoiser",
]
