"""L-BFGS run on every frame of a clip at once, each frame with its own curvature history.

A clip objective is (almost) a sum of per-frame problems: torch's L-BFGS on the sum shares
one history and one step length across all frames, which mixes unrelated curvature and
converges slowly as frames are added. Here the two-loop recursion and the backtracking
(Armijo) line search are done per frame, vectorised over the frames, so each frame
converges at its own pace in one batched evaluation per step. The few coupling terms
(temporal smoothness, the clip's shared shape) enter through the gradient.
"""

from __future__ import annotations

from typing import Callable

import torch


def batched_lbfgs(
    frame_loss: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    iterations: int,
    history: int = 10,
    tolerance: float = 1e-6,
    max_backtracks: int = 8,
) -> tuple[torch.Tensor, int]:
    """Minimise sum_t frame_loss(x)[t] over x (T,D); frame_loss returns (T,) losses.

    Returns the solution and the number of objective evaluations.
    """
    x = x0.detach().clone()
    T, D = x.shape
    evals = 0

    def value_grad(z):
        nonlocal evals
        evals += 1
        z = z.detach().requires_grad_(True)
        f = frame_loss(z)
        (g,) = torch.autograd.grad(f.sum(), z)
        return f.detach(), g

    f, g = value_grad(x)
    S = torch.zeros(history, T, D, dtype=x.dtype, device=x.device)
    Y = torch.zeros_like(S)
    R = torch.zeros(history, T, dtype=x.dtype, device=x.device)  # 1 / (y.s), 0 = unused
    k = 0
    for it in range(iterations):
        q = g.clone()
        n = min(k, history)
        idx = [(k - 1 - i) % history for i in range(n)]  # newest first
        alpha = []
        for i in idx:
            a = R[i] * (S[i] * q).sum(1)
            q = q - a[:, None] * Y[i]
            alpha.append(a)
        # initial inverse-Hessian scale s.y / y.y; without usable curvature (first step, or a
        # frame whose last pair had s.y <= 0) a step of 0.1 along the gradient
        gamma = 0.1 / g.norm(dim=1).clamp(min=1e-8)
        if n:
            last = idx[0]
            yy = (Y[last] * Y[last]).sum(1)
            gamma = torch.where(R[last] > 0, 1.0 / (R[last] * yy).clamp(min=1e-20), gamma)
        r = q * gamma[:, None]
        for i, a in zip(reversed(idx), reversed(alpha)):
            b = R[i] * (Y[i] * r).sum(1)
            r = r + S[i] * (a - b)[:, None]
        d = -r
        gd = (g * d).sum(1)
        bad = gd >= 0  # not a descent direction: fall back to the gradient
        d = torch.where(bad[:, None], -g * gamma[:, None], d)
        gd = (g * d).sum(1)
        # a step length per frame (backtracking Armijo on that frame's share of the objective)
        step = torch.ones(T, dtype=x.dtype, device=x.device)
        ok = torch.zeros(T, dtype=torch.bool, device=x.device)
        with torch.no_grad():
            for _ in range(max_backtracks):
                evals += 1
                ft = frame_loss(x + step[:, None] * d)
                ok = ft <= f + 1e-4 * step * gd
                if bool(ok.all()):
                    break
                step = torch.where(ok, step, step * 0.25)
        step = torch.where(ok, step, torch.zeros_like(step))[:, None]
        x_new = x + step * d
        f_new, g_new = value_grad(x_new)
        s, y = x_new - x, g_new - g
        sy = (s * y).sum(1)
        slot = k % history
        S[slot], Y[slot] = s, y
        R[slot] = torch.where(sy > 1e-10, 1.0 / sy.clamp(min=1e-10), torch.zeros_like(sy))
        k += 1
        change = (f - f_new).abs().max()
        x, f, g = x_new, f_new, g_new
        if float(change) < tolerance * max(1.0, float(f.abs().max())):
            break
    return x.detach(), evals
