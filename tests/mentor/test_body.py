"""mentor.body: the forward pass against smplx's own, the camera, part labels, Procrustes."""

import math

import numpy as np
import pytest
import torch

from mentor.body import (PART_NAMES, BodyOutput, Camera, ModelPoint, SmplxParams, load_body_model, pa_mpjpe,
                         part_labels, procrustes_align, write_synthetic_smplx)
from mentor.body.constants import KEYPOINT_NAMES, NUM_STATIC_LANDMARKS, VERTEX_IDS
from mentor.body.parts import PART


@pytest.fixture(scope="module")
def body():
    return load_body_model(write_synthetic_smplx())


def random_params(n: int, seed: int = 0) -> SmplxParams:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: scale * torch.randn(*s, generator=g)  # noqa: E731
    return SmplxParams(betas=r(1, 10).expand(n, -1), expression=r(n, 10), global_orient=r(n, 3, scale=0.5),
                       body_pose=r(n, 63, scale=0.3), jaw_pose=r(n, 3, scale=0.2), leye_pose=r(n, 3, scale=0.1),
                       reye_pose=r(n, 3, scale=0.1), left_hand_pose=r(n, 12), right_hand_pose=r(n, 12),
                       transl=r(n, 3))


def test_forward_matches_smplx(body):
    import smplx

    ref_model = smplx.create(str(write_synthetic_smplx()), model_type="smplx", use_pca=True, num_pca_comps=12,
                             flat_hand_mean=False, use_face_contour=True)
    p = random_params(5)
    out = body(p)
    assert isinstance(out, BodyOutput)
    ref = ref_model(**p.as_dict())
    assert out.vertices.shape == (5, body.num_vertices, 3) and out.joints.shape == (5, 55, 3)
    assert out.landmarks.shape == (5, 68, 3) and out.keypoints.shape == (5, 21, 3)
    assert torch.allclose(out.vertices, ref.vertices, atol=1e-6)
    assert torch.allclose(out.joints, ref.joints[:, :55], atol=1e-6)
    assert torch.allclose(out.landmarks, ref.joints[:, 76:], atol=1e-6)
    # batched over frames = frame by frame
    one = body(p[3])
    assert torch.allclose(one.vertices[0], out.vertices[3], atol=1e-5)
    # keypoints are the vertices smplx names, in KEYPOINT_NAMES order
    ids = [VERTEX_IDS[n] for n in KEYPOINT_NAMES]
    assert torch.allclose(out.keypoints, out.vertices[:, ids], atol=1e-6)
    # typed model points read the same places as smplx's output order
    points = [ModelPoint.joint(16), ModelPoint.vertex("lthumb"), ModelPoint.landmark(3), ModelPoint.contour(8),
              ModelPoint.vertex(100)]
    picked = out.points(points)
    assert torch.allclose(picked[:, :4], ref.joints[:, [p.output_index for p in points[:4]]], atol=1e-6)
    assert torch.allclose(picked[:, 4], out.vertices[:, 100])


def test_vertex_ids_are_smplx_own():
    from smplx.vertex_ids import vertex_ids

    assert VERTEX_IDS == dict(vertex_ids["smplx"])
    assert ModelPoint.vertex("nose").output_index == 55 and ModelPoint.vertex("rpinky").output_index == 75
    assert ModelPoint.landmark(0).output_index == 76 and ModelPoint.contour(0).output_index == 76 + NUM_STATIC_LANDMARKS
    assert ModelPoint.ibug(17) == ModelPoint.landmark(0) and ModelPoint.ibug(8) == ModelPoint.contour(8)
    with pytest.raises(ValueError, match="landmark 51"):
        ModelPoint.landmark(51)


def test_projection_hand_computed():
    cam = Camera.centered(focal=500.0, width=640, height=480)
    pts = torch.tensor([[[0.0, 0.0, 2.0], [0.2, -0.1, 2.0], [1.0, 1.0, 4.0]]])
    uv = cam.project(pts)
    want = torch.tensor([[[320.0, 240.0], [320 + 500 * 0.1, 240 - 500 * 0.05], [320 + 125.0, 240 + 125.0]]])
    assert torch.allclose(uv, want)
    # one camera per frame, from the store's rows
    per_frame = Camera.from_array(np.array([[500, 320, 240], [1000, 320, 240]], np.float32))
    uv2 = per_frame.project(pts.expand(2, -1, -1))
    assert torch.allclose(uv2[0], want[0]) and math.isclose(float(uv2[1, 1, 0]), 320 + 1000 * 0.1, rel_tol=1e-6)
    assert (per_frame.width, per_frame.height) == (640, 480)
    assert np.allclose(per_frame.to_array()[1], [1000, 320, 240])
    half = cam.resized(320, 240)
    assert torch.allclose(half.project(pts), want / 2)
    with pytest.raises(ValueError, match="aspect"):
        cam.resized(320, 320)


def test_part_labels_cover_every_vertex(body):
    labels = part_labels(body)
    assert labels.shape == (body.num_vertices,) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < len(PART_NAMES)
    counts = torch.bincount(labels, minlength=len(PART_NAMES))
    assert (counts > 0).all(), dict(zip(PART_NAMES, counts.tolist()))
    rest = body(body.zeros(1))
    v = rest.vertices[0]
    # the parts are where their names say (rest pose: y up, x = the body's left)
    centre = {n: v[labels == PART[n]].mean(0) for n in PART_NAMES}
    assert centre["left_hand"][0] > centre["left_forearm"][0] > centre["left_upper_arm"][0] > 0
    assert centre["right_hand"][0] < centre["right_forearm"][0] < centre["right_upper_arm"][0] < 0
    assert centre["head"][1] > centre["neck"][1] > centre["torso"][1] > centre["lower_body"][1]
    assert centre["face"][2] > centre["head"][2]  # the face is the front of the head
    nose, lear = VERTEX_IDS["nose"], VERTEX_IDS["lear"]
    assert PART_NAMES[int(labels[nose])] == "face" and PART_NAMES[int(labels[lear])] == "head"


def test_pa_mpjpe_invariant_to_similarity():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(4, 20, 3))
    a = 0.7
    R = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    moved = 1.8 * gt @ R.T + np.array([0.3, -2.0, 5.0])
    assert np.allclose(pa_mpjpe(moved, gt), 0, atol=1e-9)
    assert np.allclose(procrustes_align(moved, gt), gt, atol=1e-9)
    noisy = moved + rng.normal(scale=0.05, size=moved.shape)
    err = pa_mpjpe(torch.tensor(noisy), torch.tensor(gt))
    assert isinstance(err, torch.Tensor) and err.shape == (4,) and (err > 0.01).all() and (err < 0.1).all()
    mirrored = gt * np.array([-1, 1, 1])  # a reflection is not a rotation: not aligned away
    assert (pa_mpjpe(mirrored, gt) > 0.1).all()


def test_params_round_trip_the_store_arrays(body):
    p = random_params(6)
    arrays = p.to_arrays()
    assert set(arrays) == {f"smplx.{n}" for n in p.as_dict()} and arrays["smplx.body_pose"].shape == (6, 63)
    back = SmplxParams.from_arrays(arrays)
    assert all(torch.equal(getattr(back, n), getattr(p, n)) for n in p.as_dict())
    both = SmplxParams.cat([p[:2], p[2:]])
    assert both.num_frames == 6 and torch.equal(both.transl, p.transl)
    one_shape = SmplxParams.from_dict(dict(p.as_dict(), betas=p.betas[:1]))  # (1,B) repeats over frames
    assert one_shape.betas.shape == (6, 10)
    with pytest.raises(ValueError, match="smplx.transl"):
        SmplxParams.from_arrays({k: v for k, v in arrays.items() if k != "smplx.transl"})
    with pytest.raises(ValueError, match="body_pose"):
        SmplxParams.from_dict(dict(p.as_dict(), body_pose=torch.zeros(6, 60)))
    with pytest.raises(ValueError, match="num_pca_comps"):
        body(SmplxParams.from_dict(dict(p.as_dict(), left_hand_pose=torch.zeros(6, 45))))


def test_body_model_moves_with_to(body):
    assert body.faces.dtype == torch.int64 and body.faces.shape[1] == 3
    assert body.label == "synthetic" and body.synthetic
    names = dict(body.named_buffers())
    assert "faces" in names and "model.v_template" in names  # model data lives in buffers


def test_loading_twice_prints_nothing_and_names_the_stand_in_once(capsys, caplog):
    """A run loads the body model once per clip: smplx's own 'WARNING: You are using a SMPL-X
    model ...' print stays off the console, and the stand-in warning is logged once."""
    import logging

    from mentor.body import model as body_model

    folder = write_synthetic_smplx()
    body_model._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="mentor.body.model"):
        load_body_model(folder)
        load_body_model(folder)
    assert "You are using" not in capsys.readouterr().out
    assert sum("SYNTHETIC" in r.getMessage() for r in caplog.records) == 1
