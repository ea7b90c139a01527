"""The SMPL-X body model shared by the fitter, the preview, the renderer and the motion model.

    from mentor.body import (SmplxParams, Camera, BodyModel, BodyOutput, load_body_model,
                             PART_NAMES, part_labels, pa_mpjpe, procrustes_align)

- params.py    SmplxParams (T frames of SMPL-X parameters), Camera (one pinhole projection)
- model.py     load_body_model -> BodyModel: one batched forward pass (smplx underneath)
- parts.py     PART_NAMES and per-vertex part labels from the skinning weights
- geometry.py  projection, rotations, Procrustes alignment, PA-MPJPE (pure functions)
- constants.py SMPL-X's numbering: joints, tree, keypoint vertex ids, landmark counts
- points.py    ModelPoint: a joint, vertex, or static/contour face landmark
- synthetic.py the generated stand-in model used when no SMPL-X files are given
"""

from mentor.body.geometry import pa_mpjpe, procrustes_align, project_points, rodrigues
from mentor.body.model import (BodyModel, BodyModelError, BodyOutput, find_model_file, load_body_model,
                               resolve_model_dir, validate_smplx_file)
from mentor.body.params import PARAM_NAMES, Camera, SmplxParams
from mentor.body.parts import PART_NAMES, part_labels
from mentor.body.points import ModelPoint
from mentor.body.synthetic import make_synthetic_smplx, write_synthetic_smplx

__all__ = [
    "PARAM_NAMES", "PART_NAMES", "BodyModel", "BodyModelError", "BodyOutput", "Camera", "ModelPoint", "SmplxParams",
    "find_model_file", "load_body_model", "make_synthetic_smplx", "pa_mpjpe", "part_labels", "procrustes_align",
    "project_points", "resolve_model_dir", "rodrigues", "validate_smplx_file", "write_synthetic_smplx",
]
