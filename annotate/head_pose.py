"""Head pose (yaw, pitch, roll) from six face landmarks and a generic 3D face (solvePnP).

Conventions: camera x right, y down, z forward (into the scene). A face looking straight
into the camera has yaw = pitch = roll = 0; yaw > 0 when the face turns towards the
image's left side, pitch > 0 when it looks down. Degrees.
"""

from __future__ import annotations

import numpy as np

# FaceMesh ids of the six points: nose tip, chin, outer eye corners and mouth corners
# (image-left first: 33 is the person's right eye).
MESH_IDS = (1, 152, 33, 263, 61, 291)

# A generic face in the same order (arbitrary units ~ 0.1 mm), camera axes, nose tip at 0.
MODEL_POINTS = np.array([
    [0.0, 0.0, 0.0],          # nose tip
    [0.0, 330.0, 65.0],       # chin
    [-225.0, -170.0, 135.0],  # image-left eye, outer corner
    [225.0, -170.0, 135.0],   # image-right eye, outer corner
    [-150.0, 150.0, 125.0],   # image-left mouth corner
    [150.0, 150.0, 125.0],    # image-right mouth corner
], dtype=np.float64)


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


def head_pose(points: np.ndarray, width: int, height: int) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) degrees from the six MESH_IDS points of one face.

    points: 6x2 pixel coordinates (x, y) in an image of `width` x `height`; the camera is
    assumed to have focal length max(width, height) and its centre in the middle.
    Returns None when solvePnP finds no solution.
    """
    import cv2

    pts = np.asarray(points, dtype=np.float64).reshape(6, 2)
    f = float(max(width, height))
    cam = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)
    ok, rvec, tvec = cv2.solvePnP(MODEL_POINTS, pts, cam, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or tvec[2, 0] <= 0:
        return None
    rot, _ = cv2.Rodrigues(rvec)
    return euler_from_matrix(rot)
