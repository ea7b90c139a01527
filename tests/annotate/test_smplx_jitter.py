"""Issue 16: the fit's 3D jitter, and its accuracy under landmark noise.

The temporal solve's weights were tuned at 1 px of landmark noise and acted alike on every
rotation: at 4 px the noise went through (3D jitter 7x the truth's on the benchmark's
noise_4px), and the torso's rotations, which 2D sees least (a spine leaning toward the
camera moves the shoulders in depth only), wobbled in depth even at 1 px (talking 2.8x).
Now the weights grow with the clip's own landmark noise (smplx.smooth_noise_px) and the
torso's rotations are smoothed more (smplx.smooth_torso)."""

import numpy as np
import pytest
import torch

from annotate.smplx_fit import SmplxFitter, landmark_noise_px
from mentor.body import SmplxParams, load_body_model
from mentor.body.scenarios import SCENARIOS, make_truth
from mentor.config import SmplxConfig
from mentor.record import ClipRecord

UPPER = [12, 15, 16, 17, 18, 19, 20, 21]  # neck, head, shoulders, elbows, wrists (the benchmark's)
WRISTS = [20, 21]
OFF = dict(smooth_noise_px=0.0, smooth_torso=1.0)  # the temporal weights of before


@pytest.fixture(scope="module")
def body():
    torch.set_num_threads(1)
    return load_body_model()


def fitted_joints(body, truth, **settings) -> np.ndarray:
    """(T,55,3) the annotator's fitted joints in camera space (defaults + settings)."""
    T = truth.num_frames
    rec = ClipRecord(id="t", source_id="s", source_uri="synthetic", start=0, end=T / truth.fps, fps=truth.fps,
                     width=truth.size[0], height=truth.size[1])
    for k, a in truth.arrays.items():
        rec.add_array(k, a, truth.fps)
    cfg = SmplxConfig(focal_length=float(truth.camera[0]), device="cpu", threads=1, **settings)
    rec = SmplxFitter(cfg, body_model=body)(rec)
    assert rec.status["smplx"] == "done", rec.errors
    with torch.no_grad():
        return body(SmplxParams.from_record(rec)).joints.numpy()


def jitter(joints: np.ndarray) -> float:
    """Mean norm of the upper-body joints' second differences over frames (m/frame^2)."""
    j = joints[:, UPPER]
    return float(np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1).mean())


def test_landmark_noise_from_second_differences():
    """Slow tracks (a talker's: 1-3 px/frame) plus white noise of a known sd, some points
    missing and a few quick strokes: the estimate within 10 % of the sd."""
    rng = np.random.default_rng(0)
    frames, points = 120, 60
    t = np.arange(frames)[:, None, None]
    smooth = 100 + 40 * np.sin(2 * np.pi * t / 50 + rng.uniform(0, 6, (1, points, 2)))
    for sigma in (1.0, 4.0):
        xy = smooth + rng.normal(0, sigma, smooth.shape)
        xy[30:34, :3, 1] += np.array([30.0, 80.0, 80.0, 30.0])[:, None]  # three points' strokes
        conf = (rng.random((frames, points)) > 0.1).astype(float)
        assert abs(landmark_noise_px(xy, conf) - sigma) < 0.1 * sigma
    assert np.isnan(landmark_noise_px(xy[:3], conf[:3]))  # too few triples to say


@pytest.mark.slow
def test_noisy_landmarks_jitter_near_the_truths(body):
    """Talking at 4 px of landmark noise (the benchmark's noise_4px, 60 frames): the 3D
    jitter was several times the truth's; now near it, and the joints no further off."""
    truth = make_truth(body, SCENARIOS["noise_4px"], 60)
    now, before = fitted_joints(body, truth), fitted_joints(body, truth, **OFF)
    ratio_now, ratio_before = jitter(now) / jitter(truth.joints), jitter(before) / jitter(truth.joints)
    err_now = np.linalg.norm(now[:, UPPER] - truth.joints[:, UPPER], axis=-1).mean()
    err_before = np.linalg.norm(before[:, UPPER] - truth.joints[:, UPPER], axis=-1).mean()
    print(f"jitter / truth's {ratio_before:.2f} -> {ratio_now:.2f}; joint error {err_before * 1e3:.1f} -> "
          f"{err_now * 1e3:.1f} mm")
    assert ratio_before > 3.0
    assert ratio_now < 0.5 * ratio_before and ratio_now < 2.5
    assert err_now < 1.05 * err_before


@pytest.mark.slow
def test_quick_strokes_stay_sharp(body):
    """Beat gestures (quick down-strokes, 1 px): the wrists' 3D error is no worse than with
    the temporal weights of before (the torso smoothed more, not the arms)."""
    truth = make_truth(body, SCENARIOS["beats"], 60)
    now, before = fitted_joints(body, truth), fitted_joints(body, truth, **OFF)
    err_now = np.linalg.norm(now[:, WRISTS] - truth.joints[:, WRISTS], axis=-1).mean()
    err_before = np.linalg.norm(before[:, WRISTS] - truth.joints[:, WRISTS], axis=-1).mean()
    print(f"wrist error {err_before * 1e3:.1f} -> {err_now * 1e3:.1f} mm")
    assert err_now < 1.1 * err_before
