"""SMPL-X's fixed numbering: joints, the kinematic tree, keypoint vertices, face landmarks.

Every module that needs one of these numbers imports it from here (the fitter's
correspondences, the synthetic model and its ground truth, the part labels).
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 55
NUM_BODY_JOINTS = 21  # body_pose holds joints 1..21
NUM_HAND_JOINTS = 15  # per hand: index, middle, pinky, ring, thumb (3 each)
NUM_STATIC_LANDMARKS = 51  # face landmarks fixed on the mesh: iBUG 17..67 (brows, nose, eyes, mouth)
NUM_CONTOUR_LANDMARKS = 17  # the jaw line (iBUG 0..16), looked up per neck yaw
NUM_FACE_LANDMARKS = NUM_STATIC_LANDMARKS + NUM_CONTOUR_LANDMARKS
NUM_CONTOUR_ROWS = 79  # contour look-up rows: yaw 0..39 degrees, then -1..-39, then < -39

# smplx/joint_names.py, first 55
JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw", "left_eye", "right_eye",
    *(f"{side}_{finger}{k}" for side in ("left", "right")
      for finger in ("index", "middle", "pinky", "ring", "thumb") for k in (1, 2, 3)),
)
JOINT = {name: j for j, name in enumerate(JOINT_NAMES)}
JAW, LEFT_EYE, RIGHT_EYE = JOINT["jaw"], JOINT["left_eye"], JOINT["right_eye"]
LEFT_HAND_JOINTS = tuple(range(25, 40))
RIGHT_HAND_JOINTS = tuple(range(40, 55))

# parent of each joint (-1 for the root)
PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15]
    + [20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38]
    + [21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53],
    dtype=np.int64,
)
NECK_CHAIN = (12, 9, 6, 3, 0)  # neck up to the root: the contour look-up reads this chain's yaw

# smplx/vertex_ids.py ('smplx'): the mesh vertices smplx adds as keypoints, by its names
VERTEX_IDS = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6,
    "rthumb": 8079, "rindex": 7669, "rmiddle": 7794, "rring": 7905, "rpinky": 8022,
    "lthumb": 5361, "lindex": 4933, "lmiddle": 5058, "lring": 5169, "lpinky": 5286,
    "LBigToe": 5770, "LSmallToe": 5780, "LHeel": 8846, "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635,
}
# the order smplx appends them after the 55 joints (vertex_joint_selector: face, feet, fingertips)
KEYPOINT_NAMES = (
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)
FINGERTIPS = {side: tuple(VERTEX_IDS[f"{side}{f}"] for f in ("thumb", "index", "middle", "ring", "pinky"))
              for side in ("l", "r")}  # thumb, index, middle, ring, pinky
