"""Head pose (yaw, pitch, roll) from FaceMesh's 3D landmarks, geometrically.

The face's own axes are read off four landmarks: x along the outer eye corners, y from
the eyes' midpoint down to the mouth's midpoint (made orthogonal to x), z = x cross y.
This needs no generic 3D face and no focal length; a 6-point solvePnP with the usual
generic face was tried here and read a frontal photo as 36 deg pitched down, because
FaceMesh's nose-tip point does not sit where that model puts it.

Conventions: camera x right, y down, z forward (into the scene). A face looking straight
into the camera has yaw = pitch = roll = 0; yaw > 0 when the face turns towards the
image's left side, pitch > 0 when it looks down. Degrees.
"""

from __future__ import annotations

import numpy as np

# FaceMesh ids: outer eye corners and mouth corners, image-left first (33 is the
# person's right eye).
EYE_LEFT, EYE_RIGHT, MOUTH_LEFT, MOUTH_RIGHT = 33, 263, 61, 291


def euler_from_matrix(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees of a 3x3 rotation R = Ry(yaw) @ Rx(pitch) @ Rz(roll)."""
    pitch = np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[0, 2], r[2, 2])
    roll = np.arctan2(r[1, 0], r[1, 1])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def matrix_from_euler(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """3x3 rotation Ry(yaw) @ Rx(pitch) @ Rz(roll) from degrees (the inverse of the above)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) degrees of one face.

    landmarks: Nx3 FaceMesh points (N >= 292) in one isotropic scale, e.g. (x * W, y * H,
    z * W) of MediaPipe's normalised output. None for a degenerate face.
    """
    p = np.asarray(landmarks, dtype=np.float64)
    x = p[EYE_RIGHT] - p[EYE_LEFT]
    down = (p[MOUTH_LEFT] + p[MOUTH_RIGHT]) / 2 - (p[EYE_LEFT] + p[EYE_RIGHT]) / 2
    nx = np.linalg.norm(x)
    if nx < 1e-9:
        return None
    x /= nx
    y = down - down.dot(x) * x
    ny = np.linalg.norm(y)
    if ny < 1e-9:
        return None
    y /= ny
    return euler_from_matrix(np.stack([x, y, np.cross(x, y)], axis=1))
