"""Running clip steps on one record, as every pool of the graph does (and a plain loop,
a test or a notebook can): an unexpected exception becomes data on the clip, each step's
seconds are kept, and a rejected clip gets no more model work except from the steps that
audit rejected clips."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Iterable

from mentor.record import ClipRecord

log = logging.getLogger(__name__)

PIPELINE = "pipeline"  # annotations[PIPELINE]: per-step seconds and tracebacks, owned by the runner


def timed(rec: ClipRecord, stage: str, t0: float) -> None:
    """Add the seconds since `t0` to annotations["pipeline"]["seconds"][stage]."""
    seconds = rec.annotations.setdefault(PIPELINE, {}).setdefault("seconds", {})
    seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - t0, 4)


def call(annotator: Any, rec: ClipRecord) -> ClipRecord:
    """Run one annotator; an unexpected exception is recorded on the clip, not raised."""
    name = getattr(annotator, "name", type(annotator).__name__)
    t0 = time.perf_counter()
    try:
        rec = annotator(rec)
    except Exception as e:
        log.warning("%s failed on clip %s: %s", name, rec.id, e)
        rec.fail(name, f"{type(e).__name__}: {e}")
        rec.annotations.setdefault(PIPELINE, {}).setdefault("tracebacks", {})[name] = traceback.format_exc(limit=3)
        rec.reject(name, "error", f"{type(e).__name__}: {str(e)[:200]}")
    timed(rec, name, t0)
    return rec


def run(annotators: Iterable[Any], rec: ClipRecord) -> ClipRecord:
    """Every annotator on `rec`, in order; once the clip is rejected only the ones that
    run on rejected clips (`runs_on_rejected`) still see it."""
    for annotator in annotators:
        if rec.kept or getattr(annotator, "runs_on_rejected", False):
            rec = call(annotator, rec)
    return rec
