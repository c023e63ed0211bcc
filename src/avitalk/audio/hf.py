"""Speech encoders from a local Hugging Face model directory (HuBERT, wav2vec 2.0, Whisper).

``hf:PATH`` points at a directory written by ``save_pretrained`` (``config.json`` + weights,
optionally ``preprocessor_config.json``). Its ``model_type`` picks the backend:

- ``hubert`` / ``wav2vec2``: ``AutoModel`` + ``AutoFeatureExtractor``; the last hidden state (or a
  chosen layer) at ``16000 / prod(conv_stride)`` Hz (50 Hz for the released models). Clips longer
  than ``window_s`` go through overlapping windows with cross-fades, like Whisper.
- ``whisper``: ``WhisperModel``'s encoder weights, run by :class:`~avitalk.audio.whisper.WhisperEncoderNet`
  on the real clip length.

Nothing is downloaded: loading uses ``local_files_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from avitalk.audio.io import to_mono_16k
from avitalk.audio.whisper import WhisperEncoderConfig, WhisperEncoderNet, WhisperSpeechEncoder, mel_filters
from avitalk.audio.windows import OverlapAdd, plan_windows
from avitalk.errors import AvitalkError
from avitalk.rates import AUDIO_SAMPLE_RATE
from avitalk.types import Audio, SpeechFeatures

#: ``model_type`` values of ``config.json`` handled by :class:`HFSSLSpeechEncoder`.
SSL_MODEL_TYPES = ("hubert", "wav2vec2")
SUPPORTED_MODEL_TYPES = (*SSL_MODEL_TYPES, "whisper")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def read_hf_config(path: Path) -> dict:
    """``config.json`` of a local model directory, or one clear :class:`AvitalkError`."""
    if not path.is_dir():
        raise AvitalkError(f"{path}: no such model directory (hf:PATH needs a local Hugging Face model folder)")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise AvitalkError(f"{path}: not a Hugging Face model directory (no config.json)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as e:
        raise AvitalkError(f"{cfg_file}: unreadable config ({e})") from None
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in path.iterdir()):
        raise AvitalkError(f"{path}: no weights (*.safetensors or *.bin) beside config.json")
    return cfg


def _dir_fingerprint(path: Path) -> str:
    """Hash of ``config.json`` and the names, sizes and mtimes of the weight files."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for p in sorted(path.iterdir()):
        if p.suffix in _WEIGHT_SUFFIXES:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _conv_output_length(n: int, kernels: Sequence[int], strides: Sequence[int]) -> int:
    for k, s in zip(kernels, strides, strict=True):
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


class HFSSLSpeechEncoder:
    """HuBERT / wav2vec 2.0 from a local directory, behind the ``SpeechEncoder`` protocol.

    Attributes:
        name: ``"hf:<model_type>:<dir name>"``.
        version: fingerprint of the directory + window settings; part of feature-cache keys.
        dim: hidden size (768 base, 1024 large).
        frame_rate: ``16000 / prod(conv_stride)`` (50.0 for released models).

    Args:
        model: a ``HubertModel`` / ``Wav2Vec2Model``; moved to ``device``, eval, no gradients.
        feature_extractor: its ``Wav2Vec2FeatureExtractor`` (normalisation of the waveform).
        layer: hidden state to return (``None``: the last hidden state; ``0``: the CNN features
            after projection; ``l``: output of transformer layer ``l``).
        window_s, overlap_s: window and minimum overlap for long clips (attention is quadratic).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        feature_extractor: object,
        *,
        name: str,
        weights_id: str,
        device: str | torch.device = "cpu",
        layer: int | None = None,
        window_s: float = 30.0,
        overlap_s: float = 5.0,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.fe = feature_extractor
        cfg = model.config
        self.kernels = tuple(cfg.conv_kernel)
        self.strides = tuple(cfg.conv_stride)
        self.hop = math.prod(self.strides)  # samples per frame (320)
        receptive = 1
        for k, s in zip(reversed(self.kernels), reversed(self.strides), strict=True):
            receptive = (receptive - 1) * s + k
        self.receptive = receptive  # samples seen by one frame (400)
        self.name = name
        self.dim = int(cfg.hidden_size)
        self.frame_rate = AUDIO_SAMPLE_RATE / self.hop
        self.layer = layer
        self.window = round(window_s * self.frame_rate)
        self.overlap = round(overlap_s * self.frame_rate)
        self.version = f"{weights_id}:l{layer}:w{self.window}o{self.overlap}"

    def _run(self, x: torch.Tensor) -> np.ndarray:
        """``(B, N)`` normalised samples -> ``(B, T, dim)`` features."""
        out = self.model(x, output_hidden_states=self.layer is not None)
        h = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        return h.float().cpu().numpy()

    @torch.inference_mode()
    def encode(self, audio: Audio) -> SpeechFeatures:
        """Features ``(T_a, dim)`` float32; frame ``k`` covers samples ``[hop k, hop k + receptive)``."""
        x = audio.samples
        if audio.sample_rate != AUDIO_SAMPLE_RATE or x.ndim != 1:
            x = to_mono_16k(x, audio.sample_rate)
        n = int(x.shape[0])
        t_a = _conv_output_length(n, self.kernels, self.strides)
        if t_a == 0:
            return SpeechFeatures(np.zeros((0, self.dim), np.float32), self.frame_rate)
        values = self.fe(np.asarray(x, np.float32), sampling_rate=AUDIO_SAMPLE_RATE, return_tensors="np")
        xs = torch.as_tensor(values["input_values"][0], dtype=torch.float32, device=self.device)  # (N,)
        if t_a <= self.window:
            return SpeechFeatures(self._run(xs[None])[0], self.frame_rate)
        starts = plan_windows(t_a, self.window, self.overlap)
        acc = OverlapAdd(t_a, self.dim, starts, self.window)
        span = self.hop * (self.window - 1) + self.receptive  # samples giving exactly `window` frames
        for i, s in enumerate(starts):
            acc.add(i, self._run(xs[None, self.hop * s : self.hop * s + span])[0])
        return SpeechFeatures(acc.result(), self.frame_rate)

    def encode_batch(self, audios: Sequence[Audio]) -> list[SpeechFeatures]:
        """Clip by clip (no padding, so results equal :meth:`encode`)."""
        return [self.encode(a) for a in audios]


def load_hf_speech_encoder(
    path: str | Path, device: str | torch.device = "cpu"
) -> WhisperSpeechEncoder | HFSSLSpeechEncoder:
    """Load the speech encoder in a local Hugging Face directory (see module docstring)."""
    p = Path(path).expanduser()
    cfg = read_hf_config(p)
    model_type = cfg.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise AvitalkError(
            f"{p}: model_type {model_type!r} is not a supported speech encoder "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    weights_id = f"hf-{_dir_fingerprint(p)}"
    name = f"hf:{model_type}:{p.name}"
    try:
        if model_type == "whisper":
            return _load_whisper(p, name, weights_id, device)
        from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor

        model = AutoModel.from_pretrained(str(p), local_files_only=True)
        if (p / "preprocessor_config.json").is_file():
            fe = AutoFeatureExtractor.from_pretrained(str(p), local_files_only=True)
        else:  # models trained with layer-norm feature extractors expect normalised input
            fe = Wav2Vec2FeatureExtractor(do_normalize=cfg.get("feat_extract_norm") == "layer")
    except (OSError, ValueError) as e:
        raise AvitalkError(f"{p}: cannot load {model_type} model: {str(e).splitlines()[0]}") from None
    return HFSSLSpeechEncoder(model, fe, name=name, weights_id=weights_id, device=device)


def _load_whisper(p: Path, name: str, weights_id: str, device: str | torch.device) -> WhisperSpeechEncoder:
    from transformers import WhisperFeatureExtractor, WhisperModel

    encoder = WhisperModel.from_pretrained(str(p), local_files_only=True).encoder
    c = encoder.config
    if c.activation_function != "gelu":
        raise AvitalkError(f"{p}: Whisper variant with activation {c.activation_function!r} is not supported")
    cfg = WhisperEncoderConfig(
        n_mels=c.num_mel_bins,
        d_model=c.d_model,
        n_layers=c.encoder_layers,
        n_heads=c.encoder_attention_heads,
        ffn_dim=c.encoder_ffn_dim,
        n_ctx=c.max_source_positions,
    )
    net = WhisperEncoderNet(cfg)
    net.load_state_dict(encoder.state_dict(), strict=True)
    if (p / "preprocessor_config.json").is_file():
        filters = WhisperFeatureExtractor.from_pretrained(str(p), local_files_only=True).mel_filters
    else:
        filters = mel_filters(cfg.n_mels)
    window_s = min(30.0, cfg.n_ctx / 50.0)
    return WhisperSpeechEncoder(
        net,
        np.asarray(filters, np.float32),
        name=name,
        weights_id=weights_id,
        device=device,
        window_s=window_s,
        overlap_s=min(5.0, window_s / 4),
    )
