r"""Stage-2 losses as pure functions (DESIGN.md principle 6: losses live outside the models).

Motion prior (style encoder + talking generator, trained first)::

    L_motion = w_rec * reconstruction + w_vel * velocity + w_lip * lip_vertex

Instruction alignment + diffusion prior (style encoder frozen, paper eq. 7-8)::

    L_diff = || f(z_t, t, c) - z_0 ||^2                  (x0 prediction, condition dropped w.p. p)
    L      = L_cont + lambda * L_diff,  lambda = 30      (L_cont: symmetric InfoNCE, :func:`info_nce`)

The lip term works in vertex space without knowing any face model: the caller restricts a linear
face's blendshape basis to its lip vertices (:class:`LipBasis`), so the loss is a few tensor ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from avitalk.diffusion import NoiseSchedule
from avitalk.motion.align import DirectMapping, info_nce
from avitalk.motion.config import LossConfig, LossKind
from avitalk.motion.denoiser import PriorDenoiser

# ------------------------------------------------------------------------------------------- motion


def _err(pred: torch.Tensor, target: torch.Tensor, kind: LossKind) -> torch.Tensor:
    if kind == "mse":
        return (pred - target).square()
    if kind == "l1":
        return (pred - target).abs()
    raise ValueError(f"unknown loss kind {kind!r}; expected 'mse' or 'l1'")


def _masked_mean(err: torch.Tensor, valid: torch.Tensor | None, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``err`` ``(B, T, D)`` over valid frames and channels, channels scaled by ``weight`` ``(D,)``."""
    d = err.shape[-1]
    if weight is not None:
        err = err * weight.to(err.dtype)
    if valid is None:
        return err.sum() / max(err.numel(), 1)
    n = valid.sum().to(err.dtype) * d
    return (err * valid[..., None].to(err.dtype)).sum() / n.clamp(min=1.0)


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    kind: LossKind = "mse",
) -> torch.Tensor:
    """Masked, channel-weighted reconstruction error.

    Args:
        pred, target: ``(B, T, D)`` motion.
        valid: ``(B, T)`` bool, True at real frames; None = all.
        weight: ``(D,)`` per-channel weight; None = ones (then the result is the plain mean).
        kind: ``"mse"`` or ``"l1"``.

    Returns:
        scalar: ``sum(valid * w_d * err) / (n_valid_frames * D)``.
    """
    return _masked_mean(_err(pred, target, kind), valid, weight)


def velocity_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    kind: LossKind = "mse",
) -> torch.Tensor:
    """Error between frame-to-frame differences (``x[t+1] - x[t]``), counted where both frames are real.

    Shapes as :func:`reconstruction_loss`; zero (not NaN) for ``T < 2``.
    """
    vp = pred[:, 1:] - pred[:, :-1]  # (B, T-1, D)
    vt = target[:, 1:] - target[:, :-1]  # (B, T-1, D)
    pair = None if valid is None else valid[:, 1:] & valid[:, :-1]  # (B, T-1)
    return _masked_mean(_err(vp, vt, kind), pair, weight)


@dataclass(frozen=True)
class LipBasis:
    """A linear face's blendshape basis restricted to its lip vertices, as plain tensors.

    Lip vertices of a motion frame ``m`` ``(D,)`` are ``neutral_lips + sum_k m[channel_index[k]] basis_lips[k]``.
    Built by the caller from any linear face model, e.g. for the built-in ARKit face::

        LipBasis.from_linear(face.neutral, face.basis, face.regions["lips"], range(52))

    Non-blendshape channels (head rotation, FLAME jaw pose) are simply not listed in ``channel_index``.

    Attributes:
        neutral_lips: ``(L, 3)`` float rest positions (metres).
        basis_lips: ``(K, L, 3)`` float per-channel offsets (metres per unit coefficient).
        channel_index: ``(K,)`` int64 motion channel driving each basis row.
    """

    neutral_lips: torch.Tensor
    basis_lips: torch.Tensor
    channel_index: torch.Tensor

    def __post_init__(self) -> None:
        k, n_l, three = self.basis_lips.shape
        if three != 3 or self.neutral_lips.shape != (n_l, 3) or self.channel_index.shape != (k,):
            raise ValueError(
                f"LipBasis shapes disagree: neutral {tuple(self.neutral_lips.shape)}, basis "
                f"{tuple(self.basis_lips.shape)}, channel_index {tuple(self.channel_index.shape)}"
            )

    @classmethod
    def from_linear(
        cls, neutral: np.ndarray, basis: np.ndarray, lips: np.ndarray, channel_index: Sequence[int] | np.ndarray
    ) -> LipBasis:
        """Slice a full linear face: ``neutral`` ``(V, 3)``, ``basis`` ``(K, V, 3)``, ``lips`` ``(L,)`` vertex
        indices, ``channel_index`` ``(K,)`` motion channel of each basis row."""
        lips = np.asarray(lips, dtype=np.int64)
        return cls(
            torch.as_tensor(np.asarray(neutral, dtype=np.float32)[lips]),
            torch.as_tensor(np.ascontiguousarray(np.asarray(basis, dtype=np.float32)[:, lips])),
            torch.as_tensor(np.asarray(channel_index, dtype=np.int64)),
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> LipBasis:
        """A copy on ``device`` (floats in ``dtype``)."""
        return LipBasis(
            self.neutral_lips.to(device=device, dtype=dtype),
            self.basis_lips.to(device=device, dtype=dtype),
            self.channel_index.to(device=device),
        )

    def offsets(self, motion: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` motion -> ``(..., L, 3)`` lip-vertex offsets from the neutral."""
        k, n_l, _ = self.basis_lips.shape
        w = motion[..., self.channel_index]  # (..., K)
        return (w @ self.basis_lips.reshape(k, n_l * 3).to(motion.dtype)).unflatten(-1, (n_l, 3))  # (..., L, 3)

    def vertices(self, motion: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` motion -> ``(..., L, 3)`` lip vertices."""
        return self.neutral_lips.to(motion.dtype) + self.offsets(motion)


def lip_vertex_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    lip: LipBasis,
    valid: torch.Tensor | None = None,
    channel_scale: torch.Tensor | None = None,
    unit_scale: float = 1000.0,
) -> torch.Tensor:
    """Mean squared lip-vertex distance, in (``unit_scale`` x metres)² — mm² by default, the unit of LVE.

    Args:
        pred, target: ``(B, T, D)`` motion.
        lip: the lip basis (on the motion's device).
        valid: ``(B, T)`` bool real frames; None = all.
        channel_scale: ``(D,)`` factor turning the motion's units into the face's coefficients (the
            per-channel std if the recipe trains on standardised motion; the mean cancels); None = 1.
        unit_scale: length unit factor (1000: metres -> mm).

    Returns:
        scalar: mean over real frames and lip vertices of ``|v_pred - v_target|²``; 0 iff the lip
        vertices agree (channels outside ``lip.channel_index`` do not count).
    """
    diff = pred - target  # (B, T, D)
    if channel_scale is not None:
        diff = diff * channel_scale.to(diff.dtype)
    dv = lip.offsets(diff) * unit_scale  # (B, T, L, 3): linear, so the neutral cancels
    per_frame = dv.square().sum(-1).mean(-1)  # (B, T)
    if valid is None:
        return per_frame.mean()
    v = valid.to(per_frame.dtype)
    return (per_frame * v).sum() / v.sum().clamp(min=1.0)


class MotionLoss(NamedTuple):
    """Terms of the motion-prior loss (scalars); ``total`` is the weighted sum."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    velocity: torch.Tensor
    lip: torch.Tensor


def motion_prior_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    cfg: LossConfig,
    valid: torch.Tensor | None = None,
    lip: LipBasis | None = None,
    weight: torch.Tensor | None = None,
    channel_scale: torch.Tensor | None = None,
) -> MotionLoss:
    """``w_rec * reconstruction + w_vel * velocity + w_lip * lip_vertex`` with weights from ``cfg``.

    Shapes as :func:`reconstruction_loss`; the lip term is 0 when ``lip`` is None (e.g. a non-linear face).
    """
    rec = reconstruction_loss(pred, target, valid, weight, cfg.kind)
    vel = velocity_loss(pred, target, valid, weight, cfg.kind)
    lip_term = lip_vertex_loss(pred, target, lip, valid, channel_scale) if lip is not None else rec.new_zeros(())
    total = cfg.reconstruction * rec + cfg.velocity * vel + cfg.lip * lip_term
    return MotionLoss(total, rec, vel, lip_term)


# ------------------------------------------------------------------------------------ alignment + prior


def diffusion_x0_loss(
    denoiser: PriorDenoiser,
    z0: torch.Tensor,
    cond: torch.Tensor | None,
    schedule: NoiseSchedule,
    cond_drop: float | None = None,
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Paper eq. 7: ``E_{t, eps} || f(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, c) - z0 ||²`` (mean).

    Args:
        denoiser: the prior network.
        z0: ``(B, Dz)`` clean style embeddings (detached here: the prior never trains the style encoder).
        cond: ``(B, Dz)`` aligned instruction features (gradients flow into the aligner), or None.
        schedule: the training noise schedule.
        cond_drop: probability of replacing a row's condition by the null embedding; default
            ``denoiser.cfg.cond_drop``. Use 0 for evaluation.
        generator: seeds ``t``, the noise and the dropout (must live on ``z0``'s device).
        t: ``(B,)`` timesteps to use instead of uniform samples; ``noise``: ``(B, Dz)`` likewise.

    Returns:
        scalar mean squared error.
    """
    z0 = z0.detach()
    b = z0.shape[0]
    p = denoiser.cfg.cond_drop if cond_drop is None else cond_drop
    if t is None:
        t = schedule.sample_timesteps(b, generator=generator, device=z0.device)  # (B,)
    if noise is None:
        noise = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)  # (B, Dz)
    keep = None
    if cond is not None and p > 0:
        keep = torch.rand(b, generator=generator, device=z0.device) >= p  # (B,)
    z_t = schedule.add_noise(z0, noise, t)  # (B, Dz)
    return F.mse_loss(denoiser(z_t, t, cond, keep), z0)


def direct_mapping_loss(mapping: DirectMapping, cond: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """Ablation "without diffusion": ``|| g(c) - z0 ||²`` (mean); ``cond``, ``z0`` ``(B, Dz)``, z0 detached."""
    return F.mse_loss(mapping(cond), z0.detach())


class AlignLoss(NamedTuple):
    """Terms of eq. 8 (scalars): ``total = cont + lambda * prior``."""

    total: torch.Tensor
    cont: torch.Tensor
    prior: torch.Tensor


def stage2_align_loss(
    c: torch.Tensor,
    z: torch.Tensor,
    logit_scale: torch.Tensor,
    prior: torch.Tensor,
    lambda_diff: float = 30.0,
    contrastive: bool = True,
    max_logit_scale: float = math.log(100.0),
) -> AlignLoss:
    """Paper eq. 8: ``L = L_cont + lambda * L_diff`` (``lambda = 30``).

    Args:
        c: ``(B, Dz)`` aligned instruction features.
        z: ``(B, Dz)`` style embeddings of the same clips (detached here).
        logit_scale: the aligner's learnable log inverse temperature.
        prior: the prior's loss on this batch (:func:`diffusion_x0_loss`, or
            :func:`direct_mapping_loss` for the "without diffusion" ablation).
        lambda_diff: weight of ``prior``.
        contrastive: False for the "without contrastive alignment" ablation (``cont`` is 0).
        max_logit_scale: InfoNCE temperature clamp.

    Note: rows with the same instruction text in one batch are false negatives for InfoNCE; batches
    drawn across speakers/emotions keep them rare.
    """
    cont = info_nce(c, z.detach(), logit_scale, max_logit_scale) if contrastive else c.new_zeros(())
    return AlignLoss(cont + lambda_diff * prior, cont, prior)
