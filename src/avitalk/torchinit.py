"""``skip_init()``: build ``torch.nn`` modules without initialising weights that a checkpoint will overwrite.

Why not ``torch.device("meta")`` (+ ``load_state_dict(assign=True)``): on the meta device the weight
initialisers run through ``torch._refs``, which imports ``torch._dynamo`` — 1.3 s on 2 CPU cores, paid
by every ``avitalk animate`` that loads the Whisper encoder that way. Random initialisation itself is
the other cost (about 1.5 s for the 135M-parameter stage-1 LLM). Inside :func:`skip_init`,
``reset_parameters`` of the layers we build is a no-op, so parameters hold uninitialised memory until
a strict ``load_state_dict`` fills every one of them; use it only around such a load.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn
from torch.nn.modules.conv import _ConvNd

__all__ = ["skip_init"]

_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Embedding, nn.LayerNorm, _ConvNd)
_state = threading.local()
_installed = threading.Lock()


def _guarded(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(fn)
    def reset_parameters(self: Any) -> None:
        if not getattr(_state, "skip", False):
            fn(self)

    reset_parameters.__avitalk_guard__ = True  # type: ignore[attr-defined]
    return reset_parameters


def _install() -> None:
    """Wrap each layer's ``reset_parameters`` once with a check of this thread's skip flag."""
    with _installed:
        for cls in _LAYERS:
            fn = cls.__dict__["reset_parameters"]
            if not getattr(fn, "__avitalk_guard__", False):
                cls.reset_parameters = _guarded(fn)  # type: ignore[method-assign]


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Within the block, ``Linear``/``Embedding``/``LayerNorm``/conv layers built *by this thread* are left
    uninitialised (other threads are unaffected)."""
    _install()
    before = getattr(_state, "skip", False)
    _state.skip = True
    try:
        yield
    finally:
        _state.skip = before
