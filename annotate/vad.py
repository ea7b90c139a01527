"""Voice activity: silero-vad (its weights ship inside the wheel) -> speech segments.

Writes annotations["vad"] = {"segments": [[start_s, end_s], ...]} and the score
`vad.speech_fraction` (seconds of speech / clip seconds); rejects a clip with less speech
than `min_speech_fraction`, since a MENTOR clip is someone talking.
"""

from __future__ import annotations

import logging

import numpy as np

from annotate.audio_common import SAMPLE_RATE, clip_audio, require
from mentor.config import VadConfig
from mentor.contracts import annotation, file, score
from mentor.curate.encode import AUDIO
from mentor.curate.prepare import SOURCE_SPEECH
from mentor.record import ClipRecord

log = logging.getLogger(__name__)


class VoiceActivity:
    name = "vad"
    reads = (file(AUDIO), annotation(SOURCE_SPEECH, optional=True))  # the source's VAD, when it ran
    writes = (annotation("vad"), score("vad.speech_fraction"), score("vad.speech_seconds"))

    def __init__(self, cfg: VadConfig):
        self.cfg = cfg
        silero = require("silero_vad", "silero-vad", "vad")
        torch = require("torch", "torch", "vad")
        self._torch = torch
        self._get_speech_timestamps = silero.get_speech_timestamps
        # The JIT model is small and runs on the CPU; one load per worker.
        self.model = silero.load_silero_vad()

    def segments(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """Speech spans in seconds of 16 kHz mono `audio` (N,)."""
        self.model.reset_states()
        stamps = self._get_speech_timestamps(
            self._torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            self.model,
            threshold=self.cfg.threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=self.cfg.min_speech_ms,
            min_silence_duration_ms=self.cfg.min_silence_ms,
            speech_pad_ms=self.cfg.speech_pad_ms,
        )
        return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]

    def __call__(self, record: ClipRecord) -> ClipRecord:
        audio = clip_audio(record, self.name)
        if audio is None:
            return record
        duration = len(audio) / SAMPLE_RATE
        known = record.annotations.get(SOURCE_SPEECH)
        # the same VAD with the same settings already ran on the whole source (prepare, with
        # diarization on): the clip's part of it, not a second pass (0.4-0.7 CPU-s per 10 s clip)
        segs = [(float(s), float(e)) for s, e in known["segments"]] if known is not None else self.segments(audio)
        speech = sum(e - s for s, e in segs)
        fraction = speech / duration if duration > 0 else 0.0
        record.annotations[self.name] = {"segments": [[round(s, 3), round(e, 3)] for s, e in segs]}
        record.set_score("vad.speech_fraction", round(fraction, 4))
        record.set_score("vad.speech_seconds", round(speech, 3))
        record.mark(self.name)
        if fraction < self.cfg.min_speech_fraction:
            record.reject(self.name, "low_speech", f"speech in {fraction:.0%} of the clip < {self.cfg.min_speech_fraction:.0%}",
                          value=fraction, threshold=self.cfg.min_speech_fraction)
        return record


def vad_segments(record: ClipRecord) -> list[tuple[float, float]] | None:
    """The segments the vad stage wrote, or None when it has not run on this record."""
    vad = record.annotations.get(VoiceActivity.name)
    if not vad or "segments" not in vad:
        return None
    return [(float(s), float(e)) for s, e in vad["segments"]]
