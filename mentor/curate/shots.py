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


def detect_shots(path: str | Path, cfg: ShotConfig) -> list[Span]:
    """(start, end) seconds of every shot of the video at `path`, in order, covering it.

    A video with no cut is one shot. Raises MediaError when the file cannot be decoded.
    """
    from scenedetect import ContentDetector, SceneManager, open_video
    from scenedetect.video_stream import VideoOpenFailure

    try:
        video = open_video(str(path), backend="opencv")
    except (VideoOpenFailure, OSError, ValueError) as e:
        raise MediaError(f"{path}: cannot open video for shot detection ({str(e).splitlines()[0][:200]})") from None
    manager = SceneManager()
    manager.auto_downscale = False
    # frames compared at about DETECT_WIDTH px wide unless set: a hard cut shows at any size, and
    # the smaller frames halve the detector's share (PySceneDetect's own choice is 256 px)
    manager.downscale = cfg.downscale or max(1, int(video.frame_size[0]) // DETECT_WIDTH)
    # min_scene_len as seconds (a float) so the rule does not depend on the frame rate
    manager.add_detector(ContentDetector(threshold=cfg.threshold, min_scene_len=float(cfg.min_shot_seconds)))
    try:
        frames = manager.detect_scenes(video, frame_skip=cfg.frame_skip)
    except Exception as e:  # decoding errors surface from the backend's own types
        raise MediaError(f"{path}: shot detection failed part-way ({str(e).splitlines()[0][:200]})") from None
    if frames == 0:
        raise MediaError(f"{path}: no decodable video frames for shot detection")
    scenes = manager.get_scene_list(start_in_scene=True)
    # Times, not frame counts: PySceneDetect 0.7 gives each cut its frame's timestamp (on a
    # variable-frame-rate file its frame_num is only seconds x the average rate), and the
    # last shot ends where the last frame ends, so the whole file is covered.
    bounds = [0.0, *(float(s.seconds) for s, _ in scenes[1:]), video_end(path)]
    shots = [(float(a), float(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    log.debug("%s: %d shot(s) in %d frames", path, len(shots), frames)
    return shots


def video_end(path: str | Path) -> float:
    """When the last video frame ends, in seconds from the first frame's timestamp (the
    container's own timestamps, through decord)."""
    import decord

    from mentor.media import frame_times

    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, width=32, height=32)
    except Exception as e:  # decord raises its own DECORDError and RuntimeError
        raise MediaError(f"{path}: cannot read frame times ({str(e).splitlines()[0][:200]})") from None
    return frame_times(vr, float(vr.get_avg_fps()) or 25.0)[1]


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
