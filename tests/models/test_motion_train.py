"""Motion training the long way: overfitting one clip, Ray Train with 2 CPU workers against
one process, and a killed `mentor train-motion` resuming from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models.motion import encode_motion
from models.motion_sample import generate, load_motion_model
from models.motion_train import PRESETS, train_loop
from models.training import read_loss_csv

ROOT = Path(__file__).resolve().parents[2]


def _train_clip(store):
    from mentor.store import Store

    s = Store(store)
    cid = s.clips("split == 'train'")["clip_id"].iloc[0]
    return s, cid, next(s.records([cid]))


@pytest.mark.slow
def test_overfit_one_clip_samples_its_ground_truth(synthetic_store, tmp_path):
    s, cid, rec = _train_clip(synthetic_store)
    run = tmp_path / "run"
    result = train_loop({"store": str(synthetic_store), "run_dir": str(run), "steps": 300, "batch_size": 8,
                         "where": f"clip_id == '{cid}'", "model": dict(PRESETS["tiny"], audio_dropout=0.0),
                         "lr": 2e-3, "warmup_steps": 10, "log_every": 50, "ckpt_every": 1000, "progress": False})
    assert result["step"] == 300
    model = load_motion_model(run)
    T = len(rec.arrays["smplx.transl"].data)
    feats = rec.arrays["audio.logmel"].data.reshape(T, -1)
    gt = {k.split(".", 1)[1]: torch.tensor(a.data) for k, a in rec.arrays.items() if k.startswith("smplx.")}
    ref = {k: v[0] for k, v in gt.items()}

    def error(params):  # mean |difference| to the ground truth, in the model's normalised units
        x = encode_motion(model.layout, {k: torch.as_tensor(v) for k, v in params.items()}, ref)
        y = encode_motion(model.layout, gt, ref)
        return float((model.normalize_motion(x) - model.normalize_motion(y)).abs().mean())

    still = error({k: v[:1].expand_as(v) for k, v in gt.items()})  # the reference pose held still
    # the model's solver steps (10) and half of them, windows in parallel and one after the other:
    # the fast settings must not lose the clip
    for steps in (None, 5):
        for stitch in ("parallel", "sequential"):
            out = generate(model, feats, {k: v.numpy() for k, v in ref.items()}, seed=0, guidance=1.0, steps=steps,
                           stitch=stitch)
            sampled = error({k: v[0] for k, v in out.items()})
            assert sampled < 0.4 and sampled < 0.5 * still, (steps, stitch, sampled, still)
            jaw = np.corrcoef(out["jaw_pose"][0, :, 0], gt["jaw_pose"][:, 0].numpy())[0, 1]
            assert jaw > 0.9, (steps, stitch, jaw)


def _config(store, run, steps):
    return {"store": str(store), "run_dir": str(run), "steps": steps, "batch_size": 8, "model": PRESETS["tiny"],
            "lr": 1e-3, "warmup_steps": 5, "log_every": 5, "ckpt_every": 100, "progress": False, "seed": 0}


@pytest.mark.slow
def test_ray_train_two_cpu_workers_follows_one_process(synthetic_store, tmp_path):
    import ray

    from pipelines.train import launch

    if ray.is_initialized():  # an earlier test's Ray: the launcher must start (and stop) its own
        ray.shutdown()
    steps = 30
    one = launch(train_loop, _config(synthetic_store, tmp_path / "one", steps), num_workers=1)
    two = launch(train_loop, _config(synthetic_store, tmp_path / "two", steps), num_workers=2,
                 run_dir=tmp_path / "two")
    assert not ray.is_initialized()  # the launcher stops the Ray it started
    assert one["world_size"] == 1 and two["world_size"] == 2 and two["step"] == steps
    a = [r["loss"] for r in read_loss_csv(tmp_path / "one" / "loss.csv")]
    b = [r["loss"] for r in read_loss_csv(tmp_path / "two" / "loss.csv")]
    assert len(a) == len(b) == steps // 5
    assert b[-1] < 0.7 * b[0] and a[-1] < 0.7 * a[0]  # both learn
    # same global batch (4 + 4 against 8): the curves agree within noise at every logged step
    ratio = np.array(b) / np.array(a)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio
    assert (tmp_path / "two" / "model" / "config.json").is_file()


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(synthetic_store, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mentor.cli", "train-motion", str(synthetic_store), "-o", str(run), "--config",
           "tiny", "--steps", "25", "--ckpt-every", "5", "--batch-size", "4", "--loader-workers", "0", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpts = run / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()[-2000:]  # killed mid-run, not after the end
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "model").exists()
    saved = sorted(int(p.stem.split("-")[1]) for p in ckpts.glob("step-*.pt"))
    assert saved and saved[-1] < 25
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((run / "result.json").read_text())
    assert result["step"] == 25 and result["resumed_from"] >= saved[-1] > 0
    steps = [r["step"] for r in read_loss_csv(run / "loss.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == 25  # one curve, no repeated steps
    assert (run / "model" / "config.json").is_file()
