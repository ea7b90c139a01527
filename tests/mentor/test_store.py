"""The shard store: record -> shard -> three readers -> the same record and arrays;
atomic commits, resume after a kill, verify, set_columns, superseding parts."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mentor.record import Attribute, ClipRecord, CropBox, SourceRecord
from mentor.store import Store, StoreError, StoreWriter, store_info, verify_store


@pytest.fixture(scope="module")
def tiny_media(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tiny")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-t", "1",
         "-pix_fmt", "yuv420p", str(d / "a.mp4"), "-f", "lavfi", "-i", "sine=f=440", "-t", "1",
         "-ar", "16000", "-ac", "1", str(d / "a.flac")], check=True)
    return d / "a.mp4", d / "a.flac"


def make_record(src: SourceRecord, i: int, media: tuple[Path, Path] | None, rng: np.random.Generator) -> ClipRecord:
    rec = ClipRecord.for_span(src, 10.0 * i, 10.0 * i + 3 + i)
    rec.fps, rec.width, rec.height = 25.0, 64, 64
    rec.crop = CropBox(x=1, y=2, size=60)
    rec.identity = f"person{i % 2}"
    rec.set_score("filter.face_size_px", float(100 + i))
    rec.set_score("vad.speech_fraction", np.float32(0.5 + i / 100))
    rec.attributes["skin_tone_group"] = Attribute(value="medium", confidence=0.9, method="ita")
    rec.annotations["asr"] = {"text": f"hello number {i}", "language": "en"}
    rec.add_array("landmarks.face", rng.random((25, 478, 3)).astype(np.float32), fps=25.0)
    rec.add_array("smplx.body_pose", rng.random((25, 63)), fps=25.0, start=0.04)
    rec.mark("landmarks")
    if media:
        rec.files = {"video": str(media[0]), "audio": str(media[1])}
    return rec


@pytest.fixture()
def store_with_clips(tmp_path, tiny_media):
    rng = np.random.default_rng(0)
    src = SourceRecord.from_uri("file:///videos/a.mp4", dataset="demo", license="CC-BY")
    recs = [make_record(src, i, tiny_media, rng) for i in range(5)]
    bad = make_record(src, 9, tiny_media, rng)
    bad.reject("filter", "face_small", "40 px < 64 px", value=40, threshold=64)
    with StoreWriter(tmp_path / "store", shard_bytes=60_000) as w:  # ~2 clips per shard
        for r in recs + [bad]:
            w.add(r)
        w.add_source(src, "ok", clips=6)
    return tmp_path / "store", recs, bad


def test_index_holds_kept_and_rejected_with_reasons(store_with_clips):
    root, recs, bad = store_with_clips
    store = Store(root)
    clips = store.clips()
    assert sorted(clips["clip_id"]) == sorted(r.id for r in recs)
    assert clips["shard"].nunique() >= 2, "shard_bytes should have rolled over to new shards"
    assert {"score.filter.face_size_px", "score.vad.speech_fraction", "attr.skin_tone_group", "duration"} <= set(clips.columns)
    rej = store.rejected()
    assert rej["clip_id"].tolist() == [bad.id]
    assert rej["rejected"].iloc[0] == "filter: face_small: 40 px < 64 px"
    assert rej[["reject_stage", "reject_code", "reject_value", "reject_threshold"]].iloc[0].tolist() == [
        "filter", "face_small", 40.0, 64.0]
    assert store.clips("duration >= 6")["clip_id"].tolist() == [recs[3].id, recs[4].id]
    assert verify_store(root) == []
    info = store_info(root)
    assert info["clips"] == 5 and info["rejected_by_reason"] == {"filter: face_small": 1}


def _same(a: ClipRecord, b: ClipRecord) -> None:
    assert a.model_dump() == b.model_dump()
    assert set(a.arrays) == set(b.arrays)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k].data, b.arrays[k].data)
        assert a.arrays[k].fps == b.arrays[k].fps and a.arrays[k].start == b.arrays[k].start


def test_round_trip_store_reader(store_with_clips, tmp_path):
    root, recs, _ = store_with_clips
    got = {r.id: r for r in Store(root).records(media_dir=tmp_path / "m")}
    for r in recs:
        back = got[r.id]
        r.to_json()  # fills array_meta as the writer did
        _same(r, back)
        assert Path(back.files["video"]).read_bytes() == Path(r.files["video"]).read_bytes()


def test_round_trip_torch_dataset(store_with_clips):
    import torch

    root, recs, _ = store_with_clips
    by_id = {r.id: r for r in recs}
    seen = {}
    for s in Store(root).dataset("split != 'test'", shuffle=4):
        assert s["video"].dtype == torch.uint8 and s["video"].shape == (25, 64, 64, 3)
        assert s["audio"].dtype == torch.float32 and s["sample_rate"] == 16000
        assert s["txt"].startswith("hello number")
        np.testing.assert_array_equal(s["arrays"]["smplx.body_pose"], by_id[s["__key__"]].arrays["smplx.body_pose"].data)
        seen[s["__key__"]] = s
    assert set(seen) == set(by_id)


def test_filter_opens_only_matching_shards(store_with_clips):
    root, recs, _ = store_with_clips
    store = Store(root)
    urls = store.shard_urls(f"clip_id == '{recs[0].id}'")
    assert len(urls) == 1
    keys = [s["__key__"] for s in store.dataset(f"clip_id == '{recs[0].id}'", decode_video=False)]
    assert keys == [recs[0].id]
    with pytest.raises(ValueError, match="bad filter"):
        store.clips("no_such_column > 3")


def test_plain_webdataset_reads_shards(store_with_clips):
    import webdataset as wds

    root, recs, _ = store_with_clips
    samples = list(wds.WebDataset(Store(root).shard_urls(), shardshuffle=False, empty_check=False))
    assert sorted(s["__key__"] for s in samples) == sorted(r.id for r in recs)
    s = samples[0]
    assert {"mp4", "flac", "json", "npz", "txt"} <= set(s)
    back = ClipRecord.from_json(s["json"], s["npz"])
    assert back.id == s["__key__"] and back.arrays["landmarks.face"].data.shape == (25, 478, 3)


def test_huggingface_datasets_reads_shards(store_with_clips):
    import datasets

    root, recs, _ = store_with_clips
    ds = datasets.load_dataset("webdataset", data_files={"train": Store(root).shard_urls()}, split="train")
    assert sorted(ds["__key__"]) == sorted(r.id for r in recs)
    row = ds[0]
    assert row["json"]["id"] == row["__key__"]
    assert np.asarray(row["npz"]["smplx.body_pose"]).shape == (25, 63)


@pytest.mark.slow
def test_ray_data_reads_shards(store_with_clips):
    import ray

    root, recs, _ = store_with_clips
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        rows = ray.data.read_webdataset(Store(root).shard_urls(), decoder=None).take_all()
    finally:
        if started:
            ray.shutdown()
    assert sorted(r["__key__"] for r in rows) == sorted(r.id for r in recs)
    back = ClipRecord.from_json(rows[0]["json"], rows[0]["npz"])
    assert back.id == rows[0]["__key__"]


def test_killed_part_is_removed_and_resume_adds_each_clip_once(tmp_path, tiny_media):
    rng = np.random.default_rng(1)
    src = SourceRecord.from_uri("/v.mp4")
    recs = [make_record(src, i, tiny_media, rng) for i in range(4)]
    w = StoreWriter(tmp_path / "s", shard_bytes=10**9)
    w.add(recs[0])
    w.commit()
    w.add(recs[1])  # never committed: the process "dies" here
    w._tar.close()
    w._lock.release()  # the process is gone, and with it its flock
    assert list((tmp_path / "s" / "shards").glob("*.tmp")), "the open shard has a temporary name"
    assert [r.clip_id for r in Store(tmp_path / "s").clips().itertuples()] == [recs[0].id]
    with StoreWriter(tmp_path / "s") as w2:  # resume
        for r in recs[1:]:
            w2.add(r)
    store = Store(tmp_path / "s")
    assert sorted(store.clips()["clip_id"]) == sorted(r.id for r in recs)
    assert verify_store(tmp_path / "s") == []


def test_verify_finds_corruption_and_leftovers(store_with_clips):
    root, recs, _ = store_with_clips
    shard = sorted((root / "shards").glob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF  # flip one byte inside the first member
    shard.write_bytes(bytes(data))
    (root / "shards" / "shard-000099.tar").write_bytes(b"junk")
    problems = verify_store(root)
    assert any("sha256" in p and shard.name in p for p in problems)
    assert any("shard-000099.tar" in p and "uncommitted" in p for p in problems)


def test_verify_finds_missing_clip(store_with_clips, tmp_path):
    root, recs, _ = store_with_clips
    shard = sorted((root / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf if m.isfile()]
    first_key = members[0][0].name.split(".")[0]
    with tarfile.open(shard, "w") as tf:  # rewrite without the first clip
        for m, data in members:
            if not m.name.startswith(first_key):
                import io
                tf.addfile(m, io.BytesIO(data))
    problems = verify_store(root, checksums=False)
    assert any(first_key in p and "not in the shard" in p for p in problems), problems


def test_set_columns_changes_index_not_shards(store_with_clips):
    root, recs, _ = store_with_clips
    store = Store(root)
    before = {p: p.read_bytes() for p in (root / "shards").glob("*.tar")}
    store.set_columns(store.clips()[["clip_id"]].assign(split=["train", "train", "val", "test", "train"]))
    assert Store(root).clips().sort_values("start")["split"].tolist() == ["train", "train", "val", "test", "train"]
    assert {p: p.read_bytes() for p in (root / "shards").glob("*.tar")} == before
    assert verify_store(root) == []


def test_superseding_part_replaces_the_old_one(store_with_clips):
    root, recs, bad = store_with_clips
    store = Store(root)
    first = min(store.parts())
    ids = store.clips().query(f"part == {first}")["clip_id"].tolist()
    with StoreWriter(root, shard_bytes=1 << 40) as w:
        for rec in Store(root).records(ids, media_dir=root / "_w"):
            rec.set_score("vad.speech_fraction", 0.99)
            w.add(rec)
        w.supersede(first)
    clips = Store(root).clips()
    assert len(clips) == len(recs) and clips["clip_id"].is_unique
    assert (clips.set_index("clip_id").loc[ids, "score.vad.speech_fraction"] == 0.99).all()
    assert verify_store(root) == []


def test_not_a_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not a mentor store"):
        Store(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(StoreError, match="not empty"):
        StoreWriter(tmp_path)
    meta = json.loads(json.dumps({"format": "other"}))
    (tmp_path / "store.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="format"):
        Store(tmp_path)


def test_one_writer_at_a_time(tmp_path):
    from mentor.store.lock import StoreLocked

    w = StoreWriter(tmp_path / "s")
    with pytest.raises(StoreLocked, match=r"another build is writing this store \(pid \d+ on host "):
        StoreWriter(tmp_path / "s")
    w.close()
    StoreWriter(tmp_path / "s").close()  # released on close


def test_index_rows_must_name_store_files():
    import pandas as pd

    from mentor.store.layout import index_problems

    row = {"clip_id": "a", "source_id": "s", "members": "{}", "duration": 1.0, "start": 0.0, "end": 1.0}
    good = pd.DataFrame([row | {"shard": "shards/shard-000001.tar", "key": "abc_1-2"}])
    assert index_problems(good, "clips", "p") == []
    for shard, key in [("../x/shard-000001.tar", "abc"), ("/abs/shard-000001.tar", "abc"),
                       ("shards/shard-000001.tar", "/etc/passwd"), ("shards/shard-000001.tar", "a.b"),
                       ("shards/shard-000001.tar", "../../x")]:
        assert index_problems(pd.DataFrame([row | {"shard": shard, "key": key}]), "clips", "p")
    typed = good.assign(duration="1.0")
    assert "column 'duration'" in index_problems(typed, "clips", "p")[0]
    assert "column 'key' is missing" in index_problems(good.drop(columns="key"), "clips", "p")[0]


def test_verify_counts_rows_against_the_commit(store_with_clips):
    import pyarrow.parquet as pq

    root, recs, _ = store_with_clips
    p = next((root / "index" / "rejected").glob("*.parquet"))
    table = pq.read_table(p)
    pq.write_table(table.slice(0, 0), p)  # the rejected clip's row deleted
    assert any("0 rows, commit says 1" in line for line in verify_store(root, checksums=False))
