"""The SMPL-X body model: loading (real or synthetic), one batched forward pass.

The real SMPL-X files need a registration at smpl-x.is.tue.mpg.de, so nothing here
downloads them. `load_body_model` takes, in order: an explicit folder, `$MENTOR_SMPLX_DIR`,
and otherwise the SYNTHETIC model that `mentor.body.synthetic` generates (tubes and
ellipsoids with the real file's keys, shapes and 55-joint tree, so that smplx loads it and
every code path runs). It is not a human body model: anything made with it is labelled
"synthetic" (`BodyModel.label`).

Folder layout (what `smplx.create(folder, model_type="smplx")` reads):
    <folder>/smplx/SMPLX_NEUTRAL.npz   (or SMPLX_MALE / SMPLX_FEMALE, .npz or .pkl)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mentor.body.constants import (KEYPOINT_NAMES, NUM_CONTOUR_LANDMARKS, NUM_CONTOUR_ROWS, NUM_FACE_LANDMARKS,
                                   NUM_JOINTS, NUM_STATIC_LANDMARKS, VERTEX_IDS)
from mentor.body.params import SmplxParams
from mentor.body.points import ModelPoint

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # model files already named in a warning

MIN_VERTICES = max(VERTEX_IDS.values()) + 1  # smplx reads these keypoint vertices by index
KEYPOINT_VERTICES = frozenset(VERTEX_IDS.values())


class BodyModelError(ValueError):
    """A model folder or file that cannot be used; the message names the file and key."""


# ------------------------------------------------------------------------ validation

def _expected_shapes(v: int) -> dict[str, tuple[Any, ...]]:
    """Key -> shape an SMPL-X file must have (None: any size; '>=n': at least n)."""
    return {
        "v_template": (v, 3),
        "f": (None, 3),
        "J_regressor": (NUM_JOINTS, v),
        "weights": (v, NUM_JOINTS),
        "kintree_table": (2, NUM_JOINTS),
        "shapedirs": (v, 3, ">=20"),
        "posedirs": (v, 3, (NUM_JOINTS - 1) * 9),
        "hands_componentsl": (">=1", 45),
        "hands_componentsr": (">=1", 45),
        "hands_meanl": (45,),
        "hands_meanr": (45,),
        "lmk_faces_idx": (NUM_STATIC_LANDMARKS,),
        "lmk_bary_coords": (NUM_STATIC_LANDMARKS, 3),
        "dynamic_lmk_faces_idx": (NUM_CONTOUR_ROWS, NUM_CONTOUR_LANDMARKS),
        "dynamic_lmk_bary_coords": (NUM_CONTOUR_ROWS, NUM_CONTOUR_LANDMARKS, 3),
    }


def _load_raw(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as fh:
                return dict(pickle.load(fh, encoding="latin1"))
        with np.load(path, allow_pickle=True) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zip, pickle and numpy raise many kinds
        raise BodyModelError(f"{path}: not a readable SMPL-X model file ({type(e).__name__}: {e})") from None


def validate_smplx_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check an SMPL-X .npz/.pkl has every key smplx reads, with the right shapes.

    Returns the loaded arrays. Raises BodyModelError naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise BodyModelError(f"{path}: SMPL-X model file not found")
    data = _load_raw(path)
    if "v_template" not in data:
        raise BodyModelError(f"{path}: missing key 'v_template' (not an SMPL-X model file)")
    v_template = np.asarray(data["v_template"])
    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise BodyModelError(f"{path}: key 'v_template' has shape {v_template.shape}, expected (V, 3)")
    v = v_template.shape[0]
    for key, want in _expected_shapes(v).items():
        if key not in data:
            raise BodyModelError(
                f"{path}: missing key '{key}' (an SMPL-X file needs: {', '.join(_expected_shapes(v))}); "
                "use the SMPL-X npz from smpl-x.is.tue.mpg.de or unset the model folder for the synthetic model")
        arr = data[key]
        shape = tuple(getattr(arr, "shape", ()))
        ok = len(shape) == len(want) and all(
            w is None or (isinstance(w, str) and s >= int(w[2:])) or s == w for s, w in zip(shape, want))
        if not ok:
            pretty = tuple("V" if w == v else w for w in want)
            raise BodyModelError(f"{path}: key '{key}' has shape {shape}, expected {pretty} (V = {v} vertices)")
    faces = np.asarray(data["f"])
    if faces.min() < 0 or faces.max() >= v:
        raise BodyModelError(f"{path}: key 'f' indexes vertices outside 0..{v - 1}")
    if v < MIN_VERTICES:
        raise BodyModelError(f"{path}: key 'v_template' has {v} vertices; SMPL-X's keypoint vertices need "
                             f">= {MIN_VERTICES}")
    return data


def find_model_file(folder: str | os.PathLike[str], gender: str = "neutral") -> Path:
    """The SMPL-X file inside a model folder (`folder/smplx/SMPLX_<GENDER>.npz|pkl`)."""
    root = Path(os.path.expanduser(str(folder)))
    if not root.is_dir():
        raise BodyModelError(f"{root}: SMPL-X model folder not found (set annotate.smplx.model_dir or $MENTOR_SMPLX_DIR)")
    for sub in (root / "smplx", root):
        for ext in ("npz", "pkl"):
            p = sub / f"SMPLX_{gender.upper()}.{ext}"
            if p.is_file():
                return p
    raise BodyModelError(
        f"{root}: no smplx/SMPLX_{gender.upper()}.npz (or .pkl) in the SMPL-X model folder; "
        "download SMPL-X from smpl-x.is.tue.mpg.de and unpack it so that <folder>/smplx/ holds the files")


# --------------------------------------------------------------------------- the model

@dataclass
class BodyOutput:
    """One forward pass, camera space (metres).

    vertices (T,V,3); joints (T,55,3) the skeleton; landmarks (T,68,3) the face landmarks,
    51 static (iBUG 17..67) then 17 contour (iBUG 0..16, for each frame's neck yaw);
    keypoints (T,21,3) smplx's keypoint vertices in `constants.KEYPOINT_NAMES` order.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    landmarks: torch.Tensor
    keypoints: torch.Tensor

    def points(self, points: list[ModelPoint]) -> torch.Tensor:
        """(T,P,3) the given model points (joints, keypoint vertices, landmarks; any other
        vertex is read from `vertices`)."""
        smplx_order = torch.cat([self.joints, self.keypoints, self.landmarks], 1)
        cols = []
        for p in points:
            if p.kind == "vertex" and p.index not in KEYPOINT_VERTICES:
                cols.append(self.vertices[:, p.index])
            else:
                cols.append(smplx_order[:, p.output_index])
        return torch.stack(cols, 1)


class BodyModel(nn.Module):
    """SMPL-X (smplx.SMPLX underneath: PCA hands, flat_hand_mean False, face contour on).

    forward(params: SmplxParams) -> BodyOutput, batched over the T frames, on the model's
    device (`.to(device)` moves it). faces: (F,3) int64 buffer. synthetic: True for the
    generated stand-in, whose output must be labelled as such (`label`).
    """

    def __init__(self, smplx_model: nn.Module, path: Path, synthetic: bool, num_pca_comps: int):
        super().__init__()
        self.model = smplx_model
        self.path = Path(path)
        self.synthetic = bool(synthetic)
        self.num_pca_comps = int(num_pca_comps)
        self.register_buffer("faces", torch.as_tensor(np.asarray(smplx_model.faces, np.int64)))

    @property
    def label(self) -> str:
        return "synthetic" if self.synthetic else "smplx"

    @property
    def num_vertices(self) -> int:
        return int(self.model.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.model.num_betas)

    @property
    def num_expression(self) -> int:
        return int(self.model.num_expression_coeffs)

    @property
    def device(self) -> torch.device:
        return self.model.v_template.device

    @property
    def lbs_weights(self) -> torch.Tensor:
        """(V,55) skinning weights."""
        return self.model.lbs_weights

    def rest_vertices(self) -> torch.Tensor:
        """(V,3) template vertices (mean shape, zero pose)."""
        return self.model.v_template

    def zeros(self, num_frames: int) -> SmplxParams:
        """Rest parameters (mean shape, zero pose and expression) for num_frames frames."""
        return SmplxParams.zeros(num_frames, self.num_betas, self.num_expression, self.num_pca_comps,
                                 device=self.device)

    def forward(self, params: SmplxParams) -> BodyOutput:
        """params (T frames) -> vertices (T,V,3), joints (T,55,3), landmarks (T,68,3), keypoints (T,21,3)."""
        for name, want in (("betas", self.num_betas), ("expression", self.num_expression),
                           ("left_hand_pose", self.num_pca_comps), ("right_hand_pose", self.num_pca_comps)):
            have = getattr(params, name).shape[1]
            if have != want:
                raise ValueError(f"SmplxParams.{name} has {have} columns but the body model was loaded with {want} "
                                 f"(load_body_model(num_betas=..., num_expression=..., num_pca_comps=...))")
        p = params.to(self.device, dtype=self.model.v_template.dtype)
        out = self.model(**p.as_dict(), return_verts=True)
        j = out.joints
        nk = NUM_JOINTS + len(KEYPOINT_NAMES)
        return BodyOutput(vertices=out.vertices, joints=j[:, :NUM_JOINTS], landmarks=j[:, nk:nk + NUM_FACE_LANDMARKS],
                          keypoints=j[:, NUM_JOINTS:nk])


def default_cache_dir() -> Path:
    return Path(os.environ.get("MENTOR_CACHE", "~/.cache/mentor")).expanduser()


def resolve_model_dir(model_dir: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """(folder, synthetic): the given folder, else $MENTOR_SMPLX_DIR, else the synthetic model."""
    from mentor.body.synthetic import write_synthetic_smplx

    given = model_dir or os.environ.get("MENTOR_SMPLX_DIR")
    if given:
        return Path(os.path.expanduser(str(given))), False
    return write_synthetic_smplx(), True


def load_body_model(
    model_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    gender: str = "neutral",
    num_betas: int = 10,
    num_expression: int = 10,
    num_pca_comps: int = 12,
) -> BodyModel:
    """Load SMPL-X (model_dir, else $MENTOR_SMPLX_DIR, else the synthetic model) on device."""
    import smplx

    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"gender {gender!r}: use 'neutral', 'male' or 'female'")
    folder, synthetic = resolve_model_dir(model_dir)
    path = find_model_file(folder, gender if not synthetic else "neutral")
    data = validate_smplx_file(path)
    synthetic = synthetic or str(data.get("synthetic", "")).startswith("mentor synthetic")
    if synthetic and str(path) not in _WARNED:  # once per process: a run loads it once per clip
        _WARNED.add(str(path))
        log.warning("using the SYNTHETIC SMPL-X stand-in (%s): fits are not human body fits", path)
    if data["hands_componentsl"].shape[0] < num_pca_comps:
        raise BodyModelError(f"{path}: key 'hands_componentsl' has {data['hands_componentsl'].shape[0]} "
                             f"components, fewer than num_pca_comps={num_pca_comps}")
    # smplx prints "WARNING: You are using a SMPL-X model, with only 10 shape coefficients" on
    # every load: the counts are our choice (the arguments here), not news for the console
    with contextlib.redirect_stdout(io.StringIO()):
        model = smplx.SMPLX(
            str(path), ext=path.suffix[1:], gender=gender, num_betas=num_betas,
            num_expression_coeffs=num_expression, use_pca=True, num_pca_comps=num_pca_comps,
            flat_hand_mean=False, use_face_contour=True, batch_size=1, dtype=torch.float32,
        )
    return BodyModel(model, path=path, synthetic=synthetic, num_pca_comps=num_pca_comps).to(device)
