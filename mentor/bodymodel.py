"""SMPL-X body model loading, and the synthetic stand-in the project can ship.

The real SMPL-X files need a registration at smpl-x.is.tue.mpg.de, so nothing here
downloads them. `load_body_model` takes, in order: an explicit folder, the config's
`annotate.smplx.model_dir`, `$MENTOR_SMPLX_DIR`, and otherwise a SYNTHETIC model that
`write_synthetic_smplx` generates: a body-like mesh made of tubes and ellipsoids with
the real file's keys, shapes and 55-joint kinematic tree, so that `smplx.create` loads
it and every code path (fitting, rendering, tests) runs. It is not a human body model:
anything fitted with it is labelled `"body_model": "synthetic"`.

Folder layout (what `smplx.create(folder, model_type="smplx")` reads):
    <folder>/smplx/SMPLX_NEUTRAL.npz   (or SMPLX_MALE / SMPLX_FEMALE, .npz or .pkl)
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SYNTHETIC_VERSION = 1
SYNTHETIC_TAG = f"mentor synthetic SMPL-X v{SYNTHETIC_VERSION}: NOT a human body model"
NUM_JOINTS = 55
NUM_STATIC_LMK = 51
NUM_CONTOUR_LMK = 17
NUM_CONTOUR_ROWS = 79  # neck yaw look-up rows: 0..39 degrees, then -1..-39, then < -39

# SMPL-X kinematic tree: parent of each of the 55 joints (smplx/joint_names.py order).
PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15]
    + [20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38]
    + [21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53],
    dtype=np.int64,
)


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
        "lmk_faces_idx": (NUM_STATIC_LMK,),
        "lmk_bary_coords": (NUM_STATIC_LMK, 3),
        "dynamic_lmk_faces_idx": (NUM_CONTOUR_ROWS, NUM_CONTOUR_LMK),
        "dynamic_lmk_bary_coords": (NUM_CONTOUR_ROWS, NUM_CONTOUR_LMK, 3),
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
    if v <= 9929:
        raise BodyModelError(f"{path}: key 'v_template' has {v} vertices; SMPL-X's landmark vertices need >= 9930")
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


# --------------------------------------------------------------------------- loading

@dataclass
class BodyModel:
    """A loaded SMPL-X model with where it came from.

    model: smplx.SMPLX (use_pca hands, face contour on). synthetic: True for the
    generated stand-in, which must be labelled as such wherever its output is stored.
    """

    model: Any
    path: Path
    synthetic: bool
    num_pca_comps: int

    @property
    def label(self) -> str:
        return "synthetic" if self.synthetic else "smplx"

    @property
    def faces(self) -> np.ndarray:
        return np.asarray(self.model.faces, dtype=np.int64)


def default_cache_dir() -> Path:
    return Path(os.environ.get("MENTOR_CACHE", "~/.cache/mentor")).expanduser()


def resolve_model_dir(model_dir: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """(folder, synthetic): the given folder, else $MENTOR_SMPLX_DIR, else the synthetic model."""
    given = model_dir or os.environ.get("MENTOR_SMPLX_DIR")
    if given:
        return Path(os.path.expanduser(str(given))), False
    return write_synthetic_smplx(), True


def load_body_model(
    model_dir: str | os.PathLike[str] | None = None,
    gender: str = "neutral",
    num_betas: int = 10,
    num_expression: int = 10,
    num_pca_comps: int = 12,
    device: Any = "cpu",
    batch_size: int = 1,
) -> BodyModel:
    """Load SMPL-X with `smplx.create` (folder, else $MENTOR_SMPLX_DIR, else synthetic)."""
    import smplx
    import torch

    folder, synthetic = resolve_model_dir(model_dir)
    path = find_model_file(folder, gender if not synthetic else "neutral")
    data = validate_smplx_file(path)
    synthetic = synthetic or str(data.get("synthetic", "")).startswith("mentor synthetic")
    if synthetic:
        log.warning("using the SYNTHETIC SMPL-X stand-in (%s): fits are not human body fits", path)
    if data["hands_componentsl"].shape[0] < num_pca_comps:
        raise BodyModelError(f"{path}: key 'hands_componentsl' has {data['hands_componentsl'].shape[0]} "
                             f"components, fewer than num_pca_comps={num_pca_comps}")
    model = smplx.SMPLX(
        str(path), ext=path.suffix[1:], gender=gender, num_betas=num_betas,
        num_expression_coeffs=num_expression, use_pca=True, num_pca_comps=num_pca_comps,
        flat_hand_mean=False, use_face_contour=True, batch_size=batch_size, dtype=torch.float32,
    ).to(device)
    return BodyModel(model=model, path=path, synthetic=synthetic, num_pca_comps=num_pca_comps)


# ----------------------------------------------------------------- synthetic model

def write_synthetic_smplx(folder: str | os.PathLike[str] | None = None, overwrite: bool = False) -> Path:
    """Generate the synthetic SMPL-X file once; returns the folder for `smplx.create`.

    Written to `folder/smplx/SMPLX_NEUTRAL.npz` (default folder:
    ~/.cache/mentor/smplx-synthetic-v<version>), atomically, with a README saying it is
    synthetic. A file already there is reused unless `overwrite`.
    """
    root = Path(folder).expanduser() if folder else default_cache_dir() / f"smplx-synthetic-v{SYNTHETIC_VERSION}"
    target = root / "smplx" / "SMPLX_NEUTRAL.npz"
    if target.is_file() and not overwrite:
        return root
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = make_synthetic_smplx()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, target)
    (root / "README.txt").write_text(
        f"{SYNTHETIC_TAG}.\nGenerated by mentor.bodymodel.write_synthetic_smplx: tubes and ellipsoids with "
        "SMPL-X's keys, shapes and kinematic tree, for tests and demos. Get the real model from "
        "smpl-x.is.tue.mpg.de and point annotate.smplx.model_dir (or $MENTOR_SMPLX_DIR) at it.\n")
    return root


def make_synthetic_smplx(seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of the synthetic SMPL-X file (see module docstring)."""
    from mentor import _synthetic_body

    return _synthetic_body.build(seed=seed, tag=SYNTHETIC_TAG, parents=PARENTS)
