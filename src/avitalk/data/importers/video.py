"""``avitalk data import video SRC --out DIR``: talking-face videos -> audio + estimated ``arkit52`` motion.

Any video with a sound track (mp4, mov, mkv, mpg, mpeg, avi, webm, m4v; SRC is one file or a
directory searched recursively) becomes one clip:

* **audio**: the first audio track, downmixed and resampled to 16 kHz mono;
* **motion**: per video frame, MediaPipe's Face Landmarker (VIDEO mode, the model file given by
  ``--model``) estimates 51 ARKit blendshape weights (``tongueOut`` stays 0) and the facial
  transformation matrix, converted to head pitch/yaw/roll in avitalk's convention
  (:func:`.video_track.matrix_to_head_angles`). This is the role EMOCA plays in the paper. The track
  is resampled from the video's rate to 25 fps interpolating valid frames only
  (:func:`.video_track.resample_masked`), optionally smoothed (``--smooth``), and padded/cropped by
  at most :data:`MAX_PAD_FRAMES` at the end to cover the audio (a longer audio track is cut to the
  picture);
* **mask**: frames without a face are zeros with ``motion_mask`` False, counted per clip in the
  summary and in the clip's ``extra_json`` (``face_frames``, ``no_face_frames``); clips with a face
  in fewer than ``--min-face`` of their frames are skipped;
* **labels**: speaker from ``--speaker-from``, gender ``--gender`` (default ``unknown``), emotion
  ``unknown`` with intensity 0 unless ``--emotion``/``--intensity`` are given, transcript from a
  same-stem ``.txt`` beside the video (its normalised text is the sentence id; without one the
  clip id is), split from ``--split`` or per speaker from ``--val-speakers``/``--test-speakers``;
* **instructions**: a MeadText-style caption of the measured activity (:mod:`.video_caption`, a
  heuristic) plus two synonym paraphrases.

Videos are processed in ``--workers`` processes (each with its own landmarker; inside one video,
decoding runs in a thread ahead of landmarking) and written in input order through
:class:`~avitalk.data.writer.CorpusWriter`, so a rerun resumes: videos already written are counted
as ``already_done`` and skipped. A video ffmpeg cannot read is reported by name and skipped (and
retried on the next run); one without sound or without a face is skipped and remembered as done.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import multiprocessing.queues
import os
import queue
import re
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avitalk.data.format import Clip
from avitalk.data.importers import ImportSummary
from avitalk.data.importers.video_decode import (
    DEFAULT_MAX_SIDE,
    VIDEO_EXTENSIONS,
    VideoReadError,
    iter_frames,
    prefetch,
    probe_video,
    read_audio,
)
from avitalk.data.importers.video_track import NOT_ESTIMATED, fit_length, resample_masked, smooth_masked
from avitalk.data.labels import EMOTIONS, INTENSITIES, UNKNOWN
from avitalk.data.writer import CorpusWriter
from avitalk.errors import AvitalkError
from avitalk.rates import AUDIO_SAMPLE_RATE, MOTION_FPS, frames_for_samples
from avitalk.spaces import ARKIT52

HELP = "talking-face videos with sound (mp4, mov, mkv, mpg, ...): 16 kHz audio + arkit52 estimated by MediaPipe"

SOURCE = "video"
MAX_PAD_FRAMES = 2
"""Most motion frames repeated at the end to cover the audio; a longer audio track is cut instead."""
ESTIMATOR = "mediapipe-face-landmarker"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="MediaPipe Face Landmarker bundle with blendshapes (face_landmarker.task / "
        "face_landmarker_v2_with_blendshapes.task); see docs/importers.md",
    )
    parser.add_argument("--workers", type=int, default=2, help="videos processed in parallel (default 2)")
    parser.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="zero-phase Gaussian smoothing of the motion, kernel std in seconds (default 0: off; e.g. 0.02)",
    )
    parser.add_argument(
        "--speaker-from",
        default="dir",
        metavar="dir|file|NAME",
        help="speaker id: the video's parent directory name (dir, default), its file stem (file), or NAME",
    )
    parser.add_argument("--gender", default="unknown", choices=("male", "female", "unknown"), help="default unknown")
    parser.add_argument("--emotion", default=None, choices=EMOTIONS, help="emotion of every clip, if known")
    parser.add_argument("--intensity", type=int, default=None, choices=(1, 2, 3), help="its level (default 2)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"), help="default train")
    parser.add_argument("--val-speakers", default="", metavar="A,B", help="speakers put in val (overrides --split)")
    parser.add_argument("--test-speakers", default="", metavar="C,D", help="speakers put in test (overrides --split)")
    parser.add_argument(
        "--min-face",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="skip videos with a face in fewer than this fraction of frames (default 0.5)",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help=f"downscale larger frames to this (default {DEFAULT_MAX_SIDE})",
    )
    parser.add_argument("--clips-per-shard", type=int, default=16, help="clips per Parquet shard (default 16)")


# --------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class VideoJob:
    """One source video and everything a worker needs to turn it into a clip."""

    path: str
    key: str  # source key in the writer's state: the path relative to SRC (the file name for a file SRC)
    clip_id: str
    model: str
    smooth: float = 0.0
    max_side: int = DEFAULT_MAX_SIDE


@dataclass
class VideoResult:
    """What a worker returns for one :class:`VideoJob`.

    ``audio`` is ``(N,)`` float32 16 kHz; ``motion`` ``(T, 55)`` float32 at 25 fps with
    ``T = round(N * 25 / 16000)``; ``mask`` ``(T,)`` bool. On failure ``error`` holds the reason and
    ``permanent`` says whether rerunning could help (False: e.g. an unreadable file).
    """

    job: VideoJob
    audio: np.ndarray | None = None
    motion: np.ndarray | None = None
    mask: np.ndarray | None = None
    stats: dict = field(default_factory=dict)
    error: str | None = None
    permanent: bool = False
    video_frames: int = 0


def find_videos(src: Path) -> list[tuple[Path, str]]:
    """``(path, key)`` of every video under ``src`` (sorted; hidden files skipped), or of ``src`` itself."""
    if src.is_file():
        return [(src, src.name)]
    found = [
        p
        for p in src.rglob("*")
        if p.suffix.lower() in VIDEO_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
    ]
    return [(p, p.relative_to(src).as_posix()) for p in sorted(found)]


def clip_ids(keys: Sequence[str]) -> list[str]:
    """Unique clip ids from source keys: the path without suffix, ``/`` -> ``_`` (suffix kept on clashes)."""
    base = [re.sub(r"\s+", "_", Path(k).with_suffix("").as_posix().replace("/", "_")) for k in keys]
    counts: dict[str, int] = {}
    for b in base:
        counts[b] = counts.get(b, 0) + 1
    return [
        b if counts[b] == 1 else f"{b}_{Path(k).suffix.lstrip('.').lower()}" for b, k in zip(base, keys, strict=True)
    ]


def speaker_of(path: Path, how: str) -> str:
    """Speaker id per ``--speaker-from``: ``dir`` (parent directory name), ``file`` (stem) or a literal name."""
    if how == "dir":
        return path.absolute().parent.name or "unknown"
    if how == "file":
        return path.stem
    return how


def read_transcript(path: Path) -> str:
    """Text of a same-stem ``.txt`` beside the video (whitespace collapsed), or ``""``."""
    for cand in (path.with_suffix(".txt"), path.with_suffix(".TXT")):
        if cand.is_file():
            try:
                return " ".join(cand.read_text(encoding="utf-8", errors="replace").split())
            except OSError:
                return ""
    return ""


def sentence_id(transcript: str, clip_id: str) -> str:
    """``txt-<hash of the normalised transcript>`` (same words -> same id), or ``clip_id`` without one."""
    norm = " ".join(re.sub(r"[^\w\s']", " ", transcript.lower()).split())
    if not norm:
        return clip_id
    return "txt-" + hashlib.sha256(norm.encode()).hexdigest()[:12]


def _parse_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# ------------------------------------------------------------------------------------------- worker


def process_video(job: VideoJob, progress: Callable[[int], None] | None = None) -> VideoResult:
    """Audio, 25 fps motion and mask of one video (runs in a worker process).

    Per-file problems come back in :attr:`VideoResult.error`; model or environment problems raise
    :class:`AvitalkError` (they would affect every video).
    """
    from avitalk.data.importers.video_landmarks import estimate_track

    path = Path(job.path)
    try:
        info = probe_video(path)
        if info.audio_stream is None:
            return VideoResult(job, error="no audio track", permanent=True)
        audio = read_audio(path, info)
        if audio.shape[0] < AUDIO_SAMPLE_RATE // MOTION_FPS:
            return VideoResult(job, error="the audio track is empty", permanent=True)
        raw = estimate_track(prefetch(iter_frames(path, info, job.max_side)), info.fps, job.model, progress)
    except VideoReadError as e:
        return VideoResult(job, error=str(e).replace(f"{path}: ", ""), permanent=False)
    t_video = raw.mask.shape[0]
    face_video = int(raw.mask.sum())
    if face_video == 0:
        return VideoResult(job, error=f"no face found in any of {t_video} frames", permanent=True, video_frames=t_video)

    motion, mask = resample_masked(raw.values, raw.mask, info.fps, MOTION_FPS)  # (T, 55), (T,)
    n_audio = frames_for_samples(audio.shape[0])
    stats: dict = {}
    if n_audio > motion.shape[0] + MAX_PAD_FRAMES:  # picture ends first: cut the sound
        keep = round(motion.shape[0] * AUDIO_SAMPLE_RATE / MOTION_FPS)
        stats["audio_cut_s"] = round((audio.shape[0] - keep) / AUDIO_SAMPLE_RATE, 3)
        audio = audio[:keep]
        n_audio = frames_for_samples(audio.shape[0])
    elif motion.shape[0] > n_audio + MAX_PAD_FRAMES:
        stats["motion_cut_frames"] = int(motion.shape[0] - n_audio)
    motion, mask = fit_length(motion, mask, n_audio)
    if job.smooth > 0:
        motion = smooth_masked(motion, mask, MOTION_FPS, job.smooth)
    stats.update(
        video_fps=round(info.fps, 4),
        video_frames=t_video,
        video_face_frames=face_video,
        face_frames=int(mask.sum()),
        no_face_frames=int((~mask).sum()),
    )
    return VideoResult(job, audio=audio, motion=motion, mask=mask, stats=stats, video_frames=t_video)


_PROGRESS: multiprocessing.queues.Queue | None = None


def _worker_init(progress: multiprocessing.queues.Queue) -> None:
    global _PROGRESS
    _PROGRESS = progress
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _worker_run(job: VideoJob) -> VideoResult:
    q = _PROGRESS
    try:
        return process_video(job, None if q is None else q.put)
    except AvitalkError:
        raise
    except Exception as e:  # a bug or a MediaPipe failure on this file: report it, keep going
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return VideoResult(job, error=f"failed: {last}", permanent=False)


# --------------------------------------------------------------------------------------------- run


def _run_parallel(
    jobs: list[VideoJob], workers: int, deliver: Callable[[VideoResult], None], bar_update: Callable[[int], None]
) -> None:
    """Process ``jobs`` in ``workers`` processes; ``deliver`` gets the results in job order.

    A worker that dies (e.g. a native crash) breaks the pool: a new pool is started and the jobs
    that were running are tried once more; a job running in two crashes is reported as failed.
    """
    ctx = mp.get_context("spawn")
    progress_q = ctx.Queue()
    ready: dict[int, VideoResult] = {}
    crashes: dict[int, int] = {}
    todo = list(range(len(jobs)))
    next_deliver = 0

    def drain() -> None:
        n = 0
        try:
            while True:
                n += progress_q.get_nowait()
        except queue.Empty:
            pass
        if n:
            bar_update(n)

    while next_deliver < len(jobs):
        running: dict[int, Future] = {}
        broken = False
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(progress_q,))
        try:
            while next_deliver < len(jobs) and not broken:
                while todo and len(running) < 2 * workers and len(ready) < 32:
                    i = todo.pop(0)
                    running[i] = pool.submit(_worker_run, jobs[i])
                if running:
                    wait(list(running.values()), timeout=0.25, return_when=FIRST_COMPLETED)
                drain()
                for i, fut in list(running.items()):
                    if not fut.done():
                        continue
                    del running[i]
                    try:
                        ready[i] = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        crashes[i] = crashes.get(i, 0) + 1
                        if crashes[i] >= 2:
                            ready[i] = VideoResult(jobs[i], error="the worker process died twice on this video")
                        else:
                            todo.insert(0, i)
                while next_deliver in ready:
                    deliver(ready.pop(next_deliver))
                    next_deliver += 1
            if broken:
                for i in sorted(running, reverse=True):  # not finished when the pool broke: run again
                    crashes[i] = crashes.get(i, 0) + 1
                    if crashes[i] >= 2:
                        ready[i] = VideoResult(jobs[i], error="the worker process died twice on this video")
                    else:
                        todo.insert(0, i)
                todo.sort()
        except BaseException:  # Ctrl-C or an error affecting every video: stop the workers now
            procs = dict(getattr(pool, "_processes", None) or {})  # private; Python 3.14 has terminate_workers()
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs.values():
                proc.terminate()
            raise
        pool.shutdown(wait=True)
        drain()


def run(src: Path, out: Path, args: argparse.Namespace) -> ImportSummary:
    """Import the videos at ``src`` into the corpus at ``out`` (see the module docstring)."""
    from tqdm import tqdm

    from avitalk.data.importers.video_landmarks import FaceLandmarker, check_model, mediapipe_version, require_mediapipe

    require_mediapipe()
    model = check_model(args.model).resolve()
    if args.workers < 1:
        raise AvitalkError(f"--workers must be >= 1, got {args.workers}")
    if args.smooth < 0:
        raise AvitalkError(f"--smooth must be >= 0 seconds, got {args.smooth}")
    if not 0.0 <= args.min_face <= 1.0:
        raise AvitalkError(f"--min-face must be a fraction in [0, 1], got {args.min_face}")
    if args.max_side < 64:
        raise AvitalkError(f"--max-side must be at least 64 pixels, got {args.max_side}")
    if args.intensity is not None and args.emotion is None:
        raise AvitalkError("--intensity needs --emotion")
    emotion = args.emotion or UNKNOWN
    intensity = 0 if args.emotion is None else (args.intensity or (1 if emotion == "neutral" else 2))
    if args.emotion is not None and intensity not in INTENSITIES[emotion]:
        raise AvitalkError(f"--intensity {intensity} is not a level of {emotion} (levels {INTENSITIES[emotion]})")
    val_spk, test_spk = set(_parse_list(args.val_speakers)), set(_parse_list(args.test_speakers))
    if val_spk & test_spk:
        raise AvitalkError(f"speakers both in --val-speakers and --test-speakers: {sorted(val_spk & test_spk)}")
    if not src.exists():
        raise AvitalkError(f"{src}: no such file or directory")
    with FaceLandmarker(model):  # fail once, clearly, on a wrong model file rather than per video
        pass

    sources = find_videos(src)
    if not sources:
        raise AvitalkError(f"{src}: no video files ({', '.join(e.lstrip('.') for e in VIDEO_EXTENSIONS)})")
    ids = clip_ids([k for _, k in sources])
    options = {
        "model": model.name,
        "smooth_s": args.smooth,
        "min_face": args.min_face,
        "max_side": args.max_side,
        "estimator": ESTIMATOR,
        "mediapipe": mediapipe_version(),
    }
    writer = CorpusWriter(
        out,
        ARKIT52,
        SOURCE,
        clips_per_shard=args.clips_per_shard,
        generator={"name": "avitalk.data.importers.video", "options": options},
    )
    summary = ImportSummary(kind=SOURCE)
    jobs: list[VideoJob] = []
    for (path, key), cid in zip(sources, ids, strict=True):
        if writer.is_done(key):
            summary.already_done += 1
        else:
            jobs.append(VideoJob(str(path), key, cid, str(model), args.smooth, args.max_side))

    from avitalk.data.importers.video_caption import activity_scores, make_instructions

    bar = tqdm(total=None, unit="frame", desc="video", dynamic_ncols=True, disable=None, leave=False)
    n_done = 0
    frames_total = 0
    t0 = time.perf_counter()

    def deliver(res: VideoResult) -> None:
        nonlocal n_done, frames_total
        n_done += 1
        frames_total += res.video_frames
        bar.set_postfix_str(f"{n_done}/{len(jobs)} videos")
        job = res.job
        if res.error is not None:
            summary.skip(job.key, res.error)
            if res.permanent:
                writer.mark_done(job.key)
            return
        assert res.audio is not None and res.motion is not None and res.mask is not None
        frac = res.stats["face_frames"] / max(1, res.mask.shape[0])
        if frac < args.min_face:
            summary.skip(job.key, f"a face in only {frac:.0%} of the frames (--min-face {args.min_face:g})")
            writer.mark_done(job.key)
            return
        if res.stats["no_face_frames"]:
            summary.notes.append(f"{job.key}: no face in {res.stats['no_face_frames']} of {res.mask.shape[0]} frames")
        path = Path(job.path)
        speaker = speaker_of(path, args.speaker_from)
        split = "val" if speaker in val_spk else "test" if speaker in test_spk else args.split
        transcript = read_transcript(path)
        scores = activity_scores(res.motion, res.mask)
        instructions = make_instructions(scores, job.clip_id, args.gender, args.emotion, intensity)
        extra = {
            **res.stats,
            "source_path": job.key,
            "estimator": ESTIMATOR,
            "channels_not_estimated": list(NOT_ESTIMATED),
            "smooth_s": job.smooth,
            "activity": scores,
            "instructions": "heuristic caption of the measured activity",
        }
        clip = Clip(
            clip_id=job.clip_id,
            speaker=speaker,
            gender=args.gender,
            emotion=emotion,
            intensity=intensity,
            transcript=transcript,
            audio=res.audio,
            motion=res.motion,
            instructions=instructions,
            sentence_id=sentence_id(transcript, job.clip_id),
            split=split,
            source=SOURCE,
            extra=extra,
            motion_mask=None if bool(res.mask.all()) else res.mask,
        )
        writer.add(clip, key=job.key)
        summary.imported += 1
        summary.seconds += clip.duration

    try:
        if args.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                try:
                    res = process_video(job, bar.update)
                except AvitalkError:
                    raise
                except Exception as e:
                    res = VideoResult(job, error=f"failed: {traceback.format_exception_only(type(e), e)[-1].strip()}")
                deliver(res)
        else:
            _run_parallel(jobs, min(args.workers, len(jobs)), deliver, bar.update)
    finally:
        bar.close()
        writer.close()  # what was finished is kept, also after an error or Ctrl-C
    elapsed = time.perf_counter() - t0
    if frames_total:
        summary.notes.append(
            f"{frames_total} video frames in {elapsed:.1f} s ({frames_total / max(elapsed, 1e-9):.0f} frames/s)"
        )
    summary.seconds = round(summary.seconds, 3)
    return summary
