"""The SMPL-X clip objective, its stages' settings, and its Gauss-Newton pieces.

Objective (SMPLify-X's, with SHOW/EasyMocap-style clip terms), summed over frames:
  data      sum_k w_k c_tk GM(|pi(X_tk) - x_tk|; rho)   Geman-McClure on pixels, c = landmark
                                                     confidence (0 = missing), rho = rho x image side
  priors    pose (GMM or built-in), |beta|^2, |psi_t|^2, |hand PCA|^2, |jaw|^2, |eyes|^2
  temporal  lambda_k |u_{t+1,k} - 2u_tk + u_{t-1,k}|^2 on the projected model points (px) and
            a small second difference on every parameter
with beta (shape) shared by the clip and everything else per frame. Parameters are the flat
per-frame vectors x (T,D) of annotate/smplx_flat.py.

Everything here is immutable: `ClipObjective` holds the clip's observations and weights,
`subset` / `repeat` give new objectives over other frames, and `StageProblem` is one stage's
view of it (which landmarks count, which columns are free, the priors' strengths, the
contour rows of each frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from annotate.pose_prior import COLLAR_POSE
from annotate.smplx_flat import FlatSMPLX, left_jacobian
from annotate.smplx_optim import second_difference, second_difference_t
from mentor.body import Camera

# temporal weights: px^2 per (px/frame^2)^2 of a projected point, by group (faces move faster)
SMOOTH_2D = {"body": 2.0, "left_hand": 2.0, "right_hand": 2.0, "face": 0.3, "contour": 0.3}
# and per parameter (second difference), small: they only steady what 2D cannot see (depth, twist).
# transl 1e8 (per m^2 of its second difference; 1e7 before): the body's distance is seen only
# through its image size, and its noise moved every joint in depth (issue 16, benchmarks/jitter_where,
# 250 frames: 3D jitter / the truth's crossed 1.58 -> 1.52, talking 1.24 -> 1.21, beats 1.04 both)
SMOOTH_PARAM = {"transl": 1e8, "global_orient": 1e4, "body": 1e4, "jaw_pose": 1.0, "leye_pose": 1.0,
                "reye_pose": 1.0, "left_hand_pose": 0.1, "right_hand_pose": 0.1, "expression": 0.1, "betas": 0.0}
BETA_POOL = 1e3  # per-frame shapes are pulled to the clip's mean until it is fixed
# the landmark groups whose presence in a frame scales that frame's priors, and the layout
# names each one's priors act on (None: the body pose prior)
PRIOR_GROUPS = {"body": (None,), "face": ("expression", "jaw_pose", "leye_pose", "reye_pose"),
                "left_hand": ("left_hand_pose",), "right_hand": ("right_hand_pose",)}
PRIOR_FLOOR = 0.02  # a prior's weight in a frame that sees none of its group (keeps the solve well posed)
# a point's 2D acceleration where it is not seen in all three frames: UNSEEN_SMOOTH x its group's
# SMOOTH_2D (an unseen point's track is only the prior's guess). A hand's, inside a gap of that hand
# longer than HAND_TRACK_GAP frames: none. A missing hand's fingers are held only by the prior's
# floor, and with their track smoothed they bent to cancel the arm's strokes in it:
# benchmarks/smplx_truth near_1px (1.5 m, 250 frames, the right hand partly out of frame, so not
# detected, in 76 % of frames, in runs of up to ~50) had its PCA pose at 3.1 rms in the gaps (0.03
# before the temporal solve, the truth's 1.1), fingers PA-MPJPE 21.0 mm, 2D error 2.94 px. A short
# gap keeps it: the fingers' track carries them across (tests/annotate/test_smplx_missing's 6-frame
# hand gap: 0.9-1.1 px with it, 1.9-2.4 px without, the clip's median 0.8). 8 (a keyframe stride):
# near_1px fingers 14.7 mm, 2D 2.19 px; with none kept 12.6 mm, 1.93 px, but that 6-frame gap 2.4 px.
UNSEEN_SMOOTH = 0.25
HAND_TRACK_GAP = 8
# in any gap of a hand the solve leaves its pose and its wrist's rotation to the prior (a long gap)
# or to the unseen fingers' smoothed track, which bends them with the arm's strokes (a short one:
# near_1px's 3-8 frame gaps had the hand's first PCA at +1.6 against the truth's -0.6); the fitter
# then puts there their expected value given the gap's seen edges (smplx_fit.fill_hand_gaps): that of
# a process reverting to the prior's mean (0) with time constant HAND_GAP_DECAY frames, an
# Ornstein-Uhlenbeck bridge (a short gap: nearly the line between its edges; mid-gap of a long one:
# the mean). benchmarks/smplx_truth near_1px (250 frames, the right hand unseen in 76 % of frames, in
# runs of up to 61), applied to one fit's parameters: fingers PA-MPJPE 14.5 mm with the solve's own
# guess, 12.7 with the edges blended into it by exp(-d / 10) (session 10), 12.6 with the bridge at
# 5, 8 or 10 frames, 12.7 at 15, 12.9 at 30. The mid-gap orientation is unknowable: the solve's
# wrist is 10.3 deg off the truth's there, the truth's own rotation is 11.3 deg from neutral; the
# truth's wrist rotation put in every gap frame would give 10.9, with its hand pose too 9.4
HAND_GAP_DECAY = 10.0
TORSO_JOINTS = (16, 17, 1, 2)  # shoulders and hips: with the face, what places the camera
# the second differences (2D and parameters) over a run of n >= 2 frames without any landmark
# weigh 1/n^2 (GAP_POWER 2): the gap is still filled by the temporal terms, but a visible frame
# beside it is held by its own landmarks, not bent to the smoothest curve across a gap that a
# quick gesture may have crossed (drop_runs: a frame between a 3-frame and a 1-frame gap 10 px
# off at full weight, against 3 px with the gaps' landmarks in). One missing frame keeps full
# weight: there the smoothing across it still takes out the landmark noise of its neighbours.
GAP_POWER = 2.0


def geman_mcclure(squared: torch.Tensor, rho: float) -> torch.Tensor:
    """Geman-McClure of squared residuals, scaled to rho^2 (quadratic near 0, flat beyond rho)."""
    return rho**2 * squared / (rho**2 + squared)


def irls_weight(squared: torch.Tensor, rho: float) -> torch.Tensor:
    """Geman-McClure's derivative in the squared residual, rho^4 / (rho^2 + r^2)^2 (1 at 0): the
    IRLS weight of a residual in a Gauss-Newton step."""
    return rho**4 / (rho**2 + squared) ** 2


def missing_runs(missing: torch.Tensor | np.ndarray) -> np.ndarray:
    """(T,N) bool missing per frame and column -> (T,N): each missing frame's run length (0 where seen)."""
    missing = np.asarray(missing.cpu() if isinstance(missing, torch.Tensor) else missing, bool)
    run = np.zeros(missing.shape)
    for k in range(missing.shape[1]):
        gone = missing[:, k]
        starts = np.flatnonzero(gone & np.r_[True, ~gone[:-1]])
        ends = np.flatnonzero(gone & np.r_[~gone[1:], True])
        for a, b in zip(starts, ends):
            run[a:b + 1, k] = b - a + 1
    return run


def triple_longest(run: np.ndarray) -> np.ndarray:
    """(T,N) -> (T-2,N): the largest value among frames (t, t+1, t+2), a second difference's frames."""
    return np.maximum(np.maximum(run[2:], run[1:-1]), run[:-2])


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """One stage of the schedule.

    free: FlatSMPLX layout names optimised; groups: landmark groups in the data term
    ("torso" = shoulders, hips and the face); iterations: cap on solver steps; the prior
    weights: pose (body pose prior), shape (|beta|^2), face (expression, and 100x on jaw and
    eyes), hand (hand PCA); rho_scale: x the robust scale (wide early so far-off points still pull).
    """

    name: str
    free: tuple[str, ...]
    groups: tuple[str, ...]
    iterations: int
    pose_weight: float
    shape_weight: float
    face_weight: float
    hand_weight: float
    rho_scale: float = 1.0
    shape_per_clip: bool = False  # the shape prior counts once for the clip, not once per frame
    # the collars' rotations (COLLAR_POSE) held toward zero at this weight per rad^2; where it is on, the
    # size (the first beta: 2D cannot tell it from the distance with a known focal) keeps its prior in
    # every frame, not once per clip (the collars no longer explain the shoulders' place, the size did)
    collar_weight: float = 0.0
    # keyframe_solve: a frame whose last few accepted steps (smplx_fit.FRAME_SETTLED_STEPS) each lowered
    # its cost by less than this share of it is settled, out of the stage's evaluations and steps (0: off)
    settle_gain: float = 0.0
    # keyframe_solve: each frame's Levenberg-Marquardt damping where the stage starts (x diag(H))
    initial_damping: float = 1e-3


@dataclass(frozen=True)
class ClipObjective:
    """The fitting objective of one clip on FlatSMPLX parameters x (T,D).

    observed (T,P,2) pixels and confidence (T,P) (times each point's weight, 0 = missing) of
    the clip's active points; groups (P,) each point's landmark group; torso (P,) bool the
    points that place the camera; rho the robust scale in pixels.
    """

    flat: FlatSMPLX
    observed: torch.Tensor
    confidence: torch.Tensor
    groups: tuple[str, ...]
    torso: np.ndarray
    camera: Camera
    rho: float
    prior: torch.nn.Module
    smooth_2d: torch.Tensor  # (P,) temporal weight of each point's 2D acceleration
    smooth_param: torch.Tensor  # (D,) temporal weight of each parameter's second difference
    body_columns: torch.Tensor | None  # columns of x holding body joints
    body_pose_index: torch.Tensor  # where those go in the 63 body_pose values
    beta_columns: torch.Tensor
    # (T,G) 1 where the frame sees landmark group PRIOR_GROUPS[g], PRIOR_FLOOR where it sees none:
    # a prior's weight in the frame (a gap is filled by the temporal terms, not pulled to the prior's mean)
    presence: torch.Tensor | None = None
    # (T,P,2) per axis: 0 the model point should sit at `observed`, +1 at or beyond it (>=), -1 at
    # or below it (<=): a landmark outside the image says only that the point projects outside
    bounds: torch.Tensor | None = None
    # MediaPipe's relative z of the pose landmarks as residuals (DepthTerm), None: 2D only
    depth: "DepthTerm | None" = None
    # the temporal solve's term on the body points' depth accelerations (DepthSmoothing), None: none
    depth_smooth: "DepthSmoothing | None" = None
    # (T-2,D) factor on each parameter's second difference over frames (t, t+1, t+2), None: 1
    # (the temporal solve's: a joint whose rotation no landmark sees smoothed harder, UNSEEN_ROTATION)
    smooth_param_frames: torch.Tensor | None = None
    # (T-2,D) factor of a second Geman-McClure term on the rotations' second differences, None: none
    # (the temporal solve's: the shoulders' small accelerations cost more, a stroke is smoothed no less;
    # annotate/smplx_fit.py shoulder_rotations)
    smooth_param_extra: torch.Tensor | None = None

    @classmethod
    def build(cls, flat: FlatSMPLX, observed: torch.Tensor, confidence: torch.Tensor, groups: list[str],
              torso: np.ndarray, camera: Camera, rho: float, prior: torch.nn.Module,
              smooth_weight: float, bounds: torch.Tensor | None = None) -> "ClipObjective":
        device = observed.device
        layout = flat.layout
        body_pose_index = torch.as_tensor([(j - 1) * 3 + c for j in flat.body_free for c in range(3)],
                                          dtype=torch.long, device=device)
        body_columns = (torch.arange(layout["body"].start, layout["body"].stop, device=device)
                        if "body" in layout else None)
        smooth_param = torch.zeros(flat.dim, device=device)
        for name, columns in layout.items():
            smooth_param[columns] = SMOOTH_PARAM.get(name, 0.0) * smooth_weight
        smooth_2d = torch.tensor([SMOOTH_2D.get(g, 1.0) for g in groups], dtype=torch.float32,
                                 device=device) * smooth_weight
        group_array = np.array(groups)
        seen = confidence > 0
        presence = torch.ones(observed.shape[0], len(PRIOR_GROUPS), device=device)
        for g, name in enumerate(PRIOR_GROUPS):
            members = torch.as_tensor(group_array == name, device=device)
            if bool(members.any()):
                presence[:, g] = torch.where(seen[:, members].any(1), 1.0, PRIOR_FLOOR)
        return cls(flat=flat, observed=observed, confidence=confidence, groups=tuple(groups), torso=torso,
                   camera=camera, rho=rho, prior=prior, smooth_2d=smooth_2d, smooth_param=smooth_param,
                   body_columns=body_columns, body_pose_index=body_pose_index,
                   beta_columns=torch.arange(layout["betas"].start, layout["betas"].stop, device=device),
                   presence=presence, bounds=bounds)

    @property
    def num_frames(self) -> int:
        return int(self.observed.shape[0])

    @property
    def dim(self) -> int:
        return self.flat.dim

    def subset(self, frames: torch.Tensor) -> "ClipObjective":
        """The same objective on some frames only (smooth_param_frames/_extra, over frame triples, dropped)."""
        return replace(self, smooth_param_frames=None, smooth_param_extra=None, observed=self.observed[frames],
                       confidence=self.confidence[frames],
                       presence=self.presence[frames], bounds=None if self.bounds is None else self.bounds[frames],
                       depth=None if self.depth is None else self.depth.subset(frames))

    def repeat(self, times: int) -> "ClipObjective":
        """The frames repeated `times` times (several starts of the same frames in one batch)."""
        return replace(self, smooth_param_frames=None, smooth_param_extra=None,
                       observed=self.observed.repeat(times, 1, 1),
                       confidence=self.confidence.repeat(times, 1),
                       presence=self.presence.repeat(times, 1),
                       bounds=None if self.bounds is None else self.bounds.repeat(times, 1, 1),
                       depth=None if self.depth is None else self.depth.repeat(times))

    def with_depth(self, depth: "DepthTerm | None") -> "ClipObjective":
        """The same objective with MediaPipe's z as a term (None: without)."""
        return replace(self, depth=depth)

    def with_depth_smoothing(self, smoothing: "DepthSmoothing | None") -> "ClipObjective":
        """The same objective with the body points' depth accelerations as a temporal term (None: without)."""
        return replace(self, depth_smooth=smoothing)

    def columns(self, names) -> torch.Tensor:
        """Columns of x holding the given layout names (absent ones skipped)."""
        layout = self.flat.layout
        return torch.cat([torch.arange(layout[n].start, layout[n].stop) for n in names if n in layout]).to(
            self.observed.device)

    def body_pose(self, x: torch.Tensor) -> torch.Tensor:
        """(T,63) body_pose of x (joints the clip does not move stay at zero)."""
        body = torch.zeros(x.shape[0], 63, dtype=x.dtype, device=x.device)
        if self.body_columns is None:
            return body
        return body.index_copy(1, self.body_pose_index, x[:, self.body_columns])

    def prior_diagonal(self, stage: StageSpec) -> torch.Tensor:
        """(T,D) weights of the stage's quadratic priors: sum_d w_td x_td^2, each scaled by the
        presence of its landmark group in the frame. The shape prior is the clip's, spread over
        the frames that see the body (shape is one clip parameter: its prior counts once)."""
        frames = self.num_frames
        weights = torch.zeros(frames, self.dim, device=self.observed.device)
        layout = self.flat.layout
        for name, value in (("betas", stage.shape_weight), ("expression", stage.face_weight),
                            ("jaw_pose", 100 * stage.face_weight), ("leye_pose", 100 * stage.face_weight),
                            ("reye_pose", 100 * stage.face_weight), ("left_hand_pose", stage.hand_weight),
                            ("right_hand_pose", stage.hand_weight)):
            if name in layout:
                weights[:, layout[name]] = value
        for g, names in enumerate(PRIOR_GROUPS.values()):
            for name in names:
                if name in layout:
                    weights[:, layout[name]] *= self.presence[:, g:g + 1]
        if stage.shape_per_clip:
            seeing = float((self.presence[:, 0] == 1).sum().clamp(min=1))
            size = layout["betas"].start  # the size keeps its prior in every frame where the collars are held
            weights[:, size + (stage.collar_weight > 0):layout["betas"].stop] /= seeing
        if stage.collar_weight > 0 and self.body_columns is not None:
            collar = torch.isin(self.body_pose_index, torch.as_tensor(
                [3 * j + c for j in COLLAR_POSE for c in range(3)], device=self.body_pose_index.device))
            weights[:, self.body_columns[collar]] = stage.collar_weight * self.presence[:, :1]
        return weights

    def pose_prior_scale(self) -> torch.Tensor:
        """(T,) the body pose prior's weight in each frame (the body group's presence)."""
        return self.presence[:, 0]

    def residuals(self, uv: torch.Tensor) -> torch.Tensor:
        """(T,P,2) model minus observed pixels; zero on a bounded axis whose bound holds."""
        residual = uv - self.observed
        if self.bounds is None:
            return residual
        return residual * ((self.bounds == 0) | (self.bounds * residual < 0))

    def group_mask(self, stage: StageSpec) -> torch.Tensor:
        """(P,) 1 for the points in the stage's groups."""
        mask = np.isin(np.array(self.groups), stage.groups) | (("torso" in stage.groups) & self.torso)
        return torch.tensor(mask, dtype=torch.float32, device=self.observed.device)

    def smooth_weights(self) -> torch.Tensor:
        """(T-2,P) weight of each 2D acceleration: full where the point is seen in all three
        frames, UNSEEN_SMOOTH of it elsewhere, none for a hand's point inside a gap of that hand
        longer than HAND_TRACK_GAP frames; times the triple's `gap_weights`."""
        seen = (self.confidence > 0).float()
        all_three = torch.minimum(torch.minimum(seen[2:], seen[1:-1]), seen[:-2])
        unseen = torch.full_like(all_three, UNSEEN_SMOOTH)
        hands = np.flatnonzero(np.isin(np.array(self.groups), ("left_hand", "right_hand")))
        if len(hands):
            long_gap = triple_longest(missing_runs(self.confidence[:, hands] <= 0)) > HAND_TRACK_GAP
            unseen[:, hands] = torch.where(torch.as_tensor(long_gap, device=unseen.device), 0.0, UNSEEN_SMOOTH)
        return (unseen + (1 - unseen) * all_three) * self.smooth_2d * self.gap_weights()[:, None]

    def gap_weights(self) -> torch.Tensor:
        """(T-2,) weight of the second differences over frames (t, t+1, t+2): 1/n^GAP_POWER where
        the longest run of frames without any landmark among the three is n >= 2 long, else 1."""
        longest = triple_longest(missing_runs(~(self.confidence > 0).any(1, keepdim=True)))[:, 0]
        weights = np.where(longest >= 2, np.maximum(longest, 1.0) ** -GAP_POWER, 1.0)
        return torch.tensor(weights, dtype=torch.float32, device=self.confidence.device)

    def param_weights(self) -> torch.Tensor:
        """(T-2,D) weight of each parameter's second difference: smooth_param x the triple's
        `gap_weights` x smooth_param_frames (where set)."""
        weights = self.smooth_param * self.gap_weights()[:, None]
        return weights if self.smooth_param_frames is None else weights * self.smooth_param_frames

    def temporal_cost(self, x: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """Scalar: the 2D accelerations of the points uv (T,P,2) and the parameters' second differences."""
        acceleration = (second_difference(uv) ** 2).sum(-1)  # (T-2,P)
        params = second_difference(x) ** 2 * self.param_weights()
        return (acceleration * self.smooth_weights()).sum() + params.sum()

    def stage(self, stage: StageSpec, rows: torch.Tensor) -> "StageProblem":
        """This objective as `stage` sees it, with each frame's contour rows (T,)."""
        return StageProblem(objective=self, spec=stage, weights=self.confidence * self.group_mask(stage), rows=rows,
                            prior_diag=self.prior_diagonal(stage), free=self.columns(stage.free),
                            pose_scale=self.pose_prior_scale())


@dataclass(frozen=True)
class StageProblem:
    """One stage's problem: per-point weights (T,P), contour rows (T,), prior weights (T,D),
    the free columns (F,) of x and the pose prior's weight per frame (T,)."""

    objective: ClipObjective
    spec: StageSpec
    weights: torch.Tensor
    rows: torch.Tensor
    prior_diag: torch.Tensor
    free: torch.Tensor
    pose_scale: torch.Tensor
    # the last `project`'s (uv, points): frame_costs given that uv reuses its 3D points (the depth
    # term's) instead of a second forward pass with autograd
    _last: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def pools_shape(self) -> bool:
        """Shape is free: per-frame betas are pulled to the clip's mean."""
        return "betas" in self.spec.free

    @property
    def rho(self) -> float:
        return self.objective.rho * self.spec.rho_scale

    def repeat(self, times: int) -> "StageProblem":
        """The frames repeated `times` times, to solve several starts in one batch."""
        return replace(self, objective=self.objective.repeat(times), weights=self.weights.repeat(times, 1),
                       rows=self.rows.repeat(times), prior_diag=self.prior_diag.repeat(times, 1),
                       pose_scale=self.pose_scale.repeat(times))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(T,P,2) the model points of x in pixels."""
        return self.project_points(x)[0]

    def project_points(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,P,2) the model points of x in pixels and (T,P,3) in camera space."""
        points = self.objective.flat(x, self.rows)
        uv = self.objective.camera.project(points)
        if self.objective.depth is not None:
            self._last["projected"] = (uv, points)
        return uv, points

    def frame_costs(self, x: torch.Tensor, beta_mean: torch.Tensor | None = None,
                    uv: torch.Tensor | None = None) -> torch.Tensor:
        """(T,) objective without the temporal terms; beta_mean (B,) adds the shape pool."""
        objective = self.objective
        points = None
        last = self._last.pop("projected", None)
        if uv is not None and last is not None and last[0] is uv:
            points = last[1]
        if uv is None:
            points = objective.flat(x, self.rows)
            uv = objective.camera.project(points)
        squared = (objective.residuals(uv) ** 2).sum(-1)
        cost = (self.weights * geman_mcclure(squared, self.rho)).sum(1)
        if objective.depth is not None:
            # z's unit is calibrated from the fit: left free, it would pull the shape to fit it
            # (bones 14 % off at 2.5 m); the shape's gradient comes from 2D alone
            if points is None or (self.pools_shape and x.requires_grad):
                points = objective.flat(objective.depth.without_shape(x, objective.beta_columns), self.rows)
            cost = cost + objective.depth.costs(points, float(objective.camera.focal))
        cost = (cost + self.spec.pose_weight * self.pose_scale * objective.prior(objective.body_pose(x))
                + (self.prior_diag * x * x).sum(1))
        if beta_mean is not None:
            cost = cost + BETA_POOL * ((x[:, objective.beta_columns] - beta_mean) ** 2).sum(1)
        return cost

    def add_prior_hessian(self, hessian: torch.Tensor, x: torch.Tensor, with_pool: bool) -> torch.Tensor:
        """hessian (T,F,F) on the free columns plus the Gauss-Newton Hessian of the prior terms,
        added in place: their diagonal, and the body pose prior's block where the body is free
        (a stage that holds the body, the camera's, gets none: it would be cut away)."""
        objective = self.objective
        free = self.free
        diagonal = 2 * self.prior_diag[:, free]
        if with_pool:
            diagonal = diagonal + 2 * BETA_POOL * torch.isin(free, objective.beta_columns).to(diagonal.dtype)
        hessian.diagonal(dim1=-2, dim2=-1).add_(diagonal)
        position = self.free_position(objective.body_columns)
        if position is not None:
            index = objective.body_pose_index
            scale = self.spec.pose_weight * self.pose_scale
            pose = objective.body_pose(x)
            prior_diagonal = objective.prior.gn_diagonal(pose)
            if prior_diagonal is not None:  # a diagonal prior: its diagonal alone (the (T,63,63) zeros cost more)
                hessian.diagonal(dim1=-2, dim2=-1)[:, position] += prior_diagonal[:, index] * scale[:, None]
                return hessian
            body = objective.prior.gn_hessian(pose)[:, index][:, :, index] * scale[:, None, None]
            if isinstance(position, slice):
                hessian[:, position, position] += body
            else:
                hessian[:, position[:, None], position[None, :]] += body
        return hessian

    def free_position(self, columns: torch.Tensor | None) -> slice | torch.Tensor | None:
        """Where `columns` of x sit among the free columns: a slice when they are one run, None
        when none is free. Columns only partly free keep their free ones' positions (a tensor)."""
        if columns is None:
            return None
        key = ("position", tuple(columns.tolist()), tuple(self.free.tolist()))
        if key not in self._last:
            lookup = torch.full((self.objective.dim,), -1, dtype=torch.long, device=columns.device)
            lookup[self.free] = torch.arange(len(self.free), device=columns.device)
            position = lookup[columns]
            position = position[position >= 0]
            if len(position) == 0:
                value = None
            elif len(position) == len(columns) and bool((position.diff() == 1).all()):
                value = slice(int(position[0]), int(position[-1]) + 1)
            else:
                value = position
            self._last[key] = value
        return self._last[key]

    def weighed_points(self) -> torch.Tensor | None:
        """(P',) the active points this stage weighs (its groups) and the depth term's, in order: the
        rows of the keyframes' Jacobian (a point outside them has zero weight in every frame); None
        where that is all of them."""
        key = ("weighed", self.spec.groups, self.objective.depth is not None)
        if key not in self._last:
            objective = self.objective
            used = objective.group_mask(self.spec) > 0
            if objective.depth is not None:
                used[objective.depth.points] = True
            self._last[key] = None if bool(used.all()) else torch.nonzero(used)[:, 0]
        return self._last[key]

    def row_position(self, points: torch.Tensor) -> torch.Tensor:
        """Where active points `points` (all among weighed_points) sit among weighed_points."""
        weighed = self.weighed_points()
        if weighed is None:
            return points
        lookup = torch.full((self.objective.flat.num_points,), -1, dtype=torch.long, device=points.device)
        lookup[weighed] = torch.arange(len(weighed), device=points.device)
        return lookup[points]

    def gauss_newton(self, x: torch.Tensor, with_pool: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-frame Gauss-Newton Hessian (T,F,F) on the free columns, the free columns of
        the projected Jacobian (T,2P,F), and the projected points (T,P,2).

        The expression columns are built only where expression is free. With every column free
        the Jacobian is the evaluator's buffer itself (no copy): valid until its next
        projected_jacobian."""
        hessian, free_jacobian, uv, _ = self._normal_equations(x, with_pool, with_gradient=False)
        return hessian, free_jacobian, uv

    def gauss_newton_gradient(self, x: torch.Tensor, with_pool: bool, with_focal: bool = False
                              ) -> tuple[torch.Tensor, ...]:
        """The Gauss-Newton Hessian (T,F,F), the gradient (T,F) of `frame_costs` (without the
        pool) on the free columns and the cost (T,), from one evaluation and no autograd pass.

        The gradient is analytic: J^T W r from the same Jacobian for the landmarks (W the
        Geman-McClure weights: exact), the depth term's through each point's dZ/dx (the
        Jacobian's third row) and the centring, the quadratic priors' 2 w x; autograd only on
        the body pose prior (63 values a frame). The contour points' pose correctives are in the
        gradient, not in the Gauss-Newton matrix (smplx_flat.projected_jacobian's `contour`).
        with_focal: a fourth value, the log focal's column as one more (shared) unknown (`focal_terms`)."""
        hessian, _, uv, gradient, *focal = self._normal_equations(x, with_pool, with_gradient=True,
                                                                  with_focal=with_focal)
        return hessian, gradient, self.frame_costs(x, uv=uv), *focal

    def coupled_normal_equations(self, x: torch.Tensor, covector: torch.Tensor, row_weights: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The temporal solve's per-frame pieces from one evaluation: the Gauss-Newton Hessian
        (T,F,F) with row_weights (T,2P) more on each Jacobian row's J^T J (a further cost's
        curvature on the projected points, the temporal bands' diagonal), the free Jacobian
        (T,2P,F), and the gradient (T,F) of frame_costs (no pool) plus sum covector . (u, v, Z):
        covector (T,P,2|3) a further cost's derivative in each point's pixels (and camera-space
        depth), the contour points' correctives included as in gauss_newton_gradient."""
        hessian, jacobian, _, gradient = self._normal_equations(x, False, with_gradient=True, extra=covector,
                                                                row_weights=row_weights)
        return hessian, jacobian, gradient

    def _normal_equations(self, x: torch.Tensor, with_pool: bool, with_gradient: bool, with_focal: bool = False,
                          extra: torch.Tensor | None = None, row_weights: torch.Tensor | None = None):
        """gauss_newton's (hessian, free Jacobian, uv) and, with_gradient, the free gradient (T,F)
        (and with_focal, `focal_terms`); extra (a further cost's covector) and row_weights as
        coupled_normal_equations' covector and row_weights."""
        objective = self.objective
        flat = objective.flat
        free = self.free
        frames = x.shape[0]
        depth = objective.depth
        extra_depth = extra is not None and extra.shape[-1] == 3
        with_depth = with_gradient and (depth is not None or extra_depth)
        rho2 = self.rho ** 2
        covector = False  # the gradient's weights on the Jacobian's rows (the contour correctives' share)
        if with_gradient:
            points = flat(x, self.rows)
            uv = objective.camera.project(points)
            residual = objective.residuals(uv)
            irls = self.weights * rho2**2 / (rho2 + (residual ** 2).sum(-1)) ** 2
            # d/dx w GM(|r|^2) = 2 w GM'(|r|^2) r . dr/dx, GM' the IRLS weight (a bound that holds has r = 0)
            covector = 2 * irls[..., None] * residual
            if with_depth:
                dz = torch.zeros_like(irls)
                if depth is not None:
                    dz = dz.index_copy(1, depth.points, depth.z_gradient(points, float(objective.camera.focal)))
                covector = torch.cat([covector, dz[..., None]], -1)
            if extra is not None:  # its depth's share apart below (the depth term's has no shape gradient)
                covector = covector + (extra if extra_depth or not with_depth
                                       else torch.nn.functional.pad(extra, (0, 1)))
        # the keyframes' rows: only the points the stage weighs (and the depth term's); the temporal
        # solve's (coupled, or no gradient) smooth every point's track
        rows_used = self.weighed_points() if with_gradient and extra is None and row_weights is None else None
        uv, jacobian, *contour_share = flat.projected_jacobian(
            x, self.rows, objective.camera, with_betas=self.pools_shape,
            with_expression=bool(torch.isin(objective.columns(("expression",)), free).any()), with_depth=with_depth,
            contour=covector, points=rows_used, columns=free)
        if with_depth:  # the image rows (T,P',2,F), copied to a kept workspace (a fresh one page-faults)
            free_jacobian = flat.workspace("image_jacobian", (frames, jacobian.shape[1] * 2, len(free)), jacobian)
            free_jacobian.view(frames, -1, 2, len(free)).copy_(jacobian[:, :, :2])
        else:
            free_jacobian = jacobian.reshape(frames, -1, len(free))  # (T,2P',F)
        residual = objective.residuals(uv)
        squared = (residual ** 2).sum(-1)
        irls = self.weights * rho2**2 / (rho2 + squared) ** 2  # IRLS weight of Geman-McClure
        weight = irls[..., None].expand(-1, -1, 2)
        if objective.bounds is not None:  # a bound that holds adds no curvature
            weight = weight * ((objective.bounds == 0) | (residual != 0))
        if rows_used is not None:
            weight, covector = weight.index_select(1, rows_used), covector.index_select(1, rows_used)
        weight = weight.reshape(frames, -1)[..., None]
        curvature = weight if row_weights is None else weight + row_weights[..., None]
        weighted = torch.mul(free_jacobian, 2 * curvature, out=flat.workspace("weighted", free_jacobian.shape, x))
        hessian = weighted.transpose(1, 2) @ free_jacobian
        if depth is not None:
            hessian = hessian + depth.gn_hessian(flat, x, self.rows, float(objective.camera.focal), free)
        hessian = self.add_prior_hessian(hessian, x, with_pool)
        if not with_gradient:
            return hessian, free_jacobian, uv, None
        gradient = (free_jacobian.transpose(1, 2) @ covector[..., :2].reshape(frames, -1, 1))[..., 0]
        share = contour_share[0]
        if depth is not None:
            depth_rows = self.row_position(depth.points)
            depth_jacobian = jacobian[:, :, 2].index_select(1, depth_rows)  # (T,Q,F)
            along = (depth_jacobian.transpose(1, 2) @ dz[:, depth.points, None])[..., 0]
            # no shape gradient from z (frame_costs cuts the shape from the depth term's graph): z's own
            # share of the contour correctives is none (no contour point has z)
            gradient = gradient + along * ~torch.isin(free, objective.beta_columns)
        if extra_depth:  # (on the points it reaches: a few body landmarks)
            reached = torch.nonzero(extra[..., 2].abs().sum(0))[:, 0]
            along = jacobian[:, :, 2].index_select(1, reached).transpose(1, 2)
            gradient = gradient + (along @ extra[:, reached, 2:])[..., 0]
        gradient = gradient + share[:, free] + 2 * self.prior_diag[:, free] * x[:, free]
        if objective.body_columns is not None and self.spec.pose_weight:
            with torch.enable_grad():
                x_grad = x.detach().requires_grad_(True)
                prior = (self.spec.pose_weight * self.pose_scale * objective.prior(objective.body_pose(x_grad))).sum()
                (prior_gradient,) = torch.autograd.grad(prior, x_grad)
            gradient = gradient + prior_gradient[:, free]
        if with_focal:
            away = self.free_position(objective.columns(("transl",))[2:])  # the translation's z
            image = uv if rows_used is None else uv.index_select(1, rows_used)  # the Jacobian's rows
            column = focal_column(objective.camera, image, free_jacobian[..., away], body_depth(flat(x, self.rows)))
            return hessian, free_jacobian, uv, gradient, focal_terms(column, free_jacobian, 2 * weight[..., 0],
                                                                     covector[..., :2])
        return hessian, free_jacobian, uv, gradient


def body_depth(points: torch.Tensor) -> torch.Tensor:
    """(T,) the mean depth of each frame's model points (T,P,3), camera space: how far a focal's
    change moves the body (its distance scaled with the focal keeps its image)."""
    return points[..., 2].mean(1)


def focal_column(camera, uv: torch.Tensor, away_jacobian: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """(T,2P) the derivative of the projected points uv (T,P,2) in the clip's log focal, with the
    body moved away by the same factor of its mean depth (T,) (`body_depth`; the translation's z
    column of the Jacobian (T,2P) times it): a pinhole's pixel is f (X/Z, Y/Z) + c, so the focal's
    own share is the point less the principal point, and the distance's all but cancels it (exactly
    at the body's mean depth); what is left is perspective, the only thing that tells the focal. A
    step along it keeps the body where the landmarks are. On issue 16's focal_unknown (guess 724 px,
    true 1000, 250 frames) the shape stage's 8 steps reached 834 px with the focal alone (938 in 32,
    most steps refused), 1012 with the body moved."""
    own = (uv - torch.stack([camera.cx, camera.cy])).reshape(uv.shape[0], -1)
    return own + away_jacobian.reshape(own.shape) * depth[:, None]


def focal_terms(column: torch.Tensor, free_jacobian: torch.Tensor, weight: torch.Tensor, covector: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The log focal's column (T,2P) (`focal_column`) in the frames' Gauss-Newton systems:
    free_jacobian (T,2P,F); weight (T,2P) each row's curvature weight (2 x IRLS, bounds that hold
    cut); covector (T,P,2) the gradient's weight per row. Returns (T,F) its cross terms with the
    free columns, (T,) its own curvature and (T,) its gradient. MediaPipe's z (DepthTerm) is left
    out: its pixels scale as f / mean Z, which the focal and the distance moving together keep."""
    weighted = column * weight
    return ((free_jacobian * weighted[..., None]).sum(1), (weighted * column).sum(1),
            (column * covector.reshape(column.shape[0], -1)).sum(1))


def rest_x(flat: FlatSMPLX, num_frames: int, device, elbow: float = 0.8) -> torch.Tensor:
    """(T,D) the starting pose: facing the camera, arms down, elbows bent toward the camera by `elbow` rad."""
    x = torch.zeros(num_frames, flat.dim, device=device)
    layout = flat.layout
    x[:, layout["global_orient"].start] = math.pi  # body y-up -> camera y-down, facing the camera

    def set_joint(joint, axis, value):
        if joint in flat.body_free:
            x[:, layout["body"].start + 3 * flat.body_free.index(joint) + axis] = value

    set_joint(16, 2, -1.2)  # arms down: left shoulder about -z, right about +z
    set_joint(17, 2, 1.2)
    # elbows bent toward the camera: from a straight arm, bending moves the wrist only in
    # depth, so 2D evidence has no gradient to start it (and talking people gesture)
    set_joint(18, 1, -elbow)
    set_joint(19, 1, elbow)
    return x


# ------------------------------------------------------------------------ MediaPipe's relative z

# pose landmarks whose depth accelerations the temporal solve smooths (DepthSmoothing): the nose
# (rigid on the head: the eyes' and ears' vertices turn with the eyeballs' joints, which the
# rigid Jacobian gets wrong), shoulders, elbows, wrists and hips
SMOOTH_DEPTH_LANDMARKS = (0, 11, 12, 13, 14, 15, 16, 23, 24)
# ... of them, those whose depth zig-zags (DepthSmoothing.zigzags) mark a frame to solve again: the
# elbows, whose own zig-zag reads <= 3 px/frame^2 on every scenario of benchmarks/smplx_truth's truth.
# Not the wrists: a beat's quick turn reads 9-16 there, and the fit's own strokes near the camera
# (near_1px, drop_runs; 250 frames) were flagged and lost (PA-MPJPE 8.6 -> 9.8 mm at 40 px)
ZIGZAG_LANDMARKS = (13, 14)
# pose landmarks whose z counts: nose, eyes, ears, shoulders, elbows, wrists, hips (the legs,
# mostly out of a talking-head frame, and the feet do not)
DEPTH_LANDMARKS = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24)
# hand landmarks whose z counts (MediaPipe's hand z is relative to its wrist): the wrist and the
# four fingers' first joints, rigid on the wrist: which way the hand points in depth, which a
# flipped forearm carries with it (issue 16: fingers 44 mm off with the forearms flipped)
HAND_DEPTH_LANDMARKS = (0, 5, 9, 13, 17)
# the point groups centred on their own mean per frame (each array's z has its own offset)
DEPTH_GROUPS = ("landmarks.pose", "landmarks.left_hand", "landmarks.right_hand")
DEPTH_RHO = 20.0  # px: a z residual beyond this (MediaPipe's z is rough) pulls no harder
# MediaPipe pose landmarks (upper, lower) of the arm bones whose depth extent calibrates z's unit
ARM_BONE_LANDMARKS = ((11, 13), (13, 15), (12, 14), (14, 16))
# DepthTerm.calibrate reads the bone-frames whose depth extent is at least this share of the bone's
# length (30 deg out of the image plane: |dZ| from 2D and the length is good to ~15 % of itself at 1 px
# on a 100 px bone), and falls back to all pose points with fewer than CALIBRATION_MIN_BONES of them
CALIBRATION_FORESHORTENING = 0.5
CALIBRATION_MIN_BONES = 8
# ... and, with its unit, one factor on the arm bones' lengths, tried in this range: the 2D-only solve
# matches each bone's image but its length is a common factor off (the shape prior shrinks the arms to
# lay the upper arms in the image plane), and |dZ| = sqrt(length^2 - image length^2) follows it
# (issue 16, 250 frames, the keyframes' 2D-only solve's arm bones over the truth's: far_1px 0.92,
# near_1px 1.05; on the truth's own pose the fit finds 0.99-1.01)
CALIBRATION_LENGTHS = (0.8, 1.25)


def bone_depth_unit(length: torch.Tensor, image: torch.Tensor, observed: torch.Tensor,
                    steps: int = 91) -> tuple[float, float]:
    """(kappa, factor): MediaPipe's z unit and the bones' length factor that best explain the observed
    depth extents (N,) of bone-frames whose model length and image length (N,) are in model pixels.

    The bone's depth is |dZ| = sqrt((factor length)^2 - image^2); for each factor in
    CALIBRATION_LENGTHS (`steps` of them) the observed extents are regressed on it (observed =
    |dZ| / kappa: the noise is z's; the model's extents regressed on z's, as before, shrank kappa
    with z's noise), the factor with the least squared residual kept. The factor shows where a
    bone's foreshortening changes over the clip: |dZ| then grows with the image length shrinking
    faster than one unit can follow. Issue 16's far_1px keyframes (250 frames): on the truth's own pose 1.43 by that
    regression at the truth's lengths, 1.48 by this (factor 1.00); on the 2D-only solve
    1.30 -> 1.46 (factor 1.05; the truth's unit is ~1.5)."""
    factors = torch.linspace(*CALIBRATION_LENGTHS, steps, dtype=length.dtype, device=length.device)
    model = ((factors[:, None] * length) ** 2 - image ** 2).clamp(min=0).sqrt()  # (F,N)
    inverse = (model * observed).sum(1) / (model ** 2).sum(1).clamp(min=1e-9)
    residual = ((observed - inverse[:, None] * model) ** 2).sum(1)
    residual = torch.where(inverse > 0, residual, torch.full_like(residual, float("inf")))
    best = int(residual.argmin())
    return float(1 / inverse[best].clamp(min=1e-9)), float(factors[best])


def point_movers(flat: FlatSMPLX, targets: list, point_joints: np.ndarray, keep: list[int]) -> torch.Tensor:
    """(Q,C) 1 where chain joint c's rotation moves active point keep[q] (its carrying joint's
    ancestors; a vertex turns with its own joint too)."""
    chain = [int(j) for j in flat.chain]
    parent = flat.par.cpu().numpy()
    movers = np.zeros((len(keep), len(chain)), np.float32)
    for q, n in enumerate(keep):
        c = chain.index(int(point_joints[n]))
        if targets[n].point.kind != "joint":
            movers[q, c] = 1.0
        while c != 0:
            c = int(parent[c])
            movers[q, c] = 1.0
    return torch.as_tensor(movers, device=flat.pose_map.device)


def point_depth_jacobian(flat: FlatSMPLX, x: torch.Tensor, rows: torch.Tensor | None, points: torch.Tensor,
                         movers: torch.Tensor, used: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The active points (T,P,3) and (T,Q,D) d Z_q / d x of the active points `points` (Q,): a rotation
    of chain joint k about world axis w moves a point it carries (movers (Q,C)) by w x (p - t_k); the
    translation's z moves every point alike; shape and expression are left out. used (U,): the
    chain joints that move any of them (the others' columns are zero)."""
    q = flat._pose(x, rows)
    frames = x.shape[0]
    world_rot, world_t = q["Rw"], q["tw"]
    carried = q["pts"][:, points] - x[:, None, flat.layout["transl"]]  # (T,Q,3)
    parents_rot = torch.cat([torch.eye(3, dtype=x.dtype, device=x.device).expand(frames, 1, 3, 3),
                             world_rot[:, flat.par[1:]]], 1)[:, used]
    omega = parents_rot @ left_jacobian(q["aa"][:, used])  # (T,U,3,3): column i = world axis of component i
    lever = carried[:, :, None] - world_t[:, None, used]  # (T,Q,U,3)
    # z of (omega_i x lever) = omega_x,i lever_y - omega_y,i lever_x
    dz = (omega[:, None, :, 0, :] * lever[..., 1:2] - omega[:, None, :, 1, :] * lever[..., 0:1])  # (T,Q,U,3)
    dz = dz * movers[None, :, used, None]
    pose_rows = (3 * used[:, None] + torch.arange(3, device=x.device)).reshape(-1)
    jacobian = dz.reshape(frames, len(points), -1) @ flat.pose_map[:, pose_rows].T  # (T,Q,D)
    jacobian[..., flat.layout["transl"].start + 2] = 1.0
    return q["pts"], jacobian


class DepthTerm:
    """MediaPipe's relative z of the pose and hand landmarks, as residuals in the clip objective.

    MediaPipe's pose z is depth relative to the hips, a hand's relative to its wrist, in the
    image width's pixel scale (the synthetic truth: f dZ / Z times an unknown compression), with
    an offset per frame and array. Per frame and group (DEPTH_GROUPS: the pose, each hand), both
    the model's depths Z_q (camera space, metres) and the observed z_q are centred on the mean
    of the group's points observed in that frame (the offset drops out); the residual is
        r_q = f (Z_q - mean_g Z) / mean Z  -  kappa (z_q - mean_g z)     [px]
    kappa the clip's compression (1 nominal: z in x's pixel scale; `calibrate` sets it from a
    fit), and the cost weight x Geman-McClure(r^2; DEPTH_RHO) per observed point. It sees what 2D
    cannot: a forearm toward or away from the camera, the shoulders' depth against the head.

    Gauss-Newton: d r_q = f / mean Z (dZ_q - mean dZ), with dZ from the chain's rotations
    (`depth_jacobian`: each point rigid on the joint that carries it; the exact gradient comes
    from autograd, so an inexact Hessian only slows the step, it does not bias it).

    z (T,Q) observed z of the Q points (NaN where none); points (Q,) their index among the
    objective's active points; movers (Q,C): 1 where chain joint c's rotation moves point q;
    groups (Q,) each point's index in DEPTH_GROUPS (None: all pose). kappa is one for all
    groups (MediaPipe gives pose and hand z in the same unit) and calibrated on the pose.
    """

    def __init__(self, z: torch.Tensor, points: torch.Tensor, movers: torch.Tensor, weight: float,
                 confidence: torch.Tensor, kappa: torch.Tensor | None = None, groups: torch.Tensor | None = None,
                 bones: torch.Tensor | None = None):
        self.points, self.movers, self.weight = points, movers, float(weight)
        # (B,2) the arm bones (shoulder-elbow, elbow-wrist) as positions among `points`: what `calibrate` reads
        self.bones = bones if bones is not None else torch.zeros(0, 2, dtype=torch.long, device=z.device)
        groups = groups if groups is not None else torch.zeros(len(points), dtype=torch.long, device=z.device)
        self.pose = groups == 0
        self.members = torch.nn.functional.one_hot(groups, len(DEPTH_GROUPS)).to(z.dtype)  # (Q,G)
        seen = torch.isfinite(z) & (confidence > 0.3)
        self.z = torch.where(seen, z, torch.zeros_like(z))
        # a frame's group counts only where it sees at least 3 of its points (the centring needs some)
        enough = (seen.to(z.dtype) @ self.members >= 3).to(z.dtype) @ self.members.T > 0
        self.seen = (seen & enough).to(z.dtype)
        self.kappa = kappa if kappa is not None else torch.ones(1, device=z.device)  # shared with subsets
        self.noise = 0.0  # sd of z's noise per point (z's unit; `with_noise`), taken out of the bones' extents
        self.rho = DEPTH_RHO  # px: Geman-McClure's scale of the residuals (`widened`)

    @classmethod
    def build(cls, flat: FlatSMPLX, targets: list, depth: np.ndarray, confidence: torch.Tensor, point_joints: np.ndarray,
              weight: float) -> "DepthTerm | None":
        """From the clip's active targets (their `source`, `index`), depth (T,P) MediaPipe's z of each
        active point (NaN for none), confidence (T,P) and point_joints (P,) each point's carrying joint.
        None when no listed pose landmark has z."""
        wanted = {"landmarks.pose": DEPTH_LANDMARKS, "landmarks.left_hand": HAND_DEPTH_LANDMARKS,
                  "landmarks.right_hand": HAND_DEPTH_LANDMARKS}
        keep = [n for n, t in enumerate(targets) if t.index in wanted.get(t.source, ())
                and np.isfinite(depth[:, n]).any()]
        if sum(targets[n].source == "landmarks.pose" for n in keep) < 3:
            return None
        device = confidence.device
        movers = point_movers(flat, targets, point_joints, keep)
        keep_t = torch.as_tensor(keep, device=device)
        groups = torch.as_tensor([DEPTH_GROUPS.index(targets[n].source) for n in keep], device=device)
        position = {targets[n].index: q for q, n in enumerate(keep) if targets[n].source == "landmarks.pose"}
        bones = [(position[a], position[b]) for a, b in ARM_BONE_LANDMARKS if a in position and b in position]
        return cls(torch.as_tensor(depth[:, keep], dtype=torch.float32, device=device), keep_t,
                   movers, weight, confidence[:, keep_t], groups=groups,
                   bones=torch.as_tensor(bones, dtype=torch.long, device=device).reshape(-1, 2))

    @property
    def used(self) -> torch.Tensor:
        """(U,) the chain joints that move some depth point."""
        if "_used" not in self.__dict__:
            self._used = torch.nonzero(self.movers.any(0))[:, 0]
        return self._used

    @staticmethod
    def without_shape(x: torch.Tensor, beta_columns: torch.Tensor) -> torch.Tensor:
        """x with its shape columns cut from the autograd graph (no gradient to the shape)."""
        if not x.requires_grad:
            return x
        mask = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
        mask[beta_columns] = 1.0
        return x - (x - x.detach()) * mask

    def _like(self, **changes) -> "DepthTerm":
        other = DepthTerm.__new__(DepthTerm)
        other.__dict__.update(self.__dict__)
        other.__dict__.update(changes)
        return other

    def subset(self, frames: torch.Tensor) -> "DepthTerm":
        return self._like(z=self.z[frames], seen=self.seen[frames])

    def with_noise(self, noise: float) -> "DepthTerm":
        """The term with z's noise sd per point (z's unit, NaN: unknown, taken as 0), which the unit's
        readings from the bones' extents (`calibrate` from_bones, `kappa_from_2d`) take out."""
        return self._like(noise=float(noise) if math.isfinite(noise) else 0.0)

    def _extent_power(self, z_extent: torch.Tensor) -> torch.Tensor:
        """sum z_extent^2 (N,) of bone-frames less what z's noise adds to it: 2 noise^2 each (a bone's
        extent is a difference of two points' z), at least half of it. The model's extents regressed
        on z's shrink by z's share of noise; at 2.5 m and 4 px (issue 16's far_4px: noise 15, the arm
        bones' extents ~40 in z's unit) the unit read 1.08x the fit's against ~1.3x on the truth."""
        power = (z_extent ** 2).sum()
        return torch.maximum(power - 2 * self.noise ** 2 * len(z_extent), power / 2)

    def widened(self, factor: float) -> "DepthTerm":
        """The term with its robust scale DEPTH_RHO x factor (>= 1): on a noisier clip (smplx_fit's
        landmark noise scale) more of z's residuals stay in Geman-McClure's quadratic part, where z
        still pulls (at 4 px z's own noise, ~25 px in the benchmark's scenarios, is past DEPTH_RHO)."""
        if not factor >= 1:
            raise ValueError(f"depth robust scale factor {factor}: use >= 1")
        return self._like(rho=DEPTH_RHO * factor)

    def repeat(self, times: int) -> "DepthTerm":
        return self._like(z=self.z.repeat(times, 1), seen=self.seen.repeat(times, 1))

    def _centred(self, depth: torch.Tensor) -> torch.Tensor:
        """(T,Q) depth minus its group's mean over the frame's seen points (0 where unseen)."""
        count = (self.seen @ self.members).clamp(min=1)  # (T,G)
        mean = (depth * self.seen) @ self.members / count
        return (depth - mean @ self.members.T) * self.seen

    def residuals(self, points: torch.Tensor, focal: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,Q) residuals in px and (T,1) f / mean Z (detached) from the active points (T,P,3)."""
        depth = points[:, self.points, 2]
        count = self.seen.sum(1, keepdim=True).clamp(min=1)
        mean = ((depth * self.seen).sum(1, keepdim=True) / count).detach().clamp(min=0.1)
        scale = focal / mean
        return scale * self._centred(depth) - self.kappa * self._centred(self.z), scale

    def z_gradient(self, points: torch.Tensor, focal: float) -> torch.Tensor:
        """(T,Q) d costs / d Z_q, the model's depths, at the active points (T,P,3): the residuals'
        Geman-McClure derivative through f / mean Z (held, as in `residuals`) and the centring
        (its own transpose)."""
        residual, scale = self.residuals(points, focal)
        return scale * self._centred(2 * self.weight * self.seen * irls_weight(residual ** 2, self.rho) * residual)

    def costs(self, points: torch.Tensor, focal: float) -> torch.Tensor:
        """(T,) weight x Geman-McClure of the frame's z residuals."""
        residual, _ = self.residuals(points, focal)
        return self.weight * (geman_mcclure(residual ** 2, self.rho) * self.seen).sum(1)

    def calibrate(self, points: torch.Tensor, focal: float, from_bones: bool = False) -> float | None:
        """kappa from a fit's points (T,P,3): the ratio of the median magnitudes of the model's and
        the observed centred depths of every pose point (robust to the few flipped points a fit may
        hold). from_bones, for a fit solved from 2D alone (smplx_fit does): `bone_depth_unit` of the
        arm bones' depth extent |dZ| (2D and the bone's length fix it, up to the bones' common length
        factor, which it fits too) against the observed one; magnitudes, so a flipped bone counts
        alike; with fewer than CALIBRATION_MIN_BONES bone-frames foreshortened by at least
        CALIBRATION_FORESHORTENING of their length (near the image plane |dZ| tells little), as
        without it. Returns the unit at the fit's own lengths (from_bones: the least-squares ratio of
        the model's to the observed |dZ| of those foreshortened bone-frames, which smplx_fit's
        KAPPA_TRAPPED test was set with; otherwise kappa), None where nothing was calibrated."""
        if from_bones and len(self.bones):
            seen, bone, observed, usable = self._bone_readings(points, focal)
            if int(usable.sum()) >= CALIBRATION_MIN_BONES and float((observed[usable] ** 2).sum()) > 0:
                at_lengths = float((bone[..., 2].abs() * observed)[usable].sum() / self._extent_power(observed[usable]))
                kappa = self._unit_with_lengths(seen, bone, observed)
                self.kappa.fill_(kappa if kappa is not None else at_lengths)
                return at_lengths
        seen = (self.seen > 0) & self.pose  # the pose's z (a hand's depth range is small and its pose not fitted yet)
        depth = points[:, self.points, 2]
        model = (self._pixel_scale(points, focal) * self._centred(depth)).abs()[seen]
        observed = self._centred(self.z).abs()[seen]
        if len(observed) < 3 or float(observed.median()) <= 0:
            return None
        self.kappa.fill_(float(model.median() / observed.median()))
        return float(self.kappa)

    def _bone_readings(self, points: torch.Tensor, focal: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The arm bones (self.bones) of a fit's points (T,P,3): (T,B) seen (both ends' z observed),
        (T,B,3) each bone in px at the frame's mean depth (f / mean Z), (T,B) z's observed depth extent
        |dz| and (T,B) usable (seen and foreshortened by at least CALIBRATION_FORESHORTENING)."""
        upper, lower = self.bones[:, 0], self.bones[:, 1]
        seen = (self.seen[:, upper] > 0) & (self.seen[:, lower] > 0)
        bone = self._pixel_scale(points, focal)[..., None] * (points[:, self.points[lower]] - points[:, self.points[upper]])
        observed = (self.z[:, lower] - self.z[:, upper]).abs()
        return seen, bone, observed, seen & (bone[..., 2].abs() > CALIBRATION_FORESHORTENING * bone.norm(dim=-1))

    def _pixel_scale(self, points: torch.Tensor, focal: float) -> torch.Tensor:
        """(T,1) f / the mean depth of each frame's seen depth points (metres -> px at the body)."""
        count = self.seen.sum(1, keepdim=True).clamp(min=1)
        return focal / ((points[:, self.points, 2] * self.seen).sum(1, keepdim=True) / count).clamp(min=0.1)

    @staticmethod
    def _unit_with_lengths(seen: torch.Tensor, bone: torch.Tensor, observed: torch.Tensor) -> float | None:
        """`bone_depth_unit`'s kappa over the seen bone-frames (_bone_readings' values), None where the
        length factor found sits on the edge of CALIBRATION_LENGTHS: no length in range explains z
        (benchmark away: the 2D-only solve's forearms point elsewhere, factor 1.25 and kappa 2.6
        against 1.03 on the truth's pose)."""
        kappa, factor = bone_depth_unit(bone.norm(dim=-1)[seen], bone[..., :2][seen].norm(dim=-1), observed[seen])
        return kappa if min(CALIBRATION_LENGTHS) < factor < max(CALIBRATION_LENGTHS) else None

    def sees_bones(self) -> bool:
        """Whether any frame sees an arm bone's both ends' z: what calibrate(from_bones=True) reads."""
        if not len(self.bones):
            return False
        return bool(((self.seen[:, self.bones[:, 0]] > 0) & (self.seen[:, self.bones[:, 1]] > 0)).any())

    def unit_from_bones(self, points: torch.Tensor, focal: float) -> float | None:
        """z's unit that a fit's points (T,P,3) give when read from the arm bones with their length factor
        fitted beside it (`bone_depth_unit`, as calibrate(from_bones=True) sets it), kappa left as it is;
        None under CALIBRATION_MIN_BONES foreshortened bone-frames or where the factor found sits on the
        edge of CALIBRATION_LENGTHS (no length in range explains z)."""
        if not len(self.bones):
            return None
        seen, bone, observed, usable = self._bone_readings(points, focal)
        if int(usable.sum()) < CALIBRATION_MIN_BONES or float((observed[usable] ** 2).sum()) <= 0:
            return None
        return self._unit_with_lengths(seen, bone, observed)

    def kappa_from_2d(self, points: torch.Tensor, observed: torch.Tensor, focal: float) -> float | None:
        """What calibrate(from_bones=True) returns (the unit at the fit's own lengths) for a fit solved
        again from 2D alone, in closed form from a fit's points (T,P,3) and the observed pixels (T,P,2):
        each arm bone's depth extent as that fit would make it, sqrt(L^2 - l^2) px from its length L in
        this fit (px at the frame's mean depth; 2D alone does not change the shape) and its length l in
        the landmarks. None under CALIBRATION_MIN_BONES bone-frames foreshortened enough to read."""
        if not len(self.bones):
            return None
        scale = self._pixel_scale(points, focal)
        upper, lower = self.bones[:, 0], self.bones[:, 1]
        seen = (self.seen[:, upper] > 0) & (self.seen[:, lower] > 0)
        length = scale * (points[:, self.points[lower]] - points[:, self.points[upper]]).norm(dim=-1)
        image = (observed[:, self.points[lower]] - observed[:, self.points[upper]]).norm(dim=-1)
        extent = (length ** 2 - image ** 2).clamp(min=0).sqrt()
        z_extent = (self.z[:, lower] - self.z[:, upper]).abs()
        usable = seen & (extent > CALIBRATION_FORESHORTENING * length)
        if int(usable.sum()) < CALIBRATION_MIN_BONES or float((z_extent[usable] ** 2).sum()) <= 0:
            return None
        return float((extent * z_extent)[usable].sum() / self._extent_power(z_extent[usable]))

    def depth_jacobian(self, flat: FlatSMPLX, x: torch.Tensor, rows: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The active points (T,P,3) and (T,Q,D) d Z_q / d x: a rotation of chain joint k about world axis w moves a point it
        carries by w x (p - t_k); the translation's z moves every point alike (it drops out of
        the centred residuals); shape and expression are left out."""
        return point_depth_jacobian(flat, x, rows, self.points, self.movers, self.used)

    def gn_hessian(self, flat: FlatSMPLX, x: torch.Tensor, rows: torch.Tensor | None, focal: float,
                   free: torch.Tensor) -> torch.Tensor:
        """(T,F,F) Gauss-Newton Hessian of `costs` on the free columns (IRLS weights of Geman-McClure)."""
        with torch.no_grad():
            points, jacobian = self.depth_jacobian(flat, x, rows)
            residual, scale = self.residuals(points, focal)
            jacobian = self._centred_jacobian(jacobian[..., free]) * scale[..., None]
            irls = self.weight * self.seen * irls_weight(residual ** 2, self.rho)  # (T,Q)
            return 2 * (jacobian * irls[..., None]).transpose(1, 2) @ jacobian

    def _centred_jacobian(self, jacobian: torch.Tensor) -> torch.Tensor:
        """(T,Q,F) the Jacobian of `_centred` depths: each row minus its group's mean row."""
        count = (self.seen @ self.members).clamp(min=1)  # (T,G)
        mean = torch.einsum("tqf,tq,qg->tgf", jacobian, self.seen, self.members) / count[..., None]
        return (jacobian - torch.einsum("tgf,qg->tqf", mean, self.members)) * self.seen[..., None]


@dataclass(frozen=True)
class DepthSmoothing:
    """The temporal solve's term on the depth of the body's points: 2D sees a point's motion
    across the image, not along the line of sight, and the landmarks' noise moved the arms and
    the torso in depth (issue 16: on talking the joints' error accelerated 3x more along camera z
    than across the image). Per frame triple and point q, the acceleration of its depth in px
    at the person's distance,
        a_tq = f / Zbar (Z_{t+1,q} - 2 Z_tq + Z_{t-1,q})     Zbar the points' mean depth (detached)
    costs weight x Geman-McClure(a^2; rho) x the triple's gap weight (rho 0: quadratic): a
    quick stroke in depth goes through, a slow wobble is damped.

    points (Q,): their index among the objective's active points (SMOOTH_DEPTH_LANDMARKS: nose,
    shoulders, elbows, wrists and hips); movers (Q,C) as DepthTerm's."""

    points: torch.Tensor
    movers: torch.Tensor
    weight: float
    rho: float
    landmarks: tuple[int, ...] = ()  # each point's pose landmark index (build's; () where not known)

    @classmethod
    def build(cls, flat: FlatSMPLX, targets: list, point_joints: np.ndarray, weight: float, rho: float
              ) -> "DepthSmoothing | None":
        """From the clip's active targets and point_joints (P,) each one's carrying joint; None
        where weight is 0 or no listed pose landmark is active."""
        keep = [n for n, t in enumerate(targets) if t.source == "landmarks.pose" and t.index in SMOOTH_DEPTH_LANDMARKS]
        if weight <= 0 or not keep:
            return None
        return cls(torch.as_tensor(keep, device=flat.pose_map.device), point_movers(flat, targets, point_joints, keep),
                   float(weight), float(rho), tuple(int(targets[n].index) for n in keep))

    @property
    def used(self) -> torch.Tensor:
        """(U,) the chain joints that move some of the points."""
        return torch.nonzero(self.movers.any(0))[:, 0]

    def accelerations(self, points: torch.Tensor, focal: float) -> torch.Tensor:
        """(T-2,Q) the depth accelerations (px/frame^2) from the active points (T,P,3)."""
        depth = points[:, self.points, 2]
        return second_difference(depth) * (focal / depth.detach().mean().clamp(min=0.1))

    def zigzags(self, points: torch.Tensor, focal: float, threshold: float) -> torch.Tensor:
        """(T,) bool: the frames where an elbow's depth zig-zags (ZIGZAG_LANDMARKS), the part of its
        acceleration that its neighbours' mean does not carry, |a_t - (a_{t-1} + a_{t+1}) / 2|
        (px/frame^2), beyond threshold, from the active points (T,P,3). A one-frame jump s in depth
        reads 3s there and 2s beside it; a stroke's smooth acceleration little."""
        elbows = [q for q, landmark in enumerate(self.landmarks) if landmark in ZIGZAG_LANDMARKS]
        accelerations = self.accelerations(points, focal)[:, elbows]
        out = torch.zeros(len(points), dtype=torch.bool, device=points.device)
        if len(accelerations) >= 3 and elbows:
            high = accelerations[1:-1] - (accelerations[:-2] + accelerations[2:]) / 2
            out[2:-2] = (high.abs() > threshold).any(1)
        return out

    def cost(self, points: torch.Tensor, focal: float, gaps: torch.Tensor) -> torch.Tensor:
        """Scalar: weight x sum GM(a^2; rho) x gaps (T-2,)."""
        squared = self.accelerations(points, focal) ** 2
        robust = geman_mcclure(squared, self.rho) if self.rho > 0 else squared
        return self.weight * (robust * gaps[:, None]).sum()

    def rows(self, flat: FlatSMPLX, x: torch.Tensor, rows: torch.Tensor | None, focal: float, gaps: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gauss-Newton rows: (T,Q,D) d (f / Zbar Z_q) / d x and (T-2,Q) the weight of each
        acceleration at x (Geman-McClure's IRLS factor), for the temporal solve's bands."""
        with torch.no_grad():
            points, jacobian = point_depth_jacobian(flat, x, rows, self.points, self.movers, self.used)
            scale = focal / points[:, self.points, 2].mean().clamp(min=0.1)
            return jacobian * scale, self.irls_weights(self.accelerations(points, focal), gaps)

    def irls_weights(self, accelerations: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        """(T-2,Q) each acceleration's weight: weight x gaps x Geman-McClure's IRLS factor (rho > 0)."""
        weights = self.weight * gaps[:, None].expand(-1, len(self.points))
        return weights * irls_weight(accelerations ** 2, self.rho) if self.rho > 0 else weights

    def depth_covector(self, points: torch.Tensor, focal: float, gaps: torch.Tensor) -> torch.Tensor:
        """(T,P) d cost / d Z of the active points (T,P,3) (zero off the listed points): the
        accelerations' chain, f / Zbar D2^T (2 weights a), Zbar held fixed as in the cost."""
        accelerations = self.accelerations(points, focal)
        scale = focal / points[:, self.points, 2].mean().clamp(min=0.1)
        along = second_difference_t(2 * self.irls_weights(accelerations, gaps) * accelerations) * scale
        return torch.zeros_like(points[..., 2]).index_copy(1, self.points, along)
