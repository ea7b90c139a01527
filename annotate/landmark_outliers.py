"""Gross landmark errors caught before the SMPL-X fit: swapped hands, a hand or an arm point off for a frame.

MediaPipe on real video swaps the hands, puts a hand where there is none, or throws an elbow or
a wrist off for a frame. Fitted as they are, such frames pulled the fit (and through the temporal
terms their neighbours) 20-35 px off the true landmarks (issue 16's `outliers` scenario: the worst
frame 43x the clip's median, a swap spoiling 3 frames either side). Here they become missing data,
filled by the fit's temporal terms like a frame without the person:

  swapped hands   each hand's wrist on the other arm's pose wrist: swapped back
  a hand off      its wrist away from the pose wrist of its side: the one of the two that leaves
                  its own track (the straight line between its neighbours' positions) is dropped
  an arm point    a pose elbow or wrist that leaves its track (relative to its shoulder) by far
                  more than the clip's own motion does there: dropped

Distances are in shoulder widths (the clip's median), so the tests hold at any image scale.
`clean_landmarks` returns the arrays with those points NaN (missing) and what it changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

POSE, LEFT, RIGHT = "landmarks.pose", "landmarks.left_hand", "landmarks.right_hand"
SHOULDERS = (11, 12)  # MediaPipe pose: left, right shoulder
ARM_POINTS = {13: 11, 14: 12, 15: 11, 16: 12}  # elbows and wrists, each with its shoulder
POSE_WRIST = {LEFT: 15, RIGHT: 16}
# a hand's wrist further than this from its pose wrist (shoulder widths), and HAND_GAP_SPREAD x
# the clip's median such distance, disagrees with it: on the synthetic body model both are the
# same joint (clean frames at most 0.05 apart at 1 px and 1.9 m, 0.28 at 4 px and 2.5 m, median
# 0.01-0.07); the outliers scenario's jumps are 0.2-0.55
HAND_WRIST_GAP = 0.18
HAND_GAP_SPREAD = 6.0
# an arm point this far (shoulder widths) off the line between its neighbours' positions, and
# TRACK_SPREAD x the clip's median such distance for that point, left its track for the frame:
# quick beat strokes reach 0.15-0.25 at the wrists between frames (25 fps), the jumps 0.2-0.55
TRACK_JUMP = 0.3
TRACK_SPREAD = 6.0
MIN_VISIBILITY = 0.5  # pose points below it (out of frame, guessed) are left to the fit's own weighting


@dataclass
class OutlierReport:
    """What clean_landmarks changed: frames with the hands swapped back, (frame, what) dropped."""

    swapped: list[int] = field(default_factory=list)
    dropped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def frames(self) -> np.ndarray:
        """Sorted frames with any change."""
        return np.unique(np.r_[self.swapped, [t for t, _ in self.dropped]].astype(int))


def _pose_xy(pose: np.ndarray, index: int) -> np.ndarray:
    """(T,2) a pose point's pixels, NaN where missing or below MIN_VISIBILITY."""
    xy = pose[:, index, :2].astype(np.float64).copy()
    if pose.shape[-1] > 3:
        xy[~(pose[:, index, 3] >= MIN_VISIBILITY)] = np.nan
    return xy


def _track_offsets(track: np.ndarray) -> np.ndarray:
    """(T,) each frame's distance from the straight line between the nearest present frames
    either side (NaN where the frame or a side is missing): track (T,2) with NaN rows missing."""
    frames = len(track)
    present = np.flatnonzero(np.isfinite(track).all(1))
    out = np.full(frames, np.nan)
    for i in range(1, len(present) - 1):
        a, t, b = present[i - 1], present[i], present[i + 1]
        alpha = (t - a) / (b - a)
        out[t] = np.linalg.norm(track[t] - ((1 - alpha) * track[a] + alpha * track[b]))
    return out


def _track_outliers(track: np.ndarray, jump: float, spread: float) -> list[int]:
    """Frames of track (T,2) that leave it: the worst offset above max(jump, spread x the median
    offset) is taken out and the rest judged again (a jump also offsets its neighbours by half)."""
    track = track.copy()
    found = []
    offsets = _track_offsets(track)
    if not np.isfinite(offsets).any():
        return found
    limit = max(jump, spread * float(np.nanmedian(offsets)))
    while True:
        offsets = _track_offsets(track)
        if not np.isfinite(offsets).any() or np.nanmax(offsets) <= limit:
            return sorted(found)
        worst = int(np.nanargmax(offsets))
        found.append(worst)
        track[worst] = np.nan


def clean_landmarks(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], OutlierReport]:
    """The landmark arrays (name -> (T,N,C), as the landmarks annotator stores them) with gross
    errors swapped back or made missing (NaN), and what was done (see the module docstring).
    Without pose landmarks nothing can be cross-checked: the arrays come back as they are."""
    report = OutlierReport()
    pose = arrays.get(POSE)
    if pose is None or pose.shape[1] <= max(ARM_POINTS):
        return arrays, report
    out = {k: v.copy() for k, v in arrays.items()}
    pose = out[POSE]
    width = np.linalg.norm(_pose_xy(pose, SHOULDERS[0]) - _pose_xy(pose, SHOULDERS[1]), axis=-1)
    if not np.isfinite(width).any():
        return arrays, report
    scale = float(np.nanmedian(width))
    if scale <= 0:
        return arrays, report
    wrists = {side: _pose_xy(pose, POSE_WRIST[side]) / scale for side in (LEFT, RIGHT)}
    hands = {side: out[side][:, 0, :2].astype(np.float64) / scale if side in out else None for side in (LEFT, RIGHT)}

    # swapped hands: each hand's wrist on the other side's pose wrist
    if hands[LEFT] is not None and hands[RIGHT] is not None:
        own = (np.linalg.norm(hands[LEFT] - wrists[LEFT], axis=-1)
               + np.linalg.norm(hands[RIGHT] - wrists[RIGHT], axis=-1))
        cross = (np.linalg.norm(hands[LEFT] - wrists[RIGHT], axis=-1)
                 + np.linalg.norm(hands[RIGHT] - wrists[LEFT], axis=-1))
        swap = np.flatnonzero((own > 2 * HAND_WRIST_GAP) & (cross < 0.5 * own))
        for t in swap:
            out[LEFT][t], out[RIGHT][t] = out[RIGHT][t].copy(), out[LEFT][t].copy()
        hands[LEFT][swap], hands[RIGHT][swap] = hands[RIGHT][swap].copy(), hands[LEFT][swap].copy()
        report.swapped = swap.tolist()

    # a hand away from its pose wrist: whichever of the two leaves its own track is dropped
    dropped_wrists = set()
    for side in (LEFT, RIGHT):
        if hands[side] is None:
            continue
        gap = np.linalg.norm(hands[side] - wrists[side], axis=-1)
        if not np.isfinite(gap).any():
            continue
        limit = max(HAND_WRIST_GAP, HAND_GAP_SPREAD * float(np.nanmedian(gap)))
        hand_off, wrist_off = _track_offsets(hands[side]), _track_offsets(wrists[side])
        for t in np.flatnonzero(gap > limit):  # NaN compares False: both must be present
            if np.nan_to_num(hand_off[t], nan=np.inf) >= np.nan_to_num(wrist_off[t], nan=np.inf):
                out[side][t] = np.nan
                report.dropped.append((int(t), side.split(".")[1]))
            else:
                pose[t, POSE_WRIST[side]] = np.nan
                dropped_wrists.add((int(t), POSE_WRIST[side]))
                report.dropped.append((int(t), f"pose {POSE_WRIST[side]}"))

    # an elbow or wrist off its track (relative to its shoulder: the body's own sway drops out)
    for point, shoulder in ARM_POINTS.items():
        track = (_pose_xy(pose, point) - _pose_xy(pose, shoulder)) / scale
        for t in _track_outliers(track, TRACK_JUMP, TRACK_SPREAD):
            if (t, point) not in dropped_wrists:
                pose[t, point] = np.nan
                report.dropped.append((int(t), f"pose {point}"))
    return out, report
