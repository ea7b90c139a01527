"""SMPL-X parameters + the stored camera -> the video model's control images, on any device.

`ControlSource` holds the body model and the control renderer (`models.render`) and turns
the store's per-frame arrays (`smplx.<field>` and `smplx.camera` rows [f, cx, cy], as
windows of (B,T,...) tensors) into the channels-first controls (B,T,C,H,W) at the model's
frame size (width x height, any aspect), the reference frame warped to each target pose
included. The stored camera belongs to the clip's own frames, taken (as `Camera.from_array`
does) as 2 cx by 2 cy pixels; it is scaled to the output size on each axis, so frames that
the loader resized to another aspect (stretched) get a camera with fy != fx that draws the
body stretched the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from models.render import ControlRenderer, rasterize

PARAM_NAMES = ("betas", "expression", "global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
               "left_hand_pose", "right_hand_pose", "transl")


def _flat(a: torch.Tensor, lead: int) -> torch.Tensor:
    return a.reshape(lead, -1) if a.ndim >= 2 else a.reshape(lead, 1)


class ControlSource:
    """body_model: a `mentor.body.BodyModel` (its device is where rendering runs)."""

    def __init__(self, body_model):
        self.body = body_model
        self.renderer = ControlRenderer.from_body_model(body_model).to(body_model.device)
        self.device = body_model.device

    @property
    def num_channels(self) -> int:
        return self.renderer.num_channels

    def vertices(self, arrays: dict[str, torch.Tensor], lead: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera-space vertices (*lead, V, 3) from `smplx.<field>` arrays shaped (*lead, n);
        and (*lead,) validity (False where a parameter is NaN: a frame without a fit)."""
        from mentor.body import SmplxParams

        n = 1
        for d in lead:
            n *= d
        vals = {}
        valid = torch.ones(n, dtype=torch.bool, device=self.device)
        for name in PARAM_NAMES:
            key = f"smplx.{name}"
            if key not in arrays:
                raise ValueError(f"no array {key!r} in the batch (have {sorted(arrays)}): the clips need SMPL-X fits")
            a = _flat(torch.as_tensor(arrays[key]).to(self.device, torch.float32), n)
            valid &= torch.isfinite(a).all(1)
            vals[name] = torch.nan_to_num(a)
        with torch.no_grad():
            verts = self.body(SmplxParams.from_dict(vals, device=self.device)).vertices
        return verts.reshape(*lead, *verts.shape[1:]), valid.reshape(lead)

    @staticmethod
    def scaled_camera(camera: torch.Tensor, size: int | tuple[int, int], src_width: float | None = None,
                      src_height: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stored rows [f, cx, cy] (..., 3) for frames of src_width x src_height pixels (default
        2 cx by 2 cy, the store's convention; src_height defaults to src_width when only that is
        given: square frames) -> (fx, cx, cy, fy) at `size` ((width, height), or an int side)."""
        W, H = frame_size(size)
        camera = torch.nan_to_num(camera.float(), nan=1.0)
        if src_width is None:
            src_w, src_h = (2 * camera[..., 1]).clamp_min(1.0), (2 * camera[..., 2]).clamp_min(1.0)
        else:
            src_w = torch.full_like(camera[..., 1], float(src_width))
            src_h = torch.full_like(camera[..., 2], float(src_height if src_height is not None else src_width))
        sx, sy = W / src_w, H / src_h
        # pixel centres at integers: x' = (x + 0.5) s - 0.5
        return camera[..., 0] * sx, (camera[..., 1] + 0.5) * sx - 0.5, (camera[..., 2] + 0.5) * sy - 0.5, camera[..., 0] * sy

    def render(self, arrays: dict[str, torch.Tensor], ref_arrays: dict[str, torch.Tensor],
               ref_image: torch.Tensor, size: int | tuple[int, int], src_width: float | None = None,
               src_height: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """arrays (B,T,...) of the target frames; ref_arrays (B,...) of the reference frame;
        ref_image (B,H,W,3) uint8 or float in [0,1] at `size` ((width, height) or an int side).
        Returns controls (B,T,C,H,W) in [0,1] and validity (B,T). src_width, src_height: the
        size of the frames the cameras belong to (default 2 cx by 2 cy)."""
        W, H = frame_size(size)
        cam = arrays.get("smplx.camera")
        rcam = ref_arrays.get("smplx.camera")
        if cam is None or rcam is None:
            raise ValueError("no 'smplx.camera' array: the clips need the fitter's camera")
        if tuple(ref_image.shape[1:3]) != (H, W):
            raise ValueError(f"reference image is {tuple(ref_image.shape[1:3])} (H,W), expected {(H, W)} for size {W}x{H}")
        B, T = cam.shape[:2]
        verts, valid = self.vertices(arrays, (B, T))
        rverts, rvalid = self.vertices(ref_arrays, (B,))
        f, cx, cy, fy = self.scaled_camera(cam.to(self.device), (W, H), src_width, src_height)
        rf, rcx, rcy, rfy = self.scaled_camera(rcam.to(self.device), (W, H), src_width, src_height)
        img = ref_image.to(self.device)
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        out = []
        for b in range(B):  # frames of one window share the reference; batched over its T frames
            rfrags = rasterize(rverts[b], self.renderer.faces, rf[b], rcx[b], rcy[b], W, H, focal_y=rfy[b])
            c = self.renderer(verts[b], f[b], cx[b], cy[b], W, H, ref_image=img[b], ref_verts=rverts[b],
                              ref_camera=(rf[b], rcx[b], rcy[b], rfy[b]), ref_frags=rfrags, focal_y=fy[b])
            out.append(c.stack())
        return torch.stack(out), valid & rvalid[:, None]


def frame_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(width, height) from an int side or a (width, height) pair."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"size={size!r}: give an int side or (width, height)")
        return int(size[0]), int(size[1])
    return int(size), int(size)


def load_control_source(body_model_dir: Any = None, device: str | torch.device = "cpu") -> ControlSource:
    from mentor.body import load_body_model

    return ControlSource(load_body_model(body_model_dir, device=device))
