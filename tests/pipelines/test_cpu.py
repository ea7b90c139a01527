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
