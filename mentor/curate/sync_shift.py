"""The second half of the "sync" step: re-extract a clip's audio shifted by the offset the
sync annotator measured (annotate/av_sync.py), so that the stored audio is in sync with
the video (as LatentSync's pre-processing does). Every later stage hears the shifted audio.
"""

from __future__ import annotations

from pathlib import Path

from annotate.av_sync import SyncResult
from mentor.config import Config
from mentor.contracts import annotation, file, score
from mentor.curate.encode import AUDIO
from mentor.curate.prepare import SOURCE
from mentor.media import MediaError, extract_audio
from mentor.record import ClipRecord


class SyncShift:
    """`__call__(record) -> record`: a no-op unless the sync stage asked for a shift."""

    name = "sync_shift"
    reads = (annotation(SyncResult.STAGE), file(SOURCE, optional=True), file(AUDIO))  # no source: no shift
    writes = (score("sync_shift.seconds"), file(AUDIO))

    def __init__(self, cfg: Config):
        self.cfg = cfg

    @classmethod
    def from_config(cls, cfg: Config, work: Path) -> "SyncShift":
        return cls(cfg)

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        sync = SyncResult.of(rec)
        shift = sync.shift_seconds if sync else None
        if not shift or SOURCE not in rec.files or AUDIO not in rec.files:
            return rec
        try:
            extract_audio(rec.files[SOURCE], Path(rec.files[AUDIO]), self.cfg.audio.sample_rate,
                          start=rec.start, duration=rec.duration, shift=-float(shift))
            rec.set_score("sync_shift.seconds", -float(shift))
            rec.mark(self.name)
        except MediaError as e:
            rec.fail(self.name, str(e))
        return rec
