"""``avitalk data import meadtext CAPTIONS --corpus MEAD_CORPUS --out DIR``: attach MeadText captions.

Reads an existing corpus (typically made by ``data import mead-emoca``) and writes a **new** corpus
at ``--out`` with the same clips, splits and motion space, whose instructions are the captions
found for each clip (the first is canonical, the others paraphrases). The source corpus is only
read. Clips without a caption keep their instructions (``--unmatched keep``, the default) or are
left out (``--unmatched drop``).

MeadText (AVI-Talking) and TalkCLIP's TA-MEAD captions are not published in a documented file
format; what the released AVI-Talking code shows is a caption database queried by MEAD video name
(``TalkClipDatabase.query("M024_front_sad_level3_027")``) and per-clip stage-1 records
``{"mm_paths": ".../M012_front_neutral_level1_017.wav", "output_texts": "A disappointed person
speaks with ...", ...}`` (``experiments/json_dir/*.json``). CAPTIONS may therefore be:

- a JSON object ``{key: "caption" | ["caption", "paraphrase", ...]}``;
- a JSON list (or JSON Lines file) of records with a key field (``clip_id``, ``video``, ``name``,
  ``id``, ``key``, ``path``, ``mm_paths``, ``audio``) and a caption field (``instructions``,
  ``captions``, ``output_texts``, ``texts``, ``text``, ``descriptions``, ``description``,
  ``caption``; string or list);
- a directory of such ``.json``/``.jsonl`` files (e.g. AVI-Talking's ``json_dir``), each read on
  its own: a corrupt file is reported by name and skipped.

A key matches a clip by its ``clip_id``, or, for MEAD, by the take it names in any spelling
(``M003_front_angry_level_1_001``, ``M003_front_angry_level1_001``, ``M003/front/angry/level_1/001``,
a path ending in ``M012_front_neutral_level1_017.wav``). Several records for one clip are merged
(duplicates dropped), in file order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from avitalk import __version__
from avitalk.data.format import Manifest, iter_shard_rows, row_to_clip
from avitalk.data.importers import ImportSummary
from avitalk.data.importers._helpers import first_line, progress
from avitalk.data.importers.mead import MEAD_EMOTIONS, MeadId, parse_mead_name
from avitalk.data.writer import CorpusWriter
from avitalk.errors import AvitalkError

HELP = "attach MeadText / TalkCLIP-style captions (JSON) to the clips of an imported MEAD corpus, into a new corpus"

SOURCE = "meadtext"
KEY_FIELDS = ("clip_id", "video", "video_id", "name", "id", "key", "path", "mm_paths", "audio", "file")
MEDIA_SUFFIXES = {".wav", ".flac", ".m4a", ".mp3", ".mp4", ".mov", ".avi", ".npy", ".hdf5", ".pkl", ".json"}
TEXT_FIELDS = ("instructions", "captions", "output_texts", "texts", "text", "descriptions", "description", "caption")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="the corpus whose clips get the captions (only read)")
    parser.add_argument(
        "--unmatched",
        choices=("keep", "drop"),
        default="keep",
        help="clips without a caption: keep their instructions (default) or leave them out",
    )
    parser.add_argument(
        "--keep-instructions",
        action="store_true",
        help="append the clip's previous instructions after the captions (default: replace them)",
    )
    parser.add_argument("--clips-per-shard", type=int, default=None, help="default: as in the source corpus")


def _mead_key(mid: MeadId) -> tuple[str, str, str, int, str]:
    return (mid.speaker, mid.view, mid.emotion, mid.level, mid.number)


class CaptionIndex:
    """Captions by clip id and by MEAD take."""

    def __init__(self) -> None:
        self.by_id: dict[str, list[str]] = {}
        self.by_take: dict[tuple, list[str]] = {}
        self.records = 0

    def add(self, key: str, texts: list[str]) -> None:
        texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
        if not texts:
            return
        self.records += 1
        name = Path(str(key).strip())
        stem = name.stem if name.suffix.lower() in MEDIA_SUFFIXES else name.name
        for k in dict.fromkeys([str(key).strip(), stem]):
            self.by_id.setdefault(k, []).extend(texts)
        mid = parse_mead_name(str(key))
        if mid is not None:
            self.by_take.setdefault(_mead_key(mid), []).extend(texts)

    def lookup(self, clip_id: str, extra: dict) -> list[str] | None:
        """Every caption of the clip, in file order: by its MEAD take (any spelling) and by its id."""
        mid = None
        m = extra.get("mead")
        if isinstance(m, dict):
            try:
                mid = MeadId(m["speaker"], m.get("view", "front"), m["emotion"], int(m["level"]), m["number"])
            except (KeyError, ValueError, TypeError):
                mid = None
        mid = mid or parse_mead_name(clip_id)
        texts: list[str] = []
        if mid is not None and mid.emotion_dir in MEAD_EMOTIONS:
            texts += self.by_take.get(_mead_key(mid), [])
        texts += self.by_id.get(clip_id, [])
        return list(dict.fromkeys(texts)) or None


def _texts_of(record: dict) -> list[str] | None:
    for f in TEXT_FIELDS:
        if f in record:
            v = record[f]
            return [v] if isinstance(v, str) else list(v) if isinstance(v, list) else None
    return None


def _key_of(record: dict) -> str | None:
    for f in KEY_FIELDS:
        v = record.get(f)
        if isinstance(v, list) and v:
            v = v[0]
        if isinstance(v, str) and v.strip():
            return v
    return None


def read_caption_file(path: Path, index: CaptionIndex) -> int:
    """Add the captions of one JSON / JSON Lines file to ``index``; returns the records read.

    Raises:
        AvitalkError: unreadable file, malformed JSON, or no usable record.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise AvitalkError(f"cannot read: {first_line(e)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise AvitalkError(f"malformed JSON: {e}") from None
    records: list[tuple[str, list[str]]] = []
    if isinstance(data, dict) and _texts_of(data) is not None and _key_of(data) is not None:
        data = [data]  # a single record (AVI-Talking json_dir)
    if isinstance(data, dict):
        for k, v in data.items():
            texts = (
                [v]
                if isinstance(v, str)
                else v
                if isinstance(v, list)
                else _texts_of(v)
                if isinstance(v, dict)
                else None
            )
            if texts:
                records.append((k, texts))
    elif isinstance(data, list):
        for r in data:
            if isinstance(r, dict):
                key, texts = _key_of(r), _texts_of(r)
                if key and texts:
                    records.append((key, texts))
    if not records:
        raise AvitalkError(
            "no caption records found; expected {key: caption(s)} or records with a key field "
            f"({', '.join(KEY_FIELDS[:4])}, ...) and a caption field ({', '.join(TEXT_FIELDS[:3])}, ...)"
        )
    before = index.records
    for key, texts in records:
        index.add(key, texts)
    return index.records - before


def run(src: Path, out: Path, args: argparse.Namespace) -> ImportSummary:
    """Write a copy of ``--corpus`` with the captions of ``src`` (a file or a folder of files) to ``out``."""
    summary = ImportSummary(kind=SOURCE)
    corpus = Path(args.corpus)
    if corpus.resolve() == out.resolve():
        raise AvitalkError("--out must differ from --corpus: the source corpus is never modified")
    manifest = Manifest.load(corpus)
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".json", ".jsonl")) if src.is_dir() else [src]
    if not files:
        raise AvitalkError(f"{src}: no .json or .jsonl caption files found")
    index = CaptionIndex()
    for f in files:
        try:
            read_caption_file(f, index)
        except AvitalkError as e:
            summary.skip(f.relative_to(src).as_posix() if src.is_dir() else f.name, str(e))
    if index.records == 0:
        raise AvitalkError(f"{src}: no readable caption records")
    per_shard = args.clips_per_shard or max((s.clips for s in manifest.shards), default=16)
    generator = {
        "name": "avitalk.data.importers.meadtext",
        "avitalk": __version__,
        "captions": str(src),
        "corpus": str(corpus),
        "corpus_source": manifest.source,
        "options": {"unmatched": args.unmatched, "keep_instructions": bool(args.keep_instructions)},
    }
    if "split_policy" in manifest.generator:
        generator["split_policy"] = manifest.generator["split_policy"]
    writer = CorpusWriter(out, manifest.space, SOURCE, clips_per_shard=per_shard, generator=generator)
    matched = unmatched = 0
    used: set[str] = set()
    total = sum(s.clips for s in manifest.shards)
    rows = _rows(corpus, manifest, summary)
    for shard_file, row in progress(rows, desc=SOURCE, total=total):
        clip_id = row["clip_id"]
        key = f"{shard_file}:{clip_id}"
        if writer.is_done(key):
            summary.already_done += 1
            continue
        try:
            clip = row_to_clip(row)
        except (ValueError, RuntimeError, TypeError, KeyError, OSError) as e:  # a damaged row: report, go on
            summary.skip(key, f"clip does not decode: {first_line(e)}")
            continue
        captions = index.lookup(clip.clip_id, clip.extra)
        if captions is None:
            unmatched += 1
            if args.unmatched == "drop":
                summary.skip(key, "no caption")
                continue
        else:
            matched += 1
            used.add(clip.clip_id)
            previous = list(clip.instructions)
            clip.instructions = list(dict.fromkeys(captions + (previous if args.keep_instructions else [])))
            clip.extra = {**clip.extra, "instruction_source": SOURCE, "label_instructions": previous}
        writer.add(clip, key=key)
        summary.imported += 1
        summary.seconds += clip.duration
    writer.close()
    summary.notes.append(f"{matched} clip(s) got captions; {unmatched} had none ({args.unmatched})")
    return summary


def _rows(corpus: Path, manifest: Manifest, summary: ImportSummary):
    """``(shard file, raw row)`` of every readable shard of the source corpus; damaged shards are reported."""
    for shard in manifest.shards:
        try:
            for row in iter_shard_rows(corpus / shard.file):
                yield shard.file, row
        except AvitalkError as e:
            summary.skip(shard.file, str(e).removeprefix(f"{corpus / shard.file}: "))
