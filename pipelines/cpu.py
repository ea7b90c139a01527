"""CPU seconds of each stage call in a worker process, helper threads and ffmpeg included.

A stage's CPU is not the calling thread's: MediaPipe runs its graphs on threads of its
own (the calling thread of a Holistic clip used 0.12 of 9.6 CPU-s here), decord and
OpenCV decode on native threads, and ffmpeg runs as a child process. So the clock is the
whole process's: `time.process_time()` (every thread) plus the reaped children's CPU
(`resource.getrusage(RUSAGE_CHILDREN)`: each ffmpeg call is waited for inside its stage).

A process may run several stage calls at once (an actor's threads). The meter then
splits each stretch of process CPU between the calls that were running during it, in
equal shares: exact for a call that ran alone in its process, an even split where calls
overlapped, and the sum over calls is the process's CPU while any call ran (nothing is
counted twice). A benchmark that needs exact per-stage figures runs one thread per actor.
"""

from __future__ import annotations

import resource
import threading
import time


def process_cpu() -> float:
    """CPU seconds of this process (all threads) and its reaped children, user + system."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


class CpuMeter:
    """`start()` -> token; `stop(token)` -> CPU seconds of that call (see the module
    docstring for how overlapping calls share). Thread-safe; one per process."""

    def __init__(self, clock=process_cpu):
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[int, float] = {}
        self._next = 0
        self._last = clock()
        self.overlapped = 0  # calls that shared the process with another call at some point

    def _advance(self) -> None:
        now = self._clock()
        spent, self._last = now - self._last, now
        if self._active:
            share = spent / len(self._active)
            for k in self._active:
                self._active[k] += share

    def start(self) -> int:
        with self._lock:
            self._advance()
            self._next += 1
            self._active[self._next] = 0.0
            if len(self._active) > 1:
                self.overlapped += 1
            return self._next

    def stop(self, token: int) -> float:
        with self._lock:
            self._advance()
            return self._active.pop(token)


METER = CpuMeter()  # the process's meter: every stage call in a worker goes through it
