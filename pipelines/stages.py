"""The curation graph's stages as Ray Data callables.

Rows travel as {"kind", "source", "n_clips", "clip_id", "record", "npz", "files"}:
kind "clip" carries a serialised ClipRecord; kind "source" closes a source that produced
no clip rows in this run (failed to fetch, no usable shot, or all its clips were already
committed). Each stage turns rows into records, calls plain annotators (annotate/), and
turns them back; it never raises on a bad clip or source.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from mentor.config import Config
from mentor.media import MediaError, encode_clip, extract_audio, probe
from mentor.record import ClipRecord, SourceRecord

log = logging.getLogger(__name__)

ROW_COLUMNS = ("kind", "source", "n_clips", "clip_id", "record", "npz", "files")


def _timed(rec: ClipRecord, stage: str, t0: float) -> None:
    """Per-stage seconds, owned by the pipeline (annotations["pipeline"])."""
    seconds = rec.annotations.setdefault("pipeline", {}).setdefault("seconds", {})
    seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - t0, 4)


def source_row(src: SourceRecord, n_clips: int = 0) -> dict[str, Any]:
    return {"kind": "source", "source": src.model_dump_json(), "n_clips": n_clips,
            "clip_id": "", "record": "", "npz": b"", "files": "{}"}


def clip_row(src: SourceRecord, rec: ClipRecord, n_clips: int) -> dict[str, Any]:
    return {"kind": "clip", "source": src.model_dump_json(), "n_clips": n_clips} | rec.to_row()


def work_dir(out: Path) -> Path:
    return out / "_work"


# -- per source: fetch, probe, shots -> clip spans ------------------------------------
def prepare_source(row: dict[str, Any], cfg: Config, out: Path, done_clip_ids: frozenset[str]) -> list[dict[str, Any]]:
    """One source -> one row per new clip span (or one "source" row saying why none)."""
    from annotate.shots import clip_spans, detect_shots
    from mentor.fetch import fetch_source

    src = SourceRecord.model_validate_json(row["source"])
    t0 = time.perf_counter()
    if fetch_source(src, cfg, out).error:
        return [source_row(src)]
    try:
        info = probe(src.path)
        src.probe = info.as_dict()
        if not info.has_video:
            raise MediaError(f"{src.uri}: no video stream (audio only)")
        if info.duration < cfg.clips.min_seconds:
            raise MediaError(f"{src.uri}: {info.duration:.1f} s is shorter than clips.min_seconds ({cfg.clips.min_seconds})")
        shots = detect_shots(src.path, cfg.shots)
        spans = clip_spans(shots, cfg.clips)
    except MediaError as e:
        src.error = f"probe: {e}"
    except Exception as e:  # a library's own error on bad data: recorded, the run goes on
        src.error = f"prepare: {type(e).__name__}: {e}"
    if src.error:
        log.info("source failed: %s", src.error)
        return [source_row(src)]
    src.probe["shots"] = len(shots)
    src.probe["prepare_seconds"] = round(time.perf_counter() - t0, 3)
    clips = [ClipRecord.for_span(src, s, e) for s, e in spans]
    new = [c for c in clips if c.id not in done_clip_ids]
    if not new:
        return [source_row(src)]
    for c in new:
        c.annotations["pipeline"] = {"seconds": {"prepare": round((time.perf_counter() - t0) / len(new), 4)}}
    return [clip_row(src, c, len(new)) for c in new]


def _records(batch: pd.DataFrame) -> list[tuple[dict[str, Any], ClipRecord | None]]:
    out = []
    for row in batch.to_dict("records"):
        out.append((row, ClipRecord.from_row(row) if row["kind"] == "clip" else None))
    return out


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


def _call(annotator: Any, rec: ClipRecord) -> ClipRecord:
    """Run one annotator; an unexpected exception is recorded on the clip, not raised."""
    name = getattr(annotator, "name", type(annotator).__name__)
    t0 = time.perf_counter()
    try:
        rec = annotator(rec)
    except Exception as e:
        log.warning("%s failed on clip %s: %s", name, rec.id, e)
        rec.fail(name, f"{type(e).__name__}: {e}")
        rec.annotations.setdefault("pipeline", {}).setdefault("tracebacks", {})[name] = traceback.format_exc(limit=3)
        rec.reject(name, f"error: {type(e).__name__}: {str(e)[:200]}")
    _timed(rec, name, t0)
    return rec


class AnnotatorStage:
    """A Ray Data actor: runs its annotators on each clip, on up to `threads` clips at once.

    Threads share one process, so its imports, Ray worker and page cache are paid for
    once; MediaPipe and ffmpeg release the GIL, so two threads do twice the clips (1.96x
    measured on 2 cores). Each thread takes its own annotator set (MediaPipe graphs and
    VAD state are not thread-safe); sets beyond the first are built when first needed.
    """

    def __init__(self, factory, cfg: Config, threads: int = 1):
        import torch

        torch.set_num_threads(1)  # one core per thread; the pool's threads fill the cores
        self._factory = partial(factory, cfg)
        self._threads = threads
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        self._free.put(self._factory())  # a missing model fails here, before any clip
        self._built = 1
        self._lock = threading.Lock()

    def _take(self) -> list:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                build = self._built < self._threads
                self._built += build
            if not build:
                return self._free.get()
            try:
                return self._factory()
            except BaseException:
                with self._lock:  # not built: a later call may try again
                    self._built -= 1
                raise

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        annotators = self._take()
        try:
            rows = []
            for row, rec in _records(batch):
                if rec is not None:
                    for annotator in annotators:
                        # a rejected clip needs no more model work, except what audits it
                        if rec.kept or getattr(annotator, "runs_on_rejected", False):
                            rec = _call(annotator, rec)
                    row = row | rec.to_row()
                rows.append(row)
            return _frame(rows)
        finally:
            self._free.put(annotators)


def actor_pool(size: int, threads: int):
    """Ray Data's strategy for an AnnotatorStage: `size` processes, each running up to
    `threads` calls at once (pass the same `threads` to the stage)."""
    import ray.data

    return ray.data.ActorPoolStrategy(size=size, max_concurrent_calls_per_actor=threads,
                                      enable_true_multi_threading=threads > 1)


# -- per clip: encode the crop -------------------------------------------------------
class Encoder:
    """Encoding as a clip step: each kept clip gets its H.264 crop and 16 kHz mono audio.

    It runs in the filter actors, right after the filter, so a clip's source is read
    while it is still in the page cache and no extra hop or worker pool is needed."""

    name = "encode"

    def __init__(self, cfg: Config, folder: Path):
        self.cfg = cfg
        self.folder = folder

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        try:
            encode_record(rec, self.cfg, self.folder)
        except MediaError as e:
            rec.fail(self.name, str(e))
            rec.reject(self.name, str(e))
        return rec


def encode_record(rec: ClipRecord, cfg: Config, folder: Path, audio_shift: float = 0.0) -> None:
    src = rec.files["source"]
    crop = (rec.crop.x, rec.crop.y, rec.crop.size) if rec.crop else None
    video = encode_clip(src, folder / f"{rec.id}.mp4", rec.start, rec.end, cfg.video.fps, cfg.video.size,
                        crop=crop, crf=cfg.video.crf, preset=cfg.video.preset, threads=cfg.video.threads)
    rec.files["video"] = str(video)
    rec.fps, rec.width, rec.height = cfg.video.fps, cfg.video.size, cfg.video.size
    if rec.scores.get("filter.has_audio", True):
        audio = extract_audio(src, folder / f"{rec.id}.{cfg.audio.format}", cfg.audio.sample_rate,
                              start=rec.start, duration=rec.duration, shift=audio_shift)
        rec.files["audio"] = str(audio)
    rec.mark("encode")
