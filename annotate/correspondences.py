"""Which SMPL-X point each MediaPipe Holistic landmark observes, and how much to trust it.

A model point (mentor.body.ModelPoint) is one of:
  joint j        SMPL-X joint j (smplx/joint_names.py order, 0..54),
  vertex v       a mesh vertex (smplx/vertex_ids.py: fingertips, nose, eyes, ears),
  landmark k     a static SMPL-X face landmark, 0..50 (iBUG 17..67: brows, nose, eyes, mouth),
  contour k      a dynamic contour landmark, 0..16 (iBUG 0..16, the jaw line).

Reasoning, group by group:
- Pose (33): shoulders/elbows/wrists/knees/ankles are joint centres in both models.
  MediaPipe's hips sit higher and wider than SMPL-X's hip joints (which are inside the
  pelvis), as OpenPose's do; smplify-x fits them anyway, with less weight, and so do we.
  Nose, eyes and ears go to the vertices smplx itself uses for OpenPose's face
  keypoints. Heels and foot tips go to the heel/big-toe vertices. Mouth corners and
  inner/outer eye corners are left to the face mesh, which is finer.
- The pose's hand points (17-22: pinky, index, thumb of each hand, "knuckles" here): BlazePose's
  topology names them the pinky's and the index's first knuckle and the thumb's second (ML Kit's
  pose landmarks: "left pinky #1 knuckle", "left index #1 knuckle", "left thumb #2 knuckle"). The
  first knuckles are the MCP joints, SMPL-X's pinky1 / index1; the thumb's second knuckle, counted
  as the fingers' (MCP first), is its IP joint, SMPL-X's thumb3 (thumb1 is the CMC, thumb2 the MCP),
  the point nearest the thumb-tip region where the pose model puts it. index1 and pinky1 hang on the
  wrist alone (no finger rotation moves them), so with the wrist they give the hand's orientation.
  They are rougher than the hand model's points, but the pose model reports them where the hand
  model lost the hand (a hand partly out of frame is not detected at all): the only evidence of the
  hand's orientation there. Groups left_knuckles / right_knuckles; the fitter weighs them by
  visibility, fully where that hand's landmarks are missing and less where they are seen, and only
  where the pose sees that hand's wrist (weigh_knuckles).
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

from mentor.body.constants import FINGERTIPS, JOINT
from mentor.body.points import ModelPoint

J, V = ModelPoint.joint, ModelPoint.vertex

# (MediaPipe pose index, model point, weight, name)
POSE_TO_SMPLX: list[tuple[int, ModelPoint, float, str]] = [
    (0, V("nose"), 0.5, "nose"),
    (2, V("leye"), 0.3, "left_eye"),
    (5, V("reye"), 0.3, "right_eye"),
    (7, V("lear"), 0.3, "left_ear"),
    (8, V("rear"), 0.3, "right_ear"),
    (11, J(JOINT["left_shoulder"]), 1.0, "left_shoulder"),
    (12, J(JOINT["right_shoulder"]), 1.0, "right_shoulder"),
    (13, J(JOINT["left_elbow"]), 1.0, "left_elbow"),
    (14, J(JOINT["right_elbow"]), 1.0, "right_elbow"),
    (15, J(JOINT["left_wrist"]), 1.0, "left_wrist"),
    (16, J(JOINT["right_wrist"]), 1.0, "right_wrist"),
    (23, J(JOINT["left_hip"]), 0.5, "left_hip"),
    (24, J(JOINT["right_hip"]), 0.5, "right_hip"),
    (25, J(JOINT["left_knee"]), 1.0, "left_knee"),
    (26, J(JOINT["right_knee"]), 1.0, "right_knee"),
    (27, J(JOINT["left_ankle"]), 1.0, "left_ankle"),
    (28, J(JOINT["right_ankle"]), 1.0, "right_ankle"),
    (29, V("LHeel"), 0.5, "left_heel"),
    (30, V("RHeel"), 0.5, "right_heel"),
    (31, V("LBigToe"), 0.5, "left_foot_index"),
    (32, V("RBigToe"), 0.5, "right_foot_index"),
]
# (MediaPipe pose index, model point, weight, name): the pose's hand points (see the docstring)
POSE_KNUCKLES: list[tuple[int, ModelPoint, float, str]] = [
    (17, J(JOINT["left_pinky1"]), 1.0, "left_pinky"),
    (18, J(JOINT["right_pinky1"]), 1.0, "right_pinky"),
    (19, J(JOINT["left_index1"]), 1.0, "left_index"),
    (20, J(JOINT["right_index1"]), 1.0, "right_index"),
    (21, J(JOINT["left_thumb3"]), 1.0, "left_thumb"),
    (22, J(JOINT["right_thumb3"]), 1.0, "right_thumb"),
]
KNUCKLE_GROUPS = {"left_knuckles": "left_hand", "right_knuckles": "right_hand"}  # -> the hand landmarks' group
KNUCKLE_WRISTS = {"left_knuckles": 15, "right_knuckles": 16}  # -> the pose's wrist of that hand


def hand_to_smplx(side: str) -> list[tuple[int, ModelPoint]]:
    """MediaPipe hand index (0..20) -> SMPL-X point for side 'l' or 'r'."""
    name = {"l": "left", "r": "right"}[side]
    thumb, index, middle, ring, pinky = FINGERTIPS[side]
    # MediaPipe's finger order (thumb, index, middle, ring, pinky): first joint, then the tip vertex
    fingers = [(JOINT[f"{name}_{finger}1"], tip) for finger, tip in
               (("thumb", thumb), ("index", index), ("middle", middle), ("ring", ring), ("pinky", pinky))]
    table = [(0, J(JOINT[f"{name}_wrist"]))]
    for finger, (first, tip) in enumerate(fingers):
        for k in range(3):
            table.append((1 + 4 * finger + k, J(first + k)))
        table.append((4 + 4 * finger, V(tip)))
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
IRIS = [(468, V("reye")), (473, V("leye"))]


def face_to_smplx() -> list[tuple[int, ModelPoint, float]]:
    """MediaPipe face index -> SMPL-X face landmark, with weight (contour lower)."""
    table = []
    for ibug, mesh_index in enumerate(IBUG68_FROM_MEDIAPIPE):
        point = ModelPoint.ibug(ibug)
        table.append((mesh_index, point, 0.3 if point.kind == "contour" else 1.0))
    table += [(mesh_index, point, 0.5) for mesh_index, point in IRIS]
    return table


@dataclass(frozen=True)
class Target:
    """One observed model point: where its 2D observation lives and its weight/group."""

    source: str  # landmarks.pose | landmarks.face | landmarks.left_hand | landmarks.right_hand
    index: int  # row in that array
    point: ModelPoint
    weight: float
    group: str  # body | face | contour | left_hand | right_hand | left_knuckles | right_knuckles


def all_targets() -> list[Target]:
    """Every correspondence the fitter uses, in a fixed order."""
    out = [Target("landmarks.pose", i, p, w, "body") for i, p, w, _ in POSE_TO_SMPLX]
    for mesh_index, point, weight in face_to_smplx():
        out.append(Target("landmarks.face", mesh_index, point, weight, "contour" if point.kind == "contour" else "face"))
    for side, name in (("l", "left_hand"), ("r", "right_hand")):
        out += [Target(f"landmarks.{name}", i, p, 1.0, name) for i, p in hand_to_smplx(side)]
    # last: the rows before them keep their places
    out += [Target("landmarks.pose", i, p, w, f"{name.split('_')[0]}_knuckles") for i, p, w, name in POSE_KNUCKLES]
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
        found = np.isfinite(p[:, :2]).all(1)
        c = np.where(found, 1.0, 0.0)
        if a.shape[2] >= 4:  # pose: visibility
            vis = np.nan_to_num(p[:, 3], nan=0.0)
            c = c * np.where(vis >= min_visibility, vis, 0.0)
        xy[: len(p), k] = np.where(found[:, None], p[:, :2], 0.0)
        conf[: len(p), k] = c
    return xy, conf


def gather_evidence(arrays: dict[str, np.ndarray], targets: list[Target], num_frames: int,
                    image_size: tuple[int, int], min_visibility: float = 0.5, low_visibility_weight: float = 0.5,
                    border_weight: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observations with the weak evidence real footage has for joints it does not see well.

    Like gather_observations, and: a pose landmark below min_visibility (MediaPipe's guess of
    an occluded or cut-off joint) keeps low_visibility_weight x its visibility; a pose landmark
    outside the image says only that the joint projects outside it: on each axis where it
    is out, the target is the image border with a one-sided bound (bounds +1: the model
    point at or beyond it, -1: at or before it), the other axis keeps the reported value,
    at border_weight. Returns xy (T,K,2), conf (T,K), bounds (T,K,2) int8 (0 = equality).
    """
    xy, conf = gather_observations(arrays, targets, num_frames, min_visibility)
    bounds = np.zeros(xy.shape, np.int8)
    width, height = image_size
    for k, t in enumerate(targets):
        a = arrays.get(t.source)
        if a is None or t.index >= a.shape[1] or a.shape[2] < 4:
            continue
        p = a[:num_frames, t.index]
        found = np.isfinite(p[:, :2]).all(1)
        vis = np.nan_to_num(p[:, 3], nan=0.0)
        weak = found & (vis < min_visibility)
        conf[: len(p), k] = np.where(weak, low_visibility_weight * vis, conf[: len(p), k])
        for axis, side in ((0, width), (1, height)):
            coordinate = np.nan_to_num(p[:, axis], nan=side / 2)
            below, beyond = found & (coordinate < 0), found & (coordinate > side)
            bounds[: len(p), k, axis] = np.where(beyond, 1, np.where(below, -1, 0))
            xy[: len(p), k, axis] = np.where(beyond, side, np.where(below, 0.0, xy[: len(p), k, axis]))
        outside = (bounds[: len(p), k] != 0).any(1)
        conf[: len(p), k] = np.where(outside, border_weight, conf[: len(p), k])
    return xy, conf, bounds


def knuckle_hands(targets: list[Target]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Knuckle group -> positions among `targets` of (its targets (N,), its hand's landmark targets
    (M,), its pose wrist's target (0 or 1,)), for each knuckle group they hold."""
    groups = np.array([t.group for t in targets])
    wrists = np.array([t.source == "landmarks.pose" and t.group == "body" for t in targets])
    index = np.array([t.index for t in targets])
    return {knuckles: (np.flatnonzero(groups == knuckles), np.flatnonzero(groups == hand),
                       np.flatnonzero(wrists & (index == KNUCKLE_WRISTS[knuckles])))
            for knuckles, hand in KNUCKLE_GROUPS.items() if (groups == knuckles).any()}


def weigh_knuckles(conf: np.ndarray, targets: list[Target], gap_weight: float = 1.0,
                   seen_weight: float = 0.0, min_confidence: float = 0.0) -> np.ndarray:
    """conf (T,K) with the pose's hand points (POSE_KNUCKLES) x gap_weight in the frames where
    that hand's landmarks are missing (no hand-landmark target of it has confidence > 0) and x
    seen_weight where they are there (the hand model's 21 points then say more than these 3);
    only in frames where the pose's wrist of that hand has confidence >= min_confidence, and there
    too those below it (gather_evidence's weak evidence: outside the image, a one-sided bound, or low
    visibility). Around a seen wrist they say which way the hand points; with the wrist unseen
    (out of the picture: a torso cut at the chest, a hand raised past the frame) they are MediaPipe's
    guesses, and a thumb point alone in the image pulled the whole arm (tests/annotate/test_smplx_shape's
    1 m clip: its wrists 0.17 -> 0.32 m off the truth, the focal search's pick 993 -> 710 px)."""
    for name, value in (("gap_weight", gap_weight), ("seen_weight", seen_weight)):
        if not 0 <= value <= 1:
            raise ValueError(f"knuckle {name} {value}: use 0-1 (x the pose's hand points' confidence; 0: not used)")
    conf = conf.copy()
    for knuckles, hand, wrist in knuckle_hands(targets).values():
        seen = (conf[:, hand] > 0).any(1, keepdims=True) if len(hand) else np.zeros((len(conf), 1), bool)
        wrist_seen = (conf[:, wrist] >= min_confidence).any(1, keepdims=True)
        conf[:, knuckles] *= np.where(seen, seen_weight, gap_weight) * wrist_seen
    return conf


DEPTH_SOURCES = ("landmarks.pose", "landmarks.left_hand", "landmarks.right_hand")  # arrays whose z is read


def gather_depth(arrays: dict[str, np.ndarray], targets: list[Target], num_frames: int,
                 hands: bool = True) -> np.ndarray | None:
    """(T,K) MediaPipe's relative z of the pose and (with `hands`) hand landmarks (column 2 of
    landmarks.pose, landmarks.left_hand, landmarks.right_hand: pose z relative to the hips, a
    hand's to its wrist; NaN for other targets and missing frames), or None when the clip has no pose z."""
    pose = arrays.get("landmarks.pose")
    if pose is None or pose.shape[2] < 3 or not np.isfinite(pose[..., 2]).any():
        return None
    depth = np.full((num_frames, len(targets)), np.nan, np.float32)
    for k, t in enumerate(targets):
        source = arrays.get(t.source) if t.source in DEPTH_SOURCES[:3 if hands else 1] else None
        if source is not None and source.shape[2] >= 3 and t.index < source.shape[1]:
            depth[: len(source), k] = source[:num_frames, t.index, 2]
    return depth
