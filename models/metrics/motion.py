"""Motion metrics on SMPL-X trajectories: pure functions on numpy arrays or torch tensors.

Units: positions in metres unless `units` says otherwise ("m", "cm", "mm"); lengths are
reported in millimetres, angles in degrees, times in seconds. Frames where an input is NaN
(missing fit, padding) are left out of the means.

- `lip_landmark_error`  LME, mm: mean (or max) distance of the lip landmarks to ground truth
- `head_aligned`        landmarks moved per frame by the rigid upper-face fit to the truth
                        (LME of what the face itself does, not where the head is)
- `jitter`              mean |third derivative| of joint positions, mm/s^3 (or mm/frame^3)
- `expression_spread`   mean over coefficients of the std over time of the expression
- `head_pose_error`     mean geodesic angle between head rotations, degrees
- `beat_consistency`    EMAGE's BC: speech onsets against minima of joint speed
- `l1_diversity`, `sample_diversity`   EMAGE's L1div, over a set or across K samples
- `frechet_distance`    between two Gaussians (shared with FID and FVD)
- `frechet_bootstrap`   Frechet distances of resampled groups of rows (clips), any feature
                        size (2048-dim Inception included) through thin factors, in torch

The SMPL-X face landmarks are the 51 static ones (iBUG 17..67: brows, nose, eyes, mouth)
followed by the 17 contour points (iBUG 0..16), as smplx orders them; the lips are static
landmarks 31..50 (iBUG 48..67), `LIP_LANDMARKS`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# SMPL-X static face landmarks of the outer (iBUG 48-59) and inner (60-67) lips.
LIP_LANDMARKS = tuple(range(31, 51))
# SMPL-X static face landmarks of the brows, nose and eyes (iBUG 17..47): they move with the
# head, not with the mouth, so a rigid fit of them removes the head's motion.
UPPER_FACE = tuple(range(0, 31))
# EMAGE's BC joints (SMPL-X order): spine1-3, neck, collars, head, shoulders, elbows, wrists.
EMAGE_UPPER_BODY = (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
# Kinematic chain from the pelvis to the head: pelvis, spine1, spine2, spine3, neck, head.
HEAD_CHAIN = (0, 3, 6, 9, 12, 15)

_MM = {"m": 1000.0, "cm": 10.0, "mm": 1.0}


def _np(x: Any) -> np.ndarray:
    """numpy float64 view of an array-like or a torch tensor (any device)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _mm(units: str) -> float:
    if units not in _MM:
        raise ValueError(f"units={units!r}: use one of {sorted(_MM)} (the unit of the input positions)")
    return _MM[units]


def _points(x: Any, name: str) -> np.ndarray:
    a = _np(x)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"{name} has shape {a.shape}; expected (T, N, 3) points over frames")
    return a


# ------------------------------------------------------------------------------- LME

def lip_points(landmarks: Any, index: Sequence[int] = LIP_LANDMARKS) -> np.ndarray:
    """(T, L, 3) SMPL-X face landmarks (L >= 51, static ones first) -> (T, 20, 3) lip points."""
    a = _points(landmarks, "landmarks")
    if a.shape[1] <= max(index):
        raise ValueError(f"landmarks has {a.shape[1]} points per frame; the lip indices go to {max(index)} "
                         "(pass the SMPL-X face landmarks, 51 static + optional 17 contour)")
    return a[:, list(index)]


def lip_landmark_error(pred: Any, gt: Any, units: str = "m", reduce: str = "mean") -> float:
    """LME in mm between predicted and ground-truth lip points.

    pred, gt: (T, N, 3) the same N lip points per frame (e.g. `lip_points(...)`), in `units`.
    reduce: "mean" averages the point distances over points and frames (VLOGGER's LME);
    "max" takes each frame's largest point distance and averages over frames (FaceFormer's
    lip vertex error). Frames with a NaN in either input are skipped; NaN if none is left.
    """
    p, g = _points(pred, "pred"), _points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} must have the same shape (T, N, 3)")
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce={reduce!r}: use 'mean' or 'max'")
    d = np.linalg.norm(p - g, axis=-1) * _mm(units)  # (T, N)
    ok = np.isfinite(d).all(axis=1)
    if not ok.any():
        return float("nan")
    d = d[ok]
    return float(d.mean() if reduce == "mean" else d.max(axis=1).mean())


def head_aligned(pred: Any, gt: Any, index: Sequence[int] = UPPER_FACE) -> np.ndarray:
    """Per frame, `pred` moved by the rigid transform (rotation + translation, no scale;
    Kabsch) that best maps its `index` points onto gt's: what is left is the face's own
    motion (mouth, expression), not the head's pose or place.

    pred, gt: (T, L, 3) SMPL-X face landmarks (the 51 static ones first), the same L.
    Returns (T, L, 3); a frame with a NaN among either's `index` points is all NaN.
    """
    p, g = _points(pred, "pred"), _points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} must have the same shape (T, L, 3)")
    idx = list(index)
    if len(idx) < 3 or p.shape[1] <= max(idx):
        raise ValueError(f"index needs >= 3 points below {p.shape[1]} (got {len(idx)} up to {max(idx)})")
    a, b = p[:, idx], g[:, idx]
    ok = np.isfinite(a).all(axis=(1, 2)) & np.isfinite(b).all(axis=(1, 2))
    out = np.full_like(p, np.nan)
    if not ok.any():
        return out
    a, b = a[ok], b[ok]
    ma, mb = a.mean(1, keepdims=True), b.mean(1, keepdims=True)
    u, _, vt = np.linalg.svd(np.swapaxes(a - ma, 1, 2) @ (b - mb))
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= d[:, None]  # a reflection is not a head motion
    rot = u @ vt  # (T, 3, 3) for row vectors: x -> x @ rot
    out[ok] = (p[ok] - ma) @ rot + mb
    return out


# ---------------------------------------------------------------------------- jitter

def jerk(joints: Any, fps: float, units: str = "m", per: str = "s") -> np.ndarray:
    """(T, J, 3) joint positions -> (T-3, J) magnitude of the third derivative.

    Forward third difference x[t+3] - 3x[t+2] + 3x[t+1] - x[t], in mm/s^3 (per="s", times
    fps^3) or mm/frame^3 (per="frame"). Exact for a cubic trajectory.
    """
    x = _points(joints, "joints")
    if per not in ("s", "frame"):
        raise ValueError(f"per={per!r}: use 's' (mm/s^3) or 'frame' (mm/frame^3)")
    if fps <= 0:
        raise ValueError(f"fps={fps}: must be > 0")
    d3 = x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]
    scale = _mm(units) * (fps ** 3 if per == "s" else 1.0)
    return np.linalg.norm(d3, axis=-1) * scale


def jitter(joints: Any, fps: float, units: str = "m", per: str = "s") -> float:
    """Mean |third derivative| of joint positions (mm/s^3; see `jerk`). joints: (T, J, 3).

    NaN frames are skipped; NaN for fewer than 4 frames.
    """
    j = jerk(joints, fps, units, per)
    j = j[np.isfinite(j)]
    return float(j.mean()) if j.size else float("nan")


# ------------------------------------------------------------------------ expression

def expression_spread(expression: Any) -> float:
    """Mean over coefficients of the standard deviation over time. expression: (T, E).

    A clip whose face never moves scores 0; higher is more varied expression (VLOGGER's
    "expression" column reads this way). NaN rows are skipped.
    """
    e = _np(expression)
    if e.ndim != 2:
        raise ValueError(f"expression has shape {e.shape}; expected (T, E)")
    e = e[np.isfinite(e).all(axis=1)]
    if len(e) < 2:
        return float("nan")
    return float(e.std(axis=0).mean())


# ------------------------------------------------------------------------- head pose

def axis_angle_to_matrix(aa: Any) -> np.ndarray:
    """(..., 3) axis-angle (radians) -> (..., 3, 3) rotation matrices (Rodrigues)."""
    v = _np(aa)
    theta = np.linalg.norm(v, axis=-1, keepdims=True)
    k = v / np.where(theta > 1e-12, theta, 1.0)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(*v.shape[:-1], 3, 3)
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + s * K + (1 - c) * (K @ K)


def head_rotation(global_orient: Any, body_pose: Any) -> np.ndarray:
    """World rotation of the SMPL-X head joint: (T, 3) global_orient, (T, 63) body_pose
    (axis-angle of joints 1..21) -> (T, 3, 3), the product along pelvis-spine-neck-head."""
    go, bp = _np(global_orient), _np(body_pose)
    if go.ndim != 2 or go.shape[1] != 3 or bp.ndim != 2 or bp.shape[1] != 63 or len(go) != len(bp):
        raise ValueError(f"global_orient {go.shape} and body_pose {bp.shape}: expected (T, 3) and (T, 63)")
    r = axis_angle_to_matrix(go)
    for j in HEAD_CHAIN[1:]:
        r = r @ axis_angle_to_matrix(bp[:, 3 * (j - 1):3 * j])
    return r


def _rotations(x: Any, name: str) -> np.ndarray:
    a = _np(x)
    if a.ndim == 2 and a.shape[1] == 3:
        return axis_angle_to_matrix(a)
    if a.ndim == 3 and a.shape[1:] == (3, 3):
        return a
    raise ValueError(f"{name} has shape {a.shape}; expected (T, 3) axis-angle or (T, 3, 3) rotation matrices")


def rotation_angle_deg(pred: Any, gt: Any) -> np.ndarray:
    """(T,) geodesic angle in degrees between two rotation sequences ((T,3) or (T,3,3))."""
    p, g = _rotations(pred, "pred"), _rotations(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} must have the same number of frames")
    rel = np.swapaxes(p, -1, -2) @ g
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def head_pose_error(pred: Any, gt: Any) -> float:
    """Mean geodesic angle (degrees) between predicted and true head rotations.

    pred, gt: (T, 3) axis-angle or (T, 3, 3) matrices (e.g. `head_rotation(...)`, or
    `annotate.head_pose.matrix_from_euler` of the landmark head pose). NaN frames skipped.
    """
    a = rotation_angle_deg(pred, gt)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


# ----------------------------------------------------------------- beat consistency

def audio_onsets(audio: Any, sample_rate: int, hop_length: int = 512) -> np.ndarray:
    """Speech onset times (s) as EMAGE finds them: librosa.onset.onset_detect on the
    waveform, hop 512 samples. audio: (N,) float mono."""
    import librosa

    y = _np(audio).astype(np.float32)
    if y.ndim != 1:
        raise ValueError(f"audio has shape {y.shape}; expected (N,) mono samples")
    if len(y) < 2 * hop_length:
        return np.zeros(0)
    return np.asarray(librosa.onset.onset_detect(y=y, sr=sample_rate, hop_length=hop_length, units="time"))


def joint_speed(joints: Any, fps: float) -> np.ndarray:
    """(T, J, 3) -> (T, J) speed, EMAGE's way: forward difference at the first frame,
    central differences inside, backward at the last (position units per second)."""
    x = _points(joints, "joints")
    if len(x) < 2:
        raise ValueError(f"joints has {len(x)} frames; speed needs at least 2")
    dt = 1.0 / fps
    v = np.concatenate([(x[1:2] - x[:1]) / dt, (x[2:] - x[:-2]) / (2 * dt), (x[-1:] - x[-2:-1]) / dt])
    return np.linalg.norm(v, axis=-1)


def motion_beats(joints: Any, fps: float, joint_index: Sequence[int] = EMAGE_UPPER_BODY,
                 mean_speed: Any = None, order: int = 7, threshold: float = 0.3) -> list[np.ndarray]:
    """Per joint in joint_index, the times (s) of its motion beats: local minima of its speed
    (scipy argrelextrema, `order` frames each side) where the speed, divided by
    `mean_speed[j]`, is above `threshold` (a pause is not a beat). mean_speed: (J,) the
    training set's mean speed per joint (EMAGE's avg_vel); None uses this clip's own."""
    from scipy.signal import argrelextrema

    speed = joint_speed(joints, fps)
    if max(joint_index) >= speed.shape[1]:
        raise ValueError(f"joint_index goes to {max(joint_index)} but joints has {speed.shape[1]} joints")
    norm = speed.mean(axis=0) if mean_speed is None else _np(mean_speed)
    speed = speed / np.where(norm > 0, norm, 1.0)
    out = []
    for j in joint_index:
        s = speed[:, j]
        idx = argrelextrema(s, np.less, order=order)[0]
        out.append(idx[s[idx] > threshold] / fps)
    return out


def gahr(motion_times: Any, onset_times: Any, sigma: float = 0.3) -> float:
    """EMAGE's alignment score: mean over onsets of exp(-d^2 / 2 sigma^2), d = distance (s)
    to the nearest motion beat (0 for an onset when there is no beat). NaN without onsets."""
    a, b = _np(motion_times).ravel(), _np(onset_times).ravel()
    if b.size == 0:
        return float("nan")
    if a.size == 0:
        return 0.0
    d = np.abs(b[:, None] - a[None, :]).min(axis=1)
    return float(np.exp(-d ** 2 / (2 * sigma ** 2)).mean())


def beat_consistency(joints: Any, fps: float, audio: Any = None, sample_rate: int = 16000, onsets: Any = None,
                     joint_index: Sequence[int] = EMAGE_UPPER_BODY, mean_speed: Any = None, sigma: float = 0.3,
                     order: int = 7, threshold: float = 0.3, margin_s: float = 0.0) -> float:
    """Beat consistency (BC) between speech onsets and motion beats, as EMAGE computes it.

    joints: (T, J, 3) SMPL-X joints (J >= 22) at `fps`; audio: (N,) mono at sample_rate, or
    onsets: onset times in seconds (then audio is not needed). EMAGE's settings: sigma 0.3 s,
    order 7, threshold 0.3 on speed / mean speed, its upper-body joints; BC is `gahr` per
    joint, averaged over joints. margin_s drops that much from both ends of motion and audio
    first (EMAGE drops 2 s; its times then count from the cut). Higher is better, in [0, 1].
    """
    x = _points(joints, "joints")
    if onsets is None and audio is None:
        raise ValueError("beat_consistency needs `audio` (with sample_rate) or `onsets` (seconds)")
    m = int(round(margin_s * fps))
    if m:
        x = x[m:len(x) - m]
    if len(x) < 2 * order + 1:
        return float("nan")
    duration = len(x) / fps
    if onsets is None:
        y = _np(audio)
        a0 = int(round(margin_s * sample_rate))
        onset_t = audio_onsets(y[a0:a0 + int(round(duration * sample_rate))], sample_rate)
    else:
        onset_t = _np(onsets).ravel() - margin_s
        onset_t = onset_t[(onset_t >= 0) & (onset_t <= duration)]
    beats = motion_beats(x, fps, joint_index, mean_speed, order, threshold)
    return float(np.mean([gahr(b, onset_t, sigma) for b in beats]))


# ------------------------------------------------------------------------- diversity

def l1_diversity(x: Any) -> float:
    """EMAGE's L1div: mean over the N items of the L1 distance (summed over features) to
    the items' mean. x: (N, ...) items (EMAGE passes frames of joints, (T, J*3))."""
    a = _np(x)
    if a.ndim < 2 or len(a) < 2:
        raise ValueError(f"x has shape {a.shape}; expected (N >= 2, ...) items")
    a = a.reshape(len(a), -1)
    return float(np.abs(a - a.mean(axis=0)).sum() / len(a))


def sample_diversity(samples: Any) -> float:
    """Diversity across K samples of one input: per frame, `l1_diversity` over the K
    samples' frame features, averaged over frames. samples: (K >= 2, T, ...)."""
    a = _np(samples)
    if a.ndim < 2 or len(a) < 2:
        raise ValueError(f"samples has shape {a.shape}; expected (K >= 2, T, ...)")
    a = a.reshape(a.shape[0], a.shape[1], -1)
    return float(np.abs(a - a.mean(axis=0)).sum(axis=(0, 2)).mean() / a.shape[0])


# ---------------------------------------------------------------------------- Frechet

def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and covariance (D, D) (unbiased, as FID uses)."""
    f = _np(features)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features has shape {f.shape}; expected (N >= 2, D)")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    mu: (D,), sigma: (D, D) symmetric positive semi-definite. tr((S1 S2)^(1/2)) is the sum
    of the square roots of the eigenvalues of S1 S2 (real and >= 0 for PSD S1, S2; tiny
    negative or imaginary round-off is dropped), as torchmetrics computes it.
    """
    m1, m2 = np.atleast_1d(_np(mu1)), np.atleast_1d(_np(mu2))
    s1, s2 = np.atleast_2d(_np(sigma1)), np.atleast_2d(_np(sigma2))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"mu1 {m1.shape}, mu2 {m2.shape}, sigma1 {s1.shape}, sigma2 {s2.shape}: "
                         "expected (D,), (D,), (D, D), (D, D)")
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0.0, None)).sum()
    diff = m1 - m2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt, 0.0))


def frechet_distance_features(a: Any, b: Any) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (N, D) and (M, D)."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def _tensor(x: Any, device: str):
    import torch

    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), device=device)


def _factor(x, w, dim: int):
    """Weighted mean (D,), trace of the weighted unbiased covariance and a thin factor A
    (D, r) with cov = A A^T, r = min(rows kept, D). x (N, D), w (N,) counts (torch)."""
    import torch

    keep = w > 0
    x, w = x[keep], w[keep]
    n = w.sum()
    mu = (w[:, None] * x).sum(0) / n
    xc = (x - mu) * torch.sqrt(w / (n - 1))[:, None]
    if len(xc) <= dim:
        return mu, (xc * xc).sum(), xc.T
    cov = xc.T @ xc
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) == 0:
        return mu, torch.diagonal(cov).sum(), chol
    vals, vecs = torch.linalg.eigh(cov)
    return mu, torch.diagonal(cov).sum(), vecs * torch.sqrt(torch.clamp(vals, min=0))[None]


def frechet_distance_weighted(a: Any, b: Any, wa: Any = None, wb: Any = None, device: str = "cpu") -> float:
    """Frechet distance between the Gaussians fitted to rows of a (N, D) and b (M, D), row i
    counted wa[i] (wb[i]) times (bootstrap multiplicities; None: once each): the same number
    as `frechet_distance_features` on the rows repeated, for any D.

    tr((S1 S2)^(1/2)) is computed as the sum of the singular values of A1^T A2, with
    S = A A^T thin factors (the centred rows when there are fewer rows than features, else a
    Cholesky factor): r1 x r2 instead of D x D, so 2048-dim Inception features of a few
    hundred frames cost milliseconds. float64 torch on `device`."""
    import torch

    xa, xb = (_tensor(v, device) for v in (a, b))
    if xa.ndim != 2 or xb.ndim != 2 or xa.shape[1] != xb.shape[1]:
        raise ValueError(f"a {tuple(xa.shape)} and b {tuple(xb.shape)}: expected (N, D) and (M, D)")
    ws = [torch.ones(len(x), dtype=torch.float64, device=device) if w is None else _tensor(w, device)
          for x, w in ((xa, wa), (xb, wb))]
    if any(float(w.sum()) < 2 for w in ws) or any(len(w) != len(x) for w, x in zip(ws, (xa, xb))):
        raise ValueError("each side needs weights of its own length summing to >= 2 rows")
    d = xa.shape[1]
    m1, t1, f1 = _factor(xa, ws[0], d)
    m2, t2, f2 = _factor(xb, ws[1], d)
    c = f1.T @ f2
    g = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
    tr_sqrt = torch.sqrt(torch.clamp(torch.linalg.eigvalsh(g), min=0)).sum()
    diff = m1 - m2
    return float(torch.clamp(diff @ diff + t1 + t2 - 2 * tr_sqrt, min=0))


def frechet_bootstrap(fake: Sequence[Any], real: Sequence[Any], n_boot: int, rng: np.random.Generator,
                      device: str = "cpu") -> np.ndarray:
    """Frechet distances of `n_boot` bootstrap resamples of groups (clips): group i has its
    generated rows fake[i] (n_i, D) and real rows real[i] (m_i, D); each resample draws the
    groups with replacement and weights every row by its group's count (one draw per
    resample for both sides, so a clip's real and generated frames stay paired).
    Returns (n_boot,); NaN where a side has fewer than 2 rows."""
    import torch

    if len(fake) != len(real) or not len(fake):
        raise ValueError(f"fake ({len(fake)}) and real ({len(real)}) need one entry per group, at least one")
    gid_f = np.concatenate([np.full(len(f), i) for i, f in enumerate(fake)])
    gid_r = np.concatenate([np.full(len(r), i) for i, r in enumerate(real)])
    xf = _tensor(np.concatenate([_np(f) for f in fake]), device)
    xr = _tensor(np.concatenate([_np(r) for r in real]), device)
    out = np.full(n_boot, np.nan)
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, len(fake), len(fake)), minlength=len(fake)).astype(np.float64)
        wf, wr = counts[gid_f], counts[gid_r]
        if wf.sum() >= 2 and wr.sum() >= 2:
            out[b] = frechet_distance_weighted(xf, xr, wf, wr, device)
    return out


__all__ = [
    "LIP_LANDMARKS", "UPPER_FACE", "EMAGE_UPPER_BODY", "HEAD_CHAIN", "lip_points", "lip_landmark_error",
    "head_aligned", "jerk", "jitter",
    "expression_spread", "axis_angle_to_matrix", "head_rotation", "rotation_angle_deg", "head_pose_error",
    "audio_onsets", "joint_speed", "motion_beats", "gahr", "beat_consistency", "l1_diversity",
    "sample_diversity", "feature_statistics", "frechet_distance", "frechet_distance_features",
    "frechet_distance_weighted", "frechet_bootstrap",
]
