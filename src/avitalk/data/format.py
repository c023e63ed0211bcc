"""The avitalk corpus format: Parquet shards of clips plus a JSON manifest.

Layout of a corpus directory (see docs/corpus-format.md)::

    DIR/manifest.json                 format version, motion space, rates, shards with row counts and sha256
    DIR/{train,val,test}/shard-NNNNN.parquet

One Parquet row is one clip: 16 kHz mono audio (FLAC bytes), an optional motion track
(``n_frames x motion_dim`` float32, row-major, in the corpus motion space at ``fps``), one or more
instruction texts, metadata and, when known, phone timings. Shards are written atomically and are
read row group by row group, so a corpus streams with bounded memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from avitalk.data.synth.phones import Phone
from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_path, atomic_write_text
from avitalk.rates import AUDIO_SAMPLE_RATE, MOTION_FPS
from avitalk.spaces import space_from_json
from avitalk.types import MotionSpace

FORMAT_NAME = "avitalk-corpus"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
ROWS_PER_GROUP = 8

_PHONE = pa.struct([("symbol", pa.string()), ("start", pa.float32()), ("end", pa.float32()),
                    ("stress", pa.int8()), ("word", pa.int32())])  # fmt: skip
_WORD = pa.struct([("word", pa.string()), ("start", pa.float32()), ("end", pa.float32())])
SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("split", pa.string()),
        ("speaker", pa.string()),
        ("gender", pa.string()),
        ("emotion", pa.string()),
        ("intensity", pa.int8()),
        ("sentence_id", pa.string()),
        ("transcript", pa.string()),
        ("sample_rate", pa.int32()),
        ("n_samples", pa.int64()),
        ("audio_flac", pa.binary()),
        ("fps", pa.float32()),
        ("n_frames", pa.int32()),
        ("motion_dim", pa.int32()),
        ("motion", pa.list_(pa.float32())),  # null for audio-only clips
        ("motion_mask", pa.list_(pa.bool_())),  # null when every frame is valid
        ("instructions", pa.list_(pa.string())),
        ("phones", pa.list_(_PHONE)),  # null when unknown
        ("words", pa.list_(_WORD)),  # null when unknown
        ("source", pa.string()),
        ("extra_json", pa.string()),
    ]
)


@dataclass
class Clip:
    """One corpus clip.

    Attributes:
        audio: ``(N,)`` float32 mono samples at ``sample_rate`` (16 kHz).
        motion: ``(T, D)`` float32 in the corpus motion space at ``fps``, or ``None`` (audio only).
        motion_mask: ``(T,)`` bool, False where the frame's motion is not valid (e.g. no face was
            found in that video frame; such frames hold zeros), or ``None`` when all are valid.
        instructions: one or more visual-instruction texts (the first is canonical).
        phones: timed phones, or ``None`` when unknown.
        words: ``(word, start, end)`` triples, or ``None``.
        intensity: 1..3 (MEAD levels), 0 when unknown.
        extra: free JSON-serialisable metadata (e.g. the generator's ground-truth style).
    """

    clip_id: str
    speaker: str
    gender: str
    emotion: str
    intensity: int
    transcript: str
    audio: np.ndarray
    motion: np.ndarray | None
    instructions: list[str]
    sentence_id: str = ""
    split: str = "train"
    sample_rate: int = AUDIO_SAMPLE_RATE
    fps: float = float(MOTION_FPS)
    phones: list[Phone] | None = None
    words: list[tuple[str, float, float]] | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
    motion_mask: np.ndarray | None = None

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.sample_rate


# --------------------------------------------------------------------------------------------- rows


def encode_flac(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit FLAC bytes of ``(N,)`` float32 samples (deterministic for equal input)."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """``(samples (N,) float32, sample_rate)`` from FLAC bytes; mono is enforced by the caller."""
    samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples[:, 0] if samples.shape[1] == 1 else samples, int(sr)


def clip_to_row(clip: Clip) -> dict:
    """Column values for one clip (see :data:`SCHEMA`)."""
    m = clip.motion
    return {
        "clip_id": clip.clip_id,
        "split": clip.split,
        "speaker": clip.speaker,
        "gender": clip.gender,
        "emotion": clip.emotion,
        "intensity": int(clip.intensity),
        "sentence_id": clip.sentence_id,
        "transcript": clip.transcript,
        "sample_rate": int(clip.sample_rate),
        "n_samples": int(clip.audio.shape[0]),
        "audio_flac": encode_flac(clip.audio, clip.sample_rate),
        "fps": float(clip.fps),
        "n_frames": 0 if m is None else int(m.shape[0]),
        "motion_dim": 0 if m is None else int(m.shape[1]),
        "motion": None if m is None else np.ascontiguousarray(m, dtype=np.float32).reshape(-1),
        "motion_mask": None if clip.motion_mask is None else np.asarray(clip.motion_mask, dtype=bool),
        "instructions": list(clip.instructions),
        "phones": None
        if clip.phones is None
        else [
            {"symbol": p.symbol, "start": p.start, "end": p.end, "stress": p.stress, "word": p.word}
            for p in clip.phones
        ],
        "words": None if clip.words is None else [{"word": w, "start": s, "end": e} for w, s, e in clip.words],
        "source": clip.source,
        "extra_json": json.dumps(clip.extra, sort_keys=True),
    }


def row_to_clip(row: dict) -> Clip:
    """Inverse of :func:`clip_to_row` (audio decoded, motion reshaped to ``(T, D)``)."""
    audio, sr = decode_flac(row["audio_flac"])
    motion = None
    if row["motion"] is not None:
        motion = np.asarray(row["motion"], dtype=np.float32).reshape(row["n_frames"], row["motion_dim"])
    phones = None
    if row["phones"] is not None:
        phones = [Phone(p["symbol"], p["start"], p["end"], p["stress"], p["word"]) for p in row["phones"]]
    words = None if row["words"] is None else [(w["word"], w["start"], w["end"]) for w in row["words"]]
    return Clip(
        clip_id=row["clip_id"],
        speaker=row["speaker"],
        gender=row["gender"],
        emotion=row["emotion"],
        intensity=int(row["intensity"]),
        transcript=row["transcript"],
        audio=audio,
        motion=motion,
        instructions=list(row["instructions"]),
        sentence_id=row["sentence_id"],
        split=row["split"],
        sample_rate=sr,
        fps=float(row["fps"]),
        phones=phones,
        words=words,
        source=row["source"],
        extra=json.loads(row["extra_json"] or "{}"),
        motion_mask=None if row["motion_mask"] is None else np.asarray(row["motion_mask"], dtype=bool),
    )


# ------------------------------------------------------------------------------------------- shards


def write_shard(path: str | os.PathLike[str], clips: Sequence[Clip]) -> str:
    """Write ``clips`` to a Parquet shard atomically; returns the file's sha256 hex digest."""
    table = pa.Table.from_pylist([clip_to_row(c) for c in clips], schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROWS_PER_GROUP, compression="zstd")
        digest = file_sha256(tmp)
    return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def iter_shard_rows(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> Iterator[dict]:
    """Yield raw rows (dicts) of one shard, one row group in memory at a time."""
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise AvitalkError(f"{path}: not a readable Parquet shard: {e}") from None
    missing = set(SCHEMA.names) - set(pf.schema_arrow.names)
    if missing:
        raise AvitalkError(f"{path}: shard lacks columns {sorted(missing)}")
    for i in range(pf.num_row_groups):
        yield from pf.read_row_group(i, columns=list(columns) if columns else None).to_pylist()


# ----------------------------------------------------------------------------------------- manifest


@dataclass
class ShardInfo:
    file: str  # relative to the corpus directory
    split: str
    clips: int
    seconds: float
    sha256: str


@dataclass
class Manifest:
    """What a corpus directory holds (``manifest.json``)."""

    space: MotionSpace
    shards: list[ShardInfo]
    fps: float = float(MOTION_FPS)
    sample_rate: int = AUDIO_SAMPLE_RATE
    source: str = ""
    generator: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "space": self.space.to_json(),
            "fps": self.fps,
            "sample_rate": self.sample_rate,
            "source": self.source,
            "generator": self.generator,
            "shards": [vars(s) for s in self.shards],
        }
        return json.dumps(d, indent=1, sort_keys=True) + "\n"

    def save(self, root: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(root) / MANIFEST, self.to_json())

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> Manifest:
        """Read and validate ``root/manifest.json``.

        Raises:
            AvitalkError: missing or malformed manifest, unknown format version or motion space.
        """
        p = Path(root) / MANIFEST
        if not p.exists():
            raise AvitalkError(f"{root}: not an avitalk corpus (no {MANIFEST})")
        try:
            d = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AvitalkError(f"{p}: malformed JSON: {e}") from None
        if d.get("format") != FORMAT_NAME:
            raise AvitalkError(f"{p}: format is {d.get('format')!r}, expected {FORMAT_NAME!r}")
        if d.get("format_version") != FORMAT_VERSION:
            raise AvitalkError(
                f"{p}: corpus format version {d.get('format_version')} but this avitalk reads {FORMAT_VERSION}"
            )
        try:
            shards = [ShardInfo(**s) for s in d["shards"]]
            return cls(
                space=space_from_json(d["space"]),
                shards=shards,
                fps=float(d["fps"]),
                sample_rate=int(d["sample_rate"]),
                source=d.get("source", ""),
                generator=d.get("generator", {}),
            )
        except (KeyError, TypeError) as e:
            raise AvitalkError(f"{p}: malformed manifest: {e}") from None


def iter_clips(root: str | os.PathLike[str], split: str | None = None) -> Iterator[Clip]:
    """Stream the clips of a corpus (optionally of one split), shard by shard."""
    manifest = Manifest.load(root)
    for shard in manifest.shards:
        if split is None or shard.split == split:
            for row in iter_shard_rows(Path(root) / shard.file):
                yield row_to_clip(row)
