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
