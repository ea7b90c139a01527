"""The plain curation steps on one record, no Ray: the runner turns an exception into a
coded rejection and keeps rejected clips from model work; the encoder rejects media it
cannot read with a code; the sync shift reads the sync stage's typed result."""

from __future__ import annotations

from pathlib import Path

from annotate.av_sync import SyncResult
from mentor.config import parse_config
from mentor.curate import run
from mentor.curate.encode import AUDIO, VIDEO, Encoder
from mentor.curate.sync_shift import SyncShift
from mentor.record import ClipRecord, SourceRecord

CFG = parse_config("sources:\n  - {name: a, kind: folder, path: .}\n", "t.yaml", ".")


def _clip(path: str = "/nonexistent/v.mp4") -> ClipRecord:
    src = SourceRecord.from_uri(f"file://{path}", path=path)
    return ClipRecord.for_span(src, 0.0, 3.0)


class Boom:
    name = "boom"

    def __call__(self, rec):
        raise RuntimeError("model exploded")


class Counter:
    def __init__(self, name: str, on_rejected: bool = False):
        self.name, self.runs_on_rejected, self.seen = name, on_rejected, 0

    def __call__(self, rec):
        self.seen += 1
        return rec


def test_run_records_an_exception_as_a_coded_rejection_and_stops_model_work():
    after, auditor = Counter("after"), Counter("auditor", on_rejected=True)
    rec = run.run([Boom(), after, auditor], _clip())
    assert not rec.kept and rec.rejection.stage == "boom" and rec.rejection.code == "error"
    assert "RuntimeError: model exploded" in rec.rejection.detail and rec.status["boom"] == "failed"
    assert "boom" in rec.annotations[run.PIPELINE]["tracebacks"]
    assert set(rec.annotations[run.PIPELINE]["seconds"]) == {"boom", "auditor"}
    assert after.seen == 0 and auditor.seen == 1  # only the step that audits rejected clips


def test_encoder_rejects_unreadable_media_with_a_code(tmp_path):
    enc = Encoder.from_config(CFG, tmp_path)
    assert enc.folder == tmp_path / "clips"
    rec = enc(_clip())
    assert rec.rejection.stage == "encode" and rec.rejection.code == "encode_failed"
    assert rec.errors["encode"] and VIDEO not in rec.files


def test_encoder_writes_the_audio_with_the_picture_and_names_a_missing_stream(tmp_path, talking_clip, broken_files):
    """With the filter's has_audio the audio comes from the encoding ffmpeg (media.encode_clip
    audio_to); without it, apart, and a source without sound is rejected for that."""
    from annotate.person_filter import HAS_AUDIO
    from mentor.media import read_audio

    enc = Encoder.from_config(CFG, tmp_path)
    rec = _clip(str(talking_clip))
    rec.set_score(HAS_AUDIO, True)
    rec = enc(rec)
    assert rec.kept and rec.status["encode"] == "done"
    assert Path(rec.files[VIDEO]).stat().st_size > 0 and len(read_audio(rec.files[AUDIO])) == 3 * 16000
    silent = enc(_clip(str(broken_files["video_only"])))
    assert silent.rejection.code == "encode_failed" and "no audio stream" in silent.errors["encode"]


def test_sync_shift_reads_the_typed_sync_result(tmp_path, talking_clip):
    rec = _clip(str(talking_clip))
    assert SyncResult.of(rec) is None and SyncShift(CFG)(rec).status.get("sync_shift") is None
    audio = tmp_path / "a.wav"
    rec.files[AUDIO] = str(audio)
    rec.annotations["sync"] = {"method": "lip-gap/envelope correlation", "shift_seconds": 0.16, "lags": [0]}
    assert SyncResult.of(rec).shift_seconds == 0.16
    rec = SyncShift(CFG)(rec)
    assert rec.status["sync_shift"] == "done" and rec.scores["sync_shift.seconds"] == -0.16
    assert Path(audio).stat().st_size > 0


def test_rejected_clip_preview_is_encoded_at_a_few_frames_per_second(talking_clip):
    """A clip the filters rejected gets a preview for the annotators that audit rejected
    clips; they read a few frames (attributes: 8), so the preview holds 5 frames a second,
    not the clip rate (its encode was 0.73 of 0.91 CPU-s of the attributes at 25 fps)."""
    from mentor.curate.rejected_preview import RejectedPreview
    from mentor.media import probe

    seen = []

    class Looks:
        name = "looks"

        def __call__(self, rec):
            seen.append(probe(rec.files[VIDEO]))
            return rec

    rec = _clip(str(talking_clip))
    rec.scores["filter.face_fraction"] = 1.0
    rec.reject("filter", "two_people", "a second face")
    RejectedPreview(Looks(), CFG)(rec)
    assert len(seen) == 1 and seen[0].fps == RejectedPreview.FPS == 5.0
    assert abs(seen[0].num_frames - 5.0 * 3.0) <= 1 and VIDEO not in rec.files
