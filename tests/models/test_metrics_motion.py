"""Motion metrics against answers known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import motion as M


def _rot(axis, deg) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return M.axis_angle_to_matrix(axis * np.radians(deg))


# ------------------------------------------------------------------------------ LME

def test_lme_zero_against_itself_and_equal_to_a_known_shift():
    rng = np.random.default_rng(0)
    lips = rng.normal(0, 0.02, (50, 20, 3))  # metres
    assert M.lip_landmark_error(lips, lips) == 0.0
    shifted = lips + np.array([0.003, 0.004, 0.0])  # 3 mm and 4 mm: 5 mm everywhere
    assert M.lip_landmark_error(shifted, lips) == pytest.approx(5.0)
    assert M.lip_landmark_error(shifted * 1000, lips * 1000, units="mm") == pytest.approx(5.0)


def test_lme_max_reduction_and_nan_frames():
    gt = np.zeros((10, 20, 3))
    pred = gt.copy()
    pred[:, 0, 0] = 0.010  # one point 10 mm off: mean 0.5 mm, max 10 mm
    assert M.lip_landmark_error(pred, gt) == pytest.approx(0.5)
    assert M.lip_landmark_error(pred, gt, reduce="max") == pytest.approx(10.0)
    pred[3] = np.nan  # a frame without a fit is skipped, not counted as 0
    pred[4, :, 0] = 0.002
    assert M.lip_landmark_error(pred, gt) == pytest.approx((8 * 0.5 + 2.0) / 9)
    assert np.isnan(M.lip_landmark_error(np.full((2, 20, 3), np.nan), gt[:2]))


def test_head_aligned_lme_removes_the_head_motion_and_keeps_the_mouths():
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 0.05, (12, 68, 3))  # metres
    # the same face, the head turned by up to 30 degrees and moved by up to 5 cm per frame
    rots = np.stack([_rot(rng.normal(size=3), d) for d in np.linspace(0, 30, 12)])
    moved = gt @ rots + rng.uniform(-0.05, 0.05, (12, 1, 3))
    assert M.lip_landmark_error(M.lip_points(moved), M.lip_points(gt)) > 5.0  # camera space: far off
    aligned = M.head_aligned(moved, gt)
    assert M.lip_landmark_error(M.lip_points(aligned), M.lip_points(gt)) == pytest.approx(0.0, abs=1e-9)
    # a mouth opened 4 mm more survives the alignment (the upper face fixes the head)
    opened = gt.copy()
    opened[:, list(M.LIP_LANDMARKS), 1] -= 0.004
    got = M.lip_landmark_error(M.lip_points(M.head_aligned(opened @ rots, gt)), M.lip_points(gt))
    assert got == pytest.approx(4.0, rel=1e-6)
    # a frame without a fit stays NaN and is left out; bad shapes raise
    moved[3, 5] = np.nan
    out = M.head_aligned(moved, gt)
    assert np.isnan(out[3]).all() and np.isfinite(out[[0, 1, 2, 4]]).all()
    with pytest.raises(ValueError, match="same shape"):
        M.head_aligned(moved[:, :60], gt)


def test_lip_points_pick_the_mouth_landmarks_and_bad_shapes_raise():
    lm = np.zeros((2, 68, 3))
    lm[:, 31:51] = 1.0
    assert (M.lip_points(lm) == 1.0).all() and M.lip_points(lm).shape == (2, 20, 3)
    with pytest.raises(ValueError, match="lip indices"):
        M.lip_points(np.zeros((2, 30, 3)))
    with pytest.raises(ValueError, match="same shape"):
        M.lip_landmark_error(np.zeros((2, 20, 3)), np.zeros((3, 20, 3)))
    with pytest.raises(ValueError, match="units"):
        M.lip_landmark_error(np.zeros((2, 20, 3)), np.zeros((2, 20, 3)), units="inch")


# --------------------------------------------------------------------------- jitter

def test_jitter_of_a_cubic_equals_its_analytic_third_derivative():
    fps = 25.0
    t = np.arange(60) / fps
    a = np.array([0.2, -0.1, 0.05])  # m/s^3 coefficients of t^3 per axis
    traj = a * t[:, None] ** 3 + np.array([1.0, 0.5, 0.0]) * t[:, None] ** 2 + 0.3
    joints = np.repeat(traj[:, None], 4, axis=1)  # (T, 4, 3)
    want = 6 * np.linalg.norm(a) * 1000  # mm/s^3
    assert M.jitter(joints, fps) == pytest.approx(want, rel=1e-6)
    assert M.jitter(joints, fps, per="frame") == pytest.approx(want / fps ** 3, rel=1e-6)
    # a quadratic (constant acceleration) has no jerk
    assert M.jitter(np.repeat((t[:, None] ** 2 * [1, 2, 3])[:, None], 2, 1), fps) == pytest.approx(0, abs=1e-6)


def test_jitter_of_a_sine_approaches_the_analytic_mean():
    fps, f, amp = 1000.0, 2.0, 0.01
    t = np.arange(int(fps * 2)) / fps  # 4 whole periods
    w = 2 * np.pi * f
    joints = np.zeros((len(t), 1, 3))
    joints[:, 0, 1] = amp * np.sin(w * t)
    want = amp * w ** 3 * 2 / np.pi * 1000  # mean |A w^3 cos(wt)|, mm/s^3
    assert M.jitter(joints, fps) == pytest.approx(want, rel=0.01)
    assert np.isnan(M.jitter(joints[:3], fps))


# ----------------------------------------------------------------------- expression

def test_expression_spread():
    assert M.expression_spread(np.ones((30, 10))) == 0.0
    e = np.tile([[1.0], [-1.0]], (20, 10))  # every coefficient alternates +-1: std 1
    assert M.expression_spread(e) == pytest.approx(1.0)
    e[:, :5] *= 3  # half the coefficients with std 3: mean of stds 2
    assert M.expression_spread(e) == pytest.approx(2.0)


# ------------------------------------------------------------------------ head pose

def test_head_pose_error_is_the_known_rotation_angle():
    rng = np.random.default_rng(1)
    gt = M.axis_angle_to_matrix(rng.normal(0, 0.5, (20, 3)))
    assert M.head_pose_error(gt, gt) == pytest.approx(0.0, abs=1e-5)
    off = _rot(rng.normal(size=3), 10.0)
    assert M.head_pose_error(gt @ off, gt) == pytest.approx(10.0, abs=1e-6)
    # axis-angle input gives the same
    aa = np.tile([0.0, np.radians(7.0), 0.0], (5, 1))
    assert M.head_pose_error(aa, np.zeros((5, 3))) == pytest.approx(7.0)


def test_head_rotation_composes_the_chain_to_the_head():
    T = 3
    go = np.tile([0.0, np.radians(20.0), 0.0], (T, 1))
    body = np.zeros((T, 63))
    assert np.allclose(M.head_rotation(go, body), _rot([0, 1, 0], 20.0))
    go[:] = 0
    body[:, 3 * 11:3 * 12] = [np.radians(10.0), 0, 0]  # neck (joint 12)
    body[:, 3 * 14:3 * 15] = [np.radians(5.0), 0, 0]  # head (joint 15)
    body[:, 3 * 15:3 * 16] = [0, 0, np.radians(40.0)]  # left collar (joint 16): not on the chain
    assert np.allclose(M.head_rotation(go, body), _rot([1, 0, 0], 15.0))


# ----------------------------------------------------------------- beat consistency

def _beating_joints(fps=25.0, period=0.8, seconds=8.0, joints=22):
    """Joints moving along x with speed 1.5 - cos(2 pi t / period): minima at t = k * period
    (speed / mean = 1/3, above EMAGE's 0.3 threshold)."""
    t = np.arange(int(seconds * fps)) / fps
    x = 1.5 * t - period / (2 * np.pi) * np.sin(2 * np.pi * t / period)
    out = np.zeros((len(t), joints, 3))
    out[:, :, 0] = x[:, None]
    return out, period * np.arange(1, int(seconds / period))


def test_beat_consistency_known_answers():
    joints, beats = _beating_joints()
    assert M.beat_consistency(joints, 25.0, onsets=beats) == pytest.approx(1.0)
    # every onset 0.1 s from its beat: exp(-0.01 / (2 * 0.09))
    assert M.beat_consistency(joints, 25.0, onsets=beats + 0.1) == pytest.approx(np.exp(-0.01 / 0.18), abs=1e-9)
    # onsets halfway between beats: 0.4 s off
    assert M.beat_consistency(joints, 25.0, onsets=beats[:-1] + 0.4) == pytest.approx(np.exp(-0.16 / 0.18))
    # a joint standing still has no beat: its score is 0 for every onset
    still = joints.copy()
    still[:, 3] = 0
    got = M.beat_consistency(still, 25.0, onsets=beats)
    assert got == pytest.approx(12 / 13)
    assert np.isnan(M.beat_consistency(joints, 25.0, onsets=[]))
    with pytest.raises(ValueError, match="audio"):
        M.beat_consistency(joints, 25.0)


def test_beat_consistency_from_audio_clicks_through_librosa_onsets():
    sr = 16000
    joints, beats = _beating_joints()
    audio = np.zeros(int(8.0 * sr), np.float32)
    rng = np.random.default_rng(0)

    def clicks(times):
        a = audio.copy()
        for b in times:
            i = int(b * sr)
            a[i:i + 800] += rng.normal(0, 0.5, 800) * np.exp(-np.arange(800) / 200)
        return a

    on = M.audio_onsets(clicks(beats), sr)
    assert len(on) == len(beats) and np.abs(on - beats).max() < 0.05  # hop 32 ms
    in_step = M.beat_consistency(joints, 25.0, audio=clicks(beats), sample_rate=sr)
    off_step = M.beat_consistency(joints, 25.0, audio=clicks(beats[:-1] + 0.4), sample_rate=sr)
    assert in_step > 0.95 and off_step < 0.6
    # EMAGE's margin: times count from the cut, the same answer on the cut clip
    assert M.beat_consistency(joints, 25.0, onsets=beats, margin_s=1.2) == pytest.approx(1.0)


# ------------------------------------------------------------------------ diversity

def test_l1_diversity_known_answer():
    base = np.random.default_rng(0).normal(size=(1, 30))
    x = np.concatenate([base + 0.5, base - 0.5])
    assert M.l1_diversity(x) == pytest.approx(30 * 0.5)
    assert M.l1_diversity(np.repeat(base, 4, 0)) == pytest.approx(0.0)
    samples = np.stack([np.full((10, 5, 3), 1.0), np.full((10, 5, 3), -1.0), np.zeros((10, 5, 3))])
    # per frame: |1| * 15 + |-1| * 15 + 0 over 3 samples = 10
    assert M.sample_diversity(samples) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        M.l1_diversity(np.zeros((1, 3)))


# -------------------------------------------------------------------------- Frechet

def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _sqrtm_psd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_frechet_distance_equals_the_closed_form():
    rng = np.random.default_rng(0)
    d = 8
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _spd(rng, d), _spd(rng, d)
    assert M.frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-8)
    r = _sqrtm_psd(s1)
    want = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * _sqrtm_psd(r @ s2 @ r))
    assert M.frechet_distance(m1, s1, m2, s2) == pytest.approx(want, rel=1e-9)
    # diagonal: sum of (sqrt(a) - sqrt(b))^2 per axis; 1-D: (m1-m2)^2 + (sd1-sd2)^2
    a, b = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    assert M.frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(
        np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert M.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4 + 1)


def test_frechet_of_feature_sets_and_bad_shapes():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 4))
    assert M.frechet_distance_features(f, f) == pytest.approx(0.0, abs=1e-8)
    g = rng.normal(size=(20000, 4)) * 2 + 1  # N(1, 4 I) against N(0, I): 4 * (1 + 1)
    assert M.frechet_distance_features(rng.normal(size=(20000, 4)), g) == pytest.approx(8.0, rel=0.05)
    with pytest.raises(ValueError, match="expected"):
        M.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    lips = torch.zeros(5, 20, 3)
    assert M.lip_landmark_error(lips + 0.001, lips) == pytest.approx(np.sqrt(3), rel=1e-5)


def test_weighted_frechet_equals_repeated_rows_in_both_factor_forms():
    rng = np.random.default_rng(0)
    for n, d in ((40, 64), (300, 16)):  # fewer rows than features (centred rows), more (Cholesky)
        a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        b = rng.normal(1, 2, size=(n + 5, d)) @ rng.normal(size=(d, d))
        assert M.frechet_distance_weighted(a, b) == pytest.approx(M.frechet_distance_features(a, b), rel=1e-7)
        wa, wb = rng.integers(0, 3, len(a)), rng.integers(0, 3, len(b))
        want = M.frechet_distance_features(np.repeat(a, wa, 0), np.repeat(b, wb, 0))
        assert M.frechet_distance_weighted(a, b, wa, wb) == pytest.approx(want, rel=1e-7)
    assert M.frechet_distance_weighted(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_bootstrap_of_2048_dim_features_is_fast_and_paired():
    import time

    rng = np.random.default_rng(0)
    real = [rng.normal(size=(16, 2048)) for _ in range(30)]  # 30 clips x 16 frames of Inception-sized features
    fake = [r + rng.normal(0, 0.5, r.shape) for r in real]
    t = time.process_time()
    boots = M.frechet_bootstrap(fake, real, 30, np.random.default_rng(1))
    cpu = time.process_time() - t
    assert boots.shape == (30,) and np.isfinite(boots).all() and cpu < 15, cpu  # 50 took 1.6 s on the 2-core box
    # each resample is the Frechet distance of its clips' rows, repeated as drawn
    draw = np.random.default_rng(1).integers(0, 30, 30)
    want = M.frechet_distance_weighted(np.concatenate([fake[i] for i in draw]), np.concatenate([real[i] for i in draw]))
    assert boots[0] == pytest.approx(want, rel=1e-6)
    assert (M.frechet_bootstrap(real, real, 5, rng) < 1e-6).all()  # a set against itself: 0 in every resample
