"""The synthetic store: a real store whose video, audio and SMPL-X parameters agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mentor.record import ClipRecord
from mentor.store import Store, decode, verify_store


def test_index_identities_splits_and_attributes(synthetic_store):
    store = Store(synthetic_store)
    df = store.clips()
    assert len(df) == 6 and df["shard"].nunique() >= 2
    assert verify_store(synthetic_store) == []
    assert df["identity"].nunique() == 3
    # splits are per identity (identity-disjoint) and all three are used
    assert (df.groupby("identity")["split"].nunique() == 1).all()
    assert set(df["split"]) == {"train", "val", "test"}
    for col in ("attr.skin_tone_group", "attr.perceived_age", "attr.perceived_gender"):
        assert df.groupby("identity")[col].nunique().eq(1).all()
        assert df[col].nunique() >= 2, f"{col} should vary across identities"


def test_video_shows_the_stored_parameters(synthetic_store):
    from mentor.body import Camera, SmplxParams, load_body_model
    from mentor.testmedia import speech_envelope

    body = load_body_model()
    rec = next(Store(synthetic_store).records(media_dir=None))
    members = {}
    import tarfile

    row = Store(synthetic_store).clips().set_index("clip_id").loc[rec.id]
    with tarfile.open(synthetic_store / row["shard"]) as tf:
        for m in tf:
            if m.name.startswith(rec.id + "."):
                members[m.name.split(".", 1)[1]] = tf.extractfile(m).read()
    video = decode.video(members["mp4"])
    T = len(video)
    assert T == 50 and video.shape[1:] == (64, 64, 3)
    params = SmplxParams.from_arrays({k: a.data for k, a in rec.arrays.items()})
    camera = Camera.from_array(rec.arrays["smplx.camera"].data[0])
    with torch.no_grad():
        px = camera.project(body(params).vertices).numpy()  # (T,V,2)
    ious = []
    for t in (0, 25, 49):
        frame = video[t].astype(int)
        bg = np.median(np.concatenate([frame[0], frame[:, 0], frame[:, -1]]), axis=0)
        seen = np.abs(frame - bg).sum(-1) > 40
        mask = np.zeros((64, 64), bool)
        x, y = np.floor(px[t]).astype(int).T
        ok = (x >= 0) & (x < 64) & (y >= 0) & (y < 64)
        mask[y[ok], x[ok]] = True
        ious.append((seen & mask).sum() / (seen | mask).sum())
    assert min(ious) > 0.8, ious
    # the jaw opens with the speech that was stored
    samples, sr = decode.audio(members["flac"])
    env = speech_envelope(samples, sr, rec.fps, T)
    jaw = rec.arrays["smplx.jaw_pose"].data[:, 0]
    assert np.corrcoef(env, jaw)[0, 1] > 0.95
    assert rec.arrays["audio.logmel"].data.shape == (T, 5, 80)
    assert rec.annotations["smplx"]["body_model"] == "synthetic"


def test_same_seed_same_store(tmp_path):
    from mentor.synthstore import write_synthetic_store

    a = write_synthetic_store(tmp_path / "a", n_clips=2, seconds=0.4, size=32, identities=2, seed=5)
    b = write_synthetic_store(tmp_path / "b", n_clips=2, seconds=0.4, size=32, identities=2, seed=5)
    ra, rb = list(Store(a).records()), list(Store(b).records())
    assert [r.id for r in ra] == [r.id for r in rb]
    for x, y in zip(ra, rb):
        for k in x.arrays:
            np.testing.assert_array_equal(x.arrays[k].data, y.arrays[k].data)
    with pytest.raises(ValueError, match="size=33"):
        write_synthetic_store(tmp_path / "c", size=33)
    assert isinstance(ra[0], ClipRecord)
