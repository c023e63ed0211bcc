"""Importers of real data into the corpus format (``avitalk data import KIND SRC --out DIR``).

Each importer module exposes::

    HELP: str                                        # one line for ``--help``
    def add_arguments(parser) -> None                # its own options besides SRC and --out
    def run(src: Path, out: Path, args) -> ImportSummary

and writes through :class:`avitalk.data.writer.CorpusWriter` (atomic shards, resumable). A corrupt
or unreadable source file is reported by name in the summary and skipped, never fatal.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

#: kind -> module implementing it (imported only when that kind is used)
IMPORTERS: dict[str, str] = {
    "mead-emoca": "avitalk.data.importers.mead",
    "meadtext": "avitalk.data.importers.meadtext",
    "ravdess": "avitalk.data.importers.ravdess",
    "livelink": "avitalk.data.importers.livelink",
    "video": "avitalk.data.importers.video",
}


@dataclass
class ImportSummary:
    """What an import did: clips written, and every skipped source with the reason."""

    kind: str
    imported: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    already_done: int = 0  # sources skipped because an earlier run imported them
    notes: list[str] = field(default_factory=list)

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append((source, reason))

    def format(self) -> str:
        lines = [f"{self.kind}: imported {self.imported} clip(s), {self.seconds / 60:.1f} min of audio"]
        if self.already_done:
            lines.append(f"  {self.already_done} source(s) already imported by an earlier run")
        lines.append(f"  skipped {len(self.skipped)} source(s)")
        lines += [f"  skipped {src}: {why}" for src, why in self.skipped]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def load_importer(kind: str) -> ModuleType | None:
    """The importer module of ``kind``, or None if that importer is not available in this build."""
    try:
        return importlib.import_module(IMPORTERS[kind])
    except ModuleNotFoundError as e:
        if e.name == IMPORTERS[kind]:
            return None
        raise
