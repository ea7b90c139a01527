"""The "probe" step: what a fetched source holds (ffprobe), and whether it can give clips."""

from __future__ import annotations

from mentor.config import Config
from mentor.media import MediaError, Probe, probe
from mentor.record import SourceRecord


def probe_source(src: SourceRecord, cfg: Config) -> Probe:
    """Probe `src.path` and keep the result in `src.probe`.

    Raises MediaError when the file is not media, has no video stream, or is shorter than
    `clips.min_seconds` (no clip could come from it).
    """
    info = probe(src.path)
    src.probe = info.as_dict()
    if not info.has_video:
        raise MediaError(f"{src.uri}: no video stream (audio only)")
    if info.duration < cfg.clips.min_seconds:
        raise MediaError(f"{src.uri}: {info.duration:.1f} s is shorter than clips.min_seconds ({cfg.clips.min_seconds})")
    return info
