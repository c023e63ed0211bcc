"""Boundary types passed between the stages (see docs/architecture in DESIGN.md).

All arrays are numpy, float32 unless stated. Shapes are given per field; ``T`` is time (frames or
samples), ``D`` the channel count of a motion space, ``V`` vertices, ``F`` faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avitalk.errors import AvitalkError, SpaceMismatchError


@dataclass(frozen=True)
class MotionSpace:
    """A named, versioned set of motion channels.

    Attributes:
        name: registry name, e.g. ``"arkit52"`` or ``"flame"``.
        version: bumped whenever the channel list or units change.
        channels: channel names in storage order; ``len(channels) == D``.
        units: one unit per channel: ``"weight"`` (blendshape weight, nominally 0..1),
            ``"rad"`` (rotation in radians) or ``"coef"`` (unbounded PCA coefficient).
    """

    name: str
    version: int
    channels: tuple[str, ...]
    units: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.units):
            raise ValueError("channels and units must have the same length")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"duplicate channel names in motion space {self.name}")

    @property
    def dim(self) -> int:
        """Number of channels ``D``."""
        return len(self.channels)

    @property
    def key(self) -> str:
        """``name@vversion``, the identifier stored in files."""
        return f"{self.name}@v{self.version}"

    def index(self, channel: str) -> int:
        """Position of ``channel``; raises ``KeyError`` naming the space if absent."""
        try:
            return self.channels.index(channel)
        except ValueError:
            raise KeyError(f"channel {channel!r} is not in motion space {self.key}") from None

    def require_same(self, other: MotionSpace, what: str = "data") -> None:
        """Raise :class:`SpaceMismatchError` naming both spaces unless ``other`` equals ``self``."""
        if other != self:
            raise SpaceMismatchError(
                f"{what} is in motion space {other.key} ({other.dim} channels) "
                f"but {self.key} ({self.dim} channels) was expected"
            )

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "channels": list(self.channels), "units": list(self.units)}


@dataclass(frozen=True)
class Audio:
    """Mono audio.

    Attributes:
        samples: ``(T,)`` float32 in [-1, 1].
        sample_rate: Hz (16 000 inside avitalk).
    """

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / self.sample_rate


@dataclass(frozen=True)
class SpeechFeatures:
    """Frozen speech-encoder output: ``values`` ``(T_a, D)`` at ``frame_rate`` Hz."""

    values: np.ndarray
    frame_rate: float


@dataclass(frozen=True)
class Instruction:
    """A visual instruction, e.g. "A woman feels fairly angry and speaks with lowered brows"."""

    text: str


@dataclass(frozen=True)
class StyleCode:
    """A talking-style embedding ``z`` of shape ``(D_z,)``."""

    z: np.ndarray


@dataclass(frozen=True)
class Motion:
    """Per-frame face coefficients.

    Attributes:
        values: ``(T, D)`` float32, channels in ``space.channels`` order.
        space: the motion space of the channels.
        fps: frames per second.
    """

    values: np.ndarray
    space: MotionSpace
    fps: float

    def __post_init__(self) -> None:
        v = self.values
        if v.ndim != 2 or v.shape[1] != self.space.dim:
            raise AvitalkError(
                f"motion has shape {tuple(v.shape)} but space {self.space.key} needs (T, {self.space.dim})"
            )
        if self.fps <= 0:
            raise AvitalkError(f"motion fps must be positive, got {self.fps}")

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def channel(self, name: str) -> np.ndarray:
        """``(T,)`` values of one channel."""
        return self.values[:, self.space.index(name)]


@dataclass(frozen=True)
class MeshSequence:
    """Animated mesh: ``vertices`` ``(T, V, 3)`` float32, ``faces`` ``(F, 3)`` int, at ``fps``."""

    vertices: np.ndarray
    faces: np.ndarray
    fps: float
    extra: dict = field(default_factory=dict)


__all__ = [
    "Audio",
    "Instruction",
    "MeshSequence",
    "Motion",
    "MotionSpace",
    "SpaceMismatchError",
    "SpeechFeatures",
    "StyleCode",
]
