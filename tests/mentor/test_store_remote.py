"""Stores on object storage: the same store written to a local S3 server (moto, on
127.0.0.1) and to a folder reads back the same (index, members, records, the torch
stream, training windows), `mentor verify` (and --deep) is clean on both, a part whose
upload was cut off is ignored and redone, the lease lock keeps one writer, and an
unreachable endpoint or a missing bucket is one line with the fix."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mentor.record import Attribute, ClipRecord, CropBox, SourceRecord
from mentor.store import Store, StoreError, StoreWriter, store_info, verify_store
from mentor.store.fs import StoreFS, StoreURL

BUCKET = "mentor-test"


@pytest.fixture(scope="module")
def s3(moto_s3):
    """A moto S3 server on 127.0.0.1, credentials and endpoint in the environment as a user
    would set them; yields the endpoint URL."""
    with moto_s3(BUCKET, {"MENTOR_STORAGE_OPTIONS": json.dumps({"endpoint_url": "{endpoint}"}),
                          "MENTOR_WORK_DIR": ""}) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def tiny_media(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tiny-remote")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-t", "2",
         "-pix_fmt", "yuv420p", str(d / "a.mp4"), "-f", "lavfi", "-i", "sine=f=440", "-t", "2",
         "-ar", "16000", "-ac", "1", str(d / "a.flac")], check=True)
    return d / "a.mp4", d / "a.flac"


def records(media: tuple[Path, Path], n: int = 4, seed: int = 0) -> tuple[SourceRecord, list[ClipRecord]]:
    rng = np.random.default_rng(seed)
    src = SourceRecord.from_uri(f"file:///videos/s{seed}.mp4", dataset="demo", license="CC-BY")
    out = []
    for i in range(n):
        rec = ClipRecord.for_span(src, 10.0 * i, 10.0 * i + 2)
        rec.fps, rec.width, rec.height = 25.0, 64, 64
        rec.crop = CropBox(x=1, y=2, size=60)
        rec.identity = f"person{i % 2}"
        rec.set_score("vad.speech_fraction", 0.5 + i / 100)
        rec.attributes["skin_tone_group"] = Attribute(value="medium", confidence=0.9, method="ita")
        rec.annotations["asr"] = {"text": f"hello number {i}", "language": "en"}
        rec.add_array("smplx.body_pose", rng.random((50, 63)).astype(np.float32), fps=25.0)
        rec.add_array("audio.logmel", rng.random((100, 8)).astype(np.float32), fps=50.0)
        rec.files = {"video": str(media[0]), "audio": str(media[1])}
        out.append(rec)
    out[-1].files = {}
    out[-1].reject("filter", "face_small", "40 px < 64 px", value=40, threshold=64)
    return src, out


def write(root, src, recs, **kw) -> None:
    with StoreWriter(root, shard_bytes=40_000, **kw) as w:  # about one clip per shard
        for r in recs:
            w.add(r)
        w.add_source(src, "ok", clips=len(recs))


def members(fs: StoreFS, shard: str) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(fs.read_bytes(shard))) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf if m.isfile()]


def index(store: Store) -> dict[str, pd.DataFrame]:
    return {"clips": store.clips().sort_values("clip_id", ignore_index=True),
            "rejected": store.rejected().sort_values("clip_id", ignore_index=True),
            "sources": store.sources().drop(columns=["time"]).reset_index(drop=True)}


def test_store_on_s3_equals_the_same_store_on_disk(s3, tiny_media, tmp_path, capsys):
    from mentor.cli import main

    src, recs = records(tiny_media)
    local, url = tmp_path / "store", f"s3://{BUCKET}/same/store"
    write(local, src, recs)
    write(url, src, recs)
    on_disk, remote = Store(local), Store(url)
    assert isinstance(remote.root, StoreURL) and remote.root == url
    assert sorted(remote.parts()) == sorted(on_disk.parts()) and len(remote.parts()) >= 3
    for table, df in index(on_disk).items():  # the index, row for row
        pd.testing.assert_frame_equal(index(remote)[table], df, check_like=True)
    shards = sorted(on_disk.clips()["shard"].unique())
    assert len(shards) == 3
    for shard in shards:  # every member of every shard, byte for byte
        assert members(remote.fs, shard) == members(on_disk.fs, shard)
    for n, marker in on_disk.parts().items():  # the same files committed, with the same sizes and rows
        theirs = remote.parts()[n]["files"]
        assert theirs.keys() == marker["files"].keys()
        assert {k: v.get("bytes", v.get("rows")) for k, v in theirs.items()} == \
            {k: v.get("bytes", v.get("rows")) for k, v in marker["files"].items()}
    assert [r.to_json() for r in remote.records()] == [r.to_json() for r in on_disk.records()]
    a = {s["__key__"]: s for s in remote.dataset()}  # the torch stream, opened through s3fs
    b = {s["__key__"]: s for s in on_disk.dataset()}
    assert a.keys() == b.keys() and len(a) == 3
    for k in a:
        assert np.array_equal(a[k]["video"].numpy(), b[k]["video"].numpy())
        assert np.array_equal(a[k]["audio"].numpy(), b[k]["audio"].numpy())
    assert verify_store(local, deep=True) == [] and verify_store(url, deep=True) == []
    assert store_info(url) | {"store": ""} == store_info(local) | {"store": ""}
    for root in (str(local), url):  # the command line on both
        assert main(["verify", root]) == 0
        assert capsys.readouterr().out.strip().endswith(f"{root}: OK")
    assert main(["info", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 3
    for root in (str(local), url):  # index columns rewritten in place (`mentor split`)
        assert main(["split", root]) == 0
    capsys.readouterr()
    pd.testing.assert_frame_equal(index(Store(url))["clips"], index(Store(local))["clips"], check_like=True)
    assert Store(url).clips()["split"].notna().all() and verify_store(url) == []
    as_file = Store(f"file://{local}")  # a file:// URL is the local folder itself
    assert isinstance(as_file.root, Path) and as_file.root == local
    # a damaged object is found on object storage as on disk
    data = bytearray(remote.fs.read_bytes(shards[0]))
    data[len(data) // 2] ^= 0xFF
    remote.fs.write_bytes(shards[0], bytes(data))
    assert any("sha256 differs" in p for p in verify_store(url))


def test_upload_cut_off_leaves_no_committed_part_and_is_redone(s3, tiny_media, tmp_path, monkeypatch):
    """A writer killed between its uploads: with the shard up but not its index, the
    part is not intact, is never read, and its clips are redone; with everything up but
    the marker, the part is intact and re-adopted. Either way each clip is there once."""
    src, recs = records(tiny_media, n=5, seed=1)
    local, url = tmp_path / "store", f"s3://{BUCKET}/cut/store"
    write(local, src, recs)
    fs = StoreFS(url)

    def kill_at(prefix):
        real = StoreFS.write_bytes

        def write_bytes(self, rel, data):
            if rel.startswith(prefix):
                raise KeyboardInterrupt(f"killed before {rel}")  # not an error the writer cleans up
            return real(self, rel, data)
        return write_bytes

    w = StoreWriter(url, shard_bytes=1 << 30)
    w.add(recs[0])
    w.commit()  # part 0 whole
    for r in recs[1:3]:
        w.add(r)
    monkeypatch.setattr(StoreFS, "write_bytes", kill_at("index/clips/part-000001"))
    with pytest.raises(KeyboardInterrupt):
        w.commit()
    monkeypatch.undo()
    w._lock.release()  # as a killed process's lease would run out
    assert fs.exists("shards/shard-000001.tar") and not fs.exists("commits/part-000001.json")
    assert list(Store(url).clips()["clip_id"]) == [recs[0].id]  # readers trust only committed parts
    assert any("uncommitted leftover" in p for p in verify_store(url))
    with StoreWriter(url) as w2:  # not intact (no index rows): removed, its source re-opened
        assert not fs.exists("shards/shard-000001.tar")
    assert Store(url).sources()["status"].tolist() == ["failed"]  # the next build redoes them
    assert verify_store(url) == []

    w = StoreWriter(url, shard_bytes=1 << 30)
    for r in recs[1:3]:
        w.add(r)
    monkeypatch.setattr(StoreFS, "write_bytes", kill_at("commits/"))
    with pytest.raises(KeyboardInterrupt):
        w.commit()
    monkeypatch.undo()
    w._lock.release()
    assert set(Store(url).clips()["clip_id"]) == {recs[0].id}
    with StoreWriter(url) as w2:  # intact: re-adopted, not redone
        for r in recs[3:]:
            w2.add(r)
        w2.add_source(src, "ok", clips=len(recs))
        staging = w2.fs.tmp_for("shards/shard-000009.tar").parent
        assert staging.is_dir() and any(staging.iterdir())  # the shard is built locally, then put
    assert not staging.exists()  # and the local staging folder goes with the writer
    ids = Store(url).clips()["clip_id"].tolist() + Store(url).rejected()["clip_id"].tolist()
    assert sorted(ids) == sorted(r.id for r in recs)  # each clip exactly once
    assert verify_store(url) == []
    pd.testing.assert_frame_equal(index(Store(url))["clips"].drop(columns=["shard", "part"]),
                                  index(Store(local))["clips"].drop(columns=["shard", "part"]), check_like=True)


def test_training_windows_read_from_s3(s3, tiny_media, tmp_path):
    from mentor.store.windows import WindowDataset

    src, recs = records(tiny_media, seed=2)
    local, url = tmp_path / "store", f"s3://{BUCKET}/windows/store"
    write(local, src, recs)
    write(url, src, recs)
    kw = dict(frames=16, mode="sequential", arrays=("smplx.*", "audio.logmel"), reference=True,
              min_reference_gap_s=0.5)
    remote = WindowDataset(url, **kw)
    theirs = list(pickle.loads(pickle.dumps(remote)))  # as a DataLoader or Ray worker gets it
    ours = list(WindowDataset(local, **kw))
    assert len(theirs) == len(ours) == 3 * 4  # 3 kept clips of 50 frames, 16-frame windows
    for a, b in zip(theirs, ours):
        assert (a["clip_id"], a["start"]) == (b["clip_id"], b["start"])
        for k in ("video", "audio", "valid"):
            assert np.array_equal(a[k].numpy(), b[k].numpy()), k
        for k in b["arrays"]:
            assert np.array_equal(a["arrays"][k].numpy(), b["arrays"][k].numpy(), equal_nan=True), k
        assert np.array_equal(a["reference"]["video"].numpy(), b["reference"]["video"].numpy())


def test_lease_lock_keeps_one_writer(s3, tmp_path):
    from mentor.store.lock import LeaseLock, StoreLocked

    url = f"s3://{BUCKET}/lock/store"
    fs = StoreFS(url)
    first = StoreWriter(url)
    with pytest.raises(StoreLocked, match=f"pid {os.getpid()} on host"):
        StoreWriter(url)
    first.close()
    assert not fs.exists("lock")
    StoreWriter(url).close()  # released: the next one gets it

    # a killed holder (same host, pid gone) is taken over at once
    code = ("import sys, time; from mentor.store.fs import StoreFS; from mentor.store.lock import LeaseLock; "
            "LeaseLock(StoreFS(sys.argv[1]), lease_s=600).acquire(); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(StoreLocked, match=f"pid {proc.pid}"):
            LeaseLock(fs).acquire()
    finally:
        proc.kill()
        proc.wait()
    LeaseLock(fs).acquire().release()

    # another host's lock: refused while its lease runs, taken over once it has run out
    other = {"host": "elsewhere", "pid": 1, "since": time.time(), "renewed": time.time(), "lease_s": 600, "token": "x"}
    fs.write_bytes("lock", json.dumps(other).encode())
    with pytest.raises(StoreLocked, match="host elsewhere"):
        LeaseLock(fs).acquire()
    fs.write_bytes("lock", json.dumps(other | {"renewed": time.time() - 601}).encode())
    w = StoreWriter(url, lease_s=0.4)
    # ...and a writer whose lease another one took over stops committing
    fs.write_bytes("lock", json.dumps(other).encode())
    deadline = time.time() + 20
    while w._lock.held and time.time() < deadline:
        time.sleep(0.1)
    w.add_source(SourceRecord.from_uri("file:///videos/x.mp4", dataset="demo", license="CC-BY"), "ok")
    with pytest.raises(StoreError, match="lost the store's lock"):
        w.commit()
    w.close()
    assert json.loads(fs.read_bytes("lock"))["host"] == "elsewhere"  # the new holder's lock is left alone
    fs.remove("lock")


def test_unreachable_endpoint_and_missing_bucket_are_one_line(s3, tmp_path, capsys, monkeypatch):
    from mentor.cli import main

    assert main(["info", f"s3://no-such-bucket-{os.getpid()}/store"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0] and "create it" in err[0], err
    assert main(["verify", f"s3://{BUCKET}/nothing-here"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a mentor store" in err[0], err
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("MENTOR_STORAGE_OPTIONS", json.dumps({"endpoint_url": dead}))
    t0 = time.perf_counter()
    assert main(["info", f"s3://{BUCKET}/store"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the object store at " + dead in err[0], err
    with pytest.raises(StoreError, match="cannot reach the object store"):
        StoreWriter(f"s3://{BUCKET}/store")
    assert time.perf_counter() - t0 < 60
    monkeypatch.setenv("MENTOR_STORAGE_OPTIONS", "{not json")
    with pytest.raises(StoreError, match="MENTOR_STORAGE_OPTIONS is not JSON"):
        Store(f"s3://{BUCKET}/store")


def test_given_storage_options_win_over_the_environment(s3, tmp_path, monkeypatch):
    from mentor.config import load_config

    url = f"s3://{BUCKET}/options/store"
    monkeypatch.setenv("MENTOR_STORAGE_OPTIONS", json.dumps({"endpoint_url": "http://127.0.0.1:9"}))
    StoreWriter(url, storage_options={"endpoint_url": s3}).close()
    assert Store(url, storage_options={"endpoint_url": s3}).clips().empty
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text(f"sources:\n  - {{name: local, kind: folder, path: {tmp_path}}}\nstore: {{storage_options: {{endpoint_url: '{s3}'}}}}\n")
    assert load_config(cfg).store.storage_options == {"endpoint_url": s3}
    from mentor.store.fs import local_work_root  # a build's local work folder stays under its base

    monkeypatch.setenv("MENTOR_WORK_DIR", str(tmp_path / "work"))
    assert local_work_root("s3://b/../../x") == (tmp_path / "work" / "s3" / "b" / "x").resolve()


@pytest.mark.slow
def test_build_into_s3_then_resume(s3, tmp_path, monkeypatch):
    """`mentor build --out s3://...`: the curation graph writes the store to object
    storage (its working files in a local folder), verify is clean, and a second run
    finds every source done."""
    import ray

    from annotate.registry import all_off_yaml
    from mentor.cli import main
    from mentor.testmedia import make_talking_clip

    folder = tmp_path / "media"
    folder.mkdir()
    make_talking_clip(folder / "talk.mp4", seconds=4.0, size=256)
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text(f"sources:\n  - {{name: local, kind: folder, path: {folder}}}\noutput: {tmp_path / 'unused'}\n"
                   f"store: {{storage_options: {{endpoint_url: '{s3}'}}}}\n"  # the config's options win over the env's
                   "ray: {filter_actors: 1, num_cpus: 2}\n" + all_off_yaml("annotate"))
    monkeypatch.setenv("MENTOR_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("MENTOR_STORAGE_OPTIONS", json.dumps({"endpoint_url": "http://127.0.0.1:9"}))
    url = f"s3://{BUCKET}/build/store"
    try:
        assert main(["build", str(cfg), "--out", url, "--quiet"]) == 0
        monkeypatch.setenv("MENTOR_STORAGE_OPTIONS", json.dumps({"endpoint_url": s3}))
        store = Store(url)
        assert store.sources()["status"].tolist() == ["ok"]
        assert len(store.clips()) + len(store.rejected()) >= 1
        assert verify_store(url) == []
        assert (tmp_path / "work" / "s3" / BUCKET / "build" / "store").is_dir()  # logs, cache: local
        assert not (tmp_path / "unused").exists()
        parts = store.parts()
        monkeypatch.setenv("MENTOR_STORAGE_OPTIONS", json.dumps({"endpoint_url": "http://127.0.0.1:9"}))
        assert main(["build", str(cfg), "--out", url, "--quiet"]) == 0
        monkeypatch.setenv("MENTOR_STORAGE_OPTIONS", json.dumps({"endpoint_url": s3}))
        assert Store(url).parts() == parts  # nothing to do: nothing new committed
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_window_loader_worker_reads_s3(s3, tiny_media, tmp_path):
    """A spawned DataLoader worker (a fresh process: the endpoint reaches it through the
    environment) reads the same windows from the server as the parent reads from disk."""
    from mentor.store.windows import WindowDataset, window_loader

    src, recs = records(tiny_media, seed=3)
    local, url = tmp_path / "store", f"s3://{BUCKET}/loader/store"
    write(local, src, recs)
    write(url, src, recs)
    kw = dict(frames=16, mode="sequential", arrays=("smplx.*",))
    loader = window_loader(url, batch_size=4, num_workers=1, persistent_workers=False, **kw)
    batches = list(loader)
    ours = list(WindowDataset(local, **kw))
    assert sum(len(b["clip_id"]) for b in batches) == len(ours) == 12
    got = np.concatenate([b["video"].numpy() for b in batches])
    assert np.array_equal(got, np.stack([w["video"].numpy() for w in ours]))
    assert np.array_equal(np.concatenate([b["audio"].numpy() for b in batches]),
                          np.stack([w["audio"].numpy() for w in ours]))
