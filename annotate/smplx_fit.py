"""SMPL-X fitting of a whole clip in one batched optimisation, and its annotator.

The objective (annotate/smplx_objective.py) is SMPLify-X's 2D-landmark fit with clip terms:
shape shared by the clip, every other parameter per frame, temporal smoothness on the
projected points. The solver is Levenberg-Marquardt batched over frames
(annotate/smplx_optim.py): each frame's ~100 unknowns get a Gauss-Newton step from the
analytic Jacobian of annotate/smplx_flat.py (only the joints that move an observed point;
the legs of a torso-up clip stay at zero) and the exact gradient (autograd), so a stage
needs ~5-12 steps, not hundreds.

`fit_clip` runs a `Schedule` of named stages, coarse to fine in time; each strategy is a function:
  keyframes (every keyframe_stride-th frame with landmarks, more where the landmarks move faster
  than straight lines between them: `motion_keyframes`), each frame its own problem, SMPLify-X's stages:
    camera      `keyframe_solve`: translation and root from the torso and face (from a
                closed-form translation)
    body        `elbow_restarts`: body pose and shape from two elbow bends, the better kept
                (a forearm's depth is ambiguous in 2D; one start where no keyframe sees a forearm)
    depth       `depth_restarts` (with MediaPipe's z given; the annotator's smplx.depth_restarts):
                keyframes whose arm bones' depth disagrees with z solved again from those bones
                mirrored (smplx_depth.py); a Viterbi picks with the landmarks, z and temporal consistency
    hands, full `keyframe_solve`: everything, hands joining at a wide robust scale that then narrows
                (then z's unit read again from the arm bones where that reads lower: KAPPA_REREAD)
    shape       `shared_shape_solve`: the clip's one shape and every keyframe's pose in one step
                (with fit_focal, the clip's focal too; a noisy clip's pose points steadied: `steady_pose`)
    neighbours  `neighbour_restarts`: each keyframe also restarts from its neighbours' fits,
                and `viterbi` keeps the most consistent sequence (removes runs of flipped frames)
  all frames: interpolated from the keyframes, then
    smooth      `temporal_solve`: one coupled Gauss-Newton solve with the temporal terms
                (block-pentadiagonal normal equations, solved exactly by block-banded Cholesky),
                Geman-McClure on the accelerations (smplx.smooth_rho / smooth_rho_rad: a quick
                stroke goes through, jitter is damped).
With optimizer="lbfgs" every stage is `lbfgs_solve` on its frames (the per-frame baseline).
Camera: OpenCV pinhole at the origin, principal point at the image centre.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np
import torch

from annotate.correspondences import (KNUCKLE_GROUPS, Target, all_targets, gather_depth, gather_evidence,
                                      knuckle_hands, weigh_knuckles)
from annotate.landmark_outliers import clean_landmarks
from annotate.pose_prior import hold_spine_if_cut, hold_torso, make_pose_prior
from annotate.smplx_depth import DepthEvidence, evidence_mirrored
from annotate.smplx_focal import (FOCAL_GUESS, FOCAL_MOVING, FOCAL_RANGE, FOCAL_STEPS_FACTOR, SCORE_STAGE, focal_prior_weight,
                                  search_focal)
from annotate.smplx_objective import DepthSmoothing, DepthTerm
from annotate.smplx_flat import FlatSMPLX
from annotate.smplx_objective import (BETA_POOL, HAND_GAP_DECAY, TORSO_JOINTS, ClipObjective, StageProblem,
                                      StageSpec, body_depth, geman_mcclure, irls_weight, rest_x)
from annotate.smplx_optim import banded_cholesky, banded_solve, block_pcg, damped_solve, positive_cholesky, second_difference, second_difference_t, viterbi
from annotate.smplx_sparse import SparseSMPLX
from annotate.smplx_steady import steadied
from mentor.body import Camera, ModelPoint, SmplxParams

log = logging.getLogger(__name__)

STAGE = "smplx"
FLAT_ALL = ("transl", "global_orient", "body", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose",
            "right_hand_pose", "expression", "betas")
UPPER_BODY_JOINTS = [12, 15, 16, 17, 18, 19, 20, 21]  # for the jitter score
# cost per rad^2 of pose change between (key)frames when picking among a frame's candidate fits
TRANSITION_WEIGHT = 100.0
# ... x this in the depth stage's pick (depth_restarts). Each keyframe mirrors the bones its own z
# disputes, so neighbouring restarts differ in which bones moved and the full weight kept a run
# of wrong keyframes for consistency: on the benchmark's away scenario (250 frames) 6 keyframes
# in a row (frames 197-224) kept the original fit though their restarts had both the lower 2D
# cost and the lower z misfit (forearms 40-55 deg off the truth against 1-20), leaving 13 frames
# of depth flips (2.6 %). At 0.2: 0 flips, PA-MPJPE 10.4 -> 9.9 mm (worst group 12.5 -> 11.4);
# at 0.05: 9.8 (11.1); outliers unchanged (24.1). The neighbours stage keeps the full weight.
DEPTH_TRANSITION_SHARE = 0.2
# the temporal solve's steps: SMOOTH_STEPS, then more (up to SMOOTH_STEPS_MAX) while the last one still
# lowered the clip's cost by at least SMOOTH_GAIN of it (4 stopped short: at 4 px the 4th step still
# gained 5 %, noise_4px 250 frames, the 5th 1 %, the 6th 0.25 %; at 1 px the 4th 2.9 %, crossed, the
# 5th 0.7 %). benchmarks/smplx_truth (250 frames, 7bd1ab2's fitter, 4 steps -> this, PA-MPJPE all
# (worst group) mm, 3D jitter / truth's): noise_4px 16.6 (17.8) -> 15.3 (16.3), 1.34 -> 1.32; noise_2px
# 8.4 (9.0) -> 8.1 (8.5), 1.23 -> 1.21; talking 4.9 (5.1) -> 4.8 (5.1), 1.17 -> 1.14; crossed 7.5
# (10.4) -> 7.5 (10.3), 1.45 -> 1.43; beats 8.5 (9.3) -> 8.6 (9.5), 1.04 -> 1.03; +1 step (~0.7 CPU-s).
# 6 steps everywhere: noise_4px 14.5 (16.7) but beats 8.8 (9.7); 8: noise_4px 13.7 (17.0).
# SMOOTH_GAIN 0.02 -> 0.03 (benchmarks/smooth_ab gain30, all 17 scenarios, 250 frames, 85cfefc's fitter): one
# step fewer on talking, toward, near_4px, far_1px and outliers (their 4th step gained 2-3 %), the other 12
# bit-identical; PA-MPJPE all (worst group) mm talking 4.77 (5.15) -> 4.78 (5.18), toward 5.27 (6.37) -> 5.23
# (5.95), near_4px 14.11 -> 14.08, far_1px 7.11 (7.77) -> 6.92 (7.55), outliers 9.56 (10.60) -> 9.44 (10.46);
# 3D jitter talking 1.05 -> 1.07x, outliers 0.99 -> 1.00x. The smooth stage's CPU 1.26-1.33x on those three
# (benchmarks/smplx_ab gain30, least of 3 interleaved, load 4-10). 0.05 cost a 5th step where it still
# mattered: noise_4px 16.25 -> 17.04 mm, cut_chest +0.4, away +0.1
SMOOTH_STEPS, SMOOTH_STEPS_MAX, SMOOTH_GAIN = 4, 8, 0.03
# keyframe_solve: a frame whose last FRAME_SETTLED_STEPS accepted steps each lowered its cost by less
# than its stage's settle_gain is settled: neither evaluated nor stepped again in that stage.
# KEYFRAME_SETTLE_GAIN in every keyframe stage (default_schedule; smplx_ab settle_off measures it off). At one
# seed (e854968) it read as a regression (far_1px 7.11 -> 7.92 mm, outliers 9.56 -> 10.14), within one seed's
# noise floor (~0.7 mm). Over 3 seeds (benchmarks/smplx_ab settle2 --seeds 3, 250 frames, 854a223's fitter),
# the 16 focal-given scenarios x 3 seeds: PA-MPJPE all -0.14 mm mean (sd 0.87), worst group -0.16, no goal of
# issue 16 lost (2 gained), the worst scenario's 3-seed mean far_1px +0.41 (worst single noise_2px@1000 +1.13),
# talking -1.37 (talking@1000 10.75 -> 5.65 mm: the clip landing in the other of two basins). CPU 1.15x: beats
# 1.27x (10.23 -> 8.08 CPU-s), drop_runs 1.18, near_1px 1.14, far_1px 1.09, talking 1.06 (least of 3
# interleaved, load 2-3; the full stage 1.7-2.5x, hands 1.2-1.45x). Not where the fit fits the focal
# (fit_focal: the keyframe stages run under its size-based guess, which the shape stage then moves):
# focal_unknown at 9 seeds +0.85 mm mean, two of them +4.8 and +4.1 (@1000 5.67 -> 10.50; @7000 betas r
# 0.97 -> 0.86), none as far the other way; the same clips with the focal given (talking) -0.72 at 6 seeds.
# Per stage, not taken: hands, full and neighbours alone (settle2_hfn) 1.12x at reps 1, toward@1003's 3D
# jitter 1.28 -> 1.32x (a goal lost); body, depth and neighbours alone (settle2_bdn) 1.02x, noise_4px
# +1.91 mm (its PA <= 20 mm goal lost); 1e-3 (settle3, one seed): no CPU gain the box could tell
KEYFRAME_SETTLE_GAIN = 1e-2
# 1 (smplx_ab settled1 --seeds 3 on 7090a83, the 16 focal-given scenarios x 3): CPU 1.10x (reps 1), PA-MPJPE
# +0.23 mm mean, far_4px@1007 +12.2 mm and crossed@2002 past 12 mm: two goals lost
FRAME_SETTLED_STEPS = 2
# elbow_restarts: both elbow starts for this many of the body stage's steps, then each frame's cheaper
# one alone (None: both for all its steps). Off: at 6 of 12 (smplx_ab elbowk6 --seeds 3, 17 scenarios x 3
# seeds, 854a223) PA-MPJPE all +0.04 mm mean but far_4px@1007 +11.5 mm (its PA <= 20 mm goal lost: the far,
# noisy forearms' depth left with the wrong start; far_4px's 3-seed mean +3.83), CPU 1.03x (reps 1); with
# settle2 alike (+11.1 mm there); at 4 (one seed): away 7.95 -> 9.22 (flips 0 -> 0.4 %)
ELBOW_SHARED_STEPS: int | None = None
NOISE_SCALE_MAX = 4.0  # the temporal weights grow with the clip's landmark noise up to this x its reference
# z's unit from the fit solved from 2D alone replaces the one from the fit made with z in it when
# it is at least this x larger (annotate.smplx_objective.DepthTerm.calibrate; at 100 frames: far_1px
# 1.56x, the fit held by z's compression; beats 1.07x, the 2D fit's own error)
KAPPA_TRAPPED = 1.2
# ... and that 2D-only solve runs only where the closed form of that ratio (DepthTerm.kappa_from_2d:
# each foreshortened arm bone's depth from its 2D length in the landmarks and its length in the fit)
# is at least this x the fit's unit; elsewhere the fit's unit is kept without it. On the benchmark's
# 17 scenarios (250 frames, session 9) the closed form was within -0.08..+0.08 of the solve's ratio
# (talking 1.03 against 1.05, far_4px 1.08 against 1.16, away 1.25 against 1.20, far_1px 1.27
# against 1.35): every clip kept the unit it had, 12 of 17 skip the solve (talking 0.8 CPU-s, beats 1.6)
KAPPA_SCREEN = 1.1
# ... and only where the fit's unit reads under this (z's nominal unit is 1, MediaPipe's compression
# puts the true one at 1-1.7): a fit held at the nominal unit reads about 1 (250 frames: far_1px 0.96,
# far_4px 1.04), one that 2D moved off it more (the other 14 scenarios 1.16-1.94). With z's noise
# taken out of the bones' readings (DepthTerm.with_noise) the 2D-only solve reads 1.29-1.41x on those
# two, but also 1.29x on noise_4px (1.40: its unit 1.86 against the truth's 1.63, PA-MPJPE 17.1 ->
# 18.6 mm) and 1.33x on away (1.22: the solve's forearms point elsewhere): those keep their unit
KAPPA_HELD = 1.1
# after the full stage (hands in, the arms' 2D settled) z's unit is read again from the keyframes' arm
# bones with their length factor fitted beside it (DepthTerm.unit_from_bones) and taken where it reads
# under this x the unit in use. Issue 16 (bones within 2 %): the unit set after the body stage can be
# too high, and the fit then keeps itself consistent with it: the arms tilted further in depth and drawn
# longer to keep their image (benchmark outliers, 250 frames: 1.49 against the truth's 1.20, arms 4.8 %
# long against the shoulders' 1.4 %, beta 3 -0.66 for -1.17; drop_keyframe 1.94 for 1.53). Read there,
# 1.25 and 1.70; taken: outliers bones 2.6 -> 1.1 %, PA-MPJPE 22.8 -> 9.3 mm; drop_keyframe 11.3 -> 8.1.
# Only downward: that reading runs above the truth's unit on 15 of 17 scenarios (-3..+12 %, away +53 %:
# its forearms), so it reads high where the unit in use is right; under 0.9x it was in those two only
# (0.84, 0.88; the others 0.96-1.27). At 1.0 (any lower reading; with KAPPA_BLEND, benchmarks/smplx_ab
# blend10+reread100, session 15): on far_4px it reads within 2 % whichever keyframes the body stage saw (seeds
# 0-4: 1.45/1.48, 1.28/1.29, 1.61/1.61, 1.49/1.49, 1.55/1.55 all keyframes / stride ones) where the unit set
# after it read 1.51/1.62, 1.11/1.37, 1.65/1.46, 1.52/1.64, 1.64/1.58 (truth 1.50, 1.14, 1.40, 1.51, 1.40)
KAPPA_REREAD = 1.0
# the tests above as ramps of this half-width instead of steps (0: steps): KAPPA_HELD and KAPPA_TRAPPED weigh
# the 2D-only solve's unit (unit_blend; a geometric mean with the fit's), KAPPA_SCREEN's gate to run that solve
# is only widened by it (the solve runs where the closed form reads above (KAPPA_SCREEN - KAPPA_BLEND) x the
# fit's unit). At 4 px the steps flipped on a hair: far_4px seed 1007 read the fit's unit 1.106 with every keyframe
# through the body stage, 1.100 with the stride ones (truth 1.14): the solve skipped or taken, z's unit 1.11
# or 1.37, PA-MPJPE 13.6 or 24.8 mm; ramped 1.18 and 1.19, 15.3 and 14.7 mm. With KAPPA_REREAD 1.0, against
# 0.9 and the steps (benchmarks/smplx_ab blend10+reread100, 1 rep): 17 scenarios x seeds 0-2 at e70c782
# PA-MPJPE -0.48 mm mean, no scenario's mean worse (16 of 51 fits moved: far_4px -0.81 / +1.72 / -3.31,
# talking@2000 -2.21, crossed@2002 -2.60, drop_runs@2009 -2.99, focal_unknown@2000 -2.43), no goal lost,
# CPU 0.99x; at c49b3e8 (keyframe stages settling) far_4px, talking, crossed, near_4px x seeds 0-2: -0.69 mm
# mean (far_4px +0.09 / +0.72 / -3.28, talking@2000 -2.24, crossed -0.93 / -2.67 at 1002 / 2002)
KAPPA_BLEND = 0.1
# the shape stage (where the clip's betas are decided) reads the pose points of a clip noisier than the
# temporal weights' tuning (noise_scale > 1: 2 px and up) through a local quadratic over this many frames
# either side (steady_pose, annotate/smplx_steady.py; 0: off). Issue 16 (bones within 2 %): a bone's tilt in
# depth is free per frame, so noise that shortens a bone in the image is taken by the tilt and noise that
# lengthens it by a longer bone: far_4px's arms came out 2-3 % long against the shoulders and eyes (the
# signed shoulder width -1.2, -1.1, +0.3, -2.1 % at seeds 1-4, +2.65 % at seed 0 where the clip's drift widened
# the observed shoulders by 1 px; with z's true unit forced the bones still missed at 4 of 5 seeds; with the
# pose's noise at 1 px they read 1.3-1.4 %). benchmarks/smplx_ab steady3 (1 rep): far_4px seeds 0-4 worst bone
# 2.65 / 2.84 / 2.31 / 2.00 / 3.47 -> 1.64 / 2.10 / 2.19 / 2.20 / 2.65 %, PA-MPJPE -0.52 mm mean (steady5: bones
# alike, -0.10 mm); all 17 x seeds 0-2: -0.03 mm mean, the 13 at 1 px bit-identical (noise_scale 1), far_4px,
# near_4px, noise_4px, noise_2px -0.16 / -0.14 / -0.02 / -0.24 (worst single +0.46, noise_4px), no goal lost,
# far_4px's bones gained at seed 0; CPU 0.99x (reps 1), far_4px 0.97x at reps 2 (the steadying itself 7 ms).
# Against 3 on far_4px x seeds 0-4: 2 +0.52 mm, seed 0's bones lost; 4 +0.41 mm, bones 1.97 / 2.06 / 2.20 / 1.95 /
# 2.84 %; the neighbours stage (betas free too) on the steadied points as well +0.30 mm, seed 0's bones 2.10 %
SHAPE_STEADY_HALF = 3


def steady_pose(objective: ClipObjective, keys: torch.Tensor, all_keys: bool, on_keys: ClipObjective,
                noise_factor: float) -> ClipObjective:
    """The keyframes' objective for the shape stage: on a clip noisier than the weights' tuning (noise_factor
    > 1) its pose points (group "body") steadied over SHAPE_STEADY_HALF frames either side where seen inside
    the image (annotate/smplx_steady.py: with noise the arms came out long); on_keys itself elsewhere."""
    if noise_factor <= 1 or SHAPE_STEADY_HALF <= 0:
        return on_keys
    seen = objective.confidence > 0
    if objective.bounds is not None:
        seen = seen & (objective.bounds == 0).all(-1)
    return replace(on_keys, observed=steadied(objective.observed, seen, np.array(objective.groups) == "body",
                                              SHAPE_STEADY_HALF, None if all_keys else keys))


def unit_blend(kappa_fit: float, ratio: float, half: float) -> float:
    """The weight (0..1) of the 2D-only solve's unit against the fit's: held (kappa_fit under KAPPA_HELD) times
    trapped (that solve's ratio at its own lengths over KAPPA_TRAPPED), each a ramp of half-width `half`
    around its threshold (half 0: the steps)."""
    def ramp(value: float) -> float:
        return float(value >= 0) if half <= 0 else min(max(0.5 + value / (2 * half), 0.0), 1.0)
    return ramp(KAPPA_HELD - kappa_fit) * ramp(ratio - KAPPA_TRAPPED)


# shared_shape_solve (focal given): a clip step refused whole is tried again with each frame's pose step
# scaled by whichever of these gives that frame the lowest cost (the shared betas step whole), the accept
# on the sum of those per-frame minima. Issue 16: on beats (250 frames) the first step at damping 1e-3 won
# or lost by < 0.5 % on three keyframes' ~1 rad pose steps: won at focal 1000 px, lost at 999.96, where
# the stage then spent 5 of its 8 steps raising the damping and the betas stopped short (PA-MPJPE 8.5
# against 14.3 mm; with this 8.5 / 9.3). Only scaling the pose step works: holding it (scale 0) raises
# every frame's cost. Tried on every step, not only refused ones: far_4px 25.0 -> 28.5 mm (README)
SHAPE_POSE_SCALES = (1.0, 0.5, 0.25)
# the pose's hand points (correspondences.POSE_KNUCKLES) x KNUCKLE_WEIGHT where that hand's landmarks are
# missing, x KNUCKLE_WEIGHT_SEEN where they are there (the annotator's smplx.knuckle_weight(_seen)); a
# hand's gap keeps the wrist's rotation as solved in the frames where at least KNUCKLES_FOR_WRIST of them
# are seen (fill_hand_gaps bridges the rest); they count only where the pose's wrist of their hand has
# confidence >= KNUCKLE_MIN_CONFIDENCE (weigh_knuckles). benchmarks/smplx_truth at 250 frames on ba65648's
# fitter: near_1px (the right hand lost in 191 frames) fingers 12.06 -> 9.82 mm; kept with the wrist out
# of the picture too, cut_chest (arms always out of frame) 69.1 -> 73.2 mm (README "The pose's hand points")
KNUCKLE_WEIGHT, KNUCKLE_WEIGHT_SEEN = 1.0, 0.0
KNUCKLES_FOR_WRIST = 2
KNUCKLE_MIN_CONFIDENCE = 0.5


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """The fitter's stages by name, in the order they run (see the module docstring)."""

    camera: StageSpec
    body: StageSpec
    depth: StageSpec
    hands: StageSpec
    full: StageSpec
    shape: StageSpec
    neighbours: StageSpec
    smooth: StageSpec

    def stages(self) -> list[StageSpec]:
        return [getattr(self, f.name) for f in fields(self)]


def default_schedule(iterations: int) -> Schedule:
    """SMPLify-X's schedule in three steps, then the temporal solve; priors fall as more is freed.

    iterations caps the Gauss-Newton steps of a stage (each stops earlier when converged).
    """
    cap = max(iterations, 2)
    every_group = ("body", "face", "contour", "left_hand", "right_hand", *KNUCKLE_GROUPS)
    no_shape = tuple(n for n in FLAT_ALL if n != "betas")
    free_priors = dict(pose_weight=10, shape_weight=25, face_weight=5, hand_weight=2, shape_per_clip=True)
    settle = KEYFRAME_SETTLE_GAIN  # the keyframe stages (keyframe_solve); shape and smooth solve the clip whole
    return Schedule(
        camera=StageSpec(name="camera", free=("transl", "global_orient"), groups=("torso", "face"),
                         iterations=min(cap, 8), pose_weight=100, shape_weight=100, face_weight=100,
                         hand_weight=100, rho_scale=4.0, settle_gain=settle),
        body=StageSpec(name="body", free=("transl", "global_orient", "body", "betas"),
                       groups=("body", "face", "contour"), iterations=min(cap, 12), pose_weight=30,
                       shape_weight=50, face_weight=100, hand_weight=100, rho_scale=4.0, shape_per_clip=True,
                       settle_gain=settle),
        # the arms restarted mirrored in depth, the candidates picked with MediaPipe's z (smplx_depth)
        depth=StageSpec(name="depth", free=("transl", "global_orient", "body", "betas"),
                        groups=("body", "face", "contour"), iterations=min(cap, 8), pose_weight=30,
                        shape_weight=50, face_weight=100, hand_weight=100, shape_per_clip=True, settle_gain=settle),
        # hands join wide (far-off fingers still pull), then the robust scale narrows
        hands=StageSpec(name="hands", free=FLAT_ALL, groups=every_group, iterations=min(cap, 10), rho_scale=4.0,
                        settle_gain=settle, **free_priors),
        full=StageSpec(name="full", free=FLAT_ALL, groups=every_group, iterations=min(cap, 10), settle_gain=settle,
                       **free_priors),
        # the clip's one shape from all keyframes at once, their poses moving with it
        # (its prior once per clip; 10 on 4 synthetic clips: betas r 0.6-0.8, 3 and 25 no better)
        shape=StageSpec(name="shape", free=FLAT_ALL, groups=every_group, iterations=min(cap, 8),
                        **(free_priors | dict(shape_weight=10))),
        neighbours=StageSpec(name="neighbours", free=FLAT_ALL, groups=every_group, iterations=min(cap, 6),
                             settle_gain=settle, **free_priors),
        # all frames from the interpolated keyframes, coupled in time (a per-frame pass here
        # would let in-between frames fall into 2D-equivalent wrong poses); 4 exact steps (banded
        # Cholesky): on talking the 3rd already reached a lower cost than the 5 PCG steps of before
        # (past 4 only while a step still gains SMOOTH_GAIN: temporal_solve)
        smooth=StageSpec(name="smooth", free=no_shape, groups=every_group, iterations=min(cap, SMOOTH_STEPS_MAX),
                         **free_priors),
    )


@dataclass
class FitResult:
    params: SmplxParams  # T frames; betas the clip's one shape on every row
    camera: np.ndarray  # (3,) focal, cx, cy
    reprojection_px: np.ndarray  # (T,) mean error of observed points, NaN where none
    points2d: np.ndarray  # (T,K,2) the fitted model points projected
    joints: np.ndarray  # (T,55,3) camera-space joints
    jitter: float
    seconds: float
    evaluations: int = 0
    losses: list[float] = field(default_factory=list)
    # (T,) in [0,1]: how sure the frame's depth (forearm toward / away) is (see depth_confidence)
    depth_confidence: np.ndarray | None = None
    # (T,55) bool: joint supported by a confident in-frame landmark (others are the prior's guess)
    observed: np.ndarray | None = None
    focal_source: str = "given"  # given | config | estimated (from the image size) | fitted
    # CPU-seconds (this process, all threads) and solver steps by stage name, in the order run;
    # "setup" (objective, keyframes, interpolation) and "result" (the scores) beside the stages
    stage_cpu: dict[str, float] = field(default_factory=dict)
    stage_steps: dict[str, int] = field(default_factory=dict)
    stage_loss: dict[str, float] = field(default_factory=dict)  # each stage's mean loss per frame, by name


@dataclass
class StoppedFit:
    """A fit stopped after its keyframes' last stage (fit_clip's stop_after): what it reached so far,
    and finish() -> the FitResult of the stages left (the temporal solve on all frames), resumed
    from its state. The focal search (annotate/smplx_focal.py) finishes only its best candidate."""

    camera: np.ndarray  # (3,) focal, cx, cy
    stage_loss: dict[str, float]  # the stages run so far (FitResult.stage_loss)
    stage_cpu: dict[str, float]
    finish: Callable[[], FitResult]


@dataclass
class Progress:
    """What a fit has spent and reached: objective evaluations, each stage's mean loss."""

    tolerance: float
    evaluations: int = 0
    losses: list[float] = field(default_factory=list)
    steps: int = 0  # solver steps (Gauss-Newton / L-BFGS) taken, all stages
    stage_cpu: dict[str, float] = field(default_factory=dict)  # CPU-s by stage (FitResult.stage_cpu)
    stage_steps: dict[str, int] = field(default_factory=dict)
    stage_loss: dict[str, float] = field(default_factory=dict)  # the last loss of each stage, by name

    def charge(self, stage: str, cpu_from: float, steps: int = 0) -> None:
        """Add the CPU-seconds since process_time() was cpu_from (and steps) to stage's account."""
        self.stage_cpu[stage] = self.stage_cpu.get(stage, 0.0) + time.process_time() - cpu_from
        self.stage_steps[stage] = self.stage_steps.get(stage, 0) + steps


def estimate_focal(width: int, height: int) -> float:
    """A ~71 degree diagonal field of view (a webcam's or phone's), for footage whose camera is unknown:
    FOCAL_GUESS x the image diagonal (annotate/smplx_focal.py says why)."""
    return float(FOCAL_GUESS * math.hypot(width, height))


def initial_translation(rest_points: np.ndarray, xy: np.ndarray, conf: np.ndarray, mask: np.ndarray,
                        camera: Camera) -> np.ndarray | None:
    """(T,3) translation per frame from the 2D spread of the torso/face points vs the model's
    (weak perspective), interpolated over frames without 3 confident points; None if no frame has them.

    rest_points (P,3) the model points at the rest pose; xy (T,P,2), conf (T,P); mask (P,) the points to use.
    """
    focal = np.float64(camera.focal)  # float64 numpy: the float32 point spreads promote to it
    centre = np.array([float(camera.cx), float(camera.cy)])
    frames = len(xy)
    transl = np.full((frames, 3), np.nan)
    for t in range(frames):
        usable = (conf[t] > 0.3) & mask
        if usable.sum() < 3:
            continue
        model, seen = rest_points[usable], xy[t, usable]
        spread_3d = np.sqrt(((model[:, :2] - model[:, :2].mean(0)) ** 2).sum(1).mean())
        spread_2d = np.sqrt(((seen - seen.mean(0)) ** 2).sum(1).mean())
        if spread_2d < 1e-3:
            continue
        depth = focal * spread_3d / spread_2d
        offset = (seen.mean(0) - centre) * depth / focal - model[:, :2].mean(0)
        transl[t] = [offset[0], offset[1], depth - model[:, 2].mean()]
    good = np.isfinite(transl[:, 0])
    if not good.any():
        return None
    index = np.arange(frames)
    for d in range(3):
        transl[:, d] = np.interp(index, index[good], transl[good, d])
    return transl


def observed_joints(point_joints: np.ndarray, xy: np.ndarray, conf: np.ndarray, image_size: tuple[int, int],
                    min_confidence: float = 0.5) -> np.ndarray:
    """(T,55) bool: a joint is observed in a frame when a landmark on it (point_joints (K,): the
    joint of each target) has confidence >= min_confidence and lies inside the image.

    xy (T,K,2) pixels, conf (T,K)."""
    width, height = image_size
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= width) & (xy[..., 1] >= 0) & (xy[..., 1] <= height)
    good = (conf >= min_confidence) & inside
    observed = np.zeros((len(xy), 55), bool)
    for k, joint in enumerate(point_joints):
        observed[:, joint] |= good[:, k]
    return observed


ARMS = ((16, 18, 20), (17, 19, 21))  # shoulder, elbow, wrist of the left and right arm


def depth_confidence(joints: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(T,) in [0,1]: how well 2D evidence pins the depth of the frame's observed forearms.

    A forearm in the image plane has one 3D direction for its 2D image; one pointing toward or
    away from the camera has two (mirrored in depth) that 2D cannot tell apart. Per frame, the
    smallest in-plane share |forearm_xy| / |forearm| over the arms whose elbow and wrist are
    observed; 1 where no forearm is observed (nothing is claimed: `observed` says so).
    joints (T,55,3) camera space, observed (T,55) bool."""
    confidence = np.ones(len(joints), np.float32)
    for _, elbow, wrist in ARMS:
        forearm = joints[:, wrist] - joints[:, elbow]
        # the image-plane share: the direction's component across the viewing ray at the elbow
        ray = joints[:, elbow] / np.linalg.norm(joints[:, elbow], axis=-1, keepdims=True).clip(1e-9)
        along = (forearm * ray).sum(-1)
        share = np.sqrt(np.clip(1 - (along / np.linalg.norm(forearm, axis=-1).clip(1e-9)) ** 2, 0, 1))
        seen = observed[:, elbow] & observed[:, wrist]
        confidence = np.where(seen, np.minimum(confidence, share), confidence)
    return confidence.astype(np.float32)


def fill_hand_gaps(flat: FlatSMPLX, x: torch.Tensor, missing: dict[str, np.ndarray],
                   decay: float = HAND_GAP_DECAY, wrist_missing: dict[str, np.ndarray] | None = None) -> torch.Tensor:
    """x (T,D) with each hand's pose (PCA) and its wrist's rotation, in the frames without that hand,
    replaced by their expected value given the gap's seen edges: that of a process reverting to the
    prior's mean (0: the PCA's mean hand, a neutral wrist) with time constant `decay` frames (an
    Ornstein-Uhlenbeck bridge), gap_bridge's weights on the edge values. A short gap is nearly the
    line between its edges, a long one falls to the mean in mid-gap, one at the clip's end decays
    from its one edge. missing: "left_hand"/"right_hand" -> (T,) bool frames without that hand; a
    hand never seen is left alone. Nothing in a gap sees these columns but the prior and, in a short
    gap, the smoothed 2D track of the unseen fingers, which bends them to follow the arm's strokes.
    wrist_missing: the same for the wrist's rotation alone (default `missing`): frames where the pose's
    hand points (knuckles) see it are kept as solved, and are edges of its bridge."""
    if decay <= 0:
        raise ValueError(f"hand gap decay {decay} frames: use > 0")
    x = x.clone()
    for group, pose, wrist in (("left_hand", "left_hand_pose", 20), ("right_hand", "right_hand_pose", 21)):
        gone = np.asarray(missing.get(group, np.zeros(x.shape[0], bool)), bool)
        wrist_gone = np.asarray((wrist_missing or missing).get(group, gone), bool)
        hand_columns = list(range(flat.layout[pose].start, flat.layout[pose].stop)) if pose in flat.layout else []
        wrist_columns = []
        if wrist in flat.body_free:
            start = flat.layout["body"].start + 3 * flat.body_free.index(wrist)
            wrist_columns = [start, start + 1, start + 2]
        for columns, gone in ((hand_columns, gone), (wrist_columns, wrist_gone)):
            if columns and gone.any() and not gone.all():
                x = _bridge_columns(x, columns, gone, decay)
    return x


def wrist_missing(missing: dict[str, np.ndarray], conf: np.ndarray, targets: list[Target],
                  knuckles: int = KNUCKLES_FOR_WRIST) -> dict[str, np.ndarray]:
    """missing ("left_hand"/"right_hand" -> (T,) bool: frames without the hand's landmarks) less the
    frames where at least `knuckles` of the pose's hand points of that hand have confidence >= 0.5
    (in the image, visible): there the fit saw the wrist's rotation. conf (T,K) of `targets`."""
    out = dict(missing)
    for group, (points, _, _) in knuckle_hands(targets).items():
        hand = KNUCKLE_GROUPS[group]
        if hand in out:
            out[hand] = out[hand] & ((conf[:, points] >= 0.5).sum(1) < knuckles)
    return out


def _bridge_columns(x: torch.Tensor, columns: list[int], gone: np.ndarray, decay: float) -> torch.Tensor:
    """x (T,D) with `columns` in the frames `gone` (T,) bool replaced by gap_bridge's blend of their edges (in place)."""
    edges, weights = gap_bridge(gone, decay)
    cols = torch.as_tensor(columns, device=x.device)
    values = x[:, cols]  # a copy: the edges' values as solved
    rows = torch.as_tensor(np.flatnonzero(gone), device=x.device)
    edges = torch.as_tensor(edges, device=x.device)
    weights = torch.tensor(weights, dtype=x.dtype, device=x.device)
    x[rows[:, None], cols] = weights[:, :1] * values[edges[:, 0]] + weights[:, 1:] * values[edges[:, 1]]
    return x


def gap_bridge(gone: np.ndarray, decay: float) -> tuple[np.ndarray, np.ndarray]:
    """The expected value, in each missing frame t, of a process reverting to 0 with time constant
    `decay` frames given its values at the seen frames a < t < b around it (an Ornstein-Uhlenbeck
    bridge): w_a x(a) + w_b x(b), w_a = sinh((b - t) / decay) / sinh((b - a) / decay), w_b =
    sinh((t - a) / decay) / the same; exp(-|t - a| / decay) x(a) past the clip's last seen frame
    (and so before its first). gone (T,) bool, not all True. Returns edges (G,2) int, the frames a
    and b, and weights (G,2), w_a and w_b, over the missing frames in order (a missing edge: any
    seen frame, weighed 0)."""
    seen = np.flatnonzero(~gone)
    fill = np.flatnonzero(gone)
    position = np.searchsorted(seen, fill)
    has_a, has_b = position > 0, position < len(seen)
    a = seen[np.maximum(position - 1, 0)]
    b = seen[np.minimum(position, len(seen) - 1)]
    weights = np.zeros((len(fill), 2))
    both = has_a & has_b

    def sinh_ratio(u, v):  # sinh(u) / sinh(v), 0 < u < v, without overflow in long gaps
        return np.exp(u - v) * np.expm1(-2 * u) / np.expm1(-2 * v)

    span = (b - a)[both] / decay
    weights[both, 0] = sinh_ratio((b - fill)[both] / decay, span)
    weights[both, 1] = sinh_ratio((fill - a)[both] / decay, span)
    weights[has_a & ~has_b, 0] = np.exp(-(fill - a)[has_a & ~has_b] / decay)
    weights[~has_a & has_b, 1] = np.exp(-(b - fill)[~has_a & has_b] / decay)
    return np.stack([a, b], 1), weights


def params_from_x(objective: ClipObjective, x: torch.Tensor, num_pca: int) -> SmplxParams:
    """Full SMPL-X parameters from flat x (T,D); betas = the mean over the frames, on every row."""
    frames = x.shape[0]
    layout = objective.flat.layout
    values = {"global_orient": x[:, layout["global_orient"]], "body_pose": objective.body_pose(x),
              "transl": x[:, layout["transl"]], "expression": x[:, layout["expression"]],
              "betas": x[:, layout["betas"]].mean(0, keepdim=True).expand(frames, -1)}
    for name, width in (("jaw_pose", 3), ("leye_pose", 3), ("reye_pose", 3), ("left_hand_pose", num_pca),
                        ("right_hand_pose", num_pca)):
        values[name] = (x[:, layout[name]] if name in layout
                        else torch.zeros(frames, width, dtype=x.dtype, device=x.device))
    return SmplxParams(**values)


def keyframe_indices(num_frames: int, stride: int, device, usable: np.ndarray | None = None) -> torch.Tensor:
    """Every stride-th frame and the last one; with usable (T,) bool, the usable frame nearest
    to each of those (a frame without landmarks is never a keyframe: the temporal solve fills it)
    and the first and last usable frames."""
    wanted = np.unique(np.r_[np.arange(0, num_frames, stride), num_frames - 1])
    if usable is None:
        return torch.as_tensor(wanted, device=device)
    frames = np.flatnonzero(usable)
    if len(frames) == 0:
        raise ValueError("no frame has landmarks to fit")
    nearest = frames[np.abs(frames[None, :] - wanted[:, None]).argmin(1)]
    return torch.as_tensor(np.unique(np.r_[nearest, frames[0], frames[-1]]), device=device)


def motion_keyframes(keys: np.ndarray, xy: np.ndarray, conf: np.ndarray, moving: np.ndarray,
                     min_tolerance_px: float = 3.0, max_keys: int | None = None,
                     parts: np.ndarray | None = None) -> np.ndarray:
    """More keyframes where the landmarks move faster than straight lines between keyframes.

    keys (K,) sorted keyframes; xy (T,P,2), conf (T,P) the observations; moving (P,) bool the
    points that count (body and hands); parts (P,) int: points of one part (a hand) are judged
    by their mean offset, which averages their noise out (None: each point its own part). A
    frame's error is its worst part's distance from the straight line between the keyframes
    around it (the worst, not the mean: a stroke of the wrists alone, 40 px on a body of a
    dozen still points, was averaged to a few px and lost); a segment whose worst frame is off
    by more than the tolerance is split there, until none is (a quick gesture between two
    keyframes was lost: the interpolation starts the temporal solve far away). The tolerance is
    2x the median of the same error from each frame's two neighbours (what landmark noise
    alone gives), at least min_tolerance_px: not from the keyframes' own errors, whose median on
    a clip of beat gestures was 37 px (strokes everywhere) and hid 100 px strokes."""
    seen = (conf > 0.3) & moving
    parts = np.arange(xy.shape[1]) if parts is None else np.asarray(parts)
    member = (parts[None, :] == np.unique(parts[moving])[:, None]).astype(float)  # (Q,P)

    def off_line(inner: np.ndarray, line: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """(N,) the worst part's mean offset of xy[inner] (N,P,2) from line (N,P,2), points ok (N,P)."""
        ok = ok.astype(float)
        offset = np.einsum("qp,tp,tpc->tqc", member, ok, np.nan_to_num(xy[inner] - line))
        count = ok @ member.T  # (N,Q) points of each part seen
        return np.where(count > 0, np.linalg.norm(offset, axis=-1) / count.clip(1), 0.0).max(1, initial=0.0)

    def errors(a: int, b: int) -> np.ndarray:
        inner = np.arange(a + 1, b)
        alpha = ((inner - a) / (b - a))[:, None, None]
        return off_line(inner, xy[a][None] * (1 - alpha) + xy[b][None] * alpha,
                        seen[inner] & seen[a][None] & seen[b][None])

    keys = [int(k) for k in keys]
    if len(xy) < 3 or len(keys) < 2:
        return np.asarray(keys)
    middle = np.arange(1, len(xy) - 1)
    noise = off_line(middle, (xy[:-2] + xy[2:]) / 2, seen[1:-1] & seen[:-2] & seen[2:])
    tolerance = max(min_tolerance_px, 2.0 * float(np.median(noise)))
    limit = max_keys or len(xy)
    todo = list(zip(keys[:-1], keys[1:]))
    keys_set = set(keys)
    while todo and len(keys_set) < limit:
        a, b = todo.pop()
        err = errors(a, b)
        if len(err) == 0 or err.max() <= tolerance:
            continue
        split = a + 1 + int(err.argmax())
        keys_set.add(split)
        todo += [(a, split), (split, b)]
    return np.asarray(sorted(keys_set))


def interpolate(x_keys: torch.Tensor, keys: torch.Tensor, num_frames: int, cubic: bool = True) -> torch.Tensor:
    """Keyframe parameters (K,D) at frames `keys` interpolated to all T frames: (T,D), held
    before the first key and after the last. cubic: monotone cubic Hermite (PCHIP: each key's
    slope from its two secants, 0 where they differ in sign, so a stroke is not overshot);
    else linear, whose kink at every key (the slope's change, a second difference on the key
    alone) the temporal solve had to take out, and did only partly in its steps (issue 16:
    crossed, 250 frames, the error's 3D acceleration on keyframes 0.46 mm/frame^2 against 0.25
    between them)."""
    t = torch.arange(num_frames, device=x_keys.device, dtype=torch.float32)
    key_t = keys.to(torch.float32)
    right = torch.searchsorted(key_t, t, right=True).clamp(1, len(key_t) - 1)
    span = (key_t[right] - key_t[right - 1]).clamp(min=1)
    alpha = ((t - key_t[right - 1]) / span).clamp(0, 1)[:, None]
    if not cubic or len(key_t) < 3:
        return x_keys[right - 1] * (1 - alpha) + x_keys[right] * alpha
    gaps = (key_t[1:] - key_t[:-1]).clamp(min=1)[:, None]  # (K-1,1)
    secant = (x_keys[1:] - x_keys[:-1]) / gaps  # (K-1,D) slope per frame
    # Fritsch-Carlson: the weighted harmonic mean of the two secants where they agree in sign
    w1, w2 = 2 * gaps[1:] + gaps[:-1], gaps[1:] + 2 * gaps[:-1]
    agree = secant[:-1] * secant[1:] > 0
    inner = torch.where(agree, (w1 + w2) / (w1 / torch.where(agree, secant[:-1], 1.0)
                                            + w2 / torch.where(agree, secant[1:], 1.0)), 0.0)
    slope = torch.cat([secant[:1], inner, secant[-1:]])  # (K,D); the ends: their one secant
    a, h = alpha, span[:, None]
    h00, h10, h01, h11 = 2 * a**3 - 3 * a**2 + 1, a**3 - 2 * a**2 + a, -2 * a**3 + 3 * a**2, a**3 - a**2
    return (h00 * x_keys[right - 1] + h10 * h * slope[right - 1] + h01 * x_keys[right]
            + h11 * h * slope[right])


# ------------------------------------------------------------------------ strategies
# Each takes a stage's problem and the current parameters x (T,D) and returns new x.

def frames_of(problem: StageProblem, index: torch.Tensor) -> StageProblem:
    """The stage's problem on some of its frames (index (N,) into its T): every per-frame
    tensor of the problem and of its objective, indexed."""
    per_frame = {f.name: getattr(problem, f.name)[index] for f in fields(problem)
                 if f.name not in ("objective", "spec", "free") and isinstance(getattr(problem, f.name), torch.Tensor)}
    return replace(problem, objective=problem.objective.subset(index), **per_frame)


# Measured on keyframe_solve and not taken (benchmarks/smplx_ab, 250 frames, 85cfefc's fitter, 9 scenarios;
# one seed's PA-MPJPE moves by -0.54..+0.13 mm at 4 px and -0.27..+0.34 at 1 px when only the first
# damping moves by 1-3 %: smplx_ab jiggle99/101/103; the other 8 scenarios at 1f3087f, jiggle99/101:
# near_1px +0.60/+0.64, drop_keyframe -0.73/-0.72, noise_4px +0.58/+0.26, toward -0.20/0, the rest within
# 0.15): a refused step solved again at once with its Gram kept
# (more accepted steps, so more Jacobians: CPU up, away 7.95 -> 8.57 mm); the Gram kept for one more
# accepted step with a new gradient by autograd (80-100 % of frames then refused their steps: the
# Geman-McClure weights move the matrix ~12 % a step); the camera stage's damping from 1e-2 (damp2_c:
# away 7.95 -> 8.31, far_4px 14.53 -> 14.84); settle_gain 1e-3 everywhere (settle3): CPU 0.92-1.07x, least of 3
# interleaved runs on talking, beats, far_1px and near_1px: no gain the box can tell from its noise (1e-2, turned
# down here at one seed, was taken when judged over 3: KEYFRAME_SETTLE_GAIN; the elbow restarts' shared steps
# cut to 6 lost far_4px@1007's PA goal by 11.5 mm: ELBOW_SHARED_STEPS); every
# keyframe stage's cap ~27 % lower (camera6+body9+depth6+hands7+full7+neighbours5; body10+hands8+full8+
# neighbours5 alike): away's 3D jitter 1.01 -> 1.36x (the goal 1.3x lost), 0.4 % flips, outliers 9.56 -> 11.18 mm
def keyframe_solve(problem: StageProblem, x: torch.Tensor, progress: Progress) -> torch.Tensor:
    """Levenberg-Marquardt on every frame at once; each frame accepts or rejects its own step.

    A frame that rejected its step is where it was: its gradient and Gauss-Newton matrix are
    kept, and only the frames that moved are evaluated again (about half of them in a step:
    the same steps as evaluating every frame every time, at a fraction of the cost). A frame
    whose last accepted steps gained little (its stage's settle_gain) is settled: out of the stage's
    evaluations and steps. The shape pool (a pull of each frame's betas to the clip's mean, which
    moves with every frame) is added afresh each step."""
    frames = x.shape[0]
    damping = torch.full((frames,), problem.spec.initial_damping, device=x.device)
    pool = problem.pools_shape
    free = problem.free
    beta_columns = problem.objective.beta_columns
    hessian = torch.zeros(frames, len(free), len(free), device=x.device)
    gradient = torch.zeros(frames, len(free), device=x.device)
    cost_base = torch.zeros(frames, device=x.device)  # the frame's cost without the pool
    stale = torch.ones(frames, dtype=torch.bool, device=x.device)
    beta_free = torch.isin(free, beta_columns)
    settled = torch.zeros(frames, dtype=torch.bool, device=x.device)  # out of the stage (settle_gain)
    small_run = torch.zeros(frames, dtype=torch.long, device=x.device)
    for _ in range(problem.spec.iterations):
        progress.steps += 1
        index = torch.nonzero(stale)[:, 0]
        if len(index):
            part = problem if len(index) == frames else frames_of(problem, index)
            progress.evaluations += 1
            with torch.no_grad():
                hessian[index], gradient[index], cost_base[index] = part.gauss_newton_gradient(x[index], pool)
        with torch.no_grad():
            if pool:  # BETA_POOL |b - mean|^2 per frame, the mean held fixed in the step
                beta_mean = x[:, beta_columns].mean(0)
                offset = x[:, beta_columns] - beta_mean
                cost = cost_base + BETA_POOL * (offset ** 2).sum(1)
                step_gradient = gradient.clone()
                step_gradient[:, beta_free] += 2 * BETA_POOL * offset[:, torch.isin(beta_columns, free)]
            else:
                beta_mean, cost, step_gradient = None, cost_base, gradient
            if bool(settled.any()):  # a settled frame's step would be dropped: not solved
                step = torch.zeros_like(step_gradient)
                step[~settled] = damped_solve(hessian[~settled], step_gradient[~settled], damping[~settled])
            else:
                step = damped_solve(hessian, step_gradient, damping)
            x_new = x.clone()
            x_new[:, free] += step
            cost_new = problem.frame_costs(x_new, beta_mean)
            progress.evaluations += 1
            better = (cost_new < cost) & ~settled
            x = torch.where(better[:, None], x_new, x)
            damping = torch.where(better, damping / 3, damping * 4).clamp(1e-7, 1e7)
            gain = (cost - cost_new) / cost.abs().clamp(min=1e-9)
            if problem.spec.settle_gain > 0:  # a rejected step neither counts nor breaks the run
                small_run = torch.where(better & (gain < problem.spec.settle_gain), small_run + 1,
                                        torch.where(better, 0, small_run))
                settled |= small_run >= FRAME_SETTLED_STEPS
            stale = better & ~settled
            # the next evaluation is of these frames at x_new: their forward pass is the one just made
            problem.objective.flat.keep_frames(torch.nonzero(stale)[:, 0])
            if bool((settled | (better & (gain < progress.tolerance)) | (~better & (damping > 1e4))).all()):
                break
    return x


def damped_step(cost: torch.Tensor, cost_new: torch.Tensor, x: torch.Tensor, x_new: torch.Tensor,
                damping: float, progress: "Progress", floor: float) -> tuple[torch.Tensor, float, bool]:
    """Levenberg-Marquardt's accept/reject of one whole-clip step: a lower cost is kept and the
    damping eased (down to `floor`); a higher one is dropped and the damping raised. Returns
    (x, damping, done): done when the gain is under the tolerance or the damping has run away."""
    if float(cost_new) < float(cost):
        gain = float((cost - cost_new) / cost.abs().clamp(min=1e-9))
        return x_new, max(damping / 3, floor), gain < progress.tolerance
    damping *= 4
    return x, damping, damping > 1e4


# Measured on the shape stage (the focal given) and not taken (benchmarks/smplx_ab, 250 frames, ec42f85's fitter,
# 17 scenarios x 3 seeds, reps 1; the code of both in ccf8f71): its steps' gains of the clip's cost stay erratic up
# to its cap (8): beats 4.7, 4.9, 2.5, 0.43, 0.11, 0.51 %, a refused step, 0.20; switch@1005 0.23 and 0.05 % then
# 1.1; crossed@2002 0.03 then 3.1; away@2004 0.78 then 28.7 (the "shape step" debug log). A stop after two accepted
# steps in a row each under 0.5 % (shapegain50) fired on 10 of 51 fits, 22 of their 408 steps: PA-MPJPE all
# +0.01 mm mean, -0.21..+0.35 where it fired (switch@1005 +0.35, beats +0.23), no goal lost, CPU 0.99x: nothing the
# box can tell (least of 2 interleaved at d004c7b, load 2-4: beats 1.04x, the stage 1.66 -> 1.27 CPU-s; drop_runs
# 1.04x; near_1px 0.98x, far_1px 1.05x, talking 0.99x where it never fired; at 1 % 51 steps, 2 % 105, simulated
# from base's gains). The cap at 6 (shape6): +0.16 mm mean, outliers +0.71 over its 3 seeds, drop_runs +0.58,
# away +0.55, toward@1003's 3D jitter and drop_keyframe@2008's 2D goal lost, CPU 1.02x.
def shared_shape_solve(problem: StageProblem, x: torch.Tensor, progress: Progress,
                       focal_guess: float | None = None) -> torch.Tensor:
    """Gauss-Newton with the shape as ONE clip parameter: per-frame poses and the shared betas
    in one step (the betas' normal equations are the frames' Schur complements summed), damped
    as a whole, accepted when the clip's cost falls. The per-frame pool (keyframe_solve) only
    creeps toward a shape; this moves it to where all frames' evidence puts it.

    focal_guess (px, the size-based focal): the focal is fitted too, log f one more shared unknown
    (annotate/smplx_focal.py's joint estimate) with FOCAL_PRIOR's pull toward the guess, within
    FOCAL_RANGE of it; it moves the objective's camera focal in place (every objective of the fit
    shares that camera). While the focal still moves (FOCAL_MOVING in two steps) the stage runs past its
    iterations, up to FOCAL_STEPS_FACTOR x them: a guess too long is left in steps of a few % (README)."""
    objective = problem.objective
    free = problem.free
    is_beta = torch.isin(free, objective.beta_columns)
    pose_cols, beta_cols = free[~is_beta], free[is_beta]
    if len(beta_cols) == 0:
        return keyframe_solve(problem, x, progress)
    with_focal = focal_guess is not None
    focal = objective.camera.focal  # a scalar tensor: moved in place
    away = objective.columns(("transl",))[2]  # the translation's z
    x = x.clone()
    x[:, objective.beta_columns] = x[:, objective.beta_columns].mean(0)
    damping = 1e-3
    x_at = None  # where gradient and hessian were taken (a rejected step keeps them)
    prior_weight = 0.0
    log_focals = []  # the log focal where each step started: the stage runs on while it still moves
    for step in range(problem.spec.iterations * (FOCAL_STEPS_FACTOR if with_focal else 1)):
        if with_focal:
            log_focals.append(math.log(float(focal)))
            if step >= problem.spec.iterations and abs(log_focals[-1] - log_focals[-3]) < FOCAL_MOVING:
                break
        progress.steps += 1
        if x_at is not x:
            progress.evaluations += 1
            with torch.no_grad():
                hessian, gradient, cost, *focal_part = problem.gauss_newton_gradient(x, False, with_focal)
                cost = cost.sum()
                if with_focal:
                    if x_at is None:  # the prior's scale: the clip's cost where the stage starts (fixed)
                        prior_weight = focal_prior_weight(float(cost))
                    cost = cost + prior_weight * math.log(float(focal) / focal_guess) ** 2
            x_at = x
        with torch.no_grad():
            pose, beta = ~is_beta, is_beta
            a = hessian[:, pose][:, :, pose]
            b = hessian[:, pose][:, :, beta]
            c = hessian[:, beta][:, :, beta]
            g_pose, g_beta = gradient[:, ~is_beta], gradient[:, is_beta]
            if with_focal:  # the log focal appended to the shared unknowns
                cross, curvature, g_focal = focal_part[0]
                b = torch.cat([b, cross[:, pose, None]], 2)
                c = torch.cat([torch.cat([c, cross[:, beta, None]], 2),
                               torch.cat([cross[:, None, beta], curvature[:, None, None]], 2)], 1)
                g_beta = torch.cat([g_beta, g_focal[:, None]], 1)
            a_diag = a.diagonal(dim1=-2, dim2=-1)
            a = a + torch.diag_embed(damping * a_diag + 1e-6 * (1 + a_diag))
            chol, info = torch.linalg.cholesky_ex(a)
            if bool((info > 0).any()):
                break
            a_inv_g = torch.cholesky_solve(g_pose[..., None], chol)[..., 0]
            a_inv_b = torch.cholesky_solve(b, chol)
            schur = (c - b.transpose(1, 2) @ a_inv_b).sum(0)
            rhs = (g_beta - (b.transpose(1, 2) @ a_inv_g[..., None])[..., 0]).sum(0)
            if with_focal:
                schur[-1, -1] += 2 * prior_weight
                rhs[-1] += 2 * prior_weight * math.log(float(focal) / focal_guess)
            s_diag = schur.diagonal()
            schur = schur + torch.diag(damping * s_diag + 1e-6 * (1 + s_diag.abs()))
            step_shared = -torch.linalg.solve(schur, rhs)
            step_pose = -(a_inv_g + (a_inv_b @ step_shared[:, None])[..., 0])
            focal_was = float(focal)
            move = 0.0
            if with_focal:
                log_focal = min(max(math.log(focal_was) + float(step_shared[-1]), math.log(focal_guess / FOCAL_RANGE)),
                                math.log(focal_guess * FOCAL_RANGE))
                focal.fill_(math.exp(log_focal))
                # the body's distance scaled with the focal (smplx_objective.focal_column); a frame whose own
                # pose step fails keeps its pose (scale 0), moved with the shared unknowns only (one frame's bad
                # step would otherwise refuse the clip's focal step: beats' focal 821 -> 829 px of 1000)
                move = (float(focal) / focal_was - 1) * body_depth(objective.flat(x, problem.rows))

            def stepped(scale: float) -> torch.Tensor:  # x with the pose step x scale, the shared step whole
                x_new = x.clone()
                x_new[:, pose_cols] += scale * step_pose
                x_new[:, beta_cols] += step_shared[:len(beta_cols)]
                if with_focal:
                    x_new[:, away] += move
                return x_new

            def per_frame_best(scales: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
                progress.evaluations += len(scales)  # ties: the first scale
                return per_frame_choice(problem, torch.stack([stepped(scale) for scale in scales]), cheapest)

            x_new, costs_new = per_frame_best((1.0, 0.0) if with_focal else (1.0,))
            if not with_focal and float(costs_new.sum()) >= float(cost):  # refused whole: scaled back per frame
                x_new, costs_new = per_frame_best(SHAPE_POSE_SCALES)
            cost_new = costs_new.sum()
            if with_focal:
                cost_new = cost_new + prior_weight * math.log(float(focal) / focal_guess) ** 2
            x, damping, done = damped_step(cost, cost_new, x, x_new, damping, progress, floor=1e-7)
            if x is not x_new:
                focal.fill_(focal_was)
            else:
                log.debug("shape step %d: cost gain %.5f", step, float((cost - cost_new) / cost.abs().clamp(min=1e-9)))
            if done:
                break
    return x


def cheapest(costs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """per_frame_choice's plain pick: each frame's lowest cost, the first candidate of equal ones."""
    return costs.argmin(0)


def per_frame_choice(problem: StageProblem, candidates: torch.Tensor,
                     pick: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Of candidates (M,T,D), per frame the one `pick(costs (M,T), candidates) -> (T,)` chooses:
    returns it (T,D) and its cost (T,)."""
    with torch.no_grad():
        costs = torch.stack([problem.frame_costs(c) for c in candidates])
        best = pick(costs, candidates)
    frames = torch.arange(candidates.shape[1], device=candidates.device)
    return candidates[best, frames], costs[best, frames]


def best_of_starts(problem: StageProblem, starts: list[torch.Tensor], progress: Progress,
                   pick: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                   kept: torch.Tensor | None = None) -> torch.Tensor:
    """Solve from several starts (each (T,D)) in one batch, then keep per frame the candidate
    `pick(costs (M,T), candidates (M,T,D)) -> (T,)` chooses. kept (T,D): a candidate taken as
    it is (a fit already converged in this stage's terms), first among them."""
    frames = starts[0].shape[0]
    candidates = keyframe_solve(problem.repeat(len(starts)), torch.cat(starts), progress)
    if kept is not None:
        candidates = torch.cat([kept, candidates])
    return per_frame_choice(problem, candidates.view(-1, frames, candidates.shape[1]), pick)[0]


def forearms_seen(observed: np.ndarray) -> bool:
    """Whether any frame of observed (T,55) bool (observed_joints) sees a forearm: its elbow and wrist both."""
    return any(bool((observed[:, elbow] & observed[:, wrist]).any()) for _, elbow, wrist in ARMS)


def hands_seen(targets: list[Target]) -> tuple[bool, bool]:
    """(left, right): whether the clip's active targets hold that hand's own landmarks, the only ones that
    pose its fingers: the pose's hand points alone (correspondences.POSE_KNUCKLES) orient the wrist, their
    thumb point too rough to pose a hand (FlatSMPLX's fingers: held at the PCA's mean without them).

    On curation_cost's talking heads (hands out of frame, 240 frames) a wrist the pose saw at the image's
    edge in 1-4 frames brought the pose's thumb point and with it a hand's 12 PCA columns into every
    frame's solve, 92 -> 104 unknowns (107 with the betas) on 4 of 6 clips: +50 % on the temporal solve's
    CPU (6 clips, 15.0 against 23.0 CPU-s, one A/B run)"""
    groups = {t.group for t in targets}
    return "left_hand" in groups, "right_hand" in groups


def elbow_restarts(problem: StageProblem, x: torch.Tensor, progress: Progress,
                   forearm_seen: bool = True) -> torch.Tensor:
    """The depth of a bent forearm is ambiguous in 2D: solve from the current elbows and from
    strongly bent ones, keep each frame's better fit. Only where a keyframe sees a forearm (forearms_seen):
    with both arms' elbows or wrists out of view the two starts have nothing but the prior and the
    image's border to choose by. curation_cost's talking heads (6 clips, 240 frames, arms out of frame):
    the body stage's CPU 5.4 -> 2.3 s, reprojection within -0.01..+0.09 px of 7 px; benchmarks/smplx_truth's
    cut_chest (the one scenario without a forearm seen; 250 frames): PA-MPJPE 68.9 (77.2) -> 68.8 (77.0) mm,
    upper arm from hanging down 9.3 / 14.6 -> 9.2 / 14.3 deg (mean / 95th), betas r 0.83 -> 0.85."""
    layout = problem.objective.flat.layout
    if "body" not in layout or x.shape[0] < 2 or not forearm_seen:
        return keyframe_solve(problem, x, progress)
    bent = x.clone()
    bent[:, layout["body"]] = rest_x(problem.objective.flat, x.shape[0], x.device, elbow=2.0)[:, layout["body"]]
    shared = ELBOW_SHARED_STEPS
    if shared is None or shared >= problem.spec.iterations:
        return best_of_starts(problem, [x, bent], progress, cheapest)
    # both starts for the first steps, then only each frame's cheaper one for the rest
    x = best_of_starts(replace(problem, spec=replace(problem.spec, iterations=shared)), [x, bent], progress, cheapest)
    return keyframe_solve(replace(problem, spec=replace(problem.spec, iterations=problem.spec.iterations - shared)),
                          x, progress)


def depth_pick(problem: StageProblem, evidence: DepthEvidence | None, transition_weight: float):
    """The Viterbi pick over candidates (M,T,D): each one's frame cost plus its disagreement
    with MediaPipe's z along the arms, and the pose change between (key)frames."""
    pose_columns = problem.objective.columns(("global_orient", "body"))
    focal = float(problem.objective.camera.focal)

    def pick(costs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        if evidence is not None and evidence.usable:
            with torch.no_grad():
                costs = costs + torch.stack([evidence.costs(problem.objective.flat(c, problem.rows), focal)
                                             for c in candidates])
        return viterbi(costs, candidates[..., pose_columns], transition_weight)

    return pick


def depth_restarts(problem: StageProblem, x: torch.Tensor, progress: Progress, evidence: DepthEvidence | None,
                   transition_weight: float) -> torch.Tensor:
    """Each keyframe whose arms' depth disagrees with MediaPipe's z solved again from those bones
    mirrored (smplx_depth.evidence_mirrored); the Viterbi keeps the sequence that agrees best
    with the landmarks, MediaPipe's z and itself."""
    if evidence is None or not evidence.usable:
        return x
    start, changed = evidence_mirrored(problem.objective.flat, x, evidence, float(problem.objective.camera.focal))
    index = torch.nonzero(changed)[:, 0]
    if len(index) == 0:
        return x
    mirrored = x.clone()
    mirrored[index] = keyframe_solve(frames_of(problem, index), start[index], progress)
    return per_frame_choice(problem, torch.stack([x, mirrored]),
                            depth_pick(problem, evidence, transition_weight * DEPTH_TRANSITION_SHARE))[0]


# Measured and not taken (ec42f85's fitter, 250 frames): no restart starts near the frame's own fit, so none can be
# skipped as landing in its basin. A neighbour keyframe's fit is off the frame's own by 0.40 / 0.62 / 1.02 rad (10th /
# 50th / 90th percentile of the largest global_orient or body column; RMS 0.10 / 0.14 / 0.22) on beats, 0.34 / 0.56 /
# 1.01 near_1px, 0.63 / 1.05 / 1.50 far_4px, and costs there 12 / 37 / 60x the own fit's (far_4px 2.3 / 4.4 / 6.5x);
# within 0.1 rad on every column (smplx_ab nbsame100, code in ccf8f71) are the ends' own fits alone (2 of beats' 236
# solves). Yet 85 of those 236 end > 0.1 % under the own fit's cost (near_1px 96 of 246, far_4px 25 of 162), the
# picked ones from starts 5-30x its cost on beats: nothing at the start tells them. After 2 of the stage's steps the
# restarts are within 1.01 / 1.05 / 1.18x of the own fit's cost (beats; far_4px 1.05 / 1.17 / 1.34): those over
# 1.2x dropped there would keep 215 of 236 solves and lose 4 of 75 escapes. Over 12 scenarios x 3 seeds (reps 1):
# the stage capped at 4 steps (neighbours4) PA-MPJPE +0.10 mm mean, 10 of 12 scenarios worse (far_1px +0.29,
# far_4px +0.23; far_1px@2007 +0.63), toward@1003's 3D jitter goal lost, CPU 1.02x; the stage off (neighbours0: the
# neighbours' fits unsolved as candidates) +0.42 mm mean, away +1.97, switch +1.20, 5 goals lost, CPU 1.09x.
def neighbour_restarts(problem: StageProblem, x: torch.Tensor, progress: Progress,
                       transition_weight: float, evidence: DepthEvidence | None = None) -> torch.Tensor:
    """A frame stuck in a poor minimum restarts from its neighbours' fits; `viterbi` keeps the
    most consistent sequence over the candidates, not each frame's best alone."""
    if x.shape[0] < 2:
        return keyframe_solve(problem, x, progress)
    # the frame's own fit is a candidate as it is: the full and shape stages before have run it
    # to their caps in these same terms (solving it again was a third of this stage's work)
    starts = [torch.cat([x[:1], x[:-1]]), torch.cat([x[1:], x[-1:]])]
    return best_of_starts(problem, starts, progress, depth_pick(problem, evidence, transition_weight), kept=x)


# fit_clip's motion_tiers: tiers that skipped more, measured and not taken (benchmarks/smplx_ab at 854a223,
# 250 frames; seeds: the scenario's seed + 1000 k).
# The motion keyframes joining the stride ones late, from those fits interpolated (the betas as those pooled
# them): after the neighbours stage, one full-stage solve (CPU 1 run: beats 10.3 -> 5.2 s, drop_keyframe 12.7
# -> 6.9): PA-MPJPE over the 17 scenarios 12.14 -> 12.55 mm mean, far_4px 14.5 -> 19.4 (worst group 21.5: the
# 4 px goal lost), drop_keyframe 8.5 -> 10.2; before the shape stage (shape, neighbours on all keyframes;
# least of 2 with neighbours on the stride ones: beats 1.73x, near_1px 1.40x): far_4px +3.6 / +10.2 / -3.2 mm
# at seeds 0-2, near_4px +0.6 / +0.7 / +1.3; after the body stage (a motion keyframe from one start, no elbow
# restarts): far_4px seed 1 alike. Each moves z's unit (DepthTerm.kappa), read from the keyframes' body-stage
# fits, which decides the depth_unit solve (far_4px seed 1: 1.11 plain; joined before the shape stage 1.37,
# after the body stage 1.41, the depth_unit solve run in both), and the betas pooled there: both change with
# the frames and the starts that stage has. The hands stage comes after both readings. Later still, the
# motion keyframes through camera, body and depth with the others (z's unit as plain), then waiting while
# the stride ones run full, shape and neighbours, then one full-stage solve from those fits' hands, face and
# betas interpolated (their own body kept): CPU 0.85x summed over the 17 (1 run), PA-MPJPE 12.14 -> 12.32
# mm mean, drop_keyframe +2.83 / +0.01 / +1.80 mm at seeds 0-2, near_1px +0.92 / +0.57 / +0.16.
# With z's unit steadier (KAPPA_BLEND, KAPPA_REREAD: far_4px seed 1007's flip gone, 1.18 / 1.19) the join
# before the shape stage (its code: commit 9dd8a9a's MOTION_JOIN "full", motion_tier; removed after) still
# loses, also where the 2D-only solve never ran: 8 scenarios x seeds 0-2 (1 rep, against the same unit rules
# untiered) PA-MPJPE +0.22 mm mean, near_4px +0.77 / +1.19 / +1.66 (its unit read from the stride
# keyframes' body fits 2-6 % off), near_1px +0.46 / +1.53 / -0.27, outliers +0.14 / +3.06 / -3.00, beats
# +1.31 / -0.19 / +0.14; CPU 1.37x.


def hands_from_stride(run, schedule: Schedule, objective: ClipObjective, x_keys: torch.Tensor,
                      keys: torch.Tensor, stride_keys: torch.Tensor, frames: int) -> torch.Tensor:
    """The hands stage on the stride keyframes (stride_keys, a subset of keys) alone (fit_clip's motion_tiers):
    the others (motion_keyframes') take the columns it frees first (the hands, the face) from those fits
    interpolated, their own body as it is; the full stage after starts them there.
    run(spec, solve, x, scope): fit_clip's one stage."""
    is_stride = torch.isin(keys, stride_keys)
    x_keys = x_keys.clone()
    x_keys[is_stride] = run(schedule.hands, keyframe_solve, x_keys[is_stride], objective.subset(stride_keys))
    late = [n for n in schedule.hands.free if n not in schedule.body.free and n in objective.flat.layout]
    if late:
        columns = objective.columns(late)
        between = interpolate(x_keys[is_stride], stride_keys, frames)[keys[~is_stride]]
        x_keys[torch.nonzero(~is_stride)[:, 0][:, None], columns[None]] = between[:, columns]
    return x_keys


def temporal_solve(problem: StageProblem, x: torch.Tensor, progress: Progress, rho_2d: float = 0.0,
                   rho_param: float = 0.0, held: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Gauss-Newton on the whole clip with the temporal terms: the normal equations are
    block-pentadiagonal, each step solved exactly by a block-banded Cholesky (banded_cholesky;
    preconditioned CG where float rounding leaves it not positive definite).

    rho_2d (px/frame^2) and rho_param (rad/frame^2): Geman-McClure scales of the temporal terms
    (`temporal_cost`), 0 = quadratic. Robust, a quick stroke (tens of px/frame^2) costs about
    rho^2 and goes through, while the small accelerations of jitter stay quadratic and damped;
    the Gauss-Newton matrix takes each acceleration's weight at the step's start (IRLS).

    held: (first, last) this many frames at x's start and at its end kept where they are (a window
    of a clip: they carry the temporal terms across its edges); their rows of the normal equations
    cut to the identity."""
    objective = problem.objective
    free = problem.free
    damping = 1e-3

    def total(x_value):
        """The clip's cost at x_value, its points' pixels (T,P,2) and camera-space positions (T,P,3)."""
        uv, points = problem.project_points(x_value)
        cost = problem.frame_costs(x_value, uv=uv).sum() + temporal_cost(objective, x_value, uv, rho_2d, rho_param,
                                                                          points)
        return cost, uv, points

    with torch.no_grad():
        cost, uv, points = total(x)
    x_at = None  # where the derivatives were taken (a rejected step keeps them)
    steps = 0
    for _ in range(problem.spec.iterations):
        progress.steps += 1
        if x_at is not x:
            progress.evaluations += 1
            with torch.no_grad():
                (hessian, data_diagonal, hess_next, hess_skip, param_smooth,
                 gradient) = temporal_normal_equations(problem, x, uv, points, rho_2d, rho_param)
            x_at = x
        with torch.no_grad():
            # the damping on the data's diagonal and the parameters' second differences in the same three
            # bands, added along the blocks' diagonals (no (T,F,F) diagonal matrices built)
            # (in kept memory: fresh copies page-fault each step)
            workspace = objective.flat.workspace
            precond = workspace("smooth_diagonal", hessian.shape, hessian).copy_(hessian)
            precond.diagonal(dim1=-2, dim2=-1).add_(damping * data_diagonal + 2 * band_diagonal(param_smooth) + 1e-6)
            band1 = workspace("smooth_next", hess_next.shape, hess_next).copy_(hess_next)
            band2 = workspace("smooth_skip", hess_skip.shape, hess_skip).copy_(hess_skip)
            band1.diagonal(dim1=-2, dim2=-1).add_(-4 * band_next(param_smooth))
            band2.diagonal(dim1=-2, dim2=-1).add_(2 * param_smooth)
            if any(held):
                hold_ends(held, precond, band1, band2)
            factors = banded_cholesky(precond, band1, band2, workspace=workspace)
            if factors is not None:
                step = banded_solve(factors, -gradient if not any(held) else hold_ends(held, -gradient))
            else:  # not positive definite in float rounding: the preconditioned CG of before
                hess_block = hessian + torch.diag_embed(damping * data_diagonal)

                def matvec(v):  # batched matrix-vector products as broadcast multiply-sums (bmm: one column, slow)
                    out = ((hess_block * v[:, None]).sum(-1)
                           + 2 * second_difference_t(second_difference(v) * param_smooth))
                    out[:-1] += (hess_next * v[1:, None]).sum(-1)
                    out[1:] += (hess_next.transpose(1, 2) * v[:-1, None]).sum(-1)
                    out[:-2] += (hess_skip * v[2:, None]).sum(-1)
                    out[2:] += (hess_skip.transpose(1, 2) * v[:-2, None]).sum(-1)
                    return out

                step = block_pcg(matvec, -gradient, positive_cholesky(precond), iterations=30, rtol=1e-3)
                if any(held):  # (approximately: the held frames' step dropped after it)
                    hold_ends(held, step)
            x_new = x.clone()
            x_new[:, free] += step
            cost_new, uv_new, points_new = total(x_new)
            progress.evaluations += 1
            log.debug("temporal step: %.1f -> %.1f (damping %.0e)", float(cost), float(cost_new), damping)
            x_kept, cost_kept = x, cost
            x, damping, done = damped_step(cost, cost_new, x, x_new, damping, progress, floor=1e-4)
            if x is not x_kept:
                cost, uv, points = cost_new, uv_new, points_new
            steps += 1
            if done or (steps >= SMOOTH_STEPS and float(cost_kept - cost) < SMOOTH_GAIN * float(cost_kept)):
                break
    return x


def hold_ends(held: tuple[int, int], diagonal: torch.Tensor, next_band: torch.Tensor | None = None,
              skip_band: torch.Tensor | None = None) -> torch.Tensor:
    """The normal equations' rows of the held (first, last) frames at each end cut, in place: diagonal blocks
    (T,F,F) to the identity, the off-diagonal ones (T-1,F,F) and (T-2,F,F) that touch them to zero
    (a step's right-hand side (T,F) as `diagonal`: its rows to zero). Returns diagonal."""
    ends = torch.zeros(len(diagonal), dtype=torch.bool, device=diagonal.device)
    ends[:held[0]], ends[len(ends) - held[1]:] = True, True
    if diagonal.dim() == 2:
        diagonal[ends] = 0
        return diagonal
    diagonal[ends] = torch.eye(diagonal.shape[-1], dtype=diagonal.dtype, device=diagonal.device)
    if next_band is not None:
        next_band[ends[:-1] | ends[1:]] = 0
    if skip_band is not None:
        skip_band[ends[:-2] | ends[2:]] = 0
    return diagonal


def temporal_normal_equations(problem: StageProblem, x: torch.Tensor, uv: torch.Tensor, points: torch.Tensor,
                              rho_2d: float, rho_param: float) -> tuple[torch.Tensor, ...]:
    """The temporal solve's Gauss-Newton system at x (its points uv (T,P,2), points (T,P,3)), on the
    free columns (F): the block-pentadiagonal matrix as (T,F,F) diagonal blocks (data, priors and
    every temporal term but the parameters' second differences), (T,F) the data's own diagonal (what
    the damping scales), (T-1,F,F) and (T-2,F,F) off-diagonal blocks, (T-2,F) the parameters'
    second differences' weights, and the gradient (T,F) of the whole cost (frame_costs +
    temporal_cost). The gradient is analytic, from the Jacobian the matrix needs anyway: the
    temporal terms' derivatives in the points' pixels and depths go into the landmarks' covector
    (StageProblem.coupled_normal_equations), the parameters' directly; no autograd pass."""
    objective = problem.objective
    free = problem.free
    focal = float(objective.camera.focal)
    depth_smooth = objective.depth_smooth
    smooth, param_smooth = temporal_weights(objective, x, uv, rho_2d, rho_param)
    covector = second_difference_t(2 * smooth[..., None] * second_difference(uv))  # (T,P,2)
    if depth_smooth is not None:
        depth_covector = depth_smooth.depth_covector(points, focal, objective.gap_weights())
        covector = torch.cat([covector, depth_covector[..., None]], -1)
    smooth = smooth.repeat_interleave(2, 1)  # (T-2,2P)
    # the 2D accelerations' diagonal blocks go in as weights on the rows of the data's J^T W J
    hessian, jac, gradient = problem.coupled_normal_equations(x, covector, band_diagonal(smooth))
    gradient = gradient + second_difference_t(2 * param_smooth * second_difference(x))[:, free]
    hess_next, hess_skip = band_blocks(jac, smooth, diagonal=False, workspace=problem.objective.flat.workspace)
    # (jac is the evaluator's buffer or workspace, not needed after this: squared in place)
    data_diagonal = hessian.diagonal(dim1=-2, dim2=-1) - jac.square_().mul_((2 * band_diagonal(smooth))[..., None]).sum(1)
    del jac
    if depth_smooth is not None:  # the points' depth accelerations: rows of the same bands
        depth_jac, depth_weights = depth_smooth.rows(objective.flat, x, problem.rows, focal, objective.gap_weights())
        depth_diag, depth_next, depth_skip = band_blocks(depth_jac[..., free], depth_weights)
        hessian, hess_next, hess_skip = hessian + depth_diag, hess_next + depth_next, hess_skip + depth_skip
    return hessian, data_diagonal, hess_next, hess_skip, param_smooth[:, free], gradient


# joints of the body pose (1-21) outside the arms: hips, spine, legs, neck, collars, head
ARM_JOINTS = (16, 17, 18, 19, 20, 21)
NOISE_MAD = 0.6745 * math.sqrt(6)  # median |second difference| of white noise of sd 1 (1 -2 1: variance 6)


def landmark_noise_px(xy: np.ndarray, conf: np.ndarray, min_samples: int = 100) -> float:
    """The clip's landmark noise (px, sd per coordinate) from the landmarks' own second
    differences over frames: the median |xy[t+1] - 2 xy[t] + xy[t-1]| of the points seen in
    all three frames / NOISE_MAD. A talker's motion is slow against 1-4 px of white noise on
    most points (the face's and the torso's), so the median is the noise's; the quick strokes
    of a few hand points do not move it. NaN where fewer than min_samples triples are seen."""
    seen = conf > 0
    triple = seen[2:] & seen[1:-1] & seen[:-2]
    if triple.sum() < min_samples:
        return float("nan")
    d2 = xy[2:] - 2 * xy[1:-1] + xy[:-2]
    return float(np.median(np.abs(d2[triple])) / NOISE_MAD)


def noise_scale(xy: np.ndarray, conf: np.ndarray, reference_px: float) -> float:
    """The clip's landmark noise (landmark_noise_px) over reference_px, clamped to [1, NOISE_SCALE_MAX]:
    how much noisier the clip is than the clips the fit's weights were tuned on; 1 where reference_px
    is 0 (off) or the noise cannot be read."""
    if reference_px <= 0:
        return 1.0
    noise = landmark_noise_px(xy, conf)
    return min(max(noise / reference_px, 1.0), NOISE_SCALE_MAX) if math.isfinite(noise) else 1.0


def depth_noise(term: DepthTerm) -> float:
    """z's noise sd per pose point (z's unit) from its own second differences over frames, as
    landmark_noise_px reads the landmarks' (NaN where too few frames see it)."""
    pose = term.pose
    return landmark_noise_px(term.z[:, pose].cpu().numpy()[..., None], term.seen[:, pose].cpu().numpy())


# the arm joints whose rotation unseen_rotations smooths harder: shoulders and elbows. Not the wrists:
# a hand out of frame in a beat's stroke (benchmarks/smplx_truth near_4px, 250 frames) lost its
# stroke with them (PA-MPJPE 22.5 (25.0) -> 23.9 (26.6) mm, 2D 3.62 -> 3.84 px at x100)
UNSEEN_JOINTS = (16, 17, 18, 19)


def unseen_rotations(flat: FlatSMPLX, observed: np.ndarray, factor: float) -> torch.Tensor | None:
    """(T-2,D) factor on the parameters' second differences: `factor` on a shoulder's or an elbow's
    rotation (UNSEEN_JOINTS) over the frame triples with a frame that has landmarks
    but none on the joints the rotation moves (its descendants in the kinematic tree), 1
    elsewhere; None where no such triple or factor <= 1. observed (T,55) bool (observed_joints).
    A frame without any landmark is not one: the person is missing there, and `gap_weights` and
    the neighbours' own landmarks fill it (a visible frame beside a gap is not bent to the gap).

    Such a rotation's only evidence is the prior and the border (an arm out of frame projects
    outside it): the data term does not hold it, so the smoothness tuned against landmark
    evidence let it wander (issue 16's cut_chest, 250 frames: the error's 3D acceleration on the
    unobserved joints 0.56 mm/frame^2 against 0.16 on the observed, elbows' jitter 2.8x the truth's)."""
    from mentor.body.constants import PARENTS

    if factor <= 1 or "body" not in flat.layout or len(observed) < 3:
        return None
    frames = len(observed)
    present = observed.any(1)
    out = torch.ones(frames - 2, flat.dim, dtype=torch.float32, device=flat.pose_map.device)
    start = flat.layout["body"].start
    changed = False
    for k, joint in enumerate(flat.body_free):
        if joint not in UNSEEN_JOINTS:
            continue
        moved, todo = [], [joint]
        while todo:  # the joint's descendants
            children = [int(c) for c in np.flatnonzero(np.asarray(PARENTS) == todo.pop())]
            moved += children
            todo += children
        lost = present & ~observed[:, moved].any(1)
        unseen = lost[2:] | lost[1:-1] | lost[:-2]
        if unseen.any():
            out[torch.as_tensor(unseen, device=out.device), start + 3 * k: start + 3 * k + 3] = factor
            changed = True
    return out if changed else None


SHOULDER_JOINTS = (16, 17)  # the rotations shoulder_rotations smooths harder in every frame


def shoulder_rotations(flat: FlatSMPLX, frames: int, factor: float) -> torch.Tensor | None:
    """(T-2,D) the factor of a second Geman-McClure term on the parameters' second differences (the
    objective's smooth_param_extra, see extra_smoothing): factor - 1 on the shoulders' rotations
    (SHOULDER_JOINTS) over every frame triple of a clip of `frames` frames, 0 elsewhere; None where
    factor <= 1 or the layout has no body pose. With its scale / sqrt(factor - 1) a shoulder's small
    accelerations cost `factor` x more while a stroke's keeps the first term's smoothing (its cost
    at most one more cap): unseen_rotations' way (one term, factor x the weight at scale /
    sqrt(factor)) leaves a stroke's accelerations factor x less weight, and gestures went jittery
    (benchmarks/smplx_truth, 250 frames, x30: near_1px 1.20 -> 1.37x the truth's, drop_runs 1.21 -> 1.40).

    A shoulder's rotation is seen through one landmark a bone's length away (the elbow), its part
    along the line of sight only through MediaPipe's z, and its temporal weight was the elbow's:
    its error carried the fit's excess 3D jitter (issue 16, benchmarks/smplx_truth at 250 frames,
    the fit's shoulder rotations alone smoothed over ~2 frames: crossed 1.40 -> 1.27x the truth's,
    toward 1.31 -> 1.19, noise_4px 1.36 -> 1.17; the elbows' 1.37, 1.26, 1.31; the spine's, the
    collars', the root's and the translation's less)."""
    if factor <= 1 or "body" not in flat.layout or frames < 3:
        return None
    out = torch.zeros(frames - 2, flat.dim, dtype=torch.float32, device=flat.pose_map.device)
    start = flat.layout["body"].start
    for k, joint in enumerate(flat.body_free):
        if joint in SHOULDER_JOINTS:
            out[:, start + 3 * k: start + 3 * k + 3] = factor - 1
    return out


def extra_smoothing(objective: ClipObjective, x: torch.Tensor, rho_param: float
                    ) -> tuple[torch.Tensor | float, torch.Tensor | None]:
    """The objective's second term on the rotations' second differences (smooth_param_extra, e):
    e x param_weights under Geman-McClure at rotation_rho / sqrt(e) (per joint's 3-vector, as the
    first term; quadratic where rho_param is 0): (its cost, its IRLS weights (T-2,D)); (0, None)
    without it."""
    extra = objective.smooth_param_extra
    if extra is None:
        return 0.0, None
    weights = objective.param_weights() * extra
    d2 = second_difference(x)
    if rho_param <= 0:
        return (weights * d2 ** 2).sum(), weights
    rotation = rotation_columns(objective)
    squared = joint_squares(d2, rotation)
    rho = rotation_rho(objective, rho_param) / extra.clamp(min=1e-12).sqrt()
    cost = torch.where(rotation, weights * geman_mcclure(squared, rho) / 3, weights * d2 ** 2).sum()
    return cost, weights * torch.where(rotation, irls_weight(squared, rho), 1.0)


def temporal_objective(objective: ClipObjective, noise_scale: float, torso_scale: float,
                       unseen: torch.Tensor | None = None, shoulders: torch.Tensor | None = None) -> ClipObjective:
    """The objective with its temporal weights for this clip: the parameters' second differences
    x noise_scale^2 (MAP: the data term's weight is 1/sigma^2 against the priors', so at sigma =
    noise_scale x the noise the weights were tuned at, the smoothness counts noise_scale^2 more),
    and the torso's rotations' (global_orient and the body joints outside the arms, which the 2D
    landmarks see least: a spine leaning toward the camera moves the shoulders in depth only)
    x torso_scale more. The 2D accelerations keep their weights: x noise_scale^2 there too cut
    the quick strokes of beats at 4 px (benchmarks/smplx_truth near_4px, 250 frames: 2D error
    4.3 -> 6.5 px; on the parameters alone 4.1, their robust scale letting a stroke through).
    The depth accelerations' term (DepthSmoothing) x noise_scale^2 as the parameters', its
    robust scale kept (as theirs): a stroke's cost capped at noise_scale^2 x the tuned cap. Its
    scale x noise_scale too (the noise's own accelerations grow with its sd) helped noise_4px
    (PA-MPJPE 16.0 against 17.1 mm) but cut near_4px's strokes (22.8 -> 28.4 mm, 2D 3.72 -> 4.28 px).
    unseen (T-2,D): a factor per frame triple on the parameters' second differences (unseen_rotations);
    shoulders (T-2,D): a second term's on them (shoulder_rotations, extra_smoothing)."""
    param = objective.smooth_param.clone()
    torso = torch.zeros(objective.dim, dtype=torch.bool, device=param.device)
    torso[objective.columns(("global_orient",))] = True
    if "body" in objective.flat.layout:
        start = objective.flat.layout["body"].start
        for k, joint in enumerate(objective.flat.body_free):
            if joint not in ARM_JOINTS:
                torso[start + 3 * k: start + 3 * k + 3] = True
    param[torso] *= torso_scale
    depth = objective.depth_smooth
    if depth is not None:
        depth = replace(depth, weight=depth.weight * noise_scale**2)
    return replace(objective, smooth_param=param * noise_scale**2, depth_smooth=depth, smooth_param_frames=unseen,
                   smooth_param_extra=shoulders)


# despiked: the frames either side of a zig-zag that take the second solve's values, and the most its
# data cost there may rise (x the first solve's) for them to be taken. Set from benchmarks/smooth_ab
# (250 frames, at 40 px): the rise about switch's zig-zags -8 %, +9 %, +43 %, drop_runs' +7 %; where
# the landmarks held them, near_1px's beats near the camera, +1 %, +58 %, +68 %, +80 %, +444 %
DESPIKE_MARGIN = 3
DESPIKE_WORSE = 0.5
# ... and the second solve's Gauss-Newton steps at most (smooth_ab, 60 px: 2 against the smooth stage's 4-5:
# switch PA-MPJPE 7.35 against 7.39 mm, jitter 1.16 against 1.18x the truth's; near_1px 8.54 against 8.53;
# about half its CPU: on switch 0.84x the smooth stage's at 4 steps, 0.44x at 2, benchmarks/smplx_truth runs)
DESPIKE_STEPS = 2
# ... solved on windows: each run of those frames and DESPIKE_CONTEXT frames either side free, the 2 beyond
# held (0: the whole clip, every frame free). benchmarks/smplx_ab despike_contextN (250 frames, ec42f85's
# fitter): all 17 scenarios x 3 seeds, 9 of 51 fits ran the stage (switch, near_1px, beats@1001, near_4px@1006
# and @2006, drop_keyframe@1008, outliers@1010 and @2010, far_1px@2007): PA-MPJPE +0.00 mm mean, worst single
# +0.01, no goal lost; the stage's CPU (least of 2 interleaved, load 3) switch 1.14 -> 0.22 s, near_1px 1.24 ->
# 0.55 (two windows, 91 frames), whole fit 1.15x, 1.03x. At 6-8 near_1px's 3D jitter 1.13 -> 1.21x the truth's
# (+0.07 mm); 12 +0.01 mm. Free window ends (nothing held) drifted: switch's kept frames 61 and 35 mm (worst
# point) off the whole clip's at 6 and 12 frames either side, 3 mm at 40; held, 5 mm on the body points at
# 6-20: what the whole-clip solve moves every frame on (4-6 mm there), which its kept frames took while their
# neighbours stayed
DESPIKE_CONTEXT = 16


def despiked(x: torch.Tensor, smoothing: DepthSmoothing, flat: FlatSMPLX, focal: float, threshold: float,
             solve: Callable[..., torch.Tensor], frame_costs: Callable[[torch.Tensor], torch.Tensor],
             worse: float = 0.0, context: int = 0) -> torch.Tensor:
    """x (T,D) after the temporal solve with the frames where an elbow's depth zig-zags
    (DepthSmoothing.zigzags beyond threshold px/frame^2) put back on the cubic through the other
    frames and solved again, taken in each run of them and DESPIKE_MARGIN frames about it only,
    and only where its data cost there (`frame_costs(x) -> (T,)`) rose by at most `worse` x x's;
    x itself elsewhere. context > 0: solved on windows only, each such run and `context` frames
    either side (despike_windows) free and the 2 frames beyond them held at x,
    `solve(start, (lo, hi), (first, last)) -> x` on frames [lo, hi) with its first and last frames
    held (temporal_solve's held); else on the whole clip, `solve(start) -> x`.

    In a fast change of a forearm toward / away from the camera a keyframe's arm can sit tens of
    mm off in depth for one or two frames: 2D hardly sees it, and the robust smoothing, capped
    past its scale as a stroke's must be, holds it no more than a real stroke, so the temporal
    solve keeps that local minimum (issue 16's switch: its excess 3D jitter in such frames). The
    second solve's values are taken about the zig-zags alone: run on, the temporal solve moves
    every frame on (its stop is tuned: switch's PA-MPJPE 7.5 -> 7.6 mm, drop_runs 7.1 -> 7.6 from
    a second solve alone); and where the landmarks held the zig-zag (a beat's stroke near the
    camera: near_1px's data cost +35 %), it stays."""
    with torch.no_grad():
        bad = smoothing.zigzags(flat(x, None), focal, threshold)
    good = torch.nonzero(~bad)[:, 0]
    if not bad.any() or len(good) < 4:
        return x
    start = interpolate(x[good], good, len(x))
    # the zig-zag frames widened by DESPIKE_MARGIN, and the runs of them ([start, stop) each)
    widened = torch.nn.functional.max_pool1d(bad[None, None].float(), 2 * DESPIKE_MARGIN + 1, 1, DESPIKE_MARGIN)
    runs = frame_runs(widened[0, 0] > 0)
    if context > 0:
        again = x.clone()
        for lo, hi in despike_windows(runs, context, len(x)):
            # with the frames beside the window (the second differences' reach), held at x
            a, b = max(lo - 2, 0), min(hi + 2, len(x))
            again[a:b] = solve(start[a:b], (a, b), (lo - a, b - hi))
    else:
        again = solve(start)
    with torch.no_grad():
        before, after = frame_costs(x), frame_costs(again)
    out = x.clone()
    for first, stop in runs:
        rise = float(after[first:stop].sum() / before[first:stop].sum().clamp(min=1e-12)) - 1
        log.debug("depth zig-zag about frames %d-%d solved again: data cost %+.0f %%%s", first, stop - 1,
                  100 * rise, "" if rise <= worse else ", kept as it was")
        if rise <= worse:
            out[first:stop] = again[first:stop]
    return out


def frame_runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(T,) bool -> its runs of True frames, [start, stop) each, in order."""
    edges = torch.diff(torch.cat([mask.new_zeros(1), mask, mask.new_zeros(1)]).int())
    return list(zip(torch.nonzero(edges == 1)[:, 0].tolist(), torch.nonzero(edges == -1)[:, 0].tolist()))


def despike_windows(runs: list[tuple[int, int]], context: int, frames: int) -> list[tuple[int, int]]:
    """The windows despiked solves: each run [start, stop) widened by `context` frames either side
    (within [0, frames)), those less than 4 frames apart merged (each one's 2 held frames beyond it
    outside the other); in order."""
    windows: list[tuple[int, int]] = []
    for first, stop in runs:
        lo, hi = max(first - context, 0), min(stop + context, frames)
        if windows and lo < windows[-1][1] + 4:
            windows[-1] = (windows[-1][0], max(windows[-1][1], hi))
        else:
            windows.append((lo, hi))
    return windows


def clip_window(objective: ClipObjective, lo: int, hi: int) -> ClipObjective:
    """The temporal objective on frames [lo, hi) alone (hi - lo >= 3): ClipObjective.subset with its
    terms over frame triples (smooth_param_frames, smooth_param_extra) kept on the window's triples."""
    window = objective.subset(torch.arange(lo, hi, device=objective.observed.device))
    triples = slice(lo, hi - 2)
    return replace(window, smooth_param_frames=None if objective.smooth_param_frames is None
                   else objective.smooth_param_frames[triples],
                   smooth_param_extra=None if objective.smooth_param_extra is None
                   else objective.smooth_param_extra[triples])


def band_diagonal(weights: torch.Tensor) -> torch.Tensor:
    """(T-2,...) weights of second differences -> (T,...) each frame's share of D2^T W D2's diagonal (1, 4, 1)."""
    pad = torch.zeros_like(weights[:1])
    return torch.cat([weights, pad, pad]) + 4 * torch.cat([pad, weights, pad]) + torch.cat([pad, pad, weights])


def band_next(weights: torch.Tensor) -> torch.Tensor:
    """(T-2,...) -> (T-1,...): the second differences meeting frames t and t+1 (each -2 x 1), summed."""
    pad = torch.zeros_like(weights[:1])
    return torch.cat([weights, pad]) + torch.cat([pad, weights])


def band_blocks(jac: torch.Tensor, weights: torch.Tensor, diagonal: bool = True,
                workspace: Callable | None = None) -> tuple[torch.Tensor, ...]:
    """The Gauss-Newton blocks of sum_t,r weights_tr (second difference of rows r over t)^2 with
    rows' Jacobian jac (T,R,F) and weights (T-2,R): block-pentadiagonal, J_t^T S J_t' for
    |t-t'| <= 2, as (T,F,F) diagonal, (T-1,F,F) (t, t+1) and (T-2,F,F) (t, t+2) blocks; without
    the diagonal ones where diagonal is False (the caller adds 2 band_diagonal(weights) to the
    rows' weights of a J^T W J of its own instead: one (F,R) product fewer). workspace: FlatSMPLX.workspace,
    where the weighted rows are written (the same memory each call: no page faults), else fresh."""
    jac_t = jac.transpose(1, 2)
    # (the constant factors go on the weights, not on the (F,R) products: one big multiply fewer each)
    weighted = None if workspace is None else workspace("weighted", jac.shape, jac)[1:]  # (T-1,R,F)
    weighted_t = None if weighted is None else weighted.transpose(1, 2)
    off_diagonal = (torch.mul(jac_t[:-1], (-4 * band_next(weights))[:, None], out=weighted_t) @ jac[1:],)
    off_diagonal += (torch.mul(jac_t[:-2], (2 * weights)[:, None], out=None if weighted_t is None else weighted_t[1:])
                     @ jac[2:],)
    if not diagonal:
        return off_diagonal
    return ((jac_t * (2 * band_diagonal(weights))[:, None]) @ jac, *off_diagonal)


def rotation_columns(objective: ClipObjective) -> torch.Tensor:
    """(D,) bool: the body's joint rotations (root and body pose), whose second differences rho_param acts on."""
    mask = torch.zeros(objective.dim, dtype=torch.bool, device=objective.smooth_param.device)
    mask[objective.columns(("global_orient", "body"))] = True
    return mask


def temporal_weights(objective: ClipObjective, x: torch.Tensor, uv: torch.Tensor, rho_2d: float, rho_param: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The temporal terms' weights at x, robust ones scaled by Geman-McClure's IRLS factor
    rho^4 / (rho^2 + a^2)^2: (T-2,P) per point's 2D acceleration, (T-2,D) per parameter's second
    difference (rho_param on the joint rotations, per joint's 3-vector)."""
    smooth = objective.smooth_weights()
    if rho_2d > 0:
        smooth = smooth * irls_weight((second_difference(uv) ** 2).sum(-1), rho_2d)
    param = objective.param_weights()
    if rho_param > 0:
        squared = joint_squares(second_difference(x), rotation_columns(objective))
        robust = irls_weight(squared, rotation_rho(objective, rho_param))
        param = param * torch.where(rotation_columns(objective), robust, 1.0)
    _, extra = extra_smoothing(objective, x, rho_param)
    return smooth, param if extra is None else param + extra


def rotation_rho(objective: ClipObjective, rho_param: float) -> float | torch.Tensor:
    """The rotations' Geman-McClure scale: rho_param, / sqrt(factor) where smooth_param_frames
    weighs a second difference `factor` x more (unseen_rotations): such a rotation's small
    accelerations cost factor x more, a quick stroke's the same cap as a seen one's (weight x
    rho^2), so an arm swinging out of frame in a stroke is not held back (T-2,D), else a float."""
    frames = objective.smooth_param_frames
    return rho_param if frames is None else rho_param / frames.sqrt()


def joint_squares(d2: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """(T-2,D) second differences -> (T-2,D): on rotation columns, the squared norm of the joint's
    3-vector (columns in runs of 3) on each of its columns; elsewhere the column's own square."""
    squared = d2 ** 2
    cols = torch.nonzero(rotation)[:, 0]
    per_joint = squared[:, cols].reshape(squared.shape[0], -1, 3).sum(-1).repeat_interleave(3, 1)
    out = squared.clone()
    out[:, cols] = per_joint
    return out


def temporal_cost(objective: ClipObjective, x: torch.Tensor, uv: torch.Tensor, rho_2d: float, rho_param: float,
                  points: torch.Tensor | None = None) -> torch.Tensor:
    """Scalar: the clip's temporal terms, objective.temporal_cost with the 2D accelerations
    (rho_2d > 0) and the joint rotations' second differences (rho_param > 0) under Geman-McClure.
    points (T,P,3): x's camera-space points where the caller has them (else computed again)."""
    extra, _ = extra_smoothing(objective, x, rho_param)
    if rho_2d <= 0 and rho_param <= 0:
        return objective.temporal_cost(x, uv) + depth_smoothing_cost(objective, x, points) + extra
    acceleration = (second_difference(uv) ** 2).sum(-1)  # (T-2,P)
    if rho_2d > 0:
        acceleration = geman_mcclure(acceleration, rho_2d)
    weights = objective.param_weights()  # (T-2,D)
    param = second_difference(x) ** 2 * weights
    if rho_param > 0:  # each joint's rotation: its weight x GM of its 3-vector's squared second difference
        rotation = rotation_columns(objective)
        joints = param[:, rotation].reshape(len(param), -1, 3)
        weight = weights[:, rotation].reshape(len(param), -1, 3)[..., 0]
        squared = joints.sum(-1) / weight.clamp(min=1e-30)
        rho = rotation_rho(objective, rho_param)
        if isinstance(rho, torch.Tensor):  # per joint (its 3 columns share it)
            rho = rho[:, rotation].reshape(len(param), -1, 3)[..., 0]
        return ((acceleration * objective.smooth_weights()).sum() + param[:, ~rotation].sum()
                + (weight * geman_mcclure(squared, rho)).sum() + depth_smoothing_cost(objective, x, points) + extra)
    return ((acceleration * objective.smooth_weights()).sum() + param.sum() + depth_smoothing_cost(objective, x, points)
            + extra)


def depth_smoothing_cost(objective: ClipObjective, x: torch.Tensor, points: torch.Tensor | None = None
                         ) -> torch.Tensor | float:
    """The body points' depth accelerations' cost (smplx_objective.DepthSmoothing; 0 without it);
    points (T,P,3) x's camera-space points where known (its points are body landmarks: the same
    at any contour rows)."""
    smoothing = objective.depth_smooth
    if smoothing is None:
        return 0.0
    return smoothing.cost(objective.flat(x, None) if points is None else points, float(objective.camera.focal),
                          objective.gap_weights())


def lbfgs_solve(problem: StageProblem, x: torch.Tensor, progress: Progress, max_evaluations: int) -> torch.Tensor:
    """torch's L-BFGS (strong Wolfe) on the summed objective: the per-image SMPLify-X way."""
    free = problem.free
    x_free = x[:, free].clone().requires_grad_(True)
    pool = problem.pools_shape and x.shape[0] > 1

    def closure():
        progress.evaluations += 1
        x_free.grad = None
        x_full = x.clone()
        x_full[:, free] = x_free
        beta_mean = x_full[:, problem.objective.beta_columns].mean(0).detach() if pool else None
        loss = problem.frame_costs(x_full, beta_mean).sum()
        loss.backward()
        return loss

    # torch's L-BFGS stops when a line search makes no float32 progress, often far from the
    # minimum: restart it until a restart gains less than tolerance (relative), as "to convergence"
    previous = float("inf")
    start = progress.evaluations
    while progress.evaluations - start < max_evaluations:
        optimizer = torch.optim.LBFGS([x_free], lr=1.0, max_iter=30, history_size=20, line_search_fn="strong_wolfe",
                                      tolerance_grad=1e-7, tolerance_change=1e-9)  # fresh history each restart
        loss = float(optimizer.step(closure).detach())
        if previous - loss < progress.tolerance * abs(loss):
            break
        previous = loss
    x = x.clone()
    x[:, free] = x_free.detach()
    return x


# ------------------------------------------------------------------------ the clip fit

def fit_clip(
    sparse: SparseSMPLX,
    targets: list[Target],
    xy: np.ndarray,
    conf: np.ndarray,
    camera: np.ndarray,
    image_size: tuple[int, int],
    *,
    iterations: int = 60,
    robust_rho: float = 0.05,
    smooth_weight: float = 1.0,
    pose_prior: torch.nn.Module | None = None,
    device: str | torch.device = "cpu",
    tolerance: float = 1e-4,
    schedule: Schedule | None = None,
    optimizer: str = "batched",
    keyframe_stride: int = 8,
    focal_source: str = "given",
    bounds: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    threads: int | None = None,
    depth_weight: float = 0.0,
    depth_restarts: bool = True,
    smooth_rho: float = 0.0,
    smooth_rho_rad: float = 0.0,
    smooth_noise_px: float = 0.0,
    smooth_torso: float = 1.0,
    smooth_depth: float = 0.0,
    smooth_depth_rho: float = 0.0,
    smooth_unseen: float = 1.0,
    smooth_shoulders: float = 1.0,
    smooth_despike_px: float = 0.0,
    motion_tolerance_px: float = 3.0,
    motion_tiers: bool = False,
    hand_gap_decay: float = HAND_GAP_DECAY,
    stop_after: str | None = None,
    fit_focal: bool = False,
    shape_collar_weight: float = 0.0,
    depth_rho_noise_px: float = 0.0,
    knuckle_weight: float = KNUCKLE_WEIGHT,
    knuckle_weight_seen: float = KNUCKLE_WEIGHT_SEEN,
) -> FitResult | StoppedFit:
    """Fit SMPL-X to one clip's 2D landmarks.

    xy: (T,K,2) observed pixels, conf: (T,K) in [0,1] (0 = missing), targets: the K model
    points they observe, camera: (f, cx, cy). Temporal terms apply when T > 2.
    optimizer: "batched" (the schedule's strategies, see the module docstring) or "lbfgs"
    (torch's L-BFGS with strong Wolfe on the same objective, each stage run to convergence
    (restarted until a restart gains < tolerance; at most 10 x `iterations` evaluations a
    stage), no temporal terms: SMPLify-X's per-image way; use it on one frame at a time as
    the per-frame baseline). focal_source is recorded in the result (where camera's focal came from).
    bounds (T,K,2) int8: per axis 0 = fit the point to xy, +1 / -1 = only keep it at or beyond /
    at or before xy (a landmark outside the image: annotate/correspondences.py gather_evidence).
    depth (T,K): MediaPipe's relative z of each landmark (NaN where none; any unit): picks the
    arms' depth among mirrored restarts (annotate/smplx_depth.py) when depth_restarts, and with
    depth_weight > 0 is a term of the objective (annotate/smplx_objective.py DepthTerm).
    depth_rho_noise_px: the depth term's robust scale x noise_scale(the clip's landmarks, this)^2: x1 on
    clips whose landmark noise is under this (px), growing with the square of the noise beyond; 0: fixed.
    motion_tolerance_px: the least off-line error (px) for which motion_keyframes adds a keyframe.
    motion_tiers: the hands stage on the stride keyframes alone; motion_keyframes' others take its hands
    and face interpolated into the full stage (hands_from_stride; False: every keyframe through it).
    smooth_unseen: x on the temporal solve's smoothness of an arm joint's rotation over frames in
    which no landmark sees what it moves (unseen_rotations; 1: as the seen ones').
    smooth_shoulders: x on the temporal solve's smoothness of the shoulders' small accelerations in
    every frame, a stroke's kept (shoulder_rotations; 1: as the other arm joints').
    smooth_despike_px: the frames where an elbow's depth zig-zags past this (px/frame^2, its
    acceleration's part that its neighbours' do not carry) solved again from the cubic through the
    other frames after the temporal solve (despiked; 0: off).
    hand_gap_decay: frames over which a hand's gaps lean on its seen frames (fill_hand_gaps; 0: off).
    knuckle_weight, knuckle_weight_seen: x on the pose's hand points' confidence (POSE_KNUCKLES: the
    hand's orientation where the hand landmarks are missing) in the frames without / with that hand's
    landmarks (correspondences.weigh_knuckles; 0: not used there).
    threads: torch's intra-op threads for this fit (restored after it); None leaves torch's setting.
    stop_after: the keyframes' last stage's name (schedule.neighbours, "neighbours") stops the fit
    there and returns a StoppedFit whose finish() runs the temporal solve on all frames (the focal
    search fits each focal's candidate that far, ~3/4 of a fit, and finishes the best only).
    fit_focal: camera's focal is a guess (the size-based one) and is fitted with the clip's shape
    (shared_shape_solve's log focal; the result's camera holds the fitted focal); batched only.
    The fit is thousands of small ops: with 2 threads on a busy 2-core box one 250-frame fit
    took 3.9 s to 256 s (issue 16), with 1 it is steady; the annotator pins 1 (smplx.threads).
    """
    with torch_threads(threads):
        return _fit_clip(sparse, targets, xy, conf, camera, image_size, iterations=iterations, robust_rho=robust_rho,
                         smooth_weight=smooth_weight, pose_prior=pose_prior, device=device, tolerance=tolerance,
                         schedule=schedule, optimizer=optimizer, keyframe_stride=keyframe_stride,
                         focal_source=focal_source, bounds=bounds, depth=depth, depth_weight=depth_weight,
                         mirror_restarts=depth_restarts, smooth_rho=smooth_rho, smooth_rho_rad=smooth_rho_rad,
                         smooth_noise_px=smooth_noise_px, smooth_torso=smooth_torso, smooth_depth=smooth_depth,
                         smooth_depth_rho=smooth_depth_rho, smooth_unseen=smooth_unseen,
                         smooth_shoulders=smooth_shoulders, smooth_despike_px=smooth_despike_px,
                         motion_tolerance_px=motion_tolerance_px, motion_tiers=motion_tiers,
                         hand_gap_decay=hand_gap_decay,
                         stop_after=stop_after, fit_focal=fit_focal, shape_collar_weight=shape_collar_weight,
                         depth_rho_noise_px=depth_rho_noise_px, knuckle_weight=knuckle_weight,
                         knuckle_weight_seen=knuckle_weight_seen)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's intra-op threads set to `threads` inside the block, restored after (None: unchanged)."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads {threads}: use None (torch's setting) or >= 1")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit_clip(sparse, targets, xy, conf, camera, image_size, *, iterations, robust_rho, smooth_weight, pose_prior,
              device, tolerance, schedule, optimizer, keyframe_stride, focal_source, bounds,
              depth=None, depth_weight=0.0, mirror_restarts=True, smooth_rho=0.0, smooth_rho_rad=0.0,
              smooth_noise_px=0.0, smooth_torso=1.0, smooth_depth=0.0, smooth_depth_rho=0.0,
              smooth_unseen=1.0, smooth_shoulders=1.0, smooth_despike_px=0.0, motion_tolerance_px=3.0,
              motion_tiers=False, hand_gap_decay=HAND_GAP_DECAY,
              stop_after=None, fit_focal=False, shape_collar_weight=0.0,
              depth_rho_noise_px=0.0, knuckle_weight=KNUCKLE_WEIGHT,
              knuckle_weight_seen=KNUCKLE_WEIGHT_SEEN) -> FitResult | StoppedFit:
    """fit_clip's body, under its thread setting."""
    if optimizer not in ("batched", "lbfgs"):
        raise ValueError(f"optimizer {optimizer!r}: use 'batched' or 'lbfgs'")
    if fit_focal and optimizer != "batched":
        raise ValueError(f"fit_focal with optimizer {optimizer!r}: the focal is fitted by the batched optimizer's "
                         "shape stage; use optimizer 'batched' or give the focal (fit_focal=False)")
    if hand_gap_decay < 0:
        raise ValueError(f"hand_gap_decay {hand_gap_decay}: use >= 0 frames (0: off)")
    if smooth_shoulders < 1:
        raise ValueError(f"smooth_shoulders {smooth_shoulders}: use >= 1 (1: the shoulders as the other arm joints)")
    if smooth_despike_px < 0:
        raise ValueError(f"smooth_despike_px {smooth_despike_px}: use >= 0 px/frame^2 (0: off)")
    if depth_rho_noise_px < 0:
        raise ValueError(f"depth_rho_noise_px {depth_rho_noise_px}: use >= 0 px (0: the depth term's robust scale fixed)")
    started, cpu_started = time.perf_counter(), time.process_time()
    device = torch.device(device)
    sparse = sparse.to(device)
    frames = conf.shape[0]
    schedule = schedule or default_schedule(iterations)
    if fit_focal:  # keyframes fitted under the focal's guess, which they then move: none settled (KEYFRAME_SETTLE_GAIN)
        schedule = replace(schedule, **{f.name: replace(getattr(schedule, f.name), settle_gain=0.0)
                                        for f in fields(schedule)})
    if shape_collar_weight < 0:
        raise ValueError(f"shape_collar_weight {shape_collar_weight}: use >= 0 per rad^2 (0: off)")
    if shape_collar_weight > 0:
        schedule = replace(schedule, shape=replace(schedule.shape, collar_weight=shape_collar_weight))
    if stop_after is not None and (stop_after != schedule.neighbours.name or optimizer != "batched"):
        raise ValueError(f"stop_after {stop_after!r} with optimizer {optimizer!r}: the fit stops only after the "
                         f"keyframes' last stage ({schedule.neighbours.name!r}, optimizer 'batched'), or use None")
    prior = (pose_prior or make_pose_prior(None)).to(device)
    conf = weigh_knuckles(conf, targets, knuckle_weight, knuckle_weight_seen, KNUCKLE_MIN_CONFIDENCE)
    active = conf.max(0) > 0
    if active.sum() < 3:
        raise ValueError("fewer than 3 landmarks observed in the whole clip")
    sparse.set_contour_rows(torch.arange(sparse.dyn_faces.shape[0], device=device))  # frames index the whole table
    seen_targets = [t for t, a in zip(targets, active) if a]
    flat = FlatSMPLX(sparse, active, fingers=hands_seen(seen_targets)).to(device)
    observed = observed_joints(sparse.point_joints(), xy, conf, image_size)  # (T,55) joints a landmark sees
    point_weight = torch.tensor([t.weight for t in seen_targets], dtype=torch.float32, device=device)
    torso_points = {ModelPoint.joint(j) for j in TORSO_JOINTS}
    torso = np.array([t.point in torso_points or t.group == "face" for t in seen_targets])
    cam = Camera.from_array(np.asarray(camera, np.float32), *image_size, device=device)
    objective = ClipObjective.build(
        flat, observed=torch.tensor(xy[:, active], dtype=torch.float32, device=device),
        confidence=torch.tensor(conf[:, active], dtype=torch.float32, device=device) * point_weight,
        groups=[t.group for t in seen_targets], torso=torso, camera=cam, rho=robust_rho * max(image_size),
        prior=prior, smooth_weight=smooth_weight,
        bounds=None if bounds is None else torch.tensor(bounds[:, active], dtype=torch.float32, device=device))
    # the clip's landmark noise against the temporal weights' tuning
    noise_factor = noise_scale(xy[:, active], conf[:, active], smooth_noise_px)
    depth_evidence = None
    if depth is not None and depth_weight > 0 and optimizer == "batched":  # MediaPipe's z in the objective
        term = DepthTerm.build(flat, seen_targets, depth[:, active],
                               torch.tensor(conf[:, active], dtype=torch.float32, device=device),
                               sparse.point_joints()[active], depth_weight)
        objective = objective.with_depth(None if term is None else term.with_noise(depth_noise(term)).widened(
            noise_scale(xy[:, active], conf[:, active], depth_rho_noise_px) ** 2))
    if depth is not None and optimizer == "batched" and mirror_restarts:
        joint_of = np.array([t.point.index if t.point.kind == "joint" and t.source == "landmarks.pose" else -1
                             for t in seen_targets])
        evidence = DepthEvidence(torch.tensor(depth[:, active], dtype=torch.float32, device=device), joint_of)
        depth_evidence = evidence if evidence.usable else None
    else:
        depth_evidence = None

    x = rest_x(flat, frames, device)
    with torch.no_grad():
        rest = flat(x[:1], torch.zeros(1, dtype=torch.long, device=device))[0].cpu().numpy()
    start = initial_translation(rest, xy[:, active], conf[:, active], torso, cam)
    if start is None:
        raise ValueError("no frame has 3 or more confident torso/face landmarks")
    x[:, flat.layout["transl"]] = torch.tensor(start, dtype=torch.float32, device=device)
    progress = Progress(tolerance=tolerance)

    def fitted_camera() -> np.ndarray:
        """(3,) focal, cx, cy: camera's, its focal as fitted (fit_focal moves cam's in place)."""
        return np.array([float(cam.focal), *np.asarray(camera, np.float32)[1:]], np.float32)

    def finished(x: torch.Tensor) -> FitResult:
        """The fit's result from its final parameters (all frames)."""
        nonlocal cpu_started
        progress.charge("setup", cpu_started)
        cpu_started = time.process_time()
        result = _result(sparse, objective, x.detach(), xy, conf, fitted_camera(), image_size, started, progress,
                         focal_source)
        progress.charge("result", cpu_started)
        return result

    def run(stage: StageSpec, solve, x: torch.Tensor, scope: ClipObjective) -> torch.Tensor:
        """One stage: its problem at the current contour rows, the strategy, then the shape pooled."""
        nonlocal cpu_started
        progress.charge("setup", cpu_started)
        cpu, steps = time.process_time(), progress.steps
        with torch.no_grad():
            rows = sparse.contour_rows(params_from_x(scope, x, sparse.num_pca))
        problem = scope.stage(stage, rows)
        x = solve(problem, x, progress)
        with torch.no_grad():
            beta_mean = x[:, scope.beta_columns].mean(0) if problem.pools_shape else None
            progress.losses.append(float(problem.frame_costs(x, beta_mean).mean()))
            progress.stage_loss[stage.name] = progress.losses[-1]
        log.debug("stage %s on %d frames: loss %.3f after %d evaluations, %.2f s", stage.name, x.shape[0],
                  progress.losses[-1], progress.evaluations, time.perf_counter() - started)
        if problem.pools_shape:  # from here on (and in the output) one shape for the clip
            x[:, scope.beta_columns] = x[:, scope.beta_columns].mean(0)
        progress.charge(stage.name, cpu, progress.steps - steps)
        cpu_started = time.process_time()
        return x

    if optimizer == "lbfgs":
        def lbfgs(problem, x, progress):
            return lbfgs_solve(problem, x, progress, max_evaluations=10 * iterations)

        for stage in schedule.stages()[:-1]:  # no temporal terms: every stage on each frame alone
            if stage.name not in ("shape", "depth"):  # clip-level stages (a shared shape, a Viterbi)
                x = run(stage, lbfgs, x, objective)
    else:
        stride = keyframe_stride if frames >= 3 * keyframe_stride else 1
        usable = ((conf[:, active] > 0.3) & torso).sum(1) >= 3  # what placing the camera needs
        keys = keyframe_indices(frames, stride, device, usable)
        stride_keys = keys
        if stride > 1:
            groups = np.array([t.group for t in seen_targets])
            moving = np.isin(groups, ("body", "left_hand", "right_hand"))
            parts = np.where(groups == "left_hand", -1, np.where(groups == "right_hand", -2, np.arange(len(groups))))
            extra = motion_keyframes(keys.cpu().numpy(), xy[:, active], conf[:, active] * usable[:, None], moving,
                                     parts=parts, min_tolerance_px=motion_tolerance_px)
            keys = torch.as_tensor(extra, device=device)
        all_keys = len(keys) == frames
        on_keys = objective if all_keys else objective.subset(keys)
        x_keys = x if all_keys else x[keys]

        evidence = depth_evidence.subset(keys) if depth_evidence is not None and not all_keys else depth_evidence
        transition = TRANSITION_WEIGHT * smooth_weight

        def neighbours(problem, x, progress):
            return neighbour_restarts(problem, x, progress, transition, evidence)

        def mirrored(problem, x, progress):
            return depth_restarts(problem, x, progress, evidence, transition)

        seen_forearm = forearms_seen(observed[keys.cpu().numpy()])

        def body(problem, x, progress):
            return elbow_restarts(problem, x, progress, seen_forearm)

        x_keys = run(schedule.camera, keyframe_solve, x_keys, on_keys)
        x_keys = run(schedule.body, body, x_keys, on_keys)
        if on_keys.depth is not None:  # z's unit against the body's depths, from the fit so far
            with torch.no_grad():
                on_keys.depth.calibrate(flat(x_keys, None), float(cam.focal))
            kappa_fit = float(on_keys.depth.kappa)
            # that fit was made with z at the nominal unit and its depths lean to it: where the same
            # keyframes solved again from 2D alone give a unit KAPPA_TRAPPED x larger, the fit was
            # held by z's compression (issue 16's far_1px: 0.87 against 1.36 from 2D, 1.54 on the
            # truth's pose); elsewhere the fit's own unit is kept (beats: 1.38 and 1.47, truth 1.42;
            # 100 frames PA-MPJPE 7.5 mm at 1.38, 9.9 at 1.42, 11.7 at 1.47)
            # (solved only where the closed form of that unit says it could be, KAPPA_SCREEN, and the
            # fit's unit reads near the nominal one, KAPPA_HELD; and only where a keyframe sees an arm bone's
            # z at both ends, which that unit is read from: elsewhere calibrate falls back to every pose point's
            # z, the reading the fit's own unit came from (curation_cost's talking heads, arms out of frame: it
            # read 1.01-1.16x the fit's unit on 6 of 6 clips, under KAPPA_TRAPPED: 2.6 of 62 CPU-s that moved
            # nothing)
            with torch.no_grad():
                closed_form = on_keys.depth.kappa_from_2d(flat(x_keys, None), on_keys.observed, float(cam.focal))
            if (kappa_fit < KAPPA_HELD + KAPPA_BLEND and on_keys.depth.sees_bones()
                    and (closed_form is None or closed_form >= (KAPPA_SCREEN - KAPPA_BLEND) * kappa_fit)):
                x_plane = run(replace(schedule.body, name="depth_unit"), keyframe_solve, x_keys,
                              on_keys.with_depth(None))
                with torch.no_grad():
                    at_lengths = on_keys.depth.calibrate(flat(x_plane, None), float(cam.focal), from_bones=True)
                # judged at the 2D-only solve's own bone lengths (the unit with their length factor fitted is
                # the one taken; judged by it too, crossed 8.5 -> 12.2 mm and near_4px 26.3 -> 29.0 took it)
                weight = 0.0 if at_lengths is None else unit_blend(kappa_fit, at_lengths / kappa_fit, KAPPA_BLEND)
                if weight < 1:
                    on_keys.depth.kappa.fill_(kappa_fit * (float(on_keys.depth.kappa) / kappa_fit) ** weight)
        if evidence is not None and evidence.usable:
            with torch.no_grad():
                evidence.calibrate(flat(x_keys, None), float(cam.focal))
            x_keys = run(schedule.depth, mirrored, x_keys, on_keys)
        if motion_tiers and not all_keys and len(stride_keys) < len(keys):  # the motion keyframes' hands from theirs
            x_keys = hands_from_stride(run, schedule, objective, x_keys, keys, stride_keys, frames)
        else:
            x_keys = run(schedule.hands, keyframe_solve, x_keys, on_keys)
        x_keys = run(schedule.full, keyframe_solve, x_keys, on_keys)
        if on_keys.depth is not None:  # z's unit read again from the arm bones (KAPPA_REREAD)
            with torch.no_grad():
                reread = on_keys.depth.unit_from_bones(flat(x_keys, None), float(cam.focal))
            if reread is not None and reread < KAPPA_REREAD * float(on_keys.depth.kappa):
                log.debug("z's unit %.3f read again from the arm bones: %.3f", float(on_keys.depth.kappa), reread)
                on_keys.depth.kappa.fill_(reread)
        focal_guess = float(camera[0]) if fit_focal else None

        def shape(problem, x, progress):
            return shared_shape_solve(problem, x, progress, focal_guess)

        x_keys = run(schedule.shape, shape, x_keys, steady_pose(objective, keys, all_keys, on_keys, noise_factor))
        x_keys = run(schedule.neighbours, neighbours, x_keys, on_keys)

        def finish() -> FitResult:
            """The stages after the keyframes' (resumed here where the fit was stopped), then the result."""
            nonlocal cpu_started, started
            if stop_after is not None:  # resumed: the time since the stop is not this fit's (the stages use
                # `flat`, built at the start; `sparse`'s contour rows, which other fits change, only in _result)
                started, cpu_started = time.perf_counter() - stopped_seconds, time.process_time()
            # frames between keyframes (and those without landmarks) start from the keyframes' interpolation
            x = x_keys if all_keys else interpolate(x_keys, keys, frames)
            if frames > 2 and smooth_weight > 0:
                rho_2d = smooth_rho * max(image_size)

                def smooth(problem, x, progress):
                    return temporal_solve(problem, x, progress, rho_2d, smooth_rho_rad)

                log.debug("landmark noise x %.2f: temporal weights x %.1f", noise_factor, noise_factor**2)
                smoothing = DepthSmoothing.build(flat, seen_targets, sparse.point_joints()[active],
                                                 smooth_depth * smooth_weight, smooth_depth_rho)
                unseen = unseen_rotations(flat, observed, smooth_unseen)
                temporal = temporal_objective(objective.with_depth_smoothing(smoothing), noise_factor, smooth_torso,
                                              unseen, shoulder_rotations(flat, frames, smooth_shoulders))
                x = run(schedule.smooth, smooth, x, temporal)
                if smoothing is not None and smooth_despike_px > 0:
                    def frame_costs(x_value):  # each frame's data and prior cost under the temporal objective
                        rows = sparse.contour_rows(params_from_x(temporal, x_value, sparse.num_pca))
                        return temporal.stage(schedule.smooth, rows).frame_costs(x_value)

                    def solve_again(start, window=None, held=(0, 0)):  # despiked's second solve (on [lo, hi))
                        def smooth_held(problem, x, progress):
                            return temporal_solve(problem, x, progress, rho_2d, smooth_rho_rad, held=held)

                        spec = replace(schedule.smooth, name="despike",
                                       iterations=min(schedule.smooth.iterations, DESPIKE_STEPS))
                        if window is None:
                            return run(spec, smooth, start, temporal)
                        return run(spec, smooth_held, start, clip_window(temporal, *window))

                    x = despiked(x, smoothing, flat, float(cam.focal), smooth_despike_px, solve_again,
                                 frame_costs, DESPIKE_WORSE, DESPIKE_CONTEXT)
            if hand_gap_decay > 0:
                groups = np.array([t.group for t in seen_targets])
                missing = {g: ~(conf[:, active][:, groups == g] > 0).any(1) for g in ("left_hand", "right_hand")}
                x = fill_hand_gaps(flat, x, missing, hand_gap_decay, wrist_missing(missing, conf[:, active],
                                                                                   seen_targets))
            return finished(x)

        if stop_after is not None:
            progress.charge("setup", cpu_started)
            stopped_seconds = time.perf_counter() - started
            return StoppedFit(camera=fitted_camera(), stage_loss=progress.stage_loss,
                              stage_cpu=progress.stage_cpu, finish=finish)
        return finish()
    return finished(x)


def _result(sparse: SparseSMPLX, objective: ClipObjective, x: torch.Tensor, xy: np.ndarray, conf: np.ndarray,
            camera: np.ndarray, image_size: tuple[int, int], started: float, progress: Progress,
            focal_source: str) -> FitResult:
    """The fitted parameters and their scores: reprojection error per frame, 2D jitter."""
    device = x.device
    frames = x.shape[0]
    params = params_from_x(objective, x, sparse.num_pca)
    with torch.no_grad():
        sparse.set_contour_rows(sparse.contour_rows(params))
        points, joints = sparse(params)
        uv = objective.camera.project(points)
        error = torch.linalg.norm(uv - torch.tensor(xy, dtype=torch.float32, device=device), dim=-1)
        seen = torch.tensor(conf > 0.5, device=device)
        count = seen.sum(1)
        per_frame = torch.where(count > 0, (error * seen).sum(1) / count.clamp(min=1),
                                torch.full_like(count, float("nan"), dtype=error.dtype))
        joints_2d = objective.camera.project(joints[:, UPPER_BODY_JOINTS])
        jitter = (float(torch.linalg.norm(second_difference(joints_2d), dim=-1).mean()) if frames > 2 else 0.0)
    joints_np = joints.cpu().numpy()
    observed = observed_joints(sparse.point_joints(), xy, conf, image_size)
    return FitResult(params=params.to("cpu"), camera=np.asarray(camera, np.float32),
                     reprojection_px=per_frame.cpu().numpy(), points2d=uv.cpu().numpy(),
                     joints=joints_np, jitter=jitter, seconds=time.perf_counter() - started,
                     evaluations=progress.evaluations, losses=progress.losses,
                     depth_confidence=depth_confidence(joints_np, observed), observed=observed,
                     focal_source=focal_source, stage_cpu=progress.stage_cpu, stage_steps=progress.stage_steps,
                     stage_loss=progress.stage_loss)


# ------------------------------------------------------------------------ annotator

def face_height_px(face: np.ndarray | None, fallback: float) -> float:
    """Median height of the face-mesh points' box over the frames that have a face (T x N x
    >=2 pixels, NaN rows where none): the length the pixel gates are scaled by, so that a
    gate means the same for a face of 100 px and of 400 px. `fallback` without a face."""
    if face is None or not np.isfinite(face[..., 1]).any():
        return float(fallback)
    y = face[..., 1]
    seen = np.isfinite(y).any(axis=1)
    return float(np.median(np.nanmax(y[seen], axis=1) - np.nanmin(y[seen], axis=1)))


def _fraction(a: np.ndarray | None) -> float:
    if a is None or len(a) == 0:
        return 0.0
    return float(np.isfinite(a[..., :2]).any(axis=(1, 2)).mean())


class SmplxFitter:
    """Annotator: SMPL-X parameters per frame from the `landmarks.*` arrays.

    Writes arrays smplx.{betas, global_orient, body_pose, jaw_pose, leye_pose, reye_pose,
    left_hand_pose, right_hand_pose, expression, transl, camera, reprojection_px,
    depth_confidence (T,) float32 in [0,1], observed (T,55) uint8: joint supported by a confident
    in-frame landmark} (T rows each; betas and camera repeat the clip's one value), scores
    smplx.{reprojection_px, jitter, fit_seconds, outlier_frames (frames whose landmarks had a gross
    error: annotate/landmark_outliers.py)}, and annotations["smplx"] with the body model's label
    ("synthetic" when the generated stand-in was used).
    """

    name = STAGE

    def __init__(self, cfg, device: str | None = None, body_model=None):
        from mentor.body import load_body_model

        self.cfg = cfg
        dev = device or cfg.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(dev)
        self.body = body_model or load_body_model(cfg.model_dir, gender=cfg.gender, num_betas=cfg.num_betas,
                                                  num_expression=cfg.num_expression,
                                                  num_pca_comps=cfg.num_pca_comps, device="cpu")
        # raises naming the file if it is missing; the built-in one's torso held if asked (pose_prior.hold_torso)
        self.prior = hold_torso(make_pose_prior(cfg.pose_prior), cfg.held_collar_weight, cfg.held_spine_uncut_weight)
        self.targets = all_targets()
        self.sparse = SparseSMPLX(self.body, [t.point for t in self.targets]).to(self.device)
        self.focal_ratios: dict[str, float] = {}  # source id -> searched focal / size-based guess

    def camera_for(self, record) -> tuple[np.ndarray, str]:
        w, h = record.width, record.height
        if self.cfg.focal_length:
            return np.array([self.cfg.focal_length, w / 2, h / 2], np.float32), "config"
        f = estimate_focal(w, h)
        # a crop of a bigger frame sees a narrower field: scale the source's focal to the clip
        if record.crop is not None and record.source_width and record.source_height:
            f = estimate_focal(record.source_width, record.source_height) * w / record.crop.size
        return np.array([f, w / 2, h / 2], np.float32), "estimated"

    def searched_focal(self, record, guess: float, fit_at: Callable[..., FitResult | StoppedFit]
                       ) -> tuple[float, FitResult | None]:
        """(focal px, this clip's fit under it or None) by annotate.smplx_focal.search_focal from
        the size-based guess: searched on the first clip of a source (fit_at(focal, stop_after=):
        4-6 candidates fitted to the keyframes' last stage, the best finished as this clip's fit)
        and kept as a multiple of the guess (which camera_for scales to each clip's crop), reused
        for the source's other clips (one camera)."""
        ratio = self.focal_ratios.get(record.source_id)
        if ratio is not None:
            return guess * ratio, None
        found = search_focal(lambda focal: fit_at(focal, stop_after=SCORE_STAGE), guess)
        log.debug("focal: tried %s, kept %.0f px", {round(f): round(c, 2) for f, c in found.scores.items()}, found.focal)
        self.focal_ratios[record.source_id] = found.focal / guess
        return found.focal, found.fit

    def joint_focal(self, record, guess: float, fit_at: Callable[[float], FitResult]) -> tuple[float, FitResult | None]:
        """(focal px, this clip's fit or None): fit_at(guess) fits the focal with the clip (fit_clip's
        fit_focal) on the first clip of a source; kept as a multiple of the guess, as searched_focal
        keeps its, and given to the source's other clips (one camera; their fits keep it fixed)."""
        ratio = self.focal_ratios.get(record.source_id)
        if ratio is not None:
            return guess * ratio, None
        fit = fit_at(guess)
        log.debug("focal: fitted %.0f px from the guess %.0f", float(fit.camera[0]), guess)
        self.focal_ratios[record.source_id] = float(fit.camera[0]) / guess
        return float(fit.camera[0]), fit

    def quality_gates(self, reprojection_px: float, jitter: float, hand_fraction: float, face_fraction: float,
                      body_fraction: float, face_px: float = 100.0, frames=None,
                      fps: float = 25.0) -> list[tuple[str, str, float, float]]:
        """The gates a fit fails, as (code, detail, value, threshold), in order of importance.

        The pixel scores are gated as fractions of the face height `face_px` (a pixel
        threshold would pass a small face and fail a large one for the same fit). frames: the
        per-frame verdicts (annotate/smplx_quality.py FrameQuality) add the gates that count bad
        frames (bad_run, bad_frames): a clip's mean passes with a run of bad frames in it."""
        cfg = self.cfg
        failed = []
        reproj, jit = reprojection_px / face_px, jitter / face_px
        if not np.isfinite(reproj) or reproj > cfg.max_reprojection_face:
            failed.append(("reprojection_high", f"reprojection {reprojection_px:.1f} px = {reproj:.3f} face heights > "
                           f"{cfg.max_reprojection_face:g}", reproj, cfg.max_reprojection_face))
        if jit > cfg.max_jitter_face:
            failed.append(("jitter_high", f"jitter {jitter:.2f} px/frame^2 = {jit:.4f} face heights > "
                           f"{cfg.max_jitter_face:g}", jit, cfg.max_jitter_face))
        if cfg.min_hand_fraction > 0 and hand_fraction < cfg.min_hand_fraction:
            failed.append(("hands_missing", f"hands found in {hand_fraction:.0%} of frames < "
                           f"{cfg.min_hand_fraction:.0%}", hand_fraction, cfg.min_hand_fraction))
        if face_fraction < cfg.min_face_fraction:
            failed.append(("face_missing", f"face found in {face_fraction:.0%} of frames < "
                           f"{cfg.min_face_fraction:.0%}", face_fraction, cfg.min_face_fraction))
        if body_fraction < cfg.min_pose_fraction:
            failed.append(("body_missing", f"body found in {body_fraction:.0%} of frames < "
                           f"{cfg.min_pose_fraction:.0%}", body_fraction, cfg.min_pose_fraction))
        if frames is not None:
            from annotate.smplx_quality import frame_gates

            failed += frame_gates(frames, fps, cfg)
        return failed

    def __call__(self, record):
        names = ("landmarks.pose", "landmarks.face", "landmarks.left_hand", "landmarks.right_hand")
        arrays = {n: record.arrays[n].data for n in names if n in record.arrays}
        if "landmarks.pose" not in arrays and "landmarks.face" not in arrays:
            record.fail(STAGE, "no landmarks.pose/landmarks.face arrays: run the landmarks annotator first")
            return record
        if not record.width or not record.height:
            record.fail(STAGE, "record has no width/height: cannot set up the camera")
            return record
        ref = record.arrays["landmarks.pose" if "landmarks.pose" in arrays else "landmarks.face"]
        T = len(ref.data)
        face_f, pose_f = _fraction(arrays.get("landmarks.face")), _fraction(arrays.get("landmarks.pose"))
        left_hand, right_hand = arrays.get("landmarks.left_hand"), arrays.get("landmarks.right_hand")
        hands = [np.isfinite(a[..., :2]).any(axis=(1, 2)) for a in (left_hand, right_hand) if a is not None]
        hand_f = float(np.logical_or.reduce(hands).mean()) if hands else 0.0
        outliers = None
        if self.cfg.reject_outliers:  # gross landmark errors become missing data (or swapped back)
            arrays, outliers = clean_landmarks(arrays)
        xy, conf, bounds = gather_evidence(arrays, self.targets, T, (record.width, record.height),
                                           self.cfg.min_visibility, self.cfg.low_visibility_weight,
                                           self.cfg.border_weight)
        camera, focal_source = self.camera_for(record)
        # a torso cut at the chest (hips and elbows unseen): the spine held straight (pose_prior.HeldSpine)
        prior = hold_spine_if_cut(self.prior, observed_joints(self.sparse.point_joints(), xy, conf,
                                                              (record.width, record.height)),
                                  self.cfg.held_spine_weight)
        depth = (gather_depth(arrays, self.targets, T, hands=self.cfg.depth_hands)
                 if self.cfg.depth_restarts or self.cfg.depth_weight > 0 else None)

        def fit_at(focal: float, source: str, stop_after: str | None = None, fit_focal: bool = False
                   ) -> FitResult | StoppedFit:
            return fit_clip(self.sparse, self.targets, xy, conf, np.array([focal, *camera[1:]], np.float32),
                            (record.width, record.height), iterations=self.cfg.iterations,
                            robust_rho=self.cfg.robust_rho, smooth_weight=self.cfg.smooth_weight,
                            smooth_rho=self.cfg.smooth_rho, smooth_rho_rad=self.cfg.smooth_rho_rad,
                            smooth_noise_px=self.cfg.smooth_noise_px, smooth_torso=self.cfg.smooth_torso,
                            smooth_depth=self.cfg.smooth_depth, smooth_depth_rho=self.cfg.smooth_depth_rho,
                            smooth_unseen=self.cfg.smooth_unseen, smooth_shoulders=self.cfg.smooth_shoulders,
                            smooth_despike_px=self.cfg.smooth_despike_px,
                            pose_prior=prior, device=self.device,
                            keyframe_stride=self.cfg.keyframe_stride,
                            focal_source=source, bounds=bounds, depth=depth, depth_weight=self.cfg.depth_weight,
                            depth_restarts=self.cfg.depth_restarts, threads=self.cfg.threads,
                            motion_tolerance_px=self.cfg.motion_tolerance_px,
                            motion_tiers=self.cfg.motion_tiers, stop_after=stop_after,
                            fit_focal=fit_focal, shape_collar_weight=self.cfg.shape_collar_weight,
                            depth_rho_noise_px=self.cfg.depth_rho_noise_px, knuckle_weight=self.cfg.knuckle_weight,
                            knuckle_weight_seen=self.cfg.knuckle_weight_seen)

        try:
            res = None
            if focal_source == "estimated" and self.cfg.fit_focal:
                focal_source = "fitted"
                if self.cfg.focal_method == "joint":
                    camera[0], res = self.joint_focal(record, float(camera[0]),
                                                      lambda f: fit_at(f, focal_source, fit_focal=True))
                else:
                    camera[0], res = self.searched_focal(
                        record, float(camera[0]), lambda f, **kw: fit_at(f, "fitted", **kw))
            if res is None:
                res = fit_at(float(camera[0]), focal_source)
        except ValueError as e:
            record.fail(STAGE, f"cannot fit: {e}")
            return record
        fps, start = ref.fps, ref.start
        for name, values in res.params.to_arrays(prefix=STAGE).items():
            record.add_array(name, values, fps, start)
        record.add_array(f"{STAGE}.camera", np.repeat(res.camera[None], T, 0), fps, start)
        record.add_array(f"{STAGE}.reprojection_px", res.reprojection_px.astype(np.float32), fps, start)
        record.add_array(f"{STAGE}.depth_confidence", res.depth_confidence.astype(np.float32), fps, start)
        record.add_array(f"{STAGE}.observed", res.observed.astype(np.uint8), fps, start)
        mean_err = float(np.nanmean(res.reprojection_px)) if np.isfinite(res.reprojection_px).any() else float("nan")
        record.set_score(f"{STAGE}.reprojection_px", round(mean_err, 3))
        record.set_score(f"{STAGE}.jitter", round(res.jitter, 3))
        face_px = face_height_px(arrays.get("landmarks.face"), fallback=min(record.width, record.height) / 4)
        record.set_score(f"{STAGE}.face_px", round(face_px, 2))
        record.set_score(f"{STAGE}.fit_seconds", round(res.seconds, 3))
        if outliers is not None:  # frames whose landmarks had a gross error swapped back or dropped
            record.set_score(f"{STAGE}.outlier_frames", int(len(outliers.frames)))
        record.annotations[STAGE] = {
            "body_model": self.body.label, "model_file": self.body.path.name, "gender": self.cfg.gender,
            "num_pca_comps": self.body.num_pca_comps, "flat_hand_mean": False, "camera": "opencv pinhole",
            "focal_source": res.focal_source, "focal_px": round(float(res.camera[0]), 1),
            "pose_prior": "gmm" if self.cfg.pose_prior else "builtin",
            "betas": "shared per clip (rows repeat)", "device": str(self.device),
            "stage_cpu_seconds": {k: round(v, 3) for k, v in res.stage_cpu.items()},
            "stage_steps": dict(res.stage_steps),
        }
        from annotate.smplx_quality import frame_quality  # per-frame verdicts beside the parameters

        frames = frame_quality(res.reprojection_px, face_px, res.depth_confidence, self.cfg)
        record.add_array(f"{STAGE}.reprojection_face", frames.reprojection_face, fps, start)
        record.add_array(f"{STAGE}.frame_flags", frames.flags, fps, start)
        record.add_array(f"{STAGE}.frame_ok", frames.frame_ok.astype(np.uint8), fps, start)
        record.set_score(f"{STAGE}.bad_frame_share", round(frames.bad_share, 4))
        record.set_score(f"{STAGE}.bad_run_s", round(frames.longest_bad_run()[0] / fps, 3))
        failed = self.quality_gates(mean_err, res.jitter, hand_f, face_f, pose_f, face_px, frames=frames, fps=fps)
        if failed:  # the first gate gives the code; the detail lists every gate the fit failed
            code, _, value, threshold = failed[0]
            record.reject(STAGE, code, "; ".join(detail for _, detail, _, _ in failed), value=value,
                          threshold=threshold)
        record.mark(STAGE, "done")
        return record
