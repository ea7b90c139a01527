"""Face tracks from boxes, and the fixed crop around them (pure geometry, no models)."""

from __future__ import annotations

import pytest

from annotate.face_track import extra_face_frames, iou, link_tracks, main_track, square_crop


def _box(x, y, s=100.0):
    return (x, y, x + s, y + s)


def test_iou():
    assert iou(_box(0, 0), _box(0, 0)) == pytest.approx(1.0)
    assert iou(_box(0, 0), _box(50, 0)) == pytest.approx(1 / 3)
    assert iou(_box(0, 0), _box(200, 0)) == 0.0


def test_tracks_link_by_overlap_and_survive_a_short_gap():
    a = [_box(100 + 5 * t, 100) for t in range(6)]
    dets = [[a[0], _box(400, 100, 60)], [a[1]], [], [a[3], _box(402, 101, 60)], [a[4]], [a[5]]]
    tracks = link_tracks(dets, max_gap=2)
    main = main_track(tracks)
    assert sorted(main.boxes) == [0, 1, 3, 4, 5]  # one track across the missed frame 2
    assert main.median_side() == pytest.approx(100)
    assert main.jitter() == pytest.approx(0.05)  # 5 px per sample on a 100 px face
    assert len(tracks) == 2  # the small face is linked across its own gap too
    extra = extra_face_frames(dets, main, min_ratio=0.25)
    assert extra == [True, False, False, True, False, False]
    assert extra_face_frames(dets, main, min_ratio=0.7) == [False] * 6  # 60 px < 0.7 * 100 px


def test_a_jump_starts_a_new_track():
    dets = [[_box(0, 0)], [_box(0, 0)], [_box(300, 300)], [_box(300, 300)], [_box(300, 300)]]
    tracks = link_tracks(dets)
    assert len(tracks) == 2 and sorted(main_track(tracks).boxes) == [2, 3, 4]
    assert main_track([]) is None


def test_square_crop_holds_the_face_and_stays_in_the_frame():
    boxes = [_box(200, 100), _box(210, 104), _box(205, 98)]
    x, y, s = square_crop(boxes, 640, 480, margin=1.0, down_shift=0.35)
    assert s == 300
    for b in boxes:
        assert x <= b[0] and y <= b[1] and b[2] <= x + s and b[3] <= y + s
    assert y + s / 2 > 150  # shifted below the face centre, towards the torso
    # near a corner and too big: clamped to the frame's shorter side, inside it
    x, y, s = square_crop([_box(0, 0, 200)], 640, 360, margin=1.0, down_shift=0.35)
    assert (x, y, s) == (0, 0, 360)
