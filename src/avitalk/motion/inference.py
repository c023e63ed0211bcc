"""Stage-2 inference: speech + instruction -> motion (paper §3.4, docs/stage2.md "Inference").

:class:`Stage2Synthesizer` takes already built, already loaded modules and frozen encoders (reading
run directories is :func:`avitalk.train.load.load_stage2`'s job). One call encodes the speech once,
resamples it to the motion fps, maps the instruction to ``c``, samples style embeddings ``z`` with the
diffusion prior (or the direct mapping), and runs the generator over windows of the training window
length with at least 25 % overlap, linearly cross-faded over the shared frames, so any audio length works
with memory linear in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from avitalk.audio.encoder import SpeechEncoder
from avitalk.diffusion import NoiseSchedule
from avitalk.errors import AvitalkError
from avitalk.motion.align import DirectMapping, InstructionAligner
from avitalk.motion.config import Stage2Config
from avitalk.motion.denoiser import PriorDenoiser, sample_style
from avitalk.motion.generator import TalkingGenerator
from avitalk.motion.timeline import DEFAULT_BLEND, Segment, Timeline, parse_instruction
from avitalk.rates import frames_for_samples, resample_features
from avitalk.text.base import TextEncoder
from avitalk.types import Audio, Motion, MotionSpace


def window_starts(n_frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of the generator windows covering ``n_frames`` frames.

    The fewest windows of ``window`` frames with at least ``overlap`` frames shared by neighbours, spread
    evenly from frame 0 to the last frame. ``n_frames <= window`` gives one (shorter) window at 0.
    """
    if n_frames <= window:
        return [0]
    hop = max(window - overlap, 1)
    k = math.ceil((n_frames - window) / hop) + 1
    return [round(i * (n_frames - window) / (k - 1)) for i in range(k)]


def _fade_weights(length: int, ramp_in: int, ramp_out: int) -> torch.Tensor:
    """``(length,)`` positive weights: linear ramps over the first ``ramp_in`` / last ``ramp_out`` frames."""
    w = torch.ones(length)
    if ramp_in > 0:
        w[:ramp_in] = torch.arange(1, ramp_in + 1) / (ramp_in + 1)
    if ramp_out > 0:
        w[length - ramp_out :] = torch.minimum(w[length - ramp_out :], torch.arange(ramp_out, 0, -1) / (ramp_out + 1))
    return w


@dataclass
class Stage2Synthesizer:
    """Trained stage-2 networks + frozen encoders; :meth:`synthesize` makes motion.

    Attributes:
        config: the model config (window, fps, space, denoiser schedule).
        space: the motion space of the outputs.
        generator, aligner: the trained :class:`TalkingGenerator` / :class:`InstructionAligner`.
        prior: :class:`PriorDenoiser` (``config.prior == "diffusion"``) or :class:`DirectMapping`.
        mean, std: ``(D,)`` motion standardisation of the generator's training data.
        speech_encoder, text_encoder: the frozen encoders the runs were trained with.
        overlap: frames shared by neighbouring windows (default: a quarter of ``config.window``).
        max_batch: at most this many windows per generator call (bounds peak memory).
        device: where the networks run.
    """

    config: Stage2Config
    space: MotionSpace
    generator: TalkingGenerator
    aligner: InstructionAligner
    prior: PriorDenoiser | DirectMapping
    mean: torch.Tensor
    std: torch.Tensor
    speech_encoder: SpeechEncoder
    text_encoder: TextEncoder
    overlap: int | None = None
    max_batch: int = 64
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        if self.space.dim != self.config.motion_dim:
            raise AvitalkError(
                f"space {self.space.key} has {self.space.dim} channels, the model {self.config.motion_dim}"
            )
        self.mods: list[nn.Module] = [self.generator, self.aligner, self.prior]
        for m in self.mods:
            m.to(self.device).eval().requires_grad_(False)
        self.mean = self.mean.to(self.device).float()
        self.std = self.std.to(self.device).float()
        self.schedule = NoiseSchedule.from_name(self.config.denoiser.schedule, self.config.denoiser.num_steps)
        if self.overlap is None:
            self.overlap = self.config.window // 4
        if not 0 <= self.overlap < self.config.window:
            raise AvitalkError(f"overlap must be in [0, {self.config.window}), got {self.overlap}")

    @torch.no_grad()
    def content(self, audio: Audio) -> torch.Tensor:
        """``(T, content_dim)`` speech content at the motion fps, ``T = frames_for_samples(len(audio))``."""
        n = frames_for_samples(len(audio.samples), self.config.fps, audio.sample_rate)
        feats = self.speech_encoder.encode(audio)
        values = resample_features(np.asarray(feats.values, dtype=np.float32), feats.frame_rate, self.config.fps, n)
        return torch.from_numpy(values).to(self.device)

    @torch.no_grad()
    def style(
        self,
        instruction: str,
        n_samples: int = 1,
        seed: int | None = None,
        guidance: float = 2.0,
        steps: int | None = None,
    ) -> torch.Tensor:
        """``(n_samples, style_dim)`` style embeddings for ``instruction`` (identical rows for a direct prior)."""
        text = self.text_encoder.encode([instruction]).to(self.device)  # (1, text_dim)
        c = self.aligner(text).expand(n_samples, -1)  # (N, Dz)
        if isinstance(self.prior, DirectMapping):
            # one row, repeated: a batch of identical rows may differ in the last bits (BLAS blocking)
            return self.prior(c[:1]).expand(n_samples, -1).contiguous()
        gen = torch.Generator(self.device).manual_seed(seed) if seed is not None else None
        return sample_style(self.prior, c.contiguous(), self.schedule, steps=steps, guidance=guidance, generator=gen)

    @torch.no_grad()
    def generate(self, content: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Standardised motion ``(N, T, D)`` for content ``(T, C)`` and styles ``z``, windowed.

        ``z`` is ``(N, Dz)`` (one style per sample) or ``(N, T, Dz)`` (one per sample and frame).
        """
        t, w, n = content.shape[0], self.config.window, z.shape[0]
        if z.dim() == 3 and z.shape[1] != t:
            raise ValueError(f"per-frame z has {z.shape[1]} frames, the content {t}")
        if n > 1 and torch.equal(z, z[:1].expand_as(z)):
            # identical styles (a direct prior, the regression baseline): generate once, so that the
            # samples are bit-identical rather than equal up to the rounding of a batched matmul
            return self.generate(content, z[:1]).expand(n, -1, -1).contiguous()
        out = torch.zeros(n, t, self.config.motion_dim, device=self.device)
        if t == 0:
            return out
        starts = window_starts(t, w, self.overlap or 0)
        length = min(w, t)
        windows = torch.stack([content[s : s + length] for s in starts])  # (K, W, C)
        k = len(starts)
        rows = [(i, j) for i in range(n) for j in range(k)]  # (sample, window)
        preds = []
        for b in range(0, len(rows), self.max_batch):
            chunk = rows[b : b + self.max_batch]
            cont = windows[[j for _, j in chunk]]  # (B, W, C)
            if z.dim() == 3:
                zz = torch.stack([z[i, starts[j] : starts[j] + length] for i, j in chunk])  # (B, W, Dz)
            else:
                zz = z[[i for i, _ in chunk]]  # (B, Dz)
            preds.append(self.generator(cont, zz))  # (B, W, D)
        pred = torch.cat(preds).view(n, k, length, -1)  # (N, K, W, D)
        total = torch.zeros(t, 1, device=self.device)
        for j, s in enumerate(starts):
            ramp_in = (starts[j - 1] + length - s) if j > 0 else 0  # overlap with the previous window
            ramp_out = (s + length - starts[j + 1]) if j + 1 < k else 0
            wt = _fade_weights(length, ramp_in, ramp_out)  # cross-fade over the whole shared span
            wt = wt.to(self.device)[:, None]  # (W, 1)
            out[:, s : s + length] += pred[:, j] * wt
            total[s : s + length] += wt
        return out / total

    @torch.no_grad()
    def timeline_style(
        self,
        timeline: Timeline,
        frames: np.ndarray | int,
        n_samples: int = 1,
        seed: int | None = None,
        guidance: float = 2.0,
        steps: int | None = None,
        blend: float = DEFAULT_BLEND,
    ) -> torch.Tensor:
        """``(n_samples, T, Dz)`` per-frame styles of a time-varying instruction.

        Segment ``i``'s styles are drawn with seed ``seed + i`` (None: fresh randomness), then cross-faded
        (:meth:`avitalk.motion.timeline.Timeline.style_frames`).
        """
        zs = [
            self.style(s.text, n_samples, None if seed is None else seed + i, guidance, steps)
            for i, s in enumerate(timeline.segments)
        ]
        z = torch.stack(zs, dim=1)  # (N, K, Dz)
        return timeline.style_frames(z, frames, self.config.fps, blend, self.config.style_encoder.normalize)

    def synthesize(
        self,
        audio: Audio,
        instruction: str | Timeline | Sequence[Segment],
        n_samples: int = 1,
        seed: int | None = None,
        guidance: float = 2.0,
        steps: int | None = None,
        blend: float = DEFAULT_BLEND,
    ) -> list[Motion]:
        """Motion for ``audio`` in the style ``instruction`` describes.

        Args:
            audio: mono speech at any length and sample rate the speech encoder accepts.
            instruction: the talking-style instruction: free text, a timed string
                (``"0-3s: calm; 3s-: angry"``), a :class:`Timeline` or a list of segments
                (:mod:`avitalk.motion.timeline`). Constant instructions take the per-sample ``z`` path.
            blend: cross-fade width (seconds) between the segments of a time-varying instruction.
            n_samples: style samples drawn from the prior (a direct prior gives identical ones).
            seed: seeds the prior's noise (same seed -> same motions); None: fresh randomness.
            guidance: classifier-free guidance scale of the diffusion prior (0: unconditional, 1: conditional).
            steps: DDIM steps (default ``config.denoiser.sample_steps``).

        Returns:
            Always a list of ``n_samples`` :class:`Motion`, each ``(frames_for_samples(len(audio)), D)`` at
            ``config.fps`` in :attr:`space`.
        """
        if n_samples < 1:
            raise AvitalkError(f"n_samples must be >= 1, got {n_samples}")
        timeline = instruction if isinstance(instruction, Timeline) else parse_instruction(instruction)
        content = self.content(audio)  # (T, C)
        timeline = timeline.used(content.shape[0] / self.config.fps)
        if timeline.constant:
            z = self.style(timeline.segments[0].text, n_samples, seed, guidance, steps)  # (N, Dz)
        else:
            z = self.timeline_style(timeline, content.shape[0], n_samples, seed, guidance, steps, blend)  # (N, T, Dz)
        with torch.no_grad():
            motion = self.generate(content, z) * self.std + self.mean  # (N, T, D)
        values = motion.float().cpu().numpy()
        return [Motion(np.ascontiguousarray(v), self.space, self.config.fps) for v in values]

    def stream(
        self,
        chunks: Iterable[Audio | np.ndarray],
        instruction: str | Timeline | Sequence[Segment],
        *,
        seed: int | None = None,
        guidance: float = 2.0,
        steps: int | None = None,
        lookahead: int = 4,
        context: int = 50,
        blend: float = DEFAULT_BLEND,
    ) -> Iterator[Motion]:
        """Motion frames for speech that arrives in chunks (e.g. 200 ms from a microphone).

        Yields one :class:`Motion` per chunk with the frames that became final (possibly none), and
        the remaining frames after the last chunk; concatenated they have exactly as many frames as
        :meth:`synthesize` gives for the whole audio. See :class:`StreamingSynthesizer` for the delay.
        """
        s = StreamingSynthesizer(
            self,
            instruction,
            seed=seed,
            guidance=guidance,
            steps=steps,
            lookahead=lookahead,
            context=context,
            blend=blend,
        )
        for chunk in chunks:
            yield s.push(chunk)
        yield s.flush()


class StreamingSynthesizer:
    """Incremental stage-2 synthesis: :meth:`push` audio chunks, get the motion frames that are final.

    Frame ``k`` (audio ``[k, k + 1) / fps`` s) is produced once the audio up to frame ``k + lookahead``
    has arrived, so the delay is at most ``lookahead / fps`` s (default 4 frames = 160 ms at 25 fps)
    after the chunk that completes it, plus the compute time of one generator window. Each step encodes
    the last ``context + window`` frames of audio, runs the generator on the last ``window`` frames
    (the training window length) and cross-fades the frames that the previous step left pending (its
    lookahead) into the new prediction, so consecutive steps join without seams. The style ``z`` is
    sampled once (per segment for a time-varying instruction, blended per frame as offline).
    :meth:`flush` emits the rest; in all, ``frames_for_samples(total samples)`` frames, as offline.

    Args:
        synth: the loaded :class:`Stage2Synthesizer`.
        instruction: text, a timed string, a :class:`Timeline` or segments.
        seed, guidance, steps: as in :meth:`Stage2Synthesizer.synthesize` (one sample).
        lookahead: frames of future audio a frame waits for (>= 0).
        context: extra frames of past audio given to the speech encoder before the generator window.
        blend: cross-fade width between instruction segments, seconds.
        sample_rate: rate of raw numpy chunks (:class:`Audio` chunks carry their own; must be constant).
    """

    def __init__(
        self,
        synth: Stage2Synthesizer,
        instruction: str | Timeline | Sequence[Segment],
        *,
        seed: int | None = None,
        guidance: float = 2.0,
        steps: int | None = None,
        lookahead: int = 4,
        context: int = 50,
        blend: float = DEFAULT_BLEND,
        sample_rate: int = 16_000,
    ) -> None:
        if lookahead < 0 or context < 0:
            raise AvitalkError(f"lookahead and context must be >= 0, got {lookahead} and {context}")
        if lookahead >= synth.config.window // 2:
            raise AvitalkError(f"lookahead must be below half the window ({synth.config.window // 2} frames)")
        self.synth = synth
        self.timeline = instruction if isinstance(instruction, Timeline) else parse_instruction(instruction)
        self.lookahead, self.context, self.blend = lookahead, context, blend
        self.sample_rate = sample_rate
        self.fps = synth.config.fps
        self.spf = sample_rate / self.fps  # audio samples per motion frame
        if abs(self.spf - round(self.spf)) > 1e-9:
            raise AvitalkError(
                f"sample rate {sample_rate} is not a whole number of samples per frame at {self.fps} fps"
            )
        self.spf = round(self.spf)
        self.hop = max(1, synth.config.window // 2)  # at most this many new frames per generator window
        self.z = torch.stack(
            [
                synth.style(s.text, 1, None if seed is None else seed + i, guidance, steps)[0]
                for i, s in enumerate(self.timeline.segments)
            ]
        )  # (K, Dz)
        self._buf = np.zeros(0, np.float32)  # audio from sample self._buf_start on
        self._buf_start = 0
        self._n_samples = 0
        self.emitted = 0  # frames already returned
        self._pending = torch.zeros(0, synth.config.motion_dim, device=synth.device)  # frames [emitted, ...)
        self._closed = False

    @property
    def delay_seconds(self) -> float:
        """Audio a frame waits for beyond its own end: ``lookahead / fps`` seconds."""
        return self.lookahead / self.fps

    def _append(self, chunk: Audio | np.ndarray) -> None:
        if self._closed:
            raise AvitalkError("this stream was flushed; start a new StreamingSynthesizer")
        if isinstance(chunk, Audio):
            if chunk.sample_rate != self.sample_rate:
                raise AvitalkError(f"chunk at {chunk.sample_rate} Hz; this stream takes {self.sample_rate} Hz")
            x = chunk.samples
        else:
            x = chunk
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise AvitalkError(f"audio chunks must be mono (N,) arrays, got shape {x.shape}")
        self._buf = np.concatenate([self._buf, x])
        self._n_samples += x.shape[0]

    def _styles(self, start: int, end: int) -> torch.Tensor:
        """``(end - start, Dz)`` per-frame style."""
        if self.timeline.constant:
            return self.z[0].expand(end - start, -1)
        frames = np.arange(start, end)
        z = self.timeline.style_frames(
            self.z[None], frames, self.fps, self.blend, self.synth.config.style_encoder.normalize
        )
        return z[0]

    @torch.no_grad()
    def _window(self, end: int) -> tuple[int, torch.Tensor]:
        """Standardised generator output ``(L, D)`` for frames ``[end - L, end)``, ``L <= window``."""
        synth = self.synth
        start = max(0, end - synth.config.window)
        a0 = max(0, start - self.context)  # first frame of encoder context
        lo, hi = a0 * self.spf - self._buf_start, end * self.spf - self._buf_start
        audio = Audio(self._buf[lo : max(lo, min(hi, self._buf.shape[0]))], self.sample_rate)
        if audio.samples.shape[0] < (end - a0) * self.spf:  # the last, partial frame at flush: pad with zeros
            audio = Audio(np.pad(audio.samples, (0, (end - a0) * self.spf - audio.samples.shape[0])), self.sample_rate)
        feats = synth.speech_encoder.encode(audio)
        values = resample_features(np.asarray(feats.values, np.float32), feats.frame_rate, self.fps, end - a0)
        content = torch.from_numpy(values[start - a0 :]).to(synth.device)  # (L, C)
        z = self._styles(start, end).to(synth.device)  # (L, Dz)
        zz = z[:1] if self.timeline.constant else z[None]  # (1, Dz) or (1, L, Dz)
        return start, synth.generator(content[None], zz)[0]  # (L, D)

    def _advance(self, end: int, final: bool) -> torch.Tensor:
        """Run windows up to frame ``end``; return the standardised frames ``(k, D)`` that became final."""
        out = []
        target = end if final else end - self.lookahead
        while self.emitted < target:
            step_end = min(end, self.emitted + self.lookahead + self.hop)
            start, pred = self._window(step_end)
            new = pred[self.emitted - start :]  # frames [emitted, step_end)
            p = self._pending.shape[0]
            if p:  # cross-fade the previous step's pending frames into this step's prediction
                a = torch.arange(1, p + 1, device=new.device, dtype=new.dtype)[:, None] / (p + 1)  # (P, 1)
                new = torch.cat([(1 - a) * self._pending + a * new[:p], new[p:]])
            emit_to = end if final and step_end == end else step_end - self.lookahead
            k = emit_to - self.emitted
            out.append(new[:k])
            self._pending = new[k:]
            self.emitted = emit_to
        # drop audio that no later window needs (keep context + window + lookahead frames)
        keep_from = max(0, self.emitted - self.synth.config.window - self.context) * self.spf
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
        if not out:
            return torch.zeros(0, self.synth.config.motion_dim, device=self.synth.device)
        return torch.cat(out)

    def _motion(self, std_values: torch.Tensor) -> Motion:
        values = (std_values * self.synth.std + self.synth.mean).float().cpu().numpy()
        return Motion(
            np.ascontiguousarray(values.reshape(-1, self.synth.config.motion_dim)), self.synth.space, self.fps
        )

    def push(self, chunk: Audio | np.ndarray) -> Motion:
        """Add an audio chunk; returns the motion frames that became final (``(k, D)``, ``k >= 0``)."""
        self._append(chunk)
        return self._motion(self._advance(self._n_samples // self.spf, final=False))

    def flush(self) -> Motion:
        """End of the audio: returns all remaining frames (up to ``frames_for_samples(total)``)."""
        if self._closed:
            raise AvitalkError("this stream was already flushed")
        total = frames_for_samples(self._n_samples, self.fps, self.sample_rate)
        values = self._advance(total, final=True)
        self._closed = True
        return self._motion(values)


def seam_jitter(values: np.ndarray, starts: Sequence[int], window: int) -> tuple[float, float]:
    """Jitter at window seams vs inside windows of a windowed motion.

    Jitter is the mean absolute second difference (acceleration) over channels. ``seam`` averages the
    frames inside the cross-faded overlaps of neighbouring windows (where the seams could show),
    ``within`` all other frames. Seams add no jitter when ``seam`` is not above ``within``.

    Args:
        values: ``(T, D)`` motion.
        starts: window starts (:func:`window_starts`), window length ``window``.

    Returns:
        ``(seam, within)``; ``seam`` is nan when there is a single window.
    """
    acc = np.abs(np.diff(np.asarray(values, np.float64), n=2, axis=0)).mean(axis=1)  # (T-2,), centred on 1..T-2
    in_overlap = np.zeros(acc.shape[0], dtype=bool)
    for a, b in zip(starts[1:], starts[:-1], strict=True):
        lo, hi = a, b + window  # overlap [a, b + window)
        in_overlap[max(0, lo - 1) : max(0, hi - 1)] = True  # acc[k] is centred on frame k + 1
    seam = float(acc[in_overlap].mean()) if in_overlap.any() else float("nan")
    within = float(acc[~in_overlap].mean()) if (~in_overlap).any() else float("nan")
    return seam, within
