"""One source -> its clip records: fetch -> probe -> shots -> spans.

The per-source half of curation; the per-clip half (filter, encode, annotate) is the
stage list in annotate/registry.py. A source that fails says why in `src.error` and gives
no clips; the run goes on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mentor.config import Config
from mentor.contracts import annotation, file
from mentor.curate.probe import probe_source
from mentor.curate.shots import clip_spans, detect_shots, speaker_changes, split_at_turns
from mentor.media import MediaError, probe_facts
from mentor.record import ClipRecord, SourceRecord

log = logging.getLogger(__name__)

SOURCE = "source"  # record.files[SOURCE]: the fetched source video, set by ClipRecord.for_span
# annotations[SOURCE_SPEECH]: the source's speech segments inside the clip, when the VAD ran
# on the whole source (with diarization on); the filter's speech check reads them
SOURCE_SPEECH = "source_speech"
# annotations[SOURCE_INFO]: the source's probe (streams, size, video origin) and the file version
# it is of (mentor.media.probe_facts): the filter and the encoder take it instead of running
# ffprobe on the source again in their worker (about 0.09 CPU-s per source)
SOURCE_INFO = "source_info"
# what a clip record carries before its first clip step (the speech segments when the VAD ran)
GIVEN = (file(SOURCE), annotation(SOURCE_SPEECH, optional=True), annotation(SOURCE_INFO, optional=True))


def source_clips(src: SourceRecord, cfg: Config, out: str | Path) -> list[ClipRecord]:
    """Fetch, probe and cut one source into clip records (no stage has run on them yet).

    On failure `src.error` says why ("fetch: ...", "probe: ...", "prepare: ...") and the
    list is empty. `src.probe` gets the probe, the shot count and the seconds taken.
    """
    from mentor.fetch import fetch_source

    t0 = time.perf_counter()
    if fetch_source(src, cfg, out).error:
        return []
    try:
        info = probe_source(src, cfg)
        shots = detect_shots(src.path, cfg.shots, (info.width, info.height))
        spans = clip_spans(shots, cfg.clips)
        speech = None
        if cfg.annotate.diarization.enabled and info.has_audio and spans:
            # cut at speaker changes, so that a clip holds one voice (the clip-level
            # diarizer then checks each piece)
            from annotate.diarize import source_speech_turns

            speech, turns = source_speech_turns(src.path, cfg.annotate.diarization, cfg.annotate.vad)
            src.probe["speaker_changes"] = len(speaker_changes(turns))
            spans = split_at_turns(spans, turns, cfg.clips.min_seconds)
    except MediaError as e:
        src.error = f"probe: {e}"
        src.final = source_stamp(src.uri)  # the same bytes give the same answer: final
    except Exception as e:  # a library's own error on bad data: recorded, the run goes on
        src.error = f"prepare: {type(e).__name__}: {e}"
        src.final = source_stamp(src.uri)
    if src.error:
        log.info("source failed: %s", src.error)
        return []
    src.probe["shots"] = len(shots)
    src.probe["prepare_seconds"] = round(time.perf_counter() - t0, 3)
    clips = [ClipRecord.for_span(src, s, e) for s, e in spans]
    facts = probe_facts(src.path, info)
    for c in clips:
        c.annotations[SOURCE_INFO] = facts
    if speech is not None:  # the VAD ran on the whole source: each clip gets its part (clip seconds)
        for c in clips:
            c.annotations[SOURCE_SPEECH] = {"segments": clip_segments(speech, c.start, c.end),
                                            "method": "silero-vad on the whole source (annotate.vad settings)"}
    return clips


def clip_segments(segments, start: float, end: float) -> list[list[float]]:
    """The parts of `segments` (source seconds) inside [start, end), in clip seconds."""
    return [[round(max(a, start) - start, 3), round(min(b, end) - start, 3)]
            for a, b in segments if b > start and a < end]


def source_stamp(uri: str) -> str:
    """What a final failure of the source at `uri` is tied to: a local file's size and
    modification time (so a file the user replaces is tried again), else the URI's
    scheme (a remote source that failed for good stays failed)."""
    import os
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:  # "c:" is a Windows drive
        return parsed.scheme
    path = url2pathname(parsed.path) if parsed.scheme == "file" else uri
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"
