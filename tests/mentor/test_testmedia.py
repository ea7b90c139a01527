"""mentor.testmedia makes what it promises: exact durations, voices that take turns,
hard cuts, two people, determinism, and a demo folder with kept and rejected clips."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mentor import media, testmedia
from mentor.testmedia import TestMediaError

SR = 16000


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def test_speech_wav_exact_and_padded(speech_wav):
    info = media.probe(speech_wav)
    assert info.sample_rate == SR and not info.has_video
    x = media.read_audio(speech_wav)
    assert len(x) == 3 * SR
    assert _rms(x[: 2 * SR]) > 0.02  # the sentence takes about 2 s ...
    assert _rms(x[-SR // 4:]) < 1e-3  # ... and is padded with silence


def test_silence_wav(silence_wav):
    x = media.read_audio(silence_wav)
    assert len(x) == 2 * SR and np.abs(x).max() == 0


def test_two_speakers_take_turns(two_speaker_wav):
    x = media.read_audio(two_speaker_wav)
    assert len(x) == 8 * SR
    turns = json.loads(two_speaker_wav.with_suffix(".turns.json").read_text())
    assert len(turns) >= 3
    assert [t[2] for t in turns] == [i % 2 for i in range(len(turns))]
    for (s0, e0, _), (s1, _, _) in zip(turns, turns[1:]):
        assert e0 < s1  # a pause between turns ...
        gap = x[int(e0 * SR) + 400:int(s1 * SR) - 400]
        assert _rms(gap) < 1e-3  # ... that is silent
    for s, e, _ in turns:
        assert _rms(x[int(s * SR):int(e * SR)]) > 0.02
    # en+m3 and en+f4 differ in pitch: compare zero-crossing rates of the first two turns.
    zcr = [np.mean(np.abs(np.diff(np.sign(x[int(s * SR):int(e * SR)]))) > 0) for s, e, _ in turns[:2]]
    assert abs(zcr[0] - zcr[1]) > 0.01


def test_talking_clip_is_deterministic_and_seeded(tmp_path):
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    a = testmedia.make_talking_clip(tmp_path / "a.mp4", seconds=1.0, size=128)
    b = testmedia.make_talking_clip(tmp_path / "b.mp4", seconds=1.0, size=128)
    c = testmedia.make_talking_clip(tmp_path / "c.mp4", seconds=1.0, size=128, seed=1)
    assert digest(a) == digest(b) != digest(c)


def test_talking_clip_options(tmp_path):
    silent = testmedia.make_talking_clip(tmp_path / "v.mp4", seconds=1.2, fps=10, size=96, audio=False,
                                         mouth=False, image="camera")
    info = media.probe(silent)
    assert (info.width, info.fps, info.num_frames, info.has_audio) == (96, 10.0, 12, False)
    frame = media.read_frames(silent, end=0.1)[0].astype(int)
    assert np.abs(frame[..., 0] - frame[..., 1]).mean() < 3  # the grey cameraman stays grey


def test_mouth_opens_only_with_mouth(tmp_path):
    closed = testmedia.open_mouth("astronaut", 512, 0.0)
    wide = testmedia.open_mouth("astronaut", 512, 1.0)
    changed = np.argwhere(np.abs(closed.astype(int) - wide.astype(int)).max(axis=2) > 20)
    lm = testmedia.face_landmarks("astronaut", 512)
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0)
    # Only the mouth, chin and upper neck change: between the lip line and below the chin.
    assert lm[13, 1] - 3 <= y0 and y1 <= lm[152, 1] + 0.8 * (lm[152, 1] - lm[13, 1]) + 15
    assert lm[234, 0] <= x0 and x1 <= lm[454, 0]  # within the face's width


def test_shot_change_clip_has_one_hard_cut(tmp_path):
    clip = testmedia.make_shot_change_clip(tmp_path / "s.mp4", seconds_per_shot=(1.0, 1.2), size=128)
    frames = media.read_frames(clip).astype(np.float32)
    assert len(frames) == 55
    diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert int(np.argmax(diff)) + 1 == 25
    assert diff[24] > 5 * np.sort(diff)[-2]


def test_multi_person_clip_has_two_faces(tmp_path):
    mp = pytest.importorskip("mediapipe")
    clip = testmedia.make_multi_person_clip(tmp_path / "m.mp4", 1.0)
    frame = media.read_frames(clip, end=0.04)[0]
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as fd:
        faces = fd.process(frame).detections or []
    assert len(faces) == 2
    centres = sorted(f.location_data.relative_bounding_box.xmin for f in faces)
    assert centres[0] < 0.5 < centres[1]  # one on each side


def test_demo_sources_mix_kept_and_rejected(tmp_path):
    paths = testmedia.make_demo_sources(tmp_path / "demo", n=2, size=128)
    assert len(paths) == 4 and all(p.parent == tmp_path / "demo" for p in paths)
    good, bad = [], []
    for p in paths:
        try:
            good.append(media.probe(p))
        except media.MediaError:
            bad.append(p)
    assert len(bad) == 1 and "truncated" in bad[0].name
    assert all(6.0 <= g.duration <= 12.1 and g.has_audio and g.width == 128 for g in good)
    assert not (tmp_path / "demo" / ".broken").exists()


@pytest.mark.parametrize("kwargs,match", [
    ({"image": "nobody"}, "unknown test image"),
    ({"seconds": 0}, "seconds"),
    ({"fps": -1}, "fps"),
    ({"size": 10}, "size"),
])
def test_bad_arguments_raise(tmp_path, kwargs, match):
    with pytest.raises(TestMediaError, match=match):
        testmedia.make_talking_clip(tmp_path / "x.mp4", **kwargs)
