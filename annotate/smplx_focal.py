"""The focal length of a source that gives none: the one under which the clip's whole fit
costs least.

Two ways to it (smplx.focal_method): "joint", the default, fits log(focal) inside the one fit as an
unknown the keyframes share with the clip's shape (annotate.smplx_fit.shared_shape_solve, its prior
`focal_prior_weight`; README "The focal fitted inside the fit"), at about a plain fit's CPU;
"search", below, fits the clip under 3-6 focals (2.9x a plain fit).

A pinhole's focal and the body's distance trade off almost exactly in 2D; what tells them
apart is perspective, and at 1.9 m it is small: the mean reprojection error of a clip moves
under 0.03 px from 0.72x to 1.4x the true focal (README "Shape and focal"), so a search scored
by it wanders. The fit's objective sees more:
under a wrong focal the body that projects to the landmarks needs hands drawn toward the
optical axis and a shape off the prior (the hands, ~15 % of the distance in front of the
neck, look 7 % bigger against the shoulders at 0.72x), and the clip pays for that on every
keyframe at once, its one shape shared. Measured on issue 16's truths (250 frames, busy 2-core
box, load 7-14), the mean objective per keyframe after the neighbours stage (the keyframes'
last, SCORE_STAGE) at 0.72 / 0.85 / 1.0 / 1.2 / 1.4x the true focal: talking 410.6 / 403.9 /
400.7 / 403.1 / 401.8, beats 383.1 / 381.2 / 380.0 / 380.9 / 383.1, lowest at the truth on
both. The last stage's (all frames, after the temporal solve) was not: beats 931.5 / 925.3 /
932.1 / 921.7 / 919.8, lowest at 1.4x (PA-MPJPE 1.36x the true focal's). The mean reprojection
error: talking 1.608 / 1.600 / 1.599 / 1.600 / 1.606 px. 8 keyframes fitted alone and scored by
that error (the search before this one) kept the size-based guess (0.72x).

`search_focal` fits the whole clip (the caller's fit, every stage) under a few focals in log
space, from a bracket about the size-based guess: widened while its edge is best, then the
vertex of the parabola through the best and its neighbours, once more about the new best. The
best fit is returned with the focal, so the clip is not fitted again. A candidate need not be
fitted past SCORE_STAGE: fit_at may return a fit stopped there (annotate.smplx_fit.StoppedFit,
fit_clip's stop_after), and only the best one is finished (its temporal solve on all frames, ~1/4
of a fit), so a search costs its candidates' keyframe stages and one temporal solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# the size-based guess (annotate.smplx_fit.estimate_focal), x the image diagonal: a ~71 deg diagonal field,
# a webcam's or phone's (70-80 deg). The joint estimate leaves a guess too short better than one too long
# (benchmarks/smplx_focal_guess.py, talking at 250 frames, true focal 0.6 / 0.75 / 1.0 / 1.4 x the diagonal,
# the person filling the frame: PA-MPJPE / the known focal's from the diagonal 2.47 / 1.88 / 1.55 / 1.08,
# from 0.7x it 1.37 / 1.12 / 1.04 / 1.16 with FOCAL_STEPS_FACTOR; from 0.8x 1.75 / 1.37 / - / 1.03)
FOCAL_GUESS = 0.7
SCORE_STAGE = "neighbours"  # the keyframes' last stage (annotate.smplx_fit's schedule)
FOCAL_SCALES = (0.7, 1.0, 1.4)  # the first bracket, x the size-based guess (in log focal: even steps)
# the search's prior: +0.1 % of the score per (log(focal / guess) / 0.5)^2, web video's focal being
# within ~x1.65 of the size-based guess: a tie-breaker only (the talking truth's score moved 0.8 %
# from 0.85x to 1.0x the true focal, beats' 0.3 %); it keeps a flat score (a clip with no depth in it) at the guess
FOCAL_PRIOR = 0.001
FOCAL_RANGE = 3.0  # the search stays within guess / this .. guess x this
# the joint estimate's shape stage runs past its iterations while the focal moves more than FOCAL_MOVING (log)
# in two steps, up to FOCAL_STEPS_FACTOR x them: from a guess too long the clip's Gauss-Newton steps leave it
# ~2-4 % a step, half of them refused (a talking clip whose focal is 0.6x the diagonal, from the diagonal:
# 724 -> 589 px in the stage's 8 steps, 504 in 24, at +1.8 CPU-s of 9.5; true 434)
FOCAL_STEPS_FACTOR = 3
FOCAL_MOVING = 0.02
MAX_FITS = 6  # whole-clip fits a search may make (the bracket 3, then widened or a vertex <= 3 times)
VERTEX_TOLERANCE = 0.02  # a vertex within 2 % of a tried focal is taken as found: no fit there


def focal_prior_weight(cost: float) -> float:
    """The weight w of the joint estimate's prior w (log(focal / guess))^2 for a clip whose cost (the
    keyframes' summed objective) is `cost`: FOCAL_PRIOR's tie-breaker, as the search weighs it."""
    return FOCAL_PRIOR * cost / 0.5**2


@dataclass
class FocalSearch:
    """What search_focal found: the focal (px), the best fit under it, every tried focal's score."""

    focal: float
    fit: Any  # the caller's fit result under `focal` (annotate.smplx_fit.FitResult), finished
    scores: dict[float, float] = field(default_factory=dict)


def fit_score(result) -> float:
    """A fit's mean objective per keyframe after SCORE_STAGE (data term and priors, no temporal terms)."""
    loss = result.stage_loss.get(SCORE_STAGE, float("nan"))
    if not math.isfinite(loss):
        raise ValueError(f"the fit recorded no finite {SCORE_STAGE!r} stage loss to score the focal by "
                         f"(stages: {sorted(result.stage_loss)}): search with the batched optimizer")
    return float(loss)


def search_focal(fit_at: Callable[[float], Any], guess: float, *, max_fits: int = MAX_FITS,
                 score: Callable[[Any], float] = fit_score) -> FocalSearch:
    """The focal (px) whose whole-clip fit scores lowest (see the module docstring).

    fit_at(focal) -> the clip's fit under that focal (raises ValueError where the clip cannot be
    fitted: passed on), or a fit stopped after SCORE_STAGE with a finish() giving the whole fit
    (called on the best only); guess: the size-based focal (annotate.smplx_fit.estimate_focal).
    """
    if not guess > 0 or not math.isfinite(guess):
        raise ValueError(f"guess {guess!r}: the size-based focal must be a positive number of pixels")
    if max_fits < len(FOCAL_SCALES):
        raise ValueError(f"max_fits {max_fits}: the first bracket alone takes {len(FOCAL_SCALES)} fits")
    scores: dict[float, float] = {}
    best: dict[str, Any] = {}
    low, high = math.log(guess / FOCAL_RANGE), math.log(guess * FOCAL_RANGE)

    def tried_at(log_focal: float) -> None:
        focal = float(math.exp(min(max(log_focal, low), high)))
        if focal in scores or len(scores) >= max_fits:
            return
        result = fit_at(focal)
        scores[focal] = score(result) * (1 + FOCAL_PRIOR * (math.log(focal / guess) / 0.5) ** 2)
        if "score" not in best or scores[focal] < best["score"]:
            best.update(score=scores[focal], focal=focal, fit=result)

    for scale in FOCAL_SCALES:
        tried_at(math.log(guess * scale))
    step = math.log(FOCAL_SCALES[-1] / FOCAL_SCALES[1])
    for _ in range(3):  # widen while the best is at an edge; then a parabola's vertex about the best
        if len(scores) >= max_fits:
            break
        tried = sorted(scores)
        at = tried.index(best["focal"])
        if at == 0 or at == len(tried) - 1:
            tried_at(math.log(best["focal"]) + (step if at else -step))
            continue
        logs = np.log(tried[at - 1:at + 2])
        a, b, _ = np.polyfit(logs, [scores[f] for f in tried[at - 1:at + 2]], 2)
        vertex = float(np.exp(np.clip(-b / (2 * a), logs[0], logs[2]))) if a > 0 else None
        if vertex is None or min(abs(math.log(vertex / f)) for f in tried) < VERTEX_TOLERANCE:
            break  # no curvature, or the vertex is where a fit already is
        tried_at(math.log(vertex))
    finish = getattr(best["fit"], "finish", None)  # a candidate stopped after SCORE_STAGE: the rest on the best
    return FocalSearch(focal=best["focal"], fit=best["fit"] if finish is None else finish(), scores=scores)
