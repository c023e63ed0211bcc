"""Face model registry: turn a user's face spec string into a :class:`~avitalk.face.base.FaceModel`.

Specs:
- ``builtin``: the built-in procedural face (no files needed);
- ``ict:PATH``: ICT-FaceKit from a checkout of github.com/ICT-VGL/ICT-FaceKit (the repository root
  or its ``FaceXModel`` directory), driven by ``arkit52``;
- ``flame:PATH``: a FLAME model pickle (``generic_model.pkl``, FLAME2020, ``flame2023*.pkl``),
  driven by ``flame`` (or ``flame_neck`` with ``neck=True``).

Model modules are imported lazily, so asking for one face never imports the others.
"""

from __future__ import annotations

import os
from pathlib import Path

from avitalk.errors import AvitalkError
from avitalk.face.base import FaceModel

#: Accepted spec forms, for messages and ``--help`` texts.
FACE_SPECS = ("builtin", "ict:PATH", "flame:PATH")


def load_face(
    spec: str,
    *,
    face_only: bool = True,
    neck: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> FaceModel:
    """Load the face model named by ``spec``.

    Args:
        spec: ``builtin``, ``ict:PATH`` or ``flame:PATH`` (``~`` in PATH is expanded).
        face_only: ICT only: keep the face area (default, faster to render) instead of the full head.
        neck: FLAME only: use the ``flame_neck`` motion space.
        cache_dir: ICT only: cache root (default ``$AVITALK_CACHE`` or ``~/.cache/avitalk``).

    Raises:
        AvitalkError: unknown spec, empty path, or a model that cannot be loaded.
    """
    kind, sep, rest = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "builtin" and not sep:
        return _builtin()
    if kind in ("ict", "flame") and sep:
        if not rest.strip():
            raise AvitalkError(f"face spec {spec!r} has no path; expected {kind}:PATH")
        path = Path(rest.strip()).expanduser()
        if kind == "ict":
            from avitalk.face.ict import ICTFace

            return ICTFace.load(path, face_only=face_only, cache_dir=cache_dir)
        from avitalk.face.flame import FLAMEFace

        if not path.is_file():
            raise AvitalkError(f"FLAME model file not found: {path} (expected e.g. generic_model.pkl)")
        return FLAMEFace.load(path, neck=neck)
    raise AvitalkError(f"unknown face {spec!r}; expected one of: {', '.join(FACE_SPECS)}")


def _builtin() -> FaceModel:
    try:
        from avitalk.face.builtin import BuiltinFace  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError as e:
        if e.name in ("avitalk.face.builtin",):
            raise AvitalkError("built-in face not available in this avitalk build") from None
        raise
    create = getattr(BuiltinFace, "create", None)
    return create() if callable(create) else BuiltinFace()
