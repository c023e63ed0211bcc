"""Stage-2 evaluation (issue #5 item 8): generated motion vs teacher motion on held-out clips.

:func:`evaluate_motion` runs one motion source (the full model, an ablation, the regression baseline,
the static mean face) over prepared clips and returns a :class:`MotionEvalResult` of plain numbers;
nothing here prints, writes files or loads run directories (the CLI ``avitalk eval motion`` and
``bench/bench_stage2.py`` do). Metrics (docs/evaluation-stage2.md):

* LVE (mm², :func:`avitalk.eval.metrics.lip_vertex_error`), FDD (mm², signed as in CodeTalker),
  mean vertex error (mm), on the face given (the figures use ICT-FaceKit), averaged over samples, then
  over clips;
* lip closure on bilabials: for every ``p``/``b``/``m`` phone, is the generated mouth closed at the
  phone's middle frame, i.e. the inner-lip gap (upper/lower mid-lip landmarks) at most the threshold
  :func:`calibrate_closure` derives from the teacher motion;
* emotion following: the :class:`~avitalk.eval.emotion_classifier.EmotionClassifier` (trained on teacher
  motion) recognises the clip's emotion in motion generated with the clip's own instruction, and, with
  ``swap``, the other emotion in motion generated for the same audio with an instruction of another clip
  of a different emotion (the LVE against the teacher is measured for both: ``lve_rise``);
* exact swapped ground truth: on synthetic clips (``extra["style"]`` and phones stored) the teacher is
  re-run on the clip's phones with the *other* clip's style, i.e. the motion the swapped instruction
  describes for this audio. ``lve_swap_exact`` compares the swapped samples with it (``lve_rise_exact``
  against ``lve``), and ``teacher_lve_swap`` is that motion's LVE against the original teacher: the
  ``lve_swap`` a perfect instruction follower would score, since a new emotion legitimately reshapes
  the mouth (smile, frown, lip press, opening);
* diversity: the paper's mean pairwise L2 distance of the ``n_samples`` style embeddings ``z`` sampled
  for one instruction, and :func:`~avitalk.eval.metrics.motion_diversity` of the samples' vertices (mm);
* jitter: mean absolute second difference of the vertices (mm / frame²).

Styles are sampled once per clip and instruction (``n_samples`` of them, seeded by ``(seed, clip)``) and
every metric uses those same samples.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from avitalk.audio.encoder import SpeechEncoder
from avitalk.data.format import Clip
from avitalk.data.labels import EMOTIONS
from avitalk.errors import AvitalkError
from avitalk.eval.emotion_classifier import EmotionClassifier
from avitalk.eval.metrics import jitter, lip_vertex_error, mean_vertex_error
from avitalk.eval.metrics import upper_face_dynamics_deviation as fdd_metric
from avitalk.face.base import FaceModel
from avitalk.spaces import rigid_indices
from avitalk.types import Audio, SpeechFeatures

BILABIALS = frozenset({"p", "b", "m"})
CLOSURE_QUANTILE = 0.95
CLOSURE_MARGIN = 0.25
"""Lip-closure threshold: ``q + CLOSURE_MARGIN * (open - q)`` with ``q`` the ``CLOSURE_QUANTILE`` of the
teacher's lip gap at bilabial middle frames and ``open`` its median gap at the middle frames of every
other phone (see :func:`calibrate_closure`)."""

# ------------------------------------------------------------------------------------------------ clips


@dataclass
class EvalClip:
    """One held-out clip prepared for evaluation.

    Attributes:
        clip_id, speaker, gender, emotion, intensity: from the corpus.
        audio: the speech.
        motion: ``(T, D)`` float32 teacher motion.
        fps: motion frame rate.
        instruction: the clip's own (canonical, first) instruction.
        bilabial_frames: ``(B,)`` int64 middle frames of its ``p``/``b``/``m`` phones (empty if unknown).
        other_frames: ``(O,)`` int64 middle frames of its other phones (for the closure calibration).
        swap_instruction, swap_emotion: an instruction of another clip with a different emotion (None
            when no such clip exists).
        swap_motion: ``(T, D)`` float32 teacher motion of this clip's phones with the swap clip's style
            (the exact ground truth of the swapped instruction), or None (no stored style / phones).
    """

    clip_id: str
    speaker: str
    gender: str
    emotion: str
    intensity: int
    audio: Audio
    motion: np.ndarray
    fps: float
    instruction: str
    bilabial_frames: np.ndarray
    other_frames: np.ndarray
    swap_instruction: str | None = None
    swap_emotion: str | None = None
    swap_motion: np.ndarray | None = None


def _phone_frames(clip: Clip) -> tuple[np.ndarray, np.ndarray]:
    """Middle frames of the bilabial and of the other (non-silence) phones, clipped to the motion."""
    if not clip.phones or clip.motion is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n = clip.motion.shape[0]
    bil, other = [], []
    for p in clip.phones:
        if not p.symbol or p.end <= p.start:
            continue
        frame = min(max(math.floor(0.5 * (p.start + p.end) * clip.fps), 0), n - 1)
        (bil if p.symbol in BILABIALS else other).append(frame)
    return np.asarray(bil, np.int64), np.asarray(other, np.int64)


def prepare_clips(clips: Iterable[Clip], *, limit: int | None = None, seed: int = 0) -> list[EvalClip]:
    """:class:`EvalClip` for every clip with valid motion and an instruction (the first ``limit`` of them).

    Swapped instructions come from all such clips (also those beyond ``limit``): for clip ``i`` a target
    emotion other than its own is drawn (seeded by ``(seed, i)``) among those present, then a clip of
    that emotion, preferring the same gender (captions name the speaker's gender). When both clips store
    the synthetic teacher's style (``extra["style"]``) and clip ``i`` its phones, ``swap_motion`` is the
    teacher re-run on clip ``i``'s phones with the swap clip's style (seeded by ``(seed, i, 1)``).
    """
    kept: list[EvalClip] = []
    pool: list[tuple[str, str, str, dict | None]] = []  # (emotion, gender, instruction, style) of usable clips
    phones: list[list | None] = []  # phones of the kept clips
    for c in clips:
        if c.motion is None or not c.instructions or (c.motion_mask is not None and not c.motion_mask.all()):
            continue
        style = c.extra.get("style") if isinstance(c.extra, dict) else None
        pool.append((c.emotion, c.gender, c.instructions[0], style if isinstance(style, dict) else None))
        if limit is not None and len(kept) >= limit:
            continue
        phones.append(list(c.phones) if c.phones and style is not None else None)
        bil, other = _phone_frames(c)
        audio = Audio(np.asarray(c.audio, np.float32), c.sample_rate)
        kept.append(
            EvalClip(
                c.clip_id,
                c.speaker,
                c.gender,
                c.emotion,
                c.intensity,
                audio,
                np.asarray(c.motion, np.float32),
                c.fps,
                c.instructions[0],
                bil,
                other,
            )
        )
    emotions = sorted({p[0] for p in pool}, key=lambda e: (EMOTIONS.index(e) if e in EMOTIONS else 99, e))
    for i, ec in enumerate(kept):
        rng = np.random.default_rng([seed, i])
        targets = [e for e in emotions if e != ec.emotion]
        if not targets:
            continue
        target = targets[int(rng.integers(len(targets)))]
        cands = [p for p in pool if p[0] == target and p[1] == ec.gender] or [p for p in pool if p[0] == target]
        _, _, ec.swap_instruction, style = cands[int(rng.integers(len(cands)))]
        ec.swap_emotion = target
        if style is not None and phones[i] is not None:
            ec.swap_motion = _teacher_motion(phones[i], ec.motion.shape[0], ec.fps, style, [seed, i, 1])
    return kept


def _teacher_motion(phones: list, n_frames: int, fps: float, style: dict, seed: list[int]) -> np.ndarray | None:
    """The synthetic teacher's ``(T, D)`` motion of ``phones`` with a stored clip style (None if it will not parse)."""
    from avitalk.data.synth.style import ClipStyle
    from avitalk.data.synth.teacher import teach

    try:
        clip_style = ClipStyle.from_json(style)
    except (TypeError, KeyError):  # a style of another generator version: no exact ground truth
        return None
    return teach(phones, n_frames, clip_style, np.random.default_rng(seed), fps=fps)


# ------------------------------------------------------------------------------------------- lip gap


def lip_pair(face: FaceModel) -> tuple[int, int]:
    """Vertex indices of the upper and lower mid-lip (inner margin) of ``face``.

    The built-in face names them (``landmarks["upper_lip"/"lower_lip"]``); faces with iBUG-68 landmarks
    (ICT-FaceKit) use landmarks 62 and 66 (inner lip contour, mid-line).

    Raises:
        AvitalkError: the face has neither.
    """
    lm = getattr(face, "landmarks", None)
    if isinstance(lm, dict) or hasattr(lm, "keys"):
        if "upper_lip" in lm and "lower_lip" in lm:
            return int(lm["upper_lip"]), int(lm["lower_lip"])
    elif lm is not None and len(lm) == 68:
        return int(lm[62]), int(lm[66])
    raise AvitalkError(f"face {getattr(face, 'name', face)!r} has no mid-lip landmarks: lip closure is not measurable")


def lip_gap(vertices: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    """``(T,)`` distance in mm between the two mid-lip vertices of ``(T, V, 3)`` vertices (metres)."""
    v = np.asarray(vertices)
    return np.linalg.norm(v[:, pair[0]] - v[:, pair[1]], axis=-1).astype(np.float64) * 1e3


@dataclass(frozen=True)
class ClosureThreshold:
    """The lip-gap threshold (mm) below which a mouth counts as closed, and how it was derived.

    Attributes:
        threshold: gap in mm.
        closed_q: ``CLOSURE_QUANTILE`` of the teacher's gap at bilabial middle frames (mm).
        open_median: the teacher's median gap at the middle frames of the other phones (mm).
        teacher_accuracy: fraction of the teacher's bilabials that count as closed.
        n_bilabials: bilabial phones used.
    """

    threshold: float
    closed_q: float
    open_median: float
    teacher_accuracy: float
    n_bilabials: int


def calibrate_closure(clips: Sequence[EvalClip], face: FaceModel) -> ClosureThreshold:
    """Derive the closure threshold from the teacher motion of ``clips`` (see :data:`CLOSURE_MARGIN`).

    Raises:
        AvitalkError: no clip has bilabial and other phones.
    """
    pair = lip_pair(face)
    closed, opened = [], []
    for c in clips:
        if not len(c.bilabial_frames) and not len(c.other_frames):
            continue
        gap = lip_gap(face.vertices(c.motion), pair)
        closed.append(gap[c.bilabial_frames])
        opened.append(gap[c.other_frames])
    cl = np.concatenate(closed) if closed else np.zeros(0)
    op = np.concatenate(opened) if opened else np.zeros(0)
    if not len(cl) or not len(op):
        raise AvitalkError("no clip has timed bilabial and other phones: cannot calibrate lip closure")
    q, o = float(np.quantile(cl, CLOSURE_QUANTILE)), float(np.median(op))
    thr = q + CLOSURE_MARGIN * max(o - q, 0.0)
    return ClosureThreshold(thr, q, o, float(np.mean(cl <= thr)), len(cl))


# ------------------------------------------------------------------------------------------ sources


@runtime_checkable
class Synthesizer(Protocol):
    """What evaluation needs of :class:`avitalk.motion.inference.Stage2Synthesizer`."""

    config: Any
    mean: torch.Tensor
    std: torch.Tensor

    def content(self, audio: Audio) -> torch.Tensor: ...

    def style(self, instruction: str, n_samples: int = 1, seed: int | None = None, guidance: float = 2.0,
              steps: int | None = None) -> torch.Tensor: ...  # fmt: skip

    def generate(self, content: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class MotionSource(Protocol):
    """Something that makes motion for a clip: ``sample`` -> motions ``(K, N, T, D)``, styles ``(K, N, Dz)``|None."""

    name: str

    def sample(
        self, clip: EvalClip, instructions: Sequence[str], n_samples: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray | None]: ...


def _generate(s: Synthesizer, content: torch.Tensor, z: torch.Tensor, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Motions ``(K, N, T, D)`` and styles ``(K, N, Dz)`` for content ``(T, C)`` and ``z`` ``(K*N, Dz)``."""
    motion = s.generate(content, z) * s.std + s.mean  # (K*N, T, D)
    values = motion.float().cpu().numpy().reshape(k, n, content.shape[0], -1)
    return values, z.float().cpu().numpy().reshape(k, n, -1)


@dataclass
class SynthesizerSource:
    """A trained stage-2 model (full, ablation or regression baseline) as a :class:`MotionSource`.

    Speech is encoded once per clip; for each instruction ``n_samples`` styles are sampled with the seed
    given (so runs repeat exactly), and one batched, windowed generator call makes every sample.
    """

    synth: Synthesizer
    name: str = "model"
    guidance: float | None = None  # default: the config's denoiser.guidance
    steps: int | None = None

    def sample(
        self, clip: EvalClip, instructions: Sequence[str], n_samples: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        s = self.synth
        guidance = self.guidance if self.guidance is not None else float(s.config.denoiser.guidance)
        with torch.no_grad():
            content = s.content(clip.audio)  # (T, C)
            zs = [s.style(text, n_samples, seed + k, guidance, self.steps) for k, text in enumerate(instructions)]
            return _generate(s, content, torch.cat(zs), len(instructions), n_samples)


@dataclass
class OracleStyleSource:
    """The motion prior with an ideal instruction -> style mapping (an upper bound, not a method).

    ``z`` is the motion run's own style encoder over ``n_ref`` frames of the clip's teacher motion (a new
    seeded draw per sample, sorted in time, standardised like training): the style the generator was
    trained to follow. Its LVE against the full model's separates generator error (lip sync) from the
    error of mapping the instruction onto the style space. For the swapped instruction the frames come
    from the exact swapped ground truth (``EvalClip.swap_motion``), else from the clip's own motion.
    """

    synth: Synthesizer
    style_encoder: Any  # (B, S, D) standardised frames -> (B, Dz)
    n_ref: int = 32
    name: str = "oracle style"

    def sample(
        self, clip: EvalClip, instructions: Sequence[str], n_samples: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        s = self.synth
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            content = s.content(clip.audio)  # (T, C)
            zs = []
            for k in range(len(instructions)):
                ref = clip.swap_motion if k > 0 and clip.swap_motion is not None else clip.motion  # (T', D)
                frames = (torch.from_numpy(np.asarray(ref, np.float32)).to(s.mean.device) - s.mean) / s.std
                n = min(self.n_ref, len(ref))
                idx = np.stack([np.sort(rng.choice(len(ref), n, replace=False)) for _ in range(n_samples)])
                zs.append(self.style_encoder(frames[torch.from_numpy(idx)]))  # (N, Dz)
            return _generate(s, content, torch.cat(zs), len(instructions), n_samples)


@dataclass
class MeanFaceSource:
    """The static mean-face baseline: every frame is the per-channel mean of the training motion."""

    mean: np.ndarray  # (D,)
    name: str = "mean face"

    def sample(self, clip: EvalClip, instructions: Sequence[str], n_samples: int, seed: int) -> tuple[np.ndarray, None]:
        t = clip.motion.shape[0]
        row = np.asarray(self.mean, np.float32).reshape(1, 1, 1, -1)
        return np.broadcast_to(row, (len(instructions), n_samples, t, row.shape[-1])).copy(), None


class MemoSpeechEncoder:
    """Wraps a :class:`SpeechEncoder` and remembers the features of the last ``capacity`` audios (by hash),
    so several models evaluated on the same clips encode each clip once."""

    def __init__(self, encoder: SpeechEncoder, capacity: int = 256) -> None:
        self.encoder = encoder
        self.name, self.dim, self.frame_rate = encoder.name, encoder.dim, encoder.frame_rate
        self.version = getattr(encoder, "version", "")
        self.capacity = capacity
        self._items: OrderedDict[str, SpeechFeatures] = OrderedDict()

    def encode(self, audio: Audio) -> SpeechFeatures:
        key = hashlib.sha1(np.ascontiguousarray(audio.samples).tobytes() + str(audio.sample_rate).encode()).hexdigest()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        out = self.encoder.encode(audio)
        self._items[key] = out
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return out


def as_source(model: Any, name: str | None = None) -> MotionSource:
    """A :class:`MotionSource` for a source, a :class:`Synthesizer` or a ``(D,)`` mean-face array."""
    if isinstance(model, MotionSource):
        return model
    if isinstance(model, np.ndarray | torch.Tensor):
        return MeanFaceSource(np.asarray(model, np.float32), name or "mean face")
    if isinstance(model, Synthesizer):
        return SynthesizerSource(model, name or "model")
    raise TypeError(f"cannot evaluate {type(model).__name__}: expected a synthesizer, a MotionSource or a mean")


# ------------------------------------------------------------------------------------------- result


@dataclass
class MotionEvalResult:
    """Numbers of one evaluated source (means over clips unless said otherwise; NaN when not measurable).

    Attributes:
        name: the source's name.
        clips, samples: clips evaluated, samples per clip and instruction.
        lve: lip vertex error (mm²) with the clip's own instruction.
        fdd: upper-face dynamics deviation (mm², signed: > 0 when less dynamic than the teacher).
        mve: mean vertex error (mm).
        lip_closure: fraction of bilabial phones (x samples) whose middle frame is closed.
        emotion_own: fraction of samples the classifier labels with the clip's emotion.
        emotion_swap: fraction of swapped-instruction samples labelled with the new emotion.
        lve_swap: LVE (mm²) of the swapped-instruction samples against the teacher.
        lve_rise: ``lve_swap / lve - 1``.
        lve_swap_exact: LVE (mm²) of the swapped-instruction samples against the exact swapped ground
            truth (``EvalClip.swap_motion``; NaN without it).
        lve_rise_exact: ``lve_swap_exact / lve - 1`` on the clips that have it.
        teacher_lve_swap: LVE (mm²) of the exact swapped ground truth against the teacher: what
            ``lve_swap`` is for a perfect instruction follower.
        diversity_z: mean pairwise L2 of the sampled ``z`` (NaN for sources without ``z``).
        diversity_vertex: mean pairwise per-frame vertex distance of the samples (mm).
        jitter: mean |second difference| of the vertices (mm / frame²).
        head_error: mean absolute error of the head rotation channels (degrees; NaN without them).
        posed: the vertex metrics include the rigid head rotation (``evaluate_motion(posed=True)``).
        closure_threshold: the lip-gap threshold used (mm).
        seconds: wall time of the evaluation.
        per_clip: per-clip numbers (``clip_id``, ``emotion``, ``lve``, ...).
    """

    name: str
    clips: int
    samples: int
    lve: float
    fdd: float
    mve: float
    lip_closure: float
    emotion_own: float
    emotion_swap: float
    lve_swap: float
    lve_rise: float
    diversity_z: float
    diversity_vertex: float
    jitter: float
    closure_threshold: float
    seconds: float
    head_error: float = float("nan")
    posed: bool = False
    lve_swap_exact: float = float("nan")
    lve_rise_exact: float = float("nan")
    teacher_lve_swap: float = float("nan")
    per_clip: list[dict] = field(default_factory=list)

    def to_dict(self, per_clip: bool = True) -> dict:
        d = asdict(self)
        if not per_clip:
            d.pop("per_clip")
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


METRICS = ("lve", "fdd", "mve", "lip_closure", "emotion_own", "emotion_swap", "lve_swap", "lve_rise",
           "lve_swap_exact", "lve_rise_exact", "teacher_lve_swap",
           "diversity_z", "diversity_vertex", "jitter", "head_error")  # fmt: skip


def _nanmean(xs: Sequence[float]) -> float:
    a = np.asarray([x for x in xs if x is not None and math.isfinite(x)], dtype=np.float64)
    return float(a.mean()) if len(a) else float("nan")


def pairwise_l2(z: np.ndarray) -> float:
    """Mean L2 distance over unordered pairs of the rows of ``(N, Dz)``, ``N >= 2`` (the paper's diversity)."""
    z = np.asarray(z, dtype=np.float64)
    i, j = np.triu_indices(z.shape[0], k=1)
    return float(np.linalg.norm(z[i] - z[j], axis=-1).mean())


def vertex_diversity(samples_v: np.ndarray, chunk: int = 16) -> float:
    """:func:`~avitalk.eval.metrics.motion_diversity` of ``(N, T, V, 3)`` vertices (metres), in mm.

    Mean over sample pairs ``i < j`` and frames of ``||v_i[t] - v_j[t]||`` over all ``3 V`` coordinates,
    computed per frame chunk from Gram matrices (``|a - b|² = |a|² + |b|² - 2 a·b``, float64), which is
    the same number at a fraction of the memory and time of the pairwise differences.
    """
    n, t = samples_v.shape[:2]
    if n < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {n}")
    i, j = np.triu_indices(n, k=1)
    total = 0.0
    for s in range(0, t, chunk):
        x = np.asarray(samples_v[:, s : s + chunk], dtype=np.float64).reshape(n, -1, samples_v.shape[2] * 3)
        x = x - x.mean(axis=0, keepdims=True)  # centring leaves the differences unchanged, keeps precision
        gram = np.einsum("itk,jtk->tij", x, x)  # (t', N, N)
        sq = np.einsum("tii->ti", gram)  # (t', N)
        d2 = np.maximum(sq[:, i] + sq[:, j] - 2 * gram[:, i, j], 0.0)  # (t', P)
        total += float(np.sqrt(d2).mean(axis=1).sum())
    return total / t * 1e3


def without_rigid(values: np.ndarray, rigid: Sequence[int]) -> np.ndarray:
    """A copy of ``(..., D)`` coefficients with the rigid head channels ``rigid`` set to 0 (no copy if none)."""
    if not len(rigid):
        return values
    out = np.array(values, dtype=np.float32, copy=True)
    out[..., list(rigid)] = 0.0
    return out


def head_angle_error(pred: np.ndarray, gt: np.ndarray, rigid: Sequence[int]) -> float:
    """Mean absolute error of the rigid head rotation channels, in **degrees** (NaN without them).

    Args:
        pred: ``(T, D)`` predicted coefficients; gt: ``(T', D)`` ground truth (``T <= T'``).
        rigid: indices of the head rotation channels (radians), e.g. :func:`avitalk.spaces.rigid_indices`.
    """
    if not len(rigid):
        return float("nan")
    t = min(len(pred), len(gt))
    return float(np.degrees(np.mean(np.abs(pred[:t, list(rigid)] - gt[:t, list(rigid)]))))


def _sample_vertices(face: FaceModel, samples: np.ndarray, rigid: Sequence[int] = ()) -> np.ndarray:
    """``(N, T, V, 3)`` vertices of ``(N, T, D)`` samples, the ``rigid`` channels zeroed; identical samples (a
    deterministic source) are posed once."""
    samples = without_rigid(samples, rigid)
    if all(np.array_equal(samples[0], m) for m in samples[1:]):
        v = face.vertices(samples[0])  # (T, V, 3)
        return np.broadcast_to(v, (len(samples), *v.shape))
    return np.stack([face.vertices(m) for m in samples])


def evaluate_motion(
    model: Any,
    clips: Sequence[EvalClip] | Iterable[Clip],
    face: FaceModel,
    classifier: EmotionClassifier | None,
    *,
    n_samples: int = 10,
    seed: int = 0,
    swap: bool = True,
    closure: ClosureThreshold | float | None = None,
    name: str | None = None,
    progress: bool = False,
    posed: bool = False,
) -> MotionEvalResult:
    """Evaluate one motion source on held-out clips.

    Args:
        model: a :class:`Synthesizer` (``load_stage2(...)``), a :class:`MotionSource`, or a ``(D,)`` mean
            (the static mean-face baseline).
        clips: prepared :class:`EvalClip` (:func:`prepare_clips`) or corpus clips (prepared here).
        face: the face the vertex metrics are measured on (coefficients in its motion space).
        classifier: the emotion classifier (None: emotion metrics are NaN).
        n_samples: style samples per clip and instruction (>= 2 for diversity).
        seed: base seed; clip ``i`` uses ``seed * 1_000_003 + 2 * i`` (own) and ``+ 1`` (swapped).
        swap: also generate with the swapped instruction.
        closure: the closure threshold (mm) or a :class:`ClosureThreshold`; None: calibrated on ``clips``.
        name: the result's name (default: the source's).
        progress: show a progress bar on stderr.
        posed: measure the vertex metrics on the face *with* the rigid head rotation of the motion.
            Default False: they are measured on the face alone (head channels of generated and ground
            truth motion set to 0, :func:`avitalk.spaces.rigid_indices`), as FaceFormer / CodeTalker
            measure LVE and FDD on rigidly registered meshes; head motion is scored apart
            (``head_error``). With the head posed, a nod the audio cannot predict moves every lip
            vertex by millimetres and dominates LVE and FDD.

    Returns:
        A :class:`MotionEvalResult`.
    """
    if n_samples < 1:
        raise AvitalkError(f"n_samples must be >= 1, got {n_samples}")
    clips = list(clips)
    if clips and isinstance(clips[0], Clip):
        clips = prepare_clips(clips, seed=seed)
    if not clips:
        raise AvitalkError("no clips to evaluate (clips need teacher motion and an instruction)")
    source = as_source(model, name)
    if closure is None:
        closure = calibrate_closure(clips, face)
    thr = closure.threshold if isinstance(closure, ClosureThreshold) else float(closure)
    pair = lip_pair(face)
    regions, template = face.regions, face.neutral
    rigid_all = rigid_indices(face.space)
    rigid = () if posed else rigid_all
    start = time.perf_counter()
    rows: list[dict] = []
    closed_hits = closed_total = 0
    from tqdm.auto import tqdm

    for i, clip in enumerate(tqdm(clips, desc=f"eval {name or source.name}", unit="clip", disable=not progress)):
        texts = [clip.instruction]
        do_swap = swap and clip.swap_instruction is not None
        if do_swap:
            texts.append(clip.swap_instruction)
        motions, zs = source.sample(clip, texts, n_samples, seed * 1_000_003 + 2 * i)  # (K, N, T, D), (K, N, Dz)
        t = min(motions.shape[2], clip.motion.shape[0])
        gt = clip.motion[:t]
        gt_v = face.vertices(without_rigid(gt, rigid))  # (T, V, 3)
        row: dict[str, Any] = {"clip_id": clip.clip_id, "emotion": clip.emotion, "frames": t}
        own_v = _sample_vertices(face, motions[0][:, :t], rigid)  # (N, T, V, 3)
        row["head_error"] = _nanmean([head_angle_error(m, gt, rigid_all) for m in motions[0][:, :t]])
        row["lve"] = _nanmean([lip_vertex_error(v, gt_v, regions["lips"]) for v in own_v])
        row["fdd"] = _nanmean([fdd_metric(v, gt_v, regions["upper_face"], template) for v in own_v])
        row["mve"] = _nanmean([mean_vertex_error(v, gt_v) for v in own_v])
        row["jitter"] = _nanmean([jitter(v.reshape(t, -1)) * 1e3 for v in own_v]) if t >= 3 else float("nan")
        bil = clip.bilabial_frames[clip.bilabial_frames < t]
        if len(bil):
            hits = sum(int(np.sum(lip_gap(v[bil], pair) <= thr)) for v in own_v)
            closed_hits, closed_total = closed_hits + hits, closed_total + len(bil) * n_samples
            row["lip_closure"] = hits / (len(bil) * n_samples)
        row["diversity_vertex"] = vertex_diversity(own_v) if n_samples >= 2 else float("nan")
        row["diversity_z"] = pairwise_l2(zs[0]) if zs is not None and n_samples >= 2 else float("nan")
        del own_v
        known = classifier is not None and clip.emotion in classifier.labels
        if known:
            row["emotion_own"] = float(np.mean([p == clip.emotion for p in classifier.predict(motions[0][:, :t])]))
        if do_swap:
            row["swap_emotion"] = clip.swap_emotion
            swap_v = _sample_vertices(face, motions[1][:, :t], rigid)
            row["lve_swap"] = _nanmean([lip_vertex_error(v, gt_v, regions["lips"]) for v in swap_v])
            if clip.swap_motion is not None:
                exact_v = face.vertices(without_rigid(clip.swap_motion[:t], rigid))
                row["teacher_lve_swap"] = lip_vertex_error(exact_v, gt_v, regions["lips"])
                row["lve_swap_exact"] = _nanmean([lip_vertex_error(v, exact_v, regions["lips"]) for v in swap_v])
            if classifier is not None and clip.swap_emotion in classifier.labels:
                preds = classifier.predict(motions[1][:, :t])
                row["emotion_swap"] = float(np.mean([p == clip.swap_emotion for p in preds]))
        rows.append(row)

    def mean(key: str) -> float:
        return _nanmean([r.get(key, float("nan")) for r in rows])

    lve = mean("lve")
    swapped = [r for r in rows if "lve_swap" in r]
    lve_own_s = _nanmean([r["lve"] for r in swapped])  # the same clips as lve_swap
    lve_swap = _nanmean([r["lve_swap"] for r in swapped])
    exact = [r for r in rows if "lve_swap_exact" in r]
    lve_own_x = _nanmean([r["lve"] for r in exact])
    lve_swap_x = _nanmean([r["lve_swap_exact"] for r in exact])
    return MotionEvalResult(
        name=name or source.name,
        clips=len(rows),
        samples=n_samples,
        lve=lve,
        fdd=mean("fdd"),
        mve=mean("mve"),
        lip_closure=closed_hits / closed_total if closed_total else float("nan"),
        emotion_own=mean("emotion_own"),
        emotion_swap=mean("emotion_swap"),
        lve_swap=lve_swap,
        lve_rise=lve_swap / lve_own_s - 1.0 if swapped and lve_own_s > 0 else float("nan"),
        diversity_z=mean("diversity_z"),
        diversity_vertex=mean("diversity_vertex"),
        jitter=mean("jitter"),
        head_error=mean("head_error"),
        posed=posed,
        closure_threshold=thr,
        seconds=time.perf_counter() - start,
        lve_swap_exact=lve_swap_x,
        lve_rise_exact=lve_swap_x / lve_own_x - 1.0 if exact and lve_own_x > 0 else float("nan"),
        teacher_lve_swap=mean("teacher_lve_swap"),
        per_clip=rows,
    )


@dataclass
class TeacherReference:
    """The teacher motion measured like a model: sanity checks of the metrics themselves.

    Attributes:
        classifier_accuracy: emotion classifier on the teacher motion of the clips.
        lip_closure: closed bilabials of the teacher (by the calibrated threshold).
        jitter: teacher vertex jitter (mm / frame²).
        closure: the calibration.
    """

    classifier_accuracy: float
    lip_closure: float
    jitter: float
    closure: ClosureThreshold

    def to_dict(self) -> dict:
        return asdict(self)


def teacher_reference(
    clips: Sequence[EvalClip],
    face: FaceModel,
    classifier: EmotionClassifier | None,
    closure: ClosureThreshold,
    posed: bool = False,
) -> TeacherReference:
    """Classifier accuracy, lip closure and jitter of the teacher motion of ``clips`` (jitter on the face
    without its head rotation unless ``posed``, as :func:`evaluate_motion`)."""
    known = [c for c in clips if classifier is not None and c.emotion in classifier.labels]
    acc = classifier.accuracy([c.motion for c in known], [c.emotion for c in known]) if known else float("nan")
    long = [c.motion for c in clips if len(c.motion) >= 3]
    rigid = () if posed else rigid_indices(face.space)
    jit = _nanmean([jitter(face.vertices(without_rigid(m, rigid)).reshape(len(m), -1)) * 1e3 for m in long])
    return TeacherReference(acc, closure.teacher_accuracy, jit, closure)
