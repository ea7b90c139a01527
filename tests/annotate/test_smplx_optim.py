"""The fitter's solvers on small problems with known answers: damped Gauss-Newton steps,
block-preconditioned CG, the Viterbi pick, the second difference and its adjoint."""

import itertools

import torch

from annotate.smplx_optim import block_pcg, damped_solve, second_difference, second_difference_t, viterbi


def spd(batch: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, dim, dim, generator=g, dtype=torch.float64)
    return a @ a.transpose(1, 2) + 0.5 * torch.eye(dim, dtype=torch.float64)


def test_damped_solve_is_the_levenberg_marquardt_step():
    H = spd(4, 5, 0)
    g = torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lam = torch.tensor([0.0, 1e-3, 1.0, 100.0], dtype=torch.float64)
    step = damped_solve(H, g, lam)
    d = H.diagonal(dim1=-2, dim2=-1)
    A = H + torch.diag_embed(lam[:, None] * d + 1e-6 * (1 + d))
    assert torch.allclose(step, -torch.linalg.solve(A, g[..., None])[..., 0], atol=1e-10)
    # heavier damping: shorter steps, turning toward the (scaled) gradient
    assert step[3].norm() < step[2].norm() < step[0].norm()


def test_damped_solve_survives_an_indefinite_hessian():
    H = spd(2, 4, 2)
    H[1] = -H[1]  # not positive definite: that frame falls back to a descent step
    g = torch.ones(2, 4, dtype=torch.float64)
    step = damped_solve(H, g, torch.full((2,), 1e-3, dtype=torch.float64))
    assert torch.isfinite(step).all()
    assert float((step[1] * g[1]).sum()) < 0  # still downhill
    good = -torch.linalg.solve(H[0] + torch.diag_embed(1e-3 * H[0].diagonal() + 1e-6 * (1 + H[0].diagonal())), g[0])
    assert torch.allclose(step[0], good, atol=1e-10)


def test_block_pcg_solves_a_block_banded_system():
    T, D = 7, 3
    blocks = spd(T, D, 3) + 4 * torch.eye(D, dtype=torch.float64)  # diagonally dominant: positive definite
    off = 0.3 * torch.randn(T - 1, D, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    A = torch.zeros(T * D, T * D, dtype=torch.float64)
    for t in range(T):
        A[t * D:(t + 1) * D, t * D:(t + 1) * D] = blocks[t]
    for t in range(T - 1):
        A[t * D:(t + 1) * D, (t + 1) * D:(t + 2) * D] = off[t]
        A[(t + 1) * D:(t + 2) * D, t * D:(t + 1) * D] = off[t].T
    b = torch.randn(T, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def matvec(v):
        return (A @ v.reshape(-1)).reshape(T, D)

    x = block_pcg(matvec, b, torch.linalg.cholesky(blocks), iterations=100, rtol=1e-12)
    assert torch.allclose(x, torch.linalg.solve(A, b.reshape(-1)).reshape(T, D), atol=1e-9)
    # with exact blocks and no coupling, one preconditioned step is the answer
    x1 = block_pcg(lambda v: (blocks @ v[..., None])[..., 0], b, torch.linalg.cholesky(blocks), iterations=1)
    assert torch.allclose(x1, torch.linalg.solve(blocks, b[..., None])[..., 0], atol=1e-10)


def test_viterbi_matches_brute_force():
    g = torch.Generator().manual_seed(6)
    M, T, J = 3, 6, 2
    unary = torch.rand(M, T, generator=g, dtype=torch.float64)
    pose = torch.randn(M, T, J, generator=g, dtype=torch.float64)
    weight = 0.7

    def cost(path):
        c = sum(float(unary[m, t]) for t, m in enumerate(path))
        return c + sum(weight * float(((pose[path[t], t] - pose[path[t - 1], t - 1]) ** 2).sum())
                       for t in range(1, T))

    best = min(itertools.product(range(M), repeat=T), key=cost)
    assert viterbi(unary, pose, weight).tolist() == list(best)


def test_viterbi_keeps_a_consistent_sequence():
    # candidate 1 is cheaper alone on frame 2 but jumps away in pose: a strong transition cost keeps candidate 0
    unary = torch.tensor([[0.0, 0.0, 1.0, 0.0], [5.0, 5.0, 0.0, 5.0]])
    pose = torch.tensor([[[0.0]] * 4, [[3.0]] * 4])
    assert viterbi(unary, pose, 10.0).tolist() == [0, 0, 0, 0]
    assert viterbi(unary, pose, 0.0).tolist() == [0, 0, 1, 0]


def test_second_difference_and_its_adjoint():
    x = torch.arange(6.0) ** 2
    assert torch.equal(second_difference(x), torch.full((4,), 2.0))
    g = torch.Generator().manual_seed(7)
    a, y = torch.randn(9, 2, generator=g), torch.randn(7, 2, generator=g)
    assert torch.allclose((second_difference(a) * y).sum(), (a * second_difference_t(y)).sum(), atol=1e-5)
