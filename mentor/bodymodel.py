"""Old name of the body-model module: re-exports `mentor.body` (import from there)."""

from mentor.body.constants import NUM_CONTOUR_ROWS, NUM_JOINTS, PARENTS
from mentor.body.constants import NUM_CONTOUR_LANDMARKS as NUM_CONTOUR_LMK
from mentor.body.constants import NUM_STATIC_LANDMARKS as NUM_STATIC_LMK
from mentor.body.model import (BodyModel, BodyModelError, default_cache_dir, find_model_file, load_body_model,
                               resolve_model_dir, validate_smplx_file)
from mentor.body.synthetic import SYNTHETIC_TAG, SYNTHETIC_VERSION, make_synthetic_smplx, write_synthetic_smplx

__all__ = ["NUM_CONTOUR_LMK", "NUM_CONTOUR_ROWS", "NUM_JOINTS", "NUM_STATIC_LMK", "PARENTS", "SYNTHETIC_TAG",
           "SYNTHETIC_VERSION", "BodyModel", "BodyModelError", "default_cache_dir", "find_model_file",
           "load_body_model", "make_synthetic_smplx", "resolve_model_dir", "validate_smplx_file",
           "write_synthetic_smplx"]
