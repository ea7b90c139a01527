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
