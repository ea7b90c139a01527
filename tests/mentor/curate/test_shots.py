"""Shot detection on a real two-shot clip and the clip-span rules."""

from __future__ import annotations

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
