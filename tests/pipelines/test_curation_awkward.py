"""Curation on awkward sources, one step at a time without Ray: failures that no re-run
can mend are final at once, and a re-run with only those left starts nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from annotate.registry import all_off_yaml
from mentor.config import parse_config
from mentor.curate.prepare import source_clips, source_stamp
from mentor.fetch import discover_sources
from mentor.store import StoreWriter
from pipelines import curation


def _config(folder: Path, root: Path, max_attempts: int = 3):
    text = (f"sources:\n  - {{name: local, kind: folder, path: {folder}}}\noutput: {root / 'store'}\n"
            f"fetch: {{max_attempts: {max_attempts}}}\n" + all_off_yaml("annotate"))
    return parse_config(text, "test.yaml", str(root))


def _first_run(cfg, out: Path) -> list:
    """What the build's driver does for sources that give no clip: prepare, then record."""
    srcs = discover_sources(cfg)
    writer = StoreWriter(out)
    for src in srcs:
        assert source_clips(src, cfg, out) == []
        writer.add_source(src, "failed", attempts=1)
    writer.close()
    return srcs


@pytest.fixture
def broken_folder(tmp_path, broken_files):
    folder = tmp_path / "media"
    folder.mkdir()
    for key in ("not_video", "empty", "audio_only"):
        (folder / broken_files[key].name).write_bytes(broken_files[key].read_bytes())
    return folder


def test_not_media_empty_and_no_video_are_final_at_once(broken_folder, tmp_path):
    cfg = _config(broken_folder, tmp_path)
    out = tmp_path / "store"
    srcs = _first_run(cfg, out)
    assert {Path(s.uri).name for s in srcs} == {"not_video.mp4", "empty.mp4", "audio_only.m4a"}
    assert all(s.error.startswith("probe: ") and s.model_extra["final"] for s in srcs)
    todo, attempts, _, finished = curation.pending_sources(cfg, out)
    assert todo == [] and finished == 3  # one attempt each, not fetch.max_attempts (3)
    assert set(attempts.values()) == {1}


def test_rerun_with_only_final_failures_does_not_start_ray(broken_folder, tmp_path, monkeypatch):
    cfg = _config(broken_folder, tmp_path)
    out = tmp_path / "store"
    _first_run(cfg, out)

    def no_ray(*a, **k):
        raise AssertionError("Ray was started for a build with nothing to do")

    monkeypatch.setattr(curation, "init_ray", no_ray)
    summary = curation.build(cfg, out=out, progress=False)
    assert summary.ray == "" and summary.sources_skipped == 3
    assert any(n.startswith("nothing to do") for n in summary.notes)


def test_a_replaced_file_is_tried_again(broken_folder, tmp_path):
    cfg = _config(broken_folder, tmp_path)
    out = tmp_path / "store"
    _first_run(cfg, out)
    fixed = broken_folder / "not_video.mp4"
    before = source_stamp(fixed.as_uri())
    fixed.write_text("still not a video, but a different file\n")
    os.utime(fixed, ns=(1, 1))
    assert source_stamp(fixed.as_uri()) != before
    todo, _, _, finished = curation.pending_sources(cfg, out)
    assert [Path(s.uri).name for s in todo] == ["not_video.mp4"] and finished == 2


def test_a_failure_that_may_pass_is_retried_up_to_max_attempts(tmp_path):
    """A source that failed to fetch (no final stamp) is retried until fetch.max_attempts."""
    from mentor.record import SourceRecord

    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "later.mp4").write_text("x")
    cfg = _config(folder, tmp_path, max_attempts=2)
    out = tmp_path / "store"
    (src,) = discover_sources(cfg)
    flaky = SourceRecord.model_validate(src.model_dump() | {"error": "fetch: timed out after 30 s"})
    for attempt in (1, 2):
        todo, _, _, _ = curation.pending_sources(cfg, out)
        assert len(todo) == 1, f"attempt {attempt}"
        writer = StoreWriter(out)
        writer.add_source(flaky, "failed", attempts=attempt)
        writer.close()
    assert curation.pending_sources(cfg, out)[0] == []


# -- speaker turns (issue 15, item 3): a kept clip holds one voice ----------------------
@pytest.mark.slow
def test_clips_are_cut_at_speaker_turns(tmp_path):
    import subprocess

    from mentor.testmedia import _write_wav, make_talking_clip, two_speaker_samples

    folder = tmp_path / "media"
    face = make_talking_clip(tmp_path / "face.mp4", seconds=10.0, size=128, audio=False)
    samples, truth = two_speaker_samples(10.0, voices=("en", "en+f4"))
    wav = _write_wav(tmp_path / "voices.wav", samples, 16000)
    folder.mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(face), "-i", str(wav), "-map", "0:v", "-map",
                    "1:a", "-c:v", "copy", "-c:a", "aac", "-ar", "16000", str(folder / "two_voices.mp4")], check=True)
    text = (f"sources:\n  - {{name: local, kind: folder, path: {folder}}}\noutput: {tmp_path / 'store'}\n"
            "clips: {min_seconds: 1.5, max_seconds: 10}\n")
    cfg = parse_config(text, "test.yaml", str(tmp_path))
    (src,) = discover_sources(cfg)
    clips = source_clips(src, cfg, tmp_path / "store")
    assert src.error is None and src.probe["speaker_changes"] == len(truth) - 1
    assert len(clips) >= 2
    for c in clips:
        # the true turns this clip overlaps by more than 0.3 s: one voice only
        voices = {spk for s, e, spk in truth if min(e, c.end) - max(s, c.start) > 0.3}
        assert len(voices) == 1, (c.start, c.end, truth)
