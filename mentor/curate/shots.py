"""Shots of a source (PySceneDetect's ContentDetector) and the clip spans cut from them: the
"shots" step of curation (no learned model, so it lives in mentor/curate, not annotate/).

`detect_shots` finds hard cuts; `clip_spans` trims each shot's edges (cuts and fades
smear a frame or two), drops shots that are too short and cuts long ones into even
pieces between `min_seconds` and `max_seconds`. Times are seconds in the source.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from mentor.config import ClipConfig, ShotConfig
from mentor.media import MediaError

log = logging.getLogger(__name__)

Span = tuple[float, float]
DETECT_WIDTH = 128  # shots.downscale 0: frames compared at about this width (mentor/config.py)


def detect_shots(path: str | Path, cfg: ShotConfig, frame_size: tuple[int, int] | None = None) -> list[Span]:
    """(start, end) seconds of every shot of the video at `path`, in order, covering it.

    A video with no cut is one shot. Raises MediaError when the file cannot be decoded.
    `frame_size`: the video's (width, height) when known (the probe's); else probed.

    One decoding pass (decord): the decoder scales each frame to the compared size (about
    DETECT_WIDTH px wide unless `downscale` is set), and the same reader gives every
    frame's timestamp, so cuts and the last shot's end follow the container's times.
    """
    from fractions import Fraction

    import cv2
    from scenedetect import ContentDetector, FrameTimecode
    from scenedetect.common import Timecode

    from mentor.media import frame_times, open_video, probe

    if frame_size is None:
        info = probe(path)
        if not info.has_video:
            raise MediaError(f"{path}: no video stream (audio only)")
        frame_size = (info.width, info.height)
    width, height = frame_size
    # frames compared at about DETECT_WIDTH px wide unless set: a hard cut shows at any size, and
    # the smaller frames halve the detector's share (PySceneDetect's own choice is 256 px)
    down = cfg.downscale or max(1, width // DETECT_WIDTH)
    vr = open_video(path, (max(2, round(width / down)), max(2, round(height / down))))
    fps = float(vr.get_avg_fps()) or 25.0
    starts, end = frame_times(vr, fps)
    # min_scene_len as seconds (a float) so the rule does not depend on the frame rate
    detector = ContentDetector(threshold=cfg.threshold, min_scene_len=float(cfg.min_shot_seconds))
    rate = Fraction(fps).limit_denominator(100000)

    def timecode(t: float) -> FrameTimecode:  # the frame's own time (microseconds), not its count
        return FrameTimecode(Timecode(pts=round(t * 1_000_000), time_base=Fraction(1, 1_000_000)), fps=rate)

    cuts, i, step = [], 0, 1 + cfg.frame_skip
    try:
        while i < len(vr):
            rgb = vr.next().asnumpy()
            cuts += detector.process_frame(timecode(starts[i]), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            last, i = i, i + step
            if cfg.frame_skip and i < len(vr):
                vr.skip_frames(cfg.frame_skip)
        cuts += detector.post_process(timecode(starts[last]))
    except Exception as e:  # decoding errors surface from decord's own types
        raise MediaError(f"{path}: shot detection failed part-way ({str(e).splitlines()[0][:200]})") from None
    # Times, not frame counts: each cut is its frame's timestamp (on a variable-frame-rate file
    # the frame number is only seconds x the average rate), and the last shot ends where the last
    # frame ends, so the whole file is covered.
    bounds = [0.0, *sorted({float(c.seconds) for c in cuts if 0 < c.seconds < end}), end]
    shots = [(float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    log.debug("%s: %d shot(s) in %d frames", path, len(shots), len(vr))
    return shots


def clip_spans(shots: list[Span], cfg: ClipConfig) -> list[Span]:
    """Clip spans from shots: edges trimmed by `trim_seconds`, shots shorter than
    `min_seconds` dropped, longer ones split evenly into pieces no longer than
    `max_seconds` (a 25 s shot with max 10 -> 3 pieces of 8.33 s).

    When an even split would make pieces shorter than `min_seconds` (possible only if
    min_seconds > max_seconds / 2), pieces of `max_seconds` are taken from the shot's
    start and the remainder is dropped.
    """
    spans: list[Span] = []
    for start, end in shots:
        s, e = start + cfg.trim_seconds, end - cfg.trim_seconds
        length = e - s
        if length < cfg.min_seconds - 1e-9:
            continue
        n = max(1, math.ceil(length / cfg.max_seconds - 1e-9))
        piece = length / n
        if piece < cfg.min_seconds:
            n = max(1, math.floor(length / cfg.min_seconds))
            piece = min(cfg.max_seconds, length / n)
        spans.extend((s + i * piece, s + (i + 1) * piece) for i in range(n))
    return spans


def speaker_changes(turns: list[tuple[float, float, str]]) -> list[float]:
    """Times where the voice changes: the middle of the pause between consecutive turns
    of different speakers (turns as the diarizer gives them: start, end, speaker)."""
    turns = sorted(turns)
    return [(a[1] + b[0]) / 2 for a, b in zip(turns, turns[1:]) if a[2] != b[2]]


def split_at_turns(spans: list[Span], turns: list[tuple[float, float, str]], min_seconds: float) -> list[Span]:
    """`spans` cut at every speaker change inside them, so that each piece holds one
    voice; pieces shorter than `min_seconds` are dropped."""
    changes = speaker_changes(turns)
    out: list[Span] = []
    for start, end in spans:
        bounds = [start, *(t for t in changes if start < t < end), end]
        out += [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= min_seconds - 1e-9]
    return out
