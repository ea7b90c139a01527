"""SMPL-X fitting of a whole clip in one batched optimisation, and its annotator.

Objective (SMPLify-X's, with SHOW/EasyMocap-style clip terms), summed over frames:
  data      sum_k w_k c_tk GM(|pi(X_tk) - x_tk|; rho)   Geman-McClure on pixels, c = landmark
                                                     confidence (0 = missing), rho = rho x image side
  priors    pose (GMM or built-in), |beta|^2, |psi_t|^2, |hand PCA|^2, |jaw|^2, |eyes|^2
  temporal  lambda_k |u_{t+1,k} - 2u_tk + u_{t-1,k}|^2 on the projected model points (px) and
            a small second difference on every parameter, so noise averages out over
            frames and missing frames are filled smoothly
with beta (shape) shared by the clip and everything else per frame.

Solver: Levenberg-Marquardt, batched over frames (annotate/smplx_optim.py). Each frame's
~100 unknowns get a Gauss-Newton step from the analytic Jacobian of annotate/smplx_flat.py
(only the joints that move an observed point; the legs of a torso-up clip stay at zero)
and the exact gradient (autograd), so a stage needs ~5-12 steps, not hundreds.
Schedule (default_stages), coarse to fine in time:
  keyframes (every keyframe_stride-th frame), each frame its own problem, SMPLify-X's stages:
    camera + torso (from a closed-form translation), body (from two elbow bends, the better
    kept), hands wide then narrow robust scale, then a neighbour pass: each keyframe also
    restarts from its neighbours' fits and a Viterbi pick keeps the most consistent
    sequence (a forearm's depth is ambiguous in 2D: this removes runs of flipped frames);
  all frames: interpolated from the keyframes, then one coupled Gauss-Newton solve with the
    temporal terms (block-pentadiagonal normal equations, PCG with per-frame blocks).
Camera: OpenCV pinhole at the origin, principal point at the image centre.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from annotate.correspondences import Target, all_targets, gather_observations
from annotate.pose_prior import make_pose_prior
from annotate.smplx_flat import FlatSMPLX
from annotate.smplx_optim import block_pcg, damped_solve, second_difference, second_difference_t
from annotate.smplx_sparse import SparseSMPLX, project

log = logging.getLogger(__name__)

STAGE = "smplx"
PER_FRAME = ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose",
             "right_hand_pose", "expression", "transl")
FLAT_ALL = ("transl", "global_orient", "body", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose",
            "right_hand_pose", "expression", "betas")
TORSO_POINTS = {("joint", 16), ("joint", 17), ("joint", 1), ("joint", 2)}
UPPER_BODY_JOINTS = [12, 15, 16, 17, 18, 19, 20, 21]  # for the jitter score
# temporal weights: px^2 per (px/frame^2)^2 of a projected point, by group (faces move faster)
SMOOTH_2D = {"body": 2.0, "left_hand": 2.0, "right_hand": 2.0, "face": 0.3, "contour": 0.3}
# and per parameter (second difference), small: they only steady what 2D cannot see (depth, twist)
SMOOTH_PARAM = {"transl": 1e4, "global_orient": 10.0, "body": 10.0, "jaw_pose": 1.0, "leye_pose": 1.0,
                "reye_pose": 1.0, "left_hand_pose": 0.1, "right_hand_pose": 0.1, "expression": 0.1, "betas": 0.0}
BETA_POOL = 1e3
# cost per rad^2 of pose change between (key)frames when picking among a frame's candidate fits
TRANSITION_WEIGHT = 100.0  # per-frame shapes are pulled to the clip's mean until it is fixed


@dataclass
class StageSpec:
    name: str
    free: tuple[str, ...]  # FlatSMPLX layout names
    groups: tuple[str, ...]
    iterations: int
    pose_w: float
    shape_w: float
    face_w: float  # expression / jaw / eyes prior scale
    hand_w: float
    rho_scale: float = 1.0  # x robust_rho: wide early so far-off points still pull
    temporal: bool = False  # one coupled solve over the clip with the temporal terms
    elbow_starts: bool = False  # try two elbow initialisations per frame, keep the better
    keyframes: bool = False  # run on every keyframe_stride-th frame only (then interpolated)
    neighbour_starts: bool = False  # also start each frame from its neighbours' fits, keep the best


def default_stages(iterations: int) -> list[StageSpec]:
    """SMPLify-X's schedule in three steps, then the temporal solve; priors fall as more is freed.

    iterations caps the Gauss-Newton steps of a stage (each stops earlier when converged).
    """
    it = max(iterations, 2)
    allg = ("body", "face", "contour", "left_hand", "right_hand")
    no_shape = tuple(n for n in FLAT_ALL if n != "betas")
    return [
        # coarse in time: keyframes only, SMPLify-X's stages
        StageSpec("camera", ("transl", "global_orient"), ("torso", "face"), min(it, 8), 100, 100, 100, 100, 4.0,
                  keyframes=True),
        StageSpec("body", ("transl", "global_orient", "body", "betas"), ("body", "face", "contour"),
                  min(it, 12), 30, 50, 100, 100, 4.0, elbow_starts=True, keyframes=True),
        # hands join wide (far-off fingers still pull), then the robust scale narrows
        StageSpec("hands", FLAT_ALL, allg, min(it, 10), 10, 25, 5, 2, 4.0, keyframes=True),
        StageSpec("full", FLAT_ALL, allg, min(it, 10), 10, 25, 5, 2, keyframes=True),
        StageSpec("neighbours", FLAT_ALL, allg, min(it, 6), 10, 25, 5, 2, keyframes=True, neighbour_starts=True),
        # fine: all frames from the interpolated keyframes, coupled in time (a per-frame pass
        # here would let in-between frames fall into 2D-equivalent wrong poses)
        StageSpec("smooth", no_shape, allg, min(it, 5), 10, 25, 5, 2, temporal=True),
    ]


@dataclass
class FitResult:
    params: dict[str, np.ndarray]  # betas (1,B); per-frame (T,...) arrays
    camera: np.ndarray  # (3,) focal, cx, cy
    reprojection_px: np.ndarray  # (T,) mean error of observed points, NaN where none
    points2d: np.ndarray  # (T,K,2) the fitted model points projected
    joints: np.ndarray  # (T,55,3) camera-space joints
    jitter: float
    seconds: float
    evaluations: int = 0
    losses: list[float] = field(default_factory=list)


def estimate_focal(width: int, height: int) -> float:
    """A ~53 degree diagonal field of view, for footage whose camera is unknown."""
    return float(math.hypot(width, height))


def _init_translation(rest_pts: np.ndarray, xy: np.ndarray, conf: np.ndarray, mask: np.ndarray,
                      camera: np.ndarray) -> np.ndarray | None:
    """Per-frame translation from the 2D spread of torso/face points vs the model's (weak perspective)."""
    f, c = camera[0], camera[1:]
    T = len(xy)
    tr = np.full((T, 3), np.nan)
    for t in range(T):
        ok = (conf[t] > 0.3) & mask
        if ok.sum() < 3:
            continue
        X, x = rest_pts[ok], xy[t, ok]
        s3 = np.sqrt(((X[:, :2] - X[:, :2].mean(0)) ** 2).sum(1).mean())
        s2 = np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean())
        if s2 < 1e-3:
            continue
        z = f * s3 / s2
        xy3 = (x.mean(0) - c) * z / f - X[:, :2].mean(0)
        tr[t] = [xy3[0], xy3[1], z - X[:, 2].mean()]
    good = np.isfinite(tr[:, 0])
    if not good.any():
        return None
    idx = np.arange(T)
    for d in range(3):
        tr[:, d] = np.interp(idx, idx[good], tr[good, d])
    return tr


def gm(r2: torch.Tensor, rho: float) -> torch.Tensor:
    """Geman-McClure of squared residuals, scaled to rho^2 (quadratic near 0, flat beyond rho)."""
    return rho**2 * r2 / (rho**2 + r2)


class ClipObjective:
    """The fitting objective on FlatSMPLX parameters x (T,D), its pieces and GN Hessians."""

    def __init__(self, fm: FlatSMPLX, obs, c_obs, groups, cam, rho, prior, smooth_weight, device):
        self.fm, self.obs, self.c_obs, self.groups, self.cam, self.rho = fm, obs, c_obs, groups, cam, rho
        self.prior = prior
        lay = fm.layout
        D = fm.dim
        self.D = D
        # body-pose columns of x -> the 63 body_pose values
        cols = [(j - 1) * 3 + c for j in fm.body_free for c in range(3)]
        self.body63 = torch.as_tensor(cols, dtype=torch.long, device=device)
        self.body_x = torch.arange(lay["body"].start, lay["body"].stop, device=device) if "body" in lay else None
        self.beta_x = torch.arange(lay["betas"].start, lay["betas"].stop, device=device)
        self.sm2d = torch.tensor([SMOOTH_2D.get(g, 1.0) for g in groups], dtype=torch.float32,
                                 device=device) * smooth_weight
        wp = torch.zeros(D, device=device)
        for k, sl in lay.items():
            wp[sl] = SMOOTH_PARAM.get(k, 0.0) * smooth_weight
        self.smooth_p = wp

    def subset(self, idx: torch.Tensor) -> "ClipObjective":
        """The same objective on some frames only (observations sliced)."""
        sub = object.__new__(ClipObjective)
        sub.__dict__.update(self.__dict__)
        sub.obs, sub.c_obs = self.obs[idx], self.c_obs[idx]
        return sub

    def cols(self, names) -> torch.Tensor:
        lay = self.fm.layout
        return torch.cat([torch.arange(lay[n].start, lay[n].stop) for n in names if n in lay]).to(self.obs.device)

    def stage_diag(self, st: StageSpec) -> torch.Tensor:
        """(D,) weights of the quadratic priors: sum_d w_d x_d^2."""
        w = torch.zeros(self.D, device=self.obs.device)
        lay = self.fm.layout
        for name, val in (("betas", st.shape_w), ("expression", st.face_w), ("jaw_pose", 100 * st.face_w),
                          ("leye_pose", 100 * st.face_w), ("reye_pose", 100 * st.face_w),
                          ("left_hand_pose", st.hand_w), ("right_hand_pose", st.hand_w)):
            if name in lay:
                w[lay[name]] = val
        return w

    def body_pose(self, x: torch.Tensor) -> torch.Tensor:
        bp = torch.zeros(x.shape[0], 63, dtype=x.dtype, device=x.device)
        if self.body_x is None:
            return bp
        return bp.index_copy(1, self.body63, x[:, self.body_x])

    def frame_costs(self, x, st, cw, rows, bmean, wdiag, uv=None) -> torch.Tensor:
        """(T,) objective without the temporal terms."""
        if uv is None:
            uv = project(self.fm(x, rows), self.cam)
        r2 = ((uv - self.obs) ** 2).sum(-1)
        f = (cw * gm(r2, self.rho * st.rho_scale)).sum(1)
        f = f + st.pose_w * self.prior(self.body_pose(x)) + (wdiag * x * x).sum(1)
        if bmean is not None:
            f = f + BETA_POOL * ((x[:, self.beta_x] - bmean) ** 2).sum(1)
        return f

    def smooth_weights(self) -> torch.Tensor:
        """(T-2,P) weight of each 2D acceleration: full where the point is seen in all three
        frames, a quarter elsewhere (an unseen point's track is only the prior's guess)."""
        seen = (self.c_obs > 0).float()
        both = torch.minimum(torch.minimum(seen[2:], seen[1:-1]), seen[:-2])
        return (0.25 + 0.75 * both) * self.sm2d

    def temporal_cost(self, x, uv) -> torch.Tensor:
        a2 = (second_difference(uv) ** 2).sum(-1)  # (T-2,P)
        return (a2 * self.smooth_weights()).sum() + (second_difference(x) ** 2 * self.smooth_p).sum()

    def prior_hessian(self, x, st, wdiag, with_pool: bool) -> torch.Tensor:
        """(T,D,D) Gauss-Newton Hessian of the prior terms."""
        T = x.shape[0]
        d = 2 * wdiag.expand(T, -1).clone()
        if with_pool:
            d[:, self.beta_x] += 2 * BETA_POOL
        H = torch.diag_embed(d)
        if self.body_x is not None:
            Hb = self.prior.gn_hessian(self.body_pose(x))[:, self.body63][:, :, self.body63] * st.pose_w
            idx = self.body_x
            H[:, idx[:, None], idx[None, :]] += Hb
        return H


def _rest_x(fm: FlatSMPLX, T: int, device, elbow: float = 0.8) -> torch.Tensor:
    x = torch.zeros(T, fm.dim, device=device)
    lay = fm.layout
    x[:, lay["global_orient"].start] = math.pi  # body y-up -> camera y-down, facing the camera

    def setj(j, c, v):
        if j in fm.body_free:
            x[:, lay["body"].start + 3 * fm.body_free.index(j) + c] = v

    setj(16, 2, -1.2)  # arms down: left shoulder about -z, right about +z
    setj(17, 2, 1.2)
    # elbows bent toward the camera: from a straight arm, bending moves the wrist only in
    # depth, so 2D evidence has no gradient to start it (and talking people gesture)
    setj(18, 1, -elbow)
    setj(19, 1, elbow)
    return x


def _params_from_x(fm: FlatSMPLX, obj: ClipObjective, x: torch.Tensor, sp: SparseSMPLX) -> dict[str, torch.Tensor]:
    """Full SMPL-X parameter dict (T,...) from flat x; betas (1,B) = the clip mean."""
    T = x.shape[0]
    lay = fm.layout
    z = lambda n: torch.zeros(T, n, dtype=x.dtype, device=x.device)  # noqa: E731
    p = {"global_orient": x[:, lay["global_orient"]], "body_pose": obj.body_pose(x), "transl": x[:, lay["transl"]],
         "expression": x[:, lay["expression"]], "betas": x[:, lay["betas"]].mean(0, keepdim=True)}
    for name, n in (("jaw_pose", 3), ("leye_pose", 3), ("reye_pose", 3), ("left_hand_pose", sp.num_pca),
                    ("right_hand_pose", sp.num_pca)):
        p[name] = x[:, lay[name]] if name in lay else z(n)
    return p


def fit_clip(
    sp: SparseSMPLX,
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
    stages: list[StageSpec] | None = None,
    optimizer: str = "batched",
    keyframe_stride: int = 8,
) -> FitResult:
    """Fit SMPL-X to one clip's 2D landmarks.

    xy: (T,K,2) observed pixels, conf: (T,K) in [0,1] (0 = missing), targets: the K model
    points they observe, camera: (f, cx, cy). Temporal terms apply when T > 2.
    optimizer: "batched" (per-frame Levenberg-Marquardt, then the coupled temporal solve) or
    "lbfgs" (torch's L-BFGS with strong Wolfe on the same objective, each stage run to
    convergence (restarted until a restart gains < tolerance; at most 10 x `iterations`
    evaluations a stage), no temporal terms: SMPLify-X's per-image way;
    use it on one frame at a time as the per-frame baseline).
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    sp = sp.to(device)
    T, K = conf.shape
    prior = (pose_prior or make_pose_prior(None)).to(device)
    active = conf.max(0) > 0
    if active.sum() < 3:
        raise ValueError("fewer than 3 landmarks observed in the whole clip")
    sp.set_contour_rows(torch.arange(sp.dyn_faces.shape[0], device=device))  # frames index the whole table
    fm = FlatSMPLX(sp, active).to(device)
    tg = [t for t, a in zip(targets, active) if a]
    w = torch.tensor([t.weight for t in tg], dtype=torch.float32, device=device)
    groups = np.array([t.group for t in tg])
    torso = np.array([t.point in TORSO_POINTS or t.group == "face" for t in tg])
    obs = torch.tensor(xy[:, active], dtype=torch.float32, device=device)
    c_obs = torch.tensor(conf[:, active], dtype=torch.float32, device=device) * w
    cam = torch.tensor(camera, dtype=torch.float32, device=device)
    rho = robust_rho * max(image_size)
    obj = ClipObjective(fm, obs, c_obs, list(groups), cam, rho, prior, smooth_weight, device)

    x = _rest_x(fm, T, device)
    rows = torch.zeros(T, dtype=torch.long, device=device)
    with torch.no_grad():
        rest = fm(x[:1], rows[:1])[0].cpu().numpy()
    init = _init_translation(rest, xy[:, active], conf[:, active], torso, np.asarray(camera, float))
    if init is None:
        raise ValueError("no frame has 3 or more confident torso/face landmarks")
    x[:, fm.layout["transl"]] = torch.tensor(init, dtype=torch.float32, device=device)
    temporal = T > 2 and smooth_weight > 0
    stats = {"evals": 0}
    losses: list[float] = []

    def update_rows(x):
        with torch.no_grad():
            return sp.contour_rows(_params_from_x(fm, obj, x, sp))

    stride = keyframe_stride if optimizer == "batched" and T >= 3 * keyframe_stride else 1
    key = torch.as_tensor(np.unique(np.r_[np.arange(0, T, stride), T - 1]), device=device)
    on_keys = False  # x holds keyframes only
    for st in stages or default_stages(iterations):
        if st.temporal and not (temporal and optimizer == "batched"):
            continue
        if st.keyframes and stride > 1 and not on_keys:
            x, on_keys = x[key], True
        elif not st.keyframes and on_keys:
            x, on_keys = _interpolate(x, key, T), False
        o = obj.subset(key) if on_keys else obj
        gmask = torch.tensor(np.isin(groups, st.groups) | (("torso" in st.groups) & torso),
                             dtype=torch.float32, device=device)
        cw = o.c_obs * gmask
        rows = update_rows(x)
        free = o.cols(st.free)
        wdiag = o.stage_diag(st)
        n = x.shape[0]
        if optimizer == "lbfgs":
            x = _lbfgs_stage(o, x, st, cw, rows, wdiag, free, tolerance, stats, max_evals=10 * iterations)
        elif st.temporal:
            x = _temporal_stage(o, x, st, cw, rows, wdiag, free, tolerance, stats)
        elif (st.elbow_starts and "body" in fm.layout or st.neighbour_starts) and n > 1:
            if st.elbow_starts:
                # the depth of a bent forearm is ambiguous in 2D: start from both bends, keep the better
                alt = x.clone()
                alt[:, fm.layout["body"]] = _rest_x(fm, n, device, elbow=2.0)[:, fm.layout["body"]]
                starts = [x, alt]
            else:  # a frame stuck in a poor minimum restarts from its neighbours' fits
                starts = [x, torch.cat([x[:1], x[:-1]]), torch.cat([x[1:], x[-1:]])]
            m = len(starts)
            o.obs, o.c_obs = o.obs.repeat(m, 1, 1), o.c_obs.repeat(m, 1)
            cands = _lm_stage(o, torch.cat(starts), st, cw.repeat(m, 1), rows.repeat(m), wdiag, free, tolerance, stats)
            o.obs, o.c_obs = o.obs[:n], o.c_obs[:n]
            with torch.no_grad():
                costs = torch.stack([o.frame_costs(h, st, cw, rows, None, wdiag) for h in cands.split(n)])
                cands = cands.view(m, n, -1)
                if st.neighbour_starts:  # the most consistent sequence, not each frame's best alone
                    pose = cands[..., o.cols(("global_orient", "body"))]
                    best = _viterbi(costs, pose, TRANSITION_WEIGHT * smooth_weight)
                else:
                    best = costs.argmin(0)
            x = cands[best, torch.arange(n, device=device)]
        else:
            x = _lm_stage(o, x, st, cw, rows, wdiag, free, tolerance, stats)
        with torch.no_grad():
            bm = x[:, o.beta_x].mean(0) if "betas" in st.free else None
            losses.append(float(o.frame_costs(x, st, cw, rows, bm, wdiag).mean()))
        log.debug("stage %s on %d frames: loss %.3f after %d evaluations, %.2f s", st.name, n, losses[-1],
                  stats["evals"], time.perf_counter() - t0)
        if "betas" in st.free:  # from here on (and in the output) one shape for the clip
            x[:, o.beta_x] = x[:, o.beta_x].mean(0)
    if on_keys:
        x = _interpolate(x, key, T)

    p = _params_from_x(fm, obj, x.detach(), sp)
    with torch.no_grad():
        sp.set_contour_rows(sp.contour_rows(p))
        pts, joints = sp(p)
        uv = project(pts, cam)
        obs_all = torch.tensor(xy, dtype=torch.float32, device=device)
        err = torch.linalg.norm(uv - obs_all, dim=-1)
        seen = torch.tensor(conf > 0.5, device=device)
        n = seen.sum(1)
        per_frame = torch.where(n > 0, (err * seen).sum(1) / n.clamp(min=1), torch.full_like(n, float("nan"),
                                                                                              dtype=err.dtype))
        j2d = project(joints[:, UPPER_BODY_JOINTS], cam)
        jitter = float(torch.linalg.norm(j2d[2:] - 2 * j2d[1:-1] + j2d[:-2], dim=-1).mean()) if T > 2 else 0.0
    params = {k: v.detach().cpu().numpy() for k, v in p.items()}
    return FitResult(params=params, camera=np.asarray(camera, np.float32), reprojection_px=per_frame.cpu().numpy(),
                     points2d=uv.cpu().numpy(), joints=joints.cpu().numpy(), jitter=jitter,
                     seconds=time.perf_counter() - t0, evaluations=stats["evals"], losses=losses)


def _viterbi(unary: torch.Tensor, pose: torch.Tensor, weight: float) -> torch.Tensor:
    """Pick one of M candidates per frame minimising sum of unary (M,T) + weight |pose_t - pose_t-1|^2.

    pose (M,T,J): the candidates' pose parameters. Returns (T,) candidate indices. Resolves
    runs of frames that settled in a 2D-equivalent but different pose (forearm depth flips).
    """
    M, T = unary.shape
    acc = unary[:, 0].clone()
    back = torch.zeros(T, M, dtype=torch.long, device=unary.device)
    for t in range(1, T):
        trans = weight * ((pose[:, None, t] - pose[None, :, t - 1]) ** 2).sum(-1)  # (M now, M before)
        tot = acc[None, :] + trans
        back[t] = tot.argmin(1)
        acc = tot.min(1).values + unary[:, t]
    path = torch.zeros(T, dtype=torch.long, device=unary.device)
    path[-1] = acc.argmin()
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def _interpolate(xk: torch.Tensor, key: torch.Tensor, T: int) -> torch.Tensor:
    """Linear interpolation of keyframe parameters (K,D) at frames key to all T frames."""
    t = torch.arange(T, device=xk.device, dtype=torch.float32)
    kf = key.to(torch.float32)
    i = torch.searchsorted(kf, t, right=True).clamp(1, len(kf) - 1)
    a = ((t - kf[i - 1]) / (kf[i] - kf[i - 1]).clamp(min=1)).clamp(0, 1)[:, None]
    return xk[i - 1] * (1 - a) + xk[i] * a


def _gn_system(obj: ClipObjective, x, st, cw, rows, wdiag, free, with_pool):
    """Per-frame GN Hessian (T,F,F) on the free columns, and the weighted Jacobian pieces."""
    uv, Jx = obj.fm.projected_jacobian(x, rows, obj.cam, with_betas="betas" in st.free)
    T = x.shape[0]
    rr = (obj.rho * st.rho_scale) ** 2
    e2 = ((uv - obj.obs) ** 2).sum(-1)
    wi = cw * rr**2 / (rr + e2) ** 2  # IRLS weight of Geman-McClure
    Jf = Jx[..., free].reshape(T, -1, len(free))  # (T,2P,F)
    W = wi.repeat_interleave(2, 1)[..., None]
    H = 2 * (Jf * W).transpose(1, 2) @ Jf
    Hp = obj.prior_hessian(x, st, wdiag, with_pool)
    return H + Hp[:, free][:, :, free], Jf, uv


def _lm_stage(obj, x, st, cw, rows, wdiag, free, tol, stats):
    """Levenberg-Marquardt on every frame at once; each frame accepts or rejects its own step."""
    T = x.shape[0]
    lam = torch.full((T,), 1e-3, device=x.device)
    pool = "betas" in st.free
    for _ in range(st.iterations):
        bm = x[:, obj.beta_x].mean(0).detach() if pool else None
        xg = x.detach().requires_grad_(True)
        f = obj.frame_costs(xg, st, cw, rows, bm, wdiag)
        (g,) = torch.autograd.grad(f.sum(), xg)
        stats["evals"] += 1
        with torch.no_grad():
            H, _, _ = _gn_system(obj, x, st, cw, rows, wdiag, free, pool)
            step = damped_solve(H, g[:, free], lam)
            x_new = x.clone()
            x_new[:, free] += step
            f_new = obj.frame_costs(x_new, st, cw, rows, bm, wdiag)
            stats["evals"] += 1
            ok = f_new < f.detach()
            x = torch.where(ok[:, None], x_new, x)
            lam = torch.where(ok, lam / 3, lam * 4).clamp(1e-7, 1e7)
            gain = (f.detach() - f_new) / f.detach().abs().clamp(min=1e-9)
            if bool(((ok & (gain < tol)) | (~ok & (lam > 1e4))).all()):
                break
    return x


def _temporal_stage(obj, x, st, cw, rows, wdiag, free, tol, stats):
    """Gauss-Newton on the whole clip with the temporal terms (block-banded, solved by PCG)."""
    T = x.shape[0]
    lam = 1e-3
    cdiag = torch.zeros(T, device=x.device)
    cdiag[:-2] += 1
    cdiag[1:-1] += 4
    cdiag[2:] += 1
    sm2 = obj.smooth_weights().repeat_interleave(2, 1)  # (T-2,2P)
    # a frame's own share of the 2D smoothing (the diagonal of D2^T S D2), for the preconditioner
    sdiag = torch.zeros(T, sm2.shape[1], device=x.device)
    sdiag[:-2] += sm2
    sdiag[1:-1] += 4 * sm2
    sdiag[2:] += sm2
    wp = obj.smooth_p[free]

    def total(xv):
        uv = project(obj.fm(xv, rows), obj.cam)
        return obj.frame_costs(xv, st, cw, rows, None, wdiag, uv=uv).sum() + obj.temporal_cost(xv, uv)

    for _ in range(st.iterations):
        xg = x.detach().requires_grad_(True)
        F = total(xg)
        (g,) = torch.autograd.grad(F, xg)
        stats["evals"] += 1
        with torch.no_grad():
            H, Jf, _ = _gn_system(obj, x, st, cw, rows, wdiag, free, False)
            # the 2D smoothing's normal equations are block-pentadiagonal: J_t^T S J_t' for |t-t'| <= 2
            JfT = Jf.transpose(1, 2)
            Hs = 2 * (JfT * sdiag[:, None]) @ Jf
            s1 = torch.zeros(T - 1, sm2.shape[1], device=x.device)  # weight of the (t, t+1) products
            s1[1:] += sm2
            s1[:-1] += sm2
            H1 = -4 * (JfT[:-1] * s1[:, None]) @ Jf[1:]  # (T-1,F,F)
            H2 = 2 * (JfT[:-2] * sm2[:, None]) @ Jf[2:]  # (T-2,F,F)
            d = H.diagonal(dim1=-2, dim2=-1)
            Hd = H + Hs + torch.diag_embed(lam * d)

            # batched matrix-vector products as broadcast multiply-sums (bmm with one column is slow)
            H1t, H2t = H1.transpose(1, 2).contiguous(), H2.transpose(1, 2).contiguous()

            def matvec(v):
                out = (Hd * v[:, None]).sum(-1) + 2 * second_difference_t(second_difference(v) * wp)
                out[:-1] += (H1 * v[1:, None]).sum(-1)
                out[1:] += (H1t * v[:-1, None]).sum(-1)
                out[:-2] += (H2 * v[2:, None]).sum(-1)
                out[2:] += (H2t * v[:-2, None]).sum(-1)
                return out

            pre = Hd + cdiag[:, None, None] * torch.diag_embed(2 * wp).expand(T, -1, -1)
            L = torch.linalg.cholesky(pre + 1e-6 * torch.eye(len(free), device=x.device))
            step = block_pcg(matvec, -g[:, free], L, iterations=30, rtol=1e-3)
            x_new = x.clone()
            x_new[:, free] += step
            F_new = total(x_new)
            stats["evals"] += 1
            log.debug("temporal step: %.1f -> %.1f (lambda %.0e)", float(F), float(F_new), lam)
            if float(F_new) < float(F):
                gain = float((F - F_new) / F.abs().clamp(min=1e-9))
                x, lam = x_new, max(lam / 3, 1e-4)
                if gain < tol:
                    break
            else:
                lam *= 4
                if lam > 1e4:
                    break
    return x


def _lbfgs_stage(obj, x, st, cw, rows, wdiag, free, tol, stats, max_evals):
    """torch's L-BFGS (strong Wolfe) on the summed objective: the per-image SMPLify-X way."""
    xf = x[:, free].clone().requires_grad_(True)
    pool = "betas" in st.free and x.shape[0] > 1

    def closure():
        stats["evals"] += 1
        xf.grad = None
        xx = x.clone()
        xx[:, free] = xf
        bm = xx[:, obj.beta_x].mean(0).detach() if pool else None
        loss = obj.frame_costs(xx, st, cw, rows, bm, wdiag).sum()
        loss.backward()
        return loss

    # torch's L-BFGS stops when a line search makes no float32 progress, often far from the
    # minimum: restart it until a restart gains less than tol (relative), as "to convergence"
    prev = float("inf")
    start = stats["evals"]
    while stats["evals"] - start < max_evals:
        opt = torch.optim.LBFGS([xf], lr=1.0, max_iter=30, history_size=20, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-7, tolerance_change=1e-9)  # fresh history each restart
        loss = float(opt.step(closure).detach())
        if prev - loss < tol * abs(loss):
            break
        prev = loss
    x = x.clone()
    x[:, free] = xf.detach()
    return x


# ------------------------------------------------------------------------ annotator

def _fraction(a: np.ndarray | None) -> float:
    if a is None or len(a) == 0:
        return 0.0
    return float(np.isfinite(a[..., :2]).any(axis=(1, 2)).mean())


class SmplxFitter:
    """Annotator: SMPL-X parameters per frame from the `landmarks.*` arrays.

    Writes arrays smplx.{betas, global_orient, body_pose, jaw_pose, leye_pose, reye_pose,
    left_hand_pose, right_hand_pose, expression, transl, camera, reprojection_px} (T rows each;
    betas and camera repeat the clip's one value), scores smplx.{reprojection_px, jitter,
    fit_seconds}, and annotations["smplx"] with the body model's label ("synthetic" when the
    generated stand-in was used).
    """

    name = STAGE

    def __init__(self, cfg, device: str | None = None, body_model=None):
        from mentor.bodymodel import load_body_model

        self.cfg = cfg
        dev = device or cfg.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(dev)
        self.body = body_model or load_body_model(cfg.model_dir, gender=cfg.gender, num_betas=cfg.num_betas,
                                                  num_expression=cfg.num_expression,
                                                  num_pca_comps=cfg.num_pca_comps, device="cpu")
        self.prior = make_pose_prior(cfg.pose_prior)  # raises naming the file if it is missing
        self.targets = all_targets()
        self.sparse = SparseSMPLX(self.body.model, [t.point for t in self.targets]).to(self.device)

    def camera_for(self, record) -> tuple[np.ndarray, str]:
        w, h = record.width, record.height
        if self.cfg.focal_length:
            return np.array([self.cfg.focal_length, w / 2, h / 2], np.float32), "config"
        f = estimate_focal(w, h)
        # a crop of a bigger frame sees a narrower field: scale the source's focal to the clip
        if record.crop is not None and record.source_width and record.source_height:
            f = estimate_focal(record.source_width, record.source_height) * w / record.crop.size
        return np.array([f, w / 2, h / 2], np.float32), "estimated"

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
        lh, rh = arrays.get("landmarks.left_hand"), arrays.get("landmarks.right_hand")
        hands = [np.isfinite(a[..., :2]).any(axis=(1, 2)) for a in (lh, rh) if a is not None]
        hand_f = float(np.logical_or.reduce(hands).mean()) if hands else 0.0
        xy, conf = gather_observations(arrays, self.targets, T, self.cfg.min_visibility)
        camera, focal_source = self.camera_for(record)
        try:
            res = fit_clip(self.sparse, self.targets, xy, conf, camera, (record.width, record.height),
                           iterations=self.cfg.iterations, robust_rho=self.cfg.robust_rho,
                           smooth_weight=self.cfg.smooth_weight, pose_prior=self.prior, device=self.device,
                           keyframe_stride=self.cfg.keyframe_stride)
        except ValueError as e:
            record.fail(STAGE, f"cannot fit: {e}")
            return record
        fps, start = ref.fps, ref.start
        for k, v in res.params.items():
            record.add_array(f"{STAGE}.{k}", np.repeat(v, T, 0) if k == "betas" else v, fps, start)
        record.add_array(f"{STAGE}.camera", np.repeat(res.camera[None], T, 0), fps, start)
        record.add_array(f"{STAGE}.reprojection_px", res.reprojection_px.astype(np.float32), fps, start)
        mean_err = float(np.nanmean(res.reprojection_px)) if np.isfinite(res.reprojection_px).any() else float("nan")
        record.set_score(f"{STAGE}.reprojection_px", round(mean_err, 3))
        record.set_score(f"{STAGE}.jitter", round(res.jitter, 3))
        record.set_score(f"{STAGE}.fit_seconds", round(res.seconds, 3))
        record.annotations[STAGE] = {
            "body_model": self.body.label, "model_file": self.body.path.name, "gender": self.cfg.gender,
            "num_pca_comps": self.body.num_pca_comps, "flat_hand_mean": False, "camera": "opencv pinhole",
            "focal_source": focal_source, "pose_prior": "gmm" if self.cfg.pose_prior else "builtin",
            "betas": "shared per clip (rows repeat)", "device": str(self.device),
        }
        reasons = []
        if not np.isfinite(mean_err) or mean_err > self.cfg.max_reprojection_px:
            reasons.append(f"reprojection {mean_err:.1f} px > {self.cfg.max_reprojection_px:g}")
        if res.jitter > self.cfg.max_jitter:
            reasons.append(f"jitter {res.jitter:.2f} px/frame^2 > {self.cfg.max_jitter:g}")
        if self.cfg.min_hand_fraction > 0 and hand_f < self.cfg.min_hand_fraction:
            reasons.append(f"hands found in {hand_f:.0%} of frames < {self.cfg.min_hand_fraction:.0%}")
        if face_f < self.cfg.min_face_fraction:
            reasons.append(f"face found in {face_f:.0%} of frames < {self.cfg.min_face_fraction:.0%}")
        if pose_f < self.cfg.min_pose_fraction:
            reasons.append(f"body found in {pose_f:.0%} of frames < {self.cfg.min_pose_fraction:.0%}")
        if reasons:
            record.reject(STAGE, "; ".join(reasons))
        record.mark(STAGE, "done")
        return record
