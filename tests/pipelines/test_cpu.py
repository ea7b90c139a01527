"""CPU seconds per stage call: helper threads and ffmpeg-like children count, and calls
that overlap in one process share its CPU without counting it twice."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from mentor.record import ClipRecord, SourceRecord
from pipelines import stages
from pipelines.cpu import CpuMeter
from pipelines.summary import BuildSummary


def burn(seconds: float) -> None:
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        sum(i * i for i in range(1000))


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_overlapping_calls_share_the_process_cpu_evenly():
    clock = FakeClock()
    meter = CpuMeter(clock)
    a = meter.start()
    clock.t = 2.0  # a alone: 2 s
    b = meter.start()
    clock.t = 5.0  # a and b: 3 s, 1.5 each
    assert meter.stop(a) == 3.5
    clock.t = 6.0  # b alone: 1 s
    assert meter.stop(b) == 2.5
    clock.t = 9.0  # nothing running: counted to no one
    c = meter.start()
    assert meter.stop(c) == 0.0
    assert meter.overlapped == 1


def test_a_stage_call_counts_its_helper_threads_and_children():
    class Busy:
        name = "busy"

        def __call__(self, rec):
            helper = threading.Thread(target=burn, args=(0.4,))  # as MediaPipe's graph threads
            helper.start()
            helper.join()
            subprocess.run([sys.executable, "-S", "-c",  # as an ffmpeg child
                            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.4: pass"], check=True)
            return rec

    rec = ClipRecord.for_span(SourceRecord.from_uri("file:///v.mp4"), 0.0, 3.0)
    t0 = time.thread_time()
    rec = stages.run_timed([Busy()], rec)
    own = time.thread_time() - t0
    cpu = rec.annotations["pipeline"]["cpu_seconds"]["busy"]
    assert own < 0.3  # the calling thread itself hardly ran
    assert 0.75 < cpu < 2.0, cpu  # the helper thread's 0.4 s and the child's 0.4 s are in it
    assert rec.annotations["pipeline"]["seconds"]["busy"] > 0

    summary = BuildSummary(store="x")
    summary.add_clip(rec)
    d = summary.as_dict()
    assert d["stage_cpu_seconds"] == {"busy": cpu} and d["stage_clips"] == {"busy": 1}
    assert "CPU seconds per stage: busy" in summary.render()


# -- a worker's start-up (boot, imports, models) is counted once, apart from the clips -----
def test_an_actors_model_loading_is_start_up_carried_once_not_a_clips_cost(monkeypatch):
    from mentor.config import parse_config

    monkeypatch.setattr(stages, "STARTUP_CPU", stages.Startup())  # a fresh worker process's
    cfg = parse_config("sources:\n  - {name: a, kind: folder, path: .}\n", "test", ".")

    class Quick:
        name = "quick"
        warmed = 0

        def warm(self):  # first-use set-up (as Diarizer.warm): start-up too
            self.warmed += 1
            burn(0.2)

        def __call__(self, rec):
            return rec

    quick = Quick()

    def factory(cfg):
        burn(0.3)  # loading a model
        return [quick]

    stage = stages.AnnotatorStage(factory, cfg, threads=1)
    recs = []
    for i in range(2):
        src = SourceRecord.from_uri(f"file:///v{i}.mp4")
        out = stage(stages._frame([stages.clip_row(src, ClipRecord.for_span(src, 0.0, 3.0), 1)]))
        recs.append(ClipRecord.from_row(out.to_dict("records")[0]))
    first, second = (r.annotations["pipeline"] for r in recs)
    assert quick.warmed == 1 and 0.45 < first[stages.STARTUP]["models: quick"] < 2.0
    assert first[stages.STARTUP]["worker boot"] > 0  # the process's CPU before its first stage call
    assert stages.STARTUP not in second  # once per process
    assert first[stages.CPU_SECONDS]["quick"] < 0.2  # the model load is not the clip's

    summary = BuildSummary(store="x")
    for r in recs:
        summary.add_clip(r)
    assert set(summary.stage_cpu_seconds) == {"quick"}  # per-clip figures only (mentor cost scales them)


def test_prepares_model_loading_is_start_up_of_its_first_source_only(monkeypatch, tmp_path):
    import annotate.diarize
    from mentor.config import parse_config

    monkeypatch.setattr(stages, "STARTUP_CPU", stages.Startup())
    monkeypatch.setattr(stages, "_warmed", set())
    warmed = []

    def diarizer(cfg, vad_cfg, warm=False):
        warmed.append(warm)
        burn(0.3)

    def clips(src, cfg, out):
        burn(0.1)
        return [ClipRecord.for_span(src, 0.0, 3.0), ClipRecord.for_span(src, 3.0, 6.0)]

    monkeypatch.setattr(annotate.diarize, "source_diarizer", diarizer)
    monkeypatch.setattr(stages, "source_clips", clips)
    cfg = parse_config("sources:\n  - {name: a, kind: folder, path: .}\n", "test", ".")
    assert cfg.annotate.diarization.enabled  # the default: prepare cuts clips at speaker turns
    rows = [stages.prepare_source(stages.source_row(SourceRecord.from_uri(f"file:///v{i}.mp4")), cfg, tmp_path,
                                  frozenset()) for i in range(2)]
    assert warmed == [True]  # models loaded and warmed once per process
    recs = [ClipRecord.from_row(r) for rs in rows for r in rs]
    timing = [r.annotations["pipeline"] for r in recs]
    assert 0.25 < timing[0][stages.STARTUP]["models: prepare"] < 1.5
    assert [stages.STARTUP in t for t in timing] == [True, False, False, False]
    for t in timing:  # each source's own 0.1 CPU-s, shared by its two clips; the models in none
        assert 0.03 < t[stages.CPU_SECONDS]["prepare"] < 0.2, t
