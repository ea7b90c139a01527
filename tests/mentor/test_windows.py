"""Training windows against the clips' own members: the same span of the same clip in the
video frames, the audio samples and every array, for sequential and random windows; split
and identity from the index; the reference frame's gap; workers; seeds."""

from __future__ import annotations

import shutil
import tarfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from mentor.record import ClipRecord
from mentor.store import Store, decode
from mentor.store.windows import WindowDataset, collate_windows, resample, window_loader

ARRAYS = ("smplx.*", "audio.logmel", "synthetic.speech_rms")


@pytest.fixture(scope="module")
def clips(synthetic_store) -> dict[str, dict]:
    """Each clip read on its own, straight from its shard's tar: whole decoded video and
    audio, and the record with its arrays."""
    store = Store(synthetic_store)
    out = {}
    for row in store.clips().itertuples():
        with tarfile.open(synthetic_store / row.shard) as tf:
            members = {m.name.split(".", 1)[1]: tf.extractfile(m).read() for m in tf if m.name.startswith(row.key + ".")}
        samples, sr = decode.audio(members["flac"])
        out[row.clip_id] = {"video": decode.video(members["mp4"]), "audio": samples, "sample_rate": sr,
                            "record": ClipRecord.from_json(members["json"], members["npz"]), "row": row}
    return out


def check_window(s: dict, clip: dict, frames: int) -> None:
    """The window's video, audio and arrays are frames [start, start + frames) of the clip."""
    start, fps = s["start"], s["fps"]
    video = clip["video"]
    n = len(video)
    valid = s["valid"].numpy()
    assert valid.tolist() == [start + k < n for k in range(frames)]
    got = s["video"].numpy()
    assert got.shape == (frames,) + video.shape[1:] and got.dtype == np.uint8
    np.testing.assert_array_equal(got[valid], video[start:start + frames])
    assert not got[~valid].any(), "frames past the clip's end are black"
    sr = s["sample_rate"]
    assert sr == clip["sample_rate"] == 16000
    per_frame = sr / fps
    assert len(s["audio"]) == int(round(frames * per_frame))
    a0 = int(round(start * per_frame))
    want = clip["audio"][a0:a0 + len(s["audio"])]
    np.testing.assert_array_equal(s["audio"].numpy()[:len(want)], want)
    assert not s["audio"].numpy()[len(want):].any()
    rec = clip["record"]
    assert set(s["arrays"]) == {k for k in rec.arrays if k.startswith("smplx.")} | {"audio.logmel", "synthetic.speech_rms"}
    for name, arr in s["arrays"].items():
        a = rec.arrays[name]
        got = arr.numpy()
        assert got.shape[0] == frames and got.dtype == np.float32
        if a.fps == fps and a.start == 0:  # same rate: the rows themselves
            np.testing.assert_array_equal(got[valid], a.data[start:start + frames].astype(np.float32))
            assert np.isnan(got[~valid]).all()
        else:  # another rate and start: linear interpolation at the frame times
            times = (start + np.arange(frames)) / fps
            ref = np.interp(times, a.times, a.data.astype(np.float64), left=np.nan, right=np.nan)
            ok = np.isfinite(ref)
            assert ok.sum() >= valid.sum() - 1
            np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-5, atol=1e-6)


def test_sequential_windows_cover_each_clip_once(synthetic_store, clips):
    frames = 16
    ds = WindowDataset(synthetic_store, frames=frames, mode="sequential", arrays=ARRAYS)
    seen: dict[str, list[int]] = {}
    for s in ds:
        clip = clips[s["clip_id"]]
        check_window(s, clip, frames)
        seen.setdefault(s["clip_id"], []).append(s["start"])
    assert set(seen) == set(clips)
    for cid, starts in seen.items():
        n = len(clips[cid]["video"])
        assert starts == list(range(0, n, frames)), "sequential windows tile the clip from frame 0"
    assert len(ds) == sum(len(v) for v in seen.values())


def test_random_windows_match_clip_members_and_repeat_with_seed(synthetic_store, clips):
    frames = 20
    kw = dict(where="split == 'train'", frames=frames, mode="random", arrays=ARRAYS, windows_per_clip=3)
    a = list(WindowDataset(synthetic_store, seed=7, **kw))
    train = {cid for cid, c in clips.items() if c["row"].split == "train"}
    assert {s["clip_id"] for s in a} == train and len(a) == 3 * len(train)
    for s in a:
        n = len(clips[s["clip_id"]]["video"])
        assert 0 <= s["start"] <= n - frames and s["valid"].all()
        check_window(s, clips[s["clip_id"]], frames)
    b = list(WindowDataset(synthetic_store, seed=7, **kw))
    assert [(s["clip_id"], s["start"]) for s in a] == [(s["clip_id"], s["start"]) for s in b]
    for x, y in zip(a, b):
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["audio"], y["audio"])
    other = WindowDataset(synthetic_store, seed=8, **kw)
    again = WindowDataset(synthetic_store, seed=7, **kw)
    again.set_epoch(1)
    plan = [(w.clip_id, w.start) for w in WindowDataset(synthetic_store, seed=7, **kw).plan()]
    assert [(w.clip_id, w.start) for w in other.plan()] != plan
    assert [(w.clip_id, w.start) for w in again.plan()] != plan, "a new epoch draws new windows"


def test_split_and_identity_come_from_the_index(synthetic_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(synthetic_store, root)
    store = Store(root)
    df = store.clips()
    moved = df[df["split"] == "test"]["clip_id"].iloc[0]
    store.set_columns(pd.DataFrame({"clip_id": [moved], "split": ["train"], "identity": ["renamed"]}))
    ds = WindowDataset(root, where="split == 'train'", frames=50, mode="sequential", video=False, audio=False)
    got = {s["clip_id"]: s["record"] for s in ds}
    assert moved in got
    assert got[moved].split == "train" and got[moved].identity == "renamed"
    assert all(r.split == "train" for r in got.values())
    # the shard's own record still says "test": the index wins
    assert next(Store(root).records([moved])).split == "train"
    s = next(iter(Store(root).dataset(f"clip_id == '{moved}'", decode_video=False)))
    assert s["record"].split == "train" and s["record"].identity == "renamed"
    a = s["arrays"]["synthetic.speech_rms"]
    assert a.fps == 100.0 and a.start == pytest.approx(0.005), "arrays keep their own fps and start"


def test_reference_frame_is_far_from_the_window(synthetic_store, clips):
    frames, gap = 10, 0.6
    ds = WindowDataset(synthetic_store, frames=frames, mode="random", reference=True, min_reference_gap_s=gap,
                       windows_per_clip=4, arrays=("smplx.body_pose",), seed=3)
    refs = []
    for s in ds:
        r = s["reference"]
        i, start = r["index"], s["start"]
        dist = start - i if i < start else i - (start + frames - 1)
        assert dist >= int(np.ceil(gap * s["fps"])), (i, start)  # 50-frame clips always allow it
        assert r["gap_s"] == pytest.approx(dist / s["fps"])
        clip = clips[s["clip_id"]]
        np.testing.assert_array_equal(r["video"].numpy(), clip["video"][i])
        np.testing.assert_array_equal(r["arrays"]["smplx.body_pose"].numpy(),
                                      clip["record"].arrays["smplx.body_pose"].data[i])
        refs.append(i)
    assert len(set(refs)) > 3, "reference frames are drawn, not fixed"


def test_loader_with_two_workers_yields_each_window_once(synthetic_store):
    kw = dict(frames=12, mode="sequential", arrays=("smplx.jaw_pose",), size=32)
    plan = [(w.clip_id, w.start) for w in WindowDataset(synthetic_store, **kw).plan()]
    loader = window_loader(synthetic_store, batch_size=3, num_workers=2, **kw)
    # read in this process first: its open shard files must not be shared with forked workers
    single = {(s["clip_id"], s["start"]): s for s in loader.dataset}
    got = []
    for batch in loader:
        B = len(batch["clip_id"])
        assert batch["video"].shape == (B, 12, 32, 32, 3) and batch["audio"].shape == (B, 12 * 640)
        assert batch["arrays"]["smplx.jaw_pose"].shape == (B, 12, 3) and batch["valid"].shape == (B, 12)
        for i, key in enumerate(zip(batch["clip_id"], batch["start"].tolist())):
            assert torch.equal(batch["video"][i], single[key]["video"])
            assert torch.equal(batch["audio"][i], single[key]["audio"])
            got.append(key)
    assert Counter(got) == Counter(plan) and len(got) == len(plan)


def test_persistent_worker_follows_set_epoch(synthetic_store, monkeypatch):
    """window_loader keeps its spawned worker across epochs (no second start-up) and the
    worker draws each epoch's random windows, as the dataset in this process plans them; it
    reads this process's rank's share (a spawned worker cannot ask torch.distributed)."""
    import mentor.store.windows as windows

    kw = dict(frames=8, mode="random", arrays=("smplx.jaw_pose",), video=False, audio=False, seed=3)
    monkeypatch.setattr(windows, "distributed_rank", lambda: (1, 2))  # as if rank 1 of 2
    loader = window_loader(synthetic_store, batch_size=4, num_workers=1, **kw)
    monkeypatch.undo()
    plan = WindowDataset(synthetic_store, **kw)
    pids = []
    for epoch in (0, 1, 2):
        loader.dataset.set_epoch(epoch)
        plan.set_epoch(epoch)
        got = [(c, int(s)) for b in loader for c, s in zip(b["clip_id"], b["start"])]
        full = plan.plan()
        assert got == [(w.clip_id, w.start) for w in full[len(full) // 2:]], epoch
        pids.append(loader._iterator._workers[0].pid)
    assert len(set(pids)) == 1  # one worker, started once
    epochs = [[(w.clip_id, w.start) for w in (plan.set_epoch(e), plan.plan())[1]] for e in (0, 1)]
    assert epochs[0] != epochs[1]  # the epochs really differ
    with pytest.raises(ValueError, match="prefetch_factor"):
        window_loader(synthetic_store, batch_size=2, num_workers=1, prefetch_factor=0)


def test_only_needed_shards_are_opened(synthetic_store):
    store = Store(synthetic_store)
    df = store.clips()
    assert df["shard"].nunique() >= 2
    one = df.iloc[0]
    ds = WindowDataset(store, where=f"clip_id == '{one.clip_id}'", frames=8, mode="sequential", video=False)
    assert {s["clip_id"] for s in ds} == {one.clip_id}
    assert set(ds._reader.files) == {one.shard}


def test_collate_pads_audio_and_missing_arrays():
    def sample(n_audio, arrays):
        return {"clip_id": "c", "record": None, "start": 0, "fps": 25.0, "valid": torch.ones(2, dtype=torch.bool),
                "video": torch.zeros(2, 4, 4, 3, dtype=torch.uint8), "audio": torch.ones(n_audio),
                "sample_rate": 16000, "arrays": arrays}

    b = collate_windows([sample(5, {"x": torch.ones(2, 3)}), sample(3, {})])
    assert b["audio"].shape == (2, 5) and b["audio"][1, 3:].eq(0).all()
    assert b["arrays"]["x"].shape == (2, 2, 3) and torch.isnan(b["arrays"]["x"][1]).all()
    with pytest.raises(ValueError, match="no samples"):
        collate_windows([])


def test_resample_and_bad_arguments(synthetic_store):
    from mentor.record import FrameArray

    a = FrameArray(np.arange(10, dtype=np.float64)[:, None], fps=10.0, start=0.05)
    got = resample(a, np.array([0.0, 0.05, 0.1, 0.5, 0.95, 1.0, 1.2]))
    # -0.5 row (inside half a period) clamps, 0.05 is row 0, 0.1 half-way, past the end NaN
    np.testing.assert_allclose(got[:6, 0], [0.0, 0.0, 0.5, 4.5, 9.0, 9.0])
    assert np.isnan(got[6, 0])
    with pytest.raises(ValueError, match="mode='forward'"):
        WindowDataset(synthetic_store, mode="forward")
    with pytest.raises(ValueError, match="frames=0"):
        WindowDataset(synthetic_store, frames=0)


@pytest.mark.slow
def test_ray_windows_rows_are_the_same_windows(synthetic_store):
    import ray

    from mentor.store.windows import ray_windows

    kw = dict(frames=16, mode="sequential", arrays=("smplx.jaw_pose",))
    want = {(s["clip_id"], s["start"]): s for s in WindowDataset(synthetic_store, **kw)}
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        rows = ray_windows(synthetic_store, pieces=3, **kw).take_all()
    finally:
        if started:
            ray.shutdown()
    assert sorted((r["clip_id"], r["start"]) for r in rows) == sorted(want)
    for r in rows:
        s = want[(r["clip_id"], r["start"])]
        np.testing.assert_array_equal(r["video"], s["video"].numpy())
        np.testing.assert_array_equal(r["audio"], s["audio"].numpy())
        np.testing.assert_array_equal(r["array.smplx.jaw_pose"], s["arrays"]["smplx.jaw_pose"].numpy())
        assert ClipRecord.from_json(r["record"]).split == s["record"].split
