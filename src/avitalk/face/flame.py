"""FLAME face model (Li et al. 2017) loaded from a user's licence-gated model pickle.

Files: ``generic_model.pkl`` (FLAME 2017/2019), FLAME2020 ``male_model.pkl`` / ``female_model.pkl`` /
``generic_model.pkl``, FLAME 2023 ``flame2023.pkl`` / ``flame2023_Open.pkl``. They are Python 2 era
pickles holding numpy arrays, ``chumpy.ch.Ch`` objects (``shapedirs``, often ``v_template``) and a
``scipy.sparse`` ``J_regressor``. :func:`load_flame_pickle` reads them with a restricted unpickler
(:class:`FlameUnpickler`) that builds only numpy arrays, harmless stand-ins for chumpy and sparse
matrices, and plain containers; any other class or function in the file is refused with an
:class:`~avitalk.errors.AvitalkError`, so a crafted file cannot run code. chumpy is never imported.

Keys used: ``v_template (5023, 3)``, ``f (9976, 3)``, ``shapedirs (5023, 3, 300 + E)`` (300 identity
components then ``E`` expression components; ``E = 100`` in FLAME 2020/2023), ``posedirs (5023, 3,
36)``, ``J_regressor (5, 5023)``, ``kintree_table (2, 5)``, ``weights (5023, 5)``. Joints: 0 global,
1 neck, 2 jaw, 3 left eye, 4 right eye. Units are metres, +Y up, the face looks down +Z.

Motion: ``flame`` (50 expression coefficients + jaw axis-angle) or ``flame_neck`` (+ neck
axis-angle). ``v = LBS(v_template + S beta + E psi, J(v_shaped), pose, W, posedirs)`` with the jaw
(and neck) rotations as the only non-zero joint rotations.

Regions (the FLAME vertex masks are gated too, so these are geometric heuristics, documented here
and computed on the neutral mesh from the eyeball joints, whose distance ``d`` sets the scale):
- ``eyes``: vertices within ``0.35 d`` of either eyeball centre (eyeballs and eyelids);
- ``lips``: vertices in the ellipse of half-width ``0.42 d`` and half-height ``0.2 d`` around the mouth
  centre and at most ``0.3 d`` behind it; the mouth centre is found on the front midline below the
  eyes, halfway between the lowest vertex not skinned to the jaw (upper lip) and the highest vertex
  skinned to the jaw (lower lip), at the frontmost depth there;
- ``upper_face``: vertices at or above ``0.25 d`` below the eye centres and at most ``0.6 d`` behind
  them (forehead, brows, eyes, upper nose; not the back of the head).
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.face.lbs import lbs
from avitalk.spaces import FLAME, FLAME_N_EXPRESSION, FLAME_NECK
from avitalk.types import MotionSpace

#: Identity (shape) components come first in ``shapedirs``; expression components follow.
FLAME_N_SHAPE = 300
#: Joint order of FLAME's kinematic tree.
JOINTS = ("global", "neck", "jaw", "eye_left", "eye_right")
_MAX_DEPTH = 64  # nesting limit when evaluating chumpy stand-ins


# --------------------------------------------------------------------------------------------
# Restricted unpickling


class _ChStandIn:
    """Stand-in for ``chumpy`` objects: keeps the pickled state; :func:`_to_array` evaluates it."""

    kind = "Ch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0] or {}
        self.state = dict(state) if isinstance(state, dict) else {}


class _ChSelect(_ChStandIn):
    kind = "Select"


class _ChReshape(_ChStandIn):
    kind = "Reshape"


class _ChTranspose(_ChStandIn):
    kind = "transpose"


class _SparseStandIn:
    """Stand-in for ``scipy.sparse`` CSC/CSR/COO matrices: keeps the state, densified by :func:`_to_array`."""

    fmt = "csc"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = dict(state) if isinstance(state, dict) else {}


class _Csc(_SparseStandIn):
    fmt = "csc"


class _Csr(_SparseStandIn):
    fmt = "csr"


class _Coo(_SparseStandIn):
    fmt = "coo"


_STANDINS: tuple[type, ...] = (_ChStandIn, _ChSelect, _ChReshape, _ChTranspose, _Csc, _Csr, _Coo)


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to our stand-ins built from ``object``."""
    if base is object and cls in _STANDINS and state is None:
        return cls()
    raise pickle.UnpicklingError(f"unsupported object reconstruction of {getattr(cls, '__name__', cls)!r}")


def _safe_encode(obj: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes: latin-1 text only."""
    if isinstance(obj, str) and codecs.lookup(encoding).name == "iso8859-1":
        return obj.encode("latin1")
    raise pickle.UnpicklingError("unsupported use of _codecs.encode")


def _numpy_helpers() -> dict[str, Any]:
    arr = np.arange(2)
    return {
        "_reconstruct": arr.__reduce__()[0],
        "scalar": np.float64(0).__reduce__()[0],
        "_frombuffer": arr.__reduce_ex__(5)[0],
    }


_NP = _numpy_helpers()
_SPARSE_MODULES = {f"scipy.sparse.{m}" for m in ("csc", "_csc", "csr", "_csr", "coo", "_coo")}
_SPARSE_CLASSES: dict[str, type] = {
    "csc_matrix": _Csc,
    "csc_array": _Csc,
    "csr_matrix": _Csr,
    "csr_array": _Csr,
    "coo_matrix": _Coo,
    "coo_array": _Coo,
}
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(m, n): _NP[n] for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")},
    **{(m, "_frombuffer"): _NP["_frombuffer"] for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(m, "set"): set for m in ("__builtin__", "builtins")},
    **{(m, "frozenset"): frozenset for m in ("__builtin__", "builtins")},
    **{(m, "object"): object for m in ("__builtin__", "builtins")},
    **{(m, "_reconstructor"): _safe_reconstructor for m in ("copy_reg", "copyreg")},
    ("_codecs", "encode"): _safe_encode,
    ("chumpy.ch", "Ch"): _ChStandIn,
    ("chumpy.reordering", "Select"): _ChSelect,
    ("chumpy.reordering", "Reshape"): _ChReshape,
    ("chumpy.reordering", "transpose"): _ChTranspose,
    **{(m, c): k for m in _SPARSE_MODULES for c, k in _SPARSE_CLASSES.items()},
}


class FlameUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a FLAME/SMPL model file legitimately contains.

    Allowed: numpy array/dtype/scalar reconstruction helpers, ``set``/``frozenset``/``object``,
    ``copyreg._reconstructor`` (restricted to the stand-ins), latin-1 ``_codecs.encode``;
    ``chumpy.ch.Ch`` and ``chumpy.reordering.{Select,Reshape,transpose}`` map to stand-ins that
    keep their pickled state; ``scipy.sparse`` CSC/CSR/COO matrices map to stand-ins that keep
    ``data``/``indices``/``indptr``/shape. Everything else raises :class:`pickle.UnpicklingError`.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"class {module}.{name}") from None


def load_flame_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a FLAME model pickle safely.

    Returns:
        The top-level dict; chumpy and sparse objects are already converted to numpy arrays
        (``ndarray`` values), other values as stored.

    Raises:
        AvitalkError: unreadable file, not a pickle of a dict, or a class outside the allow-list
            (``refusing to load PATH: it references class X``).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AvitalkError(f"cannot read FLAME model {path}: {e.strerror or e}") from None
    try:
        obj = FlameUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        msg = str(e)
        if msg.startswith("class "):
            raise AvitalkError(
                f"refusing to load {path}: it references {msg}, which a FLAME model file does not contain"
            ) from None
        raise AvitalkError(f"{path}: not a readable FLAME model pickle ({msg})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as e:
        raise AvitalkError(f"{path}: not a readable FLAME model pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise AvitalkError(f"{path}: expected a pickled dict of FLAME arrays, found {type(obj).__name__}")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = k.decode("latin1") if isinstance(k, bytes) else k
        out[key] = _to_array(v, path, str(key)) if isinstance(v, (_ChStandIn, _SparseStandIn)) else v
    return out


def _to_array(obj: Any, path: Path, key: str, depth: int = 0) -> np.ndarray:
    """Evaluate a stand-in (or pass through an array) to a numpy array."""
    if depth > _MAX_DEPTH:
        raise AvitalkError(f"{path}: '{key}' nests chumpy objects too deeply")
    if isinstance(obj, np.ndarray):
        return obj
    try:
        if isinstance(obj, _SparseStandIn):
            return _sparse_to_dense(obj)
        if isinstance(obj, _ChStandIn):
            st = getattr(obj, "state", {})  # absent if the file never set a state
            if obj.kind == "Ch":
                return np.asarray(_to_array(st["x"], path, key, depth + 1))
            a = _to_array(st["a"], path, key, depth + 1)
            if obj.kind == "Select":
                r = a.ravel()[np.asarray(st["idxs"], dtype=np.int64)]
                return r.reshape(st["preferred_shape"]) if "preferred_shape" in st else r
            if obj.kind == "Reshape":
                return a.reshape(st["newshape"])
            return np.ascontiguousarray(np.transpose(a, st.get("axes")))
        if isinstance(obj, (int, float, list, tuple)):
            return np.asarray(obj)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise AvitalkError(f"{path}: cannot read '{key}' ({type(e).__name__}: {e})") from None
    raise AvitalkError(f"{path}: '{key}' holds {type(obj).__name__}, expected an array")


def _sparse_to_dense(m: _SparseStandIn) -> np.ndarray:
    st = getattr(m, "state", {})
    shape = tuple(int(s) for s in st.get("_shape", st.get("shape")))
    if len(shape) != 2 or min(shape) < 0 or shape[0] * shape[1] > 10**8:
        raise ValueError(f"implausible sparse matrix shape {shape}")
    data = np.asarray(st["data"], dtype=np.float64)
    out = np.zeros(shape, dtype=np.float64)
    if m.fmt == "coo":
        rows = np.asarray(st.get("row", st.get("coords", (None, None))[0]), dtype=np.int64)
        cols = np.asarray(st.get("col", st.get("coords", (None, None))[1]), dtype=np.int64)
        np.add.at(out, (rows, cols), data)
        return out
    indices = np.asarray(st["indices"], dtype=np.int64)
    indptr = np.asarray(st["indptr"], dtype=np.int64)
    major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))  # column (csc) or row (csr) of each entry
    if m.fmt == "csc":
        np.add.at(out, (indices, major), data)
    else:
        np.add.at(out, (major, indices), data)
    return out


# --------------------------------------------------------------------------------------------
# Model


class FLAMEFace:
    """FLAME posed by ``flame`` / ``flame_neck`` coefficients (implements ``FaceModel``).

    Attributes:
        name: ``"flame"``.
        space: :data:`avitalk.spaces.FLAME` or :data:`avitalk.spaces.FLAME_NECK`.
        n_expression: expression components used (channels beyond it contribute nothing).
        joints_rest: ``(5, 3)`` float32 joints of the neutral mesh.
        parents: ``(5,)`` int64 kinematic tree, ``parents[0] == -1``.
        weights: ``(V, 5)`` float32 skinning weights.
    """

    name = "flame"

    def __init__(
        self,
        template: np.ndarray,
        faces: np.ndarray,
        expr_dirs: np.ndarray,
        posedirs: np.ndarray | None,
        j_regressor: np.ndarray,
        parents: np.ndarray,
        weights: np.ndarray,
        *,
        neck: bool = False,
    ) -> None:
        """Build from arrays (use :meth:`load` for a model file).

        Args:
            template: ``(V, 3)`` rest vertices (identity already applied), metres.
            faces: ``(F, 3)`` triangles.
            expr_dirs: ``(V, 3, E)`` expression basis, ``E <= 50``.
            posedirs: ``(V, 3, 36)`` pose correctives or ``None``.
            j_regressor: ``(5, V)`` dense joint regressor.
            parents: ``(5,)`` parents, root ``-1``.
            weights: ``(V, 5)`` skinning weights.
            neck: drive the neck joint too (space ``flame_neck``).
        """
        n_v = template.shape[0]
        self.space: MotionSpace = FLAME_NECK if neck else FLAME
        self.n_expression = int(expr_dirs.shape[2])
        self._template = np.ascontiguousarray(template, dtype=np.float32)
        self._faces = np.ascontiguousarray(faces, dtype=np.int32)
        self._expr = np.ascontiguousarray(expr_dirs.reshape(n_v * 3, -1).T, dtype=np.float32)  # (E, V*3)
        self._posedirs = None if posedirs is None else np.asarray(posedirs, dtype=np.float32)
        self._jreg = np.asarray(j_regressor, dtype=np.float32)
        self.parents = np.asarray(parents, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.float32)
        self.joints_rest = (self._jreg @ self._template).astype(np.float32)
        self._regions = MappingProxyType(_flame_regions(self._template, self.joints_rest, self.weights))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        n_expression: int = FLAME_N_EXPRESSION,
        *,
        betas: np.ndarray | None = None,
        neck: bool = False,
    ) -> FLAMEFace:
        """Load a FLAME model pickle.

        Args:
            path: the model file (e.g. ``generic_model.pkl``, ``flame2023.pkl``).
            n_expression: expression components to use, ``1..50`` (the ``flame`` space has 50 channels).
            betas: optional ``(B,)`` identity coefficients, ``B <= 300``, baked into the template.
            neck: use the ``flame_neck`` space (neck rotation channels).

        Raises:
            AvitalkError: unsafe, unreadable or malformed file, or too few components.
        """
        path = Path(path)
        if not 1 <= n_expression <= FLAME_N_EXPRESSION:
            raise AvitalkError(f"n_expression must be 1..{FLAME_N_EXPRESSION}, got {n_expression}")
        d = load_flame_pickle(path)
        arr = {k: _field(d, k, path) for k in _REQUIRED}
        v = arr["v_template"].astype(np.float64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise AvitalkError(f"{path}: v_template must be (V, 3), got {v.shape}")
        n_v = v.shape[0]
        n_j = len(JOINTS)
        expect = {
            "f": (None, 3),
            "shapedirs": (n_v, 3, None),
            "J_regressor": (n_j, n_v),
            "kintree_table": (2, n_j),
            "weights": (n_v, n_j),
        }
        for k, shape in expect.items():
            got = arr[k].shape
            if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=True)):
                want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
                raise AvitalkError(f"{path}: '{k}' must have shape {want} for a FLAME model, got {got}")
        sd = arr["shapedirs"]
        if sd.shape[2] < FLAME_N_SHAPE + n_expression:
            raise AvitalkError(
                f"{path}: shapedirs has {sd.shape[2]} components; expected {FLAME_N_SHAPE} identity + at least "
                f"{n_expression} expression components"
            )
        if betas is not None:
            b = np.asarray(betas, dtype=np.float64).ravel()
            if b.size > FLAME_N_SHAPE:
                raise AvitalkError(f"betas has {b.size} coefficients; FLAME has {FLAME_N_SHAPE} identity components")
            v = v + np.asarray(sd[:, :, : b.size], dtype=np.float64) @ b
        faces = arr["f"].astype(np.int64)
        if faces.size and (faces.min() < 0 or faces.max() >= n_v):
            raise AvitalkError(f"{path}: 'f' references vertices outside 0..{n_v - 1}")
        parents = arr["kintree_table"][0].astype(np.int64)
        parents[0] = -1  # stored as 2**32 - 1 (uint32 -1) in FLAME files
        if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, n_j)):
            raise AvitalkError(f"{path}: kintree_table is not a FLAME kinematic tree: parents {parents.tolist()}")
        posedirs = d.get("posedirs")
        if posedirs is not None:
            posedirs = _to_array(posedirs, path, "posedirs")
            if posedirs.shape != (n_v, 3, 9 * (n_j - 1)):
                raise AvitalkError(
                    f"{path}: 'posedirs' must have shape ({n_v}, 3, {9 * (n_j - 1)}), got {posedirs.shape}"
                )
        expr = sd[:, :, FLAME_N_SHAPE : FLAME_N_SHAPE + n_expression]
        return cls(v, faces, expr, posedirs, arr["J_regressor"], parents, arr["weights"], neck=neck)

    @property
    def neutral(self) -> np.ndarray:
        """``(V, 3)`` float32 template (with the identity given at load), metres."""
        return self._template

    @property
    def faces(self) -> np.ndarray:
        """``(F, 3)`` int32 triangles."""
        return self._faces

    @property
    def regions(self) -> Mapping[str, np.ndarray]:
        """``lips``, ``upper_face``, ``eyes``: int64 vertex indices (heuristics, see the module docstring)."""
        return self._regions

    def vertices(self, values: np.ndarray) -> np.ndarray:
        """Pose the face.

        Args:
            values: ``(T, 53)`` (``flame``) or ``(T, 56)`` (``flame_neck``): 50 expression
                coefficients, jaw axis-angle (radians), [neck axis-angle].

        Returns:
            ``(T, V, 3)`` float32 vertices, metres.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != self.space.dim:
            raise ValueError(f"{self.name} expects (T, {self.space.dim}) {self.space.key} values, got {values.shape}")
        n_t, n_v = values.shape[0], self._template.shape[0]
        expr = values[:, : self.n_expression]  # (T, E)
        v_shaped = self._template[None] + (expr @ self._expr).reshape(n_t, n_v, 3)  # (T, V, 3)
        joints = np.einsum("jv,tvc->tjc", self._jreg, v_shaped)  # (T, 5, 3)
        pose = np.zeros((n_t, len(JOINTS), 3), dtype=np.float32)  # (T, 5, 3) axis-angle
        pose[:, 2] = values[:, FLAME_N_EXPRESSION : FLAME_N_EXPRESSION + 3]
        if self.space is FLAME_NECK:
            pose[:, 1] = values[:, FLAME_N_EXPRESSION + 3 : FLAME_N_EXPRESSION + 6]
        return lbs(v_shaped, joints, self.parents, pose, self.weights, self._posedirs)


_REQUIRED = ("v_template", "f", "shapedirs", "J_regressor", "kintree_table", "weights")


def _field(d: Mapping[str, Any], key: str, path: Path) -> np.ndarray:
    if key not in d:
        raise AvitalkError(f"{path}: missing '{key}'; expected a FLAME model with keys {sorted(_REQUIRED)}")
    val = _to_array(d[key], path, key)
    if val.dtype.kind not in "biuf":
        raise AvitalkError(f"{path}: '{key}' must be numeric, got dtype {val.dtype}")
    return val


def _flame_regions(v: np.ndarray, joints: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Heuristic ``eyes`` / ``lips`` / ``upper_face`` vertex sets (see the module docstring)."""
    eye_l, eye_r = joints[3].astype(np.float64), joints[4].astype(np.float64)
    d = float(np.linalg.norm(eye_l - eye_r))
    if d <= 0:
        raise AvitalkError("FLAME model: eyeball joints coincide; cannot place face regions")
    eye_c = (eye_l + eye_r) / 2
    dist_eye = np.minimum(np.linalg.norm(v - eye_l, axis=1), np.linalg.norm(v - eye_r, axis=1))
    eyes = dist_eye <= 0.35 * d

    # Mouth centre on the front midline below the eyes, at the jaw / non-jaw boundary.
    jaw = weights[:, 2] >= 0.5
    below = (np.abs(v[:, 0] - eye_c[0]) <= 0.1 * d) & (v[:, 1] < eye_c[1] - 0.5 * d)
    front = below & (v[:, 2] >= (v[below, 2].max() if below.any() else eye_c[2]) - 0.35 * d)
    upper_lip, lower_lip = front & ~jaw, front & jaw
    if upper_lip.any() and lower_lip.any():
        y_lo = v[upper_lip, 1].min()
        y_hi = v[lower_lip & (v[:, 1] <= y_lo + 0.2 * d), 1]
        mouth_y = (y_lo + (y_hi.max() if y_hi.size else y_lo)) / 2
    else:
        mouth_y = eye_c[1] - 1.1 * d  # typical eye-to-mouth height
    near = front & (np.abs(v[:, 1] - mouth_y) <= 0.2 * d)
    mouth_z = v[near, 2].max() if near.any() else eye_c[2]
    ell = ((v[:, 0] - eye_c[0]) / (0.42 * d)) ** 2 + ((v[:, 1] - mouth_y) / (0.2 * d)) ** 2
    lips = (ell <= 1.0) & (v[:, 2] >= mouth_z - 0.3 * d)

    upper = (v[:, 1] >= eye_c[1] - 0.25 * d) & (v[:, 2] >= eye_c[2] - 0.6 * d)
    return {k: np.flatnonzero(m).astype(np.int64) for k, m in (("lips", lips), ("upper_face", upper), ("eyes", eyes))}
