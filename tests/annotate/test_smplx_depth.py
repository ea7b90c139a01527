"""annotate/smplx_depth.py: an arm mirrored in depth keeps its image and flips its depth."""

import numpy as np
import torch

from annotate.correspondences import all_targets
from annotate.smplx_depth import axis_angle_from_matrix, mirror_bone
from annotate.smplx_flat import FlatSMPLX
from annotate.smplx_objective import rest_x
from annotate.smplx_sparse import SparseSMPLX
from mentor.body import Camera, load_body_model
from mentor.body.geometry import rodrigues


def test_axis_angle_round_trip():
    g = torch.Generator().manual_seed(0)
    aa = torch.randn(50, 3, generator=g)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(50, 1, generator=g) * 3.1
    assert torch.allclose(rodrigues(axis_angle_from_matrix(rodrigues(aa))), rodrigues(aa), atol=1e-4)


def test_mirrored_upper_arm_flips_depth_and_keeps_the_image():
    torch.set_num_threads(1)
    targets = all_targets()
    sparse = SparseSMPLX(load_body_model(), [t.point for t in targets])
    flat = FlatSMPLX(sparse, np.ones(len(targets), bool))
    x = rest_x(flat, 2, "cpu")
    x[:, flat.layout["transl"]] = torch.tensor([0.0, 0.3, 2.0])
    column = flat.layout["body"].start + 3 * flat.body_free.index(16)
    x[1, column:column + 3] += torch.tensor([0.5, 0.4, 0.0])  # the left upper arm swung forward
    chain = {int(j): n for n, j in enumerate(flat.chain)}
    camera = Camera.centered(1000.0, 512, 512)

    def arm(v):
        t = flat._pose(v, None)["tw"] + v[:, None, flat.layout["transl"]]
        return t[:, chain[16]], t[:, chain[18]], t[:, chain[20]]

    shoulder, elbow, wrist = arm(x)
    mirrored = mirror_bone(flat, x, 16, 18)
    shoulder2, elbow2, wrist2 = arm(mirrored)
    assert torch.allclose(shoulder2, shoulder, atol=1e-5)
    bone, bone2 = elbow - shoulder, elbow2 - shoulder
    assert torch.allclose(bone.norm(dim=-1), bone2.norm(dim=-1), atol=1e-4)
    assert (camera.project(elbow2) - camera.project(elbow)).norm(dim=-1).max() < 0.05  # the same pixel
    assert (elbow2[1, 2] - elbow[1, 2]).abs() > 0.1  # the other depth on that ray
    forearm, forearm2 = wrist - elbow, wrist2 - elbow2
    assert torch.allclose(forearm, forearm2, atol=1e-4)  # the forearm keeps its world direction
