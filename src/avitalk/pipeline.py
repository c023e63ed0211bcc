"""The product pipeline: speech -> instruction (stage 1) -> motion (stage 2) -> face outputs.

The only place that wires the stages together (DESIGN.md)::

    from avitalk import Pipeline

    pipe = Pipeline.load()                      # the shipped default models (avitalk/weights/default)
    result = pipe.animate("speech.wav", out_dir="out")
    print(result.instruction)                   # what stage 1 read in the voice
    result = pipe.animate("speech.wav", instruction="0-3s: calm; 3s-: increasingly angry", samples=3, seed=0,
                          out_dir="out2")

A models directory holds exported checkpoints (:func:`avitalk.train.export.export_checkpoint`):
``motion/`` (generator + motion statistics), ``align/`` (aligner + prior) and, optionally,
``instruct/`` (stage 1; without it an instruction must be given). Output files (docs/animate.md):

==================  =======================================================================
``instruction.txt``  the instruction used (stage 1's, or the one given; timed form if it varies)
``motion.npz``       the coefficients (:mod:`avitalk.motionio`)
``render.mp4``       the face rendered on the CPU, with the speech
``face.glb``         glTF binary: mesh, morph targets, animation (Blender, three.js, Unity)
``arkit.csv``        Live Link Face CSV (Unreal, Unity; ``arkit52`` models only)
==================  =======================================================================

With ``samples > 1`` every per-sample file gets the sample number (1-based) before the suffix:
``motion_1.npz``, ``render_1.mp4``, ``face_2.glb``, ...; ``instruction.txt`` is shared. All files of one
call are written into a hidden staging directory inside ``out_dir`` and moved into place only when
every one of them is complete: an error leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.motion.timeline import DEFAULT_BLEND, Segment, Timeline, parse_instruction
from avitalk.types import Audio, Instruction, Motion

FORMATS = ("instruction", "npz", "mp4", "glb", "csv")
"""Every output format :meth:`Pipeline.animate` writes (the default)."""
FILE_NAMES = {"instruction": "instruction.txt", "npz": "motion.npz", "mp4": "render.mp4", "glb": "face.glb"}
FILE_NAMES["csv"] = "arkit.csv"
DEFAULT_MODELS = "weights/default"
"""Where the shipped default models live inside the ``avitalk`` package."""


class Describer(Protocol):
    """Stage 1: speech -> visual instruction (``avitalk.train.load_instruct.load_stage1``)."""

    def describe(self, audio: Audio, *, decoding: str = "greedy", seed: int | None = None) -> Instruction: ...


ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is one of ``audio``, ``describe``, ``synthesize``, ``npz``,
``csv``, ``glb``, ``mp4``; ``done == total`` when the stage ends (``mp4`` reports every frame)."""


def default_models_dir() -> Path:
    """``<site-packages>/avitalk/weights/default``: the shipped models (may be absent in a source checkout)."""
    return Path(str(resources.files("avitalk"))) / DEFAULT_MODELS


def output_name(fmt: str, sample: int, n_samples: int) -> str:
    """File name of format ``fmt`` for sample ``sample`` (0-based) of ``n_samples``."""
    name = FILE_NAMES[fmt]
    if fmt == "instruction" or n_samples == 1:
        return name
    stem, suffix = os.path.splitext(name)
    return f"{stem}_{sample + 1}{suffix}"


@dataclass(frozen=True)
class SampleResult:
    """One style sample: its motion and the files written for it (format -> path)."""

    index: int
    motion: Motion
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class AnimateResult:
    """What :meth:`Pipeline.animate` made.

    Attributes:
        instruction: the instruction used, in its written form (timed if it varies).
        timeline: the instruction's segments.
        described: True when stage 1 wrote the instruction.
        samples: one :class:`SampleResult` per style sample.
        files: the files shared by all samples (``"instruction"`` -> path).
        audio: the 16 kHz mono speech that was animated.
        timings: seconds per stage.
    """

    instruction: str
    timeline: Timeline
    described: bool
    samples: tuple[SampleResult, ...]
    files: dict[str, Path]
    audio: Audio
    timings: dict[str, float]

    @property
    def motions(self) -> list[Motion]:
        return [s.motion for s in self.samples]

    @property
    def paths(self) -> list[Path]:
        """Every file written, shared ones first."""
        return [*self.files.values(), *(p for s in self.samples for p in s.files.values())]


def as_audio(audio: Audio | np.ndarray | str | os.PathLike[str]) -> Audio:
    """16 kHz mono :class:`Audio` from a file path, an :class:`Audio` at any rate, or 16 kHz samples."""
    from avitalk.audio.io import load_audio, to_mono_16k
    from avitalk.rates import AUDIO_SAMPLE_RATE

    if isinstance(audio, str | os.PathLike):
        return load_audio(audio)
    if isinstance(audio, np.ndarray):
        audio = Audio(audio, AUDIO_SAMPLE_RATE)
    x = np.asarray(audio.samples)
    if x.ndim not in (1, 2) or not np.isfinite(x).all():
        raise AvitalkError("audio must be finite (N,) or (N, C) samples")
    if audio.sample_rate != AUDIO_SAMPLE_RATE or x.ndim != 1 or x.dtype != np.float32:
        return Audio(to_mono_16k(x, audio.sample_rate), AUDIO_SAMPLE_RATE)
    return audio


class Pipeline:
    """Loaded models + a face; :meth:`animate` turns speech into a talking face and its files.

    Args:
        synthesizer: stage 2 (:class:`avitalk.motion.inference.Stage2Synthesizer`).
        describer: stage 1, or None (instructions must then be given); a callable returning one is
            loaded on first use.
        face: a face spec (``builtin``, ``ict:PATH``, ``flame:PATH``) or a loaded face model (loaded
            on first use; its motion space must be the models').
        models_dir: where the models came from (for messages).
    """

    def __init__(
        self,
        synthesizer: Any,
        describer: Describer | Callable[[], Describer] | None = None,
        face: Any = "builtin",
        models_dir: Path | None = None,
    ) -> None:
        self.synthesizer = synthesizer
        self._describer = describer
        self._face = face
        self.models_dir = models_dir

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        models: str | os.PathLike[str] | None = None,
        *,
        face: str = "builtin",
        device: str = "cpu",
        llm_dtype: str = "auto",
        llm_backend: str = "auto",
    ) -> Pipeline:
        """Load the models in ``models`` (default: the shipped ones) for inference.

        Stage 2 loads now; stage 1 (``instruct/``) loads when an instruction is first needed, its LLM in
        ``llm_dtype`` (``auto``: bfloat16 where the hardware computes it natively, which decodes faster;
        see :func:`avitalk.train.load_instruct.resolve_llm_dtype`) on ``llm_backend`` (``auto``: avitalk's
        own LLaMA where it applies, which needs no ``transformers`` import; ``transformers``).

        Raises:
            AvitalkError: the directory or its ``motion/`` / ``align/`` checkpoints are missing or wrong.
        """
        from avitalk.train.load import load_stage2

        default = models is None
        root = default_models_dir() if default else Path(models).expanduser()
        missing = [p for p in ("motion", "align") if not (root / p / "meta.json").is_file()]
        if missing:
            if default:
                raise AvitalkError(
                    f"no default models in {root} (this avitalk build ships none); pass --models DIR "
                    "(a directory with motion/ and align/ from avitalk.train.export.export_checkpoint)"
                )
            raise AvitalkError(
                f"{root}: not a models directory (no {' or '.join(p + '/' for p in missing)} checkpoint)"
            )
        synth = load_stage2(root / "motion", root / "align", device=device)
        instruct = root / "instruct"
        has_stage1 = (instruct / "meta.json").is_file()
        describer = (lambda: _load_stage1(instruct, device, llm_dtype, llm_backend)) if has_stage1 else None
        return cls(synth, describer, face=face, models_dir=root)

    @property
    def face(self) -> Any:
        """The face model (loaded on first use)."""
        if isinstance(self._face, str):
            from avitalk.face.models import load_face

            face = load_face(self._face)
            face.space.require_same(self.synthesizer.space, f"face {self._face!r}")
            self._face = face
        return self._face

    @property
    def describer(self) -> Describer:
        """Stage 1 (loaded on first use).

        Raises:
            AvitalkError: the models have no stage 1.
        """
        if self._describer is None:
            where = f"{self.models_dir}/instruct" if self.models_dir is not None else "these models"
            raise AvitalkError(
                f"no stage-1 model ({where} is missing): give an instruction (--instruction TEXT) to skip stage 1"
            )
        if not hasattr(self._describer, "describe"):
            self._describer = self._describer()  # type: ignore[operator]
        return self._describer  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------ running

    def describe(self, audio: Audio | np.ndarray | str | os.PathLike[str], *, seed: int | None = None) -> str:
        """Stage 1 alone: the instruction text for ``audio``."""
        return self.describer.describe(as_audio(audio), seed=seed).text.strip()

    def animate(
        self,
        audio: Audio | np.ndarray | str | os.PathLike[str],
        *,
        instruction: str | Timeline | Sequence[Segment | Mapping[str, Any]] | None = None,
        samples: int = 1,
        seed: int | None = None,
        guidance: float | None = None,
        steps: int | None = None,
        blend: float = DEFAULT_BLEND,
        out_dir: str | os.PathLike[str] | None = None,
        formats: Sequence[str] = FORMATS,
        caption: bool = True,
        progress: ProgressFn | None = None,
    ) -> AnimateResult:
        """Animate ``audio``; write the ``formats`` into ``out_dir`` when given.

        Args:
            audio: a speech file (wav/flac/ogg/mp3), an :class:`Audio`, or 16 kHz float32 samples.
            instruction: None (stage 1 describes the speech), free text, a timed string
                (``"0-3s: calm; 3s-: angry"``), a :class:`Timeline` or a list of ``{start, end, text}``.
            samples: style samples to draw (each gets its own files).
            seed: seeds stage 1's sampling and the style prior (same seed -> same outputs).
            guidance: classifier-free guidance of the style prior (default: the model's).
            steps: DDIM steps of the style prior (default: the model's).
            blend: cross-fade between segments of a time-varying instruction, seconds.
            out_dir: output directory (created); None writes nothing.
            formats: a subset of :data:`FORMATS`.
            caption: put the instruction under the rendered video.
            progress: ``progress(stage, done, total)`` callback.

        Raises:
            AvitalkError: bad audio, instruction, formats or output directory; missing stage 1.
        """
        formats = tuple(dict.fromkeys(formats))
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise AvitalkError(f"unknown output format {', '.join(unknown)}; expected some of {', '.join(FORMATS)}")
        if samples < 1:
            raise AvitalkError(f"samples must be >= 1, got {samples}")
        if "csv" in formats and out_dir is not None and self.synthesizer.space.name != "arkit52":
            raise AvitalkError(f"arkit.csv needs an arkit52 model; this one is {self.synthesizer.space.key}")
        report = progress or (lambda stage, done, total: None)
        timings: dict[str, float] = {}
        staging = _Staging(Path(out_dir)) if out_dir is not None else None

        def timed(stage: str, fn: Callable[[], Any]) -> Any:
            report(stage, 0, 1)
            t0 = time.perf_counter()
            value = fn()
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0
            report(stage, 1, 1)
            return value

        try:
            speech = timed("audio", lambda: as_audio(audio))
            if speech.samples.shape[0] == 0:
                raise AvitalkError("the audio is empty")
            described = instruction is None
            if described:
                text = timed("describe", lambda: self.describe(speech, seed=seed))
                timeline = parse_instruction(text, where="stage-1 instruction")
            else:
                timeline = instruction if isinstance(instruction, Timeline) else parse_instruction(instruction)
            synth = self.synthesizer
            g = synth.config.denoiser.guidance if guidance is None else guidance
            motions = timed(
                "synthesize", lambda: synth.synthesize(speech, timeline, samples, seed, g, steps, blend=blend)
            )
            written = timeline.used(speech.duration)
            text = written.format()
            shared: dict[str, Path] = {}
            per_sample: list[dict[str, Path]] = [{} for _ in motions]
            if staging is not None:
                if "instruction" in formats:
                    shared["instruction"] = staging.write_text(FILE_NAMES["instruction"], text + "\n")
                for fmt in ("npz", "csv", "glb", "mp4"):
                    if fmt not in formats:
                        continue
                    for i, m in enumerate(motions):
                        name = output_name(fmt, i, len(motions))
                        path = staging.path(name)
                        if fmt == "mp4":
                            t0 = time.perf_counter()
                            self._render(path, m, speech, text if caption else None, report)
                            timings["mp4"] = timings.get("mp4", 0.0) + time.perf_counter() - t0
                        else:
                            timed(fmt, lambda fmt=fmt, path=path, m=m: self._export(fmt, path, m))
                        per_sample[i][fmt] = path
                final = staging.commit()
                shared = {k: final[p] for k, p in shared.items()}
                per_sample = [{k: final[p] for k, p in d.items()} for d in per_sample]
        except BaseException:
            if staging is not None:
                staging.abort()
            raise
        return AnimateResult(
            instruction=text,
            timeline=written,
            described=described,
            samples=tuple(SampleResult(i, m, per_sample[i]) for i, m in enumerate(motions)),
            files=shared,
            audio=speech,
            timings=timings,
        )

    def _export(self, fmt: str, path: Path, motion: Motion) -> None:
        from avitalk.face.export import export_motion

        export_motion(path, motion, fmt, face=self.face if fmt == "glb" else None)

    def _render(self, path: Path, motion: Motion, audio: Audio, caption: str | None, report: ProgressFn) -> None:
        from avitalk.face.render import Panel, render_panels
        from avitalk.face.video import write_video

        face = self.face
        done = [0]

        def tick(k: int) -> None:
            done[0] += k
            report("mp4", done[0], motion.n_frames)

        report("mp4", 0, motion.n_frames)
        if motion.n_frames == 0:
            raise AvitalkError("the audio is too short for a video (no motion frames)")
        frames = render_panels([Panel(face, motion)], caption=caption)
        write_video(path, frames, motion.fps, audio=audio, n_frames=motion.n_frames, progress=tick, preset="veryfast")


def _load_stage1(run: Path, device: str, llm_dtype: str = "auto", llm_backend: str = "auto") -> Describer:
    try:
        from avitalk.train.load_instruct import load_stage1
    except ModuleNotFoundError as e:
        if e.name != "avitalk.train.load_instruct":
            raise
        raise AvitalkError(
            "this avitalk build has no stage-1 loader; give an instruction (--instruction TEXT)"
        ) from None
    return load_stage1(run, device=device, llm_dtype=llm_dtype, llm_backend=llm_backend)


class _Staging:
    """Files of one call assembled in ``out/.avitalk-XXXX/`` and moved into ``out`` together at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=".avitalk-", suffix=".tmp", dir=out))
        except OSError as e:
            raise AvitalkError(f"cannot write to output directory {out}: {e.strerror or e}") from None
        self.names: list[str] = []

    def path(self, name: str) -> Path:
        self.names.append(name)
        return self.dir / name

    def write_text(self, name: str, text: str) -> Path:
        from avitalk.fsutil import atomic_write_text

        path = self.path(name)
        atomic_write_text(path, text)
        return path

    def commit(self) -> dict[Path, Path]:
        """Move every staged file into ``out`` (replacing older ones); returns staged -> final paths."""
        moved = {}
        for name in self.names:
            src, dst = self.dir / name, self.out / name
            if not src.is_file():
                raise AvitalkError(f"internal error: {name} was not written")
            if dst.is_dir():
                raise AvitalkError(f"{dst}: is a directory; cannot write {name} there")
        for name in self.names:
            os.replace(self.dir / name, self.out / name)
            moved[self.dir / name] = self.out / name
        self.abort()
        return moved

    def abort(self) -> None:
        """Remove the staging directory and the files in it (it is ours alone and flat)."""
        if not self.dir.is_dir():
            return
        for p in self.dir.iterdir():
            with contextlib.suppress(OSError):
                p.unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()


__all__ = [
    "FILE_NAMES",
    "FORMATS",
    "AnimateResult",
    "Describer",
    "Pipeline",
    "ProgressFn",
    "SampleResult",
    "as_audio",
    "default_models_dir",
    "output_name",
]
