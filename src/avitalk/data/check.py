"""``avitalk data check`` and ``avitalk data stats``: validate and summarise a corpus.

Both stream the corpus shard by shard (bounded memory) and return plain data structures; the
CLI only prints them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avitalk.data.format import SPLITS, Manifest, decode_flac, file_sha256, iter_shard_rows
from avitalk.data.labels import EMOTIONS, UNKNOWN
from avitalk.errors import AvitalkError
from avitalk.rates import AUDIO_SAMPLE_RATE, frames_for_samples


@dataclass
class Problem:
    where: str  # "shard.parquet:clip_id" or a file
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class CheckReport:
    clips: int = 0
    bad_clips: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_clip_row(row: dict, motion_dim: int, fps: float) -> list[str]:
    """Problems of one raw Parquet row (empty list when the clip is valid)."""
    out: list[str] = []
    try:
        audio, sr = decode_flac(row["audio_flac"])
    except Exception as e:
        return [f"audio does not decode: {str(e).splitlines()[0]}"]
    if audio.ndim != 1:
        out.append(f"audio has {audio.shape[1]} channels, expected mono")
        audio = audio.mean(axis=1)
    if sr != AUDIO_SAMPLE_RATE or row["sample_rate"] != AUDIO_SAMPLE_RATE:
        out.append(f"sample rate {sr} Hz (column says {row['sample_rate']}), expected {AUDIO_SAMPLE_RATE}")
    if audio.shape[0] == 0:
        out.append("audio is empty")
    if audio.shape[0] != row["n_samples"]:
        out.append(f"audio has {audio.shape[0]} samples but n_samples says {row['n_samples']}")
    if not np.isfinite(audio).all():
        out.append("audio contains NaN/Inf")
    if not row["instructions"] or not all(isinstance(t, str) and t.strip() for t in row["instructions"]):
        out.append("no instruction text")
    if row["emotion"] not in EMOTIONS and row["emotion"] != UNKNOWN:
        out.append(f"unknown emotion {row['emotion']!r}")
    if row["motion"] is not None:
        n, d = row["n_frames"], row["motion_dim"]
        m = np.asarray(row["motion"], dtype=np.float32)
        if d != motion_dim:
            out.append(f"motion has {d} channels, the corpus motion space has {motion_dim}")
        if m.size != n * d:
            out.append(f"motion holds {m.size} values, expected n_frames*motion_dim = {n * d}")
        if not np.isfinite(m).all():
            bad = np.flatnonzero(~np.isfinite(m.reshape(-1, d) if d and m.size == n * d else m))
            out.append(f"motion contains NaN/Inf ({bad.size} values)")
        mask = row["motion_mask"]
        if mask is not None and len(mask) != n:
            out.append(f"motion_mask has {len(mask)} entries for {n} frames")
        if abs(row["fps"] - fps) > 1e-3:
            out.append(f"motion at {row['fps']} fps, the corpus declares {fps}")
        expected = frames_for_samples(audio.shape[0], fps)
        if abs(n - expected) > 1:
            out.append(f"motion has {n} frames but the audio ({audio.shape[0] / sr:.3f} s) needs {expected} ± 1")
    if row["phones"]:
        dur = audio.shape[0] / max(sr, 1)
        prev = 0.0
        for p in row["phones"]:
            if not (0.0 <= p["start"] < p["end"] <= dur + 0.02) or p["start"] < prev - 1e-3:
                out.append(f"phone {p['symbol']!r} at {p['start']:.3f}-{p['end']:.3f} s is out of order or range")
                break
            prev = p["end"]
    return out


def split_policy(manifest: Manifest) -> dict[str, bool]:
    """Which disjointness between splits the corpus promises: ``{"speaker": bool, "sentence": bool}``.

    Read from ``manifest.generator["split_policy"]``; both default to True. A corpus whose sentences
    cannot be held out (e.g. RAVDESS: two sentences) declares ``"sentence": false``.
    """
    declared = manifest.generator.get("split_policy") or {}
    return {kind: bool(declared.get(kind, True)) for kind in ("speaker", "sentence")}


def check_corpus(root: str | os.PathLike[str], max_problems: int = 1000) -> CheckReport:
    """Validate every shard and clip of the corpus at ``root``.

    Checks: manifest and motion space (unknown channels), shard checksums and row counts, audio
    (decodes, 16 kHz, mono, non-empty, finite), motion (finite, channel count, audio/motion length
    within one frame), phone timings, instruction presence, and that splits are disjoint by
    speaker and by sentence (unless the manifest's :func:`split_policy` waives one of them).
    """
    root = Path(root)
    manifest = Manifest.load(root)
    report = CheckReport()
    split_speakers: dict[str, set[str]] = defaultdict(set)
    split_sentences: dict[str, set[str]] = defaultdict(set)
    seen_ids: set[str] = set()

    def add(where: str, what: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(Problem(where, what))

    for shard in manifest.shards:
        path = root / shard.file
        if shard.split not in SPLITS:
            add(shard.file, f"unknown split {shard.split!r}")
        if not path.exists():
            add(shard.file, "shard file is missing")
            continue
        if file_sha256(path) != shard.sha256:
            add(shard.file, "sha256 differs from the manifest (file changed or damaged)")
        n_rows = 0
        try:
            for row in iter_shard_rows(path):
                n_rows += 1
                report.clips += 1
                cid = row["clip_id"]
                problems = check_clip_row(row, manifest.space.dim, manifest.fps)
                if cid in seen_ids:
                    problems.append("duplicate clip_id")
                seen_ids.add(cid)
                if row["split"] != shard.split:
                    problems.append(f"row says split {row['split']!r} but the shard is in {shard.split!r}")
                split_speakers[shard.split].add(row["speaker"])
                if row["sentence_id"]:
                    split_sentences[shard.split].add(row["sentence_id"])
                if problems:
                    report.bad_clips += 1
                    for p in problems:
                        add(f"{shard.file}:{cid}", p)
        except AvitalkError as e:
            add(shard.file, str(e))
            continue
        if n_rows != shard.clips:
            add(shard.file, f"holds {n_rows} clips, the manifest says {shard.clips}")

    policy = split_policy(manifest)
    for kind, sets in (("speaker", split_speakers), ("sentence", split_sentences)):
        if not policy[kind]:
            continue
        names = sorted(sets)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = sets[a] & sets[b]
                if shared:
                    add("splits", f"{a} and {b} share {len(shared)} {kind}(s), e.g. {sorted(shared)[0]!r}")
    return report


@dataclass
class Stats:
    """Clip counts and seconds grouped by split, and within each split by speaker, emotion, intensity."""

    by_split: dict[str, tuple[int, float]]
    by_speaker: dict[str, dict[str, tuple[int, float]]]
    by_emotion: dict[str, dict[str, tuple[int, float]]]
    by_intensity: dict[str, dict[int, tuple[int, float]]]
    with_motion: int
    space: str


def corpus_stats(root: str | os.PathLike[str]) -> Stats:
    """Counts and durations per split, speaker, emotion and intensity (reads metadata columns only)."""
    root = Path(root)
    manifest = Manifest.load(root)
    cols = ["split", "speaker", "emotion", "intensity", "n_samples", "sample_rate", "n_frames"]
    acc: dict[str, dict] = {k: defaultdict(lambda: defaultdict(lambda: [0, 0.0])) for k in ("sp", "em", "in")}
    by_split: dict[str, list] = defaultdict(lambda: [0, 0.0])
    with_motion = 0
    for shard in manifest.shards:
        for row in iter_shard_rows(root / shard.file, columns=cols):
            sec = row["n_samples"] / row["sample_rate"]
            s = shard.split
            for key, val in (("sp", row["speaker"]), ("em", row["emotion"]), ("in", row["intensity"])):
                acc[key][s][val][0] += 1
                acc[key][s][val][1] += sec
            by_split[s][0] += 1
            by_split[s][1] += sec
            with_motion += row["n_frames"] > 0

    def freeze(d: dict) -> dict:
        return {s: {k: (v[0], v[1]) for k, v in sorted(inner.items())} for s, inner in d.items()}

    return Stats(
        by_split={s: (v[0], v[1]) for s, v in by_split.items()},
        by_speaker=freeze(acc["sp"]),
        by_emotion=freeze(acc["em"]),
        by_intensity=freeze(acc["in"]),
        with_motion=with_motion,
        space=manifest.space.key,
    )


def format_stats(stats: Stats) -> str:
    """A plain-text table of :class:`Stats`."""
    lines = [f"motion space: {stats.space}; clips with motion: {stats.with_motion}"]
    lines.append(f"{'split':<8}{'clips':>8}{'minutes':>10}")
    for s in SPLITS:
        if s in stats.by_split:
            n, sec = stats.by_split[s]
            lines.append(f"{s:<8}{n:>8}{sec / 60:>10.2f}")
    total_n = sum(v[0] for v in stats.by_split.values())
    total_s = sum(v[1] for v in stats.by_split.values())
    lines.append(f"{'total':<8}{total_n:>8}{total_s / 60:>10.2f}")
    for title, table in (
        ("speaker", stats.by_speaker),
        ("emotion", stats.by_emotion),
        ("intensity", stats.by_intensity),
    ):
        lines.append("")
        lines.append(f"by {title} (clips / minutes)")
        keys = sorted({k for inner in table.values() for k in inner}, key=str)
        splits = [s for s in SPLITS if s in table]
        lines.append(f"{title:<12}" + "".join(f"{s:>16}" for s in splits))
        for k in keys:
            cells = []
            for s in splits:
                n, sec = table[s].get(k, (0, 0.0))
                cells.append(f"{n:>8} / {sec / 60:>5.1f}" if n else f"{'-':>16}")
            lines.append(f"{k!s:<12}" + "".join(cells))
    return "\n".join(lines)
