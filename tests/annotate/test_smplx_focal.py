"""Issue 16, item 3 (and issue 15's cost): the focal length fitted inside the one fit, log f a shared
unknown of the shape stage (smplx.focal_method "joint", the default), or searched by the whole clip
fit's objective ("search").

The search used to fit 8 frames alone under each focal and score the mean reprojection error,
which moves < 0.03 px from 0.72x to 1.4x the true focal at 1.9 m: it kept the size-based guess
(0.72x; PA-MPJPE 2.7x the known focal's). It now fits the whole clip under each focal, scores
the keyframes' objective after the neighbours stage (not the last stage's: see smplx_focal)
and keeps the best fit."""

import math
from types import SimpleNamespace

import pytest

from annotate.smplx_focal import FOCAL_RANGE, MAX_FITS, SCORE_STAGE, fit_score, search_focal


def scored(curve):
    """A fit_at whose fits score curve(focal) and remember their focal (as a FitResult would its camera)."""
    calls = []

    def fit_at(focal):
        calls.append(focal)
        return SimpleNamespace(stage_loss={SCORE_STAGE: curve(focal), "smooth": -curve(focal)}, focal=focal)

    return fit_at, calls


def test_search_lands_on_the_lowest_objective_from_the_size_based_guess():
    """The objective's minimum at 1.38x the guess (the talking truth's 1000 px against 724):
    the bracket is widened past its edge, then the parabola's vertex is fitted."""
    guess, true = 724.0, 1000.0
    fit_at, calls = scored(lambda f: 527.0 + 40.0 * math.log(f / true) ** 2)
    found = search_focal(fit_at, guess)
    assert abs(found.focal / true - 1) < 0.03 and len(calls) <= MAX_FITS
    assert found.fit.focal == found.focal  # the best fit comes back: the clip is not fitted again
    assert set(found.scores) == set(calls) and min(found.scores, key=found.scores.get) == found.focal


def test_search_keeps_the_guess_where_the_objective_is_flat():
    """A clip with no perspective in it (every focal fits alike): the prior keeps the guess."""
    fit_at, calls = scored(lambda f: 500.0)
    found = search_focal(fit_at, 724.0)
    assert found.focal == pytest.approx(724.0) and len(calls) <= MAX_FITS


def test_search_stays_within_its_range():
    fit_at, calls = scored(lambda f: -math.log(f))  # always better longer: clamped
    found = search_focal(fit_at, 724.0)
    assert max(calls) <= 724.0 * FOCAL_RANGE * (1 + 1e-9) and found.focal == max(calls)


def test_search_refuses_a_bad_guess_and_a_fit_without_a_loss():
    fit_at, _ = scored(lambda f: 1.0)
    with pytest.raises(ValueError, match="guess"):
        search_focal(fit_at, float("nan"))
    with pytest.raises(ValueError, match="max_fits"):
        search_focal(fit_at, 724.0, max_fits=2)
    with pytest.raises(ValueError, match="stage loss"):
        fit_score(SimpleNamespace(stage_loss={"smooth": 1.0}))  # the per-frame L-BFGS fit has no keyframe stages


@pytest.mark.slow  # a 250-frame clip (~10 CPU-s, ~72 with the search)
def test_annotator_finds_the_talking_truths_focal_from_the_size_based_guess():
    """Issue 16's focal_unknown clip (talking at 1.9 m, 1 px, 250 frames as the benchmark judges
    it): the size-based guess is 0.72x the true focal, where PA-MPJPE is 2.7x the known focal's;
    the default (joint) fit lands within 10 % (1056 px; the search, focal_method "search", 1014 px).
    On the clip's first 100 frames the search found 1293 px: its score needs the long clip's keyframes."""
    from benchmarks.smplx_truth import run_fitter
    from annotate.smplx_fit import SmplxFitter, estimate_focal
    from mentor.body import load_body_model
    from mentor.body.scenarios import SCENARIOS, make_truth
    from mentor.config import SmplxConfig

    body = load_body_model()
    truth = make_truth(body, SCENARIOS["focal_unknown"], 250)
    rec, fit = run_fitter(body, SmplxFitter(SmplxConfig(device="cpu", threads=1), body_model=body), truth)
    true, guess = float(truth.camera[0]), estimate_focal(*truth.size)
    assert abs(guess / true - 1) > 0.25 and rec.annotations["smplx"]["focal_source"] == "fitted"
    assert abs(float(fit.params["camera"][0, 0]) / true - 1) < 0.1


@pytest.mark.slow  # a 250-frame clip (~10 CPU-s)
def test_annotator_finds_a_webcams_wide_focal_from_the_size_based_guess():
    """A talking clip through a wide lens (focal 0.65x the image diagonal, a ~75 deg diagonal field,
    a webcam's) with the person filling the frame (1.9 m x 0.47: 0.89 m): the size-based guess used
    to be the diagonal (1.54x too long), which the joint fit left in steps of a few % and stopped at
    ~1.2x the truth (0.6x: 1.36x, PA-MPJPE 2.5x the known focal's). From 0.7x the diagonal, the
    shape stage run on while the focal moves, it lands within 15 % (521 px for 471: 1.11x; before,
    from the diagonal in the stage's 8 steps, 614 px: 1.31x)."""
    import math
    from dataclasses import replace

    from benchmarks.smplx_truth import run_fitter
    from annotate.smplx_fit import SmplxFitter
    from mentor.body import load_body_model
    from mentor.body.scenarios import SCENARIOS, make_truth
    from mentor.config import SmplxConfig

    body = load_body_model()
    true = 0.65 * math.hypot(512, 512)
    truth = make_truth(body, replace(SCENARIOS["focal_unknown"], distance=1.9 * true / 1000), 250, focal=true)
    assert truth.size == (512, 512)
    rec, fit = run_fitter(body, SmplxFitter(SmplxConfig(device="cpu", threads=1), body_model=body), truth)
    assert rec.annotations["smplx"]["focal_source"] == "fitted"
    assert abs(float(fit.params["camera"][0, 0]) / true - 1) < 0.15


def test_search_finishes_only_the_best_candidate():
    """Issue 15: candidates stopped after SCORE_STAGE (fit_clip's stop_after); the best alone is
    finished (its temporal solve), and that finished fit is what the search returns."""
    finished = []

    def fit_at(focal):
        def finish():
            finished.append(focal)
            return SimpleNamespace(focal=focal, whole=True)

        return SimpleNamespace(stage_loss={SCORE_STAGE: 527.0 + 40.0 * math.log(focal / 1000.0) ** 2},
                               focal=focal, finish=finish)

    found = search_focal(fit_at, 724.0)
    assert finished == [found.focal] and found.fit.whole and found.fit.focal == found.focal
    assert len(found.scores) >= 4  # the others were scored, never finished


def test_a_stopped_fit_finished_is_the_whole_fit():
    """fit_clip(stop_after="neighbours") then finish() gives the same fit as one run through, with
    another clip's fit made in between (the shared SparseSMPLX's contour table changed); only the
    keyframes' last stage is a stop point."""
    import numpy as np
    import torch

    from annotate.correspondences import all_targets, gather_evidence
    from annotate.smplx_fit import StoppedFit, fit_clip
    from annotate.smplx_sparse import SparseSMPLX
    from annotate.smplx_synth import make_motion, render_clip
    from mentor.body import load_body_model

    body = load_body_model()
    frames = 30
    clip = render_clip(body, make_motion(frames, seed=3), noise_px=1.0, seed=3)
    targets = all_targets()
    xy, conf, bounds = gather_evidence(clip.arrays, targets, frames, (clip.size, clip.size))
    sparse = SparseSMPLX(body, [t.point for t in targets])

    def fit(focal, **kw):
        return fit_clip(sparse, targets, xy, conf, np.array([focal, clip.size / 2, clip.size / 2], np.float32),
                        (clip.size, clip.size), bounds=bounds, iterations=4, **kw)

    focal = float(clip.camera[0])
    whole = fit(focal)
    stopped = fit(focal, stop_after=SCORE_STAGE)
    assert isinstance(stopped, StoppedFit) and SCORE_STAGE in stopped.stage_loss
    assert "smooth" not in stopped.stage_loss and "smooth" in whole.stage_loss
    fit(focal * 1.5)  # another fit between: the resumed one must not see its state,
    sparse.set_contour_rows(torch.tensor([39]))  # nor the contour rows its result left selected
    done = stopped.finish()
    assert done.stage_loss == pytest.approx(whole.stage_loss, rel=1e-5)
    np.testing.assert_allclose(done.joints, whole.joints, atol=1e-4)
    assert "smooth" in done.stage_cpu and done.stage_cpu["smooth"] > 0
    with pytest.raises(ValueError, match="stop_after"):
        fit(focal, stop_after="full")
    with pytest.raises(ValueError, match="stop_after"):
        fit(focal, stop_after=SCORE_STAGE, optimizer="lbfgs")



def test_annotator_fits_candidates_to_the_score_and_finishes_the_best():
    """SmplxFitter.searched_focal: every candidate fitted to SCORE_STAGE only (fit_clip's
    stop_after), the best one finished, nothing fitted again; the source's next clip reuses the focal."""
    from annotate.smplx_fit import SmplxFitter, StoppedFit

    calls = []

    def fit_at(focal, stop_after=None):
        calls.append((focal, stop_after))
        whole = SimpleNamespace(focal=focal, whole=True)
        loss = 527.0 + 40.0 * math.log(focal / 1000.0) ** 2
        return StoppedFit(camera=None, stage_loss={SCORE_STAGE: loss}, stage_cpu={},
                          finish=lambda: calls.append((focal, "finish")) or whole)

    fitter = SimpleNamespace(focal_ratios={})
    rec = SimpleNamespace(source_id="s")
    focal, fit = SmplxFitter.searched_focal(fitter, rec, 724.0, fit_at)
    assert len(calls) >= 5 and all(stop == SCORE_STAGE for _, stop in calls[:-1])
    assert calls[-1] == (focal, "finish") and fit.whole and fit.focal == focal and abs(focal / 1000.0 - 1) < 0.03
    again, none = SmplxFitter.searched_focal(fitter, rec, 362.0, fit_at)  # a crop half the size
    assert again == pytest.approx(focal / 2) and none is None and calls[-1] == (focal, "finish")


def test_the_focal_column_is_the_projection_moved_with_focal_and_distance():
    """smplx_objective.focal_column against finite differences: the focal times e^eps and the body
    moved away by the same factor of its mean depth (what shared_shape_solve's step does)."""
    import torch

    from annotate.smplx_objective import body_depth, focal_column
    from mentor.body import Camera

    torch.manual_seed(0)
    points = torch.randn(2, 7, 3) * torch.tensor([0.3, 0.3, 0.08]) + torch.tensor([0.1, -0.2, 1.9])  # a body at 1.9 m
    camera = Camera.centered(724.0, 512, 640)
    depth = body_depth(points)
    # the translation's Jacobian columns: a translation moves every point alike
    transl_jacobian = torch.zeros(2, 7, 2, 3)
    z = points[..., 2]
    transl_jacobian[..., 0, 0] = transl_jacobian[..., 1, 1] = camera.focal / z
    transl_jacobian[..., 0, 2], transl_jacobian[..., 1, 2] = (-camera.focal * points[..., 0] / z**2,
                                                              -camera.focal * points[..., 1] / z**2)
    column = focal_column(camera, camera.project(points), transl_jacobian.reshape(2, 14, 3)[..., 2], depth)
    eps = 1e-2
    away = torch.zeros(2, 1, 3)
    away[..., 2] = (math.exp(eps) - 1) * depth[:, None]
    moved = Camera.centered(724.0 * math.exp(eps), 512, 640).project(points + away)
    numeric = ((moved - camera.project(points)) / eps).reshape(2, 14)
    assert torch.allclose(column, numeric, rtol=0.02, atol=0.05)
    offset = (camera.project(points) - torch.tensor([256.0, 320.0])).abs()
    assert column.abs().max() < 0.2 * offset.max()  # the distance all but cancels the focal's own share


def test_joint_focal_recovers_the_focal_a_guess_misses_by_1_4x(body):
    """A 60-frame talking clip at 1.7 m rendered with a 1000 px focal, fitted from its 512 px frame's
    diagonal, 724 px (1.38x short; the size-based guess until FOCAL_GUESS, 0.7x the diagonal, from which
    this clip's fit finds 860 px: 1.97x short, a field wider than a webcam's). With fit_focal the one
    fit's camera lands within 10 % (1000 px at this commit); without it, the fit keeps the guess."""
    import numpy as np

    from annotate.correspondences import all_targets, gather_evidence
    from annotate.smplx_fit import fit_clip
    from annotate.smplx_sparse import SparseSMPLX
    from annotate.smplx_synth import make_motion, render_clip

    frames = 60
    clip = render_clip(body, make_motion(frames, seed=4), focal=1000.0, noise_px=1.0, seed=4)
    targets = all_targets()
    xy, conf, bounds = gather_evidence(clip.arrays, targets, frames, (clip.size, clip.size))
    sparse = SparseSMPLX(body, [t.point for t in targets])
    guess = math.hypot(clip.size, clip.size)
    assert 1000.0 / guess > 1.35

    def fit(**kw):
        return fit_clip(sparse, targets, xy, conf, np.array([guess, clip.size / 2, clip.size / 2], np.float32),
                        (clip.size, clip.size), bounds=bounds, **kw)

    fitted = fit(fit_focal=True)
    assert abs(float(fitted.camera[0]) / 1000.0 - 1) < 0.1
    with pytest.raises(ValueError, match="fit_focal"):
        fit(fit_focal=True, optimizer="lbfgs")


def test_annotator_fits_the_focal_once_per_source():
    """SmplxFitter.joint_focal: the source's first clip fitted once with its focal free, the focal
    kept as a multiple of the guess; the source's next clip (a crop half the size) reuses it, unfitted."""
    import numpy as np

    from annotate.smplx_fit import SmplxFitter

    calls = []

    def fit_at(focal):
        calls.append(focal)
        return SimpleNamespace(camera=np.array([focal * 1.38, 256, 256], np.float32))

    fitter = SimpleNamespace(focal_ratios={})
    rec = SimpleNamespace(source_id="s")
    focal, fit = SmplxFitter.joint_focal(fitter, rec, 724.0, fit_at)
    assert calls == [724.0] and focal == pytest.approx(724.0 * 1.38) and fit.camera[0] == pytest.approx(focal)
    again, none = SmplxFitter.joint_focal(fitter, rec, 362.0, fit_at)
    assert again == pytest.approx(362.0 * 1.38) and none is None and calls == [724.0]
