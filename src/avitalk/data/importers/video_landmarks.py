"""MediaPipe Face Landmarker (with blendshapes) over a stream of video frames.

MediaPipe is an optional dependency (``pip install 'avitalk[video]'``); it is imported only here and
only when a video is processed. The model bundle (``face_landmarker_v2_with_blendshapes.task``) is
a file the user passes by path; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from avitalk.data.importers.video_track import HEAD_COLUMNS, blendshape_columns, matrix_to_head_angles
from avitalk.errors import AvitalkError
from avitalk.spaces import ARKIT52

PIP_HINT = "pip install 'avitalk[video]'  (or: pip install mediapipe==1.2.2)"
MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
)
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
"""Google's Face Landmarker bundle with blendshapes (Apache-2.0), the file tests and benchmarks use
(also distributed as ``face_landmarker_v2_with_blendshapes.task``)."""
MODEL_HINT = f"the Face Landmarker bundle with blendshapes from {MODEL_URL}"


def require_mediapipe() -> ModuleType:
    """The ``mediapipe`` module, or one clear :class:`AvitalkError` line naming the pip command."""
    try:
        import mediapipe
    except ImportError:
        raise AvitalkError(f"video import needs MediaPipe, which is not installed: {PIP_HINT}") from None
    return mediapipe


def mediapipe_version() -> str:
    return str(getattr(require_mediapipe(), "__version__", "unknown"))


def check_model(path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a readable file, else an :class:`AvitalkError` saying where to get the model."""
    p = Path(path)
    if not p.is_file():
        raise AvitalkError(f"{p}: no such MediaPipe model file (--model); get {MODEL_HINT}")
    return p


@contextlib.contextmanager
def _quiet_native_logs() -> Iterator[None]:
    """Silence file descriptor 2 while MediaPipe's C++ side prints its start-up log lines.

    Those lines (XNNPACK delegate, feedback-manager warnings) bypass Python logging and environment
    switches. Set ``AVITALK_MEDIAPIPE_LOGS=1`` to see them.
    """
    if os.environ.get("AVITALK_MEDIAPIPE_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@dataclass
class RawTrack:
    """Per-video-frame estimates at the video's frame rate.

    Attributes:
        values: ``(T, 55)`` float32 in ``arkit52`` (blendshape weights in [0, 1], head angles in rad);
            zeros where no face was found.
        mask: ``(T,)`` bool, True where a face was found.
        fps: frame rate of the rows.
    """

    values: np.ndarray
    mask: np.ndarray
    fps: float


class FaceLandmarker:
    """One MediaPipe Face Landmarker in VIDEO mode (tracking across frames of one video).

    Use as a context manager, or call :meth:`close`: MediaPipe may crash at interpreter exit if a
    landmarker is left open. Not thread-safe; give each worker its own.

    Args:
        model: path of the ``.task`` bundle with blendshapes.
        min_confidence: face detection / presence / tracking confidence thresholds.
    """

    def __init__(self, model: str | os.PathLike[str], min_confidence: float = 0.5) -> None:
        mp = require_mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision

        path = check_model(model)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        try:
            with _quiet_native_logs():
                self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as e:
            raise AvitalkError(f"{path}: cannot load it as a MediaPipe Face Landmarker model: {e}") from None
        self._mp = mp
        self._columns: dict[tuple[str, ...], np.ndarray] = {}
        self._last_ms = -1
        self._first = True

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def _cols(self, names: tuple[str, ...]) -> np.ndarray:
        cols = self._columns.get(names)
        if cols is None:
            try:
                cols = self._columns[names] = blendshape_columns(names)
            except ValueError as e:
                raise AvitalkError(f"unexpected Face Landmarker blendshapes: {e}") from None
        return cols

    def estimate(self, frame: np.ndarray, timestamp_ms: int) -> np.ndarray | None:
        """``arkit52`` values of the face in one frame, or None if no face was found.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB.
            timestamp_ms: frame time; must increase from call to call.

        Returns:
            ``(55,)`` float32: 51 blendshape weights (``tongueOut`` is 0) and head pitch/yaw/roll (rad).
        """
        if self._landmarker is None:
            raise RuntimeError("FaceLandmarker is closed")
        timestamp_ms = max(int(timestamp_ms), self._last_ms + 1)
        self._last_ms = timestamp_ms
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        if self._first:  # the graph logs more on its first frame
            with _quiet_native_logs():
                result = self._landmarker.detect_for_video(image, timestamp_ms)
            self._first = False
        else:
            result = self._landmarker.detect_for_video(image, timestamp_ms)
        if not result.face_landmarks:
            return None
        if not result.face_blendshapes or not result.facial_transformation_matrixes:
            raise AvitalkError("the MediaPipe model gives no blendshapes: use face_landmarker_v2_with_blendshapes.task")
        cats = result.face_blendshapes[0]
        cols = self._cols(tuple(c.category_name for c in cats))
        scores = np.array([c.score for c in cats], dtype=np.float32)
        out = np.zeros(ARKIT52.dim, dtype=np.float32)
        keep = cols >= 0
        out[cols[keep]] = np.clip(scores[keep], 0.0, 1.0)
        out[list(HEAD_COLUMNS)] = matrix_to_head_angles(np.asarray(result.facial_transformation_matrixes[0]))
        return out


def estimate_track(
    frames: Iterable[np.ndarray],
    fps: float,
    model: str | os.PathLike[str],
    progress: Callable[[int], None] | None = None,
) -> RawTrack:
    """Run a fresh landmarker over the frames of one video (frame ``i`` at ``i / fps`` s).

    Args:
        frames: ``(H, W, 3)`` uint8 RGB frames in order.
        fps: their frame rate.
        model: path of the ``.task`` bundle.
        progress: called with the number of frames processed since the previous call (every ~25).

    Returns:
        The :class:`RawTrack` (``T`` = number of frames).
    """
    rows: list[np.ndarray] = []
    mask: list[bool] = []
    zeros = np.zeros(ARKIT52.dim, dtype=np.float32)
    pending = 0
    with FaceLandmarker(model) as landmarker:
        for i, frame in enumerate(frames):
            est = landmarker.estimate(frame, round(i * 1000.0 / fps))
            rows.append(zeros if est is None else est)
            mask.append(est is not None)
            pending += 1
            if progress is not None and pending >= 25:
                progress(pending)
                pending = 0
    if progress is not None and pending:
        progress(pending)
    values = np.stack(rows) if rows else np.zeros((0, ARKIT52.dim), dtype=np.float32)
    return RawTrack(values=values.astype(np.float32), mask=np.array(mask, dtype=bool), fps=fps)
