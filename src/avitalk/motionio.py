"""Read and write :class:`~avitalk.types.Motion` files: avitalk NPZ and ARKit CSV (Live Link Face).

NPZ layout (``numpy.savez``, no pickled objects; strings are unicode arrays)::

    values    (T, D) float32   coefficients, channels in ``channels`` order
    channels  (D,)   <U        channel names, must equal the motion space's
    fps       ()     float64   frames per second
    space     ()     <U        motion-space key ``name@vN`` (e.g. ``arkit52@v1``)
    format    ()     <U        ``avitalk-motion@v1``

ARKit CSV is the layout Epic's Live Link Face app records and Unreal / Unity tools import:
``Timecode, BlendShapeCount``, the 52 blendshapes capitalised (``EyeBlinkLeft`` ...) in Apple's
order, ``HeadYaw, HeadPitch, HeadRoll`` and six eye-rotation columns. Head rotations in these
files are *normalised*: Epic's ARKit face support writes ``degrees / 180`` (-1..1 for -180..180
degrees), so ``radians = value * pi`` (:data:`LIVE_LINK_HEAD_SCALE`). Writing lives in
:mod:`avitalk.face.export`; reading is here so every command accepts both.

Every problem with a file is one :class:`~avitalk.errors.AvitalkError` line that names the file,
the problem and what was expected.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_path
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES, get_space
from avitalk.types import Motion

#: Identifier stored in every motion NPZ.
MOTION_FORMAT = "avitalk-motion@v1"
_NPZ_KEYS = ("values", "channels", "fps", "space")

#: Live Link Face CSV columns after ``Timecode, BlendShapeCount`` and the 52 blendshapes.
LIVE_LINK_HEAD = ("HeadYaw", "HeadPitch", "HeadRoll")
LIVE_LINK_HEAD_SCALE = float(np.pi)
"""Radians per unit of a Live Link Face head-rotation column (the CSV stores degrees / 180)."""
LIVE_LINK_EYES = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
#: The 52 blendshape column names (Apple's names with a capital first letter, Apple's order).
LIVE_LINK_BLENDSHAPES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_BLENDSHAPES)
LIVE_LINK_COLUMNS: tuple[str, ...] = (
    "Timecode",
    "BlendShapeCount",
    *LIVE_LINK_BLENDSHAPES,
    *LIVE_LINK_HEAD,
    *LIVE_LINK_EYES,
)
#: Frame rates a Live Link timecode's frame field is matched against when the rate is not given.
_STANDARD_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 100.0, 120.0)


def save_motion(path: str | os.PathLike[str], motion: Motion) -> None:
    """Write ``motion`` to ``path`` as an avitalk motion NPZ, atomically.

    Raises:
        AvitalkError: the values contain NaN or infinity.
    """
    values = np.asarray(motion.values, dtype=np.float32)
    _check_finite(values, Path(path))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            values=values,
            channels=np.array(motion.space.channels, dtype=np.str_),
            fps=np.float64(motion.fps),
            space=np.array(motion.space.key, dtype=np.str_),
            format=np.array(MOTION_FORMAT, dtype=np.str_),
        )


def load_motion(path: str | os.PathLike[str], *, fps: float | None = None) -> Motion:
    """Load a motion from an avitalk NPZ or an ARKit (Live Link Face) CSV file.

    Args:
        path: ``.npz`` or ``.csv`` file (the format is detected from the content).
        fps: frame rate for CSV files; default: inferred from the timecodes' frame field
            (ignored for NPZ, which stores its rate).

    Raises:
        AvitalkError: missing file, unknown format, missing keys, channels that do not match the
            stored motion space, unknown space, wrong shape, NaN/Inf values.
    """
    p = Path(path)
    if not p.exists():
        raise AvitalkError(f"{p}: no such motion file")
    if p.is_dir():
        raise AvitalkError(f"{p}: is a directory, expected a motion file (.npz or .csv)")
    if zipfile.is_zipfile(p):
        return _load_npz(p)
    if p.suffix.lower() == ".csv" or _looks_like_live_link(p):
        return load_arkit_csv(p, fps=fps)
    raise AvitalkError(f"{p}: not a motion file; expected an avitalk motion .npz or an ARKit (Live Link Face) .csv")


def _load_npz(p: Path) -> Motion:
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise AvitalkError(
                    f"{p}: motion NPZ is missing {', '.join(missing)}; expected keys {', '.join(_NPZ_KEYS)}"
                )
            if "format" in z.files and str(z["format"]) != MOTION_FORMAT:
                raise AvitalkError(f"{p}: motion file format {str(z['format'])!r}; this avitalk reads {MOTION_FORMAT}")
            values = z["values"]
            channels = z["channels"]
            fps_arr = z["fps"]
            space_arr = z["space"]
    except AvitalkError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        msg = str(e).split("\n")[0]
        raise AvitalkError(
            f"{p}: cannot read motion NPZ ({msg}); expected numpy arrays without pickled objects"
        ) from None
    if space_arr.dtype.kind != "U" or space_arr.ndim != 0:
        raise AvitalkError(f"{p}: 'space' must be a string like {ARKIT52.key!r}")
    try:
        space = get_space(str(space_arr))
    except AvitalkError as e:
        raise AvitalkError(f"{p}: {e}") from None
    if fps_arr.dtype.kind not in "fiu" or fps_arr.size != 1:
        raise AvitalkError(f"{p}: 'fps' must be one number, got dtype {fps_arr.dtype} shape {fps_arr.shape}")
    rate = float(fps_arr.reshape(()))
    if not (math.isfinite(rate) and rate > 0):
        raise AvitalkError(f"{p}: fps must be a positive number, got {rate}")
    if values.dtype.kind not in "fiu":
        raise AvitalkError(f"{p}: 'values' must be numeric, got dtype {values.dtype}")
    if values.ndim != 2 or values.shape[1] != space.dim:
        raise AvitalkError(
            f"{p}: values have shape {tuple(values.shape)} but motion space {space.key} needs (T, {space.dim})"
        )
    if channels.dtype.kind != "U" or channels.shape != (space.dim,):
        raise AvitalkError(f"{p}: 'channels' must list the {space.dim} channel names of {space.key}")
    names = tuple(str(c) for c in channels)
    if names != space.channels:
        bad = next(i for i, (a, b) in enumerate(zip(names, space.channels, strict=True)) if a != b)
        raise AvitalkError(
            f"{p}: channel {bad} is {names[bad]!r} but motion space {space.key} has {space.channels[bad]!r} there"
        )
    values = values.astype(np.float32)
    _check_finite(values, p)
    return Motion(values=values, space=space, fps=rate)


def _check_finite(values: np.ndarray, p: Path) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        t, d = np.argwhere(bad)[0]
        raise AvitalkError(
            f"{p}: motion has {int(bad.sum())} NaN/infinite values (first at frame {t}, channel {d}); "
            "expected finite numbers"
        )


def _looks_like_live_link(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf").startswith(b"Timecode,")


def load_arkit_csv(path: str | os.PathLike[str], *, fps: float | None = None) -> Motion:
    """Read a Live Link Face CSV as an ``arkit52`` motion.

    Columns are matched by name (case-insensitive), so files with extra or reordered columns load;
    the 52 blendshapes and ``HeadYaw/HeadPitch/HeadRoll`` (normalised, ``degrees / 180``; converted
    to radians; missing head columns mean 0)
    are used, eye rotations are ignored. Rows are taken as consecutive frames.

    Args:
        path: the CSV file.
        fps: frame rate; default: inferred from the timecode frame field (``HH:MM:SS:FF.fff``):
            largest ``FF`` + 1 if the field wraps (the clip spans a second boundary), else the
            smallest standard rate above the largest ``FF`` (a guess: pass ``fps`` for such clips).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise AvitalkError(f"{p}: not a text CSV file; expected an ARKit (Live Link Face) CSV") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise AvitalkError(f"{p}: empty CSV; expected a header {', '.join(LIVE_LINK_COLUMNS[:4])}, ...")
    header = [c.strip().lower() for c in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    missing = [n for n in LIVE_LINK_BLENDSHAPES if n.lower() not in col]
    if missing:
        raise AvitalkError(
            f"{p}: CSV lacks {len(missing)} ARKit blendshape columns (e.g. {missing[0]!r}); "
            "expected the Live Link Face layout (Timecode, BlendShapeCount, EyeBlinkLeft, ...)"
        )
    body = rows[1:]
    if not body:
        raise AvitalkError(f"{p}: CSV has a header but no frames")
    # our channel order: 52 blendshapes, then headPitch, headYaw, headRoll
    sources = [col[n.lower()] for n in LIVE_LINK_BLENDSHAPES] + [
        col.get(n.lower(), -1) for n in ("HeadPitch", "HeadYaw", "HeadRoll")
    ]
    values = np.zeros((len(body), ARKIT52.dim), dtype=np.float32)
    for t, row in enumerate(body):
        for d, c in enumerate(sources):
            if c < 0:
                continue
            if c >= len(row):
                raise AvitalkError(f"{p}: line {t + 2} has {len(row)} fields, expected {len(header)}")
            try:
                values[t, d] = float(row[c])
            except ValueError:
                raise AvitalkError(f"{p}: line {t + 2}, column {rows[0][c]!r}: {row[c]!r} is not a number") from None
    values[:, len(LIVE_LINK_BLENDSHAPES) :] *= LIVE_LINK_HEAD_SCALE  # normalised -> radians
    _check_finite(values, p)
    if fps is None:
        fps = _infer_timecode_rate([r[col["timecode"]] for r in body] if "timecode" in col else [], p)
    return Motion(values=values, space=ARKIT52, fps=float(fps))


def _infer_timecode_rate(timecodes: list[str], p: Path) -> float:
    frames = []
    for tc in timecodes:
        parts = tc.strip().split(":")
        if len(parts) != 4:
            raise AvitalkError(f"{p}: timecode {tc!r} is not HH:MM:SS:FF(.fff); pass the frame rate explicitly")
        try:
            frames.append(float(parts[3]))
        except ValueError:
            raise AvitalkError(f"{p}: timecode {tc!r} has a non-numeric frame field") from None
    if not frames:
        raise AvitalkError(f"{p}: CSV has no Timecode column; pass the frame rate explicitly")
    ff = [int(f) for f in frames]
    top = max(ff)
    if any(b < a for a, b in itertools.pairwise(ff)):  # the frame field wrapped: a second passed
        return float(top + 1)
    for rate in _STANDARD_RATES:  # shorter than a second: a guess
        if rate > top:
            return rate
    raise AvitalkError(f"{p}: timecode frame numbers reach {top}; pass the frame rate explicitly")


__all__ = [
    "LIVE_LINK_BLENDSHAPES",
    "LIVE_LINK_COLUMNS",
    "MOTION_FORMAT",
    "load_arkit_csv",
    "load_motion",
    "save_motion",
]
