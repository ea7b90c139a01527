"""`mentor build` flag by flag: each one reaches the build and does what its help says.

The fast tests replace the build with one that records its arguments and returns a
summary filled as a real build fills it (Counters included: --summary-json once crashed
on them after a complete build, exit status 1). One slow test runs the real command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from annotate.registry import all_off_yaml
from mentor import cli
from mentor.record import ClipRecord, SourceRecord
from pipelines.summary import BuildSummary

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, folder: Path) -> Path:
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text(f"sources:\n  - {{name: local, kind: folder, path: {folder}}}\noutput: {tmp_path / 'default_store'}\n"
                   "ray: {filter_actors: 1}\n" + all_off_yaml("annotate"))
    return cfg


def _filled_summary(store: str) -> BuildSummary:
    """A summary as a build leaves it: a source ok and one failed, a kept and a rejected
    clip, worker seconds per stage, a stage status that is not "done"."""
    s = BuildSummary(store=store, ray="local Ray, 2 CPUs")
    src = SourceRecord.from_uri("file:///a.mp4", probe={"duration": 8.0})
    s.add_source(src, "ok")
    s.add_source(SourceRecord.from_uri("file:///b.mp4", error="probe: not a media file"), "failed")
    kept = ClipRecord.for_span(src, 0.0, 4.0)
    kept.annotations["pipeline"] = {"seconds": {"filter": 1.25, "encode": 0.5}}
    kept.mark("asr", "skipped")
    s.add_clip(kept)
    dropped = ClipRecord.for_span(src, 4.0, 8.0)
    dropped.reject("sync", "audio_offset: audio offset 12 frames > 10")
    s.add_clip(dropped)
    return s


@pytest.fixture
def fake_build(monkeypatch):
    import pipelines.curation

    calls = []

    def build(cfg, out=None, ray_address=None, progress=True, **kw):
        calls.append({"cfg": cfg, "out": out, "ray_address": ray_address, "progress": progress, **kw})
        return _filled_summary(str(out or cfg.output))

    monkeypatch.setattr(pipelines.curation, "build", build)
    return calls


def test_config_alone_builds_into_the_configs_output(fake_build, tmp_path, capsys):
    assert cli.main(["build", str(_config(tmp_path, tmp_path))]) == 0
    (call,) = fake_build
    assert call["out"] is None and call["ray_address"] is None and call["progress"] is True
    assert "clips: 1 kept, 1 rejected" in capsys.readouterr().out


def test_out_flag(fake_build, tmp_path):
    assert cli.main(["build", str(_config(tmp_path, tmp_path)), "--out", str(tmp_path / "elsewhere")]) == 0
    assert fake_build[0]["out"] == str(tmp_path / "elsewhere")


def test_ray_address_flag(fake_build, tmp_path):
    assert cli.main(["build", str(_config(tmp_path, tmp_path)), "--ray-address", "127.0.0.1:6379"]) == 0
    assert fake_build[0]["ray_address"] == "127.0.0.1:6379"


def test_quiet_flag_turns_the_progress_display_off(fake_build, tmp_path):
    assert cli.main(["build", str(_config(tmp_path, tmp_path)), "--quiet"]) == 0
    assert fake_build[0]["progress"] is False


def test_summary_json_flag_writes_the_whole_summary(fake_build, tmp_path):
    out = tmp_path / "summary.json"
    assert cli.main(["build", str(_config(tmp_path, tmp_path)), "--summary-json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["clips_kept"] == 1 and d["sources_ok"] == 1 and len(d["sources_failed"]) == 1
    assert d["stage_seconds"] == {"filter": 1.25, "encode": 0.5}
    assert d["statuses"] == {"asr: skipped": 1}
    assert d["clips_rejected"] == {"sync: audio_offset": 1}
    assert d["hours_out"] == pytest.approx(4 / 3600, abs=1e-4)


def test_verbose_flag_logs_at_info(fake_build, tmp_path):
    import logging

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        root.handlers.clear()  # basicConfig only configures a root logger without handlers
        assert cli.main(["-v", "build", str(_config(tmp_path, tmp_path))]) == 0
        assert root.level == logging.INFO
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]


def test_a_missing_config_is_one_line_and_status_2(tmp_path, capsys):
    assert cli.main(["build", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.yaml" in err


@pytest.mark.slow
def test_real_build_console_and_summary_json(tmp_path):
    """The command as a user runs it: one talking clip and a text file named .mp4."""
    from mentor.testmedia import make_talking_clip

    folder = tmp_path / "media"
    folder.mkdir()
    make_talking_clip(folder / "talk.mp4", seconds=4.0, size=256)
    (folder / "notes.mp4").write_text("This is a text file, not a video.\n" * 20)
    store, summary = tmp_path / "store", tmp_path / "summary.json"
    res = subprocess.run([sys.executable, "-m", "mentor.cli", "build", str(_config(tmp_path, folder)), "--out", str(store),
                          "--summary-json", str(summary)], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    # the console: mentor's progress and summary only; the libraries' noise is in the store's log
    for noise in ("GetPrototype", "TensorFlow Lite", "XNNPACK", "W0000", "Warning", "ray", "Ray"):
        assert noise not in res.stderr, (noise, res.stderr[-2000:])
    assert "sources" in res.stderr and "kept" in res.stderr  # the progress bar
    (log_line,) = [line for line in res.stdout.splitlines() if line.startswith("library messages: ")]
    log_file = Path(log_line.split(": ", 1)[1])
    assert log_file.parent == store.resolve() / "logs" and log_file.is_file()
    # ... and the stage actors' own (MediaPipe in the filter), which Ray writes to its session's worker files
    text = log_file.read_text()
    assert "--- Ray worker output: worker-" in text and ("XNNPACK" in text or "GetPrototype" in text), text[-3000:]
    d = json.loads(summary.read_text())
    assert d["store"] == str(store.resolve()) and d["sources_ok"] == 1 and d["log_file"] == str(log_file)
    (failed,) = d["sources_failed"]
    assert failed["uri"].endswith("notes.mp4") and "not a media file: no container format recognised" in failed["error"]
    assert d["clips_kept"] + sum(d["clips_rejected"].values()) >= 1
    assert all(isinstance(v, float) for v in d["stage_seconds"].values()) and "filter" in d["stage_seconds"]
    assert (store / "store.json").exists()
