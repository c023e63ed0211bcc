r"""Variance-preserving noise schedules (DDPM) and conversions between x0 / eps / v predictions.

Notation (timesteps are 0-based, ``t = 0 .. T-1``, as in diffusers)::

    beta_t                      noise added at step t, 0 < beta_t < 1
    alpha_t   = 1 - beta_t
    abar_t    = prod_{s <= t} alpha_s           ("alphas_cumprod"; abar_{-1} := 1, clean data)
    x_t       = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,    eps ~ N(0, I)       (forward process q)
    SNR(t)    = abar_t / (1 - abar_t)
    v         = sqrt(abar_t) eps - sqrt(1 - abar_t) x0                          (Salimans & Ho 2022)

A denoiser ``f(x_t, t, c)`` predicts one of x0 (AVI-Talking's prior, paper eq. 7), eps or v; since
x_t is known, any one determines the others (:meth:`NoiseSchedule.to_x0`, :meth:`NoiseSchedule.to_eps`).

The schedule holds plain CPU float64 tensors and no parameters, no loss and no device: lookups
move the few values they need to the device and dtype of the tensors they are applied to.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from avitalk.errors import AvitalkError

Prediction = Literal["x0", "eps", "v"]
PREDICTIONS: tuple[str, ...] = ("x0", "eps", "v")
SCHEDULES: tuple[str, ...] = ("linear", "cosine")


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise AvitalkError(f"unknown prediction type {prediction!r}; expected one of {', '.join(PREDICTIONS)}")


class NoiseSchedule:
    """A discrete variance-preserving schedule of ``T`` steps.

    Args:
        betas: ``(T,)`` noise variances, each in (0, 1).
        kind: a label for ``repr`` and configs (``"linear"``, ``"cosine"``, ``"custom"``).

    Attributes:
        betas, alphas, alphas_cumprod: ``(T,)`` float64 CPU tensors (``beta_t``, ``alpha_t``, ``abar_t``).
    """

    def __init__(self, betas: torch.Tensor, kind: str = "custom") -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() < 1:
            raise AvitalkError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise AvitalkError("every beta must lie strictly between 0 and 1")
        self.kind = kind
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self._abar_from_minus_one = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])  # (T+1,)

    # ------------------------------------------------------------------------------------ construction

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> NoiseSchedule:
        """DDPM's linear betas (Ho et al. 2020), rescaled by ``1000 / T`` as in improved-diffusion so
        that any ``T`` covers the same noise range (``T = 1000`` gives exactly 1e-4 .. 0.02)."""
        _check_steps(num_steps)
        scale = 1000.0 / num_steps
        betas = torch.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=torch.float64)
        return cls(betas.clamp(max=0.999), kind="linear")

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal (2021): ``abar(u) = f(u) / f(0)``, ``f(u) = cos((u + s) / (1 + s) * pi / 2)^2``
        at ``u = (t + 1) / T``, with ``beta_t = min(1 - abar((t+1)/T) / abar(t/T), max_beta)``."""
        _check_steps(num_steps)

        def f(u: float) -> float:
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [min(1.0 - f((i + 1) / num_steps) / f(i / num_steps), max_beta) for i in range(num_steps)]
        return cls(torch.tensor(betas, dtype=torch.float64), kind="cosine")

    @classmethod
    def from_name(cls, kind: str, num_steps: int) -> NoiseSchedule:
        """``"linear"`` or ``"cosine"`` with ``num_steps`` steps (the names stored in configs)."""
        if kind == "linear":
            return cls.linear(num_steps)
        if kind == "cosine":
            return cls.cosine(num_steps)
        raise AvitalkError(f"unknown noise schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")

    @property
    def num_steps(self) -> int:
        """``T``."""
        return int(self.betas.shape[0])

    def __len__(self) -> int:
        return self.num_steps

    def __repr__(self) -> str:
        return f"NoiseSchedule(kind={self.kind!r}, num_steps={self.num_steps})"

    # ----------------------------------------------------------------------------------------- lookups

    def alpha_bar(self, t: torch.Tensor | int, like: torch.Tensor | None = None) -> torch.Tensor:
        """``abar_t`` for integer ``t`` (``-1`` gives 1, the clean end).

        Args:
            t: an int, or ``(B,)`` integer tensor.
            like: if given, the result has its dtype and device and is shaped ``(B, 1, ..., 1)`` to
                broadcast against it (``like`` is ``(B, ...)``); otherwise float64 of ``t``'s shape.
        """
        device = like.device if like is not None else (t.device if isinstance(t, torch.Tensor) else None)
        t = torch.as_tensor(t, dtype=torch.long, device=device)
        if bool(((t < -1) | (t >= self.num_steps)).any()):
            raise AvitalkError(f"timestep out of range [-1, {self.num_steps - 1}]: {t.tolist()}")
        out = self._abar_from_minus_one.to(t.device)[t + 1]  # (B,) or ()
        if like is None:
            return out
        out = out.to(like.dtype)
        if out.ndim == 0:
            return out
        return out.reshape(out.shape[0], *([1] * (like.ndim - 1)))  # (B, 1, ..., 1)

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """Signal-to-noise ratio ``abar_t / (1 - abar_t)`` (float64, shape of ``t``); decreasing in t."""
        a = self.alpha_bar(t)
        return a / (1.0 - a)

    # ----------------------------------------------------------------------------------- forward process

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """Sample q(x_t | x0): ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        Args:
            x0: ``(B, ...)`` clean data.
            noise: ``(B, ...)`` standard normal noise.
            t: ``(B,)`` integer timesteps (or one int for all).

        Returns:
            ``(B, ...)`` noisy data ``x_t``.
        """
        a = self.alpha_bar(t, like=x0)
        return a.sqrt() * x0 + (1.0 - a).sqrt() * noise

    def sample_timesteps(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """``(batch,)`` timesteps uniform on ``0 .. T-1`` (for training)."""
        if device is None and generator is not None:
            device = generator.device
        return torch.randint(0, self.num_steps, (batch,), generator=generator, device=device)

    # ------------------------------------------------------------------------------ prediction types

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """v-prediction target ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0``; shapes as :meth:`add_noise`."""
        a = self.alpha_bar(t, like=x0)
        return a.sqrt() * noise - (1.0 - a).sqrt() * x0

    def to_x0(
        self, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, prediction: Prediction
    ) -> torch.Tensor:
        """x0 implied by a model output ``pred`` of type ``prediction`` at ``(x_t, t)``.

        ``eps``: ``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)``;  ``v``: ``x0 = sqrt(abar) x_t - sqrt(1 - abar) v``.
        All tensors ``(B, ...)``, ``t`` ``(B,)``.
        """
        _check_prediction(prediction)
        if prediction == "x0":
            return pred
        a = self.alpha_bar(t, like=x_t)
        if prediction == "eps":
            return (x_t - (1.0 - a).sqrt() * pred) / a.sqrt()
        return a.sqrt() * x_t - (1.0 - a).sqrt() * pred

    def to_eps(
        self, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, prediction: Prediction
    ) -> torch.Tensor:
        """eps implied by ``pred``: from x0, ``eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)``;
        from v, ``eps = sqrt(1 - abar) x_t + sqrt(abar) v``. Shapes as :meth:`to_x0`.

        Undefined at ``t = -1`` (no noise); near ``t = 0`` it amplifies errors in x0 by ``1/sqrt(1 - abar)``.
        """
        _check_prediction(prediction)
        if prediction == "eps":
            return pred
        a = self.alpha_bar(t, like=x_t)
        if prediction == "x0":
            return (x_t - a.sqrt() * pred) / (1.0 - a).sqrt()
        return (1.0 - a).sqrt() * x_t + a.sqrt() * pred

    def from_x0(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, prediction: Prediction
    ) -> torch.Tensor:
        """The output of type ``prediction`` equivalent to ``x0`` at ``(x_t, t)`` (inverse of :meth:`to_x0`)."""
        _check_prediction(prediction)
        if prediction == "x0":
            return x0
        eps = self.to_eps(x0, x_t, t, "x0")
        return eps if prediction == "eps" else self.velocity(x0, eps, t)


def _check_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int) or num_steps < 1:
        raise AvitalkError(f"a noise schedule needs a positive integer number of steps, got {num_steps!r}")
