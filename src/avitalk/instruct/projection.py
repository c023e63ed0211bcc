"""Linear projection of Q-Former outputs into the language model's input-embedding space (paper §3.3)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["AudioProjection"]


class AudioProjection(nn.Module):
    """Audio prompt projection: (B, q_a, H_q) → (B, q_a, H_llm)."""

    def __init__(self, qformer_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.qformer_dim = qformer_dim
        self.llm_dim = llm_dim
        self.proj = nn.Linear(qformer_dim, llm_dim)

    def forward(self, queries: Tensor) -> Tensor:
        """Project Q-Former outputs.

        Args:
            queries: (B, q_a, H_q).

        Returns:
            (B, q_a, H_llm) soft prompt for the language model.
        """
        return self.proj(queries)
