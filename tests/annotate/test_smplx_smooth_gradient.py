"""The temporal solve's analytic gradient and matrix (smplx_fit.temporal_normal_equations: the
temporal terms' derivatives in the points' pixels and depths through the landmarks' covector, the
parameters' second differences directly, the 2D accelerations' diagonal blocks as row weights of
the data's J^T W J) against autograd on the whole cost and against the separate band blocks, on
the smooth stage of a short fit (robust temporal scales and depth smoothing on, as by default)."""

from dataclasses import replace

import pytest
import torch

import annotate.smplx_fit as smplx_fit
from mentor.body.scenarios import SCENARIOS, make_truth

# per frame |analytic - autograd| / |autograd|: float rounding (measured <= 2.3e-5 on talking, 40 frames)
EXACT = 3e-4


@pytest.fixture(scope="module")
def smooth(body):
    """The smooth stage's problem, its starting x and robust scales, from the annotator on 24
    frames of the beats scenario (quick strokes: the robust weights matter)."""
    from benchmarks.smplx_truth import run_fitter
    from mentor.config import SmplxConfig

    torch.set_num_threads(1)
    seen = []
    original = smplx_fit.temporal_solve

    def spy(problem, x, progress, rho_2d=0.0, rho_param=0.0):
        seen.append((problem, x.detach().clone(), rho_2d, rho_param))
        return original(problem, x, progress, rho_2d, rho_param)

    smplx_fit.temporal_solve = spy
    try:
        run_fitter(body, smplx_fit.SmplxFitter(SmplxConfig(focal_length=1000.0, device="cpu"), body_model=body),
                   make_truth(body, SCENARIOS["beats"], 24))
    finally:
        smplx_fit.temporal_solve = original
    assert len(seen) == 1
    problem, x, rho_2d, rho_param = seen[0]
    assert problem.objective.depth_smooth is not None and problem.objective.depth is not None
    assert rho_2d > 0 and rho_param > 0
    return seen[0]


def autograd_gradient(problem, x: torch.Tensor, rho_2d: float, rho_param: float) -> torch.Tensor:
    x_grad = x.detach().requires_grad_(True)
    uv = problem.project(x_grad)
    cost = problem.frame_costs(x_grad, uv=uv).sum() + smplx_fit.temporal_cost(problem.objective, x_grad, uv, rho_2d,
                                                                              rho_param)
    (gradient,) = torch.autograd.grad(cost, x_grad)
    return gradient[:, problem.free]


def analytic(problem, x: torch.Tensor, rho_2d: float, rho_param: float) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        uv, points = problem.project_points(x)
        return smplx_fit.temporal_normal_equations(problem, x, uv, points, rho_2d, rho_param)


def relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(T,) per frame |a - b| / |b|."""
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp(min=1e-9)


def test_gradient_is_autograds(smooth):
    """With MediaPipe's z term and the depth smoothing (the default), and with either left out
    (the covector's depth component then MediaPipe's alone, or the smoothing's alone), quadratic too."""
    problem, x, rho_2d, rho_param = smooth
    objective = problem.objective
    variants = {"default": (objective, rho_2d, rho_param),
                "no depth smoothing": (objective.with_depth_smoothing(None), rho_2d, rho_param),
                "no z term": (objective.with_depth(None), rho_2d, rho_param),
                "quadratic": (objective, 0.0, 0.0)}
    for name, (variant, rho_a, rho_b) in variants.items():
        part = replace(problem, objective=variant, _last={})
        expected = autograd_gradient(part, x, rho_a, rho_b)
        gradient = analytic(part, x, rho_a, rho_b)[-1]
        assert float(relative(gradient, expected).max()) < EXACT, name


def test_each_temporal_term_weighs_above_the_tolerance(smooth):
    """The tolerance catches a missing term: the gradient with the 2D accelerations', the depth
    accelerations' or the parameters' term dropped (the objective without it, autograd) differs
    from the whole by more than 3 x EXACT in the median frame (the depth accelerations' share,
    the least, measured 1.5e-3 of the gradient's norm)."""
    problem, x, rho_2d, rho_param = smooth
    objective = problem.objective
    whole = autograd_gradient(problem, x, rho_2d, rho_param)
    without = {
        "2D accelerations": replace(objective, smooth_2d=torch.zeros_like(objective.smooth_2d)),
        "depth accelerations": objective.with_depth_smoothing(None),
        "parameters": replace(objective, smooth_param=torch.zeros_like(objective.smooth_param)),
    }
    for name, reduced in without.items():
        part = autograd_gradient(replace(problem, objective=reduced, _last={}), x, rho_2d, rho_param)
        assert float(relative(part, whole).median()) > 3 * EXACT, name


def test_matrix_is_the_data_plus_the_band_blocks(smooth):
    """The diagonal blocks (the 2D accelerations' as row weights of the data's J^T W J, the depth
    accelerations' added), the off-diagonal ones and the data's own diagonal (what the damping
    scales) are those of gauss_newton + band_blocks for each term apart."""
    problem, x, rho_2d, rho_param = smooth
    objective = problem.objective
    hessian, data_diagonal, hess_next, hess_skip, param_smooth, _ = analytic(problem, x, rho_2d, rho_param)
    with torch.no_grad():
        data, jac, uv = problem.gauss_newton(x, False)
        jac = jac.clone()
        weights, param = smplx_fit.temporal_weights(objective, x, uv, rho_2d, rho_param)
        blocks = smplx_fit.band_blocks(jac, weights.repeat_interleave(2, 1))
        depth_jac, depth_weights = objective.depth_smooth.rows(objective.flat, x, problem.rows,
                                                               float(objective.camera.focal), objective.gap_weights())
        depth = smplx_fit.band_blocks(depth_jac[..., problem.free], depth_weights)
    scale = data.abs().amax()
    for got, want in ((hessian, data + blocks[0] + depth[0]), (hess_next, blocks[1] + depth[1]),
                      (hess_skip, blocks[2] + depth[2])):
        torch.testing.assert_close(got / scale, want / scale, rtol=0, atol=1e-5)
    torch.testing.assert_close(data_diagonal / scale, data.diagonal(dim1=-2, dim2=-1) / scale, rtol=0, atol=1e-5)
    torch.testing.assert_close(param_smooth, param[:, problem.free])


def test_cg_fallback_steps_where_the_banded_cholesky_does(smooth, monkeypatch):
    """Where the banded Cholesky fails (float rounding), the preconditioned CG on the same system
    (its damping and the parameters' bands added along the diagonals) takes a step the solve
    accepts (a lower cost), along the exact step's direction (30 CG iterations fall short of it)."""
    problem, x, rho_2d, rho_param = smooth
    one_step = replace(problem, spec=replace(problem.spec, iterations=1), _last={})

    def step() -> torch.Tensor:
        return smplx_fit.temporal_solve(one_step, x, smplx_fit.Progress(tolerance=1e-4), rho_2d, rho_param) - x

    banded = step()
    monkeypatch.setattr(smplx_fit, "banded_cholesky", lambda *args, **kwargs: None)
    fallback = step()  # zero where the step was refused (a higher cost)
    assert float(banded.norm()) > 0 and float(fallback.norm()) > 0
    cosine = float((fallback * banded).sum() / (fallback.norm() * banded.norm()))
    assert cosine > 0.5  # measured 0.82


def test_held_frames_stay_and_the_others_step(smooth):
    """temporal_solve's held (despiked's windows): the first and last frames held stay exactly where
    they are, the frames between take a step that lowers the clip's cost; without them held every
    frame moves."""
    problem, x, rho_2d, rho_param = smooth
    one_step = replace(problem, spec=replace(problem.spec, iterations=1), _last={})

    def solved(held):
        return smplx_fit.temporal_solve(one_step, x, smplx_fit.Progress(tolerance=1e-4), rho_2d, rho_param, held=held)

    def cost(v):
        with torch.no_grad():
            uv, points = one_step.project_points(v)
            return float(one_step.frame_costs(v, uv=uv).sum()
                         + smplx_fit.temporal_cost(one_step.objective, v, uv, rho_2d, rho_param, points))

    free_step = solved((0, 0)) - x
    assert bool((free_step[:2].abs().amax(1) > 0).all() and (free_step[-3:].abs().amax(1) > 0).all())
    out = solved((2, 3))
    assert torch.equal(out[:2], x[:2]) and torch.equal(out[-3:], x[-3:])
    assert bool((out[2:-3] - x[2:-3]).abs().amax(1).gt(0).all())
    assert cost(out) < cost(x)


def test_clip_window_keeps_the_triples_terms(smooth):
    """clip_window: the window's parameter weights are the clip's on its frame triples, the per-triple
    factors (unseen_rotations, shoulder_rotations) kept (ClipObjective.subset drops them)."""
    problem, _, _, _ = smooth
    objective = problem.objective
    frames = objective.num_frames
    generator = torch.Generator().manual_seed(0)
    factors = 1 + torch.rand(frames - 2, objective.dim, generator=generator)
    objective = replace(objective, smooth_param_frames=factors, smooth_param_extra=factors - 1)
    assert bool((objective.gap_weights() == 1).all())  # (a gap's weights would be cut at a window's edge)
    window = smplx_fit.clip_window(objective, 5, 17)
    assert window.num_frames == 12
    torch.testing.assert_close(window.param_weights(), objective.param_weights()[5:15], rtol=0, atol=0)
    torch.testing.assert_close(window.smooth_param_extra, factors[5:15] - 1, rtol=0, atol=0)
