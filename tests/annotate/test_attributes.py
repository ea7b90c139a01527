"""Perceived attributes: skin tone on the astronaut's face recoloured to known ITA values,
robustness to badly lit frames, FaceMesh when no landmarks array exists, the age/gender
ONNX path on a tiny model built here, and "not estimated" without a model."""

from __future__ import annotations

import numpy as np
import pytest

from annotate.attributes import (
    NOT_CONFIGURED,
    PerceivedAttributes,
    frame_skin_lab,
    ita_degrees,
    ita_group,
    monk_lab,
    nearest_monk,
    rgb_to_lab,
)
from mentor.config import AttributeConfig
from mentor.media import write_video
from mentor.record import ClipRecord, SourceRecord

SIZE = 512
FPS = 25.0
N_FRAMES = 8
# (L*, b*) targets and the ITA they make: well inside each group's range (41 / 10 cuts).
TARGETS = {"light": (76.0, 14.0), "medium": (60.0, 20.0), "dark": (38.0, 18.0)}


@pytest.fixture(scope="session")
def astronaut():
    """512x512 RGB astronaut and its 478x3 FaceMesh landmarks (pixels)."""
    from mentor.testmedia import _base_image, face_landmarks

    img = np.array(_base_image("astronaut", SIZE))
    lm2 = face_landmarks("astronaut", SIZE)
    return img, np.concatenate([lm2, np.zeros((len(lm2), 1), np.float32)], axis=1)


def recolour(img: np.ndarray, lm: np.ndarray, L: float, b: float) -> np.ndarray:
    """The face (landmark hull) shifted in Lab so its skin's median L*, b* become (L, b)."""
    import cv2
    from skimage.color import lab2rgb

    hull = np.zeros(img.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(lm[:, :2]).astype(np.int32)), 1)
    skin = frame_skin_lab(img, lm, 10, 90, 50)
    lab = rgb_to_lab(img)
    m = hull.astype(bool)
    lab[m, 0] += L - skin[0]
    lab[m, 2] += b - skin[2]
    out = np.clip(lab2rgb(lab) * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.where(m[..., None], out, img)


def make_record(tmp_path, name: str, frames: np.ndarray, lm: np.ndarray | None) -> ClipRecord:
    src = SourceRecord.from_uri(f"file:///{name}.mp4", identity=name)
    rec = ClipRecord.for_span(src, 0.0, len(frames) / FPS, fps=FPS, width=SIZE, height=SIZE)
    rec.files["video"] = str(write_video(frames, tmp_path / f"{name}.mp4", FPS))
    if lm is not None:
        rec.add_array("landmarks.face", np.repeat(lm[None], len(frames), 0), FPS)
    return rec


def test_ita_and_groups_by_definition():
    assert ita_degrees(50, 10) == pytest.approx(0.0)
    assert ita_degrees(60, 10) == pytest.approx(45.0)
    assert [ita_group(x) for x in (55, 41.5, 41, 20, 10, -40)] == ["light", "light", "medium", "medium", "dark", "dark"]
    # Each MST reference colour is its own nearest step.
    assert list(nearest_monk(monk_lab())) == list(range(1, 11))


@pytest.mark.parametrize("group", list(TARGETS))
def test_recoloured_face_measures_target_ita(astronaut, group):
    img, lm = astronaut
    L, b = TARGETS[group]
    lab = frame_skin_lab(recolour(img, lm, L, b), lm, 10, 90, 50)
    assert float(ita_degrees(lab[0], lab[2])) == pytest.approx(float(ita_degrees(L, b)), abs=2.0)
    assert ita_group(float(ita_degrees(lab[0], lab[2]))) == group


@pytest.fixture(scope="session")
def recoloured_records(astronaut, tmp_path_factory):
    """One encoded 8-frame clip per group with a landmarks.face array, annotated once."""
    img, lm = astronaut
    tmp = tmp_path_factory.mktemp("attr")
    ann = PerceivedAttributes(AttributeConfig())
    out = {}
    for group, (L, b) in TARGETS.items():
        frames = np.repeat(recolour(img, lm, L, b)[None], N_FRAMES, 0)
        out[group] = ann(make_record(tmp, group, frames, lm))
    return out


@pytest.mark.parametrize("group", list(TARGETS))
def test_annotator_groups_encoded_clips(recoloured_records, group):
    rec = recoloured_records[group]
    L, b = TARGETS[group]
    assert rec.status["attributes"] == "done"
    assert rec.attributes["skin_tone_group"].value == group
    # H.264 4:2:0 moves colours a little; the ITA stays within a few degrees.
    assert rec.attributes["skin_tone_ita"].value == pytest.approx(float(ita_degrees(L, b)), abs=4.0)
    assert rec.attributes["skin_tone_group"].confidence > 0.9
    assert "perceived" in rec.attributes["skin_tone_group"].method
    assert rec.attributes["perceived_age"].value is None
    assert rec.attributes["perceived_age"].method == NOT_CONFIGURED
    assert rec.attributes["perceived_gender"].method == NOT_CONFIGURED


def test_monk_steps_order_with_darkness(recoloured_records):
    steps = [recoloured_records[g].attributes["skin_tone_monk"].value for g in ("light", "medium", "dark")]
    assert all(1 <= s <= 10 for s in steps)
    assert steps[0] < steps[1] < steps[2]


def test_few_badly_lit_frames_do_not_move_ita(astronaut, tmp_path):
    img, lm = astronaut
    good = recolour(img, lm, *TARGETS["medium"])
    frames = np.repeat(good[None], N_FRAMES, 0)
    frames[1] = (frames[1] * 0.35).astype(np.uint8)  # a dark frame
    frames[5] = np.clip(frames[5].astype(int) + 90, 0, 255).astype(np.uint8)  # a washed-out frame
    rec = PerceivedAttributes(AttributeConfig())(make_record(tmp_path, "badlight", frames, lm))
    assert rec.attributes["skin_tone_group"].value == "medium"
    assert rec.attributes["skin_tone_ita"].value == pytest.approx(float(ita_degrees(*TARGETS["medium"])), abs=4.0)
    # the two bad frames disagree, so the confidence says so
    assert rec.attributes["skin_tone_group"].confidence < 1.0


def test_facemesh_runs_when_no_landmarks_array(talking_clip):
    src = SourceRecord.from_uri("file:///talking.mp4")
    rec = ClipRecord.for_span(src, 0.0, 4.0, fps=25.0)
    rec.files["video"] = str(talking_clip)
    rec.set_score("filter.body_visibility", "head_torso")
    rec = PerceivedAttributes(AttributeConfig(frames=3))(rec)
    assert rec.status["attributes"] == "done", rec.errors
    assert "facemesh" in rec.attributes["skin_tone_ita"].method
    assert rec.attributes["skin_tone_group"].value == "light"  # the astronaut as photographed (ITA ~ 60)
    assert rec.attributes["body_visibility"].value == "head_torso"


def test_clip_without_video_is_failed_not_raised():
    rec = ClipRecord.for_span(SourceRecord.from_uri("x"), 0.0, 2.0)
    rec = PerceivedAttributes(AttributeConfig())(rec)
    assert rec.status["attributes"] == "failed"
    assert "no video" in rec.errors["attributes"]
    assert rec.attributes["skin_tone_group"].value is None
    assert rec.attributes["skin_tone_group"].method.startswith("not estimated")


# -- age / gender ONNX ------------------------------------------------------------------

def build_age_gender_onnx(path, side: int = 32, n_age: int = 9, n_gender: int = 2, seed: int = 0):
    """Tiny classifier: global average pool -> two linear heads. Returns its weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    wa, ba = rng.normal(size=(3, n_age)).astype(np.float32), rng.normal(size=n_age).astype(np.float32)
    wg, bg = rng.normal(size=(3, n_gender)).astype(np.float32), rng.normal(size=n_gender).astype(np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["face"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["feat"]),
        helper.make_node("Gemm", ["feat", "wa", "ba"], ["age_logits"]),
        helper.make_node("Gemm", ["feat", "wg", "bg"], ["gender_logits"]),
    ]
    graph = helper.make_graph(
        nodes, "age_gender",
        [helper.make_tensor_value_info("face", TensorProto.FLOAT, ["n", 3, side, side])],
        [helper.make_tensor_value_info("gender_logits", TensorProto.FLOAT, ["n", n_gender]),
         helper.make_tensor_value_info("age_logits", TensorProto.FLOAT, ["n", n_age])],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((wa, "wa"), (ba, "ba"), (wg, "wg"), (bg, "bg"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return wa, ba, wg, bg


def test_age_gender_onnx_matches_reference(recoloured_records, tmp_path):
    from annotate.face_regions import face_frames

    wa, ba, wg, bg = build_age_gender_onnx(tmp_path / "ag.onnx")
    cfg = AttributeConfig(age_gender_model=str(tmp_path / "ag.onnx"))
    ann = PerceivedAttributes(cfg)
    rec = ann(ClipRecord.from_row(recoloured_records["medium"].to_row()))
    # Reference: the same crops through numpy (outputs are matched by name, not order).
    x = ann.classifier.preprocess(face_frames(rec, cfg.frames, None))
    assert x.shape == (N_FRAMES, 3, 32, 32)  # side taken from the model
    feat = x.mean(axis=(2, 3))
    for key, w, bias, labels in (("perceived_age", wa, ba, cfg.age_labels),
                                 ("perceived_gender", wg, bg, cfg.gender_labels)):
        logits = feat @ w + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p = (p / p.sum(1, keepdims=True)).mean(0)
        assert rec.attributes[key].value == labels[int(p.argmax())]
        assert rec.attributes[key].confidence == pytest.approx(float(p.max()), abs=2e-3)
        assert "perceived" in rec.attributes[key].method


def test_age_gender_model_checked_at_construction(tmp_path):
    with pytest.raises(FileNotFoundError, match="age_gender_model"):
        PerceivedAttributes(AttributeConfig(age_gender_model=str(tmp_path / "missing.onnx")))
    build_age_gender_onnx(tmp_path / "ag7.onnx", n_age=7)
    with pytest.raises(ValueError, match="age_labels"):
        PerceivedAttributes(AttributeConfig(age_gender_model=str(tmp_path / "ag7.onnx")))


def test_face_frames_read_in_one_pass(tmp_path):
    """The few frames an attribute is measured on come from one pass of one decoder (one
    read_frames call per frame reopened the file and decoded from the keyframe each time):
    the frame nearest each time, exactly as read_frames gives it, in the order asked."""
    from annotate.face_regions import _read_frames_at
    from mentor.media import MediaError, read_frames

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (50, 64, 64, 3), dtype=np.uint8)  # every frame different
    video = write_video(frames, tmp_path / "noise.mp4", fps=FPS)
    times = np.array([1.5, 0.0, 0.37, 1.96, 0.37])
    got = _read_frames_at(str(video), times)
    want = np.stack([read_frames(video, start=t, end=t + 1e-3)[0] for t in times])
    assert got.shape == (5, 64, 64, 3) and np.array_equal(got, want)
    assert not np.array_equal(got[0], got[1]) and np.array_equal(got[2], got[4])
    with pytest.raises(MediaError):
        _read_frames_at(str(video), [5.0])  # past the last frame


def test_attributes_take_the_frames_the_landmark_stage_decoded(talking_clip, tmp_path, video_opens):
    """After the landmark stage in the same worker, the attributes are measured on the
    frames it kept (no decoder opened again), with the same result as decoding them; a
    clip the landmark stage did not see is decoded as before."""
    import shutil

    from annotate import landmarks
    from annotate.landmarks import HolisticLandmarks
    from mentor.config import LandmarksConfig

    clip = shutil.copy(talking_clip, tmp_path / "clip.mp4")
    rec = ClipRecord(id="a", source_id="s", source_uri="u", start=0.0, end=4.0, fps=25.0, width=512, height=512)
    rec.files["video"] = str(clip)
    rec = HolisticLandmarks(LandmarksConfig())(rec)
    assert video_opens[str(clip)] == 1 and np.isfinite(rec.arrays["landmarks.face"].data[..., 0]).all()
    annotator = PerceivedAttributes(AttributeConfig())
    kept = annotator(rec.model_copy(deep=True))
    assert video_opens[str(clip)] == 1  # not opened again
    landmarks._KEPT.clear()
    decoded = annotator(rec.model_copy(deep=True))
    assert video_opens[str(clip)] == 2
    assert kept.attributes == decoded.attributes and kept.attributes["skin_tone_ita"].value is not None
