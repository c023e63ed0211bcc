"""Face layer: face models (coefficients -> vertices), CPU renderer, video writer, exporters.

No learned weights live here. Imports only ``avitalk.types``/``avitalk.spaces`` and below.
"""

from avitalk.face.base import FaceModel

__all__ = ["FaceModel"]
