"""SMPL-X evaluated only where the fitting objective looks: joints plus a few vertices.

A full SMPL-X forward skins all 10,475 vertices, but a 2D-landmark objective observes
~150 points: the 55 joints (from the joint regressor, which is linear in shape and
expression, so it is precomputed as J = J0 + Jβ·β + Jψ·ψ) and the vertices under the
fingertips, nose/eye/ear keypoints and the face landmarks' triangles. This module skins
only those vertices (pose correctives and skinning restricted to them), so a clip of
250 frames costs about what 3 full-mesh frames cost. Same maths as smplx's `lbs`:
v = Σ_j w_j G_j (v_template + S·β + E·ψ + P·(R - I)), with G_j the relative rigid
transforms of the kinematic chain.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mentor.body import BodyModel, ModelPoint, SmplxParams
from mentor.body.constants import NECK_CHAIN
from mentor.body.geometry import rodrigues


def _depth_levels(parents: np.ndarray) -> list[np.ndarray]:
    depth = np.zeros(len(parents), int)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    return [np.where(depth == d)[0] for d in range(1, depth.max() + 1)]


class SparseSMPLX(nn.Module):
    """SMPL-X restricted to a list of model points, batched over the frames of a clip.

    points: the ModelPoints to evaluate (joints, vertices, static and contour landmarks).
    forward(params: SmplxParams) returns the points in camera coordinates (T,P,3) and the
    posed joints (T,55,3).
    """

    def __init__(self, body: BodyModel, points: list[ModelPoint]):
        super().__init__()
        model = body.model
        float_type = torch.float32
        template = model.v_template.detach().to(float_type)
        shape_dirs = model.shapedirs.detach().to(float_type)
        expression_dirs = model.expr_dirs.detach().to(float_type)
        regressor = model.J_regressor.detach().to(float_type)
        self.num_verts = template.shape[0]
        self.register_buffer("v_template", template)
        self.register_buffer("shapedirs", shape_dirs)
        self.register_buffer("expr_dirs", expression_dirs)
        self.register_buffer("posedirs", model.posedirs.detach().to(float_type))  # (486, V*3)
        self.register_buffer("lbs_weights", model.lbs_weights.detach().to(float_type))
        self.register_buffer("J0", regressor @ template)
        self.register_buffer("Jb", torch.einsum("jv,vcb->jcb", regressor, shape_dirs))
        self.register_buffer("Je", torch.einsum("jv,vce->jce", regressor, expression_dirs))
        self.register_buffer("faces", model.faces_tensor.detach())
        self.register_buffer("lmk_faces", model.lmk_faces_idx.detach())
        self.register_buffer("lmk_bary", model.lmk_bary_coords.detach().to(float_type))
        self.register_buffer("dyn_faces", model.dynamic_lmk_faces_idx.detach())
        self.register_buffer("dyn_bary", model.dynamic_lmk_bary_coords.detach().to(float_type))
        self.register_buffer("lhand_comps", model.left_hand_components.detach().to(float_type))
        self.register_buffer("rhand_comps", model.right_hand_components.detach().to(float_type))
        self.register_buffer("lhand_mean", model.left_hand_mean.detach().to(float_type))
        self.register_buffer("rhand_mean", model.right_hand_mean.detach().to(float_type))
        parents = model.parents.detach().cpu().numpy().copy()
        parents[0] = -1
        self.parents = parents
        levels = [np.array([0])] + _depth_levels(parents)
        self.levels = [torch.as_tensor(level) for level in levels[1:]]
        # position of each joint's parent inside the previous level's list
        self.parent_pos = [torch.as_tensor([int(np.where(levels[d - 1] == parents[j])[0][0]) for j in levels[d]])
                           for d in range(1, len(levels))]
        self.level_unpermute = torch.as_tensor(np.argsort(np.concatenate(levels)))
        self.points = list(points)
        self.num_betas = shape_dirs.shape[-1]
        self.num_expression = expression_dirs.shape[-1]
        self.num_pca = model.left_hand_components.shape[0]
        self.set_contour_rows(torch.zeros(1, dtype=torch.long))

    # -- which vertices are skinned --------------------------------------------------
    def set_contour_rows(self, rows: torch.Tensor) -> None:
        """Fix the contour look-up row per frame (T,) (or (1,) for all) and re-select vertices."""
        dev = self.v_template.device
        rows = rows.to(dev)
        vert_pts = [p.index for p in self.points if p.kind == "vertex"]
        static = [p.index for p in self.points if p.kind == "landmark"]
        contour = [p.index for p in self.points if p.kind == "contour"]
        need = [torch.as_tensor(vert_pts, dtype=torch.long, device=dev).reshape(-1)]
        st_faces = self.faces[self.lmk_faces[torch.as_tensor(static, dtype=torch.long, device=dev)]] if static else None
        if st_faces is not None:
            need.append(st_faces.reshape(-1))
        contour_cols = torch.as_tensor(contour, dtype=torch.long, device=dev)
        if contour:
            used_rows = torch.unique(rows)
            ct_faces_all = self.faces[self.dyn_faces[used_rows][:, contour_cols]]  # (R,C,3)
            need.append(ct_faces_all.reshape(-1))
        sel = torch.unique(torch.cat(need))
        lookup = torch.full((self.num_verts,), -1, dtype=torch.long, device=dev)
        lookup[sel] = torch.arange(len(sel), device=dev)
        self.sel = sel
        self.sel_posedirs = self.posedirs.view(self.posedirs.shape[0], -1, 3)[:, sel].reshape(self.posedirs.shape[0], -1)
        self.sel_weights = self.lbs_weights[sel]
        self.joint_idx = torch.as_tensor([p.index for p in self.points if p.kind == "joint"], dtype=torch.long,
                                         device=dev)
        self.vert_idx = lookup[torch.as_tensor(vert_pts, dtype=torch.long, device=dev)] if vert_pts else None
        self.static_local = lookup[st_faces] if st_faces is not None else None  # (S,3)
        self.static_bary = self.lmk_bary[torch.as_tensor(static, dtype=torch.long, device=dev)] if static else None
        if contour:
            self.contour_local = lookup[self.faces[self.dyn_faces[rows][:, contour_cols]]]  # (T|1,C,3)
            self.contour_bary = self.dyn_bary[rows][:, contour_cols]  # (T|1,C,3)
        else:
            self.contour_local = None
        order = {"joint": [], "vertex": [], "landmark": [], "contour": []}
        for n, point in enumerate(self.points):
            order[point.kind].append(n)
        cat = order["joint"] + order["vertex"] + order["landmark"] + order["contour"]
        self.unpermute = torch.as_tensor(np.argsort(cat), dtype=torch.long, device=dev)

    def point_joints(self) -> np.ndarray:
        """(P,) the joint each point belongs to: a joint itself, else the joint that skins its
        (first) vertex most (the head for face landmarks, a finger's last joint for its tip)."""
        out = np.zeros(len(self.points), np.int64)
        weights = self.lbs_weights.cpu()
        for n, point in enumerate(self.points):
            if point.kind == "joint":
                out[n] = point.index
                continue
            if point.kind == "vertex":
                vertex = point.index
            elif point.kind == "landmark":
                vertex = int(self.faces[self.lmk_faces[point.index]][0])
            else:
                vertex = int(self.faces[self.dyn_faces[0, point.index]][0])
            out[n] = int(weights[vertex].argmax())
        return out

    # -- forward ---------------------------------------------------------------------
    def full_pose(self, params: SmplxParams) -> torch.Tensor:
        """(T,55,3) axis-angle: root, 21 body, jaw, eyes, 15+15 hand joints (PCA + mean)."""
        T = params.num_frames
        left = params.left_hand_pose @ self.lhand_comps + self.lhand_mean
        right = params.right_hand_pose @ self.rhand_comps + self.rhand_mean
        return torch.cat([params.global_orient.view(T, 1, 3), params.body_pose.view(T, 21, 3),
                          params.jaw_pose.view(T, 1, 3), params.leye_pose.view(T, 1, 3),
                          params.reye_pose.view(T, 1, 3), left.view(T, 15, 3), right.view(T, 15, 3)], 1)

    def forward(self, params: SmplxParams) -> tuple[torch.Tensor, torch.Tensor]:
        betas, expr = params.betas, params.expression
        T = expr.shape[0]
        rot = rodrigues(self.full_pose(params))  # (T,55,3,3)
        betas = betas.expand(T, -1)  # rows of one shared shape are views
        J = self.J0 + torch.einsum("jcb,tb->tjc", self.Jb, betas) + torch.einsum("jce,te->tjc", self.Je, expr)
        rel = torch.cat([J[:, :1], J[:, 1:] - J[:, self.parents[1:]]], 1)
        # world transforms level by level of the tree: a joint's parent is always in the level above
        level_rots, level_pos = [rot[:, :1]], [J[:, :1]]
        for level, parent_index in zip(self.levels, self.parent_pos):
            parent_rot, parent_t = level_rots[-1][:, parent_index], level_pos[-1][:, parent_index]
            level_rots.append(parent_rot @ rot[:, level])
            level_pos.append((parent_rot @ rel[:, level, :, None])[..., 0] + parent_t)
        world_rot = torch.cat(level_rots, 1)[:, self.level_unpermute]
        world_t = torch.cat(level_pos, 1)[:, self.level_unpermute]
        # relative transforms (what skinning applies to rest-pose vertices)
        world_offset = world_t - (world_rot @ J[..., None])[..., 0]
        A = torch.cat([world_rot.reshape(T, 55, 9), world_offset], -1)  # (T,55,12)
        # selected vertices
        sel = self.sel
        v = (self.v_template[sel] + torch.einsum("vcb,tb->tvc", self.shapedirs[sel], betas)
             + torch.einsum("vce,te->tvc", self.expr_dirs[sel], expr))
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        feat = (rot[:, 1:] - eye).reshape(T, -1)
        v = v + (feat @ self.sel_posedirs).view(T, -1, 3)
        G = torch.einsum("vj,tjk->tvk", self.sel_weights, A)  # (T,S,12)
        vertex_rot = G[..., :9].reshape(T, -1, 3, 3)
        v = (vertex_rot @ v[..., None])[..., 0] + G[..., 9:]
        parts = [world_t[:, self.joint_idx]]
        if self.vert_idx is not None:
            parts.append(v[:, self.vert_idx])
        if self.static_local is not None:
            parts.append((v[:, self.static_local] * self.static_bary[None, ..., None]).sum(2))
        if self.contour_local is not None:
            loc = self.contour_local.expand(T, -1, -1)
            tri = torch.gather(v, 1, loc.reshape(T, -1, 1).expand(-1, -1, 3)).view(T, -1, 3, 3)
            parts.append((tri * self.contour_bary.expand(T, -1, -1)[..., None]).sum(2))
        pts = torch.cat(parts, 1)[:, self.unpermute]
        transl = params.transl[:, None]
        return pts + transl, world_t + transl

    @torch.no_grad()
    def contour_rows(self, params: SmplxParams) -> torch.Tensor:
        """Per-frame row of the contour look-up table from the neck chain's yaw, as smplx does."""
        rot = rodrigues(self.full_pose(params))
        R = torch.eye(3, dtype=rot.dtype, device=rot.device).expand(rot.shape[0], 3, 3)
        for j in NECK_CHAIN:
            R = rot[:, j] @ R
        cos_pitch = torch.sqrt(R[:, 0, 0] ** 2 + R[:, 1, 0] ** 2)
        yaw = torch.round(torch.clamp(-torch.atan2(-R[:, 2, 0], cos_pitch) * 180.0 / np.pi, max=39)).long()
        return torch.where(yaw < 0, torch.where(yaw < -39, torch.full_like(yaw, 78), 39 - yaw), yaw)

