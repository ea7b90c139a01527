from __future__ import annotations

import numpy as np
import pytest

from annotate.audio_features import AudioFeatures, context_windows
from mentor.config import AudioFeatureConfig


@pytest.fixture(scope="module")
def features():
    return AudioFeatures(AudioFeatureConfig(n_mels=40, window_frames=2, device="cpu"))


@pytest.fixture(scope="module")
def burst_wav(tmp_path_factory):
    """2 s of silence with a burst of noise from 1.0 s to 1.4 s."""
    import soundfile as sf

    audio = np.zeros(32000, np.float32)
    audio[16000:22400] = 0.3 * np.random.default_rng(0).standard_normal(6400)
    path = tmp_path_factory.mktemp("burst") / "burst.wav"
    sf.write(path, audio, 16000)
    return path


def test_logmel_has_one_row_per_video_frame_aligned_with_the_sound(features, burst_wav, make_record):
    rec = features(make_record(audio=burst_wav, fps=25.0))
    arr = rec.arrays["audio.logmel"]
    assert arr.data.shape == (50, 5, 40) and arr.fps == 25.0
    power = np.exp(arr.data[:, 2]).sum(1)  # the frame's own spectrum
    loud = np.flatnonzero(power > power.max() / 2).tolist()
    assert loud == list(range(25, 35))  # 1.0 s .. 1.4 s at 25 fps
    # the context slots are the neighbours' spectra
    np.testing.assert_allclose(arr.data[26, 0], arr.data[24, 2])
    np.testing.assert_allclose(arr.data[26, 4], arr.data[28, 2])
    assert rec.annotations["audio"]["whisper"] == "skipped: no weights"


def test_any_video_fps(features, burst_wav, make_record):
    rec = features(make_record(audio=burst_wav, fps=29.97))
    assert rec.arrays["audio.logmel"].data.shape[0] == round(2.0 * 29.97)
    assert np.isfinite(rec.arrays["audio.logmel"].data).all()


def test_context_windows_repeat_the_edges():
    x = np.arange(4, dtype=float)[:, None]
    assert context_windows(x, 1)[:, :, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]


def test_whisper_encoder_features_with_weights(tiny_whisper_checkpoint, speech_wav, make_record):
    feats = AudioFeatures(AudioFeatureConfig(whisper_model=str(tiny_whisper_checkpoint), device="cpu"))
    rec = feats(make_record(audio=speech_wav, fps=25.0))
    w = rec.arrays["audio.whisper"]
    assert w.data.shape == (75, 64) and w.data.dtype == np.float16 and w.fps == 25.0
    assert np.isfinite(w.data).all() and w.data.std() > 0
