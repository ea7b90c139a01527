"""Motion autoencoder and the Frechet motion distance (models/motion_ae.py): trained through
`mentor train-motion-ae` on the synthetic store; FMD is 0 for a set against itself, grows with
the corruption of the motion, and save -> load gives the same features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.motion_ae import (MOTION_FIELDS, MotionAutoencoder, frechet_motion_distance, load_motion_ae,
                              motion_features, motion_windows)
from models.training import read_loss_csv


pytestmark = pytest.mark.slow  # the autoencoder trains 100 steps (~25 CPU-s) in the fixture


@pytest.fixture(scope="module")
def ae_run(synthetic_store, tmp_path_factory):
    from mentor.cli import main

    run = tmp_path_factory.mktemp("motion_ae") / "run"
    code = main(["train-motion-ae", str(synthetic_store), "-o", str(run), "--config", "tiny", "--steps", "100",
                 "--batch-size", "16", "--quiet"])
    assert code == 0
    return run


def _clips(store, split):
    from mentor.store import Store

    s = Store(store)
    ids = list(s.clips(f"split == '{split}'")["clip_id"])
    return [{f: rec.arrays[f"smplx.{f}"].data.astype(np.float32) for f in MOTION_FIELDS} for rec in s.records(ids)]


def test_autoencoder_trains_and_round_trips(ae_run, synthetic_store, tmp_path):
    rows = read_loss_csv(ae_run / "loss.csv")
    assert rows[-1]["step"] == 100 and rows[-1]["loss"] < 0.7 * rows[0]["loss"], (rows[0], rows[-1])
    assert json.loads((ae_run / "result.json").read_text())["step"] == 100
    model = load_motion_ae(ae_run)
    assert model.config.num_frames == 16 and model.config.feature_dim == 16
    assert float(model.motion_std.min()) > 0 and not torch.all(model.motion_std == 1)  # statistics travelled
    clips = _clips(synthetic_store, "test")
    f = motion_features(model, clips)
    assert f.shape == (len(clips) * 5, 16)  # 50 frames: windows at 0, 8, 16, 24, 32
    model.save_pretrained(tmp_path / "again")
    g = motion_features(MotionAutoencoder.from_pretrained(str(tmp_path / "again")), clips)
    assert np.array_equal(f, g)


def test_fmd_is_zero_against_itself_and_grows_with_corruption(ae_run, synthetic_store):
    model = load_motion_ae(ae_run)
    real = _clips(synthetic_store, "test")
    assert frechet_motion_distance(model, real, real) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)

    def noisy(scale):
        return [{f: v + scale * rng.standard_normal(v.shape).astype(np.float32) * v.std(0) for f, v in c.items()}
                for c in real]

    noise = [frechet_motion_distance(model, real, noisy(s)) for s in (0.1, 0.3, 1.0)]
    assert 0 < noise[0] < noise[1] < noise[2], noise  # monotone in the amount of noise
    assert noise[2] > 20 * noise[0], noise
    frozen = [{f: np.repeat(v[:1], len(v), 0) for f, v in c.items()} for c in real]
    assert frechet_motion_distance(model, real, frozen) > 20 * noise[0]

    def face_late(frames):  # the face `frames` late against the body: the parts no longer move together
        return [{f: (np.roll(v, frames, 0) if f in ("expression", "jaw_pose") else v) for f, v in c.items()}
                for c in real]

    late = [frechet_motion_distance(model, real, face_late(k)) for k in (3, 12)]
    assert 0 < late[0] < late[1], late


def test_bad_inputs_raise_with_the_fix(ae_run):
    model = load_motion_ae(ae_run)
    with pytest.raises(ValueError, match="divisible"):
        MotionAutoencoder(num_frames=10, num_down=2)
    short = {f: np.zeros((8, n), np.float32) for f, n in model.layout.fields}
    assert len(motion_windows(model.layout, short, 16)) == 0
    with pytest.raises(ValueError, match="no window"):
        motion_features(model, [short])
    with pytest.raises(ValueError, match="SMPL-X fields"):
        motion_windows(model.layout, {"transl": np.zeros((20, 3))}, 16)
    with pytest.raises(FileNotFoundError, match="train-motion-ae"):
        load_motion_ae(ae_run / "nothing")
