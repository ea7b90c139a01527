"""Transcription with openai-whisper: language, text, segments and word timings.

The model comes from a local checkpoint (`annotate.asr.whisper_model`: a .pt file in
whisper's own format, {"dims": ..., "model_state_dict": ...}, loaded with
`whisper.load_model(path)`), or a model name whose file is already in whisper's cache.
Nothing is downloaded. With no model configured, every record gets
status["asr"] = "skipped: no weights" and `Transcriber.skipped` says so for the run summary:
never silent, never made-up text.

annotations["asr"] = {"language": "en", "text": "...", "segments": [{"start", "end",
"text", "words": [{"word", "start", "end", "probability"}]}]}; scores `asr.words`,
`asr.no_speech_prob` (mean over segments), `asr.avg_logprob`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from annotate.audio_common import clip_audio, require, resolve_device
from mentor.config import AsrConfig
from mentor.contracts import annotation, file, score
from mentor.curate.encode import AUDIO
from mentor.record import ClipRecord

log = logging.getLogger(__name__)

NO_WEIGHTS = "skipped: no weights"


class Word(BaseModel):
    word: str
    start: float  # seconds from the clip's start
    end: float
    probability: float


class Segment(BaseModel):
    start: float
    end: float
    text: str
    words: list[Word] = []


class Transcript(BaseModel):
    """annotations["asr"] as later readers use it (the store writes `text` as each sample's
    txt member; a text-conditioned model reads the words and their times)."""

    model_config = ConfigDict(extra="allow")
    STAGE: ClassVar[str] = "asr"

    language: str | None = None
    text: str = ""
    segments: list[Segment] = []

    @classmethod
    def of(cls, record: ClipRecord) -> "Transcript | None":
        """The transcript on `record`, or None when ASR has not run (or was skipped)."""
        raw = record.annotations.get(cls.STAGE)
        return cls.model_validate(raw) if raw is not None else None


def load_whisper(spec: str, device: str, stage: str):
    """whisper.load_model on a local checkpoint file, or on a model name already cached
    (whisper then only checks the file's SHA-256). Raises FileNotFoundError otherwise."""
    whisper = require("whisper", "openai-whisper", stage)
    path = Path(spec).expanduser()
    if path.is_file():
        model = whisper.load_model(str(path), device=device)
        # A copy of an official checkpoint keeps its name: give it the alignment heads
        # that make word timings good (a path load does not set them).
        heads = getattr(whisper, "_ALIGNMENT_HEADS", {}).get(path.stem)
        if heads is not None:
            try:
                model.set_alignment_heads(heads)
            except ValueError:  # same name, other dimensions: keep whisper's default heads
                pass
        return model
    cache = os.path.join(os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "whisper")
    url = getattr(whisper, "_MODELS", {}).get(spec)
    if url and os.path.isfile(os.path.join(cache, os.path.basename(url))):
        return whisper.load_model(spec, device=device, download_root=cache)
    raise FileNotFoundError(
        f"annotate.{stage}.whisper_model: {spec!r} is neither a checkpoint file nor a model in {cache}; "
        "give the path of a Whisper .pt checkpoint (e.g. small.pt), or set it to null to skip")


class Transcriber:
    name = Transcript.STAGE
    reads = (file(AUDIO),)
    writes = (annotation("asr"), *(score(f"asr.{k}") for k in ("words", "language", "no_speech_prob", "avg_logprob")))

    def __init__(self, cfg: AsrConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.model = None
        # The reason every record is skipped, for the run summary; None when transcribing.
        self.skipped: str | None = None
        if cfg.whisper_model:
            self.model = load_whisper(cfg.whisper_model, self.device, self.name)
        else:
            self.skipped = NO_WEIGHTS
            log.warning("asr: no Whisper weights configured (annotate.asr.whisper_model); transcripts are skipped")

    def __call__(self, record: ClipRecord) -> ClipRecord:
        if self.model is None:
            record.mark(self.name, NO_WEIGHTS)
            return record
        audio = clip_audio(record, self.name)
        if audio is None:
            return record
        try:
            result = self.model.transcribe(
                audio,
                language=self.cfg.language,
                task="transcribe",
                word_timestamps=self.cfg.word_timestamps,
                fp16=self.device.startswith("cuda"),
                beam_size=self.cfg.beam_size,
                temperature=tuple(self.cfg.temperature),
                condition_on_previous_text=False,  # clips are short; avoids repetition loops
                verbose=None,
            )
        except (RuntimeError, ValueError) as e:  # e.g. NaN logits from a broken checkpoint
            record.fail(self.name, f"whisper: {str(e).splitlines()[0][:200]}")
            return record
        segments = [_segment(s) for s in result.get("segments", [])]
        record.annotations[self.name] = Transcript(language=result.get("language"),
                                                   text=str(result.get("text", "")).strip(),
                                                   segments=segments).model_dump()
        record.set_score("asr.words", sum(len(s["words"]) for s in segments))
        record.set_score("asr.language", result.get("language"))  # a column the audit groups by
        raw = result.get("segments", [])
        if raw:
            record.set_score("asr.no_speech_prob", round(float(np.mean([s["no_speech_prob"] for s in raw])), 4))
            record.set_score("asr.avg_logprob", round(float(np.mean([s["avg_logprob"] for s in raw])), 4))
        record.mark(self.name)
        return record


def _segment(s: dict) -> dict:
    """Whisper's segment dict -> plain JSON types (it carries numpy floats)."""
    return {
        "start": round(float(s["start"]), 3),
        "end": round(float(s["end"]), 3),
        "text": str(s["text"]).strip(),
        "words": [{"word": str(w["word"]), "start": round(float(w["start"]), 3), "end": round(float(w["end"]), 3),
                   "probability": round(float(w["probability"]), 4)} for w in s.get("words", [])],
    }
