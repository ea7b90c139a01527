"""SMPL-X fitting of a whole clip in one optimisation, and its annotator.

Objective (SMPLify-X's, with SHOW/EasyMocap-style clip terms), summed over frames:
  data      Σ_k w_k c_tk GM(|π(X_tk) - x_tk|; ρ)    Geman-McClure on pixels, c = landmark
                                                    confidence (0 = missing), ρ = rho x image side
  priors    pose (GMM or built-in), |β|², |ψ_t|², |hand PCA|², |jaw|², |eyes|²
  temporal  |X_{t+1} - 2X_t + X_{t-1}|² on the model points (mm) + |p_{t+1} - p_t|² on
            face/hand parameters, so missing frames are filled smoothly
with β (shape) shared by the clip and everything else per frame. Staged like SMPLify-X:
camera + torso first, then the body, then hands and face; L-BFGS (strong Wolfe) on all
frames at once. Only the observed model points are evaluated (annotate/smplx_sparse.py).
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
from annotate.smplx_optim import batched_lbfgs
from annotate.smplx_sparse import SparseSMPLX, project

log = logging.getLogger(__name__)

STAGE = "smplx"
PER_FRAME = ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose",
             "right_hand_pose", "expression", "transl")
TORSO_POINTS = {("joint", 16), ("joint", 17), ("joint", 1), ("joint", 2)}
UPPER_BODY_JOINTS = [12, 15, 16, 17, 18, 19, 20, 21]  # for the jitter score


@dataclass
class StageSpec:
    name: str
    free: tuple[str, ...]
    groups: tuple[str, ...]
    iterations: int
    pose_w: float
    shape_w: float
    face_w: float  # expression / jaw / eyes prior scale
    hand_w: float
    rho_scale: float = 1.0  # x robust_rho: wide early so far-off points still pull
    temporal: bool = False  # add the temporal terms (this stage then runs as one coupled L-BFGS)


def default_stages(iterations: int) -> list[StageSpec]:
    """SMPLify-X's schedule in three steps; prior weights fall as more is freed."""
    it = max(iterations, 3)
    return [
        StageSpec("camera", ("transl", "global_orient"), ("torso", "face"), max(it // 3, 5), 100, 100, 100, 100, 4.0),
        StageSpec("body", ("transl", "global_orient", "body_pose", "betas"), ("body", "face", "contour"),
                  max(it // 2, 5), 30, 50, 100, 100, 4.0),
        StageSpec("full", PER_FRAME + ("betas",), ("body", "face", "contour", "left_hand", "right_hand"),
                  it, 10, 25, 5, 2),
        # the frames are fitted; now couple them in time (few iterations from a good start)
        StageSpec("smooth", PER_FRAME + ("betas",), ("body", "face", "contour", "left_hand", "right_hand"),
                  max(it // 3, 5), 10, 25, 5, 2, temporal=True),
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


def _rest_pose(T: int, sp: SparseSMPLX, device) -> dict[str, torch.Tensor]:
    z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
    body = z(T, 63)
    body[:, 15 * 3 + 2] = -1.2  # arms down: left shoulder about -z, right about +z
    body[:, 16 * 3 + 2] = 1.2
    # elbows half bent toward the camera: from a straight arm, bending moves the wrist only
    # in depth, so 2D evidence has no gradient to start it (and talking people gesture)
    body[:, 17 * 3 + 1] = -0.8
    body[:, 18 * 3 + 1] = 0.8
    go = z(T, 3)
    go[:, 0] = math.pi  # body y-up -> camera y-down, facing the camera
    return {"betas": z(1, sp.num_betas), "global_orient": go, "body_pose": body, "jaw_pose": z(T, 3),
            "leye_pose": z(T, 3), "reye_pose": z(T, 3), "left_hand_pose": z(T, sp.num_pca),
            "right_hand_pose": z(T, sp.num_pca), "expression": z(T, sp.num_expression), "transl": z(T, 3)}


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
    """Geman-McClure of squared residuals, scaled to rho² (quadratic near 0, flat beyond rho)."""
    return rho**2 * r2 / (rho**2 + r2)


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
    tolerance: float = 1e-9,
    stages: list[StageSpec] | None = None,
    optimizer: str = "batched",
) -> FitResult:
    """Fit SMPL-X to one clip's 2D landmarks.

    xy: (T,K,2) observed pixels, conf: (T,K) in [0,1] (0 = missing), targets: the K model
    points they observe, camera: (f, cx, cy). Temporal terms apply when T > 2.
    optimizer: "batched" (per-frame L-BFGS blocks, annotate/smplx_optim.py) or "lbfgs"
    (torch's L-BFGS on the summed objective, SMPLify-X's choice for single images).
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    sp = sp.to(device)
    T, K = conf.shape
    prior = (pose_prior or make_pose_prior(None)).to(device)
    w = torch.tensor([t.weight for t in targets], dtype=torch.float32, device=device)
    groups = np.array([t.group for t in targets])
    torso = np.array([t.point in TORSO_POINTS or t.group == "face" for t in targets])
    obs = torch.tensor(xy, dtype=torch.float32, device=device)
    c_obs = torch.tensor(conf, dtype=torch.float32, device=device) * w
    cam = torch.tensor(camera, dtype=torch.float32, device=device)
    rho = robust_rho * max(image_size)

    p = _rest_pose(T, sp, device)
    with torch.no_grad():
        p1 = {k: v[:1] for k, v in p.items()}
        sp.set_contour_rows(sp.contour_rows(p1))
        rest, _ = sp(p1)
    init = _init_translation(rest[0].cpu().numpy(), xy, conf, torso, np.asarray(camera, float))
    if init is None:
        raise ValueError("no frame has 3 or more confident torso/face landmarks")
    p["transl"] = torch.tensor(init, dtype=torch.float32, device=device)
    temporal = T > 2 and smooth_weight > 0
    batched = optimizer == "batched"
    if batched:  # per-frame shape, pulled to the clip's mean, keeps every frame its own block
        p["betas"] = p["betas"].expand(T, -1).clone()
    evals = 0
    losses: list[float] = []

    def frame_losses(q: dict[str, torch.Tensor], st: StageSpec, cw: torch.Tensor) -> torch.Tensor:  # noqa: C901
        """(T,) objective, each term charged to one frame (temporal ones to their first frame)."""
        pts, _ = sp(q)
        r2 = ((project(pts, cam) - obs) ** 2).sum(-1)
        f = (cw * gm(r2, rho * st.rho_scale)).sum(1)
        f = f + st.pose_w * prior(q["body_pose"])
        b = q["betas"]
        f = f + st.shape_w * (b**2).sum(1) * (T if b.shape[0] == 1 else 1)
        if b.shape[0] > 1:
            f = f + 1e3 * ((b - b.mean(0, keepdim=True)) ** 2).sum(1)
        f = f + st.face_w * ((q["expression"] ** 2).sum(1) + 100 * (q["jaw_pose"] ** 2).sum(1)
                             + 100 * (q["leye_pose"] ** 2).sum(1) + 100 * (q["reye_pose"] ** 2).sum(1))
        f = f + st.hand_w * ((q["left_hand_pose"] ** 2).sum(1) + (q["right_hand_pose"] ** 2).sum(1))
        if temporal and (st.temporal or not batched):
            mm = pts * 1000.0
            acc = ((mm[2:] - 2 * mm[1:-1] + mm[:-2]) ** 2).sum((1, 2))
            tf = torch.nn.functional.pad(acc * 0.1, (0, 2))
            for k, kw in (("expression", 5.0), ("jaw_pose", 500.0), ("left_hand_pose", 2.0),
                          ("right_hand_pose", 2.0), ("global_orient", 200.0), ("body_pose", 50.0)):
                tf = tf + kw * torch.nn.functional.pad(((q[k][1:] - q[k][:-1]) ** 2).sum(1), (0, 1))
            f = f + smooth_weight * tf
        return f

    for st in stages or default_stages(iterations):
        gmask = torch.tensor(np.isin(groups, st.groups) | (("torso" in st.groups) & torso),
                             dtype=torch.float32, device=device)
        cw = c_obs * gmask
        sp.set_contour_rows(sp.contour_rows(p))
        if batched and not st.temporal:
            sizes = [p[k].shape[1] for k in st.free]

            def unpack(x, sizes=sizes, st=st):
                q = dict(p)
                q.update(zip(st.free, torch.split(x, sizes, 1)))
                return q

            x0 = torch.cat([p[k] for k in st.free], 1)
            x, n = batched_lbfgs(lambda x, st=st, cw=cw: frame_losses(unpack(x), st, cw), x0, st.iterations,
                                 tolerance=tolerance)
            evals += n
            p.update(zip(st.free, [v.detach() for v in torch.split(x, sizes, 1)]))
            with torch.no_grad():
                losses.append(float(frame_losses(p, st, cw).sum() / T))
        else:
            if batched and p["betas"].shape[0] > 1:  # from here on one shape for the clip
                p["betas"] = p["betas"].mean(0, keepdim=True)
            free = [p[k].requires_grad_(True) for k in st.free]
            opt = torch.optim.LBFGS(free, lr=1.0, max_iter=st.iterations, history_size=20,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=tolerance)

            def closure(st=st, cw=cw):
                nonlocal evals
                evals += 1
                opt.zero_grad()
                loss = frame_losses(p, st, cw).sum() / T
                loss.backward()
                return loss

            losses.append(float(opt.step(closure).detach()))
            for k in st.free:
                p[k] = p[k].detach()
        log.debug("stage %s: loss %.3f after %d evaluations", st.name, losses[-1], evals)

    if p["betas"].shape[0] > 1:
        p["betas"] = p["betas"].mean(0, keepdim=True)
    with torch.no_grad():
        sp.set_contour_rows(sp.contour_rows(p))
        pts, joints = sp(p)
        uv = project(pts, cam)
        err = torch.linalg.norm(uv - obs, dim=-1)
        seen = torch.tensor(conf > 0.5, device=device)
        n = seen.sum(1)
        per_frame = torch.where(n > 0, (err * seen).sum(1) / n.clamp(min=1), torch.full_like(n, float("nan"),
                                                                                              dtype=err.dtype))
        j2d = project(joints[:, UPPER_BODY_JOINTS], cam)
        jitter = float(torch.linalg.norm(j2d[2:] - 2 * j2d[1:-1] + j2d[:-2], dim=-1).mean()) if T > 2 else 0.0
    params = {k: v.detach().cpu().numpy() for k, v in p.items()}
    return FitResult(params=params, camera=np.asarray(camera, np.float32), reprojection_px=per_frame.cpu().numpy(),
                     points2d=uv.cpu().numpy(), joints=joints.cpu().numpy(), jitter=jitter,
                     seconds=time.perf_counter() - t0, evaluations=evals, losses=losses)


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
                           smooth_weight=self.cfg.smooth_weight, pose_prior=self.prior, device=self.device)
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
