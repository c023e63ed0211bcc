"""``avitalk data import ravdess SRC --out DIR``: RAVDESS emotional speech as audio-only clips.

Source layout (Livingstone & Russo 2018, the speech audio-only release, any sample rate; WAV or
FLAC, e.g. the 16 kHz FLAC copy in ``shared/assets/RAVDESS-speech-16k``)::

    SRC/Actor_07/03-01-05-02-01-01-07.wav     (any folder depth; SRC may also be one file)

File names are ``MM-VV-EE-II-SS-RR-AA``: modality (03 audio-only; 01 audio-video files are
accepted too when they are audio files), vocal channel (01 speech; 02 song is skipped), emotion
(01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised), intensity
(01 normal, 02 strong), statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the
door"), repetition, actor (odd male, even female).

Label mapping to MEAD's vocabulary (:mod:`avitalk.data.labels`):

- emotions keep their names (fearful -> ``fear``); **calm -> neutral** (MEAD has no calm; RAVDESS
  has no contempt), or calm files are skipped with ``--calm skip``; the original label is kept in
  the clip's ``extra_json``;
- intensity: neutral and calm -> 1 (MEAD's only neutral level), normal -> **2**, strong -> **3**
  (RAVDESS's two acted levels are read as MEAD's medium and strong).

Each clip is audio-only (``motion`` null) with actor, gender, transcript and MeadText-style
instructions generated from the labels by the synthetic corpus's caption grammar
(:func:`._helpers.label_captions`, seeded per file). Splits hold out actors (``--val-actors``,
``--test-actors``; defaults 21,22 and 23,24, a man and a woman each). With two sentences the
splits cannot be disjoint by sentence: the manifest declares
``generator.split_policy = {"speaker": true, "sentence": false}``, which ``data check`` honours.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from avitalk import __version__
from avitalk.data.format import Clip, Manifest
from avitalk.data.importers import ImportSummary
from avitalk.data.importers._helpers import first_line, label_captions, load_any_audio, parse_list, progress
from avitalk.data.writer import CorpusWriter
from avitalk.errors import AvitalkError
from avitalk.spaces import DEFAULT_SPACE

HELP = "RAVDESS speech audio (03-01-EE-II-SS-RR-AA.wav/flac) as audio-only clips with label-derived instructions"

SOURCE = "ravdess"
EXTENSIONS = (".wav", ".flac")
NAME_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")

#: RAVDESS emotion code -> (RAVDESS name, avitalk emotion)
EMOTION_CODES: dict[str, tuple[str, str]] = {
    "01": ("neutral", "neutral"),
    "02": ("calm", "neutral"),
    "03": ("happy", "happy"),
    "04": ("sad", "sad"),
    "05": ("angry", "angry"),
    "06": ("fearful", "fear"),
    "07": ("disgust", "disgust"),
    "08": ("surprised", "surprised"),
}
#: RAVDESS intensity code -> (name, MEAD level for non-neutral emotions)
INTENSITY_CODES: dict[str, tuple[str, int]] = {"01": ("normal", 2), "02": ("strong", 3)}
STATEMENTS: dict[str, str] = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
MODALITIES: dict[str, str] = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
SPLIT_POLICY = {"speaker": True, "sentence": False}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--val-actors", default="21,22", help="actors (numbers) held out for validation (default 21,22)"
    )
    parser.add_argument("--test-actors", default="23,24", help="actors held out for testing (default 23,24)")
    parser.add_argument("--actors", default=None, help="import only these actors, e.g. 07,21,23 (default: all)")
    parser.add_argument("--per-actor", type=int, default=None, help="import at most N files per actor (quick trials)")
    parser.add_argument(
        "--calm", choices=("neutral", "skip"), default="neutral", help="map RAVDESS 'calm' to neutral (default) or skip"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the label-derived instructions (default 0)")
    parser.add_argument("--clips-per-shard", type=int, default=64, help="clips per Parquet shard (default 64)")


def actor_number(text: str) -> int:
    """``"07"``, ``"7"`` or ``"Actor_07"`` -> 7."""
    m = re.search(r"(\d+)$", text.strip())
    if not m:
        raise AvitalkError(f"{text!r} is not an actor number (expected e.g. 07 or Actor_07)")
    return int(m.group(1))


def parse_name(stem: str) -> dict | str:
    """The RAVDESS fields of a file stem, or the reason the file is not a RAVDESS speech file."""
    m = NAME_RE.match(stem)
    if not m:
        return "name is not a RAVDESS identifier MM-VV-EE-II-SS-RR-AA"
    modality, channel, emo, inten, stmt, rep, actor = m.groups()
    if modality not in MODALITIES:
        return f"unknown modality {modality}"
    if channel != "01":
        return "vocal channel 02 is song, not speech" if channel == "02" else f"unknown vocal channel {channel}"
    if emo not in EMOTION_CODES:
        return f"unknown emotion code {emo}"
    if inten not in INTENSITY_CODES:
        return f"unknown intensity code {inten}"
    if stmt not in STATEMENTS:
        return f"unknown statement code {stmt}"
    if int(actor) < 1:
        return f"invalid actor number {actor}"
    ravdess_emotion, emotion = EMOTION_CODES[emo]
    intensity_name, level = INTENSITY_CODES[inten]
    return {
        "modality": MODALITIES[modality],
        "ravdess_emotion": ravdess_emotion,
        "emotion": emotion,
        "ravdess_intensity": intensity_name,
        "intensity": 1 if emotion == "neutral" else level,
        "statement": stmt,
        "repetition": int(rep),
        "actor": int(actor),
    }


def discover(src: Path) -> list[Path]:
    """Audio files under ``src`` (or ``src`` itself), sorted."""
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def run(src: Path, out: Path, args: argparse.Namespace) -> ImportSummary:
    """Import the RAVDESS speech files under ``src`` into the corpus at ``out``."""
    summary = ImportSummary(kind=SOURCE)
    val = {actor_number(a) for a in parse_list(args.val_actors)}
    test = {actor_number(a) for a in parse_list(args.test_actors)}
    if val & test:
        raise AvitalkError(f"actors {sorted(val & test)} are in both --val-actors and --test-actors")
    only = {actor_number(a) for a in parse_list(args.actors)} if args.actors else None
    options = {
        "val_actors": sorted(val),
        "test_actors": sorted(test),
        "calm": args.calm,
        "seed": args.seed,
        "intensity_map": {"normal": 2, "strong": 3, "neutral": 1},
    }
    generator = {
        "name": "avitalk.data.importers.ravdess",
        "avitalk": __version__,
        "options": options,
        "split_policy": dict(SPLIT_POLICY),
    }
    _guard_resume_options(out, options)
    files = discover(src)
    if not files:
        raise AvitalkError(f"{src}: no .wav or .flac files found (expected RAVDESS 03-01-EE-II-SS-RR-AA files)")
    writer = CorpusWriter(out, DEFAULT_SPACE, SOURCE, clips_per_shard=args.clips_per_shard, generator=generator)
    per_actor: dict[int, int] = {}
    seen: dict[str, str] = {}
    n_calm = 0
    root = src if src.is_dir() else src.parent
    for path in progress(files, desc=SOURCE):
        key = path.relative_to(root).as_posix()
        info = parse_name(path.stem)
        if isinstance(info, str):
            summary.skip(key, info)
            continue
        actor = info["actor"]
        if only is not None and actor not in only:
            continue
        if info["ravdess_emotion"] == "calm" and args.calm == "skip":
            summary.skip(key, "calm skipped (--calm skip)")
            continue
        if args.per_actor is not None and per_actor.get(actor, 0) >= args.per_actor:
            continue
        per_actor[actor] = per_actor.get(actor, 0) + 1
        clip_id = f"ravdess-{path.stem}"
        if clip_id in seen:
            summary.skip(key, f"same recording as {seen[clip_id]}")
            continue
        seen[clip_id] = key
        if writer.is_done(key):
            summary.already_done += 1
            continue
        try:
            audio = load_any_audio(path)
        except (AvitalkError, OSError, ValueError) as e:
            summary.skip(key, first_line(e).removeprefix(f"{path}: "))
            continue
        speaker = f"ravdess-actor{actor:02d}"
        gender = "male" if actor % 2 else "female"
        captions, _ = label_captions(info["emotion"], info["intensity"], gender, speaker, path.stem, seed=args.seed)
        split = "val" if actor in val else "test" if actor in test else "train"
        n_calm += info["ravdess_emotion"] == "calm"
        clip = Clip(
            clip_id=clip_id,
            speaker=speaker,
            gender=gender,
            emotion=info["emotion"],
            intensity=info["intensity"],
            transcript=STATEMENTS[info["statement"]],
            audio=audio,
            motion=None,
            instructions=captions,
            sentence_id=f"ravdess:statement{info['statement']}",
            split=split,
            source=SOURCE,
            extra={"ravdess": {"file": path.name, **info}, "instruction_source": "labels"},
        )
        writer.add(clip, key=key)
        summary.imported += 1
        summary.seconds += clip.duration
    writer.close()
    if n_calm:
        summary.notes.append(f"{n_calm} 'calm' clip(s) labelled neutral (MEAD has no calm)")
    summary.notes.append("split policy: disjoint by speaker, not by sentence (RAVDESS has two sentences)")
    return summary


def _guard_resume_options(out: Path, options: dict) -> None:
    """Refuse to add to a finished import of ``out`` made with other split/label options."""
    if not (out / "manifest.json").exists():
        return
    try:
        previous = Manifest.load(out).generator.get("options")
    except AvitalkError:
        return
    if previous is not None and previous != options:
        raise AvitalkError(
            f"{out} was imported with other options ({previous}); use the same options to resume or another --out"
        )
