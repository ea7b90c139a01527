"""Body-part labels per vertex, from the model's skinning weights.

Each vertex goes to the part whose joints carry most of its skinning weight:
  lower_body        pelvis, hips, knees, ankles, feet (0, 1, 2, 4, 5, 7, 8, 10, 11)
  torso             spine1-3 and the collars (3, 6, 9, 13, 14)
  neck              12
  head (head/hair)  head, jaw, eyes (15, 22, 23, 24), outside the face region
  left/right_upper_arm  the shoulder joint (16 / 17), which turns the upper arm
  left/right_forearm    the elbow (18 / 19)
  left/right_hand       the wrist and the 15 finger joints (20, 25..39 / 21, 40..54)
The face is split from the head by the face landmarks: a head vertex is "face" when, in the
rest pose seen from the front, it lies inside the outline of the 68 face landmarks (brows
to chin, jaw line to jaw line; the contour row of a frontal head) and in front of the head
joint. Forehead, scalp, ears and the back of the head stay "head".
"""

from __future__ import annotations

import numpy as np
import torch

from mentor.body.constants import (JOINT, LEFT_HAND_JOINTS, NUM_FACE_LANDMARKS, NUM_JOINTS, NUM_STATIC_LANDMARKS,
                                   RIGHT_HAND_JOINTS)

BROWS = slice(0, 10)  # static landmarks 0..9: iBUG 17..26, right brow then left

PART_NAMES = ("face", "head", "neck", "torso", "left_upper_arm", "right_upper_arm", "left_forearm",
              "right_forearm", "left_hand", "right_hand", "lower_body")
PART = {name: k for k, name in enumerate(PART_NAMES)}

_PART_JOINTS = {
    "lower_body": ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
                   "left_foot", "right_foot"),
    "torso": ("spine1", "spine2", "spine3", "left_collar", "right_collar"),
    "neck": ("neck",),
    "head": ("head", "jaw", "left_eye", "right_eye"),
    "left_upper_arm": ("left_shoulder",), "right_upper_arm": ("right_shoulder",),
    "left_forearm": ("left_elbow",), "right_forearm": ("right_elbow",),
    "left_hand": ("left_wrist",), "right_hand": ("right_wrist",),
}


def joint_parts() -> np.ndarray:
    """(55,) part index of each joint's skinned region (the face is split off later)."""
    out = np.full(NUM_JOINTS, -1, np.int64)
    for part, names in _PART_JOINTS.items():
        for name in names:
            out[JOINT[name]] = PART[part]
    out[list(LEFT_HAND_JOINTS)] = PART["left_hand"]
    out[list(RIGHT_HAND_JOINTS)] = PART["right_hand"]
    return out


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: points (N,2) inside the closed polygon (M,2)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = ((y0 > y) != (y1 > y)) & (x < (x1 - x0) * (y - y0) / np.where(y1 == y0, 1e-12, y1 - y0) + x0)
    return crosses.sum(1) % 2 == 1


def label_vertices(weights: np.ndarray, rest_vertices: np.ndarray, rest_landmarks: np.ndarray,
                   head_joint: np.ndarray) -> np.ndarray:
    """Part index per vertex.

    weights (V,55) skinning weights; rest_vertices (V,3) (y up, z forward); rest_landmarks
    (68,3) the face landmarks in the same pose (51 static, then 17 contour); head_joint (3,).
    Returns (V,) int64 indices into PART_NAMES.
    """
    jp = joint_parts()
    per_part = np.zeros((len(weights), len(PART_NAMES)))
    np.add.at(per_part.T, jp, weights.T)
    labels = per_part.argmax(1)
    # the face: inside the landmarks' outline seen from the front (the contour runs ear to ear
    # under the chin; the brows close it at the top), in front of the head joint
    contour = rest_landmarks[NUM_STATIC_LANDMARKS:NUM_FACE_LANDMARKS, :2]
    brows = rest_landmarks[BROWS, :2]
    outline = np.concatenate([contour, brows[::-1]])
    in_front = rest_vertices[:, 2] > head_joint[2]
    face = (labels == PART["head"]) & in_front & _inside_polygon(rest_vertices[:, :2], outline)
    labels[face] = PART["face"]
    return labels.astype(np.int64)


@torch.no_grad()
def part_labels(body_model) -> torch.Tensor:
    """(V,) int64 index into PART_NAMES for every vertex of a BodyModel, on its device."""
    rest = body_model(body_model.zeros(1))
    labels = label_vertices(body_model.lbs_weights.cpu().numpy(), rest.vertices[0].cpu().numpy(),
                            rest.landmarks[0].cpu().numpy(), rest.joints[0, JOINT["head"]].cpu().numpy())
    return torch.as_tensor(labels, device=body_model.device)
