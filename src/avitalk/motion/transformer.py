"""Transformer building blocks shared by the stage-2 networks (pre-norm, nanoGPT-style).

:class:`Block` is self-attention + MLP with an optional FiLM/adaptive-layer-norm modulation from a
conditioning vector (the style embedding ``z`` in the generator). Attention masks are boolean,
``True`` where a query may attend to a key, and are built by the helpers at the bottom.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal embedding of (possibly fractional) positions or timesteps.

    Args:
        positions: ``(...,)`` float or integer tensor.
        dim: even embedding width.

    Returns:
        ``(..., dim)`` float32: ``[sin(p w_0), ..., sin(p w_{h-1}), cos(p w_0), ...]`` with
        ``w_i = 10000^(-i / h)``, ``h = dim / 2`` (odd ``dim`` gets one zero channel).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[..., None] * freqs  # (..., half)
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (..., 2 half)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class SelfAttention(nn.Module):
    """Multi-head self-attention over ``(B, T, E)`` with an optional boolean mask ``(B, 1|H, T, T)``."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, e = x.shape
        q, k, v = self.qkv(x).split(e, dim=2)  # 3 x (B, T, E)
        q, k, v = (u.view(b, t, self.n_head, e // self.n_head).transpose(1, 2) for u in (q, k, v))  # (B, H, T, E/H)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, E/H)
        y = y.transpose(1, 2).reshape(b, t, e)  # (B, T, E)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Position-wise ``E -> 4E -> E`` with GELU."""

    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block, optionally modulated by a conditioning vector.

    With ``cond_dim > 0`` the block computes ``(scale, shift)`` for both layer norms from ``cond``
    (adaptive layer norm; the projection is zero-initialised so the block starts unmodulated).
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float, cond_dim: int = 0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = SelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)
        self.film = nn.Linear(cond_dim, 4 * n_embd) if cond_dim > 0 else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` ``(B, T, E)``, ``mask`` ``(B, 1, T, T)`` bool or None, ``cond`` ``(B, cond_dim)`` -> ``(B, T, E)``."""
        h1, h2 = self.ln_1(x), None
        if self.film is not None:
            if cond is None:
                raise ValueError("this block is conditioned: pass cond (B, cond_dim)")
            s1, b1, s2, b2 = self.film(cond)[:, None].chunk(4, dim=-1)  # 4 x (B, 1, E)
            h1 = h1 * (1 + s1) + b1
        x = x + self.attn(h1, mask)
        h2 = self.ln_2(x)
        if self.film is not None:
            h2 = h2 * (1 + s2) + b2
        return x + self.mlp(h2)


# ---------------------------------------------------------------------------------------------- masks


def padding_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """Keys-only attention mask from per-frame validity.

    Args:
        valid: ``(B, T)`` bool, True at real frames (every row needs at least one), or None.

    Returns:
        ``(B, 1, 1, T)`` bool (broadcasts over heads and queries), or None.
    """
    return None if valid is None else valid[:, None, None, :]


def band_mask(t: int, window: int, device: torch.device) -> torch.Tensor:
    """``(T, T)`` bool, True where ``|i - j| <= window``."""
    i = torch.arange(t, device=device)
    return (i[:, None] - i[None, :]).abs() <= window


def causal_mask(t: int, device: torch.device) -> torch.Tensor:
    """``(T, T)`` bool lower-triangular (query ``i`` sees keys ``j <= i``)."""
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


def combine_masks(t: int, *masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of boolean masks broadcastable to ``(B, 1, T, T)``, ignoring Nones, with the
    diagonal always allowed so that no query row is fully masked (which would give NaNs that leak
    through later layers even at masked keys, as ``0 * nan = nan``). None if all masks are None."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    if out is None:
        return None
    return out | torch.eye(t, dtype=torch.bool, device=out.device)
