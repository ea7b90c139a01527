"""Small batched solvers for the clip fitter: damped Gauss-Newton steps, block-PCG, Viterbi.

A clip objective is (almost) a sum of per-frame problems with ~100 unknowns each, so a
Levenberg-Marquardt step is one batched (T,D,D) Cholesky solve: every frame gets its own
damping and converges in ~10 steps, where first-order methods need hundreds of
evaluations. The temporal terms couple neighbouring frames; their normal equations are
block-banded, solved by a block-banded Cholesky (or, where float rounding leaves them not
positive definite, by conjugate gradients preconditioned with the per-frame blocks).
"""

from __future__ import annotations

from typing import Callable

import torch


def positive_cholesky(A: torch.Tensor) -> torch.Tensor:
    """Cholesky factors of (T,D,D) blocks that should be positive definite. A block that is not
    (a parameter no data or prior reaches in that frame, float32 rounding) is shifted along its
    diagonal until it is: first by its largest diagonal entry, then past Gershgorin's bound."""
    L, info = torch.linalg.cholesky_ex(A)
    bad = info > 0
    if not bool(bad.any()):
        return L
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    d = A.diagonal(dim1=-2, dim2=-1)
    A = torch.where(bad[:, None, None], A + eye * (d.abs().amax(-1) + 1.0)[:, None, None], A)
    L, info = torch.linalg.cholesky_ex(A)
    still = info > 0
    if bool(still.any()):
        off_diagonal = A.abs().sum(-1) - A.diagonal(dim1=-2, dim2=-1).abs()
        shift = (off_diagonal - A.diagonal(dim1=-2, dim2=-1)).amax(-1).clamp(min=0) + 1.0
        A = torch.where(still[:, None, None], A + eye * shift[:, None, None], A)
        L, info = torch.linalg.cholesky_ex(A)
        if bool((info > 0).any()):  # only NaN or inf gets here
            raise ValueError("the fit's normal equations are not finite (NaN or inf in the landmarks or the model)")
    return L


def damped_solve(H: torch.Tensor, g: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Levenberg-Marquardt step -(H + lam diag(H))^-1 g per frame. H (T,D,D), g (T,D), lam (T,).
    A frame whose matrix is not positive definite (rare) gets a step closer to the gradient's."""
    d = H.diagonal(dim1=-2, dim2=-1)
    L = positive_cholesky(H + torch.diag_embed(lam[:, None] * d + 1e-6 * (1 + d)))
    return -torch.cholesky_solve(g[..., None], L)[..., 0]


def block_pcg(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    precond_chol: torch.Tensor,
    iterations: int = 30,
    rtol: float = 1e-4,
) -> torch.Tensor:
    """Solve A x = b for (T,D) vectors, A given by matvec, preconditioned with the Cholesky
    factors (T,D,D) of its diagonal blocks."""
    def prec(r):
        return torch.cholesky_solve(r[..., None], precond_chol)[..., 0]

    x = torch.zeros_like(b)
    r = b.clone()
    z = prec(r)
    p = z.clone()
    r_dot_z = (r * z).sum()
    b_norm = float(b.norm()) + 1e-30
    for _ in range(iterations):
        a_times_p = matvec(p)
        alpha = r_dot_z / (p * a_times_p).sum().clamp(min=1e-30)
        x = x + alpha * p
        r = r - alpha * a_times_p
        if float(r.norm()) < rtol * b_norm:
            break
        z = prec(r)
        rz_new = (r * z).sum()
        p = z + (rz_new / r_dot_z) * p
        r_dot_z = rz_new
    return x


def banded_cholesky(diag: torch.Tensor, next_: torch.Tensor, skip: torch.Tensor,
                    workspace: Callable[[str, tuple[int, ...], torch.Tensor], torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Cholesky factor of a symmetric block-pentadiagonal matrix, or None where it is not
    positive definite (float rounding on a nearly singular system: the caller falls back).

    diag (T,D,D) the blocks A[t,t], next_ (T-1,D,D) A[t,t+1], skip (T-2,D,D) A[t,t+2].
    Returns (lower (T,D,D) L[t,t], right (T,D,2D) [L[t+1,t]^T | L[t+2,t]^T], zero past the last
    frame): one pass over the frames, about 9 D^3 flops a frame (the temporal solve's exact
    Gauss-Newton step at about a quarter of 30 block-PCG iterations' cost, and no iteration cap
    to stop short of it). Right-looking: frame t's one triangular solve gives both of its
    off-diagonal blocks, and three in-place products take them out of what frames t+1 and t+2
    have left; 5 ops a frame where the frame-by-frame blocks took 13 (the loop is op-bound at
    D ~ 112: 1.5x less CPU on 250 frames).

    workspace: FlatSMPLX.workspace, where the factors and the Schur complements are kept (the same
    memory each call, valid until the next: ~50 MB fresh each step page-faults), else fresh."""
    frames, dim = diag.shape[0], diag.shape[1]

    def buffer(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return diag.new_empty(shape) if workspace is None else workspace(name, shape, diag)

    schur = buffer("banded_schur", diag.shape).copy_(diag)  # the diagonal blocks less the earlier frames' share
    lower = buffer("banded_lower", diag.shape)
    right = buffer("banded_right", (frames, dim, 2 * dim))  # [A[t,t+1] | A[t,t+2]] less the earlier frames' share
    right[:-1, :, :dim], right[-1:, :, :dim] = next_, 0
    right[:-2, :, dim:], right[-2:, :, dim:] = skip, 0
    info = torch.zeros(frames, dtype=torch.int32, device=diag.device)
    for t in range(frames):
        # (in place, each result in LAPACK's column-major layout as the transpose of a row-major block:
        # no copies back, where a plain call's result copied into the buffers cost as much as the solve)
        torch.linalg.cholesky_ex(schur[t].mT, upper=True, out=(lower[t].mT, info[t]))
        torch.linalg.solve_triangular(lower[t], right[t], upper=False, out=right[t])
        near, far = right[t, :, :dim], right[t, :, dim:]
        if t + 1 < frames:
            schur[t + 1].addmm_(near.T, near, alpha=-1)
            right[t + 1, :, :dim].addmm_(near.T, far, alpha=-1)
        if t + 2 < frames:
            schur[t + 2].addmm_(far.T, far, alpha=-1)
    # (checked once at the end: no device sync per frame; a NaN or inf anywhere in a factor reaches a
    # later diagonal, every block's entries being summed into its own row's diagonal and the next frames')
    if int(info.sum()) > 0 or not bool(torch.isfinite(lower.diagonal(dim1=-2, dim2=-1)).all()):
        return None
    return lower, right


def banded_solve(factors: tuple[torch.Tensor, torch.Tensor], b: torch.Tensor) -> torch.Tensor:
    """Solve A x = b (b (T,D)) with banded_cholesky's factors of A: forward, each frame's solved part
    taken out of the next two frames' right-hand side in one product; back, the same transposed."""
    lower, right = factors
    frames, dim = b.shape
    x = b.new_zeros(frames + 2, dim)  # two zero frames past the end: each frame's update has both neighbours
    x[:frames] = b
    for t in range(frames):  # L y = b
        torch.linalg.solve_triangular(lower[t], x[t, :, None], upper=False, out=x[t, :, None])
        x[t + 1:t + 3].view(-1).addmv_(right[t].T, x[t], alpha=-1)
    x[frames:] = 0
    for t in range(frames - 1, -1, -1):  # L^T x = y
        x[t].addmv_(right[t], x[t + 1:t + 3].view(-1), alpha=-1)
        torch.linalg.solve_triangular(lower[t].T, x[t, :, None], upper=True, out=x[t, :, None])
    return x[:frames]


def second_difference(x: torch.Tensor) -> torch.Tensor:
    """(T,...) -> (T-2,...): x[t+1] - 2 x[t] + x[t-1]."""
    return x[2:] - 2 * x[1:-1] + x[:-2]


def second_difference_t(a: torch.Tensor) -> torch.Tensor:
    """Adjoint of second_difference: (T-2,...) -> (T,...)."""
    pad = torch.zeros_like(a[:1])
    return torch.cat([a, pad, pad]) - 2 * torch.cat([pad, a, pad]) + torch.cat([pad, pad, a])


def viterbi(unary: torch.Tensor, pose: torch.Tensor, weight: float) -> torch.Tensor:
    """Pick one of M candidates per frame minimising sum_t unary[m_t, t] + weight |pose_t - pose_t-1|^2.

    unary (M,T) each candidate's cost; pose (M,T,J) the candidates' pose parameters. Returns
    (T,) candidate indices of the cheapest sequence (exact dynamic programming).
    """
    M, T = unary.shape
    cost = unary[:, 0].clone()
    back = torch.zeros(T, M, dtype=torch.long, device=unary.device)
    for t in range(1, T):
        transition = weight * ((pose[:, None, t] - pose[None, :, t - 1]) ** 2).sum(-1)  # (M now, M before)
        total = cost[None, :] + transition
        back[t] = total.argmin(1)
        cost = total.min(1).values + unary[:, t]
    path = torch.zeros(T, dtype=torch.long, device=unary.device)
    path[-1] = cost.argmin()
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
