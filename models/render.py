"""Control renderer: a torch z-buffer rasteriser and the 2D body controls VLOGGER conditions on.

`rasterize` turns camera-space meshes (B,V,3) into per-pixel face index, depth and
perspective-correct barycentrics, batched over frames, vectorised (no Python loop over
triangles or pixels; triangles go in chunks bounded by memory), the same code on CPU and
CUDA. Conventions: OpenCV pinhole, +z forward, pixel (x, y) has its centre at the integer
coordinates (x, y) (as `Camera.project` and cv2 drawing use them); a pixel is covered by a
triangle when its centre is inside it or on its edge; nearer depth wins; no back-face culling
(the first surface along the ray, as ray casting finds it); triangles with a vertex closer
than `near` are dropped.

From the fragments (`render_controls`):
- dense map: the template (rest-pose) position of the visible surface point, normalised to the
  template's bounding box, (B,H,W,3) in [0,1], 0 on background;
- part masks: (B,H,W,Nc) binary, one channel per `PART_NAMES` entry, from per-vertex labels
  (a face takes the label of its first vertex);
- warped reference: each visible surface point takes its colour from where it projects in the
  reference frame, if it is visible there (same face, or depth within a tolerance, in the
  reference's own z-buffer); (B,H,W,3) in [0,1] and its (B,H,W) validity mask. Done per pixel
  (the surface point under the pixel), which at the mesh's density is the per-vertex warp
  without its blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

BACKGROUND = -1


@dataclass
class Fragments:
    """face: (B,H,W) int64 face index (-1 background); depth: (B,H,W) camera z (inf on
    background); bary: (B,H,W,3) perspective-correct barycentrics (0 on background)."""

    face: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0


def _as_batch(x: Any, b: int, device, dtype=torch.float32) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=dtype, device=device)
    if t.ndim == 0:
        t = t.expand(b)
    if t.shape != (b,):
        raise ValueError(f"camera intrinsics must be scalars or ({b},) per frame, got shape {tuple(t.shape)}")
    return t


def project(verts: torch.Tensor, focal, cx, cy, focal_y=None) -> torch.Tensor:
    """verts (B,V,3) camera space -> (B,V,2) pixels (OpenCV pinhole); focal/cx/cy scalar or (B,);
    focal_y: the vertical focal length when it differs (frames resized to another aspect)."""
    b = verts.shape[0]
    f = _as_batch(focal, b, verts.device, verts.dtype)[:, None]
    fy = f if focal_y is None else _as_batch(focal_y, b, verts.device, verts.dtype)[:, None]
    u = _as_batch(cx, b, verts.device, verts.dtype)[:, None]
    v = _as_batch(cy, b, verts.device, verts.dtype)[:, None]
    z = verts[..., 2].clamp_min(1e-8)
    return torch.stack([verts[..., 0] / z * f + u, verts[..., 1] / z * fy + v], -1)


def camera_intrinsics(camera: Any) -> tuple[Any, Any, Any, int, int]:
    """(focal, cx, cy, width, height) from a `mentor.body.Camera`-like object."""
    for name in ("focal", "cx", "cy", "width", "height"):
        if not hasattr(camera, name):
            raise ValueError(f"camera {camera!r} has no '{name}': pass a mentor.body.Camera "
                             "(focal, cx, cy, width, height)")
    return camera.focal, camera.cx, camera.cy, int(camera.width), int(camera.height)


def rasterize(verts: torch.Tensor, faces: torch.Tensor, focal, cx, cy, width: int, height: int,
              near: float = 1e-3, max_pairs: int = 4_000_000, focal_y=None) -> Fragments:
    """Z-buffer rasterisation of camera-space meshes.

    verts: (B,V,3) or (V,3) camera-space vertices; faces: (F,3) int; focal, cx, cy: scalars
    or (B,) tensors (pixels); width, height: image size (any aspect). max_pairs bounds the
    (triangle, pixel) candidates held at once (memory); triangles are processed in chunks
    under it. focal_y: vertical focal length when it is not `focal` (non-square pixels).
    """
    if verts.ndim == 2:
        verts = verts[None]
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be (B,V,3) or (V,3), got {tuple(verts.shape)}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    device = verts.device
    verts = verts.float()
    faces = torch.as_tensor(faces, dtype=torch.long, device=device)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F,3), got {tuple(faces.shape)}")
    B, F = verts.shape[0], faces.shape[0]
    H, W = int(height), int(width)
    uv = project(verts, focal, cx, cy, focal_y)  # (B,V,2)
    tri_uv = uv[:, faces].reshape(B * F, 3, 2)
    tri_z = verts[:, faces, 2].reshape(B * F, 3)

    # per-triangle pixel bounding boxes (pixel centres at integers)
    lo = torch.ceil(tri_uv.amin(1) - 1e-6)
    hi = torch.floor(tri_uv.amax(1) + 1e-6)
    x0, y0 = lo[:, 0].clamp(0, W - 1), lo[:, 1].clamp(0, H - 1)
    x1, y1 = hi[:, 0].clamp(-1, W - 1), hi[:, 1].clamp(-1, H - 1)
    # screen-space barycentrics as affine functions of the pixel: l_k = a_k x + b_k y + c_k
    coef, den = _bary_coefficients(tri_uv)
    ok = ((tri_z.amin(1) > near) & (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] <= W - 1) & (lo[:, 1] <= H - 1)
          & (den.abs() > 1e-12))
    bw = torch.where(ok, (x1 - x0 + 1).clamp_min(0), torch.zeros_like(x0)).long()
    bh = torch.where(ok, (y1 - y0 + 1).clamp_min(0), torch.zeros_like(y0)).long()
    area = bw * bh  # (B*F,)
    tri_ids = torch.nonzero(area > 0).squeeze(1)
    inv_z = 1.0 / tri_z.clamp_min(near)
    # one gather per candidate pair: x0, y0, box width, 9 coefficients, 3 inverse depths
    packed = torch.cat([x0[:, None], y0[:, None], bw[:, None].float(), coef.reshape(-1, 9), inv_z], 1)

    zbuf = torch.full((B * H * W,), float("inf"), device=device)
    counts = area[tri_ids]
    cum = torch.cumsum(counts, 0)
    bounds = [0]
    if len(cum):  # chunks of triangles with at most max_pairs candidate pixels each
        chunk_id = torch.div(cum - 1, max_pairs, rounding_mode="floor")
        bounds += (torch.nonzero(chunk_id[1:] != chunk_id[:-1]).squeeze(1) + 1).tolist()
    bounds.append(len(tri_ids))
    HW = H * W
    pending = []
    for a, b in zip(bounds[:-1], bounds[1:]):  # chunks of triangles, not triangles
        if b <= a:
            continue
        ids, n = tri_ids[a:b], counts[a:b]
        pair_tri = torch.repeat_interleave(ids, n)  # (P,) flat (frame, face) index
        start = torch.cumsum(n, 0) - n
        local = torch.arange(len(pair_tri), device=device) - torch.repeat_interleave(start, n)
        d = packed[pair_tri]  # (P,15)
        wbox = d[:, 2].long()
        px = d[:, 0] + (local % wbox).float()
        py = d[:, 1] + torch.div(local, wbox, rounding_mode="floor").float()
        l1 = d[:, 3] * px + d[:, 4] * py + d[:, 5]
        l2 = d[:, 6] * px + d[:, 7] * py + d[:, 8]
        l0 = 1.0 - l1 - l2
        eps = -1e-6
        s = l0 * d[:, 12] + l1 * d[:, 13] + l2 * d[:, 14]  # perspective-correct: depth = 1 / sum(l_k / z_k)
        keep = (l0 >= eps) & (l1 >= eps) & (l2 >= eps) & (s > 0)
        idx = torch.nonzero(keep).squeeze(1)
        depth = 1.0 / s[idx]
        frame = torch.div(pair_tri[idx], F, rounding_mode="floor")
        pix = frame * HW + py[idx].long() * W + px[idx].long()
        good = depth > near
        pix, depth, face = pix[good], depth[good], (pair_tri[idx] % F)[good]
        zbuf.scatter_reduce_(0, pix, depth, reduce="amin")
        pending.append((pix, depth, face))
    # among the candidates at the z-buffer's depth, the lowest face index wins
    best = torch.full((B * HW,), F, dtype=torch.long, device=device)
    for pix, depth, face in pending:
        at = depth <= zbuf[pix]
        best.scatter_reduce_(0, pix[at], face[at], reduce="amin")
    win = torch.where(best < F, best, torch.full_like(best, BACKGROUND))
    # barycentrics of the winners only, at their pixel centres
    bary_out = torch.zeros(B * HW, 3, device=device)
    cov = torch.nonzero(win >= 0).squeeze(1)
    if len(cov):
        frame = torch.div(cov, HW, rounding_mode="floor")
        rem = cov % HW
        py, px = torch.div(rem, W, rounding_mode="floor").float(), (rem % W).float()
        d = packed[frame * F + win[cov]]
        l1 = d[:, 3] * px + d[:, 4] * py + d[:, 5]
        l2 = d[:, 6] * px + d[:, 7] * py + d[:, 8]
        lb = torch.stack([1.0 - l1 - l2, l1, l2], 1).clamp_min(0)
        wz = lb * d[:, 12:15]
        bary_out[cov] = wz / wz.sum(1, keepdim=True).clamp_min(1e-20)
    return Fragments(face=win.view(B, H, W), depth=zbuf.view(B, H, W), bary=bary_out.view(B, H, W, 3))


def _bary_coefficients(tri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen-space barycentrics of triangles tri (N,3,2) as affine functions of the pixel:
    (coef (N,3,3) rows [a, b, c] for l1, l2 and (unused) l0 so that l_k = a x + b y + c,
    den (N,) twice the signed area; 0 for a degenerate triangle)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1 = b - a, c - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    inv = 1.0 / torch.where(den.abs() > 1e-12, den, torch.ones_like(den))
    # l1 = ((p - a) x v1) / den, l2 = (v0 x (p - a)) / den
    a1, b1 = v1[:, 1] * inv, -v1[:, 0] * inv
    c1 = -(a[:, 0] * a1 + a[:, 1] * b1)
    a2, b2 = -v0[:, 1] * inv, v0[:, 0] * inv
    c2 = -(a[:, 0] * a2 + a[:, 1] * b2)
    l1 = torch.stack([a1, b1, c1], 1)
    l2 = torch.stack([a2, b2, c2], 1)
    return torch.stack([l1, l2, -l1 - l2], 1), den


def interpolate(frags: Fragments, faces: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
    """Per-pixel attribute from per-vertex attrs ((V,C) shared, or (B,V,C) per frame) -> (B,H,W,C), 0 on background."""
    faces = torch.as_tensor(faces, dtype=torch.long, device=frags.face.device)
    B, H, W = frags.face.shape
    f = frags.face.clamp_min(0)
    vid = faces[f]  # (B,H,W,3)
    if attrs.ndim == 2:
        vals = attrs[vid]  # (B,H,W,3,C)
    else:
        bidx = torch.arange(B, device=attrs.device)[:, None, None, None]
        vals = attrs[bidx, vid]
    out = (vals * frags.bary[..., None]).sum(-2)
    return out * frags.mask[..., None]


# ------------------------------------------------------------------------ controls

@dataclass
class Controls:
    """dense: (B,H,W,3) template position of the visible surface in [0,1]; parts: (B,H,W,Nc)
    binary; warped: (B,H,W,3) reference colours in [0,1]; warped_mask: (B,H,W) where the warp
    found a visible reference point; mask: (B,H,W) body silhouette."""

    dense: torch.Tensor
    parts: torch.Tensor
    warped: torch.Tensor
    warped_mask: torch.Tensor
    mask: torch.Tensor

    def stack(self) -> torch.Tensor:
        """(B, 3 + Nc + 3 + 1, H, W) float channels-first: dense, parts, warped, warped_mask."""
        x = torch.cat([self.dense, self.parts.float(), self.warped, self.warped_mask[..., None].float()], -1)
        return x.permute(0, 3, 1, 2).contiguous()


def num_control_channels(num_parts: int) -> int:
    return 3 + num_parts + 3 + 1


def warp_reference(frags: Fragments, verts: torch.Tensor, faces: torch.Tensor, ref_image: torch.Tensor,
                   ref_verts: torch.Tensor, focal, cx, cy, ref_frags: Fragments | None = None,
                   depth_tol: float = 0.02, focal_y=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour each visible surface point of the target frames from the reference frame.

    frags: target fragments (B,H,W); verts: unused shape check (B,V,3) target vertices;
    ref_image: (H',W',3) or (B,H',W',3) float in [0,1] (the reference frame, any size the
    camera was resized to); ref_verts: (V,3) or (B,V,3) camera-space vertices in the
    reference pose; focal/cx/cy (focal_y): the reference camera at ref_image's size. Returns
    (warped (B,H,W,3), valid (B,H,W)).
    """
    B, H, W = frags.face.shape
    device = frags.face.device
    if ref_image.ndim == 3:
        ref_image = ref_image[None].expand(B, *ref_image.shape)
    if ref_verts.ndim == 2:
        ref_verts = ref_verts[None]
    Hr, Wr = ref_image.shape[1:3]
    if ref_frags is None:
        ref_frags = rasterize(ref_verts, faces, focal, cx, cy, Wr, Hr, focal_y=focal_y)
    faces = torch.as_tensor(faces, dtype=torch.long, device=device)
    # surface point under each target pixel, in the reference pose
    pts = interpolate(frags, faces, ref_verts if ref_verts.shape[0] == B else ref_verts[0])  # (B,H,W,3)
    uv = project(pts.reshape(B, -1, 3), focal, cx, cy, focal_y).reshape(B, H, W, 2)
    # visibility in the reference: its z-buffer at the projected pixel (nearest) holds the
    # same face or a depth within tolerance
    ix = uv[..., 0].round().long()
    iy = uv[..., 1].round().long()
    inb = (ix >= 0) & (ix < Wr) & (iy >= 0) & (iy < Hr)
    ixc, iyc = ix.clamp(0, Wr - 1), iy.clamp(0, Hr - 1)
    rf = ref_frags.face.expand(B, Hr, Wr) if ref_frags.face.shape[0] == 1 else ref_frags.face
    rd = ref_frags.depth.expand(B, Hr, Wr) if ref_frags.depth.shape[0] == 1 else ref_frags.depth
    bidx = torch.arange(B, device=device)[:, None, None]
    ref_face = rf[bidx, iyc, ixc]
    ref_depth = rd[bidx, iyc, ixc]
    same = (ref_face == frags.face) | ((pts[..., 2] - ref_depth).abs() <= depth_tol * pts[..., 2].clamp_min(1e-6))
    valid = frags.mask & inb & same
    grid = torch.stack([uv[..., 0] / max(Wr - 1, 1) * 2 - 1, uv[..., 1] / max(Hr - 1, 1) * 2 - 1], -1)
    img = ref_image.permute(0, 3, 1, 2).float()
    col = torch.nn.functional.grid_sample(img, grid, mode="bilinear", align_corners=True, padding_mode="border")
    col = col.permute(0, 2, 3, 1) * valid[..., None]
    return col, valid


class ControlRenderer(torch.nn.Module):
    """Renders the controls for a body mesh topology.

    template: (V,3) rest-pose vertices (for the dense map); faces: (F,3); vertex_parts: (V,)
    int64 part index per vertex (`mentor.body.part_labels`); num_parts: Nc.
    """

    def __init__(self, template: torch.Tensor, faces: torch.Tensor, vertex_parts: torch.Tensor, num_parts: int):
        super().__init__()
        template = torch.as_tensor(template, dtype=torch.float32)
        lo, hi = template.amin(0), template.amax(0)
        self.register_buffer("template01", (template - lo) / (hi - lo).clamp_min(1e-8), persistent=False)
        self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.long), persistent=False)
        vp = torch.as_tensor(vertex_parts, dtype=torch.long)
        if vp.shape != (template.shape[0],):
            raise ValueError(f"vertex_parts must be ({template.shape[0]},), got {tuple(vp.shape)}")
        if int(vp.max()) >= num_parts or int(vp.min()) < 0:
            raise ValueError(f"vertex_parts must index 0..{num_parts - 1}, got {int(vp.min())}..{int(vp.max())}")
        self.register_buffer("face_parts", vp[self.faces[:, 0]], persistent=False)
        self.num_parts = int(num_parts)

    @classmethod
    def from_body_model(cls, body_model) -> "ControlRenderer":
        """From a `mentor.body.BodyModel` (or the older `mentor.bodymodel.BodyModel`)."""
        from mentor.body import PART_NAMES, part_labels

        model = getattr(body_model, "model", body_model)
        template = getattr(model, "v_template", None)
        if template is None:
            template = getattr(body_model, "v_template")
        return cls(template.detach().cpu(), torch.as_tensor(body_model.faces), part_labels(body_model), len(PART_NAMES))

    @property
    def num_channels(self) -> int:
        return num_control_channels(self.num_parts)

    def forward(self, verts: torch.Tensor, focal, cx, cy, width: int, height: int,
                ref_image: torch.Tensor | None = None, ref_verts: torch.Tensor | None = None,
                ref_camera: tuple | None = None, ref_frags: Fragments | None = None, focal_y=None) -> Controls:
        """verts (B,V,3) camera space; width x height any aspect (focal_y: the vertical focal
        length when it is not `focal`); ref_image (H',W',3) float [0,1] with ref_verts (V,3) and
        ref_camera (focal, cx, cy[, focal_y]) at ref_image's size (default: the target camera
        scaled to it)."""
        frags = rasterize(verts, self.faces, focal, cx, cy, width, height, focal_y=focal_y)
        dense = interpolate(frags, self.faces, self.template01)
        fp = self.face_parts[frags.face.clamp_min(0)]
        parts = torch.nn.functional.one_hot(fp, self.num_parts).bool() & frags.mask[..., None]
        B = verts.shape[0] if verts.ndim == 3 else 1
        if ref_image is not None and ref_verts is not None:
            if ref_camera is None:
                sx, sy = ref_image.shape[-2] / width, ref_image.shape[-3] / height
                fy = focal if focal_y is None else focal_y
                ref_camera = (torch.as_tensor(focal) * sx, (torch.as_tensor(cx) + 0.5) * sx - 0.5,
                              (torch.as_tensor(cy) + 0.5) * sy - 0.5, torch.as_tensor(fy) * sy)
            if len(ref_camera) not in (3, 4):
                raise ValueError(f"ref_camera must be (focal, cx, cy) or (focal, cx, cy, focal_y), got {len(ref_camera)} values")
            cams = [torch.as_tensor(v, dtype=torch.float32, device=verts.device) for v in ref_camera]
            rf, rcx, rcy, rfy = (v.reshape(-1)[:1].squeeze() if v.ndim else v for v in (cams + cams[:1])[:4])
            warped, wmask = warp_reference(frags, verts, self.faces, ref_image.to(verts.device), ref_verts.to(verts.device),
                                           rf, rcx, rcy, ref_frags=ref_frags, focal_y=rfy)
        else:
            warped = torch.zeros(B, height, width, 3, device=verts.device)
            wmask = torch.zeros(B, height, width, dtype=torch.bool, device=verts.device)
        return Controls(dense=dense, parts=parts, warped=warped, warped_mask=wmask, mask=frags.mask)
