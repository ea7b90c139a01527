"""The build's console: library noise to the store's log, mentor's progress bar aside."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from mentor.record import ClipRecord, SourceRecord
from pipelines.progress import Progress, quiet_console


NOISY = r"""
import logging, os, subprocess, sys, warnings
from pipelines.progress import quiet_console
logging.basicConfig(level=logging.WARNING)  # as `mentor` sets it up
with quiet_console(sys.argv[1]) as console:
    os.write(2, b"W0000 inference_feedback_manager.cc:114] Feedback manager requires a model\n")  # C++ (glog)
    print("AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'", file=sys.stderr)
    print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    warnings.warn("ray: this API is deprecated", FutureWarning)
    logging.getLogger("ray").error("actor constructor arguments are large")
    # a process started inside (as ray.init starts Ray's own) writes there too
    subprocess.run([sys.executable, "-c", "import sys; print('child notice', file=sys.stderr)"], check=True)
    console.write("mentor: 1 of 2 sources\n")
print("after")
"""


def test_noise_from_every_level_goes_to_the_log_and_the_console_stays_clean(tmp_path):
    from pathlib import Path

    log = tmp_path / "logs" / "build.log"
    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", NOISY, str(log)], cwd=repo, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(repo)})
    assert res.returncode == 0, res.stderr
    text = log.read_text()
    for noise in ("Feedback manager", "GetPrototype", "XNNPACK", "deprecated", "actor constructor", "child notice"):
        assert noise in text, noise
        assert noise not in res.stdout + res.stderr, noise
    assert res.stderr == "mentor: 1 of 2 sources\n" and "mentor:" not in text
    assert res.stdout == "after\n"  # the descriptors are back


def test_disabled_redirects_nothing(tmp_path, capfd):
    with quiet_console(tmp_path / "x.log", enabled=False) as console:
        print("visible", file=sys.stderr)
        assert console is sys.stderr
    assert "visible" in capfd.readouterr().err and not (tmp_path / "x.log").exists()


def test_progress_bar_shows_sources_clips_hours_and_eta():
    stream = io.StringIO()
    bar = Progress(3, stream=stream)
    src = SourceRecord.from_uri("file:///a.mp4")
    kept = ClipRecord.for_span(src, 0.0, 36.0)
    dropped = ClipRecord.for_span(src, 36.0, 40.0)
    dropped.reject("vad", "low_speech: speech in 5% < 30%")
    bar.clip(kept)
    bar.clip(dropped)
    bar.source_done(src, failed=False)
    bar.close()
    shown = stream.getvalue()
    for words in ("sources", "1/3", "1 kept", "1 rejected", "0.010 h kept", "ETA"):
        assert words in shown, (words, shown)
    assert bar.line() == "sources 1/3 (0 failed) | clips 1 kept, 1 rejected | 0.010 h kept"


def test_progress_off_draws_nothing():
    stream = io.StringIO()
    bar = Progress(2, enabled=False, stream=stream)
    bar.source_done(SourceRecord.from_uri("file:///a.mp4"), failed=True)
    bar.close()
    assert stream.getvalue() == "" and bar.failed == 1
