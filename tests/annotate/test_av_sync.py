from __future__ import annotations

import numpy as np
import pytest

from annotate.av_sync import AvSync, lagged_correlation, mouth_opening, speech_envelope
from mentor.config import SyncConfig
from mentor.media import extract_audio

FPS = 25


@pytest.fixture(scope="module")
def sync():
    return AvSync(SyncConfig(device="cpu"))


@pytest.fixture(scope="module")
def clip_audio_of(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sync_audio")

    def wav(clip):
        return extract_audio(clip, folder / f"{clip.stem}.wav")

    return wav


def test_synced_clip_has_zero_offset_and_high_confidence(sync, talking_clip, clip_audio_of, make_record):
    # no landmarks array: the stage runs FaceMesh on the clip itself
    rec = sync(make_record(audio=clip_audio_of(talking_clip), video=talking_clip, fps=FPS))
    assert rec.status["sync"] == "done"
    assert rec.scores["sync.offset_frames"] == 0
    assert rec.scores["sync.confidence"] > 0.4
    assert "shift_seconds" not in rec.annotations["sync"]
    assert rec.annotations["sync"]["lse"] == "skipped: no weights"
    assert rec.kept


def test_shifted_audio_gives_its_offset_back(sync, talking_clip_shifted, clip_audio_of, make_record):
    from tests.conftest import SHIFT_FRAMES

    rec = sync(make_record(audio=clip_audio_of(talking_clip_shifted), video=talking_clip_shifted, fps=FPS))
    assert rec.scores["sync.offset_frames"] == SHIFT_FRAMES  # audio delayed -> positive
    assert rec.annotations["sync"]["shift_seconds"] == pytest.approx(SHIFT_FRAMES / FPS)
    assert rec.kept


def test_someone_elses_audio_has_low_confidence_and_is_rejected(sync, talking_clip, media_root, clip_audio_of,
                                                                 make_record):
    from mentor.testmedia import make_talking_clip

    other = make_talking_clip(media_root / "sync_other_sentences.mp4", seconds=4.0, fps=FPS, size=128, seed=1)
    synced = sync(make_record(audio=clip_audio_of(talking_clip), video=talking_clip, fps=FPS))
    dubbed = sync(make_record(audio=clip_audio_of(other), video=talking_clip, fps=FPS))
    assert dubbed.scores["sync.confidence"] < sync.cfg.min_confidence < synced.scores["sync.confidence"]
    assert dubbed.rejected.startswith("sync: not_visible: speaker not visible or dubbed (confidence ")


def _landmarks_with_mouth(gap: np.ndarray) -> np.ndarray:
    """T x 478 x 3 landmarks: eyes 100 px apart, inner-lip gap `gap` px."""
    lm = np.zeros((len(gap), 478, 3), np.float32)
    lm[:, 33, 0], lm[:, 263, 0] = 200, 300
    lm[:, 13, 1], lm[:, 14, 1] = 400, 400 + gap
    return lm


def test_offset_sign_on_synthetic_signals():
    rng = np.random.default_rng(0)
    env = np.convolve(rng.random(200), np.ones(3) / 3, mode="same")
    mouth = np.roll(env, -3)  # the mouth moves 3 frames before the sound: audio late
    lags, corr = lagged_correlation(mouth, env, 8)
    assert lags[np.nanargmax(corr)] == 3
    assert mouth_opening(_landmarks_with_mouth(np.array([5.0, 10.0]))) == pytest.approx([0.05, 0.1])


def test_envelope_is_rms_per_video_frame():
    audio = np.zeros(16000, np.float32)
    audio[6400:8000] = 0.5  # frames 10-12 at 25 fps (640 samples each)
    env = speech_envelope(audio, 25, 25)
    assert np.flatnonzero(env > 0.1).tolist() == [10, 11, 12]
    assert env[11] == pytest.approx(0.5)


def test_no_face_in_the_landmarks_rejects(sync, speech_wav, make_record):
    rec = make_record(audio=speech_wav, fps=FPS)
    rec.add_array("landmarks.face", np.full((75, 478, 3), np.nan, np.float32), fps=FPS)
    rec = sync(rec)
    assert rec.rejected == "sync: not_visible: speaker not visible or dubbed (lips found in 0% of frames)"


def test_syncnet_weights_load_and_give_lse(tiny_syncnet_checkpoint, speech_wav, make_record, monkeypatch):
    import annotate.av_sync as av
    from annotate import syncnet

    sync = AvSync(SyncConfig(device="cpu", syncnet_weights=str(tiny_syncnet_checkpoint)))
    rec = make_record(audio=speech_wav, fps=FPS)
    rec.files["video"] = "unused.mp4"
    rec.add_array("landmarks.face", _landmarks_with_mouth(np.linspace(1, 30, 75)) + 200, fps=FPS)
    # 10 frames (6 SyncNet windows) are enough to run the real model and cheap on a CPU
    monkeypatch.setattr(av, "read_frames", lambda *a, **k: np.zeros((10, 512, 512, 3), np.uint8))
    seen = {}
    real_lse = syncnet.lse

    def spy(model, crops, audio, **kw):
        seen["crops"] = crops.shape
        return real_lse(model, crops, audio[: 16000 * len(crops) // FPS], **kw)

    monkeypatch.setattr(syncnet, "lse", spy)
    rec = sync(rec)
    assert seen["crops"] == (10, 224, 224, 3)
    assert rec.annotations["sync"]["lse"] == "done"
    assert np.isfinite(rec.scores["sync.lse_d"]) and np.isfinite(rec.scores["sync.lse_c"])
    assert abs(rec.scores["sync.lse_offset_frames"]) <= 15


def test_wrong_syncnet_file_raises(tmp_path):
    import torch

    from annotate.syncnet import load_syncnet

    bad = tmp_path / "other.model"
    torch.save({"layer.weight": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not a SyncNet state dict"):
        load_syncnet(bad)
    with pytest.raises(FileNotFoundError, match="missing.model"):
        load_syncnet(tmp_path / "missing.model")


def test_mfcc_is_100_per_second_13_coefficients():
    from annotate.syncnet import mfcc

    feats = mfcc(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    assert feats.shape == (99, 13) and np.isfinite(feats).all()  # python_speech_features' framing


# -- search range and correction limit (issue 15, item 2) -----------------------------
@pytest.fixture(scope="module")
def talking_face(sync, talking_clip):
    """FaceMesh landmarks of the talking clip, found once (the pictures do not depend on
    the audio shift)."""
    from mentor.media import read_frames

    return sync._run_face_mesh(read_frames(talking_clip, fps=FPS))


def _shifted_speech(folder, frames: int):
    """The talking clip's own speech, delayed by `frames` video frames, as a wav."""
    from mentor.testmedia import _shift_audio, _write_wav, speech_samples

    from tests.conftest import TALKING_SECONDS

    speech = speech_samples(None, "en", TALKING_SECONDS)
    return _write_wav(folder / f"speech_late_{frames}.wav", _shift_audio(speech, frames * 16000 // FPS), 16000)


def _record_with(make_record, wav, landmarks):
    rec = make_record(audio=wav, fps=FPS)
    rec.add_array("landmarks.face", landmarks, fps=FPS)
    return rec


def test_defaults_search_as_wide_as_syncnet_and_correct_up_to_ten_frames():
    cfg = SyncConfig()
    assert cfg.max_offset_frames >= 15  # SyncNet's own search (vshift 15)
    assert cfg.max_shift_frames == 10


def test_audio_ten_frames_late_is_found_and_corrected(sync, talking_face, tmp_path, make_record):
    rec = sync(_record_with(make_record, _shifted_speech(tmp_path, 10), talking_face))
    assert rec.scores["sync.offset_frames"] == 10
    assert rec.annotations["sync"]["shift_seconds"] == pytest.approx(0.4)
    assert rec.kept, rec.rejected


def test_offset_beyond_the_limit_is_its_own_reason(talking_face, tmp_path, make_record):
    sync = AvSync(SyncConfig(device="cpu", max_offset_frames=15, max_shift_frames=10))
    rec = sync(_record_with(make_record, _shifted_speech(tmp_path, 12), talking_face))
    assert rec.scores["sync.offset_frames"] == 12
    assert rec.scores["sync.confidence"] >= sync.cfg.min_confidence  # the speaker is visible
    assert rec.rejected == "sync: audio_offset: audio offset 12 frames > 10"
    assert "shift_seconds" not in rec.annotations["sync"]


def test_offset_found_only_inside_the_search_range(talking_face, tmp_path, make_record):
    # searched +-8 (the old default), a 10-frame delay cannot be found: that is "not
    # visible", the failure the wider default search removes
    narrow = AvSync(SyncConfig(device="cpu", max_offset_frames=8, max_shift_frames=6))
    rec = narrow(_record_with(make_record, _shifted_speech(tmp_path, 10), talking_face))
    assert rec.scores["sync.offset_frames"] != 10


# -- a container start offset, measured and corrected (issue 15, item 1) ----------------
def test_audio_stream_starting_late_is_measured_corrected_and_checks_zero(sync, talking_clip, talking_face,
                                                                          tmp_path, make_record):
    """The talking clip's pictures with its speech in an audio stream that starts 0.35 s
    (8.75 frames) after the video: the clip's audio, cut on the video's timeline, shows
    the whole offset; once SyncShift re-cuts it, the stored audio measures 0."""
    import subprocess

    from mentor.curate.sync_shift import SyncShift
    from mentor.testmedia import _write_wav, speech_samples

    from tests.conftest import TALKING_SECONDS

    wav = _write_wav(tmp_path / "speech.wav", speech_samples(None, "en", TALKING_SECONDS), 16000)
    late = tmp_path / "late.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(talking_clip), "-itsoffset", "0.35",
                    "-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-ar", "16000",
                    str(late)], check=True)
    audio = extract_audio(late, tmp_path / "clip.wav", start=0.0, duration=TALKING_SECONDS)
    rec = _record_with(make_record, audio, talking_face)
    rec.files["source"] = str(late)
    rec = sync(rec)
    assert rec.scores["sync.offset_frames"] == 9, rec.scores  # 0.35 s at 25 fps
    assert rec.kept
    rec = SyncShift(_shift_cfg())(rec)
    assert rec.scores["sync_shift.seconds"] == pytest.approx(-0.36)
    again = sync(_record_with(make_record, audio, talking_face))
    assert again.scores["sync.offset_frames"] == 0
    assert "shift_seconds" not in again.annotations["sync"]


def _shift_cfg():
    """What SyncShift reads of the config: the audio sample rate."""
    from types import SimpleNamespace

    return SimpleNamespace(audio=SimpleNamespace(sample_rate=16000))
