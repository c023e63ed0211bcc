"""Whisper's audio encoder in plain PyTorch, run on the real clip length.

The module mirrors ``transformers``' ``WhisperEncoder`` (same parameter names, so its state dicts
load strictly in both directions) but its ``forward`` accepts any number of mel frames up to
``2 * n_ctx`` and adds only the first ``T`` learned positions, instead of requiring a clip padded
to 30 s. Longer audio goes through overlapping 30 s windows with linear cross-fades
(:mod:`avitalk.audio.windows`). The log-mel front end is Whisper's (``n_fft`` 400, hop 160 at 16 kHz,
Slaney mel filters, ``log10``, clamp to ``max - 8``, ``(x + 4) / 4``) computed once over the whole
clip, so windowing does not change the input normalisation.

Feature frame ``k`` is centred on the audio at ``k / 50`` s (50 Hz: two conv strides over 100 Hz
mel frames); a clip of ``n`` samples gives ``ceil((n // 160) / 2)`` frames.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avitalk.audio.io import to_mono_16k
from avitalk.audio.windows import OverlapAdd, plan_windows
from avitalk.rates import AUDIO_SAMPLE_RATE
from avitalk.types import Audio, SpeechFeatures

N_FFT = 400
HOP = 160
#: Bumped whenever the encoding algorithm changes numerically; part of feature-cache keys.
ALGORITHM_VERSION = 1


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Shape of a Whisper audio encoder (defaults: tiny / tiny.en)."""

    n_mels: int = 80
    d_model: int = 384
    n_layers: int = 4
    n_heads: int = 6
    ffn_dim: int = 1536
    n_ctx: int = 1500  # learned positions: 30 s at 50 Hz


class WhisperAttention(nn.Module):
    """Bidirectional multi-head self-attention (the key projection has no bias)."""

    def __init__(self, cfg: WhisperEncoderConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape  # (B, T, D)
        h = self.n_heads
        q = self.q_proj(x).view(b, t, h, d // h).transpose(1, 2)  # (B, H, T, D/H)
        k = self.k_proj(x).view(b, t, h, d // h).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, d // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, D/H), scale 1/sqrt(D/H)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class WhisperEncoderLayer(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + fc2(gelu(fc1(ln(x))))``."""

    def __init__(self, cfg: WhisperEncoderConfig) -> None:
        super().__init__()
        self.self_attn = WhisperAttention(cfg)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x))  # (B, T, D)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoderNet(nn.Module):
    """Whisper audio encoder with ``transformers``' ``WhisperEncoder`` parameter names."""

    def __init__(self, cfg: WhisperEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv1d(cfg.n_mels, cfg.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.layers = nn.ModuleList(WhisperEncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, mel: torch.Tensor, layers: tuple[int, ...] | None = None) -> torch.Tensor:
        """Encode log-mel frames.

        Args:
            mel: ``(B, n_mels, L)`` log-mel spectrogram, ``1 <= L <= 2 * n_ctx``.
            layers: ``None`` for the usual output; else the hidden states to return, concatenated in
                this order: ``k`` is the output of transformer block ``k`` (1-based; ``0`` the input to
                the first block), each put through a layer norm without parameters so that every
                layer has the same scale, except ``k = n_layers``, the usual (final-layer-norm) output.

        Returns:
            ``(B, ceil(L / 2), d_model * len(layers or (0,)))`` hidden states; position ``k`` gets
            learned position ``k``.
        """
        if not 1 <= mel.shape[-1] <= 2 * self.cfg.n_ctx:
            raise ValueError(f"expected 1..{2 * self.cfg.n_ctx} mel frames, got {mel.shape[-1]}")
        x = F.gelu(self.conv1(mel))  # (B, D, L)
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, T, D), T = ceil(L / 2)
        x = x + self.embed_positions.weight[: x.shape[1]]  # truncated learned positions
        if layers is None:
            for layer in self.layers:
                x = layer(x)
            return self.layer_norm(x)
        n = len(self.layers)
        if not layers or any(not 0 <= k <= n for k in layers):
            raise ValueError(f"layers must be a non-empty tuple of block indices in 0..{n}, got {layers}")
        states = {0: x}
        for k, layer in enumerate(self.layers[: max(layers)], start=1):
            x = layer(x)
            states[k] = x
        d = (x.shape[-1],)
        return torch.cat([self.layer_norm(states[k]) if k == n else F.layer_norm(states[k], d) for k in layers], -1)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above)."""
    f = np.asarray(f, dtype=np.float64)
    mel = 3.0 * f / 200.0
    log_region = f >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * 27.0 / np.log(6.4), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), 200.0 * m / 3.0)


def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised triangular mel filters, as Whisper's feature extractor builds them.

    Returns:
        ``(n_fft // 2 + 1, n_mels)`` float32.
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(sample_rate / 2)), n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts)  # (n_mels + 2,)
    diff = np.diff(hz_pts)
    slopes = hz_pts[None, :] - fft_freqs[:, None]  # (n_freq, n_mels + 2)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))  # (n_freq, n_mels)
    fb *= 2.0 / (hz_pts[2 : n_mels + 2] - hz_pts[:n_mels])
    return fb.astype(np.float32)


def log_mel(samples: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Whisper log-mel spectrogram of one clip.

    Args:
        samples: ``(N,)`` float32 at 16 kHz, ``N >= 1``.
        filters: ``(n_fft // 2 + 1, n_mels)`` mel filters.

    Returns:
        ``(n_mels, N // 160)`` float32 (the STFT's last frame is dropped, as in Whisper).
    """
    n = samples.shape[0]
    if n < N_FFT:  # reflect padding needs N > n_fft / 2; zeros do not change the kept frames' maximum
        samples = F.pad(samples, (0, N_FFT - n))
    window = torch.hann_window(N_FFT, device=samples.device)
    stft = torch.stft(samples, N_FFT, HOP, window=window, return_complex=True)  # (n_freq, 1 + N' // 160)
    power = stft[:, : n // HOP].abs() ** 2  # (n_freq, N // 160)
    mel = filters.T @ power  # (n_mels, L)
    logm = torch.clamp(mel, min=1e-10).log10()
    if logm.numel():
        logm = torch.maximum(logm, logm.max() - 8.0)
    return (logm + 4.0) / 4.0


class WhisperSpeechEncoder:
    """Frozen Whisper encoder behind the :class:`~avitalk.audio.encoder.SpeechEncoder` protocol.

    Attributes:
        name: registry name (e.g. ``"whisper-tiny.en"``).
        version: identifies weights + algorithm + windowing; part of feature-cache keys.
        dim: ``d_model`` (384 for tiny.en), times ``len(layers)`` when ``layers`` is given.
        frame_rate: 50.0 Hz.

    Args:
        net: the encoder; moved to ``device``, set to eval, gradients off.
        filters: ``(n_fft // 2 + 1, n_mels)`` mel filters (:func:`mel_filters`).
        window_s, overlap_s: window length (at most 30 s) and minimum overlap for long audio.
        pad_to_30s: reproduce stock Whisper instead: pad every clip with silence to a multiple of
            30 s and encode non-overlapping 30 s windows (the baseline the benchmark compares to).
        batch_windows: windows of one long clip encoded together.
        layers: hidden states to concatenate (:meth:`WhisperEncoderNet.forward`; ``None``: the usual
            output). ``dim`` is then ``d_model * len(layers)``.
    """

    def __init__(
        self,
        net: WhisperEncoderNet,
        filters: np.ndarray,
        *,
        name: str,
        weights_id: str,
        device: str | torch.device = "cpu",
        window_s: float = 30.0,
        overlap_s: float = 5.0,
        pad_to_30s: bool = False,
        batch_windows: int = 4,
        layers: tuple[int, ...] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.filters = torch.as_tensor(filters, dtype=torch.float32, device=self.device)
        self.name = name
        self.frame_rate = AUDIO_SAMPLE_RATE / (HOP * 2)  # 50.0
        self.window = round(window_s * self.frame_rate)
        self.overlap = round(overlap_s * self.frame_rate)
        if not 0 < self.window <= net.cfg.n_ctx or not 0 <= self.overlap < self.window:
            raise ValueError(f"need 0 < window_s <= {net.cfg.n_ctx / self.frame_rate:g} and 0 <= overlap_s < window_s")
        self.pad_to_30s = pad_to_30s
        self.batch_windows = max(1, batch_windows)
        mode = "pad30" if pad_to_30s else f"w{self.window}o{self.overlap}"
        self._version_base = f"{weights_id}:a{ALGORITHM_VERSION}:{mode}"
        self._set_layers(layers)

    def _set_layers(self, layers: tuple[int, ...] | None) -> None:
        n = self.net.cfg.n_layers
        if layers is not None and (not layers or any(not 0 <= k <= n for k in layers)):
            raise ValueError(f"layers must be block indices in 0..{n}, got {layers}")
        self.layers = None if layers is None else tuple(layers)
        self.dim = self.net.cfg.d_model * (1 if self.layers is None else len(self.layers))
        picked = "" if self.layers is None else ":l" + "-".join(map(str, self.layers))
        self.version = self._version_base + picked

    def with_layers(self, layers: tuple[int, ...] | None, *, name: str) -> WhisperSpeechEncoder:
        """The same weights and settings returning the hidden states of ``layers`` (see the class)."""
        other = copy.copy(self)  # shares the frozen network and filters
        other._set_layers(layers)
        other.name = name
        return other

    def _net(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel, self.layers)

    def _samples(self, audio: Audio) -> torch.Tensor:
        x = audio.samples
        if audio.sample_rate != AUDIO_SAMPLE_RATE or x.ndim != 1:
            x = to_mono_16k(x, audio.sample_rate)
        return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=self.device)

    @torch.inference_mode()
    def encode(self, audio: Audio) -> SpeechFeatures:
        """Features ``(T_a, dim)`` float32 at 50 Hz, ``T_a = ceil((N // 160) / 2)`` for ``N`` samples."""
        x = self._samples(audio)
        n = int(x.shape[0])
        n_mel = n // HOP
        t_a = (n_mel + 1) // 2
        if t_a == 0:
            return SpeechFeatures(np.zeros((0, self.dim), np.float32), self.frame_rate)
        if self.pad_to_30s:
            return SpeechFeatures(self._encode_padded(x, t_a), self.frame_rate)
        mel = log_mel(x, self.filters)  # (n_mels, n_mel)
        return SpeechFeatures(self._encode_mel(mel, t_a), self.frame_rate)

    def encode_batch(self, audios: Sequence[Audio]) -> list[SpeechFeatures]:
        """Encode several clips; clips of equal length (up to one window) share a forward pass.

        Results equal those of :meth:`encode` clip by clip (Whisper has no attention mask, so
        clips are never padded to a common length).
        """
        out: list[SpeechFeatures | None] = [None] * len(audios)
        groups: dict[int, list[int]] = {}
        for i, a in enumerate(audios):
            n_mel = int(a.samples.shape[0] * AUDIO_SAMPLE_RATE / a.sample_rate) // HOP
            if self.pad_to_30s or not 0 < n_mel <= 2 * self.window or a.sample_rate != AUDIO_SAMPLE_RATE:
                out[i] = self.encode(a)
            else:
                groups.setdefault(n_mel, []).append(i)
        with torch.inference_mode():
            for idx in groups.values():
                for k in range(0, len(idx), self.batch_windows * 2):
                    chunk = idx[k : k + self.batch_windows * 2]
                    mel = torch.stack([log_mel(self._samples(audios[i]), self.filters) for i in chunk])
                    feats = self._net(mel).float().cpu().numpy()  # (b, T_a, D)
                    for j, i in enumerate(chunk):
                        out[i] = SpeechFeatures(np.ascontiguousarray(feats[j]), self.frame_rate)
        return [o for o in out if o is not None]

    def _encode_mel(self, mel: torch.Tensor, t_a: int) -> np.ndarray:
        """``(n_mels, L)`` -> ``(ceil(L / 2), D)``: one pass, or cross-faded windows when longer."""
        if t_a <= self.window:
            return self._net(mel[None]).float()[0].cpu().numpy()
        starts = plan_windows(t_a, self.window, self.overlap)
        acc = OverlapAdd(t_a, self.dim, starts, self.window)
        # group windows by mel length (only the last one may be a frame short) and batch them
        jobs = sorted(range(len(starts)), key=lambda i: mel[:, 2 * starts[i] : 2 * (starts[i] + self.window)].shape[1])
        for k in range(0, len(jobs), self.batch_windows):
            chunk = jobs[k : k + self.batch_windows]
            slices = [mel[:, 2 * starts[i] : 2 * (starts[i] + self.window)] for i in chunk]
            if len({s.shape[1] for s in slices}) > 1:
                for i, s in zip(chunk, slices, strict=True):
                    acc.add(i, self._net(s[None]).float()[0].cpu().numpy())
                continue
            feats = self._net(torch.stack(slices)).float().cpu().numpy()  # (b, window, D)
            for j, i in enumerate(chunk):
                acc.add(i, feats[j])
        return acc.result()

    def _encode_padded(self, x: torch.Tensor, t_a: int) -> np.ndarray:
        """Stock Whisper: pad with silence to a multiple of 30 s; non-overlapping 30 s windows."""
        n_ctx = self.net.cfg.n_ctx
        seg = 2 * n_ctx * HOP  # 480 000 samples
        n_seg = math.ceil(x.shape[0] / seg)
        mel = log_mel(F.pad(x, (0, n_seg * seg - x.shape[0])), self.filters)  # (n_mels, n_seg * 3000)
        windows = mel.reshape(mel.shape[0], n_seg, 2 * n_ctx).transpose(0, 1)  # (n_seg, n_mels, 3000)
        feats = [self._net(windows[k : k + self.batch_windows]) for k in range(0, n_seg, self.batch_windows)]
        out = torch.cat(feats).reshape(-1, self.dim)  # (n_seg * 1500, D)
        return out[:t_a].float().cpu().numpy()
