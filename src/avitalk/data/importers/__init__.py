"""Importers of real data into the corpus format (``avitalk data import KIND SRC --out DIR``).

Each importer module exposes::

    HELP: str                                        # one line for ``--help``
    def add_arguments(parser) -> None                # its own options besides SRC and --out
    def run(src: Path, out: Path, args) -> ImportSummary

and writes through :class:`avitalk.data.writer.CorpusWriter` (atomic shards, resumable). A corrupt
or unreadable source file is reported by name in the summary and skipped, never fatal.

From Python, :func:`import_data` runs any kind with its command-line options as keyword arguments::

    from avitalk.data.importers import import_data
    summary = import_data("ravdess", "RAVDESS/", "corpus-ravdess", test_actors="23,24")
    print(summary.format())
"""

from __future__ import annotations

import argparse
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from avitalk.errors import AvitalkError

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


def import_data(
    kind: str, src: str | os.PathLike[str], out: str | os.PathLike[str], **options: object
) -> ImportSummary:
    """Import ``src`` into a corpus at ``out`` with importer ``kind``.

    Args:
        kind: one of :data:`IMPORTERS`.
        options: the importer's command-line options by their Python names (``--val-actors`` is
            ``val_actors``), with the same types the CLI would parse; omitted options take the
            CLI defaults.

    Raises:
        AvitalkError: unknown kind or option, a required option missing, or a missing source.
    """
    if kind not in IMPORTERS:
        raise AvitalkError(f"unknown importer {kind!r}; known: {', '.join(IMPORTERS)}")
    module = load_importer(kind)
    if module is None:
        raise AvitalkError(f"importer {kind!r} is not available in this installation")
    parser = argparse.ArgumentParser(prog=f"avitalk data import {kind}")
    module.add_arguments(parser)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    unknown = sorted(set(options) - set(actions))
    if unknown:
        raise AvitalkError(f"importer {kind!r} has no option(s) {unknown}; it has {sorted(actions)}")
    values = {dest: a.default for dest, a in actions.items()}
    values.update(options)
    missing = [f"--{d.replace('_', '-')}" for d, a in actions.items() if a.required and d not in options]
    if missing:
        raise AvitalkError(f"importer {kind!r} needs {', '.join(missing)}")
    src = Path(src)
    if not src.exists():
        raise AvitalkError(f"{src}: no such file or directory")
    return module.run(src, Path(out), argparse.Namespace(**values))
