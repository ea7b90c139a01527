"""Motion diffusion model: representation, network, training on the synthetic store,
sampling, and `mentor generate-motion` (tiny configs, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.motion import (ROT_FIELDS, MotionDiffusionModel, MotionLayout, MotionStatistics, axis_angle_to_matrix,
                           decode_motion, encode_motion, make_scheduler, matrix_to_axis_angle, reference_features,
                           tiny_config)
from models.motion_sample import generate, load_motion_model, window_starts
from models.motion_train import PRESETS, train_loop
from models.training import read_loss_csv


def _random_params(layout: MotionLayout, T: int, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    params = {n: torch.randn(T, k, generator=g) * 0.4 for n, k in layout.fields}
    params["global_orient"][:, 0] += 3.0  # near pi, as camera-space fits are
    ref = {n: torch.randn(k, generator=g) * 0.4 for n, k in layout.fields}
    ref["global_orient"][0] += 3.0
    ref["betas"] = torch.randn(10, generator=g)
    return params, ref


def test_rotations_round_trip_including_pi():
    aa = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * 1.2
    aa[0] = torch.tensor([np.pi, 0, 0])
    aa[1] = 0
    R = axis_angle_to_matrix(aa)
    assert torch.allclose(axis_angle_to_matrix(matrix_to_axis_angle(R)), R, atol=1e-5)


def test_motion_encoding_is_a_residual_and_decodes_back():
    layout = MotionLayout(10, 12)
    params, ref = _random_params(layout, 20)
    motion = encode_motion(layout, params, ref)
    assert motion.shape == (20, layout.dim)
    # the reference itself has zero residual pose (its expression is absolute)
    at_ref = encode_motion(layout, {k: v[None] for k, v in ref.items()}, ref)[0]
    sl = layout.slices()
    assert torch.allclose(at_ref[sl["expression"]], ref["expression"])
    assert at_ref[sl["jaw_pose"].start:].abs().max() < 1e-5
    back = decode_motion(layout, motion, ref)
    for name, n in layout.fields:
        a, b = params[name], back[name]
        if name in ROT_FIELDS:
            a, b = axis_angle_to_matrix(a.reshape(20, -1, 3)), axis_angle_to_matrix(b.reshape(20, -1, 3))
        assert torch.allclose(a, b, atol=1e-4), name
    assert back["betas"].shape == (20, 10)


def _model_with_stats(seed: int = 0) -> MotionDiffusionModel:
    torch.manual_seed(seed)
    model = MotionDiffusionModel(**tiny_config()).eval()
    rng = np.random.default_rng(seed)
    L, A, R = model.layout.dim, model.audio_dim, model.layout.reference_dim
    model.set_statistics(MotionStatistics(rng.normal(size=L), rng.uniform(0.5, 2, L), rng.normal(size=A),
                                          rng.uniform(0.5, 2, A), rng.normal(size=R), rng.uniform(0.5, 2, R)))
    return model


def test_save_load_same_output(tmp_path):
    model = _model_with_stats()
    B, T = 2, 20
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, model.layout.dim, generator=g)
    audio = torch.randn(B, T, model.audio_dim, generator=g)
    ref = torch.randn(B, model.layout.reference_dim, generator=g)
    t = torch.tensor([3, 700])
    with torch.no_grad():
        before = model(x, t, audio, ref)
    model.save_pretrained(tmp_path / "m")
    loaded = MotionDiffusionModel.from_pretrained(str(tmp_path / "m")).eval()
    assert loaded.config.num_layers == 2 and loaded.config.d_model == 64
    assert torch.equal(loaded.motion_std, model.motion_std)  # the statistics travel with the weights
    with torch.no_grad():
        assert torch.equal(loaded(x, t, audio, ref), before)
    # and the sampler gives the same motion from both (same seed)
    feats = np.random.default_rng(2).normal(size=(40, model.audio_dim)).astype(np.float32)
    _, refp = _random_params(model.layout, 1)
    a = generate(model, feats, refp, seed=5, steps=3)
    b = generate(loaded, feats, refp, seed=5, steps=3)
    assert np.array_equal(a["body_pose"], b["body_pose"])


def test_causal_mask_and_audio_guidance():
    model = _model_with_stats()
    B, T = 1, 16
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, T, model.layout.dim, generator=g)
    audio = torch.randn(B, T, model.audio_dim, generator=g)
    ref = torch.randn(B, model.layout.reference_dim, generator=g)
    with torch.no_grad():
        y = model(x, 10, audio, ref)
        x2 = x.clone()
        x2[:, 10:] = torch.randn(B, T - 10, model.layout.dim, generator=g)
        y2 = model(x2, 10, audio, ref)
        assert torch.allclose(y[:, :10], y2[:, :10], atol=1e-6)  # the past does not see the future
        assert not torch.allclose(y[:, 10:], y2[:, 10:])
        with torch.no_grad():
            model.null_audio.fill_(0.5)
        g1 = model.guided_x0(x, 10, audio, ref, guidance_scale=1.0)
        g3 = model.guided_x0(x, 10, audio, ref, guidance_scale=3.0)
        cond = model(x, 10, audio, ref, audio_keep=torch.tensor([True]))
        uncond = model(x, 10, audio, ref, audio_keep=torch.tensor([False]))
        assert torch.allclose(g1, cond, atol=1e-6)
        assert torch.allclose(g3, uncond + 3 * (cond - uncond), atol=1e-5)


def test_bad_arguments_raise_with_the_fix():
    with pytest.raises(ValueError, match="num_heads"):
        MotionDiffusionModel(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="context_frames"):
        MotionDiffusionModel(num_frames=8, context_frames=8)
    with pytest.raises(ValueError, match="use one of"):
        make_scheduler("euler")
    assert window_starts(50, 32, 8) == [0, 24]
    assert window_starts(32, 32, 8) == [0]
    model = _model_with_stats()
    _, ref = _random_params(model.layout, 1)
    with pytest.raises(ValueError, match="audio features have shape"):
        generate(model, np.zeros((10, 3), np.float32), ref)


# ---------------------------------------------------------------- trained on the store

@pytest.fixture(scope="module")
def trained_run(synthetic_store, tmp_path_factory):
    """A tiny model trained 80 steps on the synthetic store's train split."""
    run = tmp_path_factory.mktemp("motion") / "run"
    result = train_loop({"store": str(synthetic_store), "run_dir": str(run), "steps": 80, "batch_size": 8,
                         "model": PRESETS["tiny"], "lr": 1e-3, "warmup_steps": 10, "log_every": 10,
                         "ckpt_every": 40, "progress": False, "seed": 0})
    return run, result


def test_training_loss_falls(trained_run):
    run, result = trained_run
    assert result["step"] == 80
    rows = read_loss_csv(run / "loss.csv")
    assert [r["step"] for r in rows] == list(range(10, 81, 10))
    first, last = rows[0]["loss"], rows[-1]["loss"]
    assert last < 0.5 * first, (first, last)
    assert {"diffusion", "temporal_face", "temporal_body", "data_wait", "lr"} <= set(rows[0])
    assert any((run / "tb").iterdir())  # TensorBoard events
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000040.pt", "step-00000080.pt"]
    norm = json.loads((run / "model" / "normalization.json").read_text())
    assert norm["computed_on"] == "split == 'train'" and set(norm["motion"]) >= {"jaw_pose", "body_pose"}


def _clip(store, split="test"):
    from mentor.store import Store

    s = Store(store)
    return next(s.records(list(s.clips(f"split == '{split}'")["clip_id"][:1])))


def test_stitched_windows_are_continuous(trained_run, synthetic_store):
    run, _ = trained_run
    model = load_motion_model(run)
    rec = _clip(synthetic_store)
    feats = rec.arrays["audio.logmel"].data.reshape(len(rec.arrays["audio.logmel"].data), -1)
    feats = np.concatenate([feats, feats])  # 100 frames: windows at 0, 24, 48, 72
    ref = {k.split(".", 1)[1]: a.data[0] for k, a in rec.arrays.items() if k.startswith("smplx.")}
    for stitch in ("parallel", "sequential"):
        out = generate(model, feats, ref, num_samples=2, seed=0, stitch=stitch)
        assert out["jaw_pose"].shape == (2, 100, 3) and out["betas"].shape == (2, 100, 10)
        assert np.isfinite(out["body_pose"]).all()
        motion = np.concatenate([out[f] for f in ("expression", "jaw_pose", "body_pose", "transl")], -1)
        step = np.abs(np.diff(motion, axis=1)).mean(-1)  # (K, 99) frame-to-frame change
        joins = [s - 1 for s in window_starts(100, 32, 8)[1:]] + [31, 31 + 24, 31 + 48]  # carried / new boundaries
        # the frames right after each window's context are as smooth as the rest
        assert step[:, joins].mean() < 3 * np.median(step), (stitch, step[:, joins].mean(), np.median(step))
    with pytest.raises(ValueError, match="stitch"):
        generate(model, feats, ref, stitch="overlap-add")


def test_generate_motion_cli_three_different_samples(trained_run, synthetic_store, speech_wav, tmp_path):
    from mentor.cli import main
    from mentor.media import probe

    run, _ = trained_run
    rec = _clip(synthetic_store)
    ref = tmp_path / "ref.npz"
    np.savez(ref, **{k: a.data for k, a in rec.arrays.items() if k.startswith("smplx.")})
    out = tmp_path / "gen"
    code = main(["generate-motion", "--model", str(run), "--audio", str(speech_wav), "--reference", str(ref),
                 "--samples", "3", "--seconds", "2.4", "--seed", "7", "--preview-size", "64", "-o", str(out)])
    assert code == 0
    summary = json.loads((out / "generation.json").read_text())
    assert summary["frames"] == 60 and summary["samples"] == 3
    motions = [np.load(out / f"motion_{k:02d}.npz") for k in range(3)]
    for m in motions:
        assert m["smplx.body_pose"].shape == (60, 63) and float(m["fps"]) == 25.0
        assert np.allclose(m["smplx.betas"], rec.arrays["smplx.betas"].data[0], atol=1e-6)  # shape from the reference
    bodies = [np.concatenate([m["smplx.body_pose"], m["smplx.expression"]], 1) for m in motions]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(bodies[i] - bodies[j]).mean() > 1e-3  # three different motions
    info = probe(out / "motion_00.mp4")
    assert info.has_audio and abs(info.duration - 2.4) < 0.15


def test_preloaded_windows_are_the_streamed_ones(synthetic_store, tmp_path):
    """Clip arrays read once and cut in memory give exactly WindowDataset's windows (same
    clips, starts, references, NaN padding), epoch after epoch."""
    from models.motion_train import MotionTrainConfig, window_batches

    names = ("audio.logmel",)
    got = {}
    for gb in (2.0, 0.0):
        cfg = MotionTrainConfig(store=str(synthetic_store), run_dir=str(tmp_path), preload_arrays_gb=gb,
                                windows_per_clip=3, where="duration > 0")  # every clip: 18 windows an epoch
        batches = window_batches(cfg, 32, names, per_rank_batch=4)
        got[gb] = [b for epoch in (0, 1) for b in batches(epoch)]
    (a, b) = got[2.0], got[0.0]
    assert len(a) == len(b) == 8
    for x, y in zip(a, b):
        assert torch.equal(x["valid"], y["valid"])
        for k in ("smplx.jaw_pose", "smplx.body_pose", "audio.logmel"):
            assert torch.allclose(x["arrays"][k], y["arrays"][k], equal_nan=True), k
            assert torch.equal(x["reference"]["arrays"][k], y["reference"]["arrays"][k]), k


def test_preloaded_windows_split_over_ranks_as_the_store_does(synthetic_store, monkeypatch):
    """Under data parallelism each rank cuts the same contiguous piece of the epoch's windows
    that WindowDataset gives that rank (ranks read disjoint windows, together all of them)."""
    import mentor.store.windows as W
    from models.motion_train import PreloadedWindows, preload_clip_arrays

    kw = dict(where="duration > 0", frames=32, mode="random", seed=0, arrays=("smplx.jaw_pose",), video=False,
              audio=False, reference=True, windows_per_clip=3)
    clips = preload_clip_arrays(W.WindowDataset(synthetic_store, **kw), 2.0)
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(W, "distributed_rank", lambda r=rank: (r, 2))
        mine = [s["arrays"]["smplx.jaw_pose"] for s in PreloadedWindows(W.WindowDataset(synthetic_store, **kw), clips)]
        theirs = [s["arrays"]["smplx.jaw_pose"].numpy()
                  for s in W.WindowDataset(synthetic_store, rank=rank, world_size=2, **kw)]
        assert len(mine) == len(theirs) == 9
        assert all(np.array_equal(a, b) for a, b in zip(mine, theirs))
        seen += mine
    whole = [s["arrays"]["smplx.jaw_pose"].numpy() for s in W.WindowDataset(synthetic_store, rank=0, world_size=1, **kw)]
    assert len(whole) == 18 and all(np.array_equal(a, b) for a, b in zip(seen, whole))  # the pieces, in order
