"""The curation graph's stages as Ray Data callables: rows in, rows out, around the
plain steps of mentor/curate and annotate/ (which know nothing of Ray).

Rows travel as {"kind", "source", "n_clips", "clip_id", "record", "npz", "files"}:
kind "clip" carries a serialised ClipRecord; kind "source" closes a source that produced
no clip rows in this run (failed to fetch, no usable shot, or all its clips were already
committed). Each stage turns rows into records, runs its steps on each record
(mentor.curate.run), and turns them back; it never raises on a bad clip or source.
"""

from __future__ import annotations

import queue
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from mentor.config import Config
from mentor.curate.prepare import source_clips
from mentor.curate.run import PIPELINE, call
from mentor.record import ClipRecord, SourceRecord
from pipelines.cpu import METER, process_cpu

ROW_COLUMNS = ("kind", "source", "n_clips", "clip_id", "record", "npz", "files")


def source_row(src: SourceRecord, n_clips: int = 0) -> dict[str, Any]:
    return {"kind": "source", "source": src.model_dump_json(), "n_clips": n_clips,
            "clip_id": "", "record": "", "npz": b"", "files": "{}"}


def clip_row(src: SourceRecord, rec: ClipRecord, n_clips: int) -> dict[str, Any]:
    return {"kind": "clip", "source": src.model_dump_json(), "n_clips": n_clips} | rec.to_row()


def work_dir(out: Path) -> Path:
    return out / "_work"


# -- a worker's one-time start-up: counted once, apart from the clips ----------------------
STARTUP = "startup_cpu_seconds"  # annotations[PIPELINE][STARTUP][what]: a worker process's start-up CPU


class Startup:
    """One-time CPU seconds of this worker process, not yet reported: its boot and imports
    (all the process's CPU before its first stage call), the models an actor loads in its
    constructor, and prepare's models with their first-call warm-up. The next clip record
    this process sends on carries them (annotations[PIPELINE][STARTUP]), once.

    Kept apart from the per-clip stage CPU (annotations[PIPELINE][CPU_SECONDS]) because it
    does not grow with the video: a 90 s benchmark build would charge each kept second a
    share of it that a real build of hours does not (a fresh worker's first source cost
    6.9 CPU-s against 1.1-1.2 for the next ones, 5.7 of it loading the diarizer's models).
    benchmarks/curation_cost.py prints it on a line of its own."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}
        self.booted = False  # the process's CPU before its first stage call is counted

    def add(self, what: str, cpu: float) -> None:
        with self._lock:
            self._pending[what] = self._pending.get(what, 0.0) + cpu

    def boot(self, what: str) -> None:
        """Count the process's CPU so far (Ray's worker boot, imports) once, as `what`'s;
        call before the process's first metered work."""
        with self._lock:
            if self.booted:
                return
            self.booted = True
        self.add(what, process_cpu())

    def attach(self, rec: ClipRecord) -> None:
        """Move what is pending onto `rec` (nothing when nothing is)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            seconds = rec.annotations.setdefault(PIPELINE, {}).setdefault(STARTUP, {})
            for k, v in pending.items():
                seconds[k] = round(seconds.get(k, 0.0) + v, 4)


STARTUP_CPU = Startup()  # the process's: every worker of the graph reports through it
_warmed: set[str] = set()  # the configurations whose prepare models this process has loaded


def warm_prepare(cfg: Config) -> None:
    """Load what prepare_source's first call would otherwise load inside its metered work
    (the source diarizer and its VAD, each run once), and count it as start-up."""
    key = cfg.annotate.diarization.model_dump_json() + cfg.annotate.vad.model_dump_json()
    if key in _warmed:
        return
    _warmed.add(key)
    STARTUP_CPU.boot("worker boot")
    token = METER.start()
    try:
        import decord  # noqa: F401  (what shot detection imports on first use)
        import scenedetect  # noqa: F401

        if cfg.annotate.diarization.enabled:
            from annotate.diarize import source_diarizer

            source_diarizer(cfg.annotate.diarization, cfg.annotate.vad, warm=True)
    finally:
        STARTUP_CPU.add("models: prepare", METER.stop(token))


# -- per source: fetch, probe, shots -> clip rows ---------------------------------------
def prepare_source(row: dict[str, Any], cfg: Config, out: Path, done_clip_ids: frozenset[str]) -> list[dict[str, Any]]:
    """One source row -> one row per new clip span (or one "source" row saying why none);
    the work itself is mentor.curate.prepare.source_clips."""
    src = SourceRecord.model_validate_json(row["source"])
    warm_prepare(cfg)
    t0, token = time.perf_counter(), METER.start()
    try:
        clips = source_clips(src, cfg, out)
    finally:
        cpu = METER.stop(token)
    new = [c for c in clips if c.id not in done_clip_ids]
    if not new:
        return [source_row(src)]
    for c in new:  # the source's cost, shared by its new clips
        c.annotations[PIPELINE] = {"seconds": {"prepare": round((time.perf_counter() - t0) / len(new), 4)},
                                   CPU_SECONDS: {"prepare": round(cpu / len(new), 4)}}
    STARTUP_CPU.attach(new[0])
    return [clip_row(src, c, len(new)) for c in new]


CPU_SECONDS = "cpu_seconds"  # annotations["pipeline"][CPU_SECONDS][stage]: CPU seconds (pipelines.cpu)


def run_timed(annotators, rec: ClipRecord) -> ClipRecord:
    """mentor.curate.run.run, with each step's CPU seconds (process threads and ffmpeg
    children, pipelines.cpu) kept beside its wall seconds."""
    for annotator in annotators:
        if rec.kept or getattr(annotator, "runs_on_rejected", False):
            token = METER.start()
            try:
                rec = call(annotator, rec)
            finally:
                cpu = METER.stop(token)
            name = getattr(annotator, "name", type(annotator).__name__)
            seconds = rec.annotations.setdefault(PIPELINE, {}).setdefault(CPU_SECONDS, {})
            seconds[name] = round(seconds.get(name, 0.0) + cpu, 4)
    return rec


def _records(batch: pd.DataFrame) -> list[tuple[dict[str, Any], ClipRecord | None]]:
    out = []
    for row in batch.to_dict("records"):
        out.append((row, ClipRecord.from_row(row) if row["kind"] == "clip" else None))
    return out


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


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
        self._free.put(self._build())  # a missing model fails here, before any clip
        self._built = 1
        self._lock = threading.Lock()

    def _build(self) -> list:
        """A new annotator set (model loads): start-up CPU, named after its stages."""
        STARTUP_CPU.boot("worker boot")
        token = METER.start()
        try:
            annotators = self._factory()
            for a in annotators:  # first-use imports and model set-up (Diarizer.warm), out of the first clip
                if callable(getattr(a, "warm", None)):
                    a.warm()
        finally:
            cpu = METER.stop(token)  # raised: the actor fails at once, nothing to report
        STARTUP_CPU.add("models: " + ", ".join(getattr(a, "name", type(a).__name__) for a in annotators), cpu)
        return annotators

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
                return self._build()
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
                    rec = run_timed(annotators, rec)
                    STARTUP_CPU.attach(rec)
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
