"""Stage-2 evaluation: pure metric functions over vertex and coefficient sequences."""

from avitalk.eval.metrics import (
    jitter,
    lip_vertex_error,
    mean_vertex_error,
    motion_diversity,
    upper_face_dynamics_deviation,
)

__all__ = [
    "jitter",
    "lip_vertex_error",
    "mean_vertex_error",
    "motion_diversity",
    "upper_face_dynamics_deviation",
]
