"""What a build shows on the console: mentor's own progress bar, nothing else.

`quiet_console(log_path)` sends everything written to the process's stdout and stderr
file descriptors while a build runs into a log file in the store: the libraries' own
noise (MediaPipe's protobuf AttributeError, TensorFlow Lite / XNNPACK lines, Ray's
notices and core log lines, Python warnings, log records) is kept there, named in the
summary, and the console keeps only what mentor says. The redirect is at the file
descriptor level because much of that noise comes from C++ (glog, TFLite) or from Ray's
own threads, which never pass through Python's sys.stderr.

`Progress` is a rich progress bar (as pyannote and many CLIs use) on the console kept
aside: sources done of all, clips kept and rejected, hours of video kept, elapsed time
and an estimate of the time left.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from mentor.record import ClipRecord, SourceRecord


@contextmanager
def quiet_console(log_path: str | Path, enabled: bool = True) -> Iterator[IO[str]]:
    """Redirect fds 1 and 2 (and so sys.stdout, sys.stderr, warnings and logging) to
    `log_path` (appended) for the block; yields a text stream on the real stderr for
    mentor's own output. With enabled=False (e.g. `mentor -v`), nothing is redirected and
    the stream is sys.stderr."""
    if not enabled:
        yield sys.stderr
        return
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    with open(log_path, "ab", buffering=0) as log:
        log.write(f"\n=== mentor build, {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        # Python-level writers too, where sys.stdout/err are not fds 1/2 (a notebook)
        py_streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = open(os.dup(log.fileno()), "w", buffering=1, errors="replace")
        logging.captureWarnings(True)  # warnings.warn -> logging -> stderr -> the log
        try:
            yield console
        finally:
            logging.captureWarnings(False)
            sys.stdout.close()
            sys.stdout, sys.stderr = py_streams
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            console.close()


class Progress:
    """A live bar of sources done, with clips kept/rejected, hours kept and an ETA.

    `stream`: where to draw it (default sys.stderr). On a terminal the bar redraws in
    place; elsewhere (a CI log, a pipe) rich prints it when the build ends.
    """

    def __init__(self, total_sources: int, enabled: bool = True, stream: IO[str] | None = None):
        self.total = total_sources
        self.enabled = enabled
        self.sources = self.failed = self.kept = self.rejected = 0
        self.seconds = 0.0
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]sources"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed | clips [green]{task.fields[kept]} kept[/], "
                           "{task.fields[rejected]} rejected | {task.fields[hours]:.3f} h kept"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                # off a terminal rich assumes 80 columns and cut the line's elapsed time and ETA to "0:0…"
                console=Console(file=stream or sys.stderr, width=None if (stream or sys.stderr).isatty() else 120),
                transient=False)
            self._task = self._bar.add_task("build", total=total_sources, failed=0, kept=0, rejected=0, hours=0.0)
            self._bar.start()

    def source_done(self, src: SourceRecord, failed: bool) -> None:
        self.sources += 1
        self.failed += failed
        self._show()

    def clip(self, rec: ClipRecord) -> None:
        if rec.kept:
            self.kept += 1
            self.seconds += rec.duration
        else:
            self.rejected += 1
        self._show()

    def line(self) -> str:
        """The counts as one line of text (what the bar shows, without the drawing)."""
        return (f"sources {self.sources}/{self.total} ({self.failed} failed) | clips {self.kept} kept, "
                f"{self.rejected} rejected | {self.seconds / 3600:.3f} h kept")

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.sources, failed=self.failed, kept=self.kept,
                             rejected=self.rejected, hours=self.seconds / 3600)

    def close(self) -> None:
        if self._bar is not None:
            self._show()
            self._bar.stop()
            self._bar = None
