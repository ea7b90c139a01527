"""Stage contracts: the one stage list, checked when the graph is built. A toy annotator
added from this module with one line builds a real store with its fields; a graph that
reads a field nothing writes fails before anything runs, naming the stage and the field."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from annotate.registry import STAGES, all_off_yaml, with_stage
from mentor.config import parse_config
from mentor.contracts import (GraphError, Stage, array, check_graph, enabled_stages, file, present,
                              record_field, score, writes_of)
from mentor.curate.encode import VIDEO
from mentor.curate.prepare import GIVEN
from mentor.media import read_frames
from mentor.record import ClipRecord, SourceRecord

ALL_OFF = all_off_yaml("annotate")


def _cfg(folder: Path | str = ".", extra: str = ""):
    text = f"sources:\n  - {{name: a, kind: folder, path: {folder}}}\nray: {{filter_actors: 1}}\n" + extra
    return parse_config(text, "t.yaml", str(folder))


class Brightness:
    """A toy annotator: mean brightness per frame of the encoded clip."""

    name = "toy"
    reads = (file(VIDEO), record_field("fps"))
    writes = (array("toy.brightness"), score("toy.mean_brightness"))

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        frames = read_frames(rec.files[VIDEO], fps=rec.fps)
        per_frame = frames.reshape(len(frames), -1).mean(1).astype(np.float32)
        rec.add_array("toy.brightness", per_frame, fps=rec.fps)
        rec.set_score("toy.mean_brightness", round(float(per_frame.mean()), 3))
        rec.mark(self.name)
        return rec


class Reader:
    """Reads what no stage writes."""

    name = "toy_reader"
    reads = (array("nobody.writes_this"),)
    writes = ()

    def __call__(self, rec: ClipRecord) -> ClipRecord:
        return rec


TOY = Stage("toy", None, Brightness)  # the one line that adds it


def test_the_default_graph_is_whole_and_every_contract_resolves():
    cfg = _cfg(extra="annotate:\n  attributes: {face_recognition_model: arcface.onnx}\n")
    stages = enabled_stages(STAGES, cfg)
    assert [s.name for s in stages] == [s.name for s in STAGES]  # every stage on
    have = check_graph(stages, given=GIVEN)
    for s in STAGES:
        reads, writes = s.contract()
        assert writes, f"stage {s.name} declares no writes"
        assert {w.key for w in writes} <= {f.key for f in have}
    # the curation pool ends with the encode that every annotate stage reads from
    assert [s.name for s in STAGES if s.pool == "curate"] == ["filter", "encode"]


def test_a_stage_reading_an_unwritten_field_fails_at_build_time_naming_both(tmp_path):
    from pipelines.curation import build

    stages = with_stage(Stage("toy_reader", None, Reader), after="landmarks")
    with pytest.raises(GraphError, match=r"stage 'toy_reader' reads array 'nobody\.writes_this'"):
        build(_cfg(tmp_path), out=tmp_path / "store", progress=False, stage_list=stages)
    assert not (tmp_path / "store").exists(), "a bad graph must fail before anything is written"


def test_order_and_switches_are_named_in_the_error():
    cfg = _cfg()
    late = (STAGES[0], STAGES[1], Stage("toy_reader", None, Reader),
            Stage("nobody", None, Brightness, writes=(array("nobody.writes_this"),)))
    with pytest.raises(GraphError, match="stage 'nobody' writes it but runs after it"):
        check_graph(late, given=GIVEN)
    # smplx reads the landmarks: with the landmarks off, the error says which switch
    cfg.annotate.landmarks.enabled = False
    on = enabled_stages(STAGES, cfg)
    with pytest.raises(GraphError, match=r"stage 'smplx' reads array 'landmarks\.\w+'.*'landmarks' writes it "
                                         r"but is off \(annotate\.landmarks\)"):
        check_graph(on, given=GIVEN, off=[s for s in STAGES if s not in on])
    cfg.annotate.smplx.enabled = False
    check_graph(enabled_stages(STAGES, cfg), given=GIVEN)


def test_a_stage_writes_only_its_own_names():
    encoded = GIVEN + (record_field("fps"), file(VIDEO))
    thief = Stage("toy", None, Brightness, writes=(score("vad.speech_fraction"),))
    with pytest.raises(GraphError, match=r"stage 'toy' writes score 'vad\.speech_fraction', outside its own name"):
        check_graph((thief,), given=encoded)
    with pytest.raises(GraphError, match="two stages are named 'toy'"):
        check_graph((TOY, TOY), given=encoded)
    check_graph((TOY,), given=encoded)


def test_optional_reads_need_no_writer_and_reannotation_counts_what_the_store_has():
    # attributes read landmarks.face only when present: fine with the landmarks off
    attributes = next(s for s in STAGES if s.name == "attributes")
    assert any(f.name == "landmarks.face" and f.optional for f in attributes.contract()[0])
    smplx = next(s for s in STAGES if s.name == "smplx")
    src = SourceRecord.from_uri("file:///x.mp4")
    rec = ClipRecord.for_span(src, 0.0, 3.0)
    rec.width = rec.height = 64
    with pytest.raises(GraphError, match="smplx"):
        check_graph((smplx,), given=present(rec))
    for name in ("landmarks.pose", "landmarks.face"):
        rec.add_array(name, np.zeros((2, 3)), fps=25)
    check_graph((smplx,), given=present(rec))  # an earlier run's landmarks count


def test_every_audit_label_of_a_score_is_written_by_some_stage():
    from mentor.audit.labels import LABELS

    written = {f.name for f in writes_of(STAGES) if f.kind == "score"}
    missing = [c for c in LABELS if c.startswith("score.") and c[len("score."):] not in written]
    assert not missing, f"audit labels for scores no stage writes: {missing}"
    # and the audit's default columns
    cfg = _cfg()
    cols = cfg.audit.spread_columns + cfg.audit.language_columns
    assert not [c for c in cols if c.startswith("score.") and c[len("score."):] not in written]


def test_one_switch_per_section_turns_the_annotate_pool_off():
    cfg = _cfg(extra=ALL_OFF)
    assert not enabled_stages(STAGES, cfg, "annotate")
    assert [s.name for s in enabled_stages(STAGES, cfg)] == ["filter", "encode"]


def test_the_stage_list_builds_annotators_from_config(tmp_path):
    from annotate.registry import build_annotators
    from mentor.curate.rejected_preview import RejectedPreview

    cfg = _cfg(extra=ALL_OFF)
    cfg.annotate.vad.enabled = True
    cfg.annotate.sync.enabled = True
    built = build_annotators(cfg, with_stage(TOY), tmp_path)
    assert [a.name for a in built] == ["filter", "encode", "vad", "sync", "sync_shift", "toy"]
    cfg.annotate.attributes.enabled = True
    wrapped = build_annotators(cfg, tuple(s for s in STAGES if s.name == "attributes"), tmp_path)
    assert isinstance(wrapped[0], RejectedPreview) and wrapped[0].runs_on_rejected
    cfg.annotate.attributes.on_rejected = False
    assert not isinstance(build_annotators(cfg, tuple(s for s in STAGES if s.name == "attributes"), tmp_path)[0],
                          RejectedPreview)


@pytest.mark.slow
def test_a_toy_annotator_added_with_one_line_builds_a_store_with_its_field(tmp_path):
    import ray

    from mentor.store import Store, verify_store
    from mentor.testmedia import make_talking_clip
    from pipelines.curation import build

    # Ray's workers cannot import a test module by name: send this one by value (a
    # plug-in's own package would be imported by name, as annotate/ is)
    ray.cloudpickle.register_pickle_by_value(sys.modules[Brightness.__module__])
    folder = tmp_path / "src"
    folder.mkdir()
    make_talking_clip(folder / "talk.mp4", seconds=4.0, seed=5)
    try:
        summary = build(_cfg(folder, ALL_OFF), out=tmp_path / "store", progress=False, stage_list=with_stage(TOY))
    finally:
        ray.shutdown()
    assert summary.clips_kept >= 1, summary.render()
    store = Store(tmp_path / "store")
    assert "score.toy.mean_brightness" in store.clips().columns
    for rec in store.records():
        assert rec.status["toy"] == "done"
        b = rec.arrays["toy.brightness"]
        assert abs(len(b.data) - round(rec.duration * rec.fps)) <= 1 and b.fps == rec.fps
        assert 0 < rec.scores["toy.mean_brightness"] < 255
        assert abs(float(b.data.mean()) - rec.scores["toy.mean_brightness"]) < 1e-2
    assert verify_store(tmp_path / "store") == []


def test_validate_config_checks_the_graph(tmp_path, capsys):
    from mentor.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"sources:\n  - {{name: a, kind: folder, path: {tmp_path}}}\nannotate:\n  landmarks: {{enabled: false}}\n")
    assert main(["validate-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "stage 'smplx' reads array 'landmarks." in err and "(annotate.landmarks)" in err
    good = tmp_path / "good.yaml"
    good.write_text(bad.read_text() + "  smplx: {enabled: false}\n")
    assert main(["validate-config", str(good)]) == 0
    stages = capsys.readouterr().out.split("stages: ")[1].rstrip(")\n").split(", ")
    assert stages[:2] == ["filter", "encode"] and {"vad", "sync", "sync_shift"} <= set(stages)
    assert "landmarks" not in stages and "smplx" not in stages


def test_weights_paths_are_declared_by_their_sections_not_a_table(tmp_path):
    from mentor.config import weight_fields

    cfg = _cfg(tmp_path)
    declared = {s: weight_fields(type(getattr(cfg.annotate, s))) for s in type(cfg.annotate).model_fields}
    assert declared["smplx"] == ["model_dir", "pose_prior"] and declared["asr"] == ["whisper_model"]
    assert declared["attributes"] == ["age_gender_model", "face_recognition_model"]
    for section, keys in declared.items():  # each one resolves against the config's folder
        for key in keys:
            setattr(getattr(cfg.annotate, section), key, f"w/{section}.{key}")
    r = cfg.with_resolved_paths()
    for section, keys in declared.items():
        for key in keys:
            assert getattr(getattr(r.annotate, section), key) == str(tmp_path / "w" / f"{section}.{key}")
