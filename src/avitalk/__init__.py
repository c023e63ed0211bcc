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
    "Pipeline",
    "__version__",
    "get_space",
]


def __getattr__(name: str):  # lazy: `import avitalk` stays fast, `from avitalk import Pipeline` works
    if name == "Pipeline":
        import importlib  # by name, so the package root does not depend on the top layer (import-linter)

        return importlib.import_module("avitalk.pipeline").Pipeline
    raise AttributeError(f"module 'avitalk' has no attribute {name!r}")
