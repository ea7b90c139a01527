"""Frame-aligned audio features for the motion model: one row per video frame.

`audio.logmel`: T x (2w+1) x n_mels float32, fps = the clip's video fps, w = window_frames.
Row t holds the log-mel spectrum of video frames t-w .. t+w (edges repeat the first/last
frame). The spectrum of video frame k is the mean mel power of the 25 ms / 10 ms STFT
frames centred inside [k/fps, (k+1)/fps), then log(x + 1e-6): any fps works, not only
divisors of 100.

`audio.whisper` (only with `whisper_model`): T x d_model float16, the Whisper encoder's
output (50 per second) averaged over each video frame's interval, one 30 s window at a time.
"""

from __future__ import annotations

import logging

import numpy as np

from annotate.audio_common import SAMPLE_RATE, clip_audio, require, resolve_device
from mentor.config import AudioFeatureConfig
from mentor.contracts import annotation, array, file, record_field
from mentor.curate.encode import AUDIO
from mentor.record import ClipRecord

log = logging.getLogger(__name__)

MEL_HOP = 160  # 10 ms
MEL_WIN = 400  # 25 ms


LOGMEL = "audio.logmel"  # T x (2*window_frames+1) x n_mels, at the clip's fps
WHISPER = "audio.whisper"  # T x d_model, with a Whisper checkpoint


class AudioFeatures:
    name = "audio"
    reads = (file(AUDIO), record_field("fps"))
    writes = (array(LOGMEL), array(WHISPER), annotation("audio"))

    def __init__(self, cfg: AudioFeatureConfig):
        self.cfg = cfg
        self._torch = require("torch", "torch", self.name)
        torchaudio = require("torchaudio", "torchaudio", self.name)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=512, win_length=MEL_WIN, hop_length=MEL_HOP,
            n_mels=cfg.n_mels, center=True, power=2.0)
        self.device = resolve_device(cfg.device)
        self.whisper = None
        if cfg.whisper_model:
            from annotate.asr import load_whisper

            self.whisper = load_whisper(cfg.whisper_model, self.device, "audio_features")

    def __call__(self, record: ClipRecord) -> ClipRecord:
        if not record.fps:
            record.fail(self.name, "record.fps is not set (the clip was not encoded)")
            return record
        audio = clip_audio(record, self.name)
        if audio is None:
            return record
        n_frames = int(round(record.duration * record.fps)) or int(round(len(audio) / SAMPLE_RATE * record.fps))
        with self._torch.inference_mode():
            power = self.mel(self._torch.from_numpy(audio)).T.numpy()  # steps x n_mels, 100 per s
        per_frame = np.log(pool_to_frames(power, 100.0, record.fps, n_frames) + 1e-6)
        record.add_array(LOGMEL, context_windows(per_frame, self.cfg.window_frames).astype(np.float32),
                         fps=record.fps)
        info = {"logmel": {"n_mels": self.cfg.n_mels, "window_frames": self.cfg.window_frames,
                           "layout": "T x (2*window_frames+1) x n_mels"}}
        if self.whisper is not None:
            feats = self._whisper_features(audio, record.fps, n_frames)
            record.add_array(WHISPER, feats.astype(np.float16), fps=record.fps)
            info["whisper"] = {"dim": int(feats.shape[1]), "layout": "T x d_model"}
        else:
            info["whisper"] = "skipped: no weights"
        record.annotations[self.name] = info
        record.mark(self.name)
        return record

    def _whisper_features(self, audio: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
        import whisper

        torch = self._torch
        model = self.whisper
        chunk = whisper.audio.N_SAMPLES  # 30 s
        outs = []
        with torch.inference_mode():
            for start in range(0, max(len(audio), 1), chunk):
                piece = audio[start:start + chunk]
                mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(piece), chunk),
                                                  n_mels=model.dims.n_mels).to(model.device)
                enc = model.embed_audio(mel[None].to(next(model.parameters()).dtype))[0].float().cpu().numpy()
                steps = int(np.ceil(len(piece) / SAMPLE_RATE * 50))  # 50 encoder frames per second
                outs.append(enc[:steps])
        return pool_to_frames(np.concatenate(outs), 50.0, fps, n_frames)


def pool_to_frames(x: np.ndarray, rate: float, fps: float, n_frames: int) -> np.ndarray:
    """Average the rows of `x` (steps x D at `rate` per second, row i centred at i / rate)
    over each video frame's interval [k/fps, (k+1)/fps). A frame that no row falls in takes
    the nearest row. Returns n_frames x D."""
    centres = np.arange(len(x)) / rate
    frame = np.floor(centres * fps + 1e-9).astype(int)
    out = np.zeros((n_frames, x.shape[1]), np.float64)
    count = np.zeros(n_frames)
    ok = (frame >= 0) & (frame < n_frames)
    np.add.at(out, frame[ok], x[ok])
    np.add.at(count, frame[ok], 1)
    empty = count == 0
    if empty.any():
        nearest = np.clip(np.round((np.arange(n_frames)[empty] + 0.5) / fps * rate).astype(int), 0, len(x) - 1)
        out[empty] = x[nearest]
        count[empty] = 1
    return out / count[:, None]


def context_windows(x: np.ndarray, w: int) -> np.ndarray:
    """T x D -> T x (2w+1) x D: row t holds x[t-w .. t+w], edges repeated."""
    padded = np.pad(x, ((w, w), (0, 0)), mode="edge")
    idx = np.arange(len(x))[:, None] + np.arange(2 * w + 1)[None, :]
    return padded[idx]
