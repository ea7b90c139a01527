from __future__ import annotations

import json
import socket

import pytest

from annotate.asr import NO_WEIGHTS, Transcriber
from mentor.config import AsrConfig


def test_without_weights_every_record_says_skipped(speech_wav, make_record):
    asr = Transcriber(AsrConfig())
    assert asr.skipped == NO_WEIGHTS
    rec = asr(make_record(audio=speech_wav))
    assert rec.status["asr"] == "skipped: no weights"
    assert "asr" not in rec.annotations  # no fake text


def test_a_missing_checkpoint_raises_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        Transcriber(AsrConfig(whisper_model=str(tmp_path / "missing.pt")))


def test_tiny_checkpoint_runs_through_whisper_transcribe_offline(tiny_whisper_checkpoint, speech_wav, make_record,
                                                                 monkeypatch):
    import whisper.tokenizer

    def no_network(*a, **k):
        raise OSError("network used during a test")

    # loading, the tokenizer (tiktoken vocab from the wheel) and decoding must not touch the network
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    # one temperature: the fallback would only decode the same garbage again, hotter
    asr = Transcriber(AsrConfig(whisper_model=str(tiny_whisper_checkpoint), device="cpu", temperature=[0.0]))
    assert asr.skipped is None
    rec = asr(make_record(audio=speech_wav))
    assert rec.status["asr"] == "done", rec.errors
    ann = rec.annotations["asr"]
    assert ann["language"] in whisper.tokenizer.LANGUAGES  # detected: the tiny model is multilingual
    assert isinstance(ann["text"], str)
    # random weights make garbage text, but in whisper's structure with word timings
    assert ann["segments"], "a random decoder still emits tokens"
    words = [w for s in ann["segments"] for w in s["words"]]
    assert words and rec.scores["asr.words"] == len(words)
    for s in ann["segments"]:
        assert 0 <= s["start"] <= s["end"] <= rec.duration + 0.5
        for w in s["words"]:
            assert set(w) == {"word", "start", "end", "probability"}
            assert s["start"] - 0.01 <= w["start"] <= w["end"] <= s["end"] + 0.01
            assert 0 <= w["probability"] <= 1
    json.loads(rec.to_json())  # plain JSON types only (whisper hands out numpy floats)


def test_language_from_config_is_used(tiny_whisper_checkpoint, speech_wav, make_record):
    asr = Transcriber(AsrConfig(whisper_model=str(tiny_whisper_checkpoint), device="cpu", language="de",
                                word_timestamps=False, temperature=[0.0]))
    rec = asr(make_record(audio=speech_wav))
    assert rec.annotations["asr"]["language"] == "de"
    assert all(s["words"] == [] for s in rec.annotations["asr"]["segments"])
