"""Pure geometry on batched tensors: pinhole projection, axis-angle rotations, Procrustes.

Shapes are in each docstring; leading dimensions broadcast. Functions take torch tensors;
the Procrustes helpers also take numpy arrays and then return numpy.
"""

from __future__ import annotations

import numpy as np
import torch

MIN_DEPTH = 1e-3  # points closer than this (or behind the camera) project as if at this depth


def project_points(points: torch.Tensor, focal: torch.Tensor | float, cx: torch.Tensor | float,
                   cy: torch.Tensor | float) -> torch.Tensor:
    """OpenCV pinhole at the origin (x right, y down, z forward): points (...,N,3) -> pixels (...,N,2).

    focal, cx, cy: scalars, or tensors of shape (...) matching the leading dimensions of
    points (one camera per frame). u = f x / z + cx, v = f y / z + cy, with z clamped to MIN_DEPTH.
    """
    f, cx, cy = (torch.as_tensor(a, dtype=points.dtype, device=points.device) for a in (focal, cx, cy))
    z = points[..., 2:3].clamp(min=MIN_DEPTH)
    return points[..., :2] / z * f[..., None, None] + torch.stack([cx, cy], -1)[..., None, :]


def skew(w: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices: w (...,3) -> (...,3,3) with skew(w) @ v = w x v."""
    ax, ay, az = w.unbind(-1)
    zero = torch.zeros_like(ax)
    return torch.stack([zero, -az, ay, az, zero, -ax, -ay, ax, zero], -1).reshape(*w.shape[:-1], 3, 3)


def rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle (...,3) -> rotation matrices (...,3,3); smooth at zero (as smplx's batch_rodrigues)."""
    angle = torch.sqrt((axis_angle * axis_angle).sum(-1, keepdim=True) + 1e-12)
    k = skew(axis_angle / angle)
    s = torch.sin(angle)[..., None]
    c = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + s * k + (1 - c) * (k @ k)


def _as_tensor(a) -> tuple[torch.Tensor, bool]:
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.asarray(a, np.float64)), True
    return a, False


def procrustes_align(pred, gt):
    """pred aligned to gt by the best similarity transform (scale, rotation, translation) per item.

    pred, gt: (...,J,3) tensors or arrays; returns the aligned pred (...,J,3), same type as pred.
    Umeyama's solution (reflections excluded).
    """
    p, was_np = _as_tensor(pred)
    g, _ = _as_tensor(gt)
    g = g.to(p.dtype)
    if p.shape != g.shape or p.shape[-1] != 3:
        raise ValueError(f"procrustes_align: pred {tuple(p.shape)} and gt {tuple(g.shape)} must both be (...,J,3)")
    mp, mg = p.mean(-2, keepdim=True), g.mean(-2, keepdim=True)
    p0, g0 = p - mp, g - mg
    u, s, vt = torch.linalg.svd(p0.transpose(-1, -2) @ g0)
    d = torch.sign(torch.linalg.det(u @ vt))
    sign = torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1)  # (...,3)
    rot = u @ (sign[..., :, None] * vt)
    scale = (s * sign).sum(-1) / (p0 ** 2).sum((-1, -2)).clamp(min=1e-12)
    out = scale[..., None, None] * p0 @ rot + mg
    return out.numpy() if was_np else out


def pa_mpjpe(pred, gt):
    """Procrustes-aligned mean per-joint position error: pred, gt (T,J,3) -> (T,) in gt's units."""
    aligned = procrustes_align(pred, gt)
    a, was_np = _as_tensor(aligned)
    g, _ = _as_tensor(gt)
    err = torch.linalg.norm(a - g.to(a.dtype), dim=-1).mean(-1)
    return err.numpy() if was_np else err
