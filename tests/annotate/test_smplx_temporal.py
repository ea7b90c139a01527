"""Issue 16: the temporal solve keeps quick gesture strokes.

Beat gestures (0.12 s down-strokes of the forearms, 40-100 px/frame^2 on the wrists at 1.5 m)
were cut by the quadratic smoothness: the temporal solve pulled even well-fitted keyframes
40-100 px off the wrists, and motion_keyframes (the mean offset of a dozen body points
against a tolerance of 2x the keyframes' own median) put no keyframe on most strokes. The
smoothness is now Geman-McClure (robust) and keyframes go where any part leaves the line."""

import numpy as np
import pytest
import torch

from annotate.correspondences import all_targets
from annotate.smplx_fit import SmplxFitter, band_blocks, band_diagonal, band_next, motion_keyframes, temporal_cost
from annotate.smplx_optim import second_difference
from mentor.body import Camera, SmplxParams
from mentor.body.scenarios import SCENARIOS, make_truth
from mentor.config import SmplxConfig
from mentor.record import ClipRecord

WRISTS = [i for i, t in enumerate(all_targets()) if t.point.kind == "joint" and t.point.index in (20, 21)]


def wrist_errors(body, truth, **settings) -> np.ndarray:
    """The fitted wrists' 2D distances (px) from the clean truth where they are in the image
    (N,), the annotator's defaults + settings."""
    T = truth.num_frames
    rec = ClipRecord(id="t", source_id="s", source_uri="synthetic", start=0, end=T / truth.fps, fps=truth.fps,
                     width=truth.size[0], height=truth.size[1])
    for k, a in truth.arrays.items():
        rec.add_array(k, a, truth.fps)
    cfg = SmplxConfig(focal_length=float(truth.camera[0]), device="cpu", **settings)
    rec = SmplxFitter(cfg, body_model=body)(rec)
    assert rec.status["smplx"] == "done", rec.errors
    targets = all_targets()
    with torch.no_grad():
        uv = Camera.from_array(rec.arrays["smplx.camera"].data).project(
            body(SmplxParams.from_record(rec)).points([targets[i].point for i in WRISTS])).numpy()
    return np.linalg.norm(uv - truth.uv[:, WRISTS], axis=-1)[truth.in_frame[:, WRISTS]]


@pytest.mark.slow
def test_quick_strokes_survive_the_temporal_solve(body):
    """Beat gestures (the benchmark's beats, 1.9 m, 60 frames): with the quadratic smoothness
    of before the strokes were cut (the wrists tens of px off the truth on stroke frames)."""
    truth = make_truth(body, SCENARIOS["beats"], 60)
    robust = wrist_errors(body, truth)
    quadratic = wrist_errors(body, truth, smooth_rho=0.0, smooth_rho_rad=0.0)
    print("wrist px robust mean %.2f p90 %.2f max %.2f; quadratic mean %.2f p90 %.2f max %.2f" % (
        robust.mean(), np.percentile(robust, 90), robust.max(), quadratic.mean(), np.percentile(quadratic, 90),
        quadratic.max()))
    assert robust.mean() < 0.6 * quadratic.mean()
    assert np.percentile(robust, 90) < 0.5 * np.percentile(quadratic, 90)


def test_one_moving_point_among_still_ones_gets_keyframes():
    """A wrist's 40 px stroke among 11 still points: the mean offset (3.6 px) hid it, the worst part does not."""
    frames, points = 25, 12
    rng = np.random.default_rng(1)
    xy = rng.normal(0, 1.0, (frames, points, 2)) + 100.0
    xy[10:15, 0, 1] += np.array([15, 35, 40, 35, 15])
    conf = np.ones((frames, points))
    keys = np.array([0, 8, 16, 24])
    extra = motion_keyframes(keys, xy, conf, np.ones(points, bool))
    assert set(keys) < set(extra) and all(8 < k < 16 for k in set(extra) - set(keys)), extra


def test_strokes_everywhere_do_not_raise_the_tolerance():
    """Strokes between every pair of keyframes (the keyframes' own median error 40 px): each
    still gets keyframes, the tolerance coming from the frame-to-frame noise; and on a still
    clip (a dozen body points and a hand's 21 points judged as one part, their mean) none."""
    frames, body_points = 49, 12
    rng = np.random.default_rng(2)
    xy = rng.normal(0, 1.0, (frames, body_points + 21, 2)) + 200.0
    conf = np.ones(xy.shape[:2])
    keys = np.arange(0, frames, 8)
    parts = np.r_[np.arange(body_points), np.full(21, -1)]
    moving = np.ones(len(parts), bool)
    assert motion_keyframes(keys, xy, conf, moving, parts=parts).tolist() == keys.tolist()
    xy[:, 0, 1] += 60 * np.exp(-0.5 * ((np.arange(frames) % 8 - 4) / 1.0) ** 2)
    extra = motion_keyframes(keys, xy, conf, moving, parts=parts)
    assert all(((extra > a) & (extra < b)).any() for a, b in zip(keys[:-1], keys[1:])), extra


def test_banded_weights_match_the_dense_normal_matrix():
    """The temporal solve's bands with per-difference weights (robust ones differ by frame) are
    D2^T W D2's diagonal, first and second off-diagonals."""
    frames = 9
    weights = torch.rand(frames - 2, dtype=torch.float64)
    d2 = second_difference(torch.eye(frames, dtype=torch.float64))  # (T-2,T)
    dense = d2.T @ torch.diag(weights) @ d2
    assert torch.allclose(band_diagonal(weights), dense.diagonal())
    assert torch.allclose(-2 * band_next(weights), dense.diagonal(1))
    assert torch.allclose(weights, dense.diagonal(2))


def test_band_blocks_in_a_kept_workspace_are_the_fresh_ones():
    """band_blocks with a workspace (the temporal solve's: its weighted rows in memory kept across calls,
    no page faults) gives the same blocks bit for bit, and writes them where the workspace says; the
    workspace is the same memory for a smaller clip and grows for a longer one."""
    frames, rows, columns = 12, 20, 7
    g = torch.Generator().manual_seed(0)
    jac = torch.randn(frames, rows, columns, generator=g)
    weights = torch.rand(frames - 2, rows, generator=g)
    spaces = {}

    def workspace(name, shape, like):
        space = spaces.setdefault(name, torch.empty(int(np.prod(shape)), dtype=like.dtype))
        return space[:int(np.prod(shape))].view(shape)

    fresh = band_blocks(jac, weights, diagonal=False)
    kept = band_blocks(jac, weights, diagonal=False, workspace=workspace)
    assert all(torch.equal(a, b) for a, b in zip(fresh, kept))
    written = spaces["weighted"].view(frames, rows, columns)[2:].transpose(1, 2)  # the second band's weighted rows
    assert torch.equal(written, jac.transpose(1, 2)[:-2] * (2 * weights)[:, None])


def test_robust_temporal_cost_caps_a_stroke():
    """Geman-McClure: small accelerations cost as the quadratic term, a stroke at most rho^2 a point."""
    from annotate.smplx_objective import ClipObjective

    class Stub:  # the fields temporal_cost reads besides the quadratic fallback
        pass

    frames, points = 6, 2
    obj = Stub()
    obj.smooth_weights = lambda: torch.ones(frames - 2, points)
    obj.smooth_param = torch.zeros(3)
    obj.gap_weights = lambda: torch.ones(frames - 2)
    obj.depth_smooth = None
    obj.smooth_param_frames = None
    obj.smooth_param_extra = None
    obj.param_weights = lambda: ClipObjective.param_weights(obj)
    obj.temporal_cost = lambda x, uv: ClipObjective.temporal_cost(obj, x, uv)
    x = torch.zeros(frames, 3)
    uv = torch.zeros(frames, points, 2)
    uv[3, 0, 0] = 0.1  # a tiny wobble: accelerations 0.1, -0.2, 0.1
    assert torch.isclose(temporal_cost(obj, x, uv, 10.0, 0.0), obj.temporal_cost(x, uv), rtol=1e-3)
    uv[3, 0, 0] = 100.0  # a stroke: quadratic 6e4, robust under 3 x rho^2
    assert obj.temporal_cost(x, uv) > 5e4 and temporal_cost(obj, x, uv, 10.0, 0.0) < 300.0
