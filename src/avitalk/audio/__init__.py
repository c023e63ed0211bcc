"""Audio input/output and frozen speech encoders (see docs/speech-encoders.md).

The encoder names are imported lazily so that ``import avitalk.audio`` (used for audio I/O by the
data tools) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from avitalk.audio.io import load_audio, save_audio, to_mono_16k

if TYPE_CHECKING:
    from avitalk.audio.cache import CachedSpeechEncoder
    from avitalk.audio.encoder import DEFAULT_SPEECH_ENCODER, SpeechEncoder, encode_batch, load_speech_encoder

_LAZY = {
    "CachedSpeechEncoder": "avitalk.audio.cache",
    "DEFAULT_SPEECH_ENCODER": "avitalk.audio.encoder",
    "SpeechEncoder": "avitalk.audio.encoder",
    "encode_batch": "avitalk.audio.encoder",
    "load_speech_encoder": "avitalk.audio.encoder",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avitalk.audio' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SPEECH_ENCODER",
    "CachedSpeechEncoder",
    "SpeechEncoder",
    "encode_batch",
    "load_audio",
    "load_speech_encoder",
    "save_audio",
    "to_mono_16k",
]
