r"""Reverse-process steps (DDPM ancestral, DDIM) and the one sampling loop with classifier-free guidance.

Every step takes the denoiser's *x0 estimate* (whatever the model predicts is first converted with
:meth:`NoiseSchedule.to_x0`), so the math below is written in x0. With ``a = abar_t`` and
``a' = abar_{t'}`` for the next (smaller) timestep ``t' < t`` (``t' = -1`` means clean data, ``a' = 1``),
and ``eps_hat = (x_t - sqrt(a) x0_hat) / sqrt(1 - a)``:

DDPM ancestral step (Ho et al. 2020 eq. 6-7; for ``t' < t - 1`` the respaced process of Nichol &
Dhariwal 2021 with ``beta' = 1 - a / a'``)::

    x_{t'} = sqrt(a') beta' / (1 - a) * x0_hat + sqrt(a / a') (1 - a') / (1 - a) * x_t + sigma z
    sigma^2 = (1 - a') / (1 - a) * beta'            (posterior variance of q(x_{t'} | x_t, x0))

DDIM step (Song et al. 2021 eq. 12)::

    x_{t'} = sqrt(a') x0_hat + sqrt(1 - a' - sigma^2) eps_hat + sigma z
    sigma   = eta * sqrt((1 - a') / (1 - a)) * sqrt(1 - a / a')

``eta = 0`` is deterministic; ``eta = 1`` equals the DDPM step. At ``t' = -1`` both return x0_hat.

Classifier-free guidance (Ho & Salimans 2022) on the model output, batched as one forward of 2B::

    pred = pred_uncond + w * (pred_cond - pred_uncond)

``w = 1`` is the conditional model, ``w = 0`` the unconditional one, ``w > 1`` extrapolates. Because
x0, eps and v are affine in each other with the same coefficients for both halves (same ``x_t``,
``t``), guiding eps or v is identical to guiding the implied x0 (AVI-Talking's prior predicts x0,
paper eq. 7-8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from avitalk.diffusion.schedule import NoiseSchedule, Prediction
from avitalk.errors import AvitalkError

Cond = torch.Tensor | Mapping[str, Any] | None
"""Conditioning passed to the denoiser: a ``(B, ...)`` tensor, a dict of them, or None."""
DenoiseFn = Callable[[torch.Tensor, torch.Tensor, Cond], torch.Tensor]
"""``denoise_fn(x_t (B, ...), t (B,) long, cond) -> prediction (B, ...)``."""
Sampler = Literal["ddim", "ddpm"]


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ddim_timesteps(num_steps: int, num_train_steps: int) -> torch.Tensor:
    """``(num_steps,)`` descending timesteps for sampling, evenly spaced and starting at ``T - 1``.

    "Trailing" spacing (Lin et al. 2024): ``t_i = T - 1 - floor(i T / n)``, so the first step sees
    pure-noise level ``T - 1`` (matching ``x_T ~ N(0, I)``); ``n = T`` gives ``T-1, ..., 0``.
    E.g. ``n = 10, T = 1000``: 999, 899, ..., 99.
    """
    if not isinstance(num_steps, int) or not 1 <= num_steps <= num_train_steps:
        raise AvitalkError(f"sampling steps must be an integer in 1..{num_train_steps}, got {num_steps!r}")
    return torch.tensor([num_train_steps - 1 - (i * num_train_steps) // num_steps for i in range(num_steps)])


def ddpm_step(
    schedule: NoiseSchedule,
    x_t: torch.Tensor,
    x0_pred: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One ancestral step: a sample of q(x_{t'} | x_t, x0 = x0_pred) (module docstring).

    Args:
        x_t: ``(B, ...)`` current sample.
        x0_pred: ``(B, ...)`` the denoiser's x0 estimate at ``(x_t, t)``.
        t: current timestep, int or ``(B,)``.
        t_prev: next timestep ``< t`` (default ``t - 1``); ``-1`` returns ``x0_pred``.
        generator: for the noise ``z``; must live on ``x_t``'s device.

    Returns:
        ``(B, ...)`` sample ``x_{t'}``.
    """
    if t_prev is None:
        t_prev = t - 1
    a = schedule.alpha_bar(t, like=x_t)
    a_prev = schedule.alpha_bar(t_prev, like=x_t)
    beta = 1.0 - a / a_prev
    mean = (a_prev.sqrt() * beta / (1.0 - a)) * x0_pred + ((a / a_prev).sqrt() * (1.0 - a_prev) / (1.0 - a)) * x_t
    var = (1.0 - a_prev) / (1.0 - a) * beta  # 0 where t_prev == -1
    return mean + var.sqrt() * _randn_like(x_t, generator)


def ddim_step(
    schedule: NoiseSchedule,
    x_t: torch.Tensor,
    x0_pred: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step from ``t`` to ``t_prev`` (module docstring); shapes as :func:`ddpm_step`.

    ``eta = 0`` is deterministic (no noise drawn); ``t_prev = -1`` returns ``x0_pred`` exactly.
    """
    a = schedule.alpha_bar(t, like=x_t)
    a_prev = schedule.alpha_bar(t_prev, like=x_t)
    eps = (x_t - a.sqrt() * x0_pred) / (1.0 - a).sqrt()  # (B, ...) implied noise
    x_prev = a_prev.sqrt() * x0_pred
    if eta == 0:
        return x_prev + (1.0 - a_prev).sqrt() * eps
    var = eta**2 * (1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev)
    return x_prev + (1.0 - a_prev - var).clamp(min=0).sqrt() * eps + var.sqrt() * _randn_like(x_t, generator)


# ------------------------------------------------------------------------------------------- guidance


def _batch_like(u: Any, n: int) -> Any:
    """Expand a batch-1 unconditional tensor (e.g. a learned null embedding ``(1, D)``) to ``n`` rows."""
    if isinstance(u, torch.Tensor):
        return u.expand(n, *u.shape[1:]) if u.shape[0] == 1 and n != 1 else u
    if isinstance(u, Mapping):
        return {k: _batch_like(v, n) for k, v in u.items()}
    return u


def _cat(c: Any, u: Any) -> Any:
    """Concatenate conditional and unconditional inputs along the batch (tensors, dicts of them, None)."""
    if isinstance(c, torch.Tensor):
        return torch.cat([c, u])
    if isinstance(c, Mapping):
        return {k: _cat(c[k], u[k]) for k in c}
    return c


def guided_prediction(
    denoise_fn: DenoiseFn,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: Cond,
    uncond: Cond = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """The classifier-free-guided model output ``u + w (c - u)`` at ``(x_t (B, ...), t (B,))``.

    One forward of 2B rows (conditional first); ``w = 1`` (or no ``uncond``) runs only the
    conditional half and ``w = 0`` only the unconditional one. ``uncond`` has the structure of
    ``cond``; batch-1 tensors in it are broadcast to B.
    """
    b = x_t.shape[0]
    if guidance == 1:
        return denoise_fn(x_t, t, cond)
    if uncond is None:
        raise AvitalkError(f"guidance scale {guidance} needs an unconditional input (uncond)")
    uncond = _batch_like(uncond, b)
    if guidance == 0:
        return denoise_fn(x_t, t, uncond)
    out = denoise_fn(torch.cat([x_t, x_t]), torch.cat([t, t]), _cat(cond, uncond))  # (2B, ...)
    c, u = out[:b], out[b:]
    return u + guidance * (c - u)


# ---------------------------------------------------------------------------------------------- loop


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, Mapping):
        for v in x.values():
            found = _first_tensor(v)
            if found is not None:
                return found
    return None


@torch.no_grad()
def sample(
    denoise_fn: DenoiseFn,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    steps: int | None = None,
    guidance: float = 1.0,
    cond: Cond = None,
    uncond: Cond = None,
    generator: torch.Generator | None = None,
    prediction: Prediction = "x0",
    sampler: Sampler = "ddim",
    eta: float = 0.0,
    x_T: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw samples ``(B, ...)`` = ``shape`` from the reverse process, with classifier-free guidance.

    Args:
        denoise_fn: ``(x_t (B, ...), t (B,) long, cond) -> prediction (B, ...)``; it only predicts.
        shape: ``(B, ...)`` of the samples.
        schedule: the training noise schedule.
        steps: number of denoising steps on :func:`ddim_timesteps` (default all ``T``).
        guidance: classifier-free guidance scale ``w`` (1 = conditional only).
        cond, uncond: conditioning for the two halves (see :func:`guided_prediction`).
        generator: seeds the initial noise and any step noise (must live on the sampling device).
        prediction: what ``denoise_fn`` outputs: ``"x0"`` (the paper's prior), ``"eps"`` or ``"v"``.
        sampler: ``"ddim"`` (with ``eta``) or ``"ddpm"`` (ancestral, respaced when ``steps < T``).
        eta: DDIM stochasticity (0 deterministic, 1 = DDPM).
        x_T: optional starting noise ``shape``; drawn from N(0, I) with ``generator`` otherwise.
        device: where to sample; default ``x_T``'s, then ``cond``'s, then the generator's, then CPU.
        dtype: of the drawn noise.

    Runs under ``torch.no_grad``; the result is an ordinary tensor.
    """
    if sampler not in ("ddim", "ddpm"):
        raise AvitalkError(f"unknown sampler {sampler!r}; expected 'ddim' or 'ddpm'")
    if x_T is None:
        if device is None:
            ref = _first_tensor(cond)
            device = ref.device if ref is not None else (generator.device if generator is not None else "cpu")
        x_T = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    elif tuple(x_T.shape) != tuple(shape):
        raise AvitalkError(f"x_T has shape {tuple(x_T.shape)} but shape {tuple(shape)} was asked for")
    x = x_T
    timesteps = ddim_timesteps(steps or schedule.num_steps, schedule.num_steps).tolist()
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        t_batch = torch.full((shape[0],), t, dtype=torch.long, device=x.device)  # (B,)
        pred = guided_prediction(denoise_fn, x, t_batch, cond, uncond, guidance)
        x0 = schedule.to_x0(pred, x, t_batch, prediction)
        if sampler == "ddim":
            x = ddim_step(schedule, x, x0, t, t_prev, eta, generator)
        else:
            x = ddpm_step(schedule, x, x0, t, t_prev, generator)
    return x
