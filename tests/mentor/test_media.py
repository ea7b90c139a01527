"""mentor.media on real generated media (tests/conftest.py): probe, decode, audio
extraction, clip encoding, and a clear MediaError for every kind of broken file."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from mentor import media
from mentor.media import MediaError

SR = 16000
AAC_SLACK = 1024  # samples: AAC pads the last frame, decoders do not always trim it


# ---------------------------------------------------------------- the good clip


def test_probe_talking_clip(talking_clip):
    info = media.probe(talking_clip)
    assert (info.width, info.height) == (512, 512)
    assert info.fps == pytest.approx(25.0)
    assert info.num_frames == 100
    assert info.duration == pytest.approx(4.0, abs=0.05)
    assert info.has_video and info.has_audio
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.sample_rate == SR
    assert info.size_bytes == talking_clip.stat().st_size
    assert info.as_dict()["path"] == str(talking_clip)


def test_read_frames_full_and_resampled(talking_clip):
    frames = media.read_frames(talking_clip)
    assert frames.shape == (100, 512, 512, 3) and frames.dtype == np.uint8
    # It is video, not a still: the person sways, so frames differ.
    assert np.abs(frames[0].astype(int) - frames[50].astype(int)).mean() > 2.0
    sub = media.read_frames(talking_clip, fps=5, start=1.0, end=3.0, size=(128, 96))
    assert sub.shape == (10, 96, 128, 3)
    # The nearest-frame resampling picks frames 25, 30, ...: compare one with a full-size decode.
    small = media.read_frames(talking_clip, fps=5, start=1.0, end=1.1, size=(128, 96))
    assert np.abs(small[0].astype(int) - sub[0].astype(int)).max() == 0


def test_read_frame_sets_is_one_pass_with_the_same_frames(talking_clip, video_opens):
    """Two samplings of one span from one reader: the same frames as two read_frames calls;
    a sampling with a size is scaled from the full-size decode (close to decord's scaler)."""
    samples, quality = media.read_frame_sets(talking_clip, [(5, 0.2, 3.8), (3 / 3.6, 0.8, 3.8)],
                                             sizes=[(128, 128), None])
    assert dict(video_opens) == {str(talking_clip): 1}
    full = media.read_frames(talking_clip, fps=3 / 3.6, start=0.8, end=3.8)
    assert quality.shape == full.shape == (3, 512, 512, 3) and np.array_equal(quality, full)
    scaled = media.read_frames(talking_clip, fps=5, start=0.2, end=3.8, size=(128, 128))
    assert samples.shape == scaled.shape == (18, 128, 128, 3)
    assert np.abs(samples.astype(int) - scaled.astype(int)).mean() < 3.0


def test_read_frames_empty_range_raises(talking_clip):
    with pytest.raises(MediaError, match="no frames between"):
        media.read_frames(talking_clip, start=10.0, end=11.0)


def test_read_audio_speech(talking_clip):
    audio = media.read_audio(talking_clip)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 4 * SR <= len(audio) <= 4 * SR + AAC_SLACK
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio ** 2)) > 0.01  # speech, not silence
    half = media.read_audio(talking_clip, sample_rate=8000)
    assert 4 * 8000 <= len(half) <= 4 * 8000 + AAC_SLACK // 2


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_extract_audio_exact_duration(talking_clip, tmp_path, suffix):
    out = media.extract_audio(talking_clip, tmp_path / f"a{suffix}", start=1.0, duration=2.0)
    info = media.probe(out)
    assert info.has_audio and not info.has_video
    assert info.sample_rate == SR
    assert len(media.read_audio(out)) == 2 * SR


@pytest.mark.parametrize("suffix,args", [(".flac", []), (".wav", []), (".wav", ["-c:a", "pcm_f32le"])])
def test_read_audio_of_a_sound_file_in_process_is_ffmpegs(talking_clip, tmp_path, suffix, args, monkeypatch):
    """A whole mono sound file at the rate asked for is read in-process (no ffmpeg, no
    ffprobe), to the same samples, bit for bit, as ffmpeg's; a stereo one, or one at
    another rate, still goes through ffmpeg (its downmix, its resampler)."""
    mono = tmp_path / f"mono{suffix}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(talking_clip), "-vn", "-ac", "1",
                    "-ar", str(SR), *args, str(mono)], check=True)
    by_ffmpeg = media.read_audio(mono, start=0.0, duration=10.0)  # a span: ffmpeg's path
    runs = []
    real_run = subprocess.run
    monkeypatch.setattr(media.subprocess, "run", lambda *a, **k: runs.append(a) or real_run(*a, **k))
    whole = media.read_audio(mono)
    assert runs == []
    assert whole.dtype == np.float32 and np.array_equal(whole, by_ffmpeg)
    assert len(media.read_audio(mono, sample_rate=8000)) == pytest.approx(len(whole) / 2, abs=2)
    assert len(runs) >= 1  # resampled by ffmpeg
    stereo = tmp_path / f"stereo{suffix}"
    real_run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(mono), "-ac", "2", *args, str(stereo)], check=True)
    runs.clear()
    assert np.allclose(media.read_audio(stereo), whole, atol=1e-4)
    assert len(runs) >= 1  # downmixed by ffmpeg


@pytest.mark.parametrize("start,shift", [(0.0, 0.16), (1.0, 0.16), (1.0, -0.16), (0.0, -0.16)])
def test_extract_audio_shift_moves_the_signal(talking_clip, tmp_path, start, shift):
    """A positive shift delays the audio by that many seconds, a negative one advances
    it, and the output keeps the asked duration either way."""
    whole = media.read_audio(talking_clip)
    out = media.extract_audio(talking_clip, tmp_path / "s.wav", start=start, duration=2.0, shift=shift)
    got = media.read_audio(out)
    assert len(got) == 2 * SR
    lag = _best_lag(whole, got, start, max_lag=int(0.3 * SR))
    assert lag == pytest.approx(shift * SR, abs=16)


def _best_lag(whole: np.ndarray, got: np.ndarray, start: float, max_lag: int) -> int:
    """The delay in samples of `got` against whole[start:]: argmax of the cross-correlation."""
    ref = whole[int(start * SR):]
    n = len(got) - 2 * max_lag
    scores = {}
    for lag in range(-max_lag, max_lag + 1, 4):
        a0 = max_lag  # a window of `got` away from both ends
        b0 = a0 - lag
        if b0 < 0 or b0 + n > len(ref):
            continue
        scores[lag] = float(np.dot(got[a0:a0 + n], ref[b0:b0 + n]))
    return max(scores, key=scores.get)


def test_encode_clip_crop_scale_fps(talking_clip, tmp_path):
    out = media.encode_clip(talking_clip, tmp_path / "c.mp4", start=1.0, end=3.0, fps=10, size=128,
                            crop=(128, 0, 256))
    info = media.probe(out)
    assert (info.width, info.height, info.fps) == (128, 128, 10.0)
    assert info.num_frames == 20
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert not info.has_audio  # files["video"] is video only
    # The crop is the top-middle square of the source: compare with a crop of a decode.
    ours = media.read_frames(out)[0].astype(float)
    src = media.read_frames(talking_clip, start=1.0, end=1.04)[0]
    import cv2

    ref = cv2.resize(src[0:256, 128:384], (128, 128), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(ours - ref).mean() < 8.0


def test_encode_clip_drops_frames_before_scaling_with_the_same_output(talking_clip, tmp_path):
    """A source faster than the clip rate gets the rate filter first (the frames it drops are
    never scaled): the clip is the same as with the rate filter last."""
    fast = tmp_path / "fast.mp4"  # the 25 fps clip at 50 fps, each frame twice
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(talking_clip), "-vf", "fps=50",
                    "-c:v", "libx264", "-preset", "veryfast", "-qp", "0", "-an", str(fast)], check=True)
    first = media.encode_clip(fast, tmp_path / "first.mp4", 0.5, 2.5, fps=25, size=128, crop=(100, 80, 300),
                              source_fps=50.0)
    last = media.encode_clip(fast, tmp_path / "last.mp4", 0.5, 2.5, fps=25, size=128, crop=(100, 80, 300))
    a, b = media.read_frames(first), media.read_frames(last)
    assert a.shape == (50, 128, 128, 3) and np.array_equal(a, b)


def test_encode_clip_with_audio(talking_clip, tmp_path):
    out = media.encode_clip(talking_clip, tmp_path / "ca.mp4", start=0.0, end=2.0, fps=25, size=64, with_audio=True)
    info = media.probe(out)
    assert info.has_audio and info.sample_rate == SR
    assert info.duration == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("start,end,suffix", [(0.0, 2.0, ".flac"), (1.3, 3.7, ".wav")])
def test_encode_clip_audio_to_is_extract_audios(talking_clip, tmp_path, start, end, suffix):
    """The audio the encoding ffmpeg writes beside the clip is extract_audio's, sample for
    sample, and the clip is the one encoded alone."""
    both = media.encode_clip(talking_clip, tmp_path / "both.mp4", start, end, 25, 64, crop=(128, 0, 256),
                             audio_to=tmp_path / f"both{suffix}", audio_rate=SR)
    alone = media.encode_clip(talking_clip, tmp_path / "alone.mp4", start, end, 25, 64, crop=(128, 0, 256))
    ref = media.extract_audio(talking_clip, tmp_path / f"ref{suffix}", SR, start=start, duration=end - start)
    got, want = media.read_audio(tmp_path / f"both{suffix}"), media.read_audio(ref)
    assert len(got) == round((end - start) * SR) and np.array_equal(got, want)
    assert np.sqrt(np.mean(got ** 2)) > 0.01  # speech, not the padding's silence
    assert np.array_equal(media.read_frames(both), media.read_frames(alone))


def test_write_video_round_trip(tmp_path, speech_wav):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, size=(1, 8, 8, 3), dtype=np.uint8), 4, axis=1).repeat(8, axis=2)
    frames = np.repeat(frames, 12, axis=0)  # 12 frames of 64x32 blocks
    out = media.write_video(frames, tmp_path / "w.mp4", fps=12, audio=speech_wav)
    info = media.probe(out)
    assert (info.width, info.height, info.num_frames, info.fps) == (64, 32, 12, 12.0)
    assert info.has_audio
    back = media.read_frames(out)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 12


# ---------------------------------------------------------------- broken files

# (broken-file key, function, words the message must hold)
BROKEN = [
    ("empty", "probe", "empty file"),
    ("empty", "read_frames", "empty file"),
    ("empty", "read_audio", "empty file"),
    ("empty", "extract_audio", "empty file"),
    # a text file named .mp4 is not "a truncated MP4" (issue 15, item 8)
    ("not_video", "probe", "not a media file: no container format recognised"),
    ("not_video", "read_frames", "not a media file: no container format recognised"),
    ("not_video", "read_audio", "not a media file: no container format recognised"),
    ("not_video", "extract_audio", "not a media file: no container format recognised"),
    ("not_video", "encode_clip", "not a media file: no container format recognised"),
    ("truncated", "probe", "truncated"),
    ("truncated", "read_audio", "truncated"),
    ("truncated", "extract_audio", "truncated"),
    ("truncated_no_moov", "probe", "truncated"),
    ("truncated_no_moov", "read_frames", "truncated"),
    ("truncated_no_moov", "read_audio", "truncated"),
    ("truncated_no_moov", "encode_clip", "truncated"),
    ("video_only", "read_audio", "no audio stream"),
    ("video_only", "extract_audio", "no audio stream"),
    ("audio_only", "read_frames", "no video stream"),
    ("audio_only", "encode_clip", "no video stream"),
]


def _call(fn: str, path, tmp_path):
    if fn == "extract_audio":
        return media.extract_audio(path, tmp_path / "x.wav")
    if fn == "encode_clip":
        return media.encode_clip(path, tmp_path / "x.mp4", start=0.0, end=1.0, fps=25, size=64)
    return getattr(media, fn)(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("key,fn,words", BROKEN, ids=[f"{k}-{f}" for k, f, _ in BROKEN])
def test_broken_file_raises_media_error(broken_files, tmp_path, key, fn, words):
    path = broken_files[key]
    with pytest.raises(MediaError) as err:
        _call(fn, path, tmp_path)
    msg = str(err.value)
    assert str(path) in msg, msg
    assert words in msg, msg


def test_half_broken_files_still_give_what_they_have(broken_files):
    """A file with one good stream is usable for that stream."""
    v = media.probe(broken_files["video_only"])
    assert v.has_video and not v.has_audio and v.num_frames == 50
    assert media.read_frames(broken_files["video_only"]).shape == (50, 128, 128, 3)
    a = media.probe(broken_files["audio_only"])
    assert a.has_audio and not a.has_video and a.sample_rate == SR
    assert len(media.read_audio(broken_files["audio_only"])) >= 2 * SR


def test_missing_file(tmp_path):
    for fn in ("probe", "read_frames", "read_audio", "extract_audio"):
        with pytest.raises(MediaError, match="no such file"):
            _call(fn, tmp_path / "nope.mp4", tmp_path)


def test_media_dir_every_file_probes_or_fails_cleanly(media_dir):
    ok, bad = [], {}
    for path in sorted(media_dir.iterdir()):
        try:
            media.probe(path)
            ok.append(path.name)
        except MediaError as e:
            bad[path.name] = str(e)
    assert ok == ["audio_only.m4a", "good.mp4", "video_only.mp4"]
    assert set(bad) == {"empty.mp4", "not_video.mp4", "truncated.mp4", "truncated_no_moov.mp4"}
    assert all(name in msg for name, msg in bad.items())


# ---------------------------------------------------------------- the mouth moves with the speech


@pytest.fixture(scope="module")
def lip_gaps(talking_clip) -> np.ndarray:
    """FaceMesh lip gap (landmarks 13/14) over inter-ocular distance, per frame: (100,)."""
    mp = pytest.importorskip("mediapipe")
    gaps = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True) as fm:
        for frame in media.read_frames(talking_clip):
            res = fm.process(frame)
            assert res.multi_face_landmarks, "FaceMesh lost the face"
            lm = np.array([[p.x, p.y] for p in res.multi_face_landmarks[0].landmark]) * frame.shape[1]
            assert lm.shape == (478, 2)
            gaps.append(np.linalg.norm(lm[13] - lm[14]) / np.linalg.norm(lm[33] - lm[263]))
    return np.array(gaps)


def _lag_correlations(gaps: np.ndarray, env: np.ndarray, max_lag: int = 8) -> dict[int, float]:
    """Pearson r of gaps[k] against env[k + lag] for each lag in frames."""
    n = len(gaps)
    return {lag: float(np.corrcoef(gaps[max(0, -lag):n - max(0, lag)], env[max(0, lag):n + min(0, lag)])[0, 1])
            for lag in range(-max_lag, max_lag + 1)}


def test_face_found_and_mouth_opens(lip_gaps):
    assert lip_gaps.min() < 0.15 < lip_gaps.max()  # closed ~0.1, open ~0.25 of the eye distance


def test_lip_gap_follows_speech_envelope(lip_gaps, talking_clip):
    from mentor.testmedia import speech_envelope

    env = speech_envelope(media.read_audio(talking_clip), SR, 25, len(lip_gaps))
    r = _lag_correlations(lip_gaps, env)
    assert r[0] > 0.7
    assert max(r, key=r.get) == 0


def test_shifted_clip_audio_lags_by_four_frames(lip_gaps, talking_clip_shifted):
    """Same pictures, audio 4 frames late: the envelope best matches the lips 4 frames on."""
    from mentor.testmedia import speech_envelope

    env = speech_envelope(media.read_audio(talking_clip_shifted), SR, 25, len(lip_gaps))
    r = _lag_correlations(lip_gaps, env)
    assert max(r, key=r.get) == 4
    assert r[4] > 0.7 and r[0] < 0.5


def test_encoded_output_check_names_the_broken_file(talking_clip, tmp_path):
    from mentor.media import check_output

    good = media.encode_clip(talking_clip, tmp_path / "good.mp4", 0.0, 1.0, 25, 64)
    assert check_output(good, video=True, audio=False, duration=1.0).has_video
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    for path, kw in ((cut, {"video": True, "audio": False}), (empty, {"video": False, "audio": True}),
                     (good, {"video": True, "audio": True})):  # asked for audio it does not have
        with pytest.raises(MediaError, match=rf"{path}: encoded output is broken"):
            check_output(path, duration=1.0, **kw)


def test_playlists_and_option_like_names(tmp_path, monkeypatch):
    from mentor.media import ff_path, refuse_references

    m3u = tmp_path / "a.mp4"
    m3u.write_text("#EXTM3U\n#EXTINF:1,\nfile:///etc/hostname\n")
    concat = tmp_path / "b.mp4"
    concat.write_text("ffconcat version 1.0\nfile /etc/hostname\n")
    for p in (m3u, concat):
        with pytest.raises(MediaError, match="playlist or manifest"):
            refuse_references(p)
        with pytest.raises(MediaError, match="playlist or manifest"):
            media.probe(p)
    monkeypatch.chdir(tmp_path)
    assert ff_path("-report") == f"file:{tmp_path}/-report"


def test_bad_encoder_settings_are_told_apart_from_bad_clips(talking_clip, tmp_path):
    from mentor.media import settings_error_in

    with pytest.raises(MediaError) as e:
        media.encode_clip(talking_clip, tmp_path / "x.mp4", 0.0, 1.0, 25, 64, preset="bogus")
    assert settings_error_in(str(e.value)) and "video.*" in str(e.value)
    assert not settings_error_in(f"{talking_clip}: truncated: cannot encode clip, the data ends early")


# ---------------------------------------------------------------- audio start offsets (issue 15, item 1)
LATE_S = 0.35  # the audio stream starts this long after the video


@pytest.fixture(scope="module")
def late_audio_clip(tmp_path_factory):
    """(mp4 whose audio stream starts LATE_S after its video, the speech samples in it)."""
    import subprocess

    from mentor.testmedia import _write_wav, make_talking_clip, speech_samples

    folder = tmp_path_factory.mktemp("late_audio")
    clip = make_talking_clip(folder / "talk.mp4", seconds=3.0, size=64, mouth=False, audio=False)
    speech = speech_samples(None, "en", 3.0)
    wav = _write_wav(folder / "speech.wav", speech, 16000)
    late = folder / "late.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(clip), "-itsoffset", str(LATE_S), "-i", str(wav),
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-ar", "16000", str(late)], check=True)
    return late, speech


def _lag_ms(got: np.ndarray, speech: np.ndarray, first: float) -> int:
    """The lag (ms) at which `got` best matches `speech` read from time `first` on."""
    best = (-2.0, 0)
    for lag in range(-400, 401, 2):
        idx = np.arange(len(got)) + int(round((first + lag / 1000) * 16000))
        ok = (idx >= 0) & (idx < len(speech))
        ref = np.zeros(len(got), np.float32)
        ref[ok] = speech[idx[ok]]
        c = float(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got) + 1e-9))
        best = max(best, (c, lag))
    return best[1]


@pytest.mark.parametrize("start", [0.0, 0.2, 1.0])
def test_audio_cut_on_the_video_timeline_when_its_stream_starts_late(late_audio_clip, tmp_path, start):
    late, speech = late_audio_clip
    out = media.extract_audio(late, tmp_path / "a.wav", start=start, duration=1.5)
    got = media.read_audio(out)
    assert len(got) == 24000  # the gap before the audio stream is silence, not missing
    # clip time t holds what the video shows at start + t: the speech of start + t - LATE_S
    assert abs(_lag_ms(got, speech, start - LATE_S)) <= 4
    assert np.abs(got[: int(max(0.0, LATE_S - start - 0.05) * 16000)]).max(initial=0.0) < 0.01
    direct = media.read_audio(late, start=start, duration=1.5)
    assert len(direct) == 24000 and abs(_lag_ms(direct, speech, start - LATE_S)) <= 4


def test_probe_answers_video_origin_without_a_second_ffprobe(talking_clip, tmp_path, monkeypatch):
    """A file whose video starts 0.5 s into it: probe's ffprobe answer gives video_origin
    too (one ffprobe per file, not two), the same as video_origin's own lookup."""
    late = tmp_path / "late_video.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-itsoffset", "0.5", "-i", str(talking_clip),
                    "-i", str(talking_clip), "-map", "0:v", "-map", "1:a", "-c", "copy", str(late)], check=True)
    own = media.video_origin(late)  # its own ffprobe (a file nothing probed)
    assert own == pytest.approx(0.5, abs=0.03)
    media._ORIGINS.clear()
    media.probe(late)
    calls = _tool_calls(monkeypatch)
    assert media.video_origin(late) == own and calls == []


@pytest.mark.parametrize("suffix", [".flac", ".wav"])
def test_extracted_audio_is_checked_without_ffprobe(talking_clip, tmp_path, monkeypatch, suffix):
    """The written WAV/FLAC is checked from its header in-process: one ffmpeg, no ffprobe."""
    media.video_origin(talking_clip)  # looked up once per file, not what this counts
    calls = _tool_calls(monkeypatch)
    out = media.extract_audio(talking_clip, tmp_path / f"a{suffix}", start=0.5, duration=2.0)
    assert calls == ["ffmpeg"] and media.check_output(out, video=False, audio=True, duration=2.0).duration == 2.0


def test_encoded_clip_is_checked_without_ffprobe(talking_clip, tmp_path, monkeypatch):
    """The encoded MP4 is checked in-process (its boxes whole, its index and first frame read
    by decord): one ffmpeg, no ffprobe; the same answer as ffprobe's."""
    media.video_origin(talking_clip)  # looked up once per file, not what this counts
    calls = _tool_calls(monkeypatch)
    out = media.encode_clip(talking_clip, tmp_path / "c.mp4", 0.5, 2.5, 25, 64, crop=(0, 0, 128))
    assert calls == ["ffmpeg"]
    here, ff = media.check_output(out, video=True, audio=False, duration=2.0), media.probe(out)
    assert (here.width, here.height, here.num_frames, here.has_video) == (ff.width, ff.height, ff.num_frames, True)
    assert here.duration == pytest.approx(ff.duration, abs=0.05) and here.fps == pytest.approx(ff.fps)


def _tool_calls(monkeypatch) -> list[str]:
    """From now on, the name of each program subprocess.run starts (ffmpeg, ffprobe)."""
    calls: list[str] = []
    real = subprocess.run

    def run(cmd, *args, **kwargs):
        calls.append(os.path.basename(cmd[0]))
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    return calls
