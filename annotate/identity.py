"""Who is in a clip: face embeddings per clip, clustered across the store into identities.

With an ArcFace ONNX model (annotate.attributes.face_recognition_model) the annotator
`FaceIdentity` embeds 112x112 face crops aligned from the face landmarks on a few frames
and stores their mean (L2-normalised) in annotations["identity"]. `cluster_identities`
then groups clips across the whole store (average-linkage agglomerative clustering on
cosine similarity); `store_identities` returns the ("clip_id", "identity") table for
`Store.set_columns`. Without a model, or for clips with no face embedding, the identity
stays the source-level one already in record.identity (from datasets.yaml: one video or
one channel = one identity).

ArcFace input contract (insightface's): Nx3x112x112 float32 RGB, (x - 127.5) / 127.5;
output NxD embeddings.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from annotate.attributes import onnx_session
from annotate.face_regions import FaceMeshRunner, align_face, face_frames
from annotate.landmarks import FACE
from mentor.config import AttributeConfig
from mentor.contracts import annotation, array, file, score
from mentor.curate.encode import VIDEO
from mentor.media import MediaError
from mentor.record import ClipRecord

if TYPE_CHECKING:
    from mentor.store import Store

log = logging.getLogger(__name__)

ARCFACE_SIZE = 112
NO_MODEL = "skipped: no face recognition model configured (source identity kept)"


class FaceIdentity:
    """Annotator "identity": annotations["identity"] = {"embedding": [D floats], "frames": K,
    "model": file name}; never changes record.identity (that is a store-wide decision)."""

    name = "identity"
    reads = (file(VIDEO), array(FACE, optional=True))
    writes = (annotation("identity"), score("identity.frame_consistency"))

    def __init__(self, cfg: AttributeConfig | None = None, device: str = "cpu"):
        self.cfg = cfg or AttributeConfig()
        self.session = None
        self.mesh = FaceMeshRunner(self.cfg.min_detection_confidence)
        if self.cfg.face_recognition_model:
            self.path = Path(self.cfg.face_recognition_model)
            self.session = onnx_session(self.path, device, "face recognition",
                                        "annotate.attributes.face_recognition_model")
            inp = self.session.get_inputs()[0]
            self.input_name = inp.name
            self.batch_one = inp.shape[0] == 1
            shape = list(inp.shape)
            if len(shape) != 4 or any(isinstance(s, int) and s != e for s, e in zip(shape[1:], (3, ARCFACE_SIZE, ARCFACE_SIZE))):
                raise ValueError(f"face recognition model {self.path}: input shape {shape}, expected Nx3x112x112 (ArcFace)")

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """KxD L2-normalised embeddings of Kx112x112x3 uint8 RGB aligned crops."""
        x = ((crops.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x)
        if self.batch_one:
            emb = np.concatenate([self.session.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))])
        else:
            emb = self.session.run(None, {self.input_name: x})[0]
        emb = emb.reshape(len(x), -1).astype(np.float64)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        if self.session is None:
            record.mark(self.name, NO_MODEL)
            return record
        try:
            faces = face_frames(record, self.cfg.frames, self.mesh)
        except MediaError as e:
            faces = f"video not readable: {e}"
        if isinstance(faces, str):
            record.fail(self.name, faces)
            return record
        crops = np.stack([align_face(f, lm, ARCFACE_SIZE) for f, lm in zip(faces.frames, faces.landmarks)])
        emb = self.embed(crops)
        mean = emb.mean(0)
        # how alike the frames are: low values mean the frames do not show one face
        consistency = float(np.mean(emb @ (mean / max(np.linalg.norm(mean), 1e-12))))
        record.annotations[self.name] = {
            "embedding": [round(float(v), 6) for v in mean / max(np.linalg.norm(mean), 1e-12)],
            "frames": len(emb),
            "model": self.path.name,
        }
        record.set_score(f"{self.name}.frame_consistency", round(consistency, 4))
        record.mark(self.name, "done")
        return record


def cluster_identities(clip_ids: list[str], embeddings: np.ndarray, min_similarity: float = 0.4) -> pd.Series:
    """Identity label per clip from face embeddings (NxD), by average-linkage agglomerative
    clustering on cosine distance, cut where the mean similarity drops below `min_similarity`.

    Labels are "face-<hash of the cluster's smallest clip id>", so the same clusters get the
    same names on every run. Returns a Series indexed by clip id.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    emb = np.asarray(embeddings, np.float64)
    if emb.ndim != 2 or len(emb) != len(clip_ids):
        raise ValueError(f"embeddings must be NxD with N = len(clip_ids) = {len(clip_ids)}, got {emb.shape}")
    if len(clip_ids) == 0:
        return pd.Series([], dtype=object, name="identity")
    if len(clip_ids) == 1:
        labels = np.array([1])
    else:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        tree = linkage(emb, method="average", metric="cosine")
        labels = fcluster(tree, t=1.0 - min_similarity, criterion="distance")
    ids = pd.Series(list(clip_ids))
    first = ids.groupby(labels).transform("min")
    names = ["face-" + hashlib.sha1(c.encode()).hexdigest()[:12] for c in first]
    return pd.Series(names, index=list(clip_ids), name="identity")


def store_identities(store: "Store", min_similarity: float = 0.4) -> pd.DataFrame:
    """("clip_id", "identity") for every kept clip: the embedding cluster where the clip has
    a face embedding, else its source-level identity (or source id). For Store.set_columns."""
    clips = store.clips()
    ids, embs = [], []
    for rec in store.records():
        emb = (rec.annotations.get("identity") or {}).get("embedding")
        if emb:
            ids.append(rec.id)
            embs.append(emb)
    out = clips[["clip_id"]].copy()
    fallback = clips["identity"].where(clips["identity"].notna(), clips["source_id"])
    out["identity"] = fallback.to_numpy()
    if ids:
        faces = cluster_identities(ids, np.array(embs), min_similarity)
        hit = out["clip_id"].isin(faces.index)
        out.loc[hit, "identity"] = faces.loc[out.loc[hit, "clip_id"]].to_numpy()
    log.info("identities: %d clips, %d with face embeddings, %d identities",
             len(out), len(ids), out["identity"].nunique())
    return out.reset_index(drop=True)
