"""The pose landmarks steadied over time for the shape stage of a noisy clip.

A bone's length is one clip parameter, its tilt in depth one per frame: a frame whose noise shortens
the bone in the image is explained by tilting it, one whose noise lengthens it past its length only
by a longer bone, so with noise the arms come out long (issue 16's far_4px, 2.5 m at 4 px: the arm
bones 2-3 % long against the shoulders and the eyes, whose image span 2D fixes, at seeds 1, 2 and 4;
the same clips with the pose's noise at 1 px: worst bone 1.3-1.4 % against 2.3-2.5 %, z's unit set to
the truth's in both). The shape stage, where the clip's betas are decided, reads the pose
points through a local quadratic over a few frames (Savitzky-Golay: the white noise's sd x 0.58 at 7
frames, a stroke's curvature kept), the later stages the landmarks as they are.
"""

from __future__ import annotations

import numpy as np
import torch

MIN_SEEN = 5  # frames of a window that must see the point for its quadratic (else the landmark as it is)


def steadied(observed: torch.Tensor, seen: torch.Tensor, rows: np.ndarray, half: int,
             frames: torch.Tensor | None = None) -> torch.Tensor:
    """observed (T,P,2) at `frames` (N,) (all when None) with points `rows` (P,) bool replaced, where seen
    (T,P) bool, by the least-squares quadratic over the frames t-half..t+half that see them evaluated at t;
    the other points, frames with under MIN_SEEN seen in the window, and half 0 as they are."""
    T = observed.shape[0]
    at = np.arange(T) if frames is None else frames.cpu().numpy()
    if half <= 0 or not rows.any():
        return observed[torch.as_tensor(at, device=observed.device)]
    pick = torch.as_tensor(np.flatnonzero(rows), device=observed.device)
    y = observed[:, pick].double().cpu().numpy()  # (T,R,2)
    w = seen[:, pick].double().cpu().numpy()  # (T,R)
    y = np.where(w[..., None] > 0, np.nan_to_num(y), 0.0)
    offsets = np.arange(-half, half + 1)
    window = at[:, None] + offsets  # (N,W)
    index = np.clip(window, 0, T - 1)
    ww = w[index] * ((window >= 0) & (window < T))[..., None]  # (N,W,R)
    basis = np.stack([np.ones_like(offsets), offsets, offsets ** 2], -1).astype(float)  # (W,3)
    outer = (basis[:, :, None] * basis[:, None, :]).reshape(len(offsets), 9)
    normal = (ww.transpose(0, 2, 1) @ outer).reshape(*ww.shape[::2], 3, 3)  # (N,R,3,3)
    moment = np.einsum("twrc,wi->tric", ww[..., None] * y[index], basis, optimize=True)  # (N,R,3,2)
    enough = (ww.sum(1) >= MIN_SEEN) & (w[at] > 0)
    normal[~enough] = np.eye(3)
    coef = np.linalg.solve(normal, moment)  # (N,R,3,2): the value at offset 0 is the constant term
    out = observed[torch.as_tensor(at, device=observed.device)].clone()
    fitted = torch.as_tensor(coef[..., 0, :], dtype=observed.dtype, device=observed.device)
    keep = torch.as_tensor(enough, device=observed.device)[..., None]
    out[:, pick] = torch.where(keep, fitted, out[:, pick])
    return out
