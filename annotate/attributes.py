"""Perceived attributes of the person in a clip: automatic estimates, never identities.

What is written (record.attributes, each an Attribute with value, confidence, method):

- "skin_tone_ita": Individual Typology Angle in degrees, ITA = atan((L* - 50) / b*) * 180/pi
  on the median CIELAB colour of well-lit skin (forehead and cheek polygons from the face
  landmarks; pixels outside the [skin_low_percentile, skin_high_percentile] band of L* in
  the region are dropped as shadow or specular highlight); per frame, then the median over
  `frames` frames, so a few badly lit frames do not move it.
- "skin_tone_monk": the Monk Skin Tone scale step 1..10 whose published reference colour is
  nearest (CIE76, Euclidean in Lab) to that median skin colour.
- "skin_tone_group": light / medium / dark from the ITA alone, with the cut points of the
  config (default ITA > 41 light, 10 < ITA <= 41 medium, ITA <= 10 dark: Chardon's very
  light + light / intermediate + tan / brown + dark). The group never comes from the MST
  step. For orientation, the MST reference colours' own ITAs are 83, 80, 72, 65, 50 (steps
  1-5: light), 11 (step 6: medium) and -20, -55, -78, -84 (steps 7-10: dark); measured skin
  is redder and more saturated than the reference swatches, so steps and groups overlap.
- "body_visibility": copied from the curation score "filter.body_visibility" when present.
- "perceived_age", "perceived_gender": from an ONNX classifier the user gives
  (annotate.attributes.age_gender_model); with none configured they are
  Attribute(value=None, method="not estimated: no model configured"), never guessed.

Confidence: skin values are scaled by the share of sampled frames that gave a measurement;
the ITA's by 1 / (1 + MAD/10) of the per-frame ITAs (MAD in degrees); the group's and the
step's by the share of frames whose own group (step) agrees with the clip's.

ONNX classifier contract: one input Nx3xHxW float32 RGB, (x/255 - mean) / std (config
classifier_mean/std), H and W from the model (or classifier_size when dynamic); outputs
either two tensors of logits (names containing "age" and "gender", else in that order: age,
gender) or one Nx(len(age_labels) + len(gender_labels)) tensor with the age logits first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from annotate.face_regions import FaceFrames, FaceMeshRunner, face_box, face_frames, skin_mask
from annotate.landmarks import FACE
from annotate.person_filter import BODY_VISIBILITY
from mentor.config import AttributeConfig
from mentor.contracts import array, attribute, file, score
from mentor.curate.encode import VIDEO
from mentor.media import MediaError
from mentor.record import Attribute, ClipRecord

log = logging.getLogger(__name__)

# The Monk Skin Tone scale's 10 published reference colours (skintone.google), steps 1..10.
MONK_HEX = ["f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96", "a07e56", "825c43", "604134", "3a312a", "292420"]
NOT_CONFIGURED = "not estimated: no model configured"
BODY_VISIBILITY_SCORE = BODY_VISIBILITY


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """...x3 uint8 (or float in [0, 1]) sRGB -> ...x3 CIELAB (D65): L* 0..100, a*, b*."""
    from skimage.color import rgb2lab

    x = np.asarray(rgb)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    return rgb2lab(x.reshape(-1, 1, 3)).reshape(x.shape)


def monk_lab() -> np.ndarray:
    """10x3 Lab of the MST reference colours, step 1 first."""
    rgb = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in MONK_HEX], np.uint8)
    return rgb_to_lab(rgb)


def ita_degrees(L: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """ITA = atan((L* - 50) / b*) in degrees. atan2 keeps it defined (beyond +-90) when b* <= 0."""
    return np.degrees(np.arctan2(np.asarray(L, float) - 50.0, np.asarray(b, float)))


def ita_group(ita: float, light_min: float = 41.0, dark_max: float = 10.0) -> str:
    """Coarse group of an ITA value: light (> light_min), dark (<= dark_max), else medium."""
    if ita > light_min:
        return "light"
    if ita <= dark_max:
        return "dark"
    return "medium"


def nearest_monk(lab: np.ndarray) -> np.ndarray | int:
    """MST step 1..10 nearest (CIE76) to Lab colour(s) ...x3."""
    d = np.linalg.norm(np.asarray(lab)[..., None, :] - monk_lab(), axis=-1)
    step = d.argmin(-1) + 1
    return int(step) if np.ndim(step) == 0 else step


def frame_skin_lab(frame: np.ndarray, landmarks: np.ndarray, low_pct: float, high_pct: float,
                   min_pixels: int) -> np.ndarray | None:
    """Median Lab (3,) of the well-lit skin pixels of one HxWx3 RGB frame, or None when the
    regions hold fewer than `min_pixels` pixels inside the L* band. landmarks: 478x2+ px."""
    x0, y0, x1, y1 = face_box(landmarks, frame.shape, margin=0.05)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    crop = frame[y0:y1, x0:x1]
    mask = skin_mask(landmarks[:, :2] - np.float32([x0, y0]), crop.shape)
    if mask.sum() < min_pixels:
        return None
    lab = rgb_to_lab(crop[mask])
    lo, hi = np.percentile(lab[:, 0], [low_pct, high_pct])
    keep = lab[(lab[:, 0] >= lo) & (lab[:, 0] <= hi)]
    if len(keep) < min_pixels:
        return None
    return np.median(keep, axis=0)


class PerceivedAttributes:
    """Annotator "attributes": skin tone (ITA, MST, group), body visibility, perceived age
    and gender. See the module docstring for what each value means."""

    name = "attributes"
    reads = (file(VIDEO), array(FACE, optional=True), score(BODY_VISIBILITY_SCORE, optional=True))
    writes = tuple(attribute(k) for k in ("skin_tone_ita", "skin_tone_monk", "skin_tone_group", "perceived_age",
                                          "perceived_gender", "body_visibility"))

    def __init__(self, cfg: AttributeConfig | None = None, device: str = "cpu"):
        self.cfg = cfg or AttributeConfig()
        self.device = device
        self.mesh = FaceMeshRunner(self.cfg.min_detection_confidence)
        self.classifier = AgeGenderClassifier(self.cfg, device) if self.cfg.age_gender_model else None

    def __call__(self, record: ClipRecord) -> ClipRecord:
        score = record.scores.get(BODY_VISIBILITY_SCORE)
        if score is not None:
            record.attributes["body_visibility"] = Attribute(
                value=score, method=f"copied from curation score {BODY_VISIBILITY_SCORE}")
        try:
            faces = face_frames(record, self.cfg.frames, self.mesh)
        except MediaError as e:
            faces = f"video not readable: {e}"
        if isinstance(faces, str):
            self._not_estimated(record, faces)
            record.fail(self.name, faces)
            return record
        skin_ok = self._skin_tone(record, faces)
        if self.classifier is None:
            for key in ("perceived_age", "perceived_gender"):
                record.attributes[key] = Attribute(value=None, method=NOT_CONFIGURED)
        else:
            record.attributes.update(self.classifier.estimate(faces))
        if skin_ok:
            record.mark(self.name, "done")
        else:
            record.fail(self.name, f"too few well-lit skin pixels in {faces.tried} frames")
        return record

    # -- skin tone --------------------------------------------------------------------
    def _skin_tone(self, record: ClipRecord, faces: FaceFrames) -> bool:
        c = self.cfg
        labs = [frame_skin_lab(f, lm, c.skin_low_percentile, c.skin_high_percentile, c.min_skin_pixels)
                for f, lm in zip(faces.frames, faces.landmarks)]
        labs = np.array([x for x in labs if x is not None])
        if len(labs) == 0:
            for key in ("skin_tone_ita", "skin_tone_monk", "skin_tone_group"):
                record.attributes[key] = Attribute(value=None, method="not estimated: too few well-lit skin pixels")
            return False
        used = len(labs) / faces.tried
        itas = ita_degrees(labs[:, 0], labs[:, 2])
        ita = float(np.median(itas))
        lab = np.median(labs, axis=0)
        group = ita_group(ita, c.ita_light_min, c.ita_dark_max)
        step = nearest_monk(lab)
        frame_groups = [ita_group(x, c.ita_light_min, c.ita_dark_max) for x in itas]
        frame_steps = np.atleast_1d(nearest_monk(labs))
        mad = float(np.median(np.abs(itas - ita)))
        how = (f"perceived, automatic estimate: median CIELAB of well-lit forehead/cheek pixels "
               f"(L* p{c.skin_low_percentile:g}-p{c.skin_high_percentile:g}) in {len(labs)}/{faces.tried} "
               f"frames, landmarks from {faces.source}")
        record.attributes["skin_tone_ita"] = Attribute(
            value=round(ita, 2), confidence=round(used / (1 + mad / 10), 3),
            method=f"ITA = atan((L*-50)/b*); {how}; L*={lab[0]:.1f} a*={lab[1]:.1f} b*={lab[2]:.1f}")
        record.attributes["skin_tone_monk"] = Attribute(
            value=step, confidence=round(used * float(np.mean(frame_steps == step)), 3),
            method=f"nearest Monk Skin Tone reference colour in Lab (CIE76); {how}")
        record.attributes["skin_tone_group"] = Attribute(
            value=group, confidence=round(used * float(np.mean([g == group for g in frame_groups])), 3),
            method=(f"from ITA: light > {c.ita_light_min:g}, medium {c.ita_dark_max:g}..{c.ita_light_min:g}, "
                    f"dark <= {c.ita_dark_max:g}; {how}"))
        return True

    def _not_estimated(self, record: ClipRecord, why: str) -> None:
        for key in ("skin_tone_ita", "skin_tone_monk", "skin_tone_group"):
            record.attributes[key] = Attribute(value=None, method=f"not estimated: {why}")
        for key in ("perceived_age", "perceived_gender"):
            method = NOT_CONFIGURED if self.classifier is None else f"not estimated: {why}"
            record.attributes[key] = Attribute(value=None, method=method)


def onnx_session(path: str | Path, device: str, what: str, config_key: str):
    """An onnxruntime session on `path`; raises with the fix when the file or package is missing."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} model {p} not found: set {config_key} to a local .onnx file, "
                                "or leave it empty to skip this estimate")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("ONNX models need onnxruntime: pip install onnxruntime (or onnxruntime-gpu)") from e
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # pipelines/ scale out with actors, not threads
    try:
        return ort.InferenceSession(str(p), sess_options=opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ValueError(f"{what} model {p} is not a loadable ONNX file ({e}); fix {config_key}") from None


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class AgeGenderClassifier:
    """Perceived age group and gender from an ONNX face classifier (contract: module docstring)."""

    def __init__(self, cfg: AttributeConfig, device: str = "cpu"):
        self.cfg = cfg
        self.path = Path(cfg.age_gender_model or "")
        self.session = onnx_session(self.path, device, "age/gender", "annotate.attributes.age_gender_model")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ValueError(f"age/gender model {self.path}: input {inp.name} has shape {shape}, expected Nx3xHxW")
        self.batch = shape[0] if isinstance(shape[0], int) else None
        self.h = shape[2] if isinstance(shape[2], int) else cfg.classifier_size
        self.w = shape[3] if isinstance(shape[3], int) else cfg.classifier_size
        self.mean = np.float32(cfg.classifier_mean).reshape(1, 3, 1, 1)
        self.std = np.float32(cfg.classifier_std).reshape(1, 3, 1, 1)
        # Run once on a blank face so a model that does not match the labels fails here.
        self._logits(np.zeros((1, 3, self.h, self.w), np.float32))

    def _logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.batch == 1 and len(x) > 1:
            parts = [self._logits(x[i:i + 1]) for i in range(len(x))]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        outs = self.session.get_outputs()
        res = self.session.run(None, {self.input_name: x})
        na, ng = len(self.cfg.age_labels), len(self.cfg.gender_labels)
        if len(res) >= 2:
            names = [o.name.lower() for o in outs]
            ia = next((i for i, n in enumerate(names) if "age" in n), 0)
            ig = next((i for i, n in enumerate(names) if "gender" in n or "sex" in n), 1)
            age, gender = res[ia].reshape(len(x), -1), res[ig].reshape(len(x), -1)
        else:
            flat = res[0].reshape(len(x), -1)
            if flat.shape[1] != na + ng:
                raise ValueError(f"age/gender model {self.path}: one output of {flat.shape[1]} values, expected "
                                 f"{na} age + {ng} gender logits (config age_labels, gender_labels)")
            age, gender = flat[:, :na], flat[:, na:]
        if age.shape[1] != na or gender.shape[1] != ng:
            raise ValueError(f"age/gender model {self.path}: outputs have {age.shape[1]} age and {gender.shape[1]} "
                             f"gender values, config has {na} age_labels and {ng} gender_labels")
        return age, gender

    def preprocess(self, faces: FaceFrames) -> np.ndarray:
        """Kx3xHxW float32 face crops (square box around the landmarks, grown by the margin)."""
        import cv2

        crops = []
        for frame, lm in zip(faces.frames, faces.landmarks):
            x0, y0, x1, y1 = face_box(lm, frame.shape, self.cfg.classifier_face_margin)
            crops.append(cv2.resize(frame[y0:y1, x0:x1], (self.w, self.h), interpolation=cv2.INTER_AREA))
        x = np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        return ((x - self.mean) / self.std).astype(np.float32)

    def estimate(self, faces: FaceFrames) -> dict[str, Attribute]:
        age, gender = self._logits(self.preprocess(faces))
        out = {}
        for key, logits, labels in (("perceived_age", age, self.cfg.age_labels),
                                    ("perceived_gender", gender, self.cfg.gender_labels)):
            p = _softmax(logits.astype(np.float64)).mean(0)  # mean over frames
            k = int(p.argmax())
            out[key] = Attribute(
                value=labels[k], confidence=round(float(p[k]), 3),
                method=f"perceived, automatic estimate: ONNX classifier {self.path.name}, "
                       f"mean class probability over {len(logits)} frames")
        return out
