"""Frames for the audit page: one example frame per clip, and strips of frames with the
face landmarks drawn, read from the store's shards (only when the store holds media)."""

from __future__ import annotations

import logging
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from mentor.media import MediaError, read_frames
from mentor.record import ClipRecord

if TYPE_CHECKING:
    from mentor.store import Store

log = logging.getLogger(__name__)

THUMB = 200  # pixels, longer side of a frame on the page


def _frame_at(video: str, t: float) -> np.ndarray:
    return read_frames(video, start=max(t, 0.0), end=max(t, 0.0) + 1e-3)[0]


def _thumb(frame: np.ndarray) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    s = THUMB / max(h, w)
    return cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def draw_landmarks(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Copy of HxWx3 `frame` with Nx2+ pixel points drawn as single green pixels (NaN skipped)."""
    out = frame.copy()
    xy = points[:, :2]
    xy = np.round(xy[np.isfinite(xy).all(1)]).astype(int)
    h, w = frame.shape[:2]
    xy = xy[(xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)]
    out[xy[:, 1], xy[:, 0]] = (0, 255, 0)
    return out


def _box(pts: np.ndarray, shape: tuple[int, ...], margin: float = 0.6) -> tuple[int, int, int, int]:
    """Square (x0, y0, x1, y1) around Nx2 points, grown by `margin` of its side each way."""
    lo, hi = np.nanmin(pts, 0), np.nanmax(pts, 0)
    c, side = (lo + hi) / 2, float(max(hi - lo)) * (1 + 2 * margin)
    x0, y0 = np.maximum(np.floor(c - side / 2), 0).astype(int)
    x1, y1 = int(min(np.ceil(c[0] + side / 2), shape[1])), int(min(np.ceil(c[1] + side / 2), shape[0]))
    return int(x0), int(y0), max(x1, int(x0) + 1), max(y1, int(y0) + 1)


def strip(rec: ClipRecord, n: int) -> list[np.ndarray]:
    """`n` frames spread over the clip; where the clip has "landmarks.face", each frame is
    zoomed to the face with the points drawn."""
    video = rec.files["video"]
    lm = rec.arrays.get("landmarks.face")
    times = (np.arange(n) + 0.5) * max(rec.duration, 1e-3) / n
    out = []
    for t in times:
        frame = _frame_at(video, float(t))
        pts = None
        if lm is not None and len(lm.data) and lm.fps:
            i = int(round((t - lm.start) * lm.fps))
            if 0 <= i < len(lm.data) and np.isfinite(lm.data[i][:, :2]).any():
                pts = np.asarray(lm.data[i], float)[:, :2]
        if pts is None:
            out.append(_thumb(frame))
            continue
        # zoom to the face so the 478 points stay apart; points drawn after resizing stay sharp
        x0, y0, x1, y1 = _box(pts, frame.shape)
        small = _thumb(frame[y0:y1, x0:x1])
        out.append(draw_landmarks(small, (pts - (x0, y0)) * (small.shape[1] / (x1 - x0))))
    return out


def clip_frames(store: "Store", clip_ids: list[str], n_strip: int) -> dict[str, dict]:
    """clip id -> {"example": middle frame thumbnail, "strip": frames with landmarks} for
    the clips whose video is in the store; clips without media are left out."""
    out: dict[str, dict] = {}
    if not clip_ids:
        return out
    with tempfile.TemporaryDirectory(prefix="mentor-audit-") as tmp:
        for rec in store.records(clip_ids=clip_ids, media_dir=tmp):
            if "video" not in rec.files:
                continue
            try:
                out[rec.id] = {"example": _thumb(_frame_at(rec.files["video"], rec.duration / 2)),
                               "strip": strip(rec, n_strip)}
            except MediaError as e:
                log.warning("audit: clip %s: %s", rec.id, e)
    return out
