"""A one-line live progress display for a build (sources, clips, hours)."""

from __future__ import annotations

import sys
import time

from mentor.record import ClipRecord, SourceRecord


class Progress:
    def __init__(self, total_sources: int, enabled: bool = True, every_s: float = 2.0):
        self.total = total_sources
        self.enabled = enabled
        self.every_s = every_s
        self.sources = self.failed = self.kept = self.rejected = 0
        self.seconds = 0.0
        self.t0 = self._last = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def source_done(self, src: SourceRecord, failed: bool) -> None:
        self.sources += 1
        self.failed += failed
        self._show(force=True)

    def clip(self, rec: ClipRecord) -> None:
        if rec.kept:
            self.kept += 1
            self.seconds += rec.duration
        else:
            self.rejected += 1
        self._show()

    def _show(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.every_s):
            return
        self._last = now
        line = (f"sources {self.sources}/{self.total} ({self.failed} failed) | clips {self.kept} kept, "
                f"{self.rejected} rejected | {self.seconds / 3600:.3f} h kept | {now - self.t0:.0f} s")
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._show(force=True)
            if self.tty:
                sys.stderr.write("\n")
