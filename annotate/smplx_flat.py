"""SMPL-X on one flat parameter vector per frame, reduced to the joints a clip observes.

The fitter's inner loop evaluates the model thousands of times on tiny tensors, so the
cost is the number of ops, not their size. This evaluator keeps only what can move an
observed point: the joints whose rotation moves a target (proper ancestors of observed
joints, joints skinning an observed vertex, and their ancestors). Everything else (the
legs of a torso-up clip) stays at zero pose and is not optimised. The chain is walked by
depth level (one batched matmul per level), pose correctives use only the free joints'
columns, and all parameters of a frame live in one (D,) vector. `projected_jacobian` gives
the per-frame Jacobian of the projected points in closed form (torch.func's vmap(jacfwd)
was measured at ~2.6 s for 250 frames on one core; this is ~50 ms), for Gauss-Newton.

Flat layout (`FlatSMPLX.layout`: name -> slice): transl 3, global_orient 3, body (3 per
free body joint), jaw 3, leye 3, reye 3, left_hand / right_hand (PCA), expression, betas.
Groups that move no observed point are absent.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from annotate.smplx_sparse import SparseSMPLX
from mentor.body import Camera
from mentor.body.constants import JAW, LEFT_EYE, LEFT_HAND_JOINTS, NUM_JOINTS, RIGHT_EYE, RIGHT_HAND_JOINTS
from mentor.body.geometry import MIN_DEPTH, rodrigues, skew

LHAND = list(LEFT_HAND_JOINTS)
RHAND = list(RIGHT_HAND_JOINTS)
LEYE, REYE = LEFT_EYE, RIGHT_EYE


class FlatSMPLX(nn.Module):
    """Observed points of SMPL-X from flat per-frame parameters.

    sp: a SparseSMPLX whose contour rows are set (set_contour_rows) for the clip;
    active: (P0,) bool over sp.points, the points the clip observes at least once.
    fingers: (left, right) whether that hand's finger pose (its PCA) is free; a hand held is at the
    PCA's mean (its joints' transforms still carry the points on them, e.g. the pose's thumb point).
    forward(x (N,D), rows (N|1,) frame indices into the contour tables) -> (N,P,3) camera-space
    points, in the order of the active points.
    """

    def __init__(self, sparse: SparseSMPLX, active: np.ndarray, fingers: tuple[bool, bool] = (True, True)):
        super().__init__()
        dev = sparse.v_template.device
        parents = sparse.parents
        points = [p for p, a in zip(sparse.points, active) if a]
        self.point_ids = np.flatnonzero(active)
        # vertices needed by the active points, as (index into sp.sel, barycentric) triples
        P = len(points)
        tri = np.zeros((P, 3), np.int64)
        bary = np.zeros((P, 3), np.float32)
        is_joint = np.zeros(P, bool)
        joint_of = np.zeros(P, np.int64)
        sel = sparse.sel.cpu().numpy()
        where = {int(v): i for i, v in enumerate(sel)}
        static_ids = [p.index for p in sparse.points if p.kind == "landmark"]
        contour_ids = [p.index for p in sparse.points if p.kind == "contour"]
        st_local = sparse.static_local.cpu().numpy() if sparse.static_local is not None else None
        st_bary = sparse.static_bary.cpu().numpy() if sparse.static_bary is not None else None
        ct_local = sparse.contour_local.cpu().numpy() if sparse.contour_local is not None else None  # (R,C,3)
        ct_bary = sparse.contour_bary.cpu().numpy() if sparse.contour_bary is not None else None
        contour_cols = []  # (point position, contour column)
        for n, point in enumerate(points):
            if point.kind == "joint":
                is_joint[n], joint_of[n] = True, point.index
            elif point.kind == "vertex":
                tri[n] = where[point.index]
                bary[n, 0] = 1.0
            elif point.kind == "landmark":
                s = static_ids.index(point.index)
                tri[n], bary[n] = st_local[s], st_bary[s]
            else:
                contour_cols.append((n, contour_ids.index(point.index)))
        # vertices actually used (restrict skinning to them)
        used_rows = set(tri[~is_joint & (bary.sum(1) > 0)].ravel().tolist())
        if contour_cols and ct_local is not None:
            used_rows |= set(ct_local[:, [c for _, c in contour_cols]].ravel().tolist())
        used = np.array(sorted(used_rows), np.int64)
        remap = np.full(len(sel), -1, np.int64)
        remap[used] = np.arange(len(used))
        tri = np.where(bary > 0, remap[tri], 0)
        weights = sparse.sel_weights.cpu().numpy()[used]  # (S,55)

        # which joints' rotations move an observed point
        desc = np.zeros((NUM_JOINTS, NUM_JOINTS), bool)  # desc[a, j]: j is a descendant-or-self of a
        for j in range(NUM_JOINTS):
            a = j
            while a >= 0:
                desc[a, j] = True
                a = parents[a]
        moved_by = np.zeros(NUM_JOINTS, bool)
        for j in joint_of[is_joint]:
            moved_by |= desc[:, j] & (np.arange(NUM_JOINTS) != j)  # proper ancestors move a joint
        skin = (weights > 0).any(0)
        for j in np.flatnonzero(skin):
            moved_by |= desc[:, j]
        chain = moved_by.copy()  # joints whose transform is needed
        for j in list(joint_of[is_joint]) + list(np.flatnonzero(skin)):
            chain |= desc[:, j]
        free = moved_by.copy()
        free[0] = False  # the root is global_orient
        for hand, free_fingers in zip((LHAND, RHAND), fingers):
            if not free_fingers:
                free[hand] = False
        # depth levels over the chain
        depth = np.zeros(NUM_JOINTS, int)
        for j in range(1, NUM_JOINTS):
            depth[j] = depth[parents[j]] + 1
        order = [np.array([0])] + [np.array([j for j in np.flatnonzero(chain) if depth[j] == d and j > 0])
                                   for d in range(1, depth.max() + 1)]
        order = [level for level in order if len(level)]
        flat = np.concatenate(order)
        pos = {int(j): n for n, j in enumerate(flat)}
        self.chain = flat
        self.level_sizes = [len(level) for level in order]
        self.parent_pos = [torch.as_tensor([int(np.flatnonzero(order[d - 1] == parents[j])[0]) for j in order[d]],
                                           device=dev) for d in range(1, len(order))]

        # flat layout
        body_free = [j for j in range(1, 22) if free[j]]
        lay: dict[str, slice] = {}
        n = 0

        def add(name, size):
            nonlocal n
            lay[name] = slice(n, n + size)
            n += size

        add("transl", 3)
        add("global_orient", 3)
        if body_free:
            add("body", 3 * len(body_free))
        for name, j in (("jaw_pose", JAW), ("leye_pose", LEYE), ("reye_pose", REYE)):
            if free[j]:
                add(name, 3)
        self.use_lh = bool(free[LHAND].any())
        self.use_rh = bool(free[RHAND].any())
        if self.use_lh:
            add("left_hand_pose", sparse.num_pca)
        if self.use_rh:
            add("right_hand_pose", sparse.num_pca)
        add("expression", sparse.num_expression)
        add("betas", sparse.num_betas)
        self.layout = lay
        self.dim = n
        self.body_free = body_free
        self.num_pca = sparse.num_pca

        # where each chain joint's axis-angle comes from: a (N, 3*|chain|) = x @ M + m0
        pose_map_t = torch.zeros(n, 3 * len(flat))
        pose_offset = torch.zeros(3 * len(flat))
        lh_c, rh_c = sparse.lhand_comps.cpu(), sparse.rhand_comps.cpu()
        lh_m, rh_m = sparse.lhand_mean.cpu(), sparse.rhand_mean.cpu()
        for c, j in enumerate(flat):
            cols = slice(3 * c, 3 * c + 3)
            if j == 0:
                pose_map_t[lay["global_orient"], cols] = torch.eye(3)
            elif j in body_free:
                k = body_free.index(j)
                pose_map_t[lay["body"].start + 3 * k: lay["body"].start + 3 * k + 3, cols] = torch.eye(3)
            elif j in (JAW, LEYE, REYE) and free[j]:
                name = {JAW: "jaw_pose", LEYE: "leye_pose", REYE: "reye_pose"}[j]
                pose_map_t[lay[name], cols] = torch.eye(3)
            elif j in LHAND:  # a held hand at the PCA's mean, as the output's zero PCA reads
                k = LHAND.index(j)
                if self.use_lh:
                    pose_map_t[lay["left_hand_pose"], cols] = lh_c[:, 3 * k:3 * k + 3]
                pose_offset[cols] = lh_m[3 * k:3 * k + 3]
            elif j in RHAND:
                k = RHAND.index(j)
                if self.use_rh:
                    pose_map_t[lay["right_hand_pose"], cols] = rh_c[:, 3 * k:3 * k + 3]
                pose_offset[cols] = rh_m[3 * k:3 * k + 3]
            # other chain joints (leaf targets of the body) stay at zero rotation
        self.register_buffer("pose_map", pose_map_t.to(dev))
        self.register_buffer("pose_mean", pose_offset.to(dev))
        # rest joints restricted to the chain: J = J0 + Jb b + Je e (kept linear)
        idx = torch.as_tensor(flat, device=dev)
        self.register_buffer("J0", sparse.J0[idx])
        self.register_buffer("Jb", sparse.Jb[idx])
        self.register_buffer("Je", sparse.Je[idx])
        par = torch.as_tensor([pos[int(parents[j])] if j else 0 for j in flat], device=dev)
        self.register_buffer("par", par)
        # skinned vertices: template, blend shapes, correctives for the rotating chain joints
        used_t = torch.as_tensor(sel[used], device=dev)
        self.register_buffer("v_template", sparse.v_template[used_t])
        self.register_buffer("shapedirs", sparse.shapedirs[used_t])
        self.register_buffer("expr_dirs", sparse.expr_dirs[used_t])
        rot_chain = [c for c, j in enumerate(flat) if j != 0 and moved_by[j]]
        self.corr_cols = torch.as_tensor(rot_chain, device=dev)
        rows = torch.as_tensor(np.concatenate([np.arange(9 * (flat[c] - 1), 9 * flat[c]) for c in rot_chain])
                               if rot_chain else np.zeros(0, np.int64), device=dev)
        num_features = sparse.posedirs.shape[0]
        posedirs_used = sparse.posedirs.view(num_features, -1, 3)[:, used_t].reshape(num_features, -1)
        self.register_buffer("posedirs", posedirs_used[rows])  # (9*|rot|, S*3)
        self.register_buffer("weights", torch.as_tensor(weights[:, flat], device=dev))  # (S,|chain|)
        # point extraction
        vert_pts = np.flatnonzero(~is_joint)
        self.register_buffer("tri", torch.as_tensor(tri[vert_pts], device=dev))
        self.register_buffer("bary", torch.as_tensor(bary[vert_pts], device=dev))
        self.register_buffer("joint_cols", torch.as_tensor([pos[int(j)] for j in joint_of[is_joint]], device=dev))
        self.register_buffer("vert_pts", torch.as_tensor(vert_pts, device=dev))
        self.register_buffer("order", torch.as_tensor(np.argsort(np.concatenate([np.flatnonzero(is_joint), vert_pts])),
                                                      device=dev))
        # contour points: per-frame triangles (R rows = sp's contour rows, 1 or T)
        if contour_cols and ct_local is not None:
            ct_pos = [int(np.flatnonzero(vert_pts == p)[0]) for p, _ in contour_cols]
            cols = [c for _, c in contour_cols]
            self.register_buffer("ct_pos", torch.as_tensor(ct_pos, device=dev))
            self.register_buffer("ct_tri", torch.as_tensor(remap[ct_local[:, cols]], device=dev))  # (R,C,3)
            self.register_buffer("ct_bary", torch.as_tensor(ct_bary[:, cols], device=dev))
        else:
            self.ct_pos = None
        self.num_points = P
        self._last_pose = None  # (x, rows, _pose's tensors) of the last evaluation
        # skinning slots: each used vertex's nonzero influences, padded with weight 0
        chain_weights = weights[:, flat]
        K = max(int((chain_weights > 0).sum(1).max()), 1)
        slot_joints = np.zeros((len(used), K), np.int64)
        slot_weights = np.zeros((len(used), K), np.float32)
        for i in range(len(used)):
            nonzero = np.flatnonzero(chain_weights[i] > 0)
            slot_joints[i, :len(nonzero)], slot_weights[i, :len(nonzero)] = nonzero, chain_weights[i, nonzero]
        self.register_buffer("slot_joint", torch.as_tensor(slot_joints, device=dev))
        self.register_buffer("slot_weight", torch.as_tensor(slot_weights, device=dev))
        anc = desc[np.ix_(flat, flat)].T.astype(np.float32)  # anc[j, k]: k is an ancestor-or-self of j
        self.register_buffer("anc_or_self", torch.as_tensor(anc, device=dev))
        self.register_buffer("anc_proper", torch.as_tensor(anc - np.eye(len(flat), dtype=np.float32), device=dev))
        # chain axis-angle components -> x columns: identity blocks, and the hands' PCA
        pose_map_np = pose_map_t.numpy()
        direct_x, direct_a = [], []
        for a_col in range(pose_map_np.shape[1]):
            nonzero = np.flatnonzero(pose_map_np[:, a_col])
            if len(nonzero) == 1 and pose_map_np[nonzero[0], a_col] == 1.0 and not any(
                    nonzero[0] in range(lay[h].start, lay[h].stop)
                    for h in ("left_hand_pose", "right_hand_pose") if h in lay):
                direct_x.append(int(nonzero[0]))
                direct_a.append(a_col)
        self._build_pairs(pose_map_np, direct_x, direct_a, joint_of, is_joint, vert_pts, tri, bary, ct_local,
                          contour_cols, remap, sparse, used, rot_chain, moved_by, K, dev)

    def _build_pairs(self, pose_map_np, direct_x, direct_a, joint_of, is_joint, vert_pts, tri, bary, ct_local,
                     contour_cols, remap, sparse, used, rot_chain, moved_by, K, dev) -> None:
        """(point, rotating chain joint) pairs of the sparse Jacobian, and where they land in x."""
        flat = self.chain
        C = len(flat)
        pos = {int(j): n for n, j in enumerate(flat)}
        anc = self.anc_or_self.cpu().numpy() > 0
        rotating = np.array([j == 0 or moved_by[j] for j in flat])
        slot_joints, slot_weights = self.slot_joint.cpu().numpy(), self.slot_weight.cpu().numpy()
        E = 3 * K
        num_joint_points = int(is_joint.sum())
        entry_coef0 = np.zeros((1, num_joint_points, E), np.float32)
        entry_coef0[..., 0] = 1.0
        entry_joint0 = np.zeros((1, num_joint_points, E), np.int64)
        entry_joint0[0, :, 0] = [pos[int(j)] for j in joint_of[is_joint]]
        self.register_buffer("joint_entry_c", torch.as_tensor(entry_coef0, device=dev))
        self.register_buffer("joint_entry_j", torch.as_tensor(entry_joint0, device=dev))
        # posedirs of the used vertices per rotating joint: (S, |rot|, 3, 9)
        pdv = self.posedirs.view(len(rot_chain), 9, -1, 3).permute(2, 0, 3, 1).cpu().numpy() if rot_chain else None
        rot_pos = {c: n for n, c in enumerate(rot_chain)}
        ct_of = dict(contour_cols)
        P = self.num_points
        pair_point, pair_joint, pd_q, pd_m, full_flags = [], [], [], [], []
        vertex_position = {int(p): i for i, p in enumerate(vert_pts)}
        contour_q, contour_rot, contour_vp = [], [], []  # contour points' corrective pairs
        for n in range(P):
            if is_joint[n]:
                moves = anc[pos[int(joint_of[n])]].copy()
                moves[pos[int(joint_of[n])]] = False
                verts = []
            else:
                if n in ct_of and ct_local is not None:
                    verts = np.unique(remap[ct_local[:, ct_of[n]]]).tolist()
                else:
                    verts = [int(v) for v, b in zip(tri[n], bary[n]) if b > 0]
                moves = np.zeros(C, bool)
                for v in verts:
                    for j, w in zip(slot_joints[v], slot_weights[v]):
                        if w > 0:
                            moves |= anc[j]
            moves &= rotating
            static_vertex = not is_joint[n] and n not in ct_of
            contour_corrective = set()
            if n in ct_of and pdv is not None:  # any row's triangle: its corners' correctives, per frame
                reach = np.abs(pdv[verts]).max(axis=(0, 2, 3))  # (|rot|,)
                contour_corrective = {c for c, r in rot_pos.items() if reach[r] > 1e-7}
                moves[list(contour_corrective)] = True
            if static_vertex and pdv is not None:
                m = sum(b * pdv[v] for v, b in zip(tri[n], bary[n]) if b > 0)  # (|rot|,3,9)
                for c, r in rot_pos.items():
                    if np.abs(m[r]).max() > 1e-7:
                        moves[c] = True
            infl = ([pos[int(joint_of[n])]] if is_joint[n] else
                    sorted({int(j) for v in verts for j, w in zip(slot_joints[v], slot_weights[v]) if w > 0}))
            for k in np.flatnonzero(moves):
                full_flags.append(all(anc[j, k] for j in infl))
                if static_vertex and pdv is not None and k in rot_pos:
                    corrective = m[rot_pos[k]]
                    if np.abs(corrective).max() > 1e-7:
                        pd_q.append(len(pair_point))
                        pd_m.append(corrective)
                if k in contour_corrective:
                    contour_q.append(len(pair_point))
                    contour_rot.append(rot_pos[k])
                    contour_vp.append(vertex_position[n])
                pair_point.append(n)
                pair_joint.append(int(k))
        self.register_buffer("q_point", torch.as_tensor(pair_point, device=dev))
        self.register_buffer("q_joint", torch.as_tensor(pair_joint, device=dev))
        carried_whole = np.array(full_flags, bool)
        self.register_buffer("q_full", torch.as_tensor(np.flatnonzero(carried_whole), device=dev))
        self.register_buffer("q_part", torch.as_tensor(np.flatnonzero(~carried_whole), device=dev))
        if pd_q:
            self.register_buffer("q_pd", torch.as_tensor(pd_q, device=dev))
            self.register_buffer("q_pd_mat", torch.as_tensor(np.stack(pd_m).astype(np.float32), device=dev))
        else:
            self.q_pd = None
        if contour_q:
            self.register_buffer("q_cpd", torch.as_tensor(contour_q, device=dev))
            self.register_buffer("q_cpd_rot", torch.as_tensor(contour_rot, device=dev))
            self.register_buffer("q_cpd_vp", torch.as_tensor(contour_vp, device=dev))
            self.register_buffer("pd_vertex", torch.as_tensor(np.ascontiguousarray(pdv), device=dev))  # (S,|rot|,3,9)
            # each pair's axis-angle components -> x columns (the chain joint's columns of pose_map)
            self.register_buffer("q_cpd_map", torch.as_tensor(np.stack(
                [pose_map_np[:, 3 * k:3 * k + 3].T for k in np.array(pair_joint)[contour_q]]), device=dev))  # (Qc,3,D)
        else:
            self.q_cpd = None
        # scatter targets in the flattened (P,2,D) Jacobian
        D = self.dim
        a2x = dict(zip(direct_a, direct_x))
        direct, flat_idx = [], []
        pca: dict[str, tuple[list, list, list]] = {}
        hands = {h: self.layout[h] for h in ("left_hand_pose", "right_hand_pose") if h in self.layout}
        for n, (pair_pt, k) in enumerate(zip(pair_point, pair_joint)):
            if 3 * k in a2x:
                direct.append(n)
                flat_idx.append([[pair_pt * 2 * D + r * D + a2x[3 * k + i] for i in range(3)] for r in range(2)])
                continue
            for h, hand_columns in hands.items():
                comps = pose_map_np[hand_columns, 3 * k:3 * k + 3]  # (pca, 3)
                if np.abs(comps).sum() > 0:
                    e = pca.setdefault(h, ([], [], []))
                    e[0].append(n)
                    e[1].append([[pair_pt * 2 * D + r * D + c for c in range(hand_columns.start, hand_columns.stop)]
                                 for r in range(2)])
                    e[2].append(comps.T)
        self.q_direct = torch.as_tensor(direct, device=dev)
        self.q_flat_direct = torch.as_tensor(np.array(flat_idx, np.int64).reshape(-1), device=dev)
        self.q_pca = []
        for h, (sel_, idx_, comps_) in pca.items():
            self.q_pca.append((torch.as_tensor(sel_, device=dev),
                               torch.as_tensor(np.array(idx_).reshape(-1), device=dev),
                               torch.as_tensor(np.stack(comps_).astype(np.float32), device=dev)))

    def split(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: x[..., s] for k, s in self.layout.items()}

    def _pose(self, x: torch.Tensor, rows: torch.Tensor | None):
        """Shared forward work: local axis-angles, world rotations/positions, skinned slots.

        The last result is kept: a solver step evaluates the same frames for its cost (with
        autograd), its Jacobian and the depth term's Jacobian, and each reuses it (the values
        of x and rows are compared; a result with autograd history is reused only without it)."""
        last = self._last_pose
        if (last is not None and not (torch.is_grad_enabled() and x.requires_grad)
                and last[0].shape == x.shape and last[0].device == x.device and torch.equal(last[0], x.detach())
                and ((rows is None and last[1] is None)
                     or (rows is not None and last[1] is not None and last[1].shape == rows.shape
                         and torch.equal(last[1], rows)))):
            return last[2]
        q = self._pose_uncached(x, rows)
        self._last_pose = (x.detach().clone(), None if rows is None else rows.clone(),
                           {k: v.detach() for k, v in q.items()})
        return q

    def keep_frames(self, index: torch.Tensor) -> None:
        """Narrow the last evaluation to its frames `index` (N',): a solver that next evaluates
        only the frames whose step it accepted (x_new[index]) reuses their forward pass."""
        last = self._last_pose
        if last is None or len(index) == last[0].shape[0]:
            return
        x, rows, q = last
        kept = {name: value.index_select(0, index) for name, value in q.items() if name != "nidx"}
        kept["nidx"] = torch.arange(len(index), device=x.device)[:, None, None]
        if rows is not None and len(rows) == len(x):
            rows = rows.index_select(0, index)
        self._last_pose = (x.index_select(0, index), rows, kept)

    def _pose_uncached(self, x: torch.Tensor, rows: torch.Tensor | None):
        N = x.shape[0]
        lay = self.layout
        betas = x[:, lay["betas"]]
        expr = x[:, lay["expression"]]
        axis_angle = (x @ self.pose_map + self.pose_mean).view(N, -1, 3)
        rot = rodrigues(axis_angle)  # (N,C,3,3)
        J = self.J0 + torch.einsum("jcb,nb->njc", self.Jb, betas) + torch.einsum("jce,ne->njc", self.Je, expr)
        # index_select, not fancy indexing: its backward is an index_add (fancy indexing's, an
        # accumulating index_put, was a quarter of the autograd pass on keyframe batches)
        rel = J - J.index_select(1, self.par)
        # world transforms level by level: each level's parents are in the level above
        level_rots, level_pos = [rot[:, :1]], [J[:, :1]]
        start = 1
        for size, parent_index in zip(self.level_sizes[1:], self.parent_pos):
            parent_rot, parent_t = level_rots[-1].index_select(1, parent_index), level_pos[-1].index_select(1, parent_index)
            level_rots.append(parent_rot @ rot[:, start:start + size])
            level_pos.append((parent_rot @ rel[:, start:start + size, :, None])[..., 0] + parent_t)
            start += size
        world_rot = torch.cat(level_rots, 1)
        world_t = torch.cat(level_pos, 1)
        u = (self.v_template + torch.einsum("vcb,nb->nvc", self.shapedirs, betas)
             + torch.einsum("vce,ne->nvc", self.expr_dirs, expr))
        if len(self.corr_cols):
            eye = torch.eye(3, dtype=x.dtype, device=x.device)
            feat = (rot.index_select(1, self.corr_cols) - eye).reshape(N, -1)
            u = u + (feat @ self.posedirs).view(N, -1, 3)
        # linear blend skinning over each vertex's few influences ("slots")
        slots = self.slot_joint.reshape(-1)
        S, K = self.slot_joint.shape
        slot_rot = world_rot.index_select(1, slots).view(N, S, K, 3, 3)
        y = ((slot_rot @ (u[:, :, None] - J.index_select(1, slots).view(N, S, K, 3))[..., None])[..., 0]
             + world_t.index_select(1, slots).view(N, S, K, 3))  # (N,S,K,3)
        # the few slots summed one by one (a sum over a middle axis of 2-3 runs an order of magnitude
        # slower per element; the same additions in the same order)
        v = _weighted_sum(y.unbind(2), self.slot_weight[..., None].unbind(1))
        if self.ct_pos is not None:
            r = rows if rows is not None else torch.zeros(N, dtype=torch.long, device=x.device)
            tri = self.tri.expand(N, -1, -1).index_copy(1, self.ct_pos, self.ct_tri[r])
            bary = self.bary.expand(N, -1, -1).index_copy(1, self.ct_pos, self.ct_bary[r])
        else:
            tri, bary = self.tri.expand(N, -1, -1), self.bary.expand(N, -1, -1)
        nidx = torch.arange(N, device=x.device)[:, None, None]
        corners = torch.gather(v, 1, tri.reshape(N, -1, 1).expand(-1, -1, 3)).view(N, tri.shape[1], 3, 3)
        vertex_points = _weighted_sum(corners.unbind(2), bary[..., None].unbind(2))  # (N,Pv,3)
        pts = (torch.cat([world_t.index_select(1, self.joint_cols), vertex_points], 1).index_select(1, self.order)
               + x[:, None, lay["transl"]])
        return dict(aa=axis_angle, rot=rot, Rw=world_rot, tw=world_t, J=J, y=y, tri=tri, bary=bary, nidx=nidx, pts=pts)

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """x (N,D) -> (N,P,3) points; rows (N,) contour-table rows of these frames (None: row 0)."""
        return self._pose(x, rows)["pts"]

    def projected_jacobian(self, x: torch.Tensor, rows: torch.Tensor | None, camera: Camera,
                           with_betas: bool = True, with_expression: bool = True, with_depth: bool = False,
                           contour: bool | torch.Tensor = False, points: torch.Tensor | None = None,
                           columns: torch.Tensor | None = None):
        """Projected points (N,P,2) and their Jacobian (N,P,2,D) w.r.t. x; with_depth: (N,P,3,D),
        the third row each point's camera-space depth Z (what the depth term's gradient needs).
        contour: the contour points' pose correctives (below) False: left out; True: in the
        Jacobian; a covector (N,P,R) over its rows: left out, and their share of
        sum_pr covector_pr J_pr (N,D) returned third (the exact gradient of a Gauss-Newton whose
        matrix is the same as without them; only on `columns`, the others' share left out).
        points (P',) / columns (F,): only these points' rows (positions among the active points) and
        these columns of x (whole layout names), in that order: (N,P',R,F), what a stage that
        weighs only some points and frees only some columns uses, at a fraction of the work
        (None: all).

        Analytic: a small rotation of chain joint k about world axis w moves every point it
        carries by w x (point - joint_k), and the model is linear in shape and expression
        for fixed rotations. Pose correctives enter through each static point's blended
        rotation (joints, vertices and static landmarks); a contour point's (`contour`) through
        its triangle of the frame's row, its corners' rotations and correctives (left out of the
        Gauss-Newton matrix: the fits were tuned without them). Columns of betas are
        zero unless with_betas. tests/annotate/test_smplx_flat.py compares it with autograd.
        """
        N = x.shape[0]
        q = self._pose(x, rows)
        pts, world_rot, world_t, y = q["pts"], q["Rw"], q["tw"], q["y"]
        tri, bary, nidx = q["tri"], q["bary"], q["nidx"]
        # projection derivative (N,P,2,3)
        f = camera.focal
        uv = camera.project(pts)
        z = pts[..., 2].clamp(min=MIN_DEPTH)
        zero = torch.zeros_like(z)
        dproj = torch.stack([torch.stack([f / z, zero, -f * pts[..., 0] / z**2], -1),
                             torch.stack([zero, f / z, -f * pts[..., 1] / z**2], -1)]
                            + ([torch.stack([zero, zero, torch.ones_like(z)], -1)] if with_depth else []), -2)
        R = dproj.shape[-2]  # rows per point: u, v (and Z)
        plan = self._jacobian_plan(points, columns, R)
        # world angular velocity of each chain joint per unit local axis-angle: Rw_parent J_left(aa)
        parents_rot = torch.cat([torch.eye(3, dtype=x.dtype, device=x.device).expand(N, 1, 3, 3),
                                 world_rot[:, self.par[1:]]], 1)
        left_jac = left_jacobian(q["aa"])
        omega = parents_rot @ left_jac  # (N,C,3,3): column i = world axis for component i
        joint_columns = self.joint_cols
        # each point's influences ("entries"): (position y_e, coefficient c_e, chain joint j_e);
        # a joint target is one entry (itself), a vertex point its triangle's skinning slots
        num_vertex_points = tri.shape[1]
        corner_rows = (tri + nidx * y.shape[1]).reshape(-1)  # (N*Pv*3,) rows of (N*S,...): a[nidx, tri] by index_select
        K = y.shape[2]
        E = 3 * K
        # pairs (point P, chain joint k that moves it): lever Z = sum_e [j_e below k] c_e (y_e - t_k)
        pair_point, pair_joint = plan["point"], plan["joint"]
        # a joint above all of a point's influences carries the whole point: Z = p - t_k
        full_point, full_joint = plan["full_point"], plan["full_joint"]
        lever_parts = [pts.index_select(1, full_point) - x[:, None, self.layout["transl"]]
                       - world_t.index_select(1, full_joint)]
        if len(plan["part_point"]):
            entry_pos = torch.cat([torch.nn.functional.pad(world_t[:, joint_columns, None], (0, 0, 0, E - 1)),
                            _corners(y, corner_rows).reshape(N, num_vertex_points, E, 3)], 1).index_select(1, self.order)
            entry_coef = torch.cat([self.joint_entry_c.expand(N, -1, -1),
                            (bary[..., None] * self.slot_weight[tri]).reshape(N, num_vertex_points, E)],
                                   1).index_select(1, self.order)
            entry_joint = torch.cat([self.joint_entry_j.expand(N, -1, -1),
                                     self.slot_joint[tri].reshape(N, num_vertex_points, E)], 1).index_select(1, self.order)
            pp_, part_joint = plan["part_point"], plan["part_joint"]
            carried = entry_coef[:, pp_] * self.anc_or_self[entry_joint[:, pp_], part_joint[:, None]]  # (N,Qp,E)
            lever_parts.append((carried[..., None] * entry_pos[:, pp_]).sum(2)
                               - carried.sum(2)[..., None] * world_t[:, part_joint])
        Z = torch.cat(lever_parts, 1).index_select(1, plan["lever_order"])  # (N,Q,3) in pair order
        # d uv_r / d aa_{k,i} = Jp_r . (omega_ki x Z) = omega_ki . (Z x Jp_r), written out per
        # component (batched 3x3 matmuls are slow on the CPU) in component-major layout: each
        # product runs over a contiguous run of pairs Q, where on the last axes (2 or 3 long) the
        # same products were ~20x slower per element. The per-point and per-joint factors are put
        # in that layout before they are gathered to the pairs (a (.,N,P) or (.,N,C) transpose, not
        # a (.,N,Q) one), and the values stay in it, (N,i,R,Q), for the scatter below
        lever_x, lever_y, lever_z = Z.permute(2, 0, 1).contiguous()[:, :, None]  # (N,1,Q) each
        dproj_x, dproj_y, dproj_z = _select_last(dproj.permute(3, 0, 2, 1), pair_point)  # (N,R,Q) each
        cross_x = lever_y * dproj_z - lever_z * dproj_y  # (N,R,Q)
        cross_y = lever_z * dproj_x - lever_x * dproj_z
        cross_z = lever_x * dproj_y - lever_y * dproj_x
        # omega's rows c (N,3,Q) each, over its columns i
        axes_x, axes_y, axes_z = _select_last(omega.permute(2, 0, 3, 1), pair_joint)
        vals = (cross_x[:, None] * axes_x[:, :, None] + cross_y[:, None] * axes_y[:, :, None]
                + cross_z[:, None] * axes_z[:, :, None])  # (N,3,R,Q)
        blend_rot = _weighted_sum(world_rot.index_select(1, self.slot_joint.reshape(-1))
                                  .view(N, *self.slot_joint.shape, 3, 3).unbind(2),
                                  self.slot_weight[..., None, None].unbind(1))  # (N,S,3,3)
        if plan["pd"] is not None or plan["cpd"] is not None:
            drot = (skew(left_jac.transpose(-1, -2)) @ q["rot"][:, :, None]).flatten(-2).transpose(-1, -2)  # (N,C,9,3)
        if plan["pd"] is not None:  # pose correctives: d u = PD_k : d vec(R_k), then blended rotation
            corrective_pairs = plan["pd"]
            point_rot = _weighted_sum(_corners(blend_rot, corner_rows).view(N, num_vertex_points, 3, 3, 3).unbind(2),
                                      bary[..., None, None].unbind(2))  # (N,Pv,3,3)
            point_rot = torch.cat([torch.zeros(N, len(joint_columns), 3, 3, dtype=x.dtype, device=x.device), point_rot],
                            1).index_select(1, self.order)
            # a matrix shared over the frames: einsum (one bmm per pair), not a broadcast matmul
            M = torch.einsum("nqrc,qcf->nqrf", (dproj.index_select(1, pair_point[corrective_pairs])
                              @ point_rot.index_select(1, pair_point[corrective_pairs])),
                             plan["pd_mat"])  # (N,Qp,R,9)
            _add_last(vals, corrective_pairs, M @ drot[:, pair_joint[corrective_pairs]])
        contour_share = None
        if plan["cpd"] is not None and (not isinstance(contour, bool) or contour):
            # the contour points' correctives, on each frame's triangle: sum_c b_c R_c PD_c
            contour_pairs = plan["cpd"]
            corner = tri.index_select(1, plan["cpd_vp"])  # (N,Qc,3) used-vertex rows
            corner_weight = bary.index_select(1, plan["cpd_vp"])
            corrective = self.pd_vertex[corner, plan["cpd_rot"][None, :, None]]  # (N,Qc,3,3,9)
            corner_rot = blend_rot[nidx, corner]  # (N,Qc,3,3,3)
            blended = _weighted_sum((corner_rot @ corrective).unbind(2), corner_weight[..., None, None].unbind(2))
            M = dproj.index_select(1, pair_point[contour_pairs]) @ blended  # (N,Qc,R,9)
            contour_vals = M @ drot[:, pair_joint[contour_pairs]]  # (N,Qc,R,3)
            if isinstance(contour, bool):
                _add_last(vals, contour_pairs, contour_vals)
            else:
                along = (contour_vals * contour.index_select(1, pair_point[contour_pairs])[..., None]).sum(2)
                contour_share = torch.einsum("nqi,qid->nd", along, plan["cpd_map"])
        # the plan's own buffer, reused: a fresh 25 MB one costs page faults every call (valid until
        # the next call with the same points and columns)
        jac = plan.get("buffer")
        if jac is None or jac.shape != (N, plan["size"]) or jac.device != x.device or jac.dtype != x.dtype:
            jac = plan["buffer"] = torch.zeros(N, plan["size"], dtype=x.dtype, device=x.device)
        else:
            jac.zero_()
        # each direct pair's targets are its own (point, row, joint column) entries: copied, not added
        values = vals.view(N, -1)
        jac.index_copy_(1, plan["direct_target"], values.index_select(1, plan["direct_source"]))
        for source, target, comps in plan["pca"]:  # (N,Qh,R,3) @ (Qh,3,pca)
            hand = values.index_select(1, source).view(N, len(comps), R, 3)
            jac.index_add_(1, target, torch.einsum("nqrc,qcp->nqrp", hand, comps).reshape(N, -1))
        jac = jac.view(N, plan["num_points"], R, plan["num_columns"])
        row_points = plan["rows"]
        if row_points is not None:
            dproj = dproj.index_select(1, row_points)
        _put_columns(jac, plan["transl"], dproj)
        # expression (and shape): linear given the rotations
        column_position = plan["column_position"]
        spans = tuple(name for name, wanted in (("expression", with_expression), ("betas", with_betas))
                      if wanted and bool((column_position[self.layout[name]] >= 0).all()))
        if not spans:
            return (uv, jac) if isinstance(contour, bool) else (uv, jac, self._contour_share(contour_share, x))
        linear = self._linear_plan(plan, spans)
        djoint, dvert_rest, drel = linear["joint_dirs"], linear["vertex_dirs"], linear["rest_offsets"]  # (C|S,3,L)
        dts = [djoint[:1].expand(N, -1, -1, -1)]
        start = 1
        level_world_rots = [world_rot[:, :1]]
        for size, parent_index in zip(self.level_sizes[1:], self.parent_pos):
            parent_rot = level_world_rots[-1][:, parent_index]
            dts.append(torch.einsum("nkij,kjl->nkil", parent_rot, drel[start:start + size]) + dts[-1][:, parent_index])
            level_world_rots.append(world_rot[:, start:start + size])
            start += size
        dtw = torch.cat(dts, 1)  # (N,C,3,L)
        dAt = dtw - torch.einsum("nkij,kjl->nkil", world_rot, djoint)  # (N,C,3,L)
        L = dAt.shape[-1]
        # only the rows' points these columns move: their joints, and their vertex points' triangle corners (S' vertices)
        vertices, vertex_points = linear["vertices"], linear["vertex_points"]
        skin = ((self.weights.index_select(0, vertices) @ dAt.permute(1, 0, 2, 3).reshape(dAt.shape[1], -1))
                .view(-1, N, 3, L).transpose(0, 1))
        dvert = torch.einsum("nsij,sjl->nsil", blend_rot.index_select(1, vertices), dvert_rest[vertices]) + skin  # (N,S',3,L)
        corners = (linear["vertex_position"][tri.index_select(1, vertex_points)] + nidx * len(vertices)).reshape(-1)
        dvp = _weighted_sum(_corners(dvert, corners).view(N, len(vertex_points), 3, 3, -1).unbind(2),
                            bary.index_select(1, vertex_points)[..., None, None].unbind(2))
        dpoint = torch.cat([dtw.index_select(1, linear["joints"]), dvp], 1).index_select(
            1, linear["order"])  # (N,M,3,L)
        if linear["rows"] is not None:
            dproj = dproj.index_select(1, linear["rows"])
        # (N,M,R,3) @ (N,M,3,L) as three broadcast products (tiny batched matmuls are slow on the CPU)
        values = (dproj[..., 0:1] * dpoint[:, :, None, 0] + dproj[..., 1:2] * dpoint[:, :, None, 1]
                  + dproj[..., 2:3] * dpoint[:, :, None, 2])
        if linear["rows"] is None:
            _put_columns(jac, linear["columns"], values)
        else:
            jac.view(N, -1).index_copy_(1, linear["targets"], values.reshape(N, -1))
        return (uv, jac) if isinstance(contour, bool) else (uv, jac, self._contour_share(contour_share, x))

    def _jacobian_plan(self, points: torch.Tensor | None, columns: torch.Tensor | None, rows: int) -> dict:
        """projected_jacobian's pairs and scatter targets for a (N,P',rows,F) Jacobian of some points
        (positions among the active points) on some columns of x (None: all): the pairs whose point is
        kept and whose joint moves a kept column, in their order; cached per (points, columns, rows)."""
        key = (None if points is None else tuple(points.tolist()), None if columns is None else tuple(columns.tolist()),
               rows)
        cache = self.__dict__.setdefault("_plans", {})
        if key in cache:
            return cache[key]
        dev = self.q_point.device
        D, P = self.dim, self.num_points
        points_all = torch.arange(P, device=dev) if points is None else points.to(dev)
        columns_all = torch.arange(D, device=dev) if columns is None else columns.to(dev)
        point_position = torch.full((P,), -1, dtype=torch.long, device=dev)
        point_position[points_all] = torch.arange(len(points_all), device=dev)
        column_position = torch.full((D,), -1, dtype=torch.long, device=dev)
        column_position[columns_all] = torch.arange(len(columns_all), device=dev)
        width = len(columns_all)
        # a chain joint moves the columns its axis-angle is mapped from (pose_map (D, 3C))
        joint_moves = (self.pose_map.view(D, -1, 3).abs().sum(2)[columns_all] > 0).any(0)  # (C,)
        keep = (point_position[self.q_point] >= 0) & joint_moves[self.q_joint]
        new_index = torch.cumsum(keep.long(), 0) - 1

        def kept(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Pair positions (M,) -> (the kept ones' new positions, which of the M were kept)."""
            mask = keep[positions]
            return new_index[positions[mask]], mask

        def targets(flat_index: torch.Tensor, mask: torch.Tensor, count: int) -> torch.Tensor:
            """Scatter targets of (pair, row, column) from the (P,2,D) ones built in _build_pairs."""
            first = flat_index.view(-1, 2, count)[mask][:, 0]  # point * 2D + column
            point, column = first // (2 * D), first % (2 * D)
            position = column_position[column]
            if bool((position < 0).any()):
                raise ValueError(f"projected_jacobian: columns {columns.tolist()} free part of a joint's axis-angle "
                                 "or hand PCA: give whole layout names (ClipObjective.columns)")
            row = torch.arange(rows, device=dev)[None, :, None] * width
            return (point_position[point[:, :1, None]] * rows * width + row + position[:, None, :]).reshape(-1)

        plan = {"point": self.q_point[keep], "joint": self.q_joint[keep], "rows": points,
                "num_points": len(points_all), "num_columns": width, "size": len(points_all) * rows * width,
                "column_position": column_position, "transl": _column_targets(column_position[self.layout["transl"]])}
        full, _ = kept(self.q_full)
        part, _ = kept(self.q_part)
        plan.update(full_point=plan["point"][full], full_joint=plan["joint"][full], part_point=plan["point"][part],
                    part_joint=plan["joint"][part], lever_order=torch.argsort(torch.cat([full, part])))
        plan["points_all"] = points_all
        plan["pd"] = plan["cpd"] = None
        if self.q_pd is not None:
            pd, mask = kept(self.q_pd)
            if len(pd):
                plan.update(pd=pd, pd_mat=self.q_pd_mat[mask])
        if self.q_cpd is not None:
            cpd, mask = kept(self.q_cpd)
            if len(cpd):
                plan.update(cpd=cpd, cpd_rot=self.q_cpd_rot[mask], cpd_vp=self.q_cpd_vp[mask],
                            cpd_map=self.q_cpd_map[mask])
        direct, mask = kept(self.q_direct)
        # where (pair, row, component) is in projected_jacobian's (N,3,R,Q) values, flattened per frame
        num_pairs = len(plan["point"])

        def sources(pairs: torch.Tensor) -> torch.Tensor:
            component = torch.arange(3, device=dev)[None, None, :] * rows * num_pairs
            return (component + torch.arange(rows, device=dev)[None, :, None] * num_pairs + pairs[:, None, None]).reshape(-1)

        # in the Jacobian's order (a scatter to sorted targets ran ~2x faster than in the values' order)
        direct_target, by_target = torch.sort(targets(self.q_flat_direct, mask, 3))
        plan.update(direct_source=sources(direct)[by_target], direct_target=direct_target)
        plan["pca"] = []
        for qsel, flat_index, comps in self.q_pca:
            selected, mask = kept(qsel)
            if len(selected):
                plan["pca"].append((sources(selected), targets(flat_index, mask, comps.shape[-1]), comps[mask]))
        cache[key] = plan
        return plan

    def workspace(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of `shape` (like's dtype and device) kept for `name`: the same memory
        on each call, valid until the next call with that name. A fresh tensor of tens of MB costs page
        faults on every call (the temporal solve's (T,2P,F) Jacobian products: about 30,000 faults, 15 %
        of a step's normal equations)."""
        spaces = self.__dict__.setdefault("_workspaces", {})
        space, size = spaces.get(name), math.prod(shape)
        if space is None or len(space) < size or space.dtype != like.dtype or space.device != like.device:
            space = spaces[name] = torch.empty(size, dtype=like.dtype, device=like.device)  # grows, never shrinks
        return space[:size].view(shape)

    def _linear_plan(self, plan: dict, spans: tuple[str, ...]) -> dict:
        """projected_jacobian's work for the linear columns (`spans`: "expression", "betas", in that
        order) of a plan: only the rows' points these columns move, their joints and their vertex
        points' triangle corners (any frame's, for contour points). Expression moves the face and the
        head's descendants only (146 of talking's 266 rows), shape every point. The points left out
        have exact zeros there (each is a sum of products with an exact zero). Cached in the plan."""
        cache = plan.setdefault("linear", {})
        if spans in cache:
            return cache[spans]
        dev = self.q_point.device
        dirs = {"expression": (self.Je, self.expr_dirs), "betas": (self.Jb, self.shapedirs)}
        joint_dirs = torch.cat([dirs[name][0] for name in spans], -1)  # (C,3,L)
        vertex_dirs = torch.cat([dirs[name][1] for name in spans], -1)  # (S,3,L)
        rest_offsets = joint_dirs - joint_dirs[self.par]
        # which joints' world positions (their own rest offset, an ancestor's or the root's position) and
        # skinning transforms (also the joint's own rest position) these columns move, then which vertices
        offset_moves = rest_offsets.abs().amax((1, 2)) > 0
        offset_moves[0] = bool(joint_dirs[0].abs().max() > 0)
        joint_moves = (self.anc_or_self @ offset_moves.to(self.anc_or_self.dtype)) > 0
        transform_moves = joint_moves | (joint_dirs.abs().amax((1, 2)) > 0)
        vertex_moves = (vertex_dirs.abs().amax((1, 2)) > 0) | ((self.weights > 0) & transform_moves).any(1)
        num_joint_points = len(self.joint_cols)
        in_parts = self.order[plan["points_all"]]  # each row point's place in [joint points, vertex points]
        is_joint = in_parts < num_joint_points
        moved = torch.zeros(len(in_parts), dtype=torch.bool, device=dev)
        moved[is_joint] = joint_moves[self.joint_cols[in_parts[is_joint]]]
        vertex_rows = torch.nonzero(~is_joint)[:, 0]
        moved[vertex_rows] = vertex_moves[self.tri[in_parts[vertex_rows] - num_joint_points]].any(1)
        if self.ct_pos is not None:  # a contour point: any frame's triangle
            contour_moves = vertex_moves[self.ct_tri].any(2).any(0)  # (contour points,)
            where = torch.full((len(self.tri),), -1, dtype=torch.long, device=dev)
            where[self.ct_pos] = torch.arange(len(self.ct_pos), device=dev)
            contour_of = where[in_parts[vertex_rows] - num_joint_points]
            is_contour = contour_of >= 0
            moved[vertex_rows[is_contour]] = contour_moves[contour_of[is_contour]]
        reach = torch.nonzero(moved)[:, 0]  # positions among the rows
        in_parts, is_joint = in_parts[reach], is_joint[reach]
        vertex_points = in_parts[~is_joint] - num_joint_points
        corners = [self.tri.index_select(0, vertex_points).reshape(-1)]
        if self.ct_pos is not None:
            corners.append(self.ct_tri[:, torch.isin(self.ct_pos, vertex_points)].reshape(-1))
        vertices = torch.unique(torch.cat(corners))
        vertex_position = torch.full((len(self.weights),), -1, dtype=torch.long, device=dev)
        vertex_position[vertices] = torch.arange(len(vertices), device=dev)
        column_position = plan["column_position"]
        positions = torch.cat([column_position[self.layout[name]] for name in spans])
        all_rows = len(reach) == len(moved)
        rows_per_point = plan["size"] // (plan["num_points"] * plan["num_columns"])
        targets = ((reach[:, None, None] * rows_per_point + torch.arange(rows_per_point, device=dev)[None, :, None])
                   * plan["num_columns"] + positions[None, None, :]).reshape(-1)
        linear = dict(joint_dirs=joint_dirs, vertex_dirs=vertex_dirs, rest_offsets=rest_offsets,
                      joints=self.joint_cols[in_parts[is_joint]], vertex_points=vertex_points, vertices=vertices,
                      vertex_position=vertex_position,
                      order=torch.argsort(torch.cat([torch.nonzero(is_joint)[:, 0], torch.nonzero(~is_joint)[:, 0]])),
                      rows=None if all_rows else reach, columns=_column_targets(positions), targets=targets)
        cache[spans] = linear
        return linear

    @staticmethod
    def _contour_share(share: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """The contour correctives' gradient share (N,D), zero where the clip has none."""
        return share if share is not None else torch.zeros_like(x)



def _as_run(index: torch.Tensor) -> slice | torch.Tensor:
    """Positions (M,) as a slice where they are consecutive (written in place, not scattered), else as they are."""
    if len(index) and bool((index.diff() == 1).all()):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _select_last(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[..., index] as one index_select on the columns of a 2-D view (on a 4-D tensor's last
    axis index_select was ~5x slower)."""
    return values.reshape(-1, values.shape[-1]).index_select(1, index).view(*values.shape[:-1], len(index))


def _add_last(values: torch.Tensor, pairs: torch.Tensor, added: torch.Tensor) -> None:
    """values (N,3,R,Q)[..., pairs] += added (N,Q',R,3), in place."""
    values.view(-1, values.shape[-1]).index_add_(1, pairs, added.permute(0, 3, 2, 1).reshape(-1, len(pairs)))


def _put_columns(jacobian: torch.Tensor, columns: tuple, values: torch.Tensor) -> None:
    """jacobian[..., targets] = values[..., sources] for _column_targets' (targets, sources)."""
    targets, sources = columns
    if isinstance(targets, slice) or len(targets):
        jacobian[..., targets] = values[..., sources]


def _column_targets(position: torch.Tensor) -> tuple:
    """Column positions (M,) in a Jacobian, -1 where not in it -> (targets, sources) for _put_columns."""
    sources = torch.nonzero(position >= 0)[:, 0]
    return _as_run(position[sources]), _as_run(sources)


def _weighted_sum(values: tuple[torch.Tensor, ...], weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """sum_k values[k] * weights[k] (broadcast), added in order k = 0, 1, ...: what (values * weights).sum
    over their stacked axis gives, without a reduction over a short middle axis."""
    total = values[0] * weights[0]
    for value, weight in zip(values[1:], weights[1:]):
        total = total + value * weight
    return total


def _corners(values: torch.Tensor, corner_rows: torch.Tensor) -> torch.Tensor:
    """values (N,S,...) at each frame's triangle corners, values[nidx, tri] as one index_select on
    the rows of (N*S,...) (advanced indexing's gather was several times slower): (N*Pv*3,...)."""
    return values.reshape(-1, *values.shape[2:]).index_select(0, corner_rows)


def left_jacobian(axis_angle: torch.Tensor) -> torch.Tensor:
    """SO(3) left Jacobian of the exponential map at axis-angle aa (...,3) -> (...,3,3).

    d exp(a) / d a_i = [J_l(a) e_i]_x exp(a): the world-frame rotation a change of a causes.
    """
    th2 = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]
    angle = torch.sqrt(th2 + 1e-12)
    small = th2 < 1e-6
    safe = torch.where(small, torch.ones_like(angle), angle)
    coef1 = torch.where(small, 0.5 - th2 / 24, (1 - torch.cos(safe)) / safe**2)
    coef2 = torch.where(small, 1.0 / 6 - th2 / 120, (safe - torch.sin(safe)) / safe**3)
    cross_matrix = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + coef1 * cross_matrix + coef2 * (cross_matrix @ cross_matrix)

