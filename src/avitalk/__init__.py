"""avitalk: expressive speech-driven 3D talking faces steered by natural-language visual instructions.

An open implementation of AVI-Talking (Sun et al., arXiv 2402.16124).
"""

__version__ = "0.1.0.dev0"

from avitalk.errors import AvitalkError
from avitalk.spaces import ARKIT52, FLAME, get_space
from avitalk.types import Audio, Instruction, MeshSequence, Motion, MotionSpace

__all__ = [
    "ARKIT52",
    "FLAME",
    "Audio",
    "AvitalkError",
    "Instruction",
    "MeshSequence",
    "Motion",
    "MotionSpace",
    "__version__",
    "get_space",
]
