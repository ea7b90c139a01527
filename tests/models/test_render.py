"""The control renderer: hand-computed coverage and occlusion, exact perspective depth, and
agreement with an independent reference (trimesh ray casting) on the SMPL-X mesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.render import ControlRenderer, rasterize


def _pix_to_cam(uv, z, f=1.0, c=0.0):
    """Camera-space points at depth z that project to pixels uv with focal f, centre (c, c)."""
    uv = np.asarray(uv, dtype=np.float64)
    z = np.broadcast_to(np.asarray(z, dtype=np.float64), uv.shape[:1])
    return torch.tensor(np.stack([(uv[:, 0] - c) / f * z, (uv[:, 1] - c) / f * z, z], 1), dtype=torch.float32)


def test_triangle_covers_exactly_its_pixel_centres():
    # pixel centres at integers; legs x = 0.5, y = 0.5 and hypotenuse x + y = 7.5 (no centre on an edge)
    verts = _pix_to_cam([[0.5, 0.5], [7.0, 0.5], [0.5, 7.0]], 2.0)
    frags = rasterize(verts, torch.tensor([[0, 1, 2]]), focal=1.0, cx=0.0, cy=0.0, width=10, height=9)
    expected = np.zeros((9, 10), bool)
    for y in range(9):
        for x in range(10):
            expected[y, x] = x >= 1 and y >= 1 and x + y <= 7
    assert expected.sum() == 21
    got = frags.face[0].numpy() == 0
    np.testing.assert_array_equal(got, expected)
    assert (frags.face[0][~torch.tensor(expected)] == -1).all()
    np.testing.assert_allclose(frags.depth[0].numpy()[expected], 2.0, rtol=1e-6)
    assert torch.isinf(frags.depth[0][~torch.tensor(expected)]).all()
    b = frags.bary[0].numpy()[expected]
    np.testing.assert_allclose(b.sum(1), 1.0, atol=1e-6)
    # at pixel (1, 1): barycentrics of (1,1) in the triangle, by hand: l1 = 0.5/6.5, l2 = 0.5/6.5
    np.testing.assert_allclose(frags.bary[0, 1, 1].numpy(), [1 - 1 / 6.5, 0.5 / 6.5, 0.5 / 6.5], atol=1e-5)


def test_non_square_image_with_its_own_vertical_focal_length():
    # the triangle of the test above, in a 10x6 image whose pixels are twice as tall: fy = 2 fx
    uv = np.array([[0.5, 0.5], [7.0, 0.5], [0.5, 5.0]])
    z = 2.0
    verts = torch.tensor(np.stack([uv[:, 0] / 1.0 * z, uv[:, 1] / 2.0 * z, np.full(3, z)], 1), dtype=torch.float32)
    frags = rasterize(verts, torch.tensor([[0, 1, 2]]), focal=1.0, cx=0.0, cy=0.0, width=10, height=6, focal_y=2.0)
    assert frags.face.shape == (1, 6, 10)
    ys, xs = np.mgrid[0:6, 0:10]
    # inside: x >= 0.5, y >= 0.5 and below the edge from (7, 0.5) to (0.5, 5)
    expected = (xs >= 1) & (ys >= 1) & ((xs - 0.5) / 6.5 + (ys - 0.5) / 4.5 <= 1)
    np.testing.assert_array_equal(frags.face[0].numpy() == 0, expected)
    np.testing.assert_allclose(frags.depth[0].numpy()[expected], z, rtol=1e-6)


@pytest.mark.parametrize("near_first", [True, False])
def test_occlusion_keeps_the_nearer_surface(near_first):
    sq = [[1.5, 1.5], [8.5, 1.5], [8.5, 8.5], [1.5, 8.5]]
    small = [[3.5, 3.5], [6.5, 3.5], [6.5, 6.5], [3.5, 6.5]]
    far, near = _pix_to_cam(sq, 5.0), _pix_to_cam(small, 3.0)
    verts = torch.cat([near, far] if near_first else [far, near])
    quad = torch.tensor([[0, 1, 2], [0, 2, 3]])
    faces = torch.cat([quad, quad + 4])
    frags = rasterize(verts, faces, 1.0, 0.0, 0.0, 10, 10)
    near_faces = {0, 1} if near_first else {2, 3}
    inner = np.zeros((10, 10), bool)
    inner[4:7, 4:7] = True
    outer = np.zeros((10, 10), bool)
    outer[2:9, 2:9] = True
    face = frags.face[0].numpy()
    assert set(np.unique(face[inner])) <= near_faces
    assert not set(np.unique(face[outer & ~inner])) & near_faces
    np.testing.assert_allclose(frags.depth[0].numpy()[inner], 3.0, rtol=1e-6)
    np.testing.assert_allclose(frags.depth[0].numpy()[outer & ~inner], 5.0, rtol=1e-6)
    assert (face[~outer] == -1).all()


def test_perspective_correct_depth_on_a_tilted_plane():
    # plane z = 2 + 0.5 x; the ray through pixel (u, v) with f = 20, c = 16 meets it at
    # z = 2 / (1 - 0.5 (u - 16) / 20)
    f, c = 20.0, 16.0
    pts = torch.tensor([[-0.6, -0.6, 1.7], [0.6, -0.6, 2.3], [0.6, 0.6, 2.3], [-0.6, 0.6, 1.7]])
    frags = rasterize(pts, torch.tensor([[0, 1, 2], [0, 2, 3]]), f, c, c, 32, 32)
    m = frags.mask[0].numpy()
    assert m.sum() > 50
    u = np.arange(32)[None, :].repeat(32, 0)
    expected = 2.0 / (1 - 0.5 * (u - c) / f)
    np.testing.assert_allclose(frags.depth[0].numpy()[m], expected[m], rtol=1e-5)


def test_batched_frames_equal_one_at_a_time():
    rng = np.random.default_rng(0)
    verts = torch.tensor(rng.uniform([-1, -1, 3], [1, 1, 5], size=(3, 30, 3)), dtype=torch.float32)
    faces = torch.tensor(rng.integers(0, 30, size=(40, 3)))
    focal = torch.tensor([20.0, 25.0, 30.0])
    batch = rasterize(verts, faces, focal, 16.0, 15.0, 32, 30, max_pairs=500)  # several chunks
    for i in range(3):
        one = rasterize(verts[i], faces, float(focal[i]), 16.0, 15.0, 32, 30)
        torch.testing.assert_close(batch.face[i], one.face[0])
        torch.testing.assert_close(batch.depth[i], one.depth[0])


def _smplx_mesh():
    from mentor.bodymodel import load_body_model

    body = load_body_model()
    with torch.no_grad():
        out = body.model(body_pose=torch.randn(1, 63, generator=torch.Generator().manual_seed(0)) * 0.2)
    verts = out.vertices[0].clone()
    verts[:, 1] *= -1  # smplx is y-up; the camera's y points down
    verts[:, 2] *= -1
    verts[:, 2] += 2.5
    return verts, torch.as_tensor(body.faces), body


def test_agrees_with_trimesh_ray_casting_on_the_smplx_mesh():
    trimesh = pytest.importorskip("trimesh")
    from trimesh.ray.ray_triangle import RayMeshIntersector

    verts, faces, _ = _smplx_mesh()
    H = W = 64  # upper body framing, as a talking-head clip has it (ray casting costs ~1 ms a ray)
    f, cx, cy = 140.0, (W - 1) / 2 + 6, (H - 1) / 2 + 12
    frags = rasterize(verts, faces, f, cx, cy, W, H)
    mesh = trimesh.Trimesh(verts.double().numpy(), faces.numpy(), process=False)
    ys, xs = np.mgrid[0:H, 0:W]
    dirs = np.stack([(xs - cx) / f, (ys - cy) / f, np.ones_like(xs, dtype=float)], -1).reshape(-1, 3)
    loc, ray_idx, tri_idx = RayMeshIntersector(mesh).intersects_location(
        np.zeros_like(dirs), dirs, multiple_hits=True)
    ref_face = np.full(H * W, -1)
    ref_depth = np.full(H * W, np.inf)
    order = np.lexsort((loc[:, 2], ray_idx))  # nearest hit first per ray
    first = np.ones(len(order), bool)
    first[1:] = ray_idx[order][1:] != ray_idx[order][:-1]
    ref_face[ray_idx[order][first]] = tri_idx[order][first]
    ref_depth[ray_idx[order][first]] = loc[order][first][:, 2]
    ref_face, ref_depth = ref_face.reshape(H, W), ref_depth.reshape(H, W)

    face = frags.face[0].numpy()
    depth = frags.depth[0].numpy()
    # edge pixels: the centre lies within 1e-3 (barycentric) of an edge of the triangle hit,
    # or a 4-neighbour is background in either result (silhouette)
    body = (face >= 0) | (ref_face >= 0)
    sil = np.zeros_like(body)
    for a in (face >= 0, ref_face >= 0):
        sil[1:] |= a[1:] != a[:-1]
        sil[:-1] |= a[:-1] != a[1:]
        sil[:, 1:] |= a[:, 1:] != a[:, :-1]
        sil[:, :-1] |= a[:, :-1] != a[:, 1:]
    near_edge = frags.bary[0].numpy().min(-1) < 1e-3
    interior = body & ~sil & ~near_edge
    assert interior.sum() > 0.5 * body.sum(), (interior.sum(), body.sum())
    agree = (face == ref_face)[interior].mean()
    print(f"face index agreement on {interior.sum()} of {body.sum()} body pixels (non-edge): {agree:.4f}")
    assert agree >= 0.995
    both = interior & (face == ref_face)
    np.testing.assert_allclose(depth[both], ref_depth[both], rtol=1e-4)
    # background agrees everywhere off the silhouette
    assert ((face >= 0) == (ref_face >= 0))[~sil].all()


def test_controls_identity_warp_and_part_masks():
    verts, faces, body = _smplx_mesh()
    V = verts.shape[0]
    parts = torch.arange(V) % 4
    r = ControlRenderer(body.model.v_template, faces, parts, 4)
    H = W = 64
    f, cx, cy = 75.0, (W - 1) / 2, (H - 1) / 2 + 3
    img = torch.rand(H, W, 3, generator=torch.Generator().manual_seed(1))
    c = r(verts[None], f, cx, cy, W, H, ref_image=img, ref_verts=verts, ref_camera=(f, cx, cy))
    assert c.dense.shape == (1, H, W, 3) and c.parts.shape == (1, H, W, 4)
    m = c.mask[0]
    assert m.sum() > 100
    # every body pixel is in exactly one part, background in none
    np.testing.assert_array_equal(c.parts[0].sum(-1).numpy(), m.numpy().astype(int))
    assert (c.dense[0][~m] == 0).all() and (c.dense[0][m] >= 0).all() and (c.dense[0][m] <= 1).all()
    # the reference warped to its own pose is the reference on (nearly) every body pixel
    wm = c.warped_mask[0]
    assert wm.sum() >= 0.97 * m.sum()
    err = (c.warped[0][wm] - img[wm]).abs().max()
    assert err < 0.02, err
    assert c.stack().shape == (1, r.num_channels, H, W)
    # a moved body takes its colours from the reference, where the reference sees them
    moved = verts + torch.tensor([0.15, 0.0, 0.0])
    c2 = r(moved[None], f, cx, cy, W, H, ref_image=img, ref_verts=verts, ref_camera=(f, cx, cy))
    shift = f * 0.15 / verts[:, 2].mean()
    assert c2.mask[0].float().mean() > 0 and c2.warped_mask[0].sum() > 0.8 * c2.mask[0].sum()
    ys, xs = torch.nonzero(c2.warped_mask[0], as_tuple=True)
    src = img[ys, (xs.float() - shift).round().long().clamp(0, W - 1)]
    assert (c2.warped[0][ys, xs] - src).abs().mean() < 0.15


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    verts, faces, _ = _smplx_mesh()
    a = rasterize(verts, faces, 110.0, 47.5, 52.5, 96, 96)
    b = rasterize(verts.cuda(), faces.cuda(), 110.0, 47.5, 52.5, 96, 96)
    assert (a.face == b.face.cpu()).float().mean() > 0.999


def test_preview_hook_draws_the_zbuffer_silhouette():
    from mentor import preview

    verts, faces, _ = _smplx_mesh()
    img = np.zeros((64, 64, 3), np.uint8)
    cam = np.array([140.0, 37.5, 43.5])
    assert preview.draw_mesh is preview.draw_mesh_zbuffer
    preview.draw_mesh(img, verts.numpy(), faces.numpy(), cam)
    frags = rasterize(verts, faces, *cam, 64, 64)
    np.testing.assert_array_equal(img.any(-1), frags.mask[0].numpy())
