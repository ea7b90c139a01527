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
from dataclasses import dataclass, replace

import numpy as np
import torch

from annotate.smplx_flat import FlatSMPLX
from annotate.smplx_optim import second_difference
from mentor.body import Camera

# temporal weights: px^2 per (px/frame^2)^2 of a projected point, by group (faces move faster)
SMOOTH_2D = {"body": 2.0, "left_hand": 2.0, "right_hand": 2.0, "face": 0.3, "contour": 0.3}
# and per parameter (second difference), small: they only steady what 2D cannot see (depth, twist)
SMOOTH_PARAM = {"transl": 1e4, "global_orient": 10.0, "body": 10.0, "jaw_pose": 1.0, "leye_pose": 1.0,
                "reye_pose": 1.0, "left_hand_pose": 0.1, "right_hand_pose": 0.1, "expression": 0.1, "betas": 0.0}
BETA_POOL = 1e3  # per-frame shapes are pulled to the clip's mean until it is fixed
# the landmark groups whose presence in a frame scales that frame's priors, and the layout
# names each one's priors act on (None: the body pose prior)
PRIOR_GROUPS = {"body": (None,), "face": ("expression", "jaw_pose", "leye_pose", "reye_pose"),
                "left_hand": ("left_hand_pose",), "right_hand": ("right_hand_pose",)}
PRIOR_FLOOR = 0.02  # a prior's weight in a frame that sees none of its group (keeps the solve well posed)
TORSO_JOINTS = (16, 17, 1, 2)  # shoulders and hips: with the face, what places the camera


def geman_mcclure(squared: torch.Tensor, rho: float) -> torch.Tensor:
    """Geman-McClure of squared residuals, scaled to rho^2 (quadratic near 0, flat beyond rho)."""
    return rho**2 * squared / (rho**2 + squared)


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
        """The same objective on some frames only."""
        return replace(self, observed=self.observed[frames], confidence=self.confidence[frames],
                       presence=self.presence[frames], bounds=None if self.bounds is None else self.bounds[frames])

    def repeat(self, times: int) -> "ClipObjective":
        """The frames repeated `times` times (several starts of the same frames in one batch)."""
        return replace(self, observed=self.observed.repeat(times, 1, 1), confidence=self.confidence.repeat(times, 1),
                       presence=self.presence.repeat(times, 1),
                       bounds=None if self.bounds is None else self.bounds.repeat(times, 1, 1))

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
            weights[:, layout["betas"]] /= seeing
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
        frames, a quarter elsewhere (an unseen point's track is only the prior's guess)."""
        seen = (self.confidence > 0).float()
        all_three = torch.minimum(torch.minimum(seen[2:], seen[1:-1]), seen[:-2])
        return (0.25 + 0.75 * all_three) * self.smooth_2d

    def temporal_cost(self, x: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """Scalar: the 2D accelerations of the points uv (T,P,2) and the parameters' second differences."""
        acceleration = (second_difference(uv) ** 2).sum(-1)  # (T-2,P)
        return (acceleration * self.smooth_weights()).sum() + (second_difference(x) ** 2 * self.smooth_param).sum()

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
        return self.objective.camera.project(self.objective.flat(x, self.rows))

    def frame_costs(self, x: torch.Tensor, beta_mean: torch.Tensor | None = None,
                    uv: torch.Tensor | None = None) -> torch.Tensor:
        """(T,) objective without the temporal terms; beta_mean (B,) adds the shape pool."""
        objective = self.objective
        if uv is None:
            uv = self.project(x)
        squared = (objective.residuals(uv) ** 2).sum(-1)
        cost = (self.weights * geman_mcclure(squared, self.rho)).sum(1)
        cost = (cost + self.spec.pose_weight * self.pose_scale * objective.prior(objective.body_pose(x))
                + (self.prior_diag * x * x).sum(1))
        if beta_mean is not None:
            cost = cost + BETA_POOL * ((x[:, objective.beta_columns] - beta_mean) ** 2).sum(1)
        return cost

    def prior_hessian(self, x: torch.Tensor, with_pool: bool) -> torch.Tensor:
        """(T,D,D) Gauss-Newton Hessian of the prior terms."""
        objective = self.objective
        diagonal = 2 * self.prior_diag.clone()
        if with_pool:
            diagonal[:, objective.beta_columns] += 2 * BETA_POOL
        hessian = torch.diag_embed(diagonal)
        if objective.body_columns is not None:
            index = objective.body_pose_index
            body = (objective.prior.gn_hessian(objective.body_pose(x))[:, index][:, :, index]
                    * (self.spec.pose_weight * self.pose_scale)[:, None, None])
            columns = objective.body_columns
            hessian[:, columns[:, None], columns[None, :]] += body
        return hessian

    def gauss_newton(self, x: torch.Tensor, with_pool: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-frame Gauss-Newton Hessian (T,F,F) on the free columns, the free columns of
        the projected Jacobian (T,2P,F), and the projected points (T,P,2)."""
        objective = self.objective
        uv, jacobian = objective.flat.projected_jacobian(x, self.rows, objective.camera, with_betas=self.pools_shape)
        frames = x.shape[0]
        rho2 = self.rho ** 2
        residual = objective.residuals(uv)
        squared = (residual ** 2).sum(-1)
        irls = self.weights * rho2**2 / (rho2 + squared) ** 2  # IRLS weight of Geman-McClure
        free_jacobian = jacobian[..., self.free].reshape(frames, -1, len(self.free))  # (T,2P,F)
        weight = irls[..., None].expand(-1, -1, 2)
        if objective.bounds is not None:  # a bound that holds adds no curvature
            weight = weight * ((objective.bounds == 0) | (residual != 0))
        weight = weight.reshape(frames, -1)[..., None]
        hessian = 2 * (free_jacobian * weight).transpose(1, 2) @ free_jacobian
        prior = self.prior_hessian(x, with_pool)
        return hessian + prior[:, self.free][:, :, self.free], free_jacobian, uv


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
