"""Which SMPL-X point each MediaPipe Holistic landmark observes, and how much to trust it.

A model point is one of:
  ("joint", j)   SMPL-X joint j (smplx/joint_names.py order, 0..54),
  ("vertex", v)  a mesh vertex (smplx/vertex_ids.py: fingertips, nose, eyes, ears),
  ("face", k)    SMPL-X face landmark k: 0..50 the static ones (iBUG 17..67: brows, nose,
                 eyes, mouth), 51..67 the dynamic contour (iBUG 0..16, the jaw line).

Reasoning, group by group:
- Pose (33): shoulders/elbows/wrists/knees/ankles are joint centres in both models.
  MediaPipe's hips sit higher and wider than SMPL-X's hip joints (which are inside the
  pelvis), as OpenPose's do; smplify-x fits them anyway, with less weight, and so do we.
  Nose, eyes and ears go to the vertices smplx itself uses for OpenPose's face
  keypoints. Heels and foot tips go to the heel/big-toe vertices. MediaPipe's
  pinky/index/thumb points are rough hand-box corners: left out, the hand model has them.
  Mouth corners and inner/outer eye corners are left to the face mesh, which is finer.
- Hands (21): MediaPipe's hand order is OpenPose's (wrist; thumb CMC, MCP, IP, tip; then
  MCP, PIP, DIP, tip for index, middle, ring, pinky), so the table is smplify-x's
  `smpl_to_openpose` hand map: three joints per finger, then the fingertip vertex.
  SMPL-X's thumb1 sits at the CMC joint, like MediaPipe's point 1.
- Face (478 -> 68): the usual iBUG-68 picks from the face mesh. The static 51 points are
  anatomical (eye corners, lip corners, nose tip ...) in both and match well. The
  contour is weaker: SMPL-X's 17 contour points are a silhouette (they slide with the
  neck's yaw via a look-up table), MediaPipe's face-oval points are fixed on the mesh.
  For the near-frontal heads of talking-to-camera clips they agree; they get a lower
  weight. The iris centres (468 right, 473 left) observe the front of each eyeball, so
  eye gaze is fitted too.
- "left"/"right" are the person's in both (Holistic's left_hand is the person's left on an
  unmirrored video).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# smplx/vertex_ids.py ('smplx')
NOSE, REYE, LEYE, REAR, LEAR = 9120, 9929, 9448, 616, 6
TIPS = {"l": (5361, 4933, 5058, 5169, 5286), "r": (8079, 7669, 7794, 7905, 8022)}  # thumb, index, middle, ring, pinky
LHEEL, RHEEL, LBIGTOE, RBIGTOE = 8846, 8635, 5770, 8463

# (MediaPipe pose index, model point, weight, name)
POSE_TO_SMPLX: list[tuple[int, tuple[str, int], float, str]] = [
    (0, ("vertex", NOSE), 0.5, "nose"),
    (2, ("vertex", LEYE), 0.3, "left_eye"),
    (5, ("vertex", REYE), 0.3, "right_eye"),
    (7, ("vertex", LEAR), 0.3, "left_ear"),
    (8, ("vertex", REAR), 0.3, "right_ear"),
    (11, ("joint", 16), 1.0, "left_shoulder"),
    (12, ("joint", 17), 1.0, "right_shoulder"),
    (13, ("joint", 18), 1.0, "left_elbow"),
    (14, ("joint", 19), 1.0, "right_elbow"),
    (15, ("joint", 20), 1.0, "left_wrist"),
    (16, ("joint", 21), 1.0, "right_wrist"),
    (23, ("joint", 1), 0.5, "left_hip"),
    (24, ("joint", 2), 0.5, "right_hip"),
    (25, ("joint", 4), 1.0, "left_knee"),
    (26, ("joint", 5), 1.0, "right_knee"),
    (27, ("joint", 7), 1.0, "left_ankle"),
    (28, ("joint", 8), 1.0, "right_ankle"),
    (29, ("vertex", LHEEL), 0.5, "left_heel"),
    (30, ("vertex", RHEEL), 0.5, "right_heel"),
    (31, ("vertex", LBIGTOE), 0.5, "left_foot_index"),
    (32, ("vertex", RBIGTOE), 0.5, "right_foot_index"),
]


def hand_to_smplx(side: str) -> list[tuple[int, tuple[str, int]]]:
    """MediaPipe hand index (0..20) -> SMPL-X point for side 'l' or 'r'."""
    w = 20 if side == "l" else 21
    b = 25 if side == "l" else 40  # first finger joint of this hand
    thumb, index, middle, ring, pinky = TIPS[side]
    # SMPL-X finger joint order per hand: index, middle, pinky, ring, thumb (3 each)
    fingers = [(b + 12, thumb), (b + 0, index), (b + 3, middle), (b + 9, ring), (b + 6, pinky)]
    table = [(0, ("joint", w))]
    for f, (j0, tip) in enumerate(fingers):
        for k in range(3):
            table.append((1 + 4 * f + k, ("joint", j0 + k)))
        table.append((4 + 4 * f, ("vertex", tip)))
    return table


# iBUG-68 index -> MediaPipe face-mesh index.
IBUG68_FROM_MEDIAPIPE = [
    127, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
]
IRIS = [(468, ("vertex", REYE)), (473, ("vertex", LEYE))]


def face_to_smplx() -> list[tuple[int, tuple[str, int], float]]:
    """MediaPipe face index -> SMPL-X face landmark, with weight (contour lower)."""
    table = []
    for ibug, mp in enumerate(IBUG68_FROM_MEDIAPIPE):
        if ibug >= 17:
            table.append((mp, ("face", ibug - 17), 1.0))
        else:
            table.append((mp, ("face", 51 + ibug), 0.3))
    table += [(mp, pt, 0.5) for mp, pt in IRIS]
    return table


@dataclass(frozen=True)
class Target:
    """One observed model point: where its 2D observation lives and its weight/group."""

    source: str  # landmarks.pose | landmarks.face | landmarks.left_hand | landmarks.right_hand
    index: int  # row in that array
    point: tuple[str, int]
    weight: float
    group: str  # body | face | contour | left_hand | right_hand


def all_targets() -> list[Target]:
    """Every correspondence the fitter uses, in a fixed order."""
    out = [Target("landmarks.pose", i, p, w, "body") for i, p, w, _ in POSE_TO_SMPLX]
    for mp, p, w in face_to_smplx():
        group = "contour" if p[0] == "face" and p[1] >= 51 else "face"
        out.append(Target("landmarks.face", mp, p, w, group))
    for side, name in (("l", "left_hand"), ("r", "right_hand")):
        out += [Target(f"landmarks.{name}", i, p, 1.0, name) for i, p in hand_to_smplx(side)]
    return out


def gather_observations(arrays: dict[str, np.ndarray], targets: list[Target], num_frames: int,
                        min_visibility: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Observed 2D points and confidences for the targets.

    arrays: name -> (T,N,C) landmark array (x_px, y_px, ... [visibility for pose]).
    Returns xy (T,K,2) with NaN replaced by 0, and conf (T,K) in [0,1] (0 = missing).
    """
    xy = np.zeros((num_frames, len(targets), 2), np.float32)
    conf = np.zeros((num_frames, len(targets)), np.float32)
    for k, t in enumerate(targets):
        a = arrays.get(t.source)
        if a is None or t.index >= a.shape[1]:
            continue
        p = a[:num_frames, t.index]
        ok = np.isfinite(p[:, :2]).all(1)
        c = np.where(ok, 1.0, 0.0)
        if a.shape[2] >= 4:  # pose: visibility
            vis = np.nan_to_num(p[:, 3], nan=0.0)
            c = c * np.where(vis >= min_visibility, vis, 0.0)
        xy[: len(p), k] = np.where(ok[:, None], p[:, :2], 0.0)
        conf[: len(p), k] = c
    return xy, conf
