"""Head pose from face landmarks: known rotations are recovered; a mirror flips the yaw."""

from __future__ import annotations

import numpy as np
import pytest

from annotate.head_pose import EYE_LEFT, EYE_RIGHT, MOUTH_LEFT, MOUTH_RIGHT, euler_from_matrix, head_pose, matrix_from_euler


def _face(yaw, pitch, roll=0.0) -> np.ndarray:
    """478x3 landmarks with the four used points of a frontal face, rotated."""
    pts = np.zeros((478, 3))
    pts[EYE_LEFT], pts[EYE_RIGHT] = (-45, -35, 0), (45, -35, 0)
    pts[MOUTH_LEFT], pts[MOUTH_RIGHT] = (-25, 30, 0), (25, 30, 0)
    return pts @ matrix_from_euler(yaw, pitch, roll).T + (256, 256, 0)


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 0), (30, -10, 5), (-50, 20, -8)])
def test_known_rotations_are_recovered(yaw, pitch, roll):
    assert head_pose(_face(yaw, pitch, roll)) == pytest.approx((yaw, pitch, roll), abs=1e-6)


def test_euler_round_trip_and_sign_convention():
    r = matrix_from_euler(20, 10, 0)
    assert euler_from_matrix(r) == pytest.approx((20, 10, 0))
    forward = r @ np.array([0, 0, -1.0])  # where the face looks, camera axes
    assert forward[0] < 0 and forward[1] > 0  # yaw > 0: towards image left; pitch > 0: down


def test_degenerate_face_gives_none():
    assert head_pose(np.zeros((478, 3))) is None


def test_turned_face_in_a_real_photo_and_its_mirror():
    import mediapipe as mp

    from mentor.testmedia import _base_image

    img = np.ascontiguousarray(_base_image("camera", 384))  # a face turned well to one side
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=False) as mesh:
        poses = []
        for im in (img, np.ascontiguousarray(img[:, ::-1])):
            lm = mesh.process(im).multi_face_landmarks[0].landmark
            poses.append(head_pose(np.array([[p.x * 384, p.y * 384, p.z * 384] for p in lm])))
    (yaw, pitch, _), (yaw_m, pitch_m, _) = poses
    assert abs(yaw) > 30 and np.sign(yaw) == -np.sign(yaw_m) and abs(abs(yaw) - abs(yaw_m)) < 10
    assert abs(pitch - pitch_m) < 10
