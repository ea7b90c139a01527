"""Which annotators run, in which order, from the config. Imports are lazy so that a
worker loads only the models of the stage it runs."""

from __future__ import annotations

import logging
from pathlib import Path

from mentor.config import Config
from mentor.media import MediaError, extract_audio
from mentor.record import ClipRecord

log = logging.getLogger(__name__)


def filter_annotators(cfg: Config) -> list:
    """Track-and-filter on the source span (before encoding)."""
    from annotate.person_filter import PersonFilter

    return [PersonFilter(cfg.filters)]


def curation_steps(cfg: Config, out: Path) -> list:
    """What the filter actors run on each clip: track and filter, then encode."""
    from pipelines.stages import Encoder, work_dir

    return filter_annotators(cfg) + [Encoder(cfg, work_dir(out) / "clips")]


def visual_annotators(cfg: Config) -> list:
    """Per-frame landmarks, then the SMPL-X fit that reads them."""
    out = []
    a = cfg.annotate
    if a.landmarks.enabled:
        from annotate.landmarks import HolisticLandmarks

        out.append(HolisticLandmarks(a.landmarks))
        if a.smplx.enabled:
            from annotate.smplx_fit import SmplxFitter

            out.append(SmplxFitter(a.smplx))
    return out


def audio_annotators(cfg: Config) -> list:
    """Audio-visual sync first (and its correction, so every later stage hears audio in
    sync with the video), then VAD -> diarization -> ASR, then frame-aligned features."""
    a = cfg.annotate
    out: list = []
    if a.sync.enabled:
        from annotate.av_sync import AvSync

        out += [AvSync(a.sync), SyncShift(cfg)]
    if a.vad.enabled:
        from annotate.vad import VoiceActivity

        out.append(VoiceActivity(a.vad))
    if a.diarization.enabled:
        from annotate.diarize import Diarizer

        out.append(Diarizer(a.diarization, a.vad))
    if a.asr.enabled:
        from annotate.asr import Transcriber

        out.append(Transcriber(a.asr))
    if a.audio_features.enabled:
        from annotate.audio_features import AudioFeatures

        out.append(AudioFeatures(a.audio_features))
    return out


def attribute_annotators(cfg: Config) -> list:
    if not cfg.annotate.attributes.enabled:
        return []
    from annotate.attributes import PerceivedAttributes

    attributes = PerceivedAttributes(cfg.annotate.attributes)
    out: list = [attributes]
    if cfg.annotate.attributes.on_rejected:
        out.append(OnRejected(attributes, cfg))
    if cfg.annotate.attributes.face_recognition_model:
        # face embeddings per clip; `mentor split` clusters them into identities
        from annotate.identity import FaceIdentity

        out.append(FaceIdentity(cfg.annotate.attributes))
    return out


def clip_annotators(cfg: Config) -> list:
    """Everything that runs on an encoded clip, in order."""
    return visual_annotators(cfg) + audio_annotators(cfg) + attribute_annotators(cfg)


class OnRejected:
    """Run an annotator on rejected clips too, so that the audit can compare rejection
    rates across perceived groups. Clips the filters rejected were never encoded: they
    get a small temporary encode of their crop. Kept clips are left to the annotator's
    normal run."""

    runs_on_rejected = True

    def __init__(self, annotator, cfg: Config, size: int = 256):
        self.annotator = annotator
        self.name = annotator.name
        self.cfg = cfg
        self.size = size

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        if rec.kept:
            return rec
        if "video" in rec.files:  # rejected after encoding (sync, diarization, fit, ...)
            return self.annotator(rec)
        if "source" not in rec.files or not rec.scores.get("filter.face_fraction"):
            return rec  # rejected before any face was seen: nothing to estimate from
        import tempfile

        from mentor.media import encode_clip

        with tempfile.TemporaryDirectory(prefix="mentor-rejected-") as tmp:
            crop = (rec.crop.x, rec.crop.y, rec.crop.size) if rec.crop else None
            try:
                video = encode_clip(rec.files["source"], Path(tmp) / "clip.mp4", rec.start, rec.end,
                                    self.cfg.video.fps, self.size, crop=crop, preset="ultrafast")
            except MediaError as e:
                rec.fail(self.name, str(e))
                return rec
            rec.files["video"] = str(video)
            try:
                rec = self.annotator(rec)
            finally:
                rec.files.pop("video", None)
        return rec


class SyncShift:
    """Re-extract a clip's audio shifted by the offset the sync stage measured, so that
    the stored audio is in sync with the video (as LatentSync's pre-processing does)."""

    name = "sync_shift"

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        shift = (rec.annotations.get("sync") or {}).get("shift_seconds")
        if not shift or "source" not in rec.files or "audio" not in rec.files:
            return rec
        try:
            extract_audio(rec.files["source"], Path(rec.files["audio"]), self.cfg.audio.sample_rate,
                          start=rec.start, duration=rec.duration, shift=-float(shift))
            rec.set_score("sync_shift.seconds", -float(shift))
            rec.mark(self.name)
        except MediaError as e:
            rec.fail(self.name, str(e))
        return rec
