"""Run an annotator on rejected clips too, so that the audit can compare rejection rates
across perceived groups. Clips the filters rejected were never encoded: they get a small
temporary encode of their crop (the preview), which is removed afterwards."""

from __future__ import annotations

import tempfile
from pathlib import Path

from annotate.person_filter import FACE_FRACTION
from mentor.config import Config
from mentor.curate.encode import VIDEO
from mentor.curate.prepare import SOURCE
from mentor.media import MediaError, encode_clip
from mentor.record import ClipRecord


class RejectedPreview:
    """Wraps an annotator: kept clips get its normal run; a rejected clip gets it on its
    encoded video when it has one (rejected after encoding: sync, diarization, fit, ...),
    else on a preview of its crop, when the filter saw a face in it."""

    runs_on_rejected = True

    # frames per second of the preview: the annotators that audit rejected clips read a few
    # frames each (attributes: 8 per clip). At 25 fps the preview's encode was 0.73 of 0.91 CPU-s
    # of the attributes on a rejected 10 s clip (benchmarks/curation_cost.py's two-people clip)
    FPS = 5.0

    def __init__(self, annotator, cfg: Config, size: int = 256, fps: float = FPS):
        self.annotator = annotator
        self.name = annotator.name
        self.cfg = cfg
        self.size = size
        self.fps = fps

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        if rec.kept or VIDEO in rec.files:
            return self.annotator(rec)
        if SOURCE not in rec.files or not rec.scores.get(FACE_FRACTION):
            return rec  # rejected before any face was seen: nothing to estimate from
        with tempfile.TemporaryDirectory(prefix="mentor-rejected-") as tmp:
            crop = (rec.crop.x, rec.crop.y, rec.crop.size) if rec.crop else None
            try:
                video = encode_clip(rec.files[SOURCE], Path(tmp) / "clip.mp4", rec.start, rec.end,
                                    min(self.fps, self.cfg.video.fps), self.size, crop=crop, preset="ultrafast",
                                    source_fps=rec.source_fps)  # the rate first: dropped frames never scaled
            except MediaError as e:
                rec.fail(self.name, str(e))
                return rec
            rec.files[VIDEO] = str(video)
            try:
                rec = self.annotator(rec)
            finally:
                rec.files.pop(VIDEO, None)
        return rec
