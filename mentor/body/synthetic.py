"""Geometry of the synthetic SMPL-X stand-in (see mentor.bodymodel).

A rest-pose (T-pose, metres, y up, x = the body's left, z = forward) body made of
generalised cylinders along the bones, an ellipsoid head with a nose, and two eyeballs,
with skinning weights to SMPL-X's 55 joints, a joint regressor (the centroid of the
vertex ring at each joint, so joints follow the shape blend shapes), shape/expression/
pose blend shapes, hand PCA, and the 51 + 17x79 face landmark embedding. Vertices that
smplx addresses by index (smplx/vertex_ids.py: nose, eyes, ears, fingertips, toes) are
moved to those indices, so smplx's extra joints land where their names say.
"""

from __future__ import annotations

import numpy as np

# smplx/vertex_ids.py, 'smplx' entry: name -> index the library reads.
VERTEX_IDS = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6,
    "rthumb": 8079, "rindex": 7669, "rmiddle": 7794, "rring": 7905, "rpinky": 8022,
    "lthumb": 5361, "lindex": 4933, "lmiddle": 5058, "lring": 5169, "lpinky": 5286,
    "LBigToe": 5770, "LSmallToe": 5780, "LHeel": 8846, "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635,
}

HEAD_C = np.array([0.0, 0.68, 0.01])
HEAD_R = np.array([0.075, 0.11, 0.095])
EYE_R = 0.012


class _Mesh:
    """Accumulates parts: vertices, faces, skin weights, axis points, part labels."""

    def __init__(self) -> None:
        self.v: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.w: list[np.ndarray] = []
        self.axis: list[np.ndarray] = []  # a point on the bone axis, for the girth blend shape
        self.part: list[np.ndarray] = []
        self.n = 0
        self.rings: dict[int, np.ndarray] = {}  # joint -> vertex ids of the ring at it
        self.part_names: list[str] = []

    def add(self, v, f, w, axis, name) -> np.ndarray:
        ids = np.arange(self.n, self.n + len(v))
        self.v.append(v); self.f.append(f + self.n); self.w.append(w); self.axis.append(axis)
        if name not in self.part_names:
            self.part_names.append(name)
        self.part.append(np.full(len(v), self.part_names.index(name)))
        self.n += len(v)
        return ids

    def arrays(self):
        return (np.concatenate(self.v), np.concatenate(self.f), np.concatenate(self.w),
                np.concatenate(self.axis), np.concatenate(self.part))


def _frame(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to direction d (the cross-section axes)."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(d, ref); u /= np.linalg.norm(u)
    return u, np.cross(d, u)


def _tube(mesh: _Mesh, pts, radii, joints, name, around=16, per_seg=6, cap_start=False, cap_end=True,
          parent=None, ring_joint_ids=None) -> None:
    """A generalised cylinder along pts (n,3) with radii (n,2) (across u, across w).

    joints[i] drives the segment pts[i] -> pts[i+1]; rings near a joint blend with the
    previous segment's joint (or `parent` for the first), which softens the bends.
    """
    pts = np.asarray(pts, float); radii = np.asarray(radii, float)
    if radii.ndim == 1:
        radii = np.stack([radii, radii], 1)
    nj = 55
    verts, weights, axis, ring_idx = [], [], [], []
    ang = np.linspace(0, 2 * np.pi, around, endpoint=False)
    nseg = len(pts) - 1
    for s in range(nseg):
        d = pts[s + 1] - pts[s]; d /= np.linalg.norm(d)
        u, w_ = _frame(d)
        last = s == nseg - 1
        for k in range(per_seg + (1 if last else 0)):
            t = k / per_seg
            c = pts[s] * (1 - t) + pts[s + 1] * t
            r = radii[s] * (1 - t) + radii[s + 1] * t
            ring = c + np.outer(np.cos(ang) * r[0], u) + np.outer(np.sin(ang) * r[1], w_)
            wt = np.zeros(nj)
            prev = joints[s - 1] if s > 0 else parent
            if t >= 1.0 and (ring_joint_ids or {}).get(s + 1) is not None:
                wt[joints[s]] += 0.5; wt[ring_joint_ids[s + 1]] += 0.5
            elif t < 0.25 and prev is not None:
                a = 0.5 + 2 * t
                wt[joints[s]] += a; wt[prev] += 1 - a
            else:
                wt[joints[s]] = 1.0
            if k == 0 or (last and k == per_seg):
                ring_idx.append((s + (1 if k else 0), len(verts) * around))
            verts.append(ring); weights.append(np.tile(wt, (around, 1))); axis.append(np.tile(c, (around, 1)))
    nr = len(verts)
    v = np.concatenate(verts); w = np.concatenate(weights); ax = np.concatenate(axis)
    faces = []
    for i in range(nr - 1):
        for j in range(around):
            a, b = i * around + j, i * around + (j + 1) % around
            c_, d_ = a + around, b + around
            faces += [[a, c_, b], [b, c_, d_]]
    extra_v, extra_w, extra_a = [], [], []
    if cap_start:
        pole = len(v) + len(extra_v)
        extra_v.append(pts[0]); extra_w.append(w[0]); extra_a.append(pts[0])
        faces += [[pole, (j + 1) % around, j] for j in range(around)]
    if cap_end:
        pole = len(v) + len(extra_v)
        d = pts[-1] - pts[-2]; d /= np.linalg.norm(d)
        extra_v.append(pts[-1] + d * radii[-1].mean()); extra_w.append(w[-1]); extra_a.append(pts[-1])
        base = (nr - 1) * around
        faces += [[base + j, pole, base + (j + 1) % around] for j in range(around)]
    if extra_v:
        v = np.concatenate([v, extra_v]); w = np.concatenate([w, extra_w]); ax = np.concatenate([ax, extra_a])
    ids = mesh.add(v, np.array(faces), w, ax, name)
    for point_i, start in ring_idx:
        rj = ring_joint_ids or {}
        jid = rj[point_i] if point_i in rj else (joints[point_i] if point_i < len(joints) else None)
        if jid is not None and jid not in mesh.rings:
            mesh.rings[jid] = ids[start:start + around]


def _ellipsoid(mesh: _Mesh, center, radii, n_lat, n_lon, joint, name) -> np.ndarray:
    lat = np.linspace(0, np.pi, n_lat + 2)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    # z forward is the "front pole" axis for the head's face: theta from +y down.
    x = np.sin(la) * np.sin(lo); y = np.cos(la); z = np.sin(la) * np.cos(lo)
    ring = np.stack([x, y, z], -1).reshape(-1, 3)
    v = np.concatenate([ring, [[0, 1, 0]], [[0, -1, 0]]]) * radii + center
    faces = []
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            faces += [[a, b, a + n_lon], [b, b + n_lon, a + n_lon]]
    top, bot = n_lat * n_lon, n_lat * n_lon + 1
    faces += [[top, (j + 1) % n_lon, j] for j in range(n_lon)]
    base = (n_lat - 1) * n_lon
    faces += [[bot, base + j, base + (j + 1) % n_lon] for j in range(n_lon)]
    w = np.zeros((len(v), 55)); w[:, joint] = 1
    return mesh.add(v, np.array(faces), w, np.tile(center, (len(v), 1)), name)


def _body(mesh: _Mesh) -> None:
    """Torso, neck, limbs, hands and feet (head and eyes are added by the caller)."""
    # torso along y; ring centres are the spine joints
    ys = [(-0.14, 0), (0.0, 0), (0.11, 3), (0.24, 6), (0.30, 9), (0.44, 9), (0.52, 12)]
    pts = [(0, y, 0.0) for y, _ in ys]
    radii = [(0.10, 0.16), (0.10, 0.16), (0.09, 0.14), (0.10, 0.15), (0.10, 0.17), (0.08, 0.19), (0.055, 0.065)]
    _tube(mesh, pts, radii, [j for _, j in ys][:-1], "torso", around=44, per_seg=7, cap_start=True,
          cap_end=False, ring_joint_ids={0: None, 1: 0, 2: 3, 3: 6, 4: 9, 5: None, 6: 12})
    _tube(mesh, [(0, 0.52, 0.0), (0, 0.60, 0.02)], [0.05, 0.05], [12], "neck", around=24, per_seg=6,
          cap_end=False, ring_joint_ids={1: 15})
    for side, sgn in (("l", 1), ("r", -1)):
        o = 0 if side == "l" else 1
        collar, shoulder, elbow, wrist = 13 + o, 16 + o, 18 + o, 20 + o
        _tube(mesh, [(sgn * 0.07, 0.43, 0.0), (sgn * 0.17, 0.45, -0.01), (sgn * 0.43, 0.45, -0.03),
                     (sgn * 0.67, 0.45, -0.02)], [0.05, 0.052, 0.04, 0.03], [collar, shoulder, elbow],
              f"arm_{side}", around=24, per_seg=10, cap_end=False, parent=9, ring_joint_ids={3: wrist})
        hip, knee, ankle, foot = 1 + o, 4 + o, 7 + o, 10 + o
        _tube(mesh, [(sgn * 0.07, -0.08, 0.0), (sgn * 0.10, -0.47, 0.0), (sgn * 0.10, -0.88, -0.03)],
              [0.075, 0.055, 0.045], [hip, knee], f"leg_{side}", around=24, per_seg=10, cap_end=False,
              parent=0, ring_joint_ids={2: ankle})
        _tube(mesh, [(sgn * 0.10, -0.93, -0.07), (sgn * 0.10, -0.90, -0.03), (sgn * 0.11, -0.93, 0.09),
                     (sgn * 0.11, -0.94, 0.17)], [0.03, 0.04, 0.035, 0.03], [ankle, ankle, foot],
              f"foot_{side}", around=16, per_seg=5, cap_start=True, parent=knee, ring_joint_ids={2: foot})
        w = np.array([sgn * 0.67, 0.45, -0.02])
        _tube(mesh, [w, w + (sgn * 0.085, 0, 0)], [(0.016, 0.045), (0.014, 0.045)], [wrist], f"palm_{side}",
              around=20, per_seg=6, cap_start=True, cap_end=True, parent=elbow)
        # fingers: (first joint id offset from 25/40, base offset, segment lengths, radius)
        base = 25 if side == "l" else 40
        fingers = {
            "index": (0, (0.095, 0.004, 0.028), (0.035, 0.025, 0.022), 0.0085),
            "middle": (3, (0.097, 0.004, 0.006), (0.038, 0.027, 0.024), 0.0088),
            "pinky": (6, (0.080, -0.002, -0.036), (0.027, 0.020, 0.019), 0.0072),
            "ring": (9, (0.090, 0.002, -0.016), (0.035, 0.025, 0.022), 0.0082),
            "thumb": (12, (0.022, -0.012, 0.030), (0.032, 0.028, 0.025), 0.0095),
        }
        for fname, (off, b, segs, r) in fingers.items():
            dirn = np.array([sgn, 0, 0.0]) if fname != "thumb" else np.array([sgn * 0.7, -0.1, 0.7])
            dirn /= np.linalg.norm(dirn)
            p0 = w + np.array([sgn * b[0], b[1], b[2]])
            pts = [p0, p0 + dirn * segs[0], p0 + dirn * (segs[0] + segs[1]), p0 + dirn * sum(segs)]
            j = [base + off, base + off + 1, base + off + 2]
            _tube(mesh, pts, [r, r * 0.95, r * 0.9, r * 0.8], j, f"{fname}_{side}", around=10, per_seg=4,
                  cap_end=True, parent=wrist)


def _face_points() -> tuple[np.ndarray, np.ndarray]:
    """68 iBUG face points on the head (x, y); returns (static 51 in smplx order, contour 17 alpha).

    smplx orders its face landmarks as iBUG 17..67 (brows, nose, eyes, mouth) then the 17
    contour points (iBUG 0..16). Right (iBUG 17-21, 36-41, 48) is the body's right: -x.
    """
    brows = [(-0.055, 0.712), (-0.045, 0.718), (-0.035, 0.720), (-0.025, 0.719), (-0.015, 0.715),
             (0.015, 0.715), (0.025, 0.719), (0.035, 0.720), (0.045, 0.718), (0.055, 0.712)]
    nose = [(0, 0.690), (0, 0.678), (0, 0.666), (0, 0.655),
            (-0.018, 0.648), (-0.009, 0.645), (0, 0.644), (0.009, 0.645), (0.018, 0.648)]
    eyes = [(-0.048, 0.690), (-0.040, 0.697), (-0.025, 0.697), (-0.017, 0.690), (-0.025, 0.684), (-0.040, 0.684),
            (0.017, 0.690), (0.025, 0.697), (0.040, 0.697), (0.048, 0.690), (0.040, 0.684), (0.025, 0.684)]
    mouth = [(-0.025, 0.625), (-0.016, 0.632), (-0.006, 0.635), (0, 0.634), (0.006, 0.635), (0.016, 0.632),
             (0.025, 0.625), (0.016, 0.617), (0.006, 0.614), (0, 0.613), (-0.006, 0.614), (-0.016, 0.617),
             (-0.020, 0.625), (-0.007, 0.628), (0, 0.628), (0.007, 0.628), (0.020, 0.625), (0.007, 0.621),
             (0, 0.620), (-0.007, 0.621)]
    static = np.array(brows + nose + eyes + mouth, float)
    contour_alpha = np.linspace(-80, 80, 17)  # azimuth around the head, degrees (- = right side)
    return static, contour_alpha


def _on_head(xy: np.ndarray) -> np.ndarray:
    """Points (n,2) pushed onto the front of the head ellipsoid: (n,3)."""
    x = (xy[:, 0] - HEAD_C[0]) / HEAD_R[0]; y = (xy[:, 1] - HEAD_C[1]) / HEAD_R[1]
    z = np.sqrt(np.clip(1 - x**2 - y**2, 0.02, None))
    return np.stack([xy[:, 0], xy[:, 1], HEAD_C[2] + z * HEAD_R[2]], 1)


def _contour_point(alpha_deg: np.ndarray) -> np.ndarray:
    """Jaw-line points at azimuths (degrees) around the lower head: (n,3)."""
    a = np.deg2rad(alpha_deg)
    height = 0.60 + 0.085 * (np.abs(a) / np.deg2rad(90)) ** 1.6  # chin low, sides up to the ears
    yn = np.clip((height - HEAD_C[1]) / HEAD_R[1], -0.99, 0.99)
    s = np.sqrt(1 - yn**2)
    return np.stack([HEAD_C[0] + HEAD_R[0] * s * np.sin(a), height, HEAD_C[2] + HEAD_R[2] * s * np.cos(a)], 1)


def _closest_faces(points, verts, faces, allowed) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the allowed face it projects into (nearest) and its barycentrics."""
    centroid = verts[faces[allowed]].mean(1)
    out_f, out_b = [], []
    for p in points:
        near = np.argsort(np.linalg.norm(centroid - p, axis=1))[:64]  # only faces close by
        cand = faces[allowed[near]]
        a, b, c = verts[cand[:, 0]], verts[cand[:, 1]], verts[cand[:, 2]]
        v0, v1, v2 = b - a, c - a, p - a
        d00 = (v0 * v0).sum(1); d01 = (v0 * v1).sum(1); d11 = (v1 * v1).sum(1)
        d20 = (v2 * v0).sum(1); d21 = (v2 * v1).sum(1)
        den = d00 * d11 - d01 * d01
        bv = (d11 * d20 - d01 * d21) / den; bw = (d00 * d21 - d01 * d20) / den; bu = 1 - bv - bw
        bary = np.stack([bu, bv, bw], 1)
        proj = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
        dist = np.linalg.norm(proj - p, axis=1) + 10 * np.clip(-bary, 0, None).sum(1)
        i = int(np.argmin(dist))
        bi = np.clip(bary[i], 0, None); bi /= bi.sum()
        out_f.append(allowed[near[i]]); out_b.append(bi)
    return np.array(out_f, np.int64), np.array(out_b, np.float32)


def build(seed: int, tag: str, parents: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mesh = _Mesh()
    _body(mesh)
    _ellipsoid(mesh, HEAD_C, HEAD_R, 44, 52, 15, "head")
    _tube(mesh, [(0, 0.672, 0.095), (0, 0.660, 0.112), (0, 0.652, 0.122)], [(0.006, 0.010), (0.008, 0.013), (0.007, 0.011)],
          [15, 15], "nose", around=12, per_seg=3, cap_end=True)
    eyes = {}
    for jid, sgn in ((23, 1), (24, -1)):
        eyes[jid] = _ellipsoid(mesh, np.array([sgn * 0.032, 0.69, 0.086]), np.full(3, EYE_R), 17, 32, jid, f"eye_{jid}")
    v, f, w, axis, part = mesh.arrays()
    names = mesh.part_names

    # jaw: the lower front of the head (and chin side) follows joint 22
    jaw_ring_y = 0.615
    lower = (part == names.index("head")) & (v[:, 2] > HEAD_C[2] - 0.02)
    wj = np.clip((0.624 - v[:, 1]) / 0.008, 0, 1) * np.clip((v[:, 2] - (HEAD_C[2] - 0.02)) / 0.04, 0, 1)
    wj = np.where(lower, wj, 0.0)
    w[:, 22] = wj; w[:, 15] = np.where(lower, 1 - wj, w[:, 15])

    # joint regressor: centroid of the ring at each joint; jaw from a head latitude ring, eyes from eyeballs
    jreg = np.zeros((55, len(v)))
    for j, ids in mesh.rings.items():
        jreg[j, ids] = 1.0 / len(ids)
    hv = np.where(part == names.index("head"))[0]
    ring_y = v[hv, 1][np.argmin(np.abs(v[hv, 1] - jaw_ring_y))]
    band = hv[np.abs(v[hv, 1] - ring_y) < 1e-6]
    jreg[22, band] = 1.0 / len(band)
    for j, ids in eyes.items():
        jreg[j, ids] = 1.0 / len(ids)
    missing = [j for j in range(55) if jreg[j].sum() == 0]
    if missing:
        raise RuntimeError(f"synthetic SMPL-X: no regressor ring for joints {missing}")
    joints = jreg @ v

    # put the vertices smplx addresses by index where their names say
    def nearest(p, part_name):
        ids = np.where(part == names.index(part_name))[0]
        return int(ids[np.argmin(np.linalg.norm(v[ids] - p, axis=1))])

    wanted = {
        "nose": nearest((0, 0.652, 0.14), "nose"),
        "leye": nearest((0.032, 0.69, 0.2), "eye_23"), "reye": nearest((-0.032, 0.69, 0.2), "eye_24"),
        "lear": nearest((0.2, 0.68, 0.0), "head"), "rear": nearest((-0.2, 0.68, 0.0), "head"),
    }
    for side, sgn in (("l", 1), ("r", -1)):
        for fn in ("thumb", "index", "middle", "ring", "pinky"):
            ids = np.where(part == names.index(f"{fn}_{side}"))[0]
            wanted[f"{side}{fn}"] = int(ids[-1])  # the end-cap pole: the finger tip
        S = side.upper()
        wanted[f"{S}BigToe"] = nearest((sgn * 0.08, -0.94, 0.2), f"foot_{side}")
        wanted[f"{S}SmallToe"] = nearest((sgn * 0.14, -0.94, 0.17), f"foot_{side}")
        wanted[f"{S}Heel"] = nearest((sgn * 0.10, -0.96, -0.12), f"foot_{side}")
    order = np.arange(len(v))  # order[new] = old
    pos = np.arange(len(v))  # pos[old] = new
    for name, target in VERTEX_IDS.items():
        src = wanted[name]
        a, b = pos[src], target
        oa, ob = order[a], order[b]
        order[a], order[b] = ob, oa
        pos[ob], pos[oa] = a, b
    v, w, axis, part = v[order], w[order], axis[order], part[order]
    f = pos[f]; jreg = jreg[:, order]
    head_faces = np.where(part[f[:, 0]] == names.index("head"))[0]
    nose_faces = np.where(part[f[:, 0]] == names.index("nose"))[0]

    # face landmarks: static 51 on the head (nose points on the nose), contour per neck yaw
    static_xy, alpha0 = _face_points()
    static = _on_head(static_xy)
    on_nose = np.zeros(51, bool); on_nose[10:14] = True  # nose bridge goes down the ridge
    static[10:14] = np.array([[0, 0.69, 0.099], [0, 0.676, 0.106], [0, 0.664, 0.115], [0, 0.653, 0.128]])
    lf = np.zeros(51, np.int64); lb = np.zeros((51, 3), np.float32)
    for mask, allowed in ((on_nose, nose_faces), (~on_nose, head_faces)):
        fi, bi = _closest_faces(static[mask], v, f, allowed)
        lf[mask] = fi; lb[mask] = bi
    dyn_f = np.zeros((79, 17), np.int64); dyn_b = np.zeros((79, 17, 3), np.float32)
    for row in range(79):
        yaw = row if row <= 39 else -(row - 39)
        alpha = alpha0.copy()
        # the side turning away from the camera shows its silhouette closer to the chin
        far = np.sign(alpha) == np.sign(yaw)
        alpha[far] *= (90 - min(abs(yaw), 60)) / 90
        dyn_f[row], dyn_b[row] = _closest_faces(_contour_point(alpha), v, f, head_faces)

    # shape blend shapes (10) and expression blend shapes (10): smooth, interpretable fields
    nv = len(v)
    pelvis = joints[0]
    shapedirs = np.zeros((nv, 3, 20))
    shapedirs[:, :, 0] = 0.04 * (v - pelvis)  # overall size
    radial = v - axis
    is_limb_or_torso = ~np.isin(part[:], [names.index(n) for n in ("head", "nose", "eye_23", "eye_24")])
    shapedirs[:, :, 1] = 0.12 * radial * is_limb_or_torso[:, None]  # girth
    arm = np.isin(part, [names.index(n) for n in names if n.startswith(("arm", "palm", "thumb", "index",
                                                                       "middle", "ring", "pinky"))])
    shapedirs[:, 0, 2] = 0.015 * np.sign(v[:, 0]) * (arm | (is_limb_or_torso & (v[:, 1] > 0.38)))  # shoulders
    shapedirs[:, 0, 3] = 0.05 * np.sign(v[:, 0]) * np.clip(np.abs(v[:, 0]) - 0.17, 0, None) / 0.5 * arm  # arm length
    shapedirs[:, 1, 4] = -0.04 * np.clip(-v[:, 1], 0, None)  # leg length
    is_head = np.isin(part, [names.index(n) for n in ("head", "nose", "eye_23", "eye_24")])
    shapedirs[:, :, 5] = 0.05 * (v - HEAD_C) * is_head[:, None]  # head size
    shapedirs[:, 1, 6] = 0.03 * np.clip(v[:, 1] - 0.11, 0, 0.4) / 0.4 + 0.03 * (v[:, 1] > 0.51)  # torso length
    face = is_head & (v[:, 2] > 0.04)

    def bump(c, s):
        return np.exp(-np.sum((v - np.asarray(c)) ** 2, 1) / (2 * s**2)) * face

    for k in range(7, 10):  # small smooth random shape fields
        c = v[rng.integers(nv)]
        shapedirs[:, :, k] = 0.01 * rng.normal(size=3) * np.exp(-np.sum((v - c) ** 2, 1) / 0.02)[:, None]
    e = shapedirs[:, :, 10:]
    e[:, 1, 0] = -0.010 * bump((0, 0.6, 0.09), 0.025)  # lower face down (mouth open)
    for sgn in (1, -1):
        e[:, 0, 1] += sgn * 0.006 * bump((sgn * 0.025, 0.625, 0.09), 0.01)  # smile: corners out and up
        e[:, 1, 1] += 0.005 * bump((sgn * 0.025, 0.625, 0.09), 0.01)
        e[:, 1, 2] += 0.006 * bump((sgn * 0.035, 0.718, 0.08), 0.015)  # brows up
        e[:, 1, 4] += -0.004 * bump((sgn * 0.032, 0.698, 0.09), 0.008)  # eyelids down
    e[:, 2, 3] = 0.006 * bump((0, 0.625, 0.1), 0.012)  # pucker
    e[:, 0, 3] = -0.006 * np.sign(v[:, 0]) * bump((0, 0.625, 0.1), 0.015)
    for k in range(5, 10):
        c = np.array([rng.uniform(-0.04, 0.04), rng.uniform(0.61, 0.72), 0.09])
        e[:, :, k] = 0.004 * rng.normal(size=3) * bump(c, 0.015)[:, None]

    # pose correctives: each joint's vertices shift a little with that joint's rotation
    posedirs = np.zeros((nv, 3, 54 * 9))
    for j in range(1, 55):
        m = rng.normal(size=(3, 9)) * 0.004
        posedirs[:, :, 9 * (j - 1):9 * j] = w[:, j, None, None] * m[None]

    # hand PCA: first components are interpretable curls, the rest an orthonormal fill
    def hand_basis(sgn: float) -> tuple[np.ndarray, np.ndarray]:
        curl = np.zeros((15, 3))
        curl[:12, 2] = -sgn  # index/middle/pinky/ring bend about z toward the palm
        thumb = np.zeros((15, 3)); thumb[12:, 1] = sgn * 0.6; thumb[12:, 2] = -sgn * 0.5
        spread = np.zeros((15, 3)); spread[[0, 6], 1] = [sgn, -sgn]; spread[[9], 1] = -sgn * 0.5
        fist = curl.copy(); fist[[0, 1, 2], 2] *= 0.3
        first = np.stack([curl.ravel(), thumb.ravel(), spread.ravel(), fist.ravel()])
        q, _ = np.linalg.qr(np.concatenate([first.T, rng.normal(size=(45, 41))], 1))
        comps = q.T * 1.0
        comps[:4] *= np.sign((comps[:4] * first).sum(1, keepdims=True))
        mean = 0.15 * curl.ravel()
        return comps, mean

    hcl, hml = hand_basis(1.0)
    hcr, hmr = hand_basis(-1.0)
    kintree = np.stack([np.where(parents < 0, 4294967295, parents), np.arange(55)]).astype(np.int64)
    return {
        "v_template": v.astype(np.float32), "f": f.astype(np.int32), "J_regressor": jreg.astype(np.float32),
        "weights": w.astype(np.float32), "kintree_table": kintree, "shapedirs": shapedirs.astype(np.float32),
        "posedirs": posedirs.astype(np.float32), "hands_componentsl": hcl.astype(np.float32),
        "hands_componentsr": hcr.astype(np.float32), "hands_meanl": hml.astype(np.float32),
        "hands_meanr": hmr.astype(np.float32), "lmk_faces_idx": lf, "lmk_bary_coords": lb,
        "dynamic_lmk_faces_idx": dyn_f, "dynamic_lmk_bary_coords": dyn_b,
        "synthetic": np.array(tag), "part_names": np.array(names), "vertex_part": part.astype(np.int16),
    }
