"""Incremental, resumable corpus writing for importers.

:class:`CorpusWriter` buffers clips per split, writes a shard atomically whenever a buffer is full,
and records in ``import-state.json`` which *source keys* (e.g. input file paths) are safely on disk.
A rerun after an interruption skips those sources (:meth:`CorpusWriter.is_done`) and appends new
shards; the manifest is written by :meth:`CorpusWriter.close`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from avitalk.data.format import SPLITS, Clip, Manifest, ShardInfo, write_shard
from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_write_text
from avitalk.types import MotionSpace

STATE_FILE = "import-state.json"


class CorpusWriter:
    """Write clips into ``root`` as a corpus, resumably.

    Args:
        root: output directory; created if missing. If it holds an ``import-state.json`` of the
            same ``source``, the run resumes; any other non-empty directory is refused.
        space: motion space of every clip's motion (audio-only clips have none).
        source: corpus source name (``"ravdess"``, ``"video"``, ...), stored in the manifest.
        clips_per_shard: clips per Parquet shard.
        generator: free JSON metadata stored in the manifest (e.g. importer options).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        space: MotionSpace,
        source: str,
        clips_per_shard: int = 16,
        generator: dict | None = None,
    ) -> None:
        self.root = Path(root)
        self.space = space
        self.source = source
        self.clips_per_shard = clips_per_shard
        self.generator = generator or {}
        self._buffers: dict[str, list[Clip]] = defaultdict(list)
        self._buffer_keys: dict[str, list[str]] = defaultdict(list)
        state_path = self.root / STATE_FILE
        if state_path.exists():
            state = json.loads(state_path.read_text())
            if state.get("source") != source or state.get("space") != space.key:
                raise AvitalkError(
                    f"{self.root} holds an import of {state.get('source')!r} in {state.get('space')}; "
                    f"choose another --out for {source!r} in {space.key}"
                )
            self._done: set[str] = set(state["done"])
            self._shards = [ShardInfo(**s) for s in state["shards"]]
        elif self.root.exists() and any(self.root.iterdir()):
            raise AvitalkError(f"{self.root}: directory is not empty and holds no import to resume")
        else:
            self._done, self._shards = set(), []
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.rglob(".*.tmp*"):  # leftovers of an interrupted run
            stale.unlink()
        self._next_index = {s: sum(1 for i in self._shards if i.split == s) for s in SPLITS}

    def is_done(self, key: str) -> bool:
        """True if the clips of source ``key`` were written by an earlier (or this) run."""
        return key in self._done

    def add(self, clip: Clip, key: str | None = None) -> None:
        """Queue ``clip``; ``key`` (its source) is marked done once the clip's shard is written.

        Several clips may share a key; mark it with the last of them.
        """
        if clip.split not in SPLITS:
            raise ValueError(f"unknown split {clip.split!r}")
        if clip.motion is not None and clip.motion.shape[1] != self.space.dim:
            d = clip.motion.shape[1]
            raise AvitalkError(f"clip {clip.clip_id}: motion has {d} channels, {self.space.key} has {self.space.dim}")
        self._buffers[clip.split].append(clip)
        if key is not None:
            self._buffer_keys[clip.split].append(key)
        if len(self._buffers[clip.split]) >= self.clips_per_shard:
            self._flush(clip.split)

    def mark_done(self, key: str) -> None:
        """Mark a source that produced no clip (e.g. skipped as unusable) so reruns skip it too."""
        self._done.add(key)

    def _flush(self, split: str) -> None:
        clips = self._buffers.pop(split, [])
        keys = self._buffer_keys.pop(split, [])
        if not clips:
            return
        name = f"{split}/shard-{self._next_index[split]:05d}.parquet"
        self._next_index[split] += 1
        digest = write_shard(self.root / name, clips)
        seconds = round(sum(c.duration for c in clips), 4)
        self._shards.append(ShardInfo(name, split, len(clips), seconds, digest))
        self._done.update(keys)
        self._save_state()

    def _save_state(self) -> None:
        state = {
            "source": self.source,
            "space": self.space.key,
            "done": sorted(self._done),
            "shards": [asdict(s) for s in self._shards],
        }
        atomic_write_text(self.root / STATE_FILE, json.dumps(state, indent=1, sort_keys=True) + "\n")

    def close(self) -> Manifest:
        """Flush every buffer and write ``manifest.json``; returns the manifest."""
        for split in list(self._buffers):
            self._flush(split)
        self._save_state()
        shards = sorted(self._shards, key=lambda s: s.file)
        manifest = Manifest(space=self.space, shards=shards, source=self.source, generator=self.generator)
        manifest.save(self.root)
        return manifest
