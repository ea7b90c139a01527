"""`mentor annotate STORE`: the clip annotators run again on a finished store, from the
shards' own media (no re-encoding), and each part is replaced whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate.registry import all_off_yaml
from mentor.config import parse_config
from mentor.store import Store, verify_store

pytestmark = pytest.mark.slow

def _cfg(folder: Path, name: str, vad: bool):
    text = f"""
sources:
  - {{name: r, kind: folder, path: {folder}}}
store: {{shard_bytes: 1000}}
ray: {{filter_actors: 1}}
""" + all_off_yaml("annotate")
    cfg = parse_config(text, name, str(folder.parent))
    cfg.annotate.vad.enabled = vad
    return cfg


def test_annotate_store_adds_fields_without_reencoding(tmp_path):
    import ray

    from mentor.testmedia import make_talking_clip
    from pipelines.curation import build
    from pipelines.reannotate import annotate_store

    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(2):
        make_talking_clip(folder / f"t{i}.mp4", seconds=4.0, seed=20 + i)
    out = tmp_path / "store"
    try:
        build(_cfg(folder, "a.yaml", vad=False), out=out, progress=False)
        before = Store(out).clips()
        assert len(before) == 2 and "score.vad.speech_fraction" not in before.columns
        videos = {r.id: Path(r.files["video"]).read_bytes() for r in Store(out).records(media_dir=tmp_path / "m1")}
        summary = annotate_store(out, _cfg(folder, "b.yaml", vad=True))
    finally:
        ray.shutdown()
    after = Store(out).clips()
    assert sorted(after["clip_id"]) == sorted(before["clip_id"]) and summary.clips_kept == 2
    assert (after["score.vad.speech_fraction"] > 0.3).all()
    for rec in Store(out).records(media_dir=tmp_path / "m2"):
        assert rec.status["vad"] == "done" and rec.annotations["vad"]["segments"]
        assert Path(rec.files["video"]).read_bytes() == videos[rec.id], "video must be carried, not re-encoded"
    assert Store(out).sources()["status"].tolist() == ["ok", "ok"]
    assert verify_store(out) == []
