"""Typed model points: the places on SMPL-X a 2D landmark can observe.

A point is a joint, a mesh vertex, one of the 51 static face landmarks (fixed triangles)
or one of the 17 contour landmarks (the jaw line, whose triangles follow the neck's yaw).
`output_index` says where smplx's own forward pass puts the point in its `joints` output
(55 joints, 21 keypoint vertices, 51 static + 17 contour landmarks), for tests and for
ground truth rendered with the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mentor.body.constants import (KEYPOINT_NAMES, NUM_CONTOUR_LANDMARKS, NUM_JOINTS, NUM_STATIC_LANDMARKS,
                                   VERTEX_IDS)

PointKind = Literal["joint", "vertex", "landmark", "contour"]
KINDS: tuple[PointKind, ...] = ("joint", "vertex", "landmark", "contour")
_KEYPOINT_OUTPUT = {VERTEX_IDS[name]: NUM_JOINTS + k for k, name in enumerate(KEYPOINT_NAMES)}


@dataclass(frozen=True)
class ModelPoint:
    """kind "joint" (index 0..54), "vertex" (a mesh vertex id), "landmark" (static face
    landmark 0..50, iBUG 17..67) or "contour" (contour landmark 0..16, iBUG 0..16)."""

    kind: PointKind
    index: int

    def __post_init__(self) -> None:
        limit = {"joint": NUM_JOINTS, "landmark": NUM_STATIC_LANDMARKS, "contour": NUM_CONTOUR_LANDMARKS}
        if self.kind not in KINDS:
            raise ValueError(f"model point kind {self.kind!r}: use one of {KINDS}")
        if self.index < 0 or (self.kind in limit and self.index >= limit[self.kind]):
            raise ValueError(f"model point {self.kind} {self.index}: index out of 0..{limit.get(self.kind, 'V')}")

    @classmethod
    def joint(cls, j: int) -> "ModelPoint":
        return cls("joint", j)

    @classmethod
    def vertex(cls, name_or_id: str | int) -> "ModelPoint":
        """A vertex by id, or by smplx's keypoint name ("nose", "lthumb", "LHeel", ...)."""
        return cls("vertex", VERTEX_IDS[name_or_id] if isinstance(name_or_id, str) else name_or_id)

    @classmethod
    def landmark(cls, k: int) -> "ModelPoint":
        return cls("landmark", k)

    @classmethod
    def contour(cls, k: int) -> "ModelPoint":
        return cls("contour", k)

    @classmethod
    def ibug(cls, i: int) -> "ModelPoint":
        """The SMPL-X landmark of iBUG-68 point i (0..16 the contour, 17..67 static)."""
        return cls.contour(i) if i < NUM_CONTOUR_LANDMARKS else cls.landmark(i - NUM_CONTOUR_LANDMARKS)

    @property
    def output_index(self) -> int:
        """Index of this point in smplx.SMPLX(use_face_contour=True)(...).joints."""
        if self.kind == "joint":
            return self.index
        if self.kind == "vertex":
            if self.index not in _KEYPOINT_OUTPUT:
                raise ValueError(f"vertex {self.index} is not one of smplx's keypoint vertices {sorted(_KEYPOINT_OUTPUT)}")
            return _KEYPOINT_OUTPUT[self.index]
        base = NUM_JOINTS + len(KEYPOINT_NAMES)
        return base + self.index + (NUM_STATIC_LANDMARKS if self.kind == "contour" else 0)
