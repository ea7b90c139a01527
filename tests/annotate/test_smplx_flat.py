"""FlatSMPLX, the fitter's evaluator: its forward against the smplx library's, and its
analytic Jacobian against torch.autograd.functional.jacobian on a few frames."""

import numpy as np
import pytest
import torch

from annotate.correspondences import all_targets
from annotate.smplx_flat import FlatSMPLX
from annotate.smplx_objective import rest_x
from annotate.smplx_sparse import SparseSMPLX
from mentor.body import Camera, SmplxParams, load_body_model

FRAMES = 3
POINTS = [t.point for t in all_targets()]
KINDS = np.array([p.kind for p in POINTS])


@pytest.fixture(scope="module")
def body():
    return load_body_model()


def flat_model(body, correctives: bool = True) -> FlatSMPLX:
    sparse = SparseSMPLX(body, POINTS)
    if not correctives:
        sparse.posedirs = torch.zeros_like(sparse.posedirs)  # a new buffer: the body model keeps its own
    sparse.set_contour_rows(torch.arange(sparse.dyn_faces.shape[0]))  # rows index the whole contour table
    return FlatSMPLX(sparse, np.ones(len(POINTS), bool))


def random_x(flat: FlatSMPLX, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = rest_x(flat, FRAMES, "cpu") + 0.2 * torch.randn(FRAMES, flat.dim, generator=g)
    x[:, flat.layout["transl"]] = torch.tensor([0.0, 0.3, 2.0]) + 0.05 * torch.randn(FRAMES, 3, generator=g)
    return x


def params_of(flat: FlatSMPLX, x: torch.Tensor) -> SmplxParams:
    """The SMPL-X parameters a flat vector holds (every body joint is free when every point is observed)."""
    layout = flat.layout
    assert flat.body_free == list(range(1, 22))
    return SmplxParams.from_dict({"transl": x[:, layout["transl"]], "global_orient": x[:, layout["global_orient"]],
                                  "body_pose": x[:, layout["body"]], "jaw_pose": x[:, layout["jaw_pose"]],
                                  "leye_pose": x[:, layout["leye_pose"]], "reye_pose": x[:, layout["reye_pose"]],
                                  "left_hand_pose": x[:, layout["left_hand_pose"]],
                                  "right_hand_pose": x[:, layout["right_hand_pose"]],
                                  "expression": x[:, layout["expression"]], "betas": x[:, layout["betas"]]})


def test_flat_forward_matches_smplx(body):
    flat = flat_model(body)
    x = random_x(flat)
    params = params_of(flat, x)
    sparse = SparseSMPLX(body, POINTS)
    rows = sparse.contour_rows(params)  # each frame's contour row from its neck yaw, as smplx picks it
    assert len(set(rows.tolist())) > 1  # frames look different ways: rows differ
    with torch.no_grad():
        mine = flat(x, rows)
        ref = body.model(**params.as_dict()).joints  # the library's own forward
    assert torch.allclose(mine, ref[:, [p.output_index for p in POINTS]], atol=1e-5)


def jacobians(flat: FlatSMPLX, x: torch.Tensor, contour: bool = False):
    camera = Camera.centered(1000.0, 512, 512)
    rows = torch.tensor([0, 5, 45])  # yaw 0, 5 and -6 degrees
    uv, analytic = flat.projected_jacobian(x, rows, camera, with_betas=True, contour=contour)  # (N,P,2,D)
    full = torch.autograd.functional.jacobian(lambda v: camera.project(flat(v, rows)), x,
                                                  vectorize=True)  # (N,P,2,N,D)
    autograd = torch.stack([full[n, :, :, n] for n in range(x.shape[0])])
    assert torch.allclose(uv, camera.project(flat(x, rows)))
    # a frame's points depend on its own parameters only (equal up to float32 summation order)
    assert torch.isclose(full.abs().sum(), autograd.abs().sum(), rtol=1e-6)
    scale = autograd.abs().amax(dim=(0, 1, 2), keepdim=True).clamp(min=1e-6)  # per column
    return ((analytic - autograd).abs() / scale).amax(dim=(0, 2, 3))  # (P,) worst relative error per point


def test_analytic_jacobian_matches_autograd(body):
    flat = flat_model(body, correctives=False)
    error = jacobians(flat, random_x(flat))
    assert float(error.max()) < 1e-4, f"worst point {int(error.argmax())}: {float(error.max()):.2e}"


def test_analytic_jacobian_with_pose_correctives(body):
    """With the pose correctives: exact on joints, vertices; the static landmarks' triangles
    are close; the contour points leave the correctives out unless asked (`contour`, each frame's
    triangle's corners: then exact)."""
    flat = flat_model(body)
    x = random_x(flat, seed=1)
    error = jacobians(flat, x)
    for kind, bound in (("joint", 1e-4), ("vertex", 1e-4), ("landmark", 0.03), ("contour", 0.5)):
        worst = float(error[torch.as_tensor(KINDS == kind)].max())
        assert worst < bound, f"{kind}: relative Jacobian error {worst:.2e} >= {bound}"
    without = float(error[torch.as_tensor(KINDS == "contour")].max())
    worst = float(jacobians(flat, x, contour=True)[torch.as_tensor(KINDS == "contour")].max())
    assert worst < 1e-4 < without, (worst, without)


def test_contour_correctives_gradient_share(body):
    """projected_jacobian with a covector: the Jacobian without the contour correctives, and their
    share of covector . J returned apart; together the covector times the full Jacobian."""
    flat = flat_model(body)
    x = random_x(flat, seed=3)
    camera = Camera.centered(1000.0, 512, 512)
    rows = torch.tensor([0, 5, 45])
    covector = torch.randn(FRAMES, flat.num_points, 2, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, full = flat.projected_jacobian(x, rows, camera, with_betas=True, contour=True)
        full = full.clone()
        _, plain, share = flat.projected_jacobian(x, rows, camera, with_betas=True, contour=covector)
    expected = torch.einsum("npr,nprd->nd", covector, full)
    got = torch.einsum("npr,nprd->nd", covector, plain) + share
    assert float(share.abs().max()) > 1e-3 * float(expected.abs().max())  # the share matters
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


def test_jacobian_without_expression_is_the_full_ones_columns(body):
    """The cheaper Jacobian a stage uses when it holds expression (the body stage's): the full
    Jacobian's shape columns, and nothing in expression's."""
    flat = flat_model(body)
    x = random_x(flat, seed=2)
    camera = Camera.centered(1000.0, 512, 512)
    rows = torch.tensor([0, 5, 45])
    with torch.no_grad():
        uv, full = flat.projected_jacobian(x, rows, camera, with_betas=True)
        full = full.clone()  # the evaluator reuses its Jacobian's buffer
        _, shape_only = flat.projected_jacobian(x, rows, camera, with_betas=True, with_expression=False)
    scale = float(full.abs().max())
    betas, expression = flat.layout["betas"], flat.layout["expression"]
    assert torch.allclose(shape_only[..., betas], full[..., betas], atol=1e-6 * scale)
    assert float(shape_only[..., expression].abs().max()) == 0.0
    assert float(full[..., expression].abs().max()) > 0.0


@pytest.mark.parametrize("kinds, names", [(("joint", "landmark"), ("transl", "global_orient")),
                                          (("joint", "landmark", "contour"), ("transl", "global_orient", "body", "betas")),
                                          (("vertex", "contour"), ("global_orient", "body", "left_hand_pose", "expression"))])
def test_jacobian_of_some_points_and_columns_is_the_full_ones_cut(body, kinds, names):
    """The Jacobian a stage builds on its weighed points' rows and its free columns only (with the
    depth row and the contour correctives' share, as the keyframes' gradient asks): the full one's
    rows and columns, and the share on those columns."""
    flat = flat_model(body)
    x = random_x(flat, seed=5)
    camera = Camera.centered(1000.0, 512, 512)
    rows = torch.tensor([0, 5, 45])
    points = torch.as_tensor(np.flatnonzero(np.isin(KINDS, kinds)))
    columns = torch.cat([torch.arange(flat.layout[n].start, flat.layout[n].stop) for n in names])
    covector = torch.randn(FRAMES, flat.num_points, 3, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        uv, full, full_share = flat.projected_jacobian(x, rows, camera, with_betas=True, with_depth=True,
                                                       contour=covector)
        full, full_share = full.clone(), full_share.clone()
        part_uv, part, share = flat.projected_jacobian(x, rows, camera, with_betas=True, with_depth=True,
                                                       contour=covector, points=points, columns=columns)
    assert part.shape == (FRAMES, len(points), 3, len(columns))
    assert torch.equal(part_uv, uv)
    expected = full[:, points][..., columns]
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(part, expected, rtol=0, atol=1e-6 * float(expected.abs().max()))
    torch.testing.assert_close(share[:, columns], full_share[:, columns], rtol=0,
                               atol=1e-6 * float(full_share.abs().max()))


def test_kept_frames_reuse_their_forward_pass(body):
    """keep_frames: after evaluating all frames, the next evaluation of some of them (a solver's
    accepted steps) reuses that forward pass, and its Jacobian is the one computed afresh."""
    flat = flat_model(body)
    x = random_x(flat, seed=7)
    camera = Camera.centered(1000.0, 512, 512)
    rows = torch.tensor([0, 5, 45])
    index = torch.tensor([0, 2])
    with torch.no_grad():
        flat(x, rows)
        flat.keep_frames(index)
        kept = flat._last_pose[2]["pts"]
        points = flat(x[index], rows[index])
        _, reused = flat.projected_jacobian(x[index], rows[index], camera, with_betas=True, contour=True)
        reused = reused.clone()
        flat._last_pose = None
        fresh_points = flat(x[index], rows[index])
        _, fresh = flat.projected_jacobian(x[index], rows[index], camera, with_betas=True, contour=True)
    assert points is kept  # not computed again
    assert torch.equal(points, fresh_points)
    assert torch.equal(reused, fresh)


def test_expression_columns_are_built_on_the_rows_they_move_only(body):
    """The linear columns' work is restricted to the points they move: expression's Jacobian is built on
    the face's and the head's points only (the evaluator's plan leaves the hands and the body out), and
    it is autograd's, which is exactly zero on the points left out."""
    flat = flat_model(body)
    x = random_x(flat, seed=8)
    camera = Camera.centered(1000.0, 512, 512)
    rows = torch.tensor([0, 5, 45])
    columns = torch.arange(flat.layout["expression"].start, flat.layout["expression"].stop)
    with torch.no_grad():
        _, analytic = flat.projected_jacobian(x, rows, camera, with_betas=False, with_depth=True, contour=True,
                                              columns=columns)  # (N,P,3,L)
    plan = next(plan for plan in flat._plans.values() if ("expression",) in plan.get("linear", {}))
    reached = plan["linear"][("expression",)]["rows"]
    assert reached is not None and 0 < len(reached) < flat.num_points  # some points left out
    full = torch.autograd.functional.jacobian(
        lambda v: torch.cat([camera.project(flat(v, rows)), flat(v, rows)[..., 2:]], -1), x, vectorize=True)
    autograd = torch.stack([full[n, :, :, n] for n in range(FRAMES)])[..., columns]  # (N,P,3,L)
    left_out = torch.ones(flat.num_points, dtype=torch.bool)
    left_out[reached] = False
    assert float(autograd[:, left_out].abs().max()) == 0.0  # expression cannot move them
    assert float(analytic[:, left_out].abs().max()) == 0.0
    assert bool(np.isin(KINDS[left_out.numpy()], ["joint", "vertex"]).all())  # hands and body, no face landmark
    scale = float(autograd.abs().max())
    torch.testing.assert_close(analytic, autograd, rtol=0, atol=1e-4 * scale)


def test_workspace_is_kept_across_calls(body):
    """FlatSMPLX.workspace: the same memory for a name while it fits, a larger one when it does not."""
    flat = flat_model(body)
    like = torch.zeros(1)
    first = flat.workspace("a", (10, 4), like)
    smaller = flat.workspace("a", (3, 5), like)
    other = flat.workspace("b", (10, 4), like)
    larger = flat.workspace("a", (20, 4), like)
    assert first.shape == (10, 4) and smaller.shape == (3, 5) and larger.shape == (20, 4)
    assert smaller.data_ptr() == first.data_ptr() and other.data_ptr() != first.data_ptr()
    assert flat.workspace("a", (20, 4), like).data_ptr() == larger.data_ptr()


def test_a_hand_seen_by_the_pose_points_alone_keeps_its_fingers_at_the_pca_mean(body):
    """The pose's knuckles without the hand's own landmarks: no finger columns (hands_seen), and the
    thumb point they carry where the free hand puts it at a zero PCA (the output's mean hand)."""
    from annotate.smplx_fit import hands_seen

    targets = all_targets()
    active = np.array([t.group in ("body", "face", "left_knuckles") for t in targets])
    assert hands_seen([t for t, a in zip(targets, active) if a]) == (False, False)
    assert hands_seen(targets) == (True, True)
    sparse = SparseSMPLX(body, POINTS)
    sparse.set_contour_rows(torch.arange(sparse.dyn_faces.shape[0]))
    free, held = FlatSMPLX(sparse, active), FlatSMPLX(sparse, active, fingers=(False, False))
    assert "left_hand_pose" in free.layout and "left_hand_pose" not in held.layout
    assert held.dim == free.dim - (free.layout["left_hand_pose"].stop - free.layout["left_hand_pose"].start)
    x_free = random_x(free)
    x_free[:, free.layout["left_hand_pose"]] = 0.0
    keep = [c for name, s in free.layout.items() if name != "left_hand_pose" for c in range(s.start, s.stop)]
    with torch.no_grad():
        assert torch.allclose(held(x_free[:, keep], None), free(x_free, None), atol=1e-6)
