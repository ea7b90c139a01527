"""SMPL-X parameters of T frames, and the pinhole camera they are seen through.

Field names are the store's array names without the `smplx.` prefix, so a record's
arrays convert both ways (`from_arrays` / `to_arrays`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import numpy as np
import torch

from mentor.body.geometry import project_points

PARAM_NAMES = ("betas", "expression", "global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
               "left_hand_pose", "right_hand_pose", "transl")
POSE_WIDTH = {"global_orient": 3, "body_pose": 63, "jaw_pose": 3, "leye_pose": 3, "reye_pose": 3, "transl": 3}


@dataclass(frozen=True)
class SmplxParams:
    """SMPL-X parameters of T frames (float tensors, one row per frame).

    betas (T,B) shape (the store repeats a clip's one shape on every row); expression (T,E);
    global_orient (T,3) root axis-angle; body_pose (T,63) joints 1..21 axis-angle;
    jaw_pose, leye_pose, reye_pose (T,3); left_hand_pose, right_hand_pose (T,H) the hand PCA
    coefficients (H = the model's num_pca_comps, flat_hand_mean False); transl (T,3) metres,
    camera space (OpenCV axes: x right, y down, z forward).
    """

    betas: torch.Tensor
    expression: torch.Tensor
    global_orient: torch.Tensor
    body_pose: torch.Tensor
    jaw_pose: torch.Tensor
    leye_pose: torch.Tensor
    reye_pose: torch.Tensor
    left_hand_pose: torch.Tensor
    right_hand_pose: torch.Tensor
    transl: torch.Tensor

    def __post_init__(self) -> None:
        T = self.transl.shape[0] if self.transl.ndim == 2 else -1
        for name in PARAM_NAMES:
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[0] != T:
                shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
                raise ValueError(f"SmplxParams.{name} is {shape}; every field must be a (T, n) tensor with "
                                 f"T = transl's {T} rows")
            if name in POSE_WIDTH and value.shape[1] != POSE_WIDTH[name]:
                raise ValueError(f"SmplxParams.{name} has {value.shape[1]} columns, expected {POSE_WIDTH[name]}")

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> "SmplxParams":
        """From field name -> array/tensor; betas of one row (1,B) are repeated over the frames."""
        missing = [n for n in PARAM_NAMES if n not in values]
        if missing:
            raise ValueError(f"SMPL-X parameters without {missing}; need all of {PARAM_NAMES}")
        t = {n: torch.as_tensor(np.asarray(values[n]) if not isinstance(values[n], torch.Tensor) else values[n],
                                dtype=dtype, device=device) for n in PARAM_NAMES}
        T = t["transl"].shape[0]
        if t["betas"].shape[0] == 1 and T != 1:
            t["betas"] = t["betas"].expand(T, -1)
        return cls(**t)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], prefix: str = "smplx", **kw) -> "SmplxParams":
        """From the store's arrays {"smplx.betas": (T,B), ...} (values may be FrameArrays)."""
        values = {}
        for n in PARAM_NAMES:
            key = f"{prefix}.{n}" if prefix else n
            if key not in arrays:
                raise ValueError(f"no array {key!r} (have {sorted(arrays)}): the clip has no SMPL-X fit")
            a = arrays[key]
            values[n] = getattr(a, "data", a)
        return cls.from_dict(values, **kw)

    @classmethod
    def from_record(cls, record, prefix: str = "smplx", **kw) -> "SmplxParams":
        """From a ClipRecord's `smplx.*` arrays."""
        return cls.from_arrays(record.arrays, prefix=prefix, **kw)

    @classmethod
    def zeros(cls, num_frames: int, num_betas: int = 10, num_expression: int = 10, num_hand: int = 12,
              dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> "SmplxParams":
        width = dict(POSE_WIDTH, betas=num_betas, expression=num_expression, left_hand_pose=num_hand,
                     right_hand_pose=num_hand)
        return cls(**{n: torch.zeros(num_frames, width[n], dtype=dtype, device=device) for n in PARAM_NAMES})

    @classmethod
    def cat(cls, items: list["SmplxParams"]) -> "SmplxParams":
        """Frames of several parameter sets, one after the other."""
        if not items:
            raise ValueError("SmplxParams.cat needs at least one SmplxParams")
        return cls(**{n: torch.cat([getattr(p, n) for p in items]) for n in PARAM_NAMES})

    # -- views -------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.transl.shape[0])

    @property
    def device(self) -> torch.device:
        return self.transl.device

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index) -> "SmplxParams":
        """Frames index (slice, int tensor or bool mask); an int keeps a frame axis of 1."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return SmplxParams(**{n: getattr(self, n)[index] for n in PARAM_NAMES})

    def to(self, device=None, dtype: torch.dtype | None = None) -> "SmplxParams":
        return SmplxParams(**{n: getattr(self, n).to(device=device, dtype=dtype) for n in PARAM_NAMES})

    def replace(self, **changes: torch.Tensor) -> "SmplxParams":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_arrays(self, prefix: str = "smplx") -> dict[str, np.ndarray]:
        """{"smplx.betas": float32 (T,B), ...}: the store's array names."""
        return {(f"{prefix}.{n}" if prefix else n): getattr(self, n).detach().cpu().numpy().astype(np.float32)
                for n in PARAM_NAMES}


@dataclass(frozen=True)
class Camera:
    """OpenCV pinhole camera at the origin looking along +z (x right, y down), in pixels.

    focal, cx, cy: scalar tensors, or (T,) for one camera per frame; width, height: the
    image the pixels belong to.
    """

    focal: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: int
    height: int

    @classmethod
    def from_array(cls, array, width: int | None = None, height: int | None = None,
                   device: torch.device | str | None = None) -> "Camera":
        """From the store's `smplx.camera` rows [f, cx, cy], (3,) or (T,3). Without width/height
        the image is taken as 2 cx by 2 cy (the fitter puts the principal point at the centre)."""
        a = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array,
                            dtype=torch.float32, device=device)
        if a.shape[-1] != 3 or a.ndim not in (1, 2):
            raise ValueError(f"camera array of shape {tuple(a.shape)}: expected (3,) or (T,3) rows [f, cx, cy]")
        f, cx, cy = a.unbind(-1)
        if width is None or height is None:
            width, height = int(round(2 * float(cx.reshape(-1)[0]))), int(round(2 * float(cy.reshape(-1)[0])))
        return cls(f, cx, cy, int(width), int(height))

    @classmethod
    def centered(cls, focal: float, width: int, height: int, device=None) -> "Camera":
        """Principal point at the image centre."""
        t = lambda v: torch.tensor(float(v), dtype=torch.float32, device=device)  # noqa: E731
        return cls(t(focal), t(width / 2), t(height / 2), int(width), int(height))

    def to_array(self) -> np.ndarray:
        """[f, cx, cy] as float32 (3,) or (T,3), as the store keeps it."""
        return torch.stack(torch.broadcast_tensors(self.focal, self.cx, self.cy), -1).cpu().numpy().astype(np.float32)

    def to(self, device) -> "Camera":
        return Camera(self.focal.to(device), self.cx.to(device), self.cy.to(device), self.width, self.height)

    def __getitem__(self, index) -> "Camera":
        """Frames of a per-frame camera (a scalar camera is the same for every frame)."""
        pick = lambda v: v[index] if v.ndim else v  # noqa: E731
        return Camera(pick(self.focal), pick(self.cx), pick(self.cy), self.width, self.height)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Camera-space points (...,N,3) -> pixels (...,N,2); a per-frame camera needs (T,N,3)."""
        return project_points(points, self.focal, self.cx, self.cy)

    def resized(self, width: int, height: int) -> "Camera":
        """The same view rendered at another resolution (pixels scale with the image)."""
        sx, sy = width / self.width, height / self.height
        if abs(sx - sy) > 1e-3 * max(sx, sy):
            raise ValueError(f"Camera.resized({width}, {height}) from {self.width}x{self.height} changes the aspect "
                             "ratio; crop first, then resize")
        return Camera(self.focal * sx, self.cx * sx, self.cy * sy, int(width), int(height))
