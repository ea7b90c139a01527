"""The clip record: stable ids, stage-owned fields, serialisation round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mentor.record import MIGRATIONS, SCHEMA_VERSION, ClipRecord, SchemaVersionError, SourceRecord, clip_id


def test_clip_id_is_stable_and_a_valid_webdataset_key():
    a = clip_id("src", 1.0, 4.0)
    assert a == clip_id("src", 1.0000001, 4.0) and a != clip_id("src", 1.0, 4.1)
    assert "." not in a and a.isalnum()


def test_reject_keeps_first_reason_and_record_keeps_flowing():
    rec = ClipRecord.for_span(SourceRecord.from_uri("/a.mp4"), 0, 3)
    rec.reject("filter", "two_people", "40% of frames")
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


# -- structured rejections ----------------------------------------------------------------

def _clip():
    return ClipRecord.for_span(SourceRecord.from_uri("/a.mp4"), 0, 3)


def test_reject_with_code_value_and_threshold():
    rec = _clip()
    rec.reject("vad", "low_speech", "speech in 12% of the clip < 30%", value=np.float32(0.12), threshold=0.3)
    rec.reject("sync", "audio_offset", "later rejections do not replace the first")
    r = rec.rejection
    assert (r.stage, r.code, r.detail, r.threshold) == ("vad", "low_speech", "speech in 12% of the clip < 30%", 0.3)
    assert r.value == pytest.approx(0.12) and type(r.value) is float
    assert rec.rejected == "vad: low_speech: speech in 12% of the clip < 30%" and not rec.kept
    row = rec.index_row()
    assert (row["reject_stage"], row["reject_code"], row["reject_threshold"]) == ("vad", "low_speech", 0.3)
    back = ClipRecord.from_json(rec.to_json())
    assert back.rejection == r and back.rejected == rec.rejected
    with pytest.raises(ValueError, match="lower_snake_case"):
        _clip().reject("vad", "Low Speech", "detail")
    with pytest.raises(ValueError, match="must be a number"):
        _clip().reject("vad", "low_speech", "x", value="12%")


def test_old_reject_call_still_works_with_a_warning():
    rec = _clip()
    with pytest.warns(DeprecationWarning, match="pass a code and a detail"):
        rec.reject("filter", "face_small: 40 px < 64 px")
    assert (rec.rejection.code, rec.rejection.detail) == ("face_small", "40 px < 64 px")
    rec = _clip()
    with pytest.warns(DeprecationWarning):
        rec.reject("vad", "speech in 12% of the clip < 30%")
    assert rec.rejection.code == "legacy" and rec.rejection.detail == "speech in 12% of the clip < 30%"
    assert rec.rejected == "vad: legacy: speech in 12% of the clip < 30%"


# -- schema versions -------------------------------------------------------------------------

def _old_json(**extra) -> str:
    """A record as mentor with schema 1.0 wrote it: free-text `rejected`, no `rejection`."""
    d = json.loads(_clip().to_json())
    d.pop("rejection")
    d.update(schema_version="1.0", rejected="vad: speech in 12% of the clip < 30%", **extra)
    return json.dumps(d)


def test_old_record_is_migrated():
    assert SCHEMA_VERSION != "1.0" and "1.0" in MIGRATIONS
    rec = ClipRecord.from_json(_old_json())
    assert rec.schema_version == SCHEMA_VERSION
    assert (rec.rejection.stage, rec.rejection.code) == ("vad", "legacy") and rec.reject_code == "legacy"
    assert rec.rejected == "vad: speech in 12% of the clip < 30%", "the old text is kept as it was"
    d = json.loads(_old_json())
    d["rejected"] = "filter: face_small: 40 px < 64 px"
    assert ClipRecord.from_json(json.dumps(d)).rejection.code == "face_small"
    d.pop("schema_version")  # the earliest records carry none: 1.0
    assert ClipRecord.from_json(json.dumps(d)).schema_version == SCHEMA_VERSION


def test_newer_record_fails_naming_the_version_and_the_fix():
    d = json.loads(_clip().to_json())
    d["schema_version"] = "2.0"
    with pytest.raises(SchemaVersionError, match=r"schema_version 2\.0, newer than this mentor's .*Upgrade mentor"):
        ClipRecord.from_json(json.dumps(d))
    d["schema_version"] = "banana"
    with pytest.raises(SchemaVersionError, match="not a version number"):
        ClipRecord.from_json(json.dumps(d))


def test_unknown_fields_survive_a_rewrite(tmp_path):
    """Fields this version does not know (a newer tool's, a plugin's) are written back, also
    after the store round trip that `mentor annotate` does (records -> annotators -> writer)."""
    from mentor.store import Store, StoreWriter

    d = json.loads(_clip().to_json())
    d["future_field"] = {"a": [1, 2]}
    d["attributes"] = {"skin_tone_group": {"value": "light", "method": "m", "calibration": "v2"}}
    rec = ClipRecord.from_json(json.dumps(d))
    rec.fps = 25.0
    assert json.loads(rec.to_json())["future_field"] == {"a": [1, 2]}
    with StoreWriter(tmp_path / "s") as w:
        w.add(rec)
    again = next(Store(tmp_path / "s").records())
    again.set_score("vad.speech_fraction", 0.5)  # an annotator changes the record
    with StoreWriter(tmp_path / "t") as w:
        w.add(again)
    out = json.loads(next(Store(tmp_path / "t").records()).to_json())
    assert out["future_field"] == {"a": [1, 2]} and out["attributes"]["skin_tone_group"]["calibration"] == "v2"
    assert out["scores"]["vad.speech_fraction"] == 0.5


def test_store_schema_version_is_checked(tmp_path):
    from mentor.store import Store, StoreError, StoreWriter

    with StoreWriter(tmp_path / "s") as w:
        w.add(_clip())
    meta_path = tmp_path / "s" / "store.json"
    meta = json.loads(meta_path.read_text())
    assert meta["schema_version"] == SCHEMA_VERSION
    meta["schema_version"] = "1.0"  # older: read as it is
    meta_path.write_text(json.dumps(meta))
    assert len(Store(tmp_path / "s").clips()) == 1
    meta["schema_version"] = "3.1"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"store .* has schema_version 3\.1, newer than .*Upgrade mentor"):
        Store(tmp_path / "s")
