"""The SMPL-X fitter's schedule (issue 16's speed goal): where a fit's CPU goes by stage, and
motion keyframes only where the temporal solve could not recover the motion from straight lines."""

import time

import numpy as np
import pytest
import torch

import annotate.smplx_fit as smplx_fit
from annotate.smplx_synth import fit_inputs
from mentor.body import load_body_model


@pytest.fixture(scope="module")
def clip_fit():
    """A 30-frame clip fitted with the default schedule, and the fit's own CPU-seconds."""
    torch.set_num_threads(1)
    body = load_body_model()
    clip, targets, xy, conf, sparse = fit_inputs(body, frames=30, seed=3)
    cpu = time.process_time()
    result = smplx_fit.fit_clip(sparse, targets, xy, conf, clip.camera, (clip.size, clip.size), iterations=6,
                                keyframe_stride=4)
    return result, time.process_time() - cpu


def test_the_fit_says_where_its_cpu_went_by_stage(clip_fit):
    result, cpu = clip_fit
    schedule = smplx_fit.default_schedule(6)
    run = {"camera", "body", "hands", "full", "shape", "neighbours", "smooth"}  # no depth given: no depth stage
    assert run | {"setup", "result"} == set(result.stage_cpu), result.stage_cpu
    assert all(v >= 0 for v in result.stage_cpu.values())
    # the accounts cover the fit: their sum is the fit's own CPU (less the wrapper's few ms)
    assert 0.8 * cpu - 0.05 <= sum(result.stage_cpu.values()) <= cpu + 0.05, (result.stage_cpu, cpu)
    for name in run:  # each stage took steps, none beyond its cap (x the restarts' batches: one solve each)
        cap = getattr(schedule, name).iterations
        assert 1 <= result.stage_steps[name] <= 3 * cap, (name, result.stage_steps)


def test_a_higher_motion_tolerance_adds_no_keyframes_on_a_sway():
    """smplx.motion_tolerance_px: a slow sway (5 px off the line between keyframes, 1 px noise)
    adds keyframes at the default 3 px floor and none at 10 px; a 40 px stroke still gets one."""
    from annotate.smplx_fit import motion_keyframes

    frames, points = 49, 12
    rng = np.random.default_rng(4)
    t = np.arange(frames)
    xy = rng.normal(0, 1.0, (frames, points, 2)) + 200.0
    xy[:, :, 0] += 5 * np.sin(2 * np.pi * t / 16)[:, None]  # a sway of a 16-frame period: 5 px off the lines
    conf = np.ones(xy.shape[:2])
    keys = np.arange(0, frames, 8)
    moving = np.ones(points, bool)
    parts = np.r_[np.zeros(points - 1, int), 1]  # a body (its points' mean) and a wrist
    tolerance = 10.0
    assert len(motion_keyframes(keys, xy, conf, moving, min_tolerance_px=3.0, parts=parts)) > len(keys)
    assert motion_keyframes(keys, xy, conf, moving, min_tolerance_px=tolerance, parts=parts).tolist() == keys.tolist()
    xy[18:23, -1, 1] += np.array([15, 35, 40, 35, 15])  # the wrist's stroke
    extra = motion_keyframes(keys, xy, conf, moving, min_tolerance_px=tolerance, parts=parts)
    assert [k for k in extra if k not in keys] and all(16 < k < 24 for k in set(extra) - set(keys)), extra




@pytest.fixture(scope="module")
def tiers_fits():
    """clip_fit's clip (30 frames, keyframe stride 4: 9 stride keyframes, the motion adds 3) fitted with
    motion_tiers on and off: (clip, {on: (FitResult, {stage: frames keyframe_solve solved}), off: ..})."""
    torch.set_num_threads(1)
    body = load_body_model()
    clip, targets, xy, conf, sparse = fit_inputs(body, frames=30, seed=3)
    solve = smplx_fit.keyframe_solve
    fits = {}
    for tiers in (True, False):
        solved: dict[str, int] = {}

        def counted(problem, x, progress):
            solved[problem.spec.name] = solved.get(problem.spec.name, 0) + x.shape[0]
            return solve(problem, x, progress)

        smplx_fit.keyframe_solve = counted
        try:
            fits[tiers] = smplx_fit.fit_clip(sparse, targets, xy, conf, clip.camera, (clip.size, clip.size),
                                             iterations=6, keyframe_stride=4, motion_tiers=tiers), solved
        finally:
            smplx_fit.keyframe_solve = solve
    return body, clip, fits


def test_motion_tiers_run_the_hands_stage_on_the_stride_keyframes_only(tiers_fits):
    """smplx.motion_tiers: the hands stage on the stride keyframes alone, not on the motion keyframes added
    between them (without tiers: on all of them); every other stage on all keyframes either way."""
    _, _, fits = tiers_fits
    stride = len(smplx_fit.keyframe_indices(30, 4, "cpu"))
    on, off = fits[True][1], fits[False][1]
    assert off["hands"] > stride, off  # the motion added keyframes
    assert on["hands"] == stride and on["full"] == off["full"] == off["hands"], (on, off)
    assert {k: v for k, v in on.items() if k != "hands"} == {k: v for k, v in off.items() if k != "hands"}


def test_motion_tiers_still_recover_the_motion(tiers_fits):
    """The motion keyframes' hands and face from the stride keyframes' fits: the upper body's PA-MPJPE (neck,
    head, shoulders, elbows, wrists, index fingers' roots) and the 2D error within 1.1x of the fit whose
    every keyframe ran the hands stage."""
    from mentor.body.geometry import pa_mpjpe

    body, clip, fits = tiers_fits
    upper = [12, 15, 16, 17, 18, 19, 20, 21, 25, 40]

    def pa(result):
        with torch.no_grad():
            joints = body(result.params).joints.numpy()
        return float(pa_mpjpe(joints[:, upper].astype(np.float64), clip.joints[:, upper].astype(np.float64)).mean())

    (on, off), (on_2d, off_2d) = ((pa(fits[t][0]) for t in (True, False)),
                                  (float(np.nanmean(fits[t][0].reprojection_px)) for t in (True, False)))
    print(f"PA-MPJPE {off * 1e3:.2f} -> {on * 1e3:.2f} mm, 2D {off_2d:.2f} -> {on_2d:.2f} px")
    assert on < 1.1 * off and on_2d < 1.1 * off_2d, (on, off, on_2d, off_2d)
