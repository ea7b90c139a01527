"""The annotator stage's threads: each concurrent clip gets its own annotator set."""

from __future__ import annotations

import threading
import time

import pytest

from annotate.registry import switches
from mentor.config import parse_config
from mentor.contracts import config_value
from mentor.record import ClipRecord, SourceRecord
from pipelines import stages

CFG = parse_config("sources:\n  - {name: a, kind: folder, path: .}\n", "test", ".")


class Meeting:
    """An annotator that waits until `parties` calls are inside it at once, so two
    concurrent calls can only pass if they hold different annotator sets."""

    name = "meeting"

    def __init__(self, barrier: threading.Barrier):
        self.barrier = barrier
        self.clips: list[str] = []

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        self.clips.append(rec.id)
        self.barrier.wait(timeout=10)
        rec.set_score("meeting.set", id(self))
        return rec


def clip_batch(i: int):
    src = SourceRecord.from_uri(f"file:///v{i}.mp4")
    rec = ClipRecord.for_span(src, 0.0, 3.0)
    return stages._frame([stages.clip_row(src, rec, 1)])


def run_concurrently(stage, batches):
    results: list = [None] * len(batches)
    errors: list = []

    def call(k):
        try:
            results[k] = stage(batches[k])
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return results


def test_concurrent_clips_get_their_own_annotator_sets():
    barrier = threading.Barrier(2)
    built: list[Meeting] = []

    def factory(cfg):
        built.append(Meeting(barrier))
        return [built[-1]]

    stage = stages.AnnotatorStage(factory, CFG, threads=2)
    assert len(built) == 1  # the first set at construction, the second on demand
    out = run_concurrently(stage, [clip_batch(0), clip_batch(1)])
    assert len(built) == 2
    used = {ClipRecord.from_row(df.to_dict("records")[0]).scores["meeting.set"] for df in out}
    assert used == {id(m) for m in built}
    # later clips reuse the two sets: no third one is built
    out = run_concurrently(stage, [clip_batch(2), clip_batch(3)])
    assert len(built) == 2
    assert sorted(len(m.clips) for m in built) == [2, 2]


def test_one_thread_builds_one_set_and_serves_clips_in_turn():
    built = []

    def factory(cfg):
        built.append(Meeting(threading.Barrier(1)))
        return [built[-1]]

    stage = stages.AnnotatorStage(factory, CFG, threads=1)
    for i in range(3):
        stage(clip_batch(i))
    assert len(built) == 1 and len(built[0].clips) == 3


def test_a_factory_that_fails_fails_the_stage_at_construction():
    def factory(cfg):
        raise FileNotFoundError("weights.onnx: no such file")

    with pytest.raises(FileNotFoundError, match="weights.onnx"):
        stages.AnnotatorStage(factory, CFG, threads=2)


def test_actor_cpus_fit_every_stage_on_a_small_machine():
    from pipelines.curation import actor_cpus

    cfg = parse_config("sources:\n  - {name: a, kind: folder, path: .}\n", "test", ".")  # annotators on
    f, a = actor_cpus(cfg, 2.0)
    r = cfg.ray
    assert 0.5 * r.prepare_tasks + r.filter_actors * f + r.annotate_actors * a <= 2.0 + 1e-9
    assert f > 0 and a > 0
    assert actor_cpus(cfg, 64.0) == (0.5 * r.filter_threads, 0.5 * r.annotate_threads)  # room: unscaled
    off = cfg.model_copy(deep=True)
    for section in switches("annotate"):
        config_value(off, section).enabled = False
    assert actor_cpus(off, 2.0)[0] == 0.5 * r.filter_threads  # curation only: the filter keeps its share


def test_a_set_that_fails_to_build_on_demand_is_tried_again_later():
    barrier = threading.Barrier(2)
    calls = {"n": 0}
    built: list[Meeting] = []

    def factory(cfg):
        calls["n"] += 1
        if calls["n"] == 2:  # the second set fails once (a model file not yet synced, say)
            raise OSError("model busy")
        built.append(Meeting(barrier))
        return [built[-1]]

    stage = stages.AnnotatorStage(factory, CFG, threads=2)
    # the first set is held by a call waiting at the barrier while the second set fails
    holder = threading.Thread(target=stage, args=(clip_batch(0),))
    holder.start()
    deadline = time.monotonic() + 10
    while not stage._free.empty() and time.monotonic() < deadline:  # the holder has the first set
        time.sleep(0.01)
    with pytest.raises(OSError, match="model busy"):
        stage(clip_batch(1))
    out = stage(clip_batch(2))  # builds the second set now, and meets the holder
    holder.join(timeout=30)
    assert len(built) == 2 and calls["n"] == 3
    assert ClipRecord.from_row(out.to_dict("records")[0]).scores["meeting.set"] == id(built[1])


def test_cheap_checks_run_before_the_costly_annotators_and_spare_them():
    """The checks that reject clips run before the stages that cost most (issue 15 item 10):
    the audio checks (voice activity, speakers) before the landmarks, and the sync check
    (which needs the landmarks) before the SMPL-X fit. A clip the sync check rejects gets
    no SMPL-X fit and no CPU seconds for one. Sync runs right after the landmarks, so the
    landmark stage can ask its verdict before the pose and hands (tests/annotate/test_landmarks.py)."""
    from annotate.registry import STAGES

    order = [s.name for s in STAGES]
    assert max(order.index("vad"), order.index("diarization")) < order.index("landmarks")
    assert order.index("landmarks") + 1 == order.index("sync") < order.index("sync_shift") < order.index("smplx")

    class Step:
        def __init__(self, name, reject=False):
            self.name, self.reject, self.calls = name, reject, 0

        def __call__(self, rec):
            self.calls += 1
            if self.reject:
                rec.reject(self.name, "not_visible", "no speaking face in sync")
            return rec

    steps = [Step(n, reject=n == "sync") for n in order if n in ("landmarks", "sync", "sync_shift", "smplx")]
    rec = stages.run_timed(steps, ClipRecord.for_span(SourceRecord.from_uri("file:///v.mp4"), 0.0, 3.0))
    assert not rec.kept and [s.calls for s in steps] == [1, 1, 0, 0]
    assert set(rec.annotations["pipeline"]["cpu_seconds"]) == {"landmarks", "sync"}
