"""``avitalk data import mead-emoca SRC --out DIR``: MEAD speech + per-frame FLAME fits (EMOCA / EMOTE).

MEAD (Wang et al. 2020) names every take ``<speaker>/<kind>/<emotion>/level_<n>/<NNN>``: speaker
``M003`` (man) or ``W009`` (woman), emotion folder ``angry, contempt, disgusted, fear, happy,
neutral, sad, surprised`` (``disgusted`` -> ``disgust``), level 1..3 (neutral: 1 only), sentence
number ``NNN``; audio ``M003/audio/angry/level_1/001.m4a`` (AAC, decoded with the bundled ffmpeg;
WAV/FLAC accepted too), video ``M003/video/front/angry/level_1/001.mp4`` (30 fps).

Fit layouts found under SRC (searched recursively; several may be mixed):

``emote-hdf5``
    EMOTE's processed MEAD (``mead_25fps/processed/reconstructions/EMICA-MEAD_flame2020``, as
    read by EMOTE-based code such as OccluFaceDiff's MEAD loaders)::

        <SPK>/<view>/<emotion>/level_<n>/<NNN>/shape_pose_cam.hdf5
            exp (1, T, 100)  jaw (1, T, 3)  global_pose (1, T, 3)  shape (1, T, 300)  cam (1, T, 3)

``emoca-frames``
    one folder per video frame with EMOCA's ``save_codes`` output (EMOCA
    ``gdl_apps/EMOCA/demos/test_emoca_on_video.py`` with ``--save_codes True``; frame folders are
    the face detections ``<frame:06d>_<detection:03d>``, frames numbered from 1 by ffmpeg)::

        .../<clip path>/.../EMOCA_v2_lr_mse_20/000001_000/{exp.npy (50|100,), pose.npy (6,), shape.npy, cam.npy}

    The clip is identified from the path: either one folder named like AVI-Talking's MEAD fits
    (``M012_front_neutral_level1_017``, audio ``<that folder>/M012_front_neutral_level1_017.wav``),
    or the MEAD tree ``<SPK>/.../<emotion>/level_<n>/<NNN>[.mp4]/...`` above the frame folders.

Only detection 000 of a frame is used; frames without a fit are zeros with ``motion_mask`` False.

Motion: the first 50 expression coefficients and the 3-d jaw pose (EMOCA ``pose.npy`` = global
rotation 0:3 + jaw 3:6; EMOTE ``jaw``) in the ``flame`` space; ``--space flame_neck`` adds the fit's
global head rotation as the neck pose. The source rate is inferred from the frame count and the
audio duration (snapped to 24/25/30/50/60 fps; EMOTE's fits are 25 fps, raw MEAD video 30 fps) or
given with ``--source-fps``, and resampled to 25 fps. Audio is looked up beside the fits
(AVI-Talking layout) or in the MEAD tree under ``--audio`` (default: SRC).

Sentence ids are ``mead:<emotion>:<level>:<NNN>`` (MEAD's sentence lists are per emotion; the text
comes from ``--transcripts`` when given). MEAD's speakers all read the same lists, so the splits
hold out speakers only and the manifest declares ``split_policy = {speaker: true, sentence: false}``.
Instructions are generated from the labels by the synthetic caption grammar (replace them with
MeadText captions via ``avitalk data import meadtext``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avitalk import __version__
from avitalk.data.format import Clip
from avitalk.data.importers import ImportSummary
from avitalk.data.importers._helpers import (
    find_audio,
    first_line,
    fit_motion_to_audio,
    label_captions,
    load_any_audio,
    parse_list,
    progress,
    snap_rate,
)
from avitalk.data.labels import EMOTIONS
from avitalk.data.writer import CorpusWriter
from avitalk.errors import AvitalkError
from avitalk.rates import AUDIO_SAMPLE_RATE
from avitalk.spaces import FLAME_N_EXPRESSION, FLAME_NECK, get_space

HELP = "MEAD audio + EMOCA/EMOTE per-frame FLAME fits (flame space) with label-derived instructions"

SOURCE = "mead-emoca"
#: MEAD emotion folder names -> avitalk emotions
MEAD_EMOTIONS: dict[str, str] = {e: e for e in EMOTIONS} | {"disgusted": "disgust", "surprise": "surprised"}
#: MEAD camera views
VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
#: Speakers of AVI-Talking's released training list (``train_diffusion_prior.py``); others default to test.
AVI_TALKING_TRAIN_SPEAKERS = (
    "M003", "M005", "M007", "M009", "M011", "M012", "M013", "M019", "M022", "M023", "M024", "M025", "M026",
    "M027", "M028", "M029", "M030", "M031", "W009", "W011", "W014", "W015", "W016", "W018", "W019", "W021",
    "W023", "W024", "W025", "W026", "W028", "W029",
)  # fmt: skip
SPLIT_POLICY = {"speaker": True, "sentence": False}
HDF5_NAME = "shape_pose_cam.hdf5"

_EMO = "|".join(sorted(MEAD_EMOTIONS, key=len, reverse=True))
_VIEW = "|".join(VIEWS)
#: ``M012_front_neutral_level1_017`` (AVI-Talking) or ``M003_front_angry_level_1_001`` (EMOTE ids)
FLAT_RE = re.compile(rf"^([MW]\d{{3}})_(?:({_VIEW})_)?({_EMO})_level_?([1-3])_(\d{{3}})(?:\.\w+)?$")
SPEAKER_RE = re.compile(r"^[MW]\d{3}$")
LEVEL_RE = re.compile(r"^level_?([1-3])$")
NUMBER_RE = re.compile(r"^(\d{3})(?:\.\w+)?$")
FRAME_RE = re.compile(r"^(\d+)(?:_(\d+))?$")


@dataclass(frozen=True)
class MeadId:
    """One MEAD take: speaker, camera view, emotion folder name, level, sentence number."""

    speaker: str
    view: str
    emotion_dir: str
    level: int
    number: str
    flat_dir: str | None = None  # relative folder named like the take (AVI-Talking layout), if any

    @property
    def emotion(self) -> str:
        return MEAD_EMOTIONS[self.emotion_dir]

    @property
    def intensity(self) -> int:
        return 1 if self.emotion == "neutral" else self.level

    @property
    def clip_id(self) -> str:
        return f"{self.speaker}_{self.view}_{self.emotion_dir}_level_{self.level}_{self.number}"

    @property
    def sentence_id(self) -> str:
        return f"mead:{self.emotion}:{self.level}:{self.number}"

    @property
    def gender(self) -> str:
        return "male" if self.speaker[0] == "M" else "female"


def parse_mead_path(parts: list[str] | tuple[str, ...]) -> MeadId | None:
    """Identify a MEAD take from path components (see the module docstring), or None."""
    for i, part in enumerate(parts):
        m = FLAT_RE.match(part)
        if m:
            spk, view, emo, level, num = m.groups()
            return MeadId(spk, view or "front", emo, int(level), num, str(Path(*parts[: i + 1])))
    for i, part in enumerate(parts):
        if not SPEAKER_RE.match(part):
            continue
        view = next((p for p in parts[i + 1 :] if p in VIEWS), "front")
        for j in range(i + 1, len(parts) - 2):
            if parts[j] in MEAD_EMOTIONS:
                lm, nm = LEVEL_RE.match(parts[j + 1]), NUMBER_RE.match(parts[j + 2])
                if lm and nm:
                    return MeadId(part, view, parts[j], int(lm.group(1)), nm.group(1))
    return None


def parse_mead_name(text: str) -> MeadId | None:
    """Identify a MEAD take from a name or path string (``M003_front_angry_level_1_001``, ``M003/.../001.m4a``)."""
    parts = [p for p in re.split(r"[\\/]", text.strip()) if p]
    return parse_mead_path(parts)


# ------------------------------------------------------------------------------------------ readers


@dataclass
class Fit:
    """Per-frame FLAME parameters of one take at the source rate."""

    exp: np.ndarray  # (T, >=50)
    jaw: np.ndarray  # (T, 3)
    head: np.ndarray  # (T, 3) global rotation
    valid: np.ndarray  # (T,) bool
    info: dict = field(default_factory=dict)


def read_emote_hdf5(path: Path) -> Fit:
    """Read EMOTE's ``shape_pose_cam.hdf5`` (datasets ``(1, T, K)`` or ``(T, K)``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("exp", "jaw") if k not in f]
            if missing:
                raise AvitalkError(f"lacks dataset(s) {', '.join(missing)}; expected exp, jaw, global_pose")
            arrays = {k: np.asarray(f[k][()], dtype=np.float32) for k in ("exp", "jaw", "global_pose") if k in f}
    except (OSError, ValueError, KeyError) as e:
        raise AvitalkError(f"not a readable HDF5 file: {first_line(e)}") from None
    arrays = {k: (a[0] if a.ndim == 3 else a) for k, a in arrays.items()}
    exp, jaw = arrays["exp"], arrays["jaw"]
    head = arrays.get("global_pose", np.zeros_like(jaw))
    if exp.ndim != 2 or jaw.ndim != 2 or jaw.shape[1] != 3 or head.shape != jaw.shape or exp.shape[0] != jaw.shape[0]:
        shapes = {k: a.shape for k, a in arrays.items()}
        raise AvitalkError(f"unexpected dataset shapes {shapes}; expected exp (1, T, K), jaw and global_pose (1, T, 3)")
    valid = np.isfinite(exp).all(axis=1) & np.isfinite(jaw).all(axis=1) & np.isfinite(head).all(axis=1)
    return Fit(exp, jaw, head, valid, {"layout": "emote-hdf5", "exp_dims": int(exp.shape[1])})


def read_emoca_frames(seq_dir: Path, frame_dirs: list[str]) -> Fit:
    """Stack EMOCA's per-frame ``exp.npy`` / ``pose.npy`` (detection 000 of each frame)."""
    numbered: dict[int, str] = {}
    for name in frame_dirs:
        m = FRAME_RE.match(name)
        if m and int(m.group(2) or 0) == 0:
            numbered[int(m.group(1))] = name
    if not numbered:
        raise AvitalkError("no frame folders named <frame>_000 with exp.npy")
    base = 0 if 0 in numbered else 1  # ffmpeg numbers extracted frames from 1
    n = max(numbered) - base + 1
    exp_rows: dict[int, np.ndarray] = {}
    pose_rows: dict[int, np.ndarray] = {}
    for number, name in numbered.items():
        d = seq_dir / name
        try:
            e = np.load(d / "exp.npy", allow_pickle=False).astype(np.float32).reshape(-1)
            p = np.load(d / "pose.npy", allow_pickle=False).astype(np.float32).reshape(-1)
        except (OSError, ValueError, EOFError) as err:
            raise AvitalkError(f"frame {name}: {first_line(err)}") from None
        if p.shape[0] < 6:
            raise AvitalkError(f"frame {name}: pose.npy has {p.shape[0]} values, expected 6 (global 3 + jaw 3)")
        exp_rows[number - base], pose_rows[number - base] = e, p
    dims = {r.shape[0] for r in exp_rows.values()}
    if len(dims) != 1:
        raise AvitalkError(f"exp.npy sizes differ between frames: {sorted(dims)}")
    k = dims.pop()
    exp = np.zeros((n, k), np.float32)
    pose = np.zeros((n, 6), np.float32)
    valid = np.zeros(n, bool)
    for t, e in exp_rows.items():
        exp[t], pose[t], valid[t] = e, pose_rows[t][:6], True
    valid &= np.isfinite(exp).all(axis=1) & np.isfinite(pose).all(axis=1)
    info = {"layout": "emoca-frames", "exp_dims": k, "missing_frames": int(n - valid.sum())}
    return Fit(exp, pose[:, 3:6], pose[:, 0:3], valid, info)


def fit_to_motion(fit: Fit, neck: bool) -> np.ndarray:
    """``(T, 53)`` flame (or ``(T, 56)`` flame_neck) values of a fit."""
    if fit.exp.shape[1] < FLAME_N_EXPRESSION:
        raise AvitalkError(f"fit has {fit.exp.shape[1]} expression coefficients, the flame space needs 50")
    parts = [fit.exp[:, :FLAME_N_EXPRESSION], fit.jaw] + ([fit.head] if neck else [])
    out = np.concatenate(parts, axis=1).astype(np.float32)
    out[~fit.valid] = 0.0
    return out


# ---------------------------------------------------------------------------------------- discovery


@dataclass
class Source:
    key: str  # path relative to SRC (the resume key)
    path: Path  # hdf5 file or folder holding the frame folders
    layout: str
    frame_dirs: list[str] = field(default_factory=list)


def discover(src: Path) -> list[Source]:
    """Every fit under ``src``: EMOTE hdf5 files and folders of EMOCA frame folders, sorted."""
    found: list[Source] = []
    if src.is_file():
        return [Source(src.name, src, "emote-hdf5")] if src.name == HDF5_NAME else []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        d = Path(dirpath)
        if HDF5_NAME in filenames:
            found.append(Source((d / HDF5_NAME).relative_to(src).as_posix(), d / HDF5_NAME, "emote-hdf5"))
        frames = [n for n in dirnames if FRAME_RE.match(n) and (d / n / "exp.npy").is_file()]
        if frames:
            found.append(Source(d.relative_to(src).as_posix() or ".", d, "emoca-frames", frames))
            dirnames[:] = [n for n in dirnames if n not in set(frames)]
    return sorted(found, key=lambda s: s.key)


def audio_for(mid: MeadId, src: Path, audio_root: Path) -> Path | None:
    """The take's audio: beside an AVI-Talking style fit folder, else in the MEAD tree under ``audio_root``."""
    if mid.flat_dir:
        folder = src / mid.flat_dir
        hit = find_audio(folder / folder.name)
        if hit:
            return hit
    for emo in dict.fromkeys([mid.emotion_dir, *(k for k, v in MEAD_EMOTIONS.items() if v == mid.emotion)]):
        for level in (f"level_{mid.level}", f"level{mid.level}"):
            hit = find_audio(audio_root / mid.speaker / "audio" / emo / level / mid.number)
            if hit:
                return hit
    return None


# ----------------------------------------------------------------------------------------------- run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--audio", default=None, help="MEAD root with <SPK>/audio/<emotion>/level_<n>/<NNN>.m4a (default: SRC)"
    )
    parser.add_argument(
        "--space", choices=("flame", "flame_neck"), default="flame", help="motion space (default flame)"
    )
    parser.add_argument(
        "--source-fps", default="auto", help="frame rate of the fits, or 'auto' (default: from audio duration)"
    )
    parser.add_argument("--val-speakers", default="", help="speakers held out for validation, e.g. M003,W009")
    parser.add_argument(
        "--test-speakers",
        default="auto",
        help="speakers held out for testing; 'auto' (default): those not in AVI-Talking's 32 training speakers",
    )
    parser.add_argument("--transcripts", default=None, help="JSON {clip id | sentence id | emotion/level_n/NNN: text}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the label-derived instructions (default 0)")
    parser.add_argument("--clips-per-shard", type=int, default=32, help="clips per Parquet shard (default 32)")


def _load_transcripts(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AvitalkError(f"{p}: cannot read transcripts JSON: {first_line(e)}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise AvitalkError(f"{p}: transcripts must be a JSON object of strings")
    return data


def _split_of(speaker: str, val: set[str], test: set[str] | None) -> str:
    if speaker in val:
        return "val"
    if test is None:
        return "train" if speaker in AVI_TALKING_TRAIN_SPEAKERS else "test"
    return "test" if speaker in test else "train"


def run(src: Path, out: Path, args: argparse.Namespace) -> ImportSummary:
    """Import the MEAD fits under ``src`` (audio from ``--audio`` or beside the fits) into ``out``."""
    summary = ImportSummary(kind=SOURCE)
    space = get_space(args.space)
    neck = space == FLAME_NECK
    audio_root = Path(args.audio) if args.audio else (src if src.is_dir() else src.parent)
    if not audio_root.is_dir():
        raise AvitalkError(f"{audio_root}: --audio is not a directory")
    fixed_fps = None if str(args.source_fps).lower() == "auto" else float(args.source_fps)
    if fixed_fps is not None and not fixed_fps > 0:
        raise AvitalkError(f"--source-fps must be positive or 'auto', got {args.source_fps}")
    val = set(parse_list(args.val_speakers))
    test = None if args.test_speakers.strip().lower() == "auto" else set(parse_list(args.test_speakers))
    if test is not None and val & test:
        raise AvitalkError(f"speakers {sorted(val & test)} are in both --val-speakers and --test-speakers")
    transcripts = _load_transcripts(args.transcripts)
    sources = discover(src)
    if not sources:
        raise AvitalkError(
            f"{src}: no fits found (expected EMOTE <SPK>/front/<emotion>/level_<n>/<NNN>/{HDF5_NAME} "
            "or EMOCA frame folders <frame>_000/exp.npy)"
        )
    if any(s.layout == "emote-hdf5" for s in sources):
        try:
            import h5py  # noqa: F401
        except ModuleNotFoundError:
            raise AvitalkError("reading EMOTE .hdf5 fits needs h5py: pip install h5py") from None
    generator = {
        "name": "avitalk.data.importers.mead",
        "avitalk": __version__,
        "options": {"space": space.key, "source_fps": args.source_fps, "val_speakers": sorted(val),
                    "test_speakers": "auto" if test is None else sorted(test), "seed": args.seed},
        "split_policy": dict(SPLIT_POLICY),
    }  # fmt: skip
    writer = CorpusWriter(out, space, SOURCE, clips_per_shard=args.clips_per_shard, generator=generator)
    used: dict[str, str] = {}
    root = src if src.is_dir() else src.parent
    for source in progress(sources, desc=SOURCE):
        rel_parts = Path(source.key).parts
        mid = parse_mead_path(rel_parts) or parse_mead_path(source.path.resolve().parts)
        if mid is None:
            summary.skip(source.key, "path does not name a MEAD take (<SPK>/.../<emotion>/level_<n>/<NNN>)")
            continue
        if mid.clip_id in used:
            summary.skip(source.key, f"another fit of {mid.clip_id} was used ({used[mid.clip_id]})")
            continue
        used[mid.clip_id] = source.key
        if writer.is_done(source.key):
            summary.already_done += 1
            continue
        audio_path = audio_for(mid, root, audio_root)
        if audio_path is None:
            where = audio_root / mid.speaker / "audio" / mid.emotion_dir / f"level_{mid.level}" / f"{mid.number}.m4a"
            summary.skip(source.key, f"no audio found for {mid.clip_id} (looked for {where})")
            continue
        try:
            if source.layout == "emote-hdf5":
                fit = read_emote_hdf5(source.path)
            else:
                fit = read_emoca_frames(source.path, source.frame_dirs)
            values = fit_to_motion(fit, neck)
        except (AvitalkError, OSError, ValueError) as e:
            summary.skip(source.key, first_line(e))
            continue
        try:
            audio = load_any_audio(audio_path)
        except (AvitalkError, OSError, ValueError) as e:
            summary.skip(source.key, f"audio {audio_path.name}: {first_line(e).removeprefix(f'{audio_path}: ')}")
            continue
        try:
            src_fps = fixed_fps or snap_rate(values.shape[0], audio.shape[0] / AUDIO_SAMPLE_RATE)
            if src_fps is None:
                raise AvitalkError(
                    f"{values.shape[0]} frames do not fit {audio.shape[0] / AUDIO_SAMPLE_RATE:.2f} s of audio at a "
                    "standard frame rate; pass --source-fps"
                )
            fitted = fit_motion_to_audio(values, src_fps, audio, valid=fit.valid)
        except AvitalkError as e:
            summary.skip(source.key, first_line(e))
            continue
        captions, _ = label_captions(mid.emotion, mid.intensity, mid.gender, mid.speaker, mid.clip_id, seed=args.seed)
        transcript = next(
            (transcripts[k] for k in (mid.clip_id, mid.sentence_id, f"{mid.emotion_dir}/level_{mid.level}/{mid.number}")
             if k in transcripts), "",
        )  # fmt: skip
        clip = Clip(
            clip_id=mid.clip_id,
            speaker=mid.speaker,
            gender=mid.gender,
            emotion=mid.emotion,
            intensity=mid.intensity,
            transcript=transcript,
            audio=fitted.audio,
            motion=fitted.motion,
            motion_mask=fitted.mask,
            instructions=captions,
            sentence_id=mid.sentence_id,
            split=_split_of(mid.speaker, val, test),
            source=SOURCE,
            extra={
                "mead": {"speaker": mid.speaker, "view": mid.view, "emotion": mid.emotion_dir, "level": mid.level,
                         "number": mid.number},
                "fit": {**fit.info, "path": source.key, "source_fps": src_fps, "frames": int(values.shape[0])},
                "audio_file": audio_path.name,
                "cropped_seconds": fitted.cropped_seconds,
                "instruction_source": "labels",
            },
        )  # fmt: skip
        writer.add(clip, key=source.key)
        summary.imported += 1
        summary.seconds += clip.duration
    writer.close()
    if test is None:
        summary.notes.append("test split: speakers outside AVI-Talking's 32 training speakers (--test-speakers auto)")
    summary.notes.append("split policy: disjoint by speaker, not by sentence (MEAD speakers share sentence lists)")
    return summary
