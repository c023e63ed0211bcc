"""``avitalk bench``: seconds and real-time factors per stage of :class:`~avitalk.pipeline.Pipeline` here.

Above :mod:`avitalk.pipeline` in the layering (it drives the whole pipeline), beside :mod:`avitalk.app`;
only :mod:`avitalk.cli` imports it. For a clip of ``seconds`` (a file, the bundled example, or
speech-like synthetic audio) it measures, with the models loaded and after one warm-up call:

===================  ===========================================================================
speech encoding      ``Stage2Synthesizer.content`` (the frozen speech encoder + resampling)
stage 1 describe     ``Pipeline.describe`` (when the models have ``instruct/``)
style sampling       ``Stage2Synthesizer.style`` (text encoder, aligner, diffusion prior)
generator            ``Stage2Synthesizer.generate`` (windowed talking generator)
face posing          ``FaceModel.vertices`` of every frame
render               posing + rasterising every 512² frame (no video encoding)
npz, csv, glb, mp4   ``Pipeline.animate``'s per-format timings (mp4: render + H.264/AAC encoding)
===================  ===========================================================================

and the model load times: the first load in this process (files read from disk, lazy imports) and a
second load (warm). Each stage is the median of ``repeats`` runs; real-time factor = seconds / clip
length. The whole ``Pipeline.animate`` with every format is timed too.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.types import Audio

__all__ = ["DEFAULT_INSTRUCTION", "bench_audio", "format_bench", "run_bench", "speechlike_audio"]

DEFAULT_INSTRUCTION = "A woman feels fairly happy and speaks with a broad smile and noticeably raised cheeks."
"""Instruction used when the models have no stage 1 (and none is given)."""
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def speechlike_audio(seconds: float, seed: int = 0, rate: int = 16_000) -> Audio:
    """``seconds`` of a voiced, amplitude-modulated tone with noise: speech-like input for the encoders.

    Returns:
        16 kHz mono float32 :class:`Audio`, ``round(seconds * rate)`` samples.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    pitch = 150 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)  # (N,) Hz
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t + seed)  # ~3 syllables/s
    x = np.sin(phase) * env + 0.3 * np.sin(2 * phase) * env + 0.05 * rng.standard_normal(n)
    return Audio((0.3 * x).astype(np.float32), rate)


def bundled_example() -> Path | None:
    """The first speech file in ``avitalk/examples/`` of the installed package, if there is one."""
    root = Path(str(resources.files("avitalk"))) / "examples"
    if not root.is_dir():
        return None
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in _AUDIO_SUFFIXES)
    return files[0] if files else None


def bench_audio(path: str | os.PathLike[str] | None, seconds: float | None) -> tuple[Audio, str]:
    """The clip to benchmark and a description of it.

    ``path`` (else the bundled example, else speech-like synthetic audio) looped or cut to ``seconds``
    (None: the file's own length; 10 s for synthetic audio).

    Raises:
        AvitalkError: a missing or undecodable file, ``seconds <= 0``.
    """
    from avitalk.audio.io import load_audio

    if seconds is not None and not seconds > 0:
        raise AvitalkError(f"--seconds must be > 0, got {seconds}")
    source = Path(path) if path is not None else bundled_example()
    if source is None:
        secs = 10.0 if seconds is None else seconds
        return speechlike_audio(secs), "synthetic speech-like audio"
    if not source.is_file():
        raise AvitalkError(f"{source}: no such audio file")
    audio = load_audio(source)
    if audio.samples.shape[0] == 0:
        raise AvitalkError(f"{source}: the audio is empty")
    if seconds is None:
        return audio, str(source)
    n = round(seconds * audio.sample_rate)
    x = np.tile(audio.samples, -(-n // audio.samples.shape[0]))[:n]
    return Audio(
        np.ascontiguousarray(x, dtype=np.float32), audio.sample_rate
    ), f"{source} (looped/cut to {seconds:g} s)"


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def run_bench(
    models: str | os.PathLike[str] | None = None,
    *,
    seconds: float | None = 10.0,
    audio: str | os.PathLike[str] | None = None,
    instruction: str | None = None,
    repeats: int = 1,
    face: str = "builtin",
    threads: int | None = None,
    say: Callable[[str], None] | None = None,
) -> dict:
    """Benchmark every stage on this machine; returns the JSON-able report (:func:`format_bench` prints it).

    Args:
        models: a models directory (default: the shipped models).
        seconds, audio: the clip (:func:`bench_audio`).
        instruction: used instead of stage 1 for the stage-2 stages (default: stage 1's text when the
            models have ``instruct/``, else :data:`DEFAULT_INSTRUCTION`).
        repeats: runs per stage after the warm-up (the median is reported).
        face: face spec of posing / rendering / GLB.
        threads: torch threads (default: torch's default).

    Raises:
        AvitalkError: a bad models directory, audio file or argument.
    """
    import torch

    from avitalk.motion.timeline import parse_instruction
    from avitalk.pipeline import FORMATS, Pipeline

    if repeats < 1:
        raise AvitalkError(f"--repeats must be >= 1, got {repeats}")
    if threads is not None:
        if threads < 1:
            raise AvitalkError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    say = say or (lambda msg: None)
    clip, source = bench_audio(audio, seconds)
    dur = clip.duration
    say(f"clip: {dur:.2f} s of {source}")

    load: list[dict] = []
    say("loading models ...")
    t_first, pipe = _timed(lambda: Pipeline.load(models, face=face))
    t_face, _ = _timed(lambda: pipe.face)
    has_stage1 = pipe._describer is not None
    t_s1 = _timed(lambda: pipe.describer)[0] if has_stage1 else None
    t_again, pipe2 = _timed(lambda: Pipeline.load(models, face=face))
    t_face2, _ = _timed(lambda: pipe2.face)
    t_s1b = _timed(lambda: pipe2.describer)[0] if has_stage1 else None
    pipe2 = None  # free the second copy
    load.append({"key": "stage2", "label": "stage 2 (motion + align + encoders)", "first": t_first, "again": t_again})
    load.append({"key": "face", "label": f"face ({face})", "first": t_face, "again": t_face2})
    load.append({"key": "stage1", "label": "stage 1 (instruct + LLM)", "first": t_s1, "again": t_s1b,
                 "note": None if has_stage1 else "no instruct/ in the models"})  # fmt: skip

    synth = pipe.synthesizer
    formats = tuple(f for f in FORMATS if f != "csv" or synth.space.name == "arkit52")
    guidance = synth.config.denoiser.guidance
    given = instruction if instruction is not None else (None if has_stage1 else DEFAULT_INSTRUCTION)
    with tempfile.TemporaryDirectory(prefix="avitalk-bench-") as tmp:
        say("warm-up: Pipeline.animate, all formats ...")
        t_warm, res = _timed(lambda: pipe.animate(clip, instruction=given, seed=0, out_dir=Path(tmp) / "warm",
                                                  formats=formats))  # fmt: skip
        text = res.instruction
        anim_times = []
        timings: dict[str, list[float]] = {}
        for k in range(repeats):
            say(f"Pipeline.animate {k + 1}/{repeats} ...")
            t, r = _timed(lambda k=k: pipe.animate(clip, instruction=given, seed=k, out_dir=Path(tmp) / f"run{k}",
                                                   formats=formats))  # fmt: skip
            anim_times.append(t)
            for stage, s in r.timings.items():
                timings.setdefault(stage, []).append(s)
    timeline = parse_instruction(text)
    say("per-stage timings ...")
    t_enc, content = _median_time(lambda: synth.content(clip), repeats)
    if timeline.constant:
        t_style, z = _median_time(lambda: synth.style(timeline.segments[0].text, 1, 0, guidance), repeats)
    else:
        n_frames = content.shape[0]
        t_style, z = _median_time(lambda: synth.timeline_style(timeline, n_frames, 1, 0, guidance), repeats)
    t_gen, std = _median_time(lambda: synth.generate(content, z), repeats)
    values = (std * synth.std + synth.mean)[0].float().cpu().numpy()  # (T, D)
    from avitalk.face.render import Panel, render_panels
    from avitalk.types import Motion

    motion = Motion(np.ascontiguousarray(values), synth.space, synth.config.fps)
    fc = pipe.face
    t_pose, _ = _median_time(lambda: [fc.vertices(values[s : s + 64]) for s in range(0, len(values), 64)], repeats)
    t_render, _ = _median_time(lambda: sum(1 for _ in render_panels([Panel(fc, motion)], caption=text)), repeats)
    t_desc = _median_time(lambda: pipe.describe(clip, seed=0), repeats)[0] if has_stage1 else None

    def stage(key: str, label: str, s: float | None, note: str | None = None) -> dict:
        return {"key": key, "label": label, "seconds": s, "rtf": None if s is None else s / dur, "note": note}

    med = {k: statistics.median(v) for k, v in timings.items()}
    stages = [
        stage("encode", "speech encoding", t_enc),
        stage("describe", "stage 1 describe", t_desc, None if has_stage1 else "no stage 1 in the models"),
        stage("style", "stage 2 style sampling", t_style),
        stage("generate", "stage 2 generator", t_gen),
        stage("pose", "face posing", t_pose),
        stage("render", "render frames (no encoding)", t_render),
    ]
    labels = {"npz": "export motion.npz", "csv": "export arkit.csv", "glb": "export face.glb",
              "mp4": "export render.mp4 (render + encode)"}  # fmt: skip
    for fmt in ("npz", "csv", "glb", "mp4"):
        stages.append(stage(fmt, labels[fmt], med.get(fmt), None if fmt in med else "not written for these models"))
    t_anim = statistics.median(anim_times)
    return {
        "kind": "avitalk-bench",
        "version": 1,
        "machine": {
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
        "models": str(pipe.models_dir),
        "face": face,
        "audio": {"source": source, "seconds": dur},
        "instruction": text,
        "repeats": repeats,
        "load": load,
        "stages": stages,
        "animate": {
            "seconds": t_anim,
            "rtf": t_anim / dur,
            "first_call_seconds": t_warm,
            "described": res.described,
            "formats": list(formats),
            "timings": med,
        },
    }


def format_bench(report: dict) -> str:
    """The report as a printed table."""
    m, a = report["machine"], report["audio"]
    lines = [
        f"avitalk bench: {a['seconds']:.2f} s clip ({a['source']}); models {report['models']}; "
        f"{m['threads']} torch threads on {m['cpus']} CPUs; median of {report['repeats']} run(s) after a warm-up",
        "",
        f"{'model load':<40} {'first (s)':>10} {'again (s)':>10}",
    ]
    for x in report["load"]:
        if x["first"] is None:
            lines.append(f"{x['label']:<40} {x.get('note') or 'not measured':>21}")
        else:
            lines.append(f"{x['label']:<40} {x['first']:>10.3f} {x['again']:>10.3f}")
    lines += ["", f"{'stage':<40} {'seconds':>10} {'RTF':>10}"]
    for s in report["stages"]:
        if s["seconds"] is None:
            lines.append(f"{s['label']:<40} {s.get('note') or 'not measured':>21}")
        else:
            lines.append(f"{s['label']:<40} {s['seconds']:>10.3f} {s['rtf']:>10.4f}")
    an = report["animate"]
    lines += [
        "",
        f"Pipeline.animate, {'+'.join(an['formats'])}, models loaded: {an['seconds']:.3f} s (RTF {an['rtf']:.4f}); "
        f"first call {an['first_call_seconds']:.3f} s; "
        + ("stage 1 described the speech" if an["described"] else "instruction given (stage 1 not run)"),
    ]
    return "\n".join(lines)
