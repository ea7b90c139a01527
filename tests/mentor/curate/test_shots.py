"""Shot detection on a real two-shot clip and the clip-span rules."""

from __future__ import annotations

import numpy as np
import pytest

from mentor.config import ClipConfig, ShotConfig
from mentor.curate.shots import clip_spans, detect_shots
from mentor.media import MediaError


@pytest.fixture(scope="module")
def two_shots(tmp_path_factory):
    from mentor.testmedia import make_shot_change_clip

    return make_shot_change_clip(tmp_path_factory.mktemp("shots") / "two_shots.mp4", (3.0, 2.5), size=256)


def test_two_shot_clip_gives_two_shots_with_the_cut_in_place(two_shots):
    shots = detect_shots(two_shots, ShotConfig())
    assert len(shots) == 2
    assert shots[0][0] == pytest.approx(0.0, abs=1e-6)
    assert shots[0][1] == pytest.approx(3.0, abs=0.2)
    assert shots[1][0] == pytest.approx(shots[0][1])
    assert shots[1][1] == pytest.approx(5.48, abs=0.1)


def test_shot_detection_decodes_the_source_once(two_shots, video_opens):
    """One reader gives the frames (scaled by the decoder) and the frame times (the last
    shot's end): the source is not opened a second time, by decord or OpenCV."""
    assert len(detect_shots(two_shots, ShotConfig(), frame_size=(256, 256))) == 2
    assert dict(video_opens) == {str(two_shots): 1}


def test_fast_options_still_find_the_cut(two_shots):
    shots = detect_shots(two_shots, ShotConfig(downscale=4, frame_skip=1))
    assert len(shots) == 2 and shots[0][1] == pytest.approx(3.0, abs=0.2)


def test_a_high_threshold_sees_one_shot(two_shots):
    assert len(detect_shots(two_shots, ShotConfig(threshold=255))) == 1


def test_unreadable_file_raises_media_error(tmp_path):
    bad = tmp_path / "not_video.mp4"
    bad.write_text("hello " * 100)
    with pytest.raises(MediaError, match="not_video.mp4"):
        detect_shots(bad, ShotConfig())


def test_clip_spans_trim_drop_and_split():
    cfg = ClipConfig(min_seconds=3, max_seconds=10, trim_seconds=0.2)
    spans = clip_spans([(0.0, 2.0), (2.0, 27.4), (27.4, 33.0)], cfg)
    # 2 s shot dropped; 25 s after trimming -> 3 pieces of 8.33 s; 5.2 s -> one piece
    assert len(spans) == 4
    for a, b in spans[:3]:
        assert b - a == pytest.approx(25.0 / 3)
    assert spans[0][0] == pytest.approx(2.2) and spans[2][1] == pytest.approx(27.2)
    assert spans[3] == pytest.approx((27.6, 32.8))
    for a, b in spans:
        assert cfg.min_seconds <= b - a <= cfg.max_seconds + 1e-9


def test_clip_spans_edge_cases():
    cfg = ClipConfig(min_seconds=3, max_seconds=10, trim_seconds=0.0)
    assert clip_spans([(0.0, 10.0)], cfg) == [(0.0, 10.0)]  # exactly max: one piece
    assert clip_spans([(0.0, 3.0)], cfg) == [(0.0, 3.0)]  # exactly min: kept
    assert clip_spans([(0.0, 2.99)], cfg) == []
    # min > max/2: an even split of 11 s would give 5.5 s < 6 s pieces -> one 10 s piece
    tight = ClipConfig(min_seconds=6, max_seconds=10, trim_seconds=0.0)
    assert clip_spans([(0.0, 11.0)], tight) == [(0.0, 10.0)]
    flat = [t for span in clip_spans([(0.0, 25.0)], tight) for t in span]
    assert flat == pytest.approx([0.0, 25 / 3, 25 / 3, 50 / 3, 50 / 3, 25.0])


# -- variable frame rate (issue 15, item 4) --------------------------------------------
@pytest.fixture(scope="module")
def vfr_pair(tmp_path_factory):
    """(cfr, vfr): three 4 s shots at 25 fps (astronaut, cameraman, astronaut), and the
    same file with every frame after the 50th kept one in three, at their true
    timestamps (134 frames over 12 s: an average of 11.3 fps)."""
    import subprocess

    from mentor.testmedia import make_shot_change_clip

    folder = tmp_path_factory.mktemp("vfr")
    cfr = make_shot_change_clip(folder / "cfr.mp4", (4.0, 4.0, 4.0), size=128)
    vfr = folder / "vfr.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(cfr),
                    "-vf", r"select='lt(n\,50)+not(mod(n-50\,3))'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-preset", "veryfast", "-c:a", "copy", str(vfr)], check=True)
    return cfr, vfr


def test_vfr_shots_follow_timestamps_and_cover_the_file(vfr_pair):
    from mentor.media import probe

    cfr, vfr = vfr_pair
    assert probe(vfr).num_frames == 134  # the file really is variable-rate
    shots = detect_shots(vfr, ShotConfig())
    assert len(shots) == 3
    assert [round(s[0], 1) for s in shots[1:]] == pytest.approx([4.0, 8.0], abs=0.15)
    assert shots[0][0] == 0.0 and shots[-1][1] == pytest.approx(12.0, abs=0.1)
    assert all(a[1] == b[0] for a, b in zip(shots, shots[1:]))


def _face_pixels(frames):
    return frames.astype(float).mean(axis=(1, 2, 3))


def test_vfr_frames_are_read_at_their_time(vfr_pair):
    """8.2 s is in the third shot (the astronaut); frame round(8.2 x 11.3) = 93 is at
    7.16 s, in the second (the cameraman): reading by frame count shows the wrong shot."""
    from mentor.media import read_frames

    cfr, vfr = vfr_pair
    times = [1.0, 5.0, 8.2, 11.5]
    want = np.concatenate([read_frames(cfr, fps=25, start=t, end=t + 0.04) for t in times])
    got = np.concatenate([read_frames(vfr, fps=25, start=t, end=t + 0.04) for t in times])
    # the one-in-three file shows a frame at most 0.08 s from t: the same shot, nearly the same picture
    assert np.abs(_face_pixels(got) - _face_pixels(want)).max() < 3.0
    every = read_frames(vfr, fps=5)
    assert len(every) == 60  # 12 s at 5 fps: the whole file, not 134 / 11.3 s of it


def test_vfr_clip_encoded_at_25_fps_stays_in_sync(vfr_pair, tmp_path):
    from mentor.media import encode_clip, read_audio, read_frames

    cfr, vfr = vfr_pair
    clip = encode_clip(vfr, tmp_path / "clip.mp4", 7.0, 10.0, fps=25, size=64, with_audio=True)
    frames = read_frames(clip)
    assert len(frames) == 75
    ref = read_frames(cfr, fps=25, start=7.0, end=10.0, size=(64, 64))
    # across the cut at 8 s: the clip's pictures follow the source's timeline
    assert np.abs(_face_pixels(frames)[::5] - _face_pixels(ref)[::5]).max() < 4.0
    audio, ref_audio = read_audio(clip), read_audio(cfr, start=7.0, duration=3.0)
    n = min(len(audio), len(ref_audio))
    assert n >= 16000 * 2.9 and np.corrcoef(audio[:n], ref_audio[:n])[0, 1] > 0.9
