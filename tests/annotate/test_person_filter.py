"""The track-and-filter stage on real test clips (a photo of a person with espeak speech)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from mentor.config import FilterConfig
from mentor.media import probe
from mentor.record import ClipRecord, SourceRecord

SECONDS, SIZE = 3.0, 384


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """name -> path: talking, two people, no audio stream, silent audio, dark picture."""
    from mentor import testmedia as tm

    d = tmp_path_factory.mktemp("filter")
    talk = tm.make_talking_clip(d / "talk.mp4", SECONDS, size=SIZE)
    out = {
        "talk": talk,
        "two": tm.make_multi_person_clip(d / "two.mp4", SECONDS, size=SIZE),
        "mute": tm.make_talking_clip(d / "mute.mp4", SECONDS, size=SIZE, audio=False),
        "silent": d / "silent.mp4",
        "dark": d / "dark.mp4",
    }
    ff = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(talk)]
    subprocess.run(ff + ["-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-map", "0:v", "-map", "1:a",
                         "-c:v", "copy", "-c:a", "aac", "-shortest", str(out["silent"])], check=True)
    subprocess.run(ff + ["-vf", "lutyuv=y=val*0.2", "-c:a", "copy", str(out["dark"])], check=True)
    return out


@pytest.fixture(scope="module")
def person_filter():
    import torch

    from annotate.person_filter import PersonFilter

    torch.set_num_threads(1)
    f = PersonFilter(FilterConfig())
    yield f
    f.close()


def _record(path, start=0.0, end=SECONDS - 0.04) -> ClipRecord:
    src = SourceRecord.from_uri(str(path), path=str(path))
    src.probe = probe(path).as_dict()
    return ClipRecord.for_span(src, start, end)


def test_talking_clip_is_kept_with_sane_scores_and_crop(person_filter, clips):
    rec = person_filter(_record(clips["talk"]))
    s = {k.removeprefix("filter."): v for k, v in rec.scores.items()}
    assert rec.rejected is None, rec.annotations["filter"]
    assert rec.status["filter"] == "done" and rec.annotations["filter"]["failed"] == []
    assert s["resolution"] == SIZE and s["has_audio"] is True
    assert s["face_fraction"] >= 0.9 and s["extra_person_fraction"] == 0.0
    assert 0.15 * SIZE < s["face_size_px"] < 0.4 * SIZE
    assert s["face_jitter"] < 0.1
    assert abs(s["yaw_deg"]) < 15 and abs(s["pitch_deg"]) < 20  # a near-frontal photo
    assert s["body_visibility"] in ("head_torso", "torso_hands")
    assert s["blur_var"] > 50 and 60 < s["brightness"] < 220
    assert s["speech_fraction"] > 0.5

    boxes = rec.arrays["filter.face_box"].data
    assert boxes.shape == (s["frames"], 4) and not np.isnan(boxes).any()
    face = np.median(boxes, axis=0)
    c = rec.crop
    assert c is not None and 0 <= c.x and 0 <= c.y and c.x + c.size <= SIZE and c.y + c.size <= SIZE
    assert c.x <= face[0] and c.y <= face[1] and face[2] <= c.x + c.size and face[3] <= c.y + c.size
    assert c.size >= 2 * s["face_size_px"]

    back = ClipRecord.from_row(rec.to_row())  # scores and crop survive the trip through Ray
    assert back.scores == rec.scores and back.crop == rec.crop
    assert back.arrays["filter.face_box"].fps == 5.0
    json.dumps(rec.annotations)


@pytest.mark.parametrize("name, reason", [
    ("two", "two_people"),
    ("mute", "no_audio"),
    ("silent", "little_speech"),
    ("dark", "dark"),
])
def test_bad_clips_are_rejected_with_a_reason(person_filter, clips, name, reason):
    rec = person_filter(_record(clips[name]))
    assert rec.rejected is not None and rec.rejected.startswith(f"filter: {reason}: "), rec.rejected
    assert rec.status["filter"] == "done"  # a rejection is a result, not a failure
    assert "filter.face_fraction" in rec.scores and "filter.speech_fraction" in rec.scores
    if name == "two":
        assert rec.scores["filter.extra_person_fraction"] > 0.5
    if name == "mute":
        assert rec.scores["filter.has_audio"] is False and rec.scores["filter.speech_fraction"] is None
    if name == "silent":
        assert rec.scores["filter.speech_fraction"] < 0.05
    if name == "dark":
        assert rec.scores["filter.brightness"] < 40


def test_thresholds_come_from_the_config(person_filter, clips):
    keep = person_filter.cfg
    try:
        person_filter.cfg = FilterConfig(require_audio=False, min_face_px=SIZE)
        rec = person_filter(_record(clips["mute"]))
        assert rec.rejected.startswith("filter: face_small: ")
        assert not any(r.startswith("no_audio") for r in rec.annotations["filter"]["failed"])
    finally:
        person_filter.cfg = keep


def test_span_is_respected_and_batch_matches_single(person_filter, clips):
    recs = person_filter.process_batch([_record(clips["talk"], 0.0, 1.0), _record(clips["talk"], 1.0, 2.96)])
    assert [r.scores["filter.frames"] for r in recs] == [5, 10]  # 5 samples per second of span
    single = person_filter(_record(clips["talk"], 1.0, 2.96))
    assert single.scores == recs[1].scores and single.crop == recs[1].crop


def test_one_decoding_pass_per_clip(person_filter, clips, video_opens):
    """The sampled frames and the full-resolution quality frames come from one reader."""
    rec = person_filter(_record(clips["talk"], 0.5, 2.5))
    assert rec.kept and rec.scores["filter.blur_var"] is not None
    assert dict(video_opens) == {str(clips["talk"]): 1}


def test_unreadable_or_missing_source_is_recorded_not_raised(person_filter, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n" * 50)
    rec = ClipRecord.for_span(SourceRecord.from_uri(str(bad), path=str(bad)), 0.0, 3.0)
    rec = person_filter(rec)
    assert rec.status["filter"] == "failed" and "bad.mp4" in rec.errors["filter"]
    assert rec.rejected.startswith("filter: unreadable: ")
    rec = person_filter(ClipRecord.for_span(SourceRecord.from_uri("x"), 0.0, 3.0))
    assert rec.status["filter"] == "failed" and not rec.kept


def test_blur_measure_drops_on_a_blurred_face():
    import cv2
    from skimage import data

    from annotate.person_filter import _blur_var, _luma

    face = _luma(data.astronaut()[40:180, 160:300])
    sharp, soft = _blur_var(face), _blur_var(cv2.GaussianBlur(face, (0, 0), 3))
    assert sharp > 50 > soft
    assert _blur_var(cv2.resize(face, None, fx=3, fy=3)) == pytest.approx(sharp, rel=0.5)  # scale-independent


def test_speech_check_reuses_the_sources_vad(person_filter, clips):
    """When prepare ran the VAD on the whole source (diarization on), the clip's speech
    check takes the clip's part of those segments instead of running silero again: the
    same verdicts, and a silent track said to be speech by them counts as speech (so the
    audio was not read)."""
    from annotate.diarize import source_speech_turns
    from mentor.config import DiarizationConfig, VadConfig
    from mentor.curate.prepare import SOURCE_SPEECH, clip_segments

    assert clip_segments([(0.5, 1.0), (1.5, 2.5), (3.0, 4.0)], 1.0, 3.0) == [[0.5, 1.5]]
    assert clip_segments([(0.0, 5.0)], 1.0, 3.0) == [[0.0, 2.0]]
    for name in ("talk", "silent"):
        speech, _ = source_speech_turns(str(clips[name]), DiarizationConfig(), VadConfig())
        rec = _record(clips[name])
        rec.annotations[SOURCE_SPEECH] = {"segments": clip_segments(speech, rec.start, rec.end)}
        reused = person_filter(rec)
        again = person_filter(_record(clips[name]))
        assert reused.rejected == again.rejected, name
        assert abs(reused.scores["filter.speech_fraction"] - again.scores["filter.speech_fraction"]) < 0.1, name
    assert reused.rejected.startswith("filter: little_speech")  # the silent one
    rec = _record(clips["silent"])
    rec.annotations[SOURCE_SPEECH] = {"segments": [[0.0, 2.0]]}
    assert person_filter(rec).scores["filter.speech_fraction"] == pytest.approx(2.0 / (SECONDS - 0.04), abs=1e-3)


@pytest.mark.parametrize("name, reason", [("silent", "little_speech"), ("mute", "no_audio")])
def test_audio_checks_run_before_the_picture_is_decoded(person_filter, clips, video_opens, name, reason):
    """filters.audio_first: a clip without speech (or without audio) is rejected before its
    picture is decoded (no reader opened, picture scores None, the reason said); with it off
    the picture is examined and the verdict is the same."""
    from annotate.person_filter import AUDIO_FIRST

    rec = person_filter(_record(clips[name]))
    assert rec.rejected.startswith(f"filter: {reason}: ") and rec.status["filter"] == "done"
    assert str(clips[name]) not in video_opens
    assert rec.scores["filter.face_fraction"] is None and rec.scores["filter.resolution"] == SIZE
    assert rec.annotations["filter"]["picture"] == AUDIO_FIRST and rec.crop is None
    keep = person_filter.cfg
    try:
        person_filter.cfg = FilterConfig(audio_first=False)
        full = person_filter(_record(clips[name]))
    finally:
        person_filter.cfg = keep
    assert video_opens[str(clips[name])] == 1
    assert full.rejected == rec.rejected and full.scores["filter.face_fraction"] > 0.8
    assert full.scores["filter.speech_fraction"] == rec.scores["filter.speech_fraction"]
    # a talking clip passes the audio checks and is examined as before
    assert person_filter(_record(clips["talk"])).kept and video_opens[str(clips["talk"])] == 1


def test_filter_and_encoder_take_the_sources_probe_from_prepare(person_filter, clips, tmp_path, monkeypatch):
    """prepare's probe travels on the clip record (annotations["source_info"]): the filter
    and the encoder in another worker run no ffprobe on the source; a file changed since is
    probed again."""
    import os
    import shutil

    from mentor import media
    from mentor.config import parse_config
    from mentor.curate.encode import Encoder
    from mentor.curate.prepare import SOURCE_INFO, source_clips

    src = shutil.copy(clips["talk"], tmp_path / "talk.mp4")
    cfg = parse_config(f"sources:\n  - {{name: a, kind: folder, path: {tmp_path}}}\n"
                       "clips: {min_seconds: 1.0}\nannotate:\n  diarization: {enabled: false}\n", "t.yaml", str(tmp_path))
    rec = source_clips(SourceRecord.from_uri(src.as_uri()), cfg, tmp_path)[0]
    facts = rec.annotations[SOURCE_INFO]
    assert (facts["width"], facts["height"], facts["has_audio"]) == (SIZE, SIZE, True)
    media._ORIGINS.clear()  # another worker: nothing probed there yet
    calls: list[str] = []
    real = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: calls.append(os.path.basename(cmd[0])) or real(cmd, *a, **k))
    person_filter._probes.clear()
    kept = Encoder(cfg, tmp_path / "clips")(person_filter(rec.model_copy(deep=True)))
    assert kept.kept and kept.files["video"] and "ffprobe" not in calls, calls
    os.utime(src, ns=(0, 0))  # the file changed since prepare probed it
    calls.clear()
    again = person_filter(rec.model_copy(deep=True))
    assert "ffprobe" in calls and again.scores == kept.scores
