"""Small batched solvers for the clip fitter: damped Gauss-Newton steps, block-PCG, Viterbi.

A clip objective is (almost) a sum of per-frame problems with ~100 unknowns each, so a
Levenberg-Marquardt step is one batched (T,D,D) Cholesky solve: every frame gets its own
damping and converges in ~10 steps, where first-order methods need hundreds of
evaluations. The temporal terms couple neighbouring frames; their normal equations are
block-banded, solved by conjugate gradients preconditioned with the per-frame blocks.
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


def banded_cholesky(diag: torch.Tensor, next_: torch.Tensor, skip: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Cholesky factor of a symmetric block-pentadiagonal matrix, or None where it is not
    positive definite (float rounding on a nearly singular system: the caller falls back).

    diag (T,D,D) the blocks A[t,t], next_ (T-1,D,D) A[t,t+1], skip (T-2,D,D) A[t,t+2].
    Returns (L0 (T,D,D) L[t,t], L1 (T-1,D,D) L[t+1,t], L2 (T-2,D,D) L[t+2,t]): one pass over the
    frames, about 8 D^3 flops a frame (the temporal solve's exact Gauss-Newton step at about a
    quarter of 30 block-PCG iterations' cost, and no iteration cap to stop short of it)."""
    frames = diag.shape[0]
    factor0, factor1, factor2 = torch.empty_like(diag), torch.empty_like(next_), torch.empty_like(skip)
    failed = torch.zeros((), dtype=torch.int32, device=diag.device)
    for t in range(frames):
        block = diag[t]
        if t >= 2:  # L[t,t-2] = A[t,t-2] L[t-2,t-2]^-T
            lower2 = torch.linalg.solve_triangular(factor0[t - 2], skip[t - 2], upper=False).T
            factor2[t - 2] = lower2
            block = block - lower2 @ lower2.T
        if t >= 1:  # L[t,t-1] = (A[t,t-1] - L[t,t-2] L[t-1,t-2]^T) L[t-1,t-1]^-T
            rhs = next_[t - 1] if t < 2 else next_[t - 1] - factor1[t - 2] @ lower2.T
            lower1 = torch.linalg.solve_triangular(factor0[t - 1], rhs, upper=False).T
            factor1[t - 1] = lower1
            block = block - lower1 @ lower1.T
        factor0[t], info = torch.linalg.cholesky_ex(block)
        failed = failed + info  # checked once at the end (no device sync per frame)
    if int(failed) > 0 or not bool(torch.isfinite(factor0).all()):
        return None
    return factor0, factor1, factor2


def banded_solve(factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], b: torch.Tensor) -> torch.Tensor:
    """Solve A x = b (b (T,D)) with banded_cholesky's factors of A."""
    factor0, factor1, factor2 = factors
    frames = b.shape[0]
    y = torch.empty_like(b)
    for t in range(frames):  # L y = b
        rhs = b[t]
        if t >= 1:
            rhs = rhs - factor1[t - 1] @ y[t - 1]
        if t >= 2:
            rhs = rhs - factor2[t - 2] @ y[t - 2]
        y[t] = torch.linalg.solve_triangular(factor0[t], rhs[:, None], upper=False)[:, 0]
    x = torch.empty_like(b)
    for t in range(frames - 1, -1, -1):  # L^T x = y
        rhs = y[t]
        if t + 1 < frames:
            rhs = rhs - factor1[t].T @ x[t + 1]
        if t + 2 < frames:
            rhs = rhs - factor2[t].T @ x[t + 2]
        x[t] = torch.linalg.solve_triangular(factor0[t].T, rhs[:, None], upper=True)[:, 0]
    return x


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
