"""``avitalk data synth``: generate the synthetic corpus, shard by shard, in worker processes.

The corpus is planned up front from ``(hours, seed)`` alone: speakers and sentences are split
into disjoint train/val/test sets, and every clip gets its speaker, sentence, emotion, intensity
and its own seed. Shards are independent jobs; each is written atomically, so an interrupted run
resumes by generating only the shards that are missing, and the result is byte-identical for the
same arguments whatever the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from avitalk import __version__
from avitalk.data.format import (
    MANIFEST,
    SPLITS,
    Clip,
    Manifest,
    ShardInfo,
    file_sha256,
    write_shard,
)
from avitalk.data.labels import EMOTIONS
from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_write_text
from avitalk.rates import AUDIO_SAMPLE_RATE, MOTION_FPS, frames_for_samples
from avitalk.spaces import ARKIT52

PLAN_FILE = "synth-plan.json"
CLIPS_PER_SHARD = 16
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
#: Clip-length estimate used only to plan how many clips make the requested hours: a least-squares
#: fit of duration on word count over a generated 1-hour corpus (pauses and leading/trailing
#: silence make the fixed part large).
PLAN_SECONDS_FIXED = 1.82
PLAN_SECONDS_PER_WORD = 0.131


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to generate one clip deterministically."""

    index: int
    clip_id: str
    split: str
    speaker: str
    sentence: int
    emotion: str
    intensity: int
    seed: int


@dataclass(frozen=True)
class ShardJob:
    file: str
    split: str
    clips: tuple[ClipSpec, ...]
    corpus_seed: int


# -------------------------------------------------------------------------------------------- plan


def split_speakers(speakers: list[tuple[str, str]], rng: np.random.Generator) -> dict[str, str]:
    """Assign speaker ids to splits: one man and one woman (when available) each for val and test.

    Args:
        speakers: ``(speaker_id, gender)`` pairs.

    Returns:
        speaker_id -> split.
    """
    by_gender: dict[str, list[str]] = {}
    for sid, gender in sorted(speakers):
        by_gender.setdefault(gender, []).append(sid)
    out = {sid: "train" for sid, _ in speakers}
    for gender in sorted(by_gender):
        ids = list(by_gender[gender])
        rng.shuffle(ids)
        for split in ("test", "val"):
            if len(ids) > 2:  # keep at least two of each gender for training
                out[ids.pop()] = split
    return out


def split_sentences(n: int, rng: np.random.Generator) -> dict[str, list[int]]:
    """Disjoint sentence index lists per split (80/10/10)."""
    order = rng.permutation(n).tolist()
    n_val = max(1, round(n * SPLIT_FRACTIONS["val"]))
    n_test = max(1, round(n * SPLIT_FRACTIONS["test"]))
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


def plan_corpus(hours: float, seed: int, speakers: list[tuple[str, str]], sentences: tuple[str, ...]) -> list[ShardJob]:
    """Plan the clips of a corpus of about ``hours`` hours as shard jobs.

    Emotions are balanced (cycled) within each split; intensity cycles 1..3 (neutral has only 1);
    speakers are cycled within their split; sentences are drawn from the split's sentences.
    """
    if hours <= 0:
        raise AvitalkError(f"--hours must be positive, got {hours}")
    rng = np.random.default_rng([seed, 0])
    spk_split = split_speakers(speakers, rng)
    sent_split = split_sentences(len(sentences), rng)
    jobs: list[ShardJob] = []
    index = 0
    for split in SPLITS:
        spk = sorted(s for s, sp in spk_split.items() if sp == split)
        sents = sent_split[split]
        if not spk or not sents:
            continue
        budget = hours * 3600.0 * SPLIT_FRACTIONS[split]
        specs: list[ClipSpec] = []
        planned, k = 0.0, 0
        while planned < budget or k < len(EMOTIONS):  # at least one clip per emotion in each split
            emotion = EMOTIONS[k % len(EMOTIONS)]
            # each speaker says a full cycle of the emotions, then the next speaker; intensities
            # change once every speaker had a cycle, so (speaker, emotion, intensity) stays balanced
            speaker = spk[(k // len(EMOTIONS)) % len(spk)]
            intensity = 1 if emotion == "neutral" else 1 + (k // (len(EMOTIONS) * len(spk))) % 3
            sentence = int(sents[int(rng.integers(len(sents)))])
            clip_seed = int(np.random.default_rng([seed, 1, index]).integers(2**31 - 1))
            cid = f"{split}-{speaker}-{emotion}{intensity}-s{sentence:04d}-{index:06d}"
            specs.append(ClipSpec(index, cid, split, speaker, sentence, emotion, intensity, clip_seed))
            planned += PLAN_SECONDS_FIXED + PLAN_SECONDS_PER_WORD * len(sentences[sentence].split())
            index += 1
            k += 1
        for j in range(0, len(specs), CLIPS_PER_SHARD):
            file = f"{split}/shard-{j // CLIPS_PER_SHARD:05d}.parquet"
            jobs.append(ShardJob(file, split, tuple(specs[j : j + CLIPS_PER_SHARD]), seed))
    return jobs


# ---------------------------------------------------------------------------------------- generate


def generate_clip(spec: ClipSpec, corpus_seed: int) -> Clip:
    """Synthesise speech, teach motion and write captions for one planned clip."""
    from avitalk.data.synth.captions import make_captions
    from avitalk.data.synth.prosody import sample_prosody
    from avitalk.data.synth.sentences import load_sentences
    from avitalk.data.synth.speech import synthesize
    from avitalk.data.synth.teacher import sample_clip_style, speaker_style, teach
    from avitalk.data.synth.voices import speaker

    voice = speaker(spec.speaker)
    text = load_sentences()[spec.sentence]
    rng = np.random.default_rng([corpus_seed, 2, spec.index])
    prosody = sample_prosody(spec.emotion, spec.intensity, rng)
    utt = synthesize(text, voice, prosody, seed=spec.seed)
    n_frames = frames_for_samples(utt.samples.shape[0], MOTION_FPS, AUDIO_SAMPLE_RATE)
    style = sample_clip_style(spec.emotion, spec.intensity, speaker_style(voice.id, corpus_seed), rng)
    motion = teach(utt.phones, n_frames, style, rng, fps=MOTION_FPS)
    captions = make_captions(style, voice.gender, rng, n=4)
    return Clip(
        clip_id=spec.clip_id,
        speaker=voice.id,
        gender=voice.gender,
        emotion=spec.emotion,
        intensity=spec.intensity,
        transcript=text,
        audio=utt.samples,
        motion=motion,
        instructions=captions,
        sentence_id=f"synth-{spec.sentence:04d}",
        split=spec.split,
        phones=list(utt.phones),
        words=list(utt.words),
        source="synth",
        extra={"prosody": _jsonable(asdict(prosody)), "style": _jsonable(style.to_json())},
    )


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def build_shard(root: str, job: ShardJob) -> ShardInfo:
    """Generate and atomically write one shard; returns its manifest entry."""
    clips = [generate_clip(spec, job.corpus_seed) for spec in job.clips]
    digest = write_shard(Path(root) / job.file, clips)
    seconds = sum(c.duration for c in clips)
    return ShardInfo(job.file, job.split, len(clips), round(seconds, 4), digest)


def _existing_shard(root: Path, job: ShardJob) -> ShardInfo | None:
    """The manifest entry of an already complete shard, or None if it must be (re)generated."""
    path = root / job.file
    if not path.exists():
        return None
    try:
        table = pq.read_table(path, columns=["n_samples", "sample_rate"])
    except Exception:
        path.unlink()
        return None
    if table.num_rows != len(job.clips):
        path.unlink()
        return None
    n = table.column("n_samples").to_numpy()
    sr = table.column("sample_rate").to_numpy()
    seconds = float(sum(int(a) / int(b) for a, b in zip(n, sr, strict=True)))
    return ShardInfo(job.file, job.split, len(job.clips), round(seconds, 4), file_sha256(path))


def _worker_init() -> None:
    # One thread per worker process: the workers are the parallelism. (Set before numpy/onnxruntime
    # create their thread pools; the spawn start method gives each worker a fresh interpreter.)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def _run_job(args: tuple[str, ShardJob]) -> ShardInfo:
    return build_shard(*args)


def synthesize_corpus(
    out: str | os.PathLike[str],
    hours: float,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Generate (or resume) a synthetic corpus of about ``hours`` hours at ``out``.

    Args:
        out: output directory (created; if it already holds a run with other arguments, an error).
        hours: target audio duration (planned from an estimated speaking rate; ``data stats``
            reports the real total).
        seed: corpus seed; the same seed and hours give byte-identical shards and manifest.
        workers: worker processes (each single-threaded).
        progress: optional callback ``(clips_done, clips_total)`` called as shards finish.

    Returns:
        The manifest written to ``out/manifest.json``.
    """
    from avitalk.data.synth.sentences import load_sentences
    from avitalk.data.synth.voices import SPEAKERS

    if workers < 1:
        raise AvitalkError(f"--workers must be >= 1, got {workers}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise AvitalkError(f"{root}: exists and is not a directory")
    params = {"hours": hours, "seed": seed, "avitalk": __version__, "clips_per_shard": CLIPS_PER_SHARD}
    plan_path = root / PLAN_FILE
    if plan_path.exists():
        previous = json.loads(plan_path.read_text())
        if previous != params:
            raise AvitalkError(
                f"{root} holds a synthetic corpus made with {previous}; choose another --out or the same arguments"
            )
    elif root.exists() and any(root.iterdir()):
        raise AvitalkError(f"{root}: directory is not empty and holds no synthetic corpus to resume")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan_path, json.dumps(params, sort_keys=True) + "\n")
    for stale in root.rglob(".*.tmp*"):  # leftovers of an interrupted run
        stale.unlink()

    jobs = plan_corpus(hours, seed, [(v.id, v.gender) for v in SPEAKERS], load_sentences())
    total = sum(len(j.clips) for j in jobs)
    done: dict[str, ShardInfo] = {}
    pending: list[ShardJob] = []
    for job in jobs:
        info = _existing_shard(root, job)
        if info is None:
            pending.append(job)
        else:
            done[job.file] = info
    n_done = sum(i.clips for i in done.values())
    if progress:
        progress(n_done, total)
    if pending:
        args = [(str(root), j) for j in pending]
        if workers == 1:
            _worker_init()
            results = map(_run_job, args)
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init)
            results = pool.imap_unordered(_run_job, args)
        try:
            for info in results:
                done[info.file] = info
                n_done += info.clips
                if progress:
                    progress(n_done, total)
        except BaseException:
            if pool is not None:
                pool.terminate()  # finished shards stay on disk; a rerun resumes
            raise
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    manifest = Manifest(
        space=ARKIT52,
        shards=[done[j.file] for j in jobs],
        source="synth",
        generator={"name": "avitalk.data.synth", **params},
    )
    manifest.save(root)
    return manifest


__all__ = ["MANIFEST", "ClipSpec", "ShardJob", "plan_corpus", "synthesize_corpus"]
