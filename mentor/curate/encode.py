"""The "encode" step: each kept clip gets its H.264 crop and its 16 kHz mono audio.

It runs in the filter actors, right after the filter, so a clip's source is read while
it is still in the page cache and no extra hop or worker pool is needed.
"""

from __future__ import annotations

from pathlib import Path

from annotate.person_filter import HAS_AUDIO
from mentor.config import Config
from mentor.contracts import file, record_field, score
from mentor.curate.prepare import SOURCE
from mentor.media import MediaError, encode_clip, extract_audio
from mentor.record import ClipRecord

VIDEO = "video"  # record.files[VIDEO]: the encoded clip (a working file until it is stored)
AUDIO = "audio"  # record.files[AUDIO]: its audio at cfg.audio.sample_rate


class Encoder:
    """Encoding as a clip step: `__call__(record) -> record`."""

    name = "encode"
    reads = (file(SOURCE), record_field("crop", optional=True), score(HAS_AUDIO, optional=True))
    writes = (file(VIDEO), file(AUDIO), record_field("fps"), record_field("width"), record_field("height"))

    def __init__(self, cfg: Config, folder: Path):
        self.cfg = cfg
        self.folder = folder

    @classmethod
    def from_config(cls, cfg: Config, work: Path) -> "Encoder":
        return cls(cfg, Path(work) / "clips")

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        try:
            encode_record(rec, self.cfg, self.folder)
        except MediaError as e:
            rec.fail(self.name, str(e))
            rec.reject(self.name, "encode_failed", str(e))
        return rec


def encode_record(rec: ClipRecord, cfg: Config, folder: Path, audio_shift: float = 0.0) -> None:
    """Encode one clip's crop (and its audio, when the source has some) into `folder`;
    raises MediaError when ffmpeg cannot."""
    src = rec.files[SOURCE]
    crop = (rec.crop.x, rec.crop.y, rec.crop.size) if rec.crop else None
    audio = folder / f"{rec.id}.{cfg.audio.format}" if rec.scores.get(HAS_AUDIO, True) else None
    # the audio from the same ffmpeg as the picture when the filter found an audio stream and it
    # is not shifted: a second ffmpeg opening and seeking the source cost about 0.1 CPU-s per clip
    # (unknown: apart, so that a source without one is rejected for that, not for its picture)
    together = audio is not None and not audio_shift and bool(rec.scores.get(HAS_AUDIO))
    video = encode_clip(src, folder / f"{rec.id}.mp4", rec.start, rec.end, cfg.video.fps, cfg.video.size,
                        crop=crop, crf=cfg.video.crf, preset=cfg.video.preset, threads=cfg.video.threads,
                        source_fps=rec.source_fps, audio_to=audio if together else None,
                        audio_rate=cfg.audio.sample_rate)
    rec.files[VIDEO] = str(video)
    rec.fps, rec.width, rec.height = cfg.video.fps, cfg.video.size, cfg.video.size
    if audio is not None and not together:
        extract_audio(src, audio, cfg.audio.sample_rate, start=rec.start, duration=rec.duration, shift=audio_shift)
    if audio is not None:
        rec.files[AUDIO] = str(audio)
    rec.mark("encode")
