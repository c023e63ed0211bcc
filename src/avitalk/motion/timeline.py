"""Time-varying instructions: segments of text over time, blended smoothly into per-frame styles.

An instruction may change over the clip. It is written either as one string::

    "0-3s: calm and neutral; 3s-: increasingly angry, brows lowered"

(``START-END: text`` items separated by ``;``; times in seconds as ``3``, ``3s``, ``2.5s``, ``1500ms``,
``1m20s``; an empty END means "to the end"), or as a list of ``{start, end, text}`` mappings (JSON or
YAML, ``end`` null or absent on the last one). A plain string without a leading time range is one
segment covering the whole clip.

Rules (checked, with clear errors): the first segment starts at 0; each starts where the previous one
ends (no gaps, no overlaps); ``start < end``; texts are not empty; only the last segment may be open.
The last segment's text holds until the end of the audio even if its ``end`` is earlier; segments
that start at or after the end of the audio are unused.

Each segment gets its own style embedding ``z`` (sampled per segment by the prior); per frame, the
segments' embeddings are mixed with raised-cosine cross-fades centred on the boundaries
(:meth:`Timeline.weights`, ``blend`` seconds wide, narrowed to half of the shorter neighbouring
segment), so the style changes smoothly rather than jumping.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avitalk.errors import AvitalkError

#: Default width of the cross-fade between neighbouring segments, seconds.
DEFAULT_BLEND = 0.5

_TIME = r"(?:\d+(?:\.\d*)?|\.\d+)\s*(?:ms|s|m(?:\s*(?:\d+(?:\.\d*)?|\.\d+)\s*s)?)?"
_HEADER = re.compile(rf"\s*(?P<start>{_TIME})\s*-\s*(?P<end>{_TIME})?\s*:")
_LOOKS_TIMED = re.compile(r"\s*[\d.]+\s*[a-z]*\s*-\s*[\d.]*\s*[a-z]*\s*:", re.IGNORECASE)
_TIME_FULL = re.compile(
    r"^(?:(?P<min>\d+(?:\.\d*)?)\s*m(?:\s*(?P<sec>\d+(?:\.\d*)?|\.\d+)\s*s)?|(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s)?)$"
)


@dataclass(frozen=True)
class Segment:
    """One instruction over ``[start, end)`` seconds (``end`` None: to the end of the audio)."""

    start: float
    end: float | None
    text: str

    def label(self) -> str:
        """``"0-3s"`` / ``"3s-"``: the time range as written in a timed instruction string."""
        return f"{self.start:g}-{self.end:g}s" if self.end is not None else f"{self.start:g}s-"


def _fmt(t: float) -> str:
    return f"{t:g}s"


def parse_time(text: str) -> float:
    """Seconds from ``"3"``, ``"3s"``, ``"2.5s"``, ``"1500ms"``, ``"1m"``, ``"1m20s"``.

    Raises:
        AvitalkError: not a time.
    """
    m = _TIME_FULL.match(text.strip().lower())
    if not m:
        raise AvitalkError(f"bad time {text!r} in instruction (expected e.g. 3, 3s, 2.5s, 1500ms, 1m20s)")
    if m.group("min") is not None:
        return float(m.group("min")) * 60 + float(m.group("sec") or 0)
    value = float(m.group("num"))
    return value / 1000 if m.group("unit") == "ms" else value


def is_timed(text: str) -> bool:
    """Whether ``text`` starts with a ``START-END:`` time range (a timed instruction string)."""
    return _HEADER.match(text) is not None


def parse_timed_string(text: str) -> list[Segment]:
    """Segments of ``"0-3s: calm; 3s-: angry"`` (not validated; see :func:`validate`).

    Items are split at ``;`` only where a new ``START-END:`` header follows, so texts may contain ``;``.
    """
    heads = []
    pos = 0
    while True:
        m = _HEADER.match(text, pos)
        if m is None:
            break
        heads.append(m)
        nxt = _next_header(text, m.end())
        if nxt is None:
            break
        pos = nxt
    if not heads:
        raise AvitalkError(f"instruction {text[:40]!r} has no 'START-END:' time range")
    segments = []
    for i, m in enumerate(heads):
        body_end = len(text) if i + 1 == len(heads) else heads[i + 1].start()
        body = text[m.end() : body_end].strip()
        if i + 1 < len(heads):
            body = body.rstrip().removesuffix(";").strip()
        for part in body.split(";")[1:]:
            if _LOOKS_TIMED.match(part):
                raise AvitalkError(
                    f"bad time range {part.strip()[:20]!r} in instruction (expected e.g. '3s-5s:' or '3s-:')"
                )
        end = m.group("end")
        segments.append(Segment(parse_time(m.group("start")), parse_time(end) if end else None, body))
    return segments


def _next_header(text: str, pos: int) -> int | None:
    """Index just after the next ``;`` that is followed by a time-range header, or None."""
    while True:
        k = text.find(";", pos)
        if k < 0:
            return None
        if _HEADER.match(text, k + 1):
            return k + 1
        pos = k + 1


def segments_from_data(data: Any, where: str = "instruction") -> list[Segment]:
    """Segments from a list of ``{start, end, text}`` mappings (or ``{"segments": [...]}``), not validated."""
    if isinstance(data, Mapping) and "segments" in data:
        data = data["segments"]
    if not isinstance(data, Sequence) or isinstance(data, str | bytes) or not data:
        raise AvitalkError(f"{where}: expected a non-empty list of {{start, end, text}} segments")
    out = []
    for i, item in enumerate(data, 1):
        if isinstance(item, Segment):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise AvitalkError(f"{where}: segment {i} is not a mapping with start, end, text")
        unknown = set(item) - {"start", "end", "text"}
        if unknown:
            raise AvitalkError(f"{where}: segment {i} has unknown keys {', '.join(sorted(map(str, unknown)))}")
        if "text" not in item or not isinstance(item["text"], str):
            raise AvitalkError(f"{where}: segment {i} needs a text string")
        start = _time_value(item.get("start", 0 if i == 1 else None), where, i, "start")
        if start is None:
            raise AvitalkError(f"{where}: segment {i} needs a start time")
        end = _time_value(item.get("end"), where, i, "end")
        out.append(Segment(start, end, item["text"].strip()))
    return out


def _time_value(v: Any, where: str, i: int, key: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise AvitalkError(f"{where}: segment {i} {key} must be a time in seconds, got {v!r}")
    if isinstance(v, int | float):
        if not math.isfinite(v):
            raise AvitalkError(f"{where}: segment {i} {key} must be finite")
        return float(v)
    if isinstance(v, str):
        return parse_time(v)
    raise AvitalkError(f"{where}: segment {i} {key} must be a time in seconds, got {v!r}")


def validate(segments: Sequence[Segment], where: str = "instruction") -> tuple[Segment, ...]:
    """Check the rules of the module docstring; returns the segments as a tuple.

    Raises:
        AvitalkError: naming the first offending segment (1-based) and the rule.
    """
    if not segments:
        raise AvitalkError(f"{where}: no segments")
    for i, s in enumerate(segments, 1):
        if not s.text.strip():
            raise AvitalkError(f"{where}: segment {i} ({s.label()}) has no text")
        if s.start < 0:
            raise AvitalkError(f"{where}: segment {i} starts before 0 s")
        if s.end is not None and s.end <= s.start:
            raise AvitalkError(f"{where}: segment {i} ({s.label()}) ends before it starts")
        if i == 1 and s.start != 0:
            raise AvitalkError(f"{where}: the first segment must start at 0 s, not {_fmt(s.start)}")
        if i > 1:
            prev = segments[i - 2]
            if prev.end is None:
                raise AvitalkError(f"{where}: segment {i - 1} ({prev.label()}) is open-ended but is not the last")
            if s.start < prev.end:
                raise AvitalkError(
                    f"{where}: segment {i} ({s.label()}) overlaps segment {i - 1} ({prev.label()}) "
                    "or is out of order; segments must be in time order without overlaps"
                )
            if s.start > prev.end:
                raise AvitalkError(
                    f"{where}: gap between {_fmt(prev.end)} and {_fmt(s.start)}; "
                    f"segment {i} must start where segment {i - 1} ends"
                )
    return tuple(segments)


def load_instruction_file(path: str | os.PathLike[str]) -> list[Segment]:
    """Segments from a ``.json`` / ``.yaml`` / ``.yml`` list of ``{start, end, text}`` (or a ``.txt``: one instruction).

    Raises:
        AvitalkError: missing file, unreadable or wrongly shaped contents.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise AvitalkError(f"{p}: no such instruction file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AvitalkError(f"{p}: cannot read instruction file: {e}") from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise AvitalkError(f"{p}: invalid JSON: {e}") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise AvitalkError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
    else:
        return list(parse_instruction(text.strip(), where=str(p)).segments)
    return segments_from_data(data, str(p))


@dataclass(frozen=True)
class Timeline:
    """Validated instruction segments; :meth:`weights` gives each segment's share of every frame."""

    segments: tuple[Segment, ...]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.segments]

    @property
    def constant(self) -> bool:
        """One segment only: a constant style."""
        return len(self.segments) == 1

    def format(self) -> str:
        """The timed string form (``"0-3s: calm; 3s-: angry"``); a single open segment is its text alone."""
        if self.constant and self.segments[0].end is None:
            return self.segments[0].text
        return "; ".join(f"{s.label()}: {s.text}" for s in self.segments)

    def used(self, duration: float) -> Timeline:
        """The segments that start before ``duration`` seconds (at least the first)."""
        keep = [s for s in self.segments if s.start < duration] or [self.segments[0]]
        return Timeline(tuple(keep))

    def weights(self, frames: np.ndarray | int, fps: float, blend: float = DEFAULT_BLEND) -> np.ndarray:
        """Each segment's weight at each frame: ``(len(frames), K)`` float64, rows sum to 1.

        Args:
            frames: frame indices (or a count ``T`` for ``0..T-1``); frame ``k`` is at ``(k + 0.5) / fps`` s.
            fps: frame rate.
            blend: cross-fade width in seconds (0: hard switches at the boundaries).

        The weight of segment ``i + 1`` rises as ``0.5 - 0.5 cos(pi u)`` with ``u`` going 0 -> 1 over
        ``[b - h, b + h]`` around boundary ``b``, ``h = min(blend / 2, half of each neighbour's length)``.
        """
        idx = np.arange(frames) if isinstance(frames, int) else np.asarray(frames)
        t = (idx.astype(np.float64) + 0.5) / fps  # (T,)
        k = len(self.segments)
        # u[:, j]: progress across boundary j (between segment j-1 and j), j = 1..K-1; u[:, 0] = 1, u[:, K] = 0
        u = np.zeros((t.shape[0], k + 1))
        u[:, 0] = 1.0
        for j in range(1, k):
            b = self.segments[j].start
            left = b - self.segments[j - 1].start
            right = (self.segments[j].end - b) if self.segments[j].end is not None else math.inf
            h = min(blend / 2, left / 2, right / 2)
            if h <= 0:
                u[:, j] = (t >= b).astype(np.float64)
            else:
                x = np.clip((t - (b - h)) / (2 * h), 0.0, 1.0)
                u[:, j] = 0.5 - 0.5 * np.cos(np.pi * x)
        return u[:, :k] - u[:, 1:]  # (T, K), telescoping: rows sum to 1

    def style_frames(
        self,
        z: torch.Tensor,
        frames: np.ndarray | int,
        fps: float,
        blend: float = DEFAULT_BLEND,
        renormalize: bool = True,
    ) -> torch.Tensor:
        """Per-frame styles from per-segment ones.

        Args:
            z: ``(N, K, Dz)`` style embeddings, one per sample and segment.
            frames, fps, blend: as in :meth:`weights`.
            renormalize: re-standardise mixed frames (zero mean, unit variance over ``Dz``, like the
                style encoder's output) so a cross-fade does not shrink ``z``; frames that use a single
                segment are left untouched.

        Returns:
            ``(N, T, Dz)``.
        """
        w = self.weights(frames, fps, blend)  # (T, K)
        if z.shape[1] != w.shape[1]:
            raise ValueError(f"z has {z.shape[1]} segments, the timeline {w.shape[1]}")
        wt = torch.as_tensor(w, dtype=z.dtype, device=z.device)
        out = torch.einsum("tk,nkd->ntd", wt, z)  # (N, T, Dz)
        single = (w == 1.0).any(axis=1)  # (T,)
        if single.any():
            rows = torch.as_tensor(w[single].argmax(axis=1), device=z.device)
            out[:, torch.as_tensor(single, device=z.device)] = z[:, rows]  # exact copies, no rounding
        if renormalize and not single.all():
            mixed = torch.as_tensor(~single, device=z.device)
            m = out[:, mixed]
            out[:, mixed] = (m - m.mean(-1, keepdim=True)) / m.std(-1, unbiased=False, keepdim=True).clamp_min(1e-6)
        return out


def parse_instruction(instruction: str | Sequence[Segment | Mapping[str, Any]], where: str = "instruction") -> Timeline:
    """A validated :class:`Timeline` from a plain or timed string, or a list of segments / mappings."""
    if isinstance(instruction, str):
        text = instruction.strip()
        if not text:
            raise AvitalkError(f"{where}: empty instruction")
        if is_timed(text):
            segments = parse_timed_string(text)
        elif _LOOKS_TIMED.match(text):
            raise AvitalkError(f"{where}: bad time range {text[:20]!r} (expected e.g. '0-3s: calm; 3s-: angry')")
        else:
            segments = [Segment(0.0, None, text)]
    else:
        segments = segments_from_data(instruction, where)
    return Timeline(validate(segments, where))


__all__ = [
    "DEFAULT_BLEND",
    "Segment",
    "Timeline",
    "is_timed",
    "load_instruction_file",
    "parse_instruction",
    "parse_time",
    "parse_timed_string",
    "segments_from_data",
    "validate",
]
