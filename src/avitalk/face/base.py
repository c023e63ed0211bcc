"""The ``FaceModel`` protocol shared by ICT-FaceKit, FLAME and the built-in face.

Conventions (all face models):
- vertices are float32 in **metres**, right-handed, +Y up, +Z towards the viewer (camera looks
  down -Z), the head roughly centred at the origin;
- ``faces`` are triangles (quads are split), int32 ``(F, 3)``, counter-clockwise seen from outside;
- ``regions`` maps at least ``"lips"``, ``"upper_face"`` and ``"eyes"`` to int64 vertex-index
  arrays (used by metrics such as LVE and FDD).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from avitalk.types import MotionSpace


@runtime_checkable
class FaceModel(Protocol):
    """Maps motion coefficients in :attr:`space` to mesh vertices."""

    name: str
    space: MotionSpace

    @property
    def neutral(self) -> np.ndarray:
        """``(V, 3)`` float32 vertices of the neutral face (all coefficients zero)."""
        ...

    @property
    def faces(self) -> np.ndarray:
        """``(F, 3)`` int32 triangle vertex indices."""
        ...

    @property
    def regions(self) -> Mapping[str, np.ndarray]:
        """Named vertex-index sets: ``lips``, ``upper_face``, ``eyes`` (int64 arrays)."""
        ...

    def vertices(self, values: np.ndarray) -> np.ndarray:
        """Pose the face.

        Args:
            values: ``(T, D)`` float32 coefficients in :attr:`space` (``D == space.dim``).

        Returns:
            ``(T, V, 3)`` float32 vertices in metres.
        """
        ...
