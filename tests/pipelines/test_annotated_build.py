"""`mentor build` with every annotator on: each kept clip gets landmarks, an SMPL-X fit,
VAD, diarization, sync, audio features and perceived attributes; ASR is marked skipped
without weights and writes transcripts with word times given a (tiny) Whisper checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate.asr import Transcript
from annotate.registry import STAGES
from mentor.config import parse_config
from mentor.contracts import present, writes_of
from mentor.curate.prepare import GIVEN
from mentor.curate.run import PIPELINE
from mentor.store import Store, verify_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source_folder(tmp_path_factory) -> Path:
    from mentor.testmedia import make_talking_clip

    folder = tmp_path_factory.mktemp("annotated")
    make_talking_clip(folder / "talk.mp4", seconds=5.0, seed=4)
    return folder


def _build(folder: Path, out: Path, whisper: Path | None):
    import ray

    from pipelines.curation import build

    text = f"sources:\n  - {{name: a, kind: folder, path: {folder}}}\nray: {{filter_actors: 1}}\n"
    if whisper:
        text += f"annotate:\n  asr: {{whisper_model: {whisper}, temperature: [0.0]}}\n"
    try:
        return build(parse_config(text, "t.yaml", str(folder)), out=out, progress=False)
    finally:
        ray.shutdown()


def test_every_annotation_is_written(source_folder, tmp_path, tiny_whisper_checkpoint):
    summary = _build(source_folder, tmp_path / "no-asr", whisper=None)
    assert summary.statuses["asr: skipped: no weights"] == summary.clips_kept >= 1
    assert "asr: skipped: no weights" in summary.render()
    store = Store(tmp_path / "no-asr")
    for rec in store.records():
        assert rec.kept and rec.status["asr"] == "skipped: no weights" and "asr" not in rec.annotations
        for stage in ("filter", "encode", "landmarks", "smplx", "sync", "vad", "diarization", "audio", "attributes"):
            assert rec.status.get(stage) == "done", (stage, rec.status, rec.errors)
        n = round(rec.duration * rec.fps)
        for name in ("landmarks.face", "landmarks.pose", "smplx.body_pose", "smplx.expression", "audio.logmel"):
            assert abs(len(rec.arrays[name].data) - n) <= 1 and rec.arrays[name].fps == rec.fps, name
        assert rec.annotations["smplx"]["body_model"] == "synthetic"
        assert rec.scores["diarization.num_speakers"] == 1 and rec.scores["sync.offset_frames"] == 0
        assert rec.attributes["skin_tone_group"].value in {"light", "medium", "dark"}
    assert verify_store(tmp_path / "no-asr") == []
    # every field a stored clip carries is declared by the stage list (no stage writes
    # what it does not declare)
    allowed = {f.key for f in writes_of(STAGES) | set(GIVEN)} | {("annotation", PIPELINE)}
    for rec in store.records(media_dir=tmp_path / "media"):
        undeclared = {f.key for f in present(rec)} - allowed
        assert not undeclared, f"fields no stage declares: {sorted(undeclared)}"

    _build(source_folder, tmp_path / "asr", whisper=tiny_whisper_checkpoint)
    samples = list(Store(tmp_path / "asr").dataset(decode_video=False))
    assert samples
    for s in samples:
        asr = s["record"].annotations["asr"]
        assert s["record"].status["asr"] == "done"
        assert s["record"].scores["asr.language"] == asr["language"]  # the audit groups by it
        words = [w for seg in asr["segments"] for w in seg["words"]]
        assert words and all(0 <= w["start"] <= w["end"] for w in words)
        assert s["txt"] == asr["text"] == Transcript.of(s["record"]).text
        assert [w.word for seg in Transcript.of(s["record"]).segments for w in seg.words] == [w["word"] for w in words]
