"""The SMPL-X fitter's faster pieces give the same answers as the slow ones they replaced:
the temporal solve's block-banded Cholesky against a dense solve, and the keyframe solver's
per-frame sub-problems (only frames that moved are evaluated again) against the whole batch."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import annotate.smplx_fit as smplx_fit
from annotate.smplx_optim import banded_cholesky, banded_solve
from annotate.smplx_synth import fit_inputs
from mentor.body import load_body_model


def pentadiagonal(frames: int, dim: int, seed: int, shift: float) -> tuple[torch.Tensor, ...]:
    """Random symmetric block-pentadiagonal blocks (diag, next, skip) and the dense matrix."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(frames, dim, dim, generator=g, dtype=torch.float64)
    diag = a @ a.transpose(1, 2) + shift * torch.eye(dim, dtype=torch.float64)
    nxt = 0.5 * torch.randn(frames - 1, dim, dim, generator=g, dtype=torch.float64)
    skip = 0.3 * torch.randn(frames - 2, dim, dim, generator=g, dtype=torch.float64)
    dense = torch.zeros(frames * dim, frames * dim, dtype=torch.float64)

    def put(t, u, block):
        dense[t * dim:(t + 1) * dim, u * dim:(u + 1) * dim] = block
        dense[u * dim:(u + 1) * dim, t * dim:(t + 1) * dim] = block.T

    for t in range(frames):
        dense[t * dim:(t + 1) * dim, t * dim:(t + 1) * dim] = diag[t]
    for t in range(frames - 1):
        put(t, t + 1, nxt[t])
    for t in range(frames - 2):
        put(t, t + 2, skip[t])
    return diag, nxt, skip, dense


@pytest.mark.parametrize("frames", [2, 3, 9])  # (2 and 3: the last frames' blocks past the end)
def test_banded_cholesky_solves_a_block_pentadiagonal_system_exactly(frames):
    diag, nxt, skip, dense = pentadiagonal(frames, 4, seed=0, shift=8.0)
    assert bool((torch.linalg.eigvalsh(dense) > 0).all())  # the premise: positive definite
    b = torch.randn(frames, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    factors = banded_cholesky(diag, nxt, skip)
    assert factors is not None
    x = banded_solve(factors, b)
    expected = torch.linalg.solve(dense, b.reshape(-1)).reshape(frames, 4)
    assert torch.allclose(x, expected, atol=1e-10)
    assert torch.equal(b, torch.randn(frames, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    assert torch.equal(diag, pentadiagonal(frames, 4, seed=0, shift=8.0)[0])  # the inputs left as they were


def test_banded_cholesky_matches_the_dense_factor_in_float32_at_the_fits_size():
    """At the temporal solve's size (112 unknowns a frame) and precision, the factors are the dense
    Cholesky factor's blocks and the solve the dense solve's, to float32 rounding."""
    frames, dim = 6, 112
    diag, nxt, skip, dense = pentadiagonal(frames, dim, seed=3, shift=float(4 * dim))
    factors = banded_cholesky(diag.float(), nxt.float(), skip.float())
    assert factors is not None
    lower, right = factors
    full = torch.linalg.cholesky(dense)
    for t in range(frames):
        block = slice(t * dim, (t + 1) * dim)
        assert torch.allclose(lower[t].double(), full[block, block], rtol=0, atol=1e-4 * float(full.abs().max()))
        for k in (1, 2):  # right[t] = [L[t+1,t]^T | L[t+2,t]^T]
            if t + k < frames:
                below = full[(t + k) * dim:(t + k + 1) * dim, block]
                assert torch.allclose(right[t, :, (k - 1) * dim:k * dim].double(), below.T, rtol=0,
                                      atol=1e-4 * float(full.abs().max()))
    b = torch.randn(frames, dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = banded_solve(factors, b.float()).double()
    expected = torch.linalg.solve(dense, b.reshape(-1)).reshape(frames, dim)
    assert float((x - expected).abs().max()) < 1e-4 * float(expected.abs().max())


def test_banded_cholesky_says_when_the_system_is_not_positive_definite():
    diag, nxt, skip, dense = pentadiagonal(7, 3, seed=2, shift=-30.0)
    assert bool((torch.linalg.eigvalsh(dense) < 0).any())
    assert banded_cholesky(diag, nxt, skip) is None  # the caller falls back to PCG
    diag, nxt, skip, _ = pentadiagonal(7, 3, seed=2, shift=8.0)
    nxt[5, 0, 1] = float("nan")  # not finite (the last off-diagonal block): None too
    assert banded_cholesky(diag, nxt, skip) is None


@pytest.fixture(scope="module")
def captured():
    """A keyframe stage's problem and parameters, taken from a real fit of a short clip."""
    torch.set_num_threads(1)
    body = load_body_model()
    clip, targets, xy, conf, sparse = fit_inputs(body, frames=8, seed=5)
    seen = []
    original = smplx_fit.keyframe_solve

    def spy(problem, x, progress):
        out = original(problem, x, progress)
        seen.append((problem, out.detach().clone()))
        return out

    smplx_fit.keyframe_solve = spy
    try:
        smplx_fit.fit_clip(sparse, targets, xy, conf, clip.camera, (clip.size, clip.size), iterations=4)
    finally:
        smplx_fit.keyframe_solve = original
    # the last captured stage frees everything (hands, full: the widest problem)
    return max(seen, key=lambda item: len(item[0].free))


def test_a_problem_on_some_frames_is_the_whole_problem_there(captured):
    problem, x = captured
    index = torch.tensor([1, 4, 6])
    part = smplx_fit.frames_of(problem, index)
    with torch.no_grad():
        assert torch.allclose(part.frame_costs(x[index]), problem.frame_costs(x)[index], rtol=1e-5)
        whole_h, whole_j, whole_uv = problem.gauss_newton(x, True)
        part_h, part_j, part_uv = part.gauss_newton(x[index], True)
    assert torch.allclose(part_uv, whole_uv[index], atol=1e-3)
    assert torch.allclose(part_h, whole_h[index], rtol=1e-4, atol=1e-5 * float(whole_h.abs().max()))


def test_keyframe_solve_lowers_every_frames_cost(captured):
    """Only frames that moved are evaluated again; each frame still only ever accepts a lower cost."""
    problem, x = captured
    start = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    start[:, problem.objective.beta_columns] = x[:, problem.objective.beta_columns]
    progress = smplx_fit.Progress(tolerance=1e-4)
    with torch.no_grad():
        before = problem.frame_costs(start)
    out = smplx_fit.keyframe_solve(problem, start, progress)
    with torch.no_grad():
        after = problem.frame_costs(out)
    assert bool((after <= before + 1e-4 * before.abs()).all())
    assert float(after.sum()) < 0.9 * float(before.sum())
    assert np.isfinite(out.numpy()).all()


def test_a_settled_frame_is_neither_evaluated_nor_stepped_again(captured, monkeypatch):
    """StageSpec.settle_gain: a frame whose last FRAME_SETTLED_STEPS accepted steps each gained less
    than that share is out of the stage. At a share of 1 every accepted step counts: each frame
    is evaluated at its start and after its first accepted step, never again; costs still only fall."""
    problem, x = captured
    start = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    start[:, problem.objective.beta_columns] = x[:, problem.objective.beta_columns]
    evaluated = torch.zeros(x.shape[0], dtype=torch.long)  # Gauss-Newton evaluations per frame
    whole, original_frames_of, part_index = type(problem).gauss_newton_gradient, smplx_fit.frames_of, {}

    def frames_of(problem_, index):
        part_index["index"] = index
        return original_frames_of(problem_, index)

    def counted(self, *args, **kwargs):
        evaluated[slice(None) if self is settling else part_index["index"]] += 1
        return whole(self, *args, **kwargs)

    monkeypatch.setattr(type(problem), "gauss_newton_gradient", counted)
    monkeypatch.setattr(smplx_fit, "frames_of", frames_of)
    monkeypatch.setattr(smplx_fit, "FRAME_SETTLED_STEPS", 2)
    with torch.no_grad():
        before = problem.frame_costs(start)
    for gain in (0.0, 1.0):
        evaluated.zero_()
        settling = replace(problem, spec=replace(problem.spec, settle_gain=gain))
        out = smplx_fit.keyframe_solve(settling, start, smplx_fit.Progress(tolerance=1e-4))
        with torch.no_grad():
            after = problem.frame_costs(out)
        assert bool((after <= before + 1e-4 * before.abs()).all())
        assert float(after.sum()) < float(before.sum())
        if gain == 0:  # the premise: unsettled, some frame is evaluated more than twice
            assert int(evaluated.max()) > 2, evaluated
    assert int(evaluated.max()) <= 2 and int(evaluated.min()) >= 1, evaluated


def reference_gauss_newton(problem, x: torch.Tensor, with_pool: bool) -> torch.Tensor:
    """The Gauss-Newton Hessian written out plainly: the full Jacobian, the prior Hessian on
    every column, then the free columns cut out."""
    objective = problem.objective
    _, jacobian = objective.flat.projected_jacobian(x, problem.rows, objective.camera, with_betas=True)
    frames, dim = x.shape
    rho2 = problem.rho ** 2
    residual = objective.residuals(objective.camera.project(objective.flat(x, problem.rows)))
    irls = problem.weights * rho2 ** 2 / (rho2 + (residual ** 2).sum(-1)) ** 2
    weight = irls[..., None].expand(-1, -1, 2)
    if objective.bounds is not None:
        weight = weight * ((objective.bounds == 0) | (residual != 0))
    flat_jacobian = jacobian.reshape(frames, -1, dim)
    hessian = 2 * (flat_jacobian * weight.reshape(frames, -1, 1)).transpose(1, 2) @ flat_jacobian
    diagonal = 2 * problem.prior_diag.clone()
    if with_pool:
        diagonal[:, objective.beta_columns] += 2 * smplx_fit.BETA_POOL
    prior = torch.diag_embed(diagonal)
    index, columns = objective.body_pose_index, objective.body_columns
    prior[:, columns[:, None], columns[None, :]] += (objective.prior.gn_hessian(objective.body_pose(x))[:, index][:, :, index]
                                                     * (problem.spec.pose_weight * problem.pose_scale)[:, None, None])
    hessian = hessian + prior
    if objective.depth is not None:
        hessian = hessian + objective.depth.gn_hessian(objective.flat, x, problem.rows, float(objective.camera.focal),
                                                       torch.arange(dim))
    return hessian[:, problem.free][:, :, problem.free]


@pytest.mark.parametrize("names", [None, ("transl", "global_orient"), ("transl", "global_orient", "body", "betas"),
                                   ("global_orient", "body")])
def test_gauss_newton_on_the_free_columns_is_the_full_one_cut(captured, names):
    """gauss_newton builds only what the free columns need (no expression columns for the body,
    the body prior's block only where the body is free, the priors added in place): the same
    matrix as the plain full build cut to those columns."""
    from dataclasses import replace

    problem, x = captured
    if names is not None:
        problem = replace(problem, spec=replace(problem.spec, free=names), free=problem.objective.columns(names))
    with torch.no_grad():
        expected = reference_gauss_newton(problem, x, problem.pools_shape)
        hessian, _, _ = problem.gauss_newton(x, problem.pools_shape)
    assert hessian.shape == (x.shape[0], len(problem.free), len(problem.free))
    scale = float(expected.abs().max())
    assert torch.allclose(hessian, expected, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("groups, names", [(("torso", "face"), ("transl", "global_orient")),
                                           (("body", "face", "contour"), ("transl", "global_orient", "body", "betas"))])
def test_keyframe_hessian_on_the_weighed_points_is_the_full_one(captured, groups, names):
    """The keyframes' Gauss-Newton (gauss_newton_gradient) builds the Jacobian's rows of the points its
    stage weighs only (the camera's and the body's stages leave the hands out): the same matrix as
    the plain build on every point."""
    from dataclasses import replace

    problem, x = captured
    problem = replace(problem, spec=replace(problem.spec, free=names, groups=groups),
                      free=problem.objective.columns(names),
                      weights=problem.objective.confidence * problem.objective.group_mask(
                          replace(problem.spec, groups=groups)))
    weighed = problem.weighed_points()
    assert weighed is not None and len(weighed) < problem.objective.flat.num_points
    with torch.no_grad():
        expected = reference_gauss_newton(problem, x, problem.pools_shape)
        hessian, _, _ = problem.gauss_newton_gradient(x, problem.pools_shape)
    scale = float(expected.abs().max())
    assert torch.allclose(hessian, expected, atol=1e-5 * scale, rtol=1e-4)


def test_corner_gather_is_advanced_indexing():
    """The Jacobian's gather of each frame's triangle corners (one index_select on the frames'
    rows stacked) picks what values[nidx, tri] picks."""
    from annotate.smplx_flat import _corners

    g = torch.Generator().manual_seed(3)
    values = torch.randn(4, 7, 3, 5, generator=g)  # (N,S,...)
    tri = torch.randint(0, 7, (4, 6, 3), generator=g)  # (N,Pv,3): per-frame corners
    nidx = torch.arange(4)[:, None, None]
    rows = (tri + nidx * values.shape[1]).reshape(-1)
    assert torch.equal(_corners(values, rows).view(4, 6, 3, 3, 5), values[nidx, tri])


def test_diagonal_pose_prior_adds_its_diagonal_only(captured):
    """add_prior_hessian adds a diagonal pose prior's diagonal alone (pose_prior gn_diagonal): the
    same matrix, bit for bit, as adding its whole (T,63,63) Hessian; a prior without a diagonal
    (gn_diagonal None, SMPLify's GMM) keeps the full block."""
    from dataclasses import replace

    from annotate.pose_prior import COLLAR_POSE, BuiltinPosePrior, HeldJoints

    class FullOnly(HeldJoints):  # the same prior, its Hessian only as the full matrix
        def gn_diagonal(self, body_pose):
            return None

    problem, x = captured
    base = HeldJoints(BuiltinPosePrior(), 100.0, COLLAR_POSE)
    full = FullOnly(BuiltinPosePrior(), 100.0, COLLAR_POSE)
    pose = problem.objective.body_pose(x)
    pose[:, 3 * 17 + 1] = 0.3  # an elbow bent backwards: the angle limit's curvature on the diagonal
    assert torch.equal(torch.diag_embed(base.gn_diagonal(pose)), base.gn_hessian(pose))
    hessians = []
    for prior in (base, full):
        part = replace(problem, objective=replace(problem.objective, prior=prior))
        start = torch.rand(x.shape[0], len(part.free), len(part.free), generator=torch.Generator().manual_seed(0))
        hessians.append(part.add_prior_hessian(start, x, with_pool=True))
    assert part.free_position(problem.objective.body_columns) is not None  # the body is free here
    assert torch.equal(hessians[0], hessians[1])
    assert not torch.equal(hessians[0], torch.rand(x.shape[0], len(part.free), len(part.free),
                                                   generator=torch.Generator().manual_seed(0)))


def test_each_frames_damping_starts_at_its_stages_initial_damping(captured):
    """StageSpec.initial_damping: one step damped 1e8 x diag(H) barely moves a frame; at main's 1e-3 it moves."""
    problem, x = captured
    start = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    start[:, problem.objective.beta_columns] = x[:, problem.objective.beta_columns]
    moved = {}
    for damping in (1e-3, 1e8):
        one_step = replace(problem, spec=replace(problem.spec, iterations=1, initial_damping=damping))
        out = smplx_fit.keyframe_solve(one_step, start, smplx_fit.Progress(tolerance=1e-4))
        moved[damping] = float((out - start).abs().max())
    assert problem.spec.initial_damping == 1e-3  # default_schedule's stages start where main's always did
    assert moved[1e-3] > 1e-3 and moved[1e8] < 1e-5, moved
