"""``avitalk data import livelink SRC --out DIR``: Live Link Face (iPhone ARKit) takes as arkit52 clips.

Take layout (Epic's Live Link Face app, ARKit mode; file names as in Epic's take ingest code,
``FLiveLinkFaceTakeMetadata``: prefix ``<slate>_<take>_<subject>``)::

    <take folder>/
        take.json  video_metadata.json  audio_metadata.json  frame_log.csv  thumbnail.jpg
        MySlate_3_iPhone.mov        the reference video with the take's sound
        MySlate_3_iPhone.csv        blendshapes (uncalibrated take), or, for a calibrated take:
        MySlate_3_iPhone_cal.csv    calibrated blendshapes (preferred)
        MySlate_3_iPhone_raw.csv    uncalibrated blendshapes (used when there is no _cal/plain CSV)
        MySlate_3_iPhone_neutral.csv  the neutral pose (ignored)

SRC may be one CSV, one take folder or a folder of takes (searched recursively). Any
``NAME.csv`` with a same-stem ``NAME.wav/.flac/.m4a/.mov/.mp4`` beside it is accepted too; sound
is taken from the ``.mov`` with the bundled ffmpeg when there is no audio file.

CSV columns (``Timecode, BlendShapeCount``, the 52 blendshapes, ``HeadYaw, HeadPitch, HeadRoll``,
six eye rotations) are read by :func:`avitalk.motionio.load_arkit_csv`. The frame rate is
``--fps``, else ``FrameRate`` of the take's ``video_metadata.json``, else inferred from the
timecodes; the motion is resampled to 25 fps and cut to the length of the audio.

Head rotation units: Epic's ARKit face code (``AppleARKitFaceSupport``: ``HeadYaw = Rotator.Yaw /
180``, "Map the -180..180 range to -1..1") writes ``HeadYaw/HeadPitch/HeadRoll`` **normalised**
(1 = 180 degrees); ``load_arkit_csv`` (and avitalk's own ARKit CSV export) follow that, and this
importer reads them so by default (``--head-units normalized``). For CSVs from tools that write
radians, use ``--head-units radians``.

Labels: emotion ``unknown`` and intensity 0 unless ``--emotion``/``--intensity`` are given. The
instruction is ``--instruction`` or a MeadText-style description of the facial actions measured
on the take (the synthetic grammar's action phrases, from the strongest blendshape groups).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from avitalk import __version__
from avitalk.data.format import Clip
from avitalk.data.importers import ImportSummary
from avitalk.data.importers._helpers import (
    find_audio,
    first_line,
    fit_motion_to_audio,
    load_any_audio,
    progress,
    stable_seed,
)
from avitalk.data.labels import EMOTIONS, INTENSITIES, UNKNOWN
from avitalk.data.synth.captions import (
    EMOTION_WORDS,
    INTENSITY_WORDS,
    action_phrase,
    augment,
    caption_actions,
    fix_articles,
    make_captions,
)
from avitalk.data.synth.style import ACTIONS, ClipStyle, speaker_style
from avitalk.data.writer import CorpusWriter
from avitalk.errors import AvitalkError
from avitalk.motionio import load_arkit_csv
from avitalk.spaces import ARKIT52

HELP = "Live Link Face takes (ARKit CSV + the take's .mov/.wav) as arkit52 clips"

SOURCE = "livelink"
AUDIO_EXTS = (".wav", ".flac", ".m4a", ".mov", ".mp4")
IGNORED_CSV = ("frame_log.csv",)
HEAD = ("headPitch", "headYaw", "headRoll")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fps", type=float, default=None, help="CSV frame rate (default: video_metadata.json or timecodes)"
    )
    parser.add_argument(
        "--head-units",
        choices=("normalized", "radians"),
        default="normalized",
        help="HeadYaw/Pitch/Roll in the CSV: normalized = degrees/180 as Live Link Face writes (default), or radians",
    )
    parser.add_argument("--speaker", default="livelink", help="speaker id of every take (default 'livelink')")
    parser.add_argument("--gender", choices=("male", "female", "unknown"), default="unknown", help="speaker gender")
    parser.add_argument("--emotion", choices=(*EMOTIONS, UNKNOWN), default=UNKNOWN, help="emotion label of every take")
    parser.add_argument(
        "--intensity", type=int, choices=(1, 2, 3), default=None, help="intensity 1..3 (with --emotion)"
    )
    parser.add_argument("--instruction", default=None, help="instruction text for every take (default: measured)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train", help="split of every take")
    parser.add_argument("--clips-per-shard", type=int, default=16, help="clips per Parquet shard (default 16)")


# ---------------------------------------------------------------------------------------- discovery


def _prefix(stem: str) -> str:
    for suffix in ("_cal", "_raw"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def discover(src: Path) -> list[Path]:
    """The blendshape CSV of every take under ``src`` (``_cal`` > plain > ``_raw``; ``_neutral`` ignored)."""
    if src.is_file():
        return [src]
    chosen: dict[Path, Path] = {}
    rank = {"_cal": 0, "": 1, "_raw": 2}
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() != ".csv" or not p.is_file() or p.name in IGNORED_CSV or p.stem.endswith("_neutral"):
            continue
        prefix = p.with_name(_prefix(p.stem))
        kind = p.stem[len(prefix.name) :]
        if prefix not in chosen or rank[kind] < rank[chosen[prefix].stem[len(prefix.name) :]]:
            chosen[prefix] = p
    return sorted(chosen.values())


def take_fps(csv_path: Path) -> float | None:
    """``FrameRate`` of the take's ``video_metadata.json``, if there is a readable one."""
    meta = csv_path.parent / "video_metadata.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    for k in ("FrameRate", "frameRate", "fps"):
        v = data.get(k) if isinstance(data, dict) else None
        if isinstance(v, int | float) and math.isfinite(v) and v > 0:
            return float(v)
    return None


# ---------------------------------------------------------------------------------------- captions


def _channels(pattern: str, side: int) -> list[str]:
    if pattern.endswith("*"):
        return [pattern[:-1] + "Left", pattern[:-1] + "Right"]
    if pattern.endswith("<"):
        return [pattern[:-1] + ("Left" if side > 0 else "Right")]
    return [pattern]


def measure_actions(values: np.ndarray) -> tuple[dict[str, float], int]:
    """Facial-action weights in [0, 1] measured on ``(T, 55)`` arkit52 values, and the dominant side.

    Each expression action of :data:`~avitalk.data.synth.style.ACTIONS` gets the least-squares
    weight of its channel pattern in every frame (one-sided actions: the excess of the dominant
    side over the other); the clip's weight is the 60th percentile over frames (``jaw_drop``: the
    10th, since the jaw also opens with speech). Behaviours: ``mouth_open`` from ``jawOpen``,
    ``brow_accent`` from brow-raise variability, ``head_motion`` from head-rotation variability.
    """
    col = {c: i for i, c in enumerate(ARKIT52.channels)}
    left = values[:, col["mouthSmileLeft"]].mean() + values[:, col["mouthDimpleLeft"]].mean()
    right = values[:, col["mouthSmileRight"]].mean() + values[:, col["mouthDimpleRight"]].mean()
    side = 1 if left >= right else -1
    weights: dict[str, float] = {}
    for action, pattern in ACTIONS.items():
        if any(p.startswith("head") for p in pattern):
            continue
        cols, w = [], []
        for p, weight in pattern.items():
            for c in _channels(p, side):
                cols.append(values[:, col[c]])
                if p.endswith("<"):  # one-sided: only the excess over the other side counts
                    cols[-1] = cols[-1] - values[:, col[_channels(p, -side)[0]]]
                w.append(weight)
        wv = np.asarray(w, np.float32)
        per_frame = np.stack(cols, axis=1) @ wv / float(wv @ wv)
        # a held expression is there most of the time; the jaw also moves with speech, so take its floor
        weights[action] = float(np.clip(np.percentile(per_frame, 10 if action == "jaw_drop" else 60), 0.0, 1.0))
    actions = dict(sorted(weights.items(), key=lambda kv: -kv[1]))
    brows = values[:, [col["browInnerUp"], col["browOuterUpLeft"], col["browOuterUpRight"]]].mean(axis=1)
    head = values[:, [col[c] for c in HEAD]]
    actions["mouth_open"] = float(np.clip((np.percentile(values[:, col["jawOpen"]], 90) - 0.05) / 0.4, 0.0, 1.0))
    actions["brow_accent"] = float(np.clip(brows.std() / 0.12, 0.0, 1.0))
    actions["head_motion"] = float(np.clip(np.linalg.norm(head.std(axis=0)) / 0.12, 0.0, 1.0))
    return actions, side


WHO = {"male": "a man", "female": "a woman", "unknown": "a person"}
FRAMES = (
    "{Who} {feels}speaks with {acts}.",
    "{Who} {feels}talks with {acts}.",
    "With {acts}, {who} {feels_short}speaks.",
)


def describe(values: np.ndarray, emotion: str, intensity: int, gender: str, speaker: str, key: str) -> list[str]:
    """MeadText-style instructions of a take from its measured actions (and its labels, when known)."""
    measured, side = measure_actions(values)
    known = emotion != UNKNOWN
    style = ClipStyle(
        emotion=emotion if known else "neutral",
        intensity=intensity if known else 1,
        speaker=speaker_style(speaker, 0),
        actions=measured,
        side=side,
    )
    rng = np.random.default_rng(stable_seed(key))
    if known and gender in ("male", "female"):
        return make_captions(style, gender, rng, n=3)
    acts = [action_phrase(a, lvl) for a, lvl in caption_actions(style)]
    joined = acts[0] if len(acts) == 1 else ", ".join(acts[:-1]) + " and " + acts[-1]
    feels = feels_short = ""
    if known:
        adjective = EMOTION_WORDS[emotion][0]
        phrase = adjective if emotion == "neutral" else f"{INTENSITY_WORDS[intensity][0]} {adjective}"
        feels, feels_short = f"feels {phrase} and ", f"looks {phrase} and "
    who = WHO[gender]
    texts = [
        fix_articles(f.format(Who=who.capitalize(), who=who, acts=joined, feels=feels, feels_short=feels_short))
        for f in FRAMES
    ]
    return [texts[0]] + [augment(t, rng) for t in texts[1:]]


# ----------------------------------------------------------------------------------------------- run


def run(src: Path, out: Path, args: argparse.Namespace) -> ImportSummary:
    """Import the Live Link Face takes under ``src`` into the arkit52 corpus at ``out``."""
    summary = ImportSummary(kind=SOURCE)
    emotion = args.emotion
    if emotion == UNKNOWN:
        if args.intensity is not None:
            raise AvitalkError("--intensity needs --emotion")
        intensity = 0
    else:
        intensity = 1 if emotion == "neutral" else (args.intensity or 2)
        if intensity not in INTENSITIES[emotion]:
            raise AvitalkError(f"intensity {intensity} is not valid for {emotion} (neutral: 1)")
    csvs = discover(src)
    if not csvs:
        raise AvitalkError(f"{src}: no Live Link Face CSV files found")
    generator = {
        "name": "avitalk.data.importers.livelink",
        "avitalk": __version__,
        "options": {"head_units": args.head_units, "fps": args.fps, "speaker": args.speaker, "split": args.split},
    }
    writer = CorpusWriter(out, ARKIT52, SOURCE, clips_per_shard=args.clips_per_shard, generator=generator)
    root = src if src.is_dir() else src.parent
    head_idx = [ARKIT52.index(c) for c in HEAD]
    for csv_path in progress(csvs, desc=SOURCE):
        key = csv_path.relative_to(root).as_posix()
        if writer.is_done(key):
            summary.already_done += 1
            continue
        stem = csv_path.with_name(_prefix(csv_path.stem))
        audio_path = find_audio(stem, AUDIO_EXTS)
        if audio_path is None:
            summary.skip(key, f"no audio or video beside it (looked for {stem.name}{{{','.join(AUDIO_EXTS)}}})")
            continue
        try:
            fps = args.fps or take_fps(csv_path)
            motion = load_arkit_csv(csv_path, fps=fps)
        except (AvitalkError, OSError, ValueError) as e:
            summary.skip(key, first_line(e).removeprefix(f"{csv_path}: "))
            continue
        try:
            audio = load_any_audio(audio_path)
        except (AvitalkError, OSError, ValueError) as e:
            summary.skip(key, f"audio {audio_path.name}: {first_line(e).removeprefix(f'{audio_path}: ')}")
            continue
        values = motion.values.copy()
        if args.head_units == "radians":  # load_arkit_csv assumed normalised values and multiplied by pi
            values[:, head_idx] /= np.float32(math.pi)
        try:
            fitted = fit_motion_to_audio(values, motion.fps, audio)
        except AvitalkError as e:
            summary.skip(key, first_line(e))
            continue
        clip_id = "livelink-" + key.removesuffix(csv_path.suffix).replace("/", "-")
        if args.instruction:
            instructions, how = [args.instruction.strip()], "given"
        else:
            instructions = describe(fitted.motion, emotion, intensity, args.gender, args.speaker, clip_id)
            how = "measured"
        clip = Clip(
            clip_id=clip_id,
            speaker=args.speaker,
            gender=args.gender,
            emotion=emotion,
            intensity=intensity,
            transcript="",
            audio=fitted.audio,
            motion=fitted.motion,
            instructions=instructions,
            sentence_id=clip_id,
            split=args.split,
            source=SOURCE,
            extra={
                "livelink": {"csv": key, "audio": audio_path.name, "source_fps": motion.fps,
                             "head_units": args.head_units},
                "cropped_seconds": fitted.cropped_seconds,
                "instruction_source": how,
            },
        )  # fmt: skip
        writer.add(clip, key=key)
        summary.imported += 1
        summary.seconds += clip.duration
    writer.close()
    summary.notes.append(f"head rotations read as {args.head_units} (see --head-units)")
    return summary


__all__ = ["add_arguments", "describe", "discover", "measure_actions", "run"]
