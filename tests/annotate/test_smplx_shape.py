"""Issue 16, item 4: body shape once per clip, and the focal length when the source has none.

The shape used to be pulled to the clip mean frame by frame (a pool that only creeps) under a
shape prior counted once per frame: fitted betas stayed near zero. Now the shape prior counts
once per clip and a stage solves the clip's one shape with every keyframe's pose."""

import numpy as np
import pytest

from annotate.correspondences import all_targets, gather_evidence
from annotate.smplx_fit import estimate_focal, fit_clip
from annotate.smplx_focal import MAX_FITS, SCORE_STAGE, search_focal
from annotate.smplx_fit import SmplxFitter
from annotate.smplx_sparse import SparseSMPLX
from annotate.smplx_synth import make_motion, render_clip
from mentor.config import SmplxConfig
from mentor.record import ClipRecord


def record(clip, frames):
    rec = ClipRecord(id="b", source_id="s", source_uri="synthetic", start=0, end=frames / 25, fps=25.0,
                     width=clip.size, height=clip.size)
    for k, a in clip.arrays.items():
        rec.add_array(k, a, 25.0)
    return rec


def test_shape_is_recovered_from_the_clip(body):
    """Betas 3 and 6 of the synthetic model change the body's proportions (9 and 26 px per unit
    here); the fit used to shrink them toward zero (mean |beta| 0.18 for a true 0.30)."""
    frames = 32
    motion = make_motion(frames, seed=2)
    motion["betas"] = np.array([[0, 0, 0, -1.5, 0, 0, 1.5, 0, 0, 0.0]])
    clip = render_clip(body, motion, noise_px=1.5, seed=2)
    rec = SmplxFitter(SmplxConfig(focal_length=float(clip.camera[0]), device="cpu"), body_model=body)(
        record(clip, frames))
    betas = rec.arrays["smplx.betas"].data
    assert np.allclose(betas, betas[0])  # one shape for the clip
    assert np.corrcoef(betas[0], motion["betas"][0])[0, 1] > 0.8
    assert np.abs(betas[0, [3, 6]] - motion["betas"][0, [3, 6]]).max() < 0.6


@pytest.mark.slow  # 4-6 fits of 24 frames
def test_focal_length_is_found_where_perspective_shows_it(body):
    """A person 1 m from the camera (perspective strong): the search starts from the
    image-size guess (0.72x the true focal) and lands within 20 % of the truth."""
    frames = 24
    motion = make_motion(frames, seed=2)
    motion["transl"][:, 2] -= 0.7
    motion["transl"][:, 1] -= 0.05
    clip = render_clip(body, motion, noise_px=1.5, seed=2)
    targets = all_targets()
    xy, conf, bounds = gather_evidence(clip.arrays, targets, frames, (clip.size, clip.size))
    sparse = SparseSMPLX(body, [t.point for t in targets])
    guess = estimate_focal(clip.size, clip.size)

    def fit_at(focal):
        return fit_clip(sparse, targets, xy, conf, np.array([focal, clip.size / 2, clip.size / 2], np.float32),
                        (clip.size, clip.size), bounds=bounds)

    found = search_focal(fit_at, guess)
    assert len(found.scores) >= 4 and float(found.fit.camera[0]) == pytest.approx(found.focal)
    assert abs(found.focal / clip.camera[0] - 1) < 0.2 < abs(guess / clip.camera[0] - 1)


# ------------------------------------------------------------------------ what the benchmark judges

def test_bone_metric_takes_out_the_size_that_2d_cannot_see(body):
    """With a known focal, a body 4 % bigger and 4 % farther projects to the same pixels: its
    size is the shape prior's guess. The benchmark used to count it as a bone error (4 % on
    every bone); it now judges the bones after the clip's one size factor and prints that beside."""
    from benchmarks.smplx_truth import Fit, bone_lengths
    from mentor.body.scenarios import SCENARIOS, make_truth

    truth = make_truth(body, SCENARIOS["talking"], 12)
    index = np.arange(12)
    bigger = Fit(joints=truth.joints * 1.04, uv=truth.uv, params={}, seconds=1.0, cpu_seconds=1.0)
    m = bone_lengths(truth, bigger, index)
    assert m["bone_pct_worst"] < 0.01 and m["bone_size_pct"] == pytest.approx(4.0, abs=0.01)
    assert m["bone_abs_pct_worst"] == pytest.approx(4.0, abs=0.01)
    longer = truth.joints.copy()
    longer[:, 20] += 0.1 * (truth.joints[:, 20] - truth.joints[:, 18])  # left forearm 10 % longer
    m = bone_lengths(truth, Fit(joints=longer, uv=truth.uv, params={}, seconds=1.0, cpu_seconds=1.0), index)
    assert m["bone_worst_name"] in ("l forearm", "l hand (wrist-middle1)") and m["bone_pct_worst"] > 5
    assert m["bone_signed_pct"]["l forearm"] > 5  # too long: the sign says which way (a bias, or noise)
    shorter = truth.joints.copy()
    shorter[:, 17] -= 0.1 * (truth.joints[:, 17] - truth.joints[:, 16])  # shoulders 10 % closer
    m = bone_lengths(truth, Fit(joints=shorter, uv=truth.uv, params={}, seconds=1.0, cpu_seconds=1.0), index)
    assert m["bone_worst_name"] == "shoulder width" and m["bone_signed_pct"]["shoulder width"] < -5


def test_bone_metric_judges_only_bones_in_the_image(body):
    """Cut at the chest, the arms are out of frame: their lengths are the prior's, not judged."""
    from benchmarks.smplx_truth import Fit, bone_lengths
    from mentor.body.scenarios import SCENARIOS, make_truth

    truth = make_truth(body, SCENARIOS["cut_chest"], 12)
    longer = truth.joints.copy()
    longer[:, 20] += 0.2 * (truth.joints[:, 20] - truth.joints[:, 18])
    m = bone_lengths(truth, Fit(joints=longer, uv=truth.uv, params={}, seconds=1.0, cpu_seconds=1.0), np.arange(12))
    assert "shoulder width" in m["bones_judged"] and "l forearm" not in m["bones_judged"]
    assert m["bone_pct_worst"] < 0.01 < m["bone_abs_pct_worst"]


def test_betas_judged_are_those_the_landmarks_see(body):
    """The synthetic model's beta 0 is the body's size (2D cannot tell it from distance), beta 1
    its girth (moves vertices about the limbs, no landmark) and beta 4 its leg length (below a
    torso-up frame): betas correlation is taken over the others, which move landmarks by pixels."""
    from annotate.correspondences import all_targets
    from benchmarks.smplx_truth import BETA_SEEN_PX, seen_betas
    from mentor.body.scenarios import SCENARIOS, make_truth

    truth = make_truth(body, SCENARIOS["talking"], 12)
    px = seen_betas(body, truth, [t.point for t in all_targets()], frames=4)
    assert (px[[0, 1, 4]] < BETA_SEEN_PX).all() and (px[[2, 3, 6]] > 2 * BETA_SEEN_PX).all(), px


@pytest.mark.slow  # two fits of 10 frames (~10 CPU-s on a quiet box)
def test_benchmark_states_the_fits_sensitivity_to_the_focal(body, monkeypatch, capsys):
    """Issue 16 item 3 asks for the fit's sensitivity to the focal length stated: the benchmark
    fits the focal_unknown clip with its focal given at multiples of the truth, side by side."""
    import benchmarks.smplx_truth as bench
    from annotate.smplx_fit import SmplxFitter
    from mentor.body.scenarios import SCENARIOS, make_truth

    monkeypatch.setattr(bench, "FOCAL_SENSITIVITY", (0.8, 1.0))
    truth = make_truth(body, SCENARIOS["focal_unknown"], 10)
    used = []

    def fitter_for(focal):
        used.append(focal)
        return SmplxFitter(SmplxConfig(focal_length=focal, device="cpu"), body_model=body)

    out = bench.focal_sensitivity(body, fitter_for, truth)
    assert used == [pytest.approx(800.0), pytest.approx(1000.0)] and set(out) == {0.8, 1.0}
    assert all(np.isfinite(m["pa"]["all"]) and m["focal"] == pytest.approx(f * 1000) for f, m in out.items())
    assert "PA-MPJPE / the true focal's: x0.8" in capsys.readouterr().out


@pytest.mark.slow  # 4-7 fits of 6 frames
def test_focal_is_searched_once_per_source_and_recorded(body, monkeypatch):
    """With focal_method "search", a build fits many clips of one source video (one camera): the
    focal search (4-6 fits of the clip) runs on the source's first clip, whose fit is the search's best (not fitted again),
    and its result, a multiple of the size-based guess, is reused for the others, crops included;
    the record says the focal and where it came from."""
    import annotate.smplx_fit as fit_module
    from mentor.record import CropBox

    real_fit = fit_module.fit_clip
    fitted = []

    def fit_scored(*args, **kw):  # the real fit, its objective given a minimum at 1.3x the guess
        fitted.append(float(args[4][0]))
        result = real_fit(*args, **kw)
        result.stage_loss[SCORE_STAGE] = 100.0 * (1 + np.log(fitted[-1] / (1.3 * guess)) ** 2)
        return result

    monkeypatch.setattr(fit_module, "fit_clip", fit_scored)
    frames = 6
    clip = render_clip(body, make_motion(frames, seed=3), noise_px=1.0, seed=3)
    guess = estimate_focal(clip.size, clip.size)
    fitter = SmplxFitter(SmplxConfig(fit_focal=True, focal_method="search", device="cpu", iterations=2), body_model=body)
    first = fitter(record(clip, frames))
    searched = len(fitted)
    focal = float(first.arrays["smplx.camera"].data[0, 0])
    assert 4 <= searched <= MAX_FITS and len(set(fitted)) == searched  # the best fit kept: no focal fitted twice
    assert first.annotations["smplx"]["focal_source"] == "fitted" and abs(focal / (1.3 * guess) - 1) < 0.05
    assert first.annotations["smplx"]["focal_px"] == pytest.approx(focal, abs=0.1)
    # a 2x crop of a 2x bigger frame of the same source: the same camera, searched no more (one fit)
    second = record(clip, frames)
    second.source_width, second.source_height = 2 * clip.size, 2 * clip.size
    second.crop = CropBox(x=0, y=0, size=2 * clip.size)
    second = fitter(second)
    assert len(fitted) == searched + 1 and fitted[-1] == pytest.approx(focal, rel=1e-4)
    assert second.arrays["smplx.camera"].data[0, 0] == pytest.approx(focal, rel=1e-4)
    assert second.annotations["smplx"]["focal_source"] == "fitted"
    other = record(clip, frames)
    other.source_id = "another source"
    fitter(other)
    assert len(fitted) > searched + 2  # another camera: searched again
    given = SmplxFitter(SmplxConfig(fit_focal=True, focal_length=900.0, device="cpu", iterations=2), body_model=body)
    before = len(fitted)
    rec = given(record(clip, frames))
    assert len(fitted) == before + 1 and rec.annotations["smplx"]["focal_source"] == "config"


def test_benchmark_says_where_a_wrong_focal_puts_its_error(body):
    """Under a focal k x the truth's, the scene that projects the same is the true one with every
    depth times k; the fitter's bones cannot shrink in depth, so it keeps the hands' depth in mm
    and moves the whole hand instead (fingers' PA-MPJPE 19 mm at 0.72x, each hand alone 2.4).
    focal_effects tells these apart: a hand moved whole costs fingers' PA-MPJPE but not the hand
    aligned alone, and depths scaled by k keep the wrists' share of the distance but not their mm."""
    from benchmarks.smplx_truth import Fit, HANDS, focal_effects, pa_groups
    from mentor.body.scenarios import SCENARIOS, make_truth

    truth = make_truth(body, SCENARIOS["talking"], 12)
    moved = truth.joints.copy()
    for wrist, fingers in HANDS:
        moved[:, [wrist] + fingers] += np.array([0.02, -0.01, 0.0])
    m = focal_effects(truth, Fit(joints=moved, uv=truth.uv, params={}, seconds=1.0, cpu_seconds=1.0))
    assert m["hand_local_mm"] < 0.01 and pa_groups(moved, truth.joints)["fingers"] > 10
    squashed = truth.joints * np.array([1.0, 1.0, 0.72])
    m = focal_effects(truth, Fit(joints=squashed, uv=truth.uv, params={}, seconds=1.0, cpu_seconds=1.0))
    assert m["wrist_ahead_share"] == pytest.approx(m["wrist_ahead_share_true"], rel=1e-6)
    assert m["wrist_ahead_mm"] == pytest.approx(0.72 * m["wrist_ahead_mm_true"], rel=1e-6) and m["wrist_ahead_mm_true"] < -100
    assert m["neck_distance_m"] == pytest.approx(0.72 * m["neck_distance_true_m"])


def test_shape_step_scales_back_the_pose_of_frames_it_overshoots(body, monkeypatch):
    """Issue 16: the shape stage's step is one for the clip; a frame whose own Gauss-Newton pose step
    overshoots (a large rotation) used to make the clip refuse it, and the damping's climb then ate the
    stage's steps (beats: PA-MPJPE 8.5 mm at focal 1000 px, 14.3 at 999.96). A step refused whole is
    tried again with each frame's pose step scaled back where that lowers its cost (SHAPE_POSE_SCALES):
    a keyframe's body put 0.3-1 rad off (random), the step refused whole is taken and lowers the clip's cost."""
    import torch
    from dataclasses import replace

    import annotate.smplx_fit as fit_module

    frames = 12
    clip = render_clip(body, make_motion(frames, seed=3), noise_px=1.5, seed=3)
    seen = {}
    shape_solve = fit_module.shared_shape_solve

    def spy(problem, x, progress, focal_guess=None):
        seen.update(problem=problem, x=x.clone())
        return shape_solve(problem, x, progress, focal_guess)

    monkeypatch.setattr(fit_module, "shared_shape_solve", spy)
    # without the pose's hand points (smplx.knuckle_weight 0): the problem these random starts were drawn
    # for (with them one of the 24 starts, refused whole, was not lowered by any scale either)
    SmplxFitter(SmplxConfig(focal_length=float(clip.camera[0]), device="cpu", knuckle_weight=0.0),
                body_model=body)(record(clip, frames))
    problem = replace(seen["problem"], spec=replace(seen["problem"].spec, iterations=1))  # the first step only
    body_cols = problem.objective.flat.layout["body"]
    scales = fit_module.SHAPE_POSE_SCALES

    def first_step(x, tried):
        monkeypatch.setattr(fit_module, "SHAPE_POSE_SCALES", tried)
        return shape_solve(problem, x, fit_module.Progress(tolerance=1e-4))

    refused = 0
    for seed in range(24):  # about 1 in 12 such starts overshoots (session 11: seeds 0, 44, 46, 49, 58 of 60)
        x = seen["x"].clone()
        x[seed % frames, body_cols] += (0.3, 0.6, 1.0)[seed % 3] * torch.randn(
            len(x[0, body_cols]), generator=torch.Generator().manual_seed(seed))
        if not torch.equal(first_step(x, (1.0,)), x):
            continue  # the whole step taken: nothing to scale back
        refused += 1
        stepped = first_step(x, scales)
        assert float(problem.frame_costs(stepped).sum()) < float(problem.frame_costs(x).sum())
    assert refused >= 1


def test_collars_held_in_the_shape_stage_leave_the_shoulders_to_the_betas(body, monkeypatch):
    """The fit shrugged: from its body stage on the collars (SMPL-X 13, 14) turned 0.4-0.6 rad where
    the truth's stay at 0.03, raising the shoulders in place of the torso's length (beta 6) and
    narrowing them in place of their width (beta 2): betas r 0.71 on switch, 0.79 on near_4px at
    250 frames. smplx.shape_collar_weight holds them in the shape stage, where the clip's betas are
    decided, and keeps the size's prior (beta 0, which 2D cannot tell from the distance) per frame
    there: without that the size fell 8-14 %. A 40-frame near_1px clip: betas 2 and 6 -1.07 and -0.01
    without the hold against the truth's -1.56 and 0.71; with it -1.61 and 0.58."""
    import annotate.smplx_fit as smplx_fit
    from benchmarks.smplx_truth import run_fitter
    from mentor.body.scenarios import SCENARIOS, make_truth

    truth = make_truth(body, SCENARIOS["near_1px"], 40, keyframe_stride=8)
    true_betas = truth.params["betas"][0]
    shape_priors = []
    solve = smplx_fit.shared_shape_solve

    def spy(problem, x, progress, focal_guess=None):
        shape_priors.append((problem.prior_diag, problem.objective))
        return solve(problem, x, progress, focal_guess)

    monkeypatch.setattr(smplx_fit, "shared_shape_solve", spy)
    fits = {}
    for weight in (0.0, SmplxConfig().shape_collar_weight):
        fitter = SmplxFitter(SmplxConfig(focal_length=1000.0, device="cpu", shape_collar_weight=weight), body_model=body)
        fits[weight] = run_fitter(body, fitter, truth)[1].params
    held = SmplxConfig().shape_collar_weight
    assert held > 0
    (free_prior, _), (held_prior, objective) = shape_priors
    collars = objective.body_columns[(objective.body_pose_index >= 36) & (objective.body_pose_index < 42)]
    betas = objective.beta_columns
    assert len(collars) == 6 and (held_prior[:, collars] == held).all() and (free_prior[:, collars] == 0).all()
    assert (held_prior[:, betas[0]] == free_prior[:, betas[0]] * len(free_prior)).all()  # the size's prior per frame
    assert (held_prior[:, betas[1:]] == free_prior[:, betas[1:]]).all()  # the others' once per clip
    for weight, params in fits.items():
        collar_angle = np.linalg.norm(params["body_pose"].reshape(-1, 21, 3)[:, [12, 13]], axis=2).mean()
        error = np.abs(params["betas"][0] - true_betas)
        if weight > 0:  # 0.12 rad, betas 2 and 6 off by 0.05 and 0.13, the size's beta -0.12
            assert collar_angle < 0.2 and error[[2, 6]].max() < 0.3 and abs(params["betas"][0, 0]) < 0.4
        else:  # 0.37 rad, off by 0.49 and 0.72
            assert collar_angle > 0.3 and error[[2, 6]].max() > 0.5
