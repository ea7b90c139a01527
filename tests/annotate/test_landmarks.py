"""MediaPipe Holistic (the wheel's own models) on a real photo and on noise."""

import numpy as np
import pytest

from mentor.config import LandmarksConfig
from mentor.media import write_video
from mentor.record import ClipRecord

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def annotator():
    from annotate.landmarks import HolisticLandmarks

    return HolisticLandmarks(LandmarksConfig())


def _record(tmp_path, frames, name):
    path = write_video(frames, tmp_path / f"{name}.mp4", fps=25)
    rec = ClipRecord(id=name, source_id="s", source_uri="file://x", start=0.0, end=len(frames) / 25, fps=25.0,
                     width=frames.shape[2], height=frames.shape[1])
    rec.files["video"] = str(path)
    return rec


def test_astronaut_face_and_pose(tmp_path, annotator):
    import cv2
    from skimage.data import astronaut

    img = cv2.resize(astronaut(), (512, 512))
    rec = annotator(_record(tmp_path, np.stack([img] * 3), "astro"))
    assert rec.status["landmarks"] == "done", rec.errors
    face = rec.arrays["landmarks.face"].data
    pose = rec.arrays["landmarks.pose"].data
    assert face.shape == (3, 478, 3) and pose.shape == (3, 33, 4)
    assert np.isfinite(face[:, :, :2]).all()  # all 478 points (irises included) in every frame
    assert rec.scores["landmarks.face_fraction"] == 1.0 and rec.scores["landmarks.pose_fraction"] == 1.0
    nose = pose[0, 0, :2]
    assert 150 < nose[0] < 350 and 50 < nose[1] < 250  # the astronaut's nose, in pixels
    assert np.all((face[..., :2] > 0) & (face[..., :2] < 512))


def test_noise_is_nan_not_zero(tmp_path, annotator):
    frames = np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    rec = annotator(_record(tmp_path, frames, "noise"))
    assert rec.status["landmarks"] == "done"
    face = rec.arrays["landmarks.face"].data
    assert np.isnan(face).all() and not (face == 0).any()
    assert rec.scores["landmarks.face_fraction"] == 0.0


def test_missing_video_fails_the_clip(annotator):
    rec = ClipRecord(id="x", source_id="s", source_uri="u", start=0, end=1)
    rec.files["video"] = "/nonexistent.mp4"
    assert annotator(rec).status["landmarks"] == "failed"


# -- the part-wise path ("parts") against Holistic on every frame ---------------------------
@pytest.fixture(scope="module")
def talking(tmp_path_factory):
    """A generated talking clip (the astronaut swaying), 2 s at 25 fps, decoded, and
    Holistic's landmarks on every frame of it."""
    from annotate.landmarks import HolisticLandmarks
    from mentor.media import read_frames
    from mentor.testmedia import make_talking_clip

    path = make_talking_clip(tmp_path_factory.mktemp("lm") / "talk.mp4", seconds=2.0, seed=3, audio=False)
    frames = read_frames(path)
    return path, frames, HolisticLandmarks(LandmarksConfig(mode="holistic")).process_frames(frames)


def _face_size(face):
    return float(np.nanmedian(np.nanmax(face[..., 1], 1) - np.nanmin(face[..., 1], 1)))


def test_parts_agree_with_holistic_on_a_talking_clip(talking):
    from annotate.landmarks import HolisticLandmarks

    _, frames, ref = talking
    out = HolisticLandmarks(LandmarksConfig(mode="parts", pose_stride=2)).process_frames(frames)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in ref.items()}
    size = _face_size(ref["face"])
    face = np.hypot(*(out["face"][..., :2] - ref["face"][..., :2]).transpose(2, 0, 1))
    assert np.isfinite(face).all() and face.mean() < 0.01 * size, face.mean()  # the same face model
    seen = ref["pose"][..., 3] >= 0.5
    pose = np.hypot(*(out["pose"][..., :2] - ref["pose"][..., :2]).transpose(2, 0, 1))[seen]
    assert seen.sum() > 10 * len(frames) and pose.mean() < 0.05 * size, pose.mean()  # every 2nd frame, interpolated
    for hand in ("left_hand", "right_hand"):  # both: no hand in the picture
        assert np.isnan(out[hand]).all() and np.isnan(ref[hand]).all()


def test_face_mesh_seeded_from_the_filters_track_finds_the_same_face(talking):
    """The filter's face boxes (source pixels, sampled at 5 fps) map through the clip's
    crop to a face region; the face mesh run inside it gives the landmarks it gives on
    the whole frame."""
    from annotate.landmarks import FILTER_FACE_BOX, HolisticLandmarks, face_region
    from annotate.person_filter import FACE_BOX
    from mentor.record import CropBox

    assert FILTER_FACE_BOX == FACE_BOX
    _, frames, ref = talking
    h, w = frames.shape[1:3]
    # the clip as a 2x crop of a source twice its size, offset by (100, 40): source = 2 * clip + offset
    rec = ClipRecord(id="c", source_id="s", source_uri="u", start=0.0, end=2.0, fps=25.0, width=w, height=h)
    rec.crop = CropBox(x=100, y=40, size=2 * w)
    pts = ref["face"][::5, :, :2]
    boxes = np.concatenate([np.nanmin(pts, 1), np.nanmax(pts, 1)], 1) * 2 + [100, 40, 100, 40]
    rec.add_array(FACE_BOX, boxes.astype(np.float32), fps=5.0, start=0.0)
    x, y, s = face_region(rec, w, h)
    lo, hi = np.nanmin(ref["face"][..., :2], (0, 1)), np.nanmax(ref["face"][..., :2], (0, 1))
    assert x <= lo[0] and y <= lo[1] and x + s >= hi[0] and y + s >= hi[1] and s < 0.9 * w  # holds the face
    annotator = HolisticLandmarks(LandmarksConfig(mode="parts", pose_stride=4))
    seeded = annotator.process_frames(frames, face_box=(x, y, s))
    d = np.hypot(*(seeded["face"][..., :2] - ref["face"][..., :2]).transpose(2, 0, 1))
    assert np.isfinite(d).all() and d.mean() < 0.01 * _face_size(ref["face"]), d.mean()
    rec.arrays.pop(FACE_BOX)
    assert face_region(rec, w, h) is None  # no track: the whole frame


def test_parts_mode_on_a_record(tmp_path, talking):
    from annotate.landmarks import HolisticLandmarks

    path, frames, _ = talking
    rec = ClipRecord(id="p", source_id="s", source_uri="u", start=0.0, end=2.0, fps=25.0, width=512, height=512)
    rec.files["video"] = str(path)
    rec = HolisticLandmarks(LandmarksConfig(pose_stride=3))(rec)
    assert rec.status["landmarks"] == "done", rec.errors
    ann = rec.annotations["landmarks"]
    assert ann["mode"] == "parts" and ann["pose_stride"] == 3 and ann["face_box"] is None
    assert rec.arrays["landmarks.pose"].data.shape == (len(frames), 33, 4)
    assert rec.scores["landmarks.face_fraction"] == 1.0 and rec.scores["landmarks.pose_fraction"] == 1.0


def test_frames_are_read_in_one_pass_as_read_frames_picks_them(tmp_path, talking):
    """The stage decodes its clip once, in order, with one decoder (it used to reopen the
    file per 4 s chunk and decode again from the keyframe): the frames are exactly
    read_frames' at the clip's rate, at a lower and a higher rate, and on a
    variable-frame-rate file (frames picked by timestamp)."""
    import subprocess

    from annotate.landmarks import HolisticLandmarks
    from mentor.media import probe, read_frames

    path, frames, _ = talking
    lm = HolisticLandmarks(LandmarksConfig())
    for fps in (25.0, 10.0, 40.0):
        got = np.stack(list(lm._frames(str(path), fps, probe(path).duration)))
        want = read_frames(path, fps=fps)
        assert got.shape == want.shape and np.array_equal(got, want), fps
    assert len(got) == 80 and sum(np.array_equal(a, b) for a, b in zip(got, got[1:])) == 30  # 40 fps: repeats
    vfr = tmp_path / "vfr.mp4"  # frames after the 20th kept one in three, with their true timestamps
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-vf",
                    r"select='lt(n\,20)+not(mod(n-20\,3))'", "-fps_mode", "vfr", "-c:v", "libx264",
                    "-preset", "veryfast", str(vfr)], check=True)
    got = np.stack(list(lm._frames(str(vfr), 25.0, probe(vfr).duration)))
    want = read_frames(vfr, fps=25.0)
    assert len(got) > 40 and got.shape == want.shape and np.array_equal(got, want)


def _slow_to_array(lms, n, w, h, visibility, dx=0.0, dy=0.0):
    out = np.full((n, 4 if visibility else 3), np.nan, np.float32)
    for i, p in enumerate(list(lms.landmark)[:n]):
        out[i, :3] = (p.x * w + dx, p.y * h + dy, p.z * w)
        if visibility:
            out[i, 3] = p.visibility
    return out


def test_landmarks_read_from_the_wire_match_field_by_field_and_odd_layouts_fall_back():
    from mediapipe.framework.formats import landmark_pb2

    from annotate.landmarks import _to_array, _wire_floats

    rng = np.random.default_rng(0)

    def message(n, fields=("x", "y", "z", "visibility"), skip=None):
        lms = landmark_pb2.NormalizedLandmarkList()
        for i in range(n):
            p = lms.landmark.add()
            for f in fields:
                if (i, f) != skip:
                    setattr(p, f, float(rng.normal()))
        return lms

    face = message(478, ("x", "y", "z"))
    assert _wire_floats(face, 3) is not None  # the face mesh's layout: read in one pass
    assert np.allclose(_to_array(face, 478, 512, 400, False, 7, 9), _slow_to_array(face, 478, 512, 400, False, 7, 9),
                       atol=1e-4, equal_nan=True)
    pose = message(33, ("x", "y", "z", "visibility", "presence"))  # presence after visibility: still read
    assert _wire_floats(pose, 4) is not None
    assert np.allclose(_to_array(pose, 33, 512, 512, True), _slow_to_array(pose, 33, 512, 512, True), atol=1e-4)
    odd = message(21, ("x", "y", "z"), skip=(5, "z"))  # one point without z: not the fixed layout
    assert _wire_floats(odd, 3) is None
    assert np.allclose(_to_array(odd, 21, 64, 64, False), _slow_to_array(odd, 21, 64, 64, False),
                       atol=1e-4, equal_nan=True)
    assert _wire_floats(message(10, ("x", "y")), 3) is None  # no z at all
    assert np.isnan(_to_array(None, 5, 64, 64, False)).all()


# -- the pose keyframes stretched on a still talking head (pose_max_stride) --------------------
def test_pose_keyframes_stretch_only_while_the_face_is_still(talking):
    """Head and shoulders (the talking clip's top 352 rows: no arm in the picture): a still
    picture gets a pose keyframe every pose_max_stride frames; the same picture moving
    (shifted 3 px a frame: the face mesh moves 0.025 of the face's size in one frame, over
    pose_face_motion) every pose_stride frames, as without the stretch; the swaying clip
    some in between, within 0.03 of the face's size of Holistic (the stretch's error moves
    with which frames are keyframes: 2.1 px against 1.3 here at 0.02, 1.65 against 1.72 on
    two 4 s clips at 0.015). The whole picture (an elbow in it): the stride."""
    from annotate.landmarks import HolisticLandmarks

    _, full, _ = talking
    frames = np.ascontiguousarray(full[:, :352])
    cfg = LandmarksConfig()
    assert (cfg.pose_stride, cfg.pose_max_stride, cfg.pose_face_motion) == (3, 6, 0.015)  # the defaults
    a = HolisticLandmarks(cfg)
    a.process_frames(np.stack([frames[0]] * 25))
    assert a.pose_frames == len(range(0, 25, 6))  # 0, 6, ..., 24
    a.process_frames(np.stack([np.roll(frames[0], 3 * t, axis=1) for t in range(25)]))
    assert a.pose_frames == len(range(0, 25, 3))  # 0, 3, ..., 24: the stride as without the stretch
    a.process_frames(np.stack([full[0]] * 25))
    assert a.pose_frames == len(range(0, 25, 3))  # the astronaut's elbow in the picture: the stride

    ref = HolisticLandmarks(cfg).process_frames(frames, mode="holistic")
    out = a.process_frames(frames)
    stretched = a.pose_frames
    plain = HolisticLandmarks(cfg.model_copy(update={"pose_max_stride": 3}))
    base = plain.process_frames(frames)
    assert stretched < plain.pose_frames, (stretched, plain.pose_frames)
    seen = ref["pose"][..., 3] >= 0.5
    err = [np.hypot(*(o["pose"][..., :2] - ref["pose"][..., :2]).transpose(2, 0, 1))[seen].mean() for o in (out, base)]
    assert max(err) < 0.03 * _face_size(ref["face"]), err


def test_pose_keyframes_keep_the_stride_when_an_arm_is_in_the_picture():
    from annotate.landmarks import HolisticLandmarks

    a = HolisticLandmarks(LandmarksConfig(pose_stride=3, pose_max_stride=6, pose_face_motion=0.02))
    face = np.random.default_rng(0).uniform(100, 200, (478, 3)).astype(np.float32)
    pose = np.zeros((33, 4), np.float32)
    pose[:, :2], pose[:, 3] = 256, 0.1  # nothing seen ...
    pose[11:13, 3] = 0.9  # ... but the shoulders
    shape = (512, 512, 3)
    assert [a._pose_due(g, pose, face, face, shape) for g in (2, 3, 5, 6)] == [False, False, False, True]
    pose[15, 3] = 0.9  # a wrist in the picture: the plain stride
    assert [a._pose_due(g, pose, face, face, shape) for g in (2, 3)] == [False, True]
    pose[15, :2] = 600  # ... outside the picture: stretched again
    assert not a._pose_due(3, pose, face, face, shape)
    assert a._pose_due(3, pose, face, np.full_like(face, np.nan), shape)  # the face lost: a keyframe


# -- a clip the sync check will reject: the face mesh only ----------------------------------
class _Counted:
    """A mediapipe solution module whose graph class counts how many graphs were built."""

    def __init__(self, module, graph: str):
        self.built, self._cls = 0, getattr(module, graph)
        setattr(self, graph, self._make)

    def _make(self, **kw):
        self.built += 1
        return self._cls(**kw)


def test_a_clip_sync_rejects_never_runs_the_pose_model(tmp_path, talking_clip, media_root, make_record):
    from annotate.registry import STAGES, build_annotators
    from mentor.config import parse_config
    from mentor.contracts import Stage
    from mentor.media import extract_audio
    from mentor.testmedia import make_talking_clip

    cfg = parse_config("sources:\n  - {name: a, kind: folder, path: .}\n", "t.yaml", str(tmp_path))
    pair = tuple(s for s in STAGES if s.name in ("landmarks", "sync"))
    lm, sync = build_annotators(cfg, pair, tmp_path)
    assert lm.sync_verdict == sync.would_reject  # the registry wires them: sync runs right after
    between = (pair[0], Stage("other", None, lambda: type("Other", (), {"name": "other"})()), pair[1])
    assert build_annotators(cfg, between, tmp_path)[0].sync_verdict is None  # not with a stage between

    other = make_talking_clip(media_root / "lm_other_voice.mp4", seconds=4.0, fps=25, size=128, seed=1)
    voices = {"own": extract_audio(talking_clip, tmp_path / "own.wav"),  # other sentences: test_av_sync's dubbed clip
              "other": extract_audio(other, tmp_path / "other.wav")}
    pose, hands = _Counted(lm._pose, "Pose"), _Counted(lm._hands, "Hands")
    lm._pose, lm._hands = pose, hands
    dubbed = sync(lm(make_record(audio=voices["other"], video=talking_clip, fps=25)))
    assert pose.built == hands.built == 0 and lm.pose_frames == 0
    assert dubbed.rejected.startswith("sync: not_visible: speaker not visible or dubbed (confidence ")
    assert set(dubbed.arrays) == {"landmarks.face"} and "landmarks.pose_fraction" not in dubbed.scores
    assert dubbed.annotations["landmarks"]["body"].startswith("skipped: the sync check rejects the clip (not_visible")

    # its own voice: kept, and every array as a landmark stage that asks nothing writes it
    kept = sync(lm(make_record(audio=voices["own"], video=talking_clip, fps=25)))
    assert kept.kept and pose.built == 1 and lm.pose_frames > 0 and "body" not in kept.annotations["landmarks"]
    lm.sync_verdict = None
    plain = lm(make_record(audio=voices["own"], video=talking_clip, fps=25))
    assert list(kept.arrays) == list(plain.arrays) == ["landmarks.pose", "landmarks.face", "landmarks.left_hand",
                                                       "landmarks.right_hand"]
    for k, a in plain.arrays.items():
        np.testing.assert_array_equal(kept.arrays[k].data, a.data)
    assert {k: v for k, v in kept.scores.items() if k.startswith("landmarks.")} == \
        {k: v for k, v in plain.scores.items() if k.startswith("landmarks.")}
