"""Instruction–style alignment: an MLP on frozen text features -> aligned instruction feature ``c``,
trained CLIP-style against the style embedding ``z`` with a learnable temperature (paper §3.4, L_cont).

The text encoder (:class:`avitalk.text.TextEncoder`) is frozen and not part of this module: pass its
pooled outputs ``(B, text_dim)``. :func:`info_nce` is the symmetric contrastive loss.
Also here: :class:`DirectMapping`, the "without diffusion" ablation (``c`` -> ``z`` by an MLP).

Shapes: text features ``(B, text_dim)`` -> ``c`` ``(B, style_dim)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avitalk.motion.config import AlignConfig


def _mlp(d_in: int, hidden: int, d_out: int, n_hidden: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(n_hidden):
        layers += [nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout)]
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class InstructionAligner(nn.Module):
    """``(B, text_dim)`` frozen text features -> ``(B, style_dim)`` aligned instruction feature ``c``.

    Attributes:
        logit_scale: scalar parameter, ``log`` of the InfoNCE inverse temperature (CLIP convention),
            initialised to ``log(1 / cfg.init_temperature)``; :func:`info_nce` clamps it at
            ``cfg.max_logit_scale``.
    """

    def __init__(self, cfg: AlignConfig, text_dim: int, style_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_dim = text_dim
        self.style_dim = style_dim
        self.mlp = _mlp(text_dim, cfg.hidden, style_dim, cfg.n_hidden, cfg.dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """``text`` ``(B, text_dim)`` -> ``c`` ``(B, style_dim)`` (standardised per sample if ``cfg.normalize``)."""
        if text.shape[-1] != self.text_dim:
            raise ValueError(f"aligner expects {self.text_dim}-d text features, got {text.shape[-1]}")
        c = self.mlp(text)  # (B, style_dim)
        if self.cfg.normalize:
            c = F.layer_norm(c, (self.style_dim,))
        return c


def info_nce(
    c: torch.Tensor, z: torch.Tensor, logit_scale: torch.Tensor, max_logit_scale: float = math.log(100.0)
) -> torch.Tensor:
    """Symmetric CLIP InfoNCE between matched rows of ``c`` and ``z``.

    ``logits = exp(min(logit_scale, max)) * cos(c_i, z_j)``; the loss is the mean of the cross-entropy
    of rows (c -> z) and of columns (z -> c) with the diagonal as targets. At the clamp the gradient
    with respect to ``logit_scale`` is zero (as in CLIP, which clamps the stored value after each step).

    Args:
        c: ``(B, Dz)`` aligned instruction features.
        z: ``(B, Dz)`` style embeddings (usually detached: the style encoder is trained first).
        logit_scale: scalar tensor, log inverse temperature.
        max_logit_scale: clamp of ``logit_scale`` (``log 100``).

    Returns:
        scalar loss (``log B`` at chance).
    """
    if c.shape != z.shape or c.ndim != 2:
        raise ValueError(f"info_nce needs two (B, D) tensors of the same shape, got {tuple(c.shape)}, {tuple(z.shape)}")
    scale = logit_scale.clamp(max=max_logit_scale).exp()
    logits = scale * F.normalize(c, dim=-1) @ F.normalize(z, dim=-1).T  # (B, B)
    target = torch.arange(c.shape[0], device=c.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class DirectMapping(nn.Module):
    """Ablation "without diffusion": a deterministic MLP ``c`` ``(B, style_dim)`` -> ``z`` ``(B, style_dim)``."""

    def __init__(self, cfg: AlignConfig, style_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.style_dim = style_dim
        self.mlp = _mlp(style_dim, cfg.hidden, style_dim, cfg.n_hidden, cfg.dropout)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """``c`` ``(B, style_dim)`` -> ``z_hat`` ``(B, style_dim)``."""
        z = self.mlp(c)  # (B, style_dim)
        if self.cfg.normalize:
            z = F.layer_norm(z, (self.style_dim,))
        return z
