"""Identity: ArcFace-style embeddings through a tiny ONNX model built here, clustering
across clips, the store-level identity table, and the source identity without a model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotate.identity import NO_MODEL, FaceIdentity, cluster_identities, store_identities
from mentor.config import AttributeConfig
from mentor.media import write_video
from mentor.record import ClipRecord, SourceRecord

SIZE = 256
FPS = 25.0


def build_arcface_onnx(path, seed: int = 0):
    """A stand-in for ArcFace: Nx3x112x112 -> 4x4 average-pooled colours (48 values),
    centred per face, through a fixed random 48x32 projection."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(size=(48, 32)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[28, 28], strides=[28, 28]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("ReduceMean", ["flat"], ["mu"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["flat", "mu"], ["centred"]),
        helper.make_node("MatMul", ["centred", "w"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "arcface_tiny",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 32])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def moved(img: np.ndarray, lm: np.ndarray, dx: float, dy: float, scale: float, angle: float):
    """The picture and its landmarks under one similarity transform."""
    import cv2

    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
    m[:, 2] += (dx, dy)
    pts = np.concatenate([lm[:, :2], np.ones((len(lm), 1))], 1) @ m.T
    return cv2.warpAffine(img, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT), \
        np.concatenate([pts, np.zeros((len(lm), 1))], 1).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three clips of the astronaut and two of the cameraman, each framed differently."""
    from mentor.testmedia import _base_image, face_landmarks

    tmp = tmp_path_factory.mktemp("identity")
    people = {name: (np.array(_base_image(name, SIZE)), face_landmarks(name, SIZE)) for name in ("astronaut", "camera")}
    plan = [("astronaut", 0, 0, 1.0, 0), ("astronaut", 12, -6, 0.9, 5), ("astronaut", -10, 8, 1.1, -4),
            ("camera", 0, 0, 1.0, 0), ("camera", 8, 6, 0.92, 4)]
    recs = []
    for i, (name, dx, dy, s, a) in enumerate(plan):
        img, lm = moved(*people[name], dx, dy, s, a)
        src = SourceRecord.from_uri(f"file:///{name}{i}.mp4", identity=f"video{i}")
        rec = ClipRecord.for_span(src, 0.0, 4 / FPS, fps=FPS)
        rec.files["video"] = str(write_video(np.repeat(img[None], 4, 0), tmp / f"{name}{i}.mp4", FPS))
        rec.add_array("landmarks.face", np.repeat(lm[None], 4, 0), FPS)
        recs.append((name, rec))
    return recs


def test_embeddings_cluster_by_person(clips, tmp_path):
    build_arcface_onnx(tmp_path / "arc.onnx")
    ann = FaceIdentity(AttributeConfig(face_recognition_model=str(tmp_path / "arc.onnx"), frames=2))
    done = [ann(ClipRecord.from_row(rec.to_row())) for _, rec in clips]
    for rec in done:
        assert rec.status["identity"] == "done", rec.errors
        emb = np.array(rec.annotations["identity"]["embedding"])
        assert emb.shape == (32,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-4)
        assert rec.identity.startswith("video")  # the annotator never rewrites identity
    emb = np.array([r.annotations["identity"]["embedding"] for r in done])
    sim = emb @ emb.T
    # same person framed differently is closer than the other person
    assert sim[0, 1] > sim[0, 3] and sim[3, 4] > sim[3, 0]
    labels = cluster_identities([r.id for r in done], emb, min_similarity=0.8)
    names = [n for n, _ in clips]
    for i in range(len(done)):
        for j in range(len(done)):
            assert (labels.iloc[i] == labels.iloc[j]) == (names[i] == names[j]), (i, j, sim.round(2))


def test_without_model_source_identity_is_kept(clips):
    _, rec = clips[0]
    out = FaceIdentity(AttributeConfig())(ClipRecord.from_row(rec.to_row()))
    assert out.status["identity"] == NO_MODEL
    assert out.identity == "video0"
    assert "identity" not in out.annotations


def test_missing_or_wrong_model_raises_at_construction(tmp_path):
    with pytest.raises(FileNotFoundError, match="face_recognition_model"):
        FaceIdentity(AttributeConfig(face_recognition_model=str(tmp_path / "nope.onnx")))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX"):
        FaceIdentity(AttributeConfig(face_recognition_model=str(tmp_path / "junk.onnx")))


def test_cluster_threshold_and_stable_names():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=16), rng.normal(size=16)
    emb = np.stack([a, a + 0.05 * rng.normal(size=16), b, b + 0.05 * rng.normal(size=16)])
    ids = ["c3", "c1", "c2", "c0"]
    labels = cluster_identities(ids, emb, 0.9)
    assert labels["c3"] == labels["c1"] != labels["c2"] == labels["c0"]
    assert labels.equals(cluster_identities(ids, emb, 0.9))  # same names every run
    assert cluster_identities(ids, emb, -1.0).nunique() == 1  # everything merges at -1
    with pytest.raises(ValueError, match="NxD"):
        cluster_identities(ids, emb[:3])


def test_store_identities_mixes_faces_and_sources(tmp_path):
    from mentor.store import Store, StoreWriter

    rng = np.random.default_rng(0)
    face = rng.normal(size=8)
    with StoreWriter(tmp_path / "store") as w:
        for i in range(4):
            src = SourceRecord.from_uri(f"file:///v{i}.mp4", identity=f"video{i}")
            rec = ClipRecord.for_span(src, 0.0, 5.0)
            if i < 3:  # three videos of one face, one clip without a face embedding
                rec.annotations["identity"] = {"embedding": list(face + 0.01 * rng.normal(size=8)), "frames": 1}
            w.add(rec)
    s = Store(tmp_path / "store")
    table = store_identities(s, 0.5)
    by_source = dict(zip(s.clips()["identity"], table.set_index("clip_id").loc[s.clips()["clip_id"], "identity"]))
    assert by_source["video0"] == by_source["video1"] == by_source["video2"]
    assert by_source["video0"].startswith("face-")
    assert by_source["video3"] == "video3"
    s.set_columns(table)
    assert Store(tmp_path / "store").clips()["identity"].nunique() == 2
    assert isinstance(table, pd.DataFrame) and list(table.columns) == ["clip_id", "identity"]
