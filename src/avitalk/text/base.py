"""The :class:`TextEncoder` protocol: a frozen sentence encoder behind a small adapter.

Trainable modules (the instruction–style alignment MLP, the diffusion-prior denoiser) receive an
encoder's *outputs*, or the encoder itself as an argument, and never load one in ``__init__``
(DESIGN.md principle 5). An encoder is not an ``nn.Module``: its weights never end up in a
trainable module's ``state_dict`` or optimiser.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import torch


class TokenFeatures(NamedTuple):
    """Per-token encoder output.

    Attributes:
        features: ``(N, L, dim)`` float32 last hidden states (``L`` = longest text in the batch).
        mask: ``(N, L)`` bool, True at real tokens (special tokens included), False at padding.
    """

    features: torch.Tensor
    mask: torch.Tensor


@runtime_checkable
class TextEncoder(Protocol):
    """A frozen text encoder.

    Attributes:
        name: identifier stored beside features and checkpoints (e.g. ``"minilm"``, ``"clip:/path"``).
        dim: width ``D`` of the pooled embedding and of the token features.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled sentence embeddings ``(N, dim)`` float32, one row per text, in input order.

        Results are ordinary tensors (not inference tensors): they can feed a trainable module and
        take part in ``backward`` as constants.
        """
        ...

    def encode_tokens(self, texts: Sequence[str]) -> TokenFeatures:
        """Per-token features ``(N, L, dim)`` float32 and their mask ``(N, L)`` bool."""
        ...


class LRUCache:
    """A bounded text -> tensor map that forgets the least recently used entry first.

    Training re-encodes the same captions every epoch; caching their ``(dim,)`` embeddings makes the
    second epoch free. ``capacity`` 0 disables caching.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        if self.capacity == 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, refusing a bare string (a common slip that would encode characters)."""
    if isinstance(texts, str):
        raise TypeError("encode takes a sequence of strings, not a single string; wrap it in a list")
    out = list(texts)
    for t in out:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
    return out
