from __future__ import annotations

import pytest

from annotate.vad import VoiceActivity, vad_segments
from mentor.config import VadConfig


@pytest.fixture(scope="module")
def vad():
    return VoiceActivity(VadConfig())


def test_speech_has_segments_inside_the_clip(vad, speech_wav, make_record):
    rec = vad(make_record(audio=speech_wav))
    segs = vad_segments(rec)
    assert rec.status["vad"] == "done" and rec.kept
    assert segs and all(0 <= s < e <= rec.duration + 0.05 for s, e in segs)
    # espeak says one sentence of about 2 s in a 3 s file
    assert 0.4 < rec.scores["vad.speech_fraction"] < 0.95


def test_silence_has_no_speech_and_is_rejected(vad, silence_wav, make_record):
    rec = vad(make_record(audio=silence_wav))
    assert rec.annotations["vad"]["segments"] == []
    assert rec.scores["vad.speech_fraction"] == 0
    assert rec.rejected == "vad: low_speech: speech in 0% of the clip < 30%"
    assert (rec.rejection.code, rec.rejection.value, rec.rejection.threshold) == ("low_speech", 0.0, 0.3)


def test_unreadable_audio_fails_the_clip_not_the_call(vad, tmp_path, make_record):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    rec = make_record()
    rec.files["audio"] = str(bad)
    rec = vad(rec)
    assert rec.status["vad"] == "failed" and "bad.wav" in rec.errors["vad"]


def test_the_sources_vad_is_used_when_prepare_ran_it(vad, silence_wav, make_record):
    """With diarization on, prepare ran this VAD on the whole source and gave each clip its
    part (annotations["source_speech"]): the stage takes those segments, not a second
    pass over the clip's audio (here silent, so a second pass would find nothing)."""
    from mentor.curate.prepare import SOURCE_SPEECH

    rec = make_record(audio=silence_wav)
    rec.annotations[SOURCE_SPEECH] = {"segments": [[0.25, 1.5], [1.75, 2.5]]}
    rec = vad(rec)
    assert vad_segments(rec) == [(0.25, 1.5), (1.75, 2.5)] and rec.kept
    assert rec.scores["vad.speech_seconds"] == pytest.approx(2.0)
