"""Gaussian diffusion machinery that knows nothing of faces: noise schedules, DDPM/DDIM steps and
one sampling loop with classifier-free guidance.

The denoiser is the caller's (``denoise_fn(x_t, t, cond) -> prediction``); the schedule holds no
parameters and no loss; losses live in the training recipes (DESIGN.md principle 4).
"""

from avitalk.diffusion.sampling import (
    Cond,
    DenoiseFn,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    guided_prediction,
    sample,
)
from avitalk.diffusion.schedule import PREDICTIONS, SCHEDULES, NoiseSchedule, Prediction

__all__ = [
    "PREDICTIONS",
    "SCHEDULES",
    "Cond",
    "DenoiseFn",
    "NoiseSchedule",
    "Prediction",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_step",
    "guided_prediction",
    "sample",
]
