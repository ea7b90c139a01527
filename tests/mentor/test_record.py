"""The clip record: stable ids, stage-owned fields, serialisation round trips."""

from __future__ import annotations

import numpy as np

from mentor.record import ClipRecord, SourceRecord, clip_id


def test_clip_id_is_stable_and_a_valid_webdataset_key():
    a = clip_id("src", 1.0, 4.0)
    assert a == clip_id("src", 1.0000001, 4.0) and a != clip_id("src", 1.0, 4.1)
    assert "." not in a and a.isalnum()


def test_reject_keeps_first_reason_and_record_keeps_flowing():
    rec = ClipRecord.for_span(SourceRecord.from_uri("/a.mp4"), 0, 3)
    rec.reject("filter", "two_people: 40% of frames")
    rec.reject("sync", "dubbed")
    assert rec.rejected == "filter: two_people: 40% of frames" and rec.reject_stage == "filter"
    assert rec.index_row()["reject_stage"] == "filter"


def test_row_round_trip_keeps_arrays_and_files():
    rec = ClipRecord.for_span(SourceRecord.from_uri("/a.mp4", path="/a.mp4"), 2, 5)
    rec.add_array("landmarks.pose", np.full((3, 33, 4), np.nan, dtype=np.float32), fps=25, start=0.5)
    rec.files["video"] = "/tmp/x.mp4"
    rec.set_score("filter.blur_var", np.float64(12.5))
    back = ClipRecord.from_row(rec.to_row())
    assert back.files == {"source": "/a.mp4", "video": "/tmp/x.mp4"}
    assert np.isnan(back.arrays["landmarks.pose"].data).all()
    assert back.arrays["landmarks.pose"].fps == 25 and back.arrays["landmarks.pose"].start == 0.5
    assert type(back.scores["filter.blur_var"]) is float
    np.testing.assert_allclose(back.arrays["landmarks.pose"].times, [0.5, 0.54, 0.58])
