"""The registry of motion spaces: ``arkit52`` (default) and ``flame`` (the paper's space).

``arkit52`` is Apple's 52 ARKit blendshape names in Apple's order (the order of
``ARFaceAnchor.BlendShapeLocation`` in Apple's documentation and of Live Link Face CSV files),
followed by head pitch, yaw and roll in radians. ``flame`` is 50 FLAME expression coefficients and
the 3-d axis-angle jaw pose; ``flame_neck`` adds the 3-d neck pose.
"""

from __future__ import annotations

from avitalk.errors import AvitalkError
from avitalk.types import MotionSpace

ARKIT_BLENDSHAPES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip
HEAD_ROTATIONS: tuple[str, ...] = ("headPitch", "headYaw", "headRoll")

ARKIT52 = MotionSpace(
    name="arkit52",
    version=1,
    channels=ARKIT_BLENDSHAPES + HEAD_ROTATIONS,
    units=("weight",) * len(ARKIT_BLENDSHAPES) + ("rad",) * 3,
)

FLAME_N_EXPRESSION = 50
_FLAME_EXPR = tuple(f"expr{i:02d}" for i in range(FLAME_N_EXPRESSION))
_JAW = ("jawPoseX", "jawPoseY", "jawPoseZ")
_NECK = ("neckPoseX", "neckPoseY", "neckPoseZ")
FLAME = MotionSpace(name="flame", version=1, channels=_FLAME_EXPR + _JAW, units=("coef",) * 50 + ("rad",) * 3)
FLAME_NECK = MotionSpace(
    name="flame_neck", version=1, channels=_FLAME_EXPR + _JAW + _NECK, units=("coef",) * 50 + ("rad",) * 6
)

DEFAULT_SPACE = ARKIT52
SPACES: dict[str, MotionSpace] = {s.name: s for s in (ARKIT52, FLAME, FLAME_NECK)}


RIGID_CHANNELS: dict[str, tuple[str, ...]] = {"arkit52": HEAD_ROTATIONS, "flame": (), "flame_neck": _NECK}
"""Per space, the channels that move the whole head rigidly (head / neck rotation), not the face.

Lip-sync metrics are computed on the face with these set to zero, as the field's benchmarks do
(VOCASET and BIWI meshes are rigidly registered; MEAD evaluations use FLAME expression + jaw)."""


def rigid_indices(space: MotionSpace) -> tuple[int, ...]:
    """Indices of :data:`RIGID_CHANNELS` of ``space`` (empty for spaces without rigid head channels)."""
    return tuple(space.index(c) for c in RIGID_CHANNELS.get(space.name, ()) if c in space.channels)


def get_space(name: str) -> MotionSpace:
    """Look up a motion space by ``name`` or ``name@vN``; unknown names are a user error."""
    base, _, ver = name.partition("@v")
    space = SPACES.get(base)
    if space is None:
        raise AvitalkError(f"unknown motion space {name!r}; known: {', '.join(sorted(SPACES))}")
    if ver and int(ver) != space.version:
        raise AvitalkError(f"motion space {name!r} is not supported; this avitalk has {space.key}")
    return space


def space_from_json(d: dict) -> MotionSpace:
    """Rebuild a space stored in a file and check it against the registry.

    Raises:
        AvitalkError: the stored channels differ from the registered space of that name/version.
    """
    try:
        stored = MotionSpace(d["name"], int(d["version"]), tuple(d["channels"]), tuple(d["units"]))
    except (KeyError, TypeError, ValueError) as e:
        raise AvitalkError(f"malformed motion space description: {e}") from None
    known = get_space(f"{stored.name}@v{stored.version}")
    known.require_same(stored, "stored motion space")
    return known
