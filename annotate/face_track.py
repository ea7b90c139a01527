"""Link per-frame face boxes into tracks by IoU, pick the main track, measure it.

Boxes are (x0, y0, x1, y1) in source pixels. A track is a dict frame index -> box; it
may skip up to `max_gap` frames (a missed detection) and still continue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def side(box: Box) -> float:
    """Side of a face box: the longer of width and height."""
    return max(box[2] - box[0], box[3] - box[1])


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


@dataclass
class Track:
    boxes: dict[int, Box] = field(default_factory=dict)  # frame index -> box

    @property
    def last(self) -> int:
        return max(self.boxes)

    def median_side(self) -> float:
        return float(np.median([side(b) for b in self.boxes.values()]))

    def frames(self) -> list[int]:
        return sorted(self.boxes)

    def jitter(self) -> float:
        """Mean centre motion per sampled frame, relative to the median face side.

        Motion across a gap of k frames counts as k frames of motion (divided by k).
        """
        idx = self.frames()
        if len(idx) < 2:
            return 0.0
        size = self.median_side()
        steps = []
        for a, b in zip(idx, idx[1:]):
            (xa, ya), (xb, yb) = centre(self.boxes[a]), centre(self.boxes[b])
            steps.append(float(np.hypot(xb - xa, yb - ya)) / (b - a))
        return float(np.mean(steps)) / size if size > 0 else 0.0

    def nearest(self, t: float) -> Box | None:
        """The box at the tracked frame nearest to (fractional) frame index t."""
        if not self.boxes:
            return None
        return self.boxes[min(self.boxes, key=lambda i: abs(i - t))]


def link_tracks(detections: list[list[Box]], iou_min: float = 0.3, max_gap: int = 2) -> list[Track]:
    """Tracks from per-frame detections: each detection joins the live track whose last box
    overlaps it most (IoU >= iou_min, best pairs first), else starts a new track."""
    tracks: list[Track] = []
    for t, boxes in enumerate(detections):
        live = [k for k, tr in enumerate(tracks) if t - tr.last <= max_gap + 1]
        pairs = sorted(((iou(tracks[k].boxes[tracks[k].last], b), k, j)
                        for k in live for j, b in enumerate(boxes)), reverse=True)
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for score, k, j in pairs:
            if score < iou_min:
                break
            if k in used_tracks or j in used_boxes:
                continue
            tracks[k].boxes[t] = boxes[j]
            used_tracks.add(k)
            used_boxes.add(j)
        for j, b in enumerate(boxes):
            if j not in used_boxes:
                tracks.append(Track({t: b}))
    return tracks


def main_track(tracks: list[Track]) -> Track | None:
    """The track seen in the most frames (the larger face on a tie); None if no tracks."""
    if not tracks:
        return None
    return max(tracks, key=lambda tr: (len(tr.boxes), tr.median_side()))


def extra_face_frames(detections: list[list[Box]], main: Track | None, min_ratio: float) -> list[bool]:
    """Per frame: whether a face other than the main track's is visible, at least
    `min_ratio` times the main face's side (so a tiny face in a poster does not count)."""
    ref = main.median_side() if main is not None else 0.0
    out = []
    for t, boxes in enumerate(detections):
        own = main.boxes.get(t) if main is not None else None
        others = [b for b in boxes if b is not own and side(b) >= min_ratio * ref]
        if main is None:  # no main face: a frame with two faces still shows two people
            out.append(len(others) >= 2)
        else:
            out.append(len(others) >= 1)
    return out


def square_crop(boxes: list[Box], frame_w: int, frame_h: int, margin: float, down_shift: float) -> tuple[int, int, int]:
    """A square crop (x, y, side) in pixels around a face track, fixed over the clip.

    side = median face side * (1 + 2 * margin), grown to hold every face box of the track,
    capped at the frame's shorter side; centred on the median face centre moved down by
    `down_shift` * face side (to take in the torso), then shifted to lie inside the frame.
    """
    sides = np.array([side(b) for b in boxes])
    face = float(np.median(sides))
    arr = np.array(boxes, dtype=np.float64)
    cx = float(np.median((arr[:, 0] + arr[:, 2]) / 2))
    cy = float(np.median((arr[:, 1] + arr[:, 3]) / 2)) + down_shift * face
    s = face * (1 + 2 * margin)
    # hold the whole extent of the track (a face moving within the shot stays inside)
    need = 2 * max(cx - arr[:, 0].min(), arr[:, 2].max() - cx, cy - arr[:, 1].min(), arr[:, 3].max() - cy)
    s = int(round(min(max(s, need), frame_w, frame_h)))
    x = int(round(min(max(cx - s / 2, 0), frame_w - s)))
    y = int(round(min(max(cy - s / 2, 0), frame_h - s)))
    return x, y, s
