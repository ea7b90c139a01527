"""The clip record: the one dict-like thing that flows between every stage.

A `SourceRecord` is a raw video as found (lhotse's Recording); a `ClipRecord` is a time
span of one source (lhotse's Cut) with everything the stages learned about it. Stages own
their fields by name: a stage called "vad" writes `scores["vad.*"]`, `status["vad"]`,
`errors["vad"]`, `annotations["vad"]` and arrays named "vad.*", and nothing else.

A clip that fails a filter is not dropped: `reject()` records the reason and the clip keeps
flowing, so the run's tables show why every clip was kept or dropped.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"


def clip_id(source_id: str, start: float, end: float) -> str:
    """Stable id of a span of a source: same source and span -> same id on every run.

    Times are rounded to milliseconds so float noise does not change the id. Hex only,
    so the id is a valid WebDataset key (no dots).
    """
    text = f"{source_id}|{start:.3f}|{end:.3f}"
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def source_id(uri: str) -> str:
    """Stable id of a source from its URI or path."""
    return hashlib.sha1(uri.encode()).hexdigest()[:16]


@dataclass
class FrameArray:
    """A per-frame (or per-step) signal that carries its own rate and start time.

    data: TxD... array, row i at time `start + i / fps` seconds from the clip's start.
    Missing frames are NaN (floats) so they never look like data.
    """

    data: np.ndarray
    fps: float
    start: float = 0.0

    @property
    def times(self) -> np.ndarray:
        return self.start + np.arange(len(self.data)) / self.fps

    # numpy sees the data: np.asarray(a), a.shape, len(a), a[i]
    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]

    def meta(self) -> dict[str, Any]:
        return {
            "fps": float(self.fps),
            "start": float(self.start),
            "shape": list(self.data.shape),
            "dtype": str(self.data.dtype),
        }


class CropBox(BaseModel):
    """Square crop in source pixels, fixed over the clip."""

    x: int
    y: int
    size: int


class Attribute(BaseModel):
    """A perceived attribute: an automatic estimate, never an identity."""

    value: str | float | None
    confidence: float | None = None
    method: str = ""


class SourceRecord(BaseModel):
    """A raw video as configured and fetched."""

    schema_version: str = SCHEMA_VERSION
    id: str
    uri: str
    dataset: str = ""
    license: str | None = None
    notes: str | None = None
    identity: str | None = None
    path: str | None = None  # local file after fetch
    probe: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None  # "fetch: HTTP 404 for http://..."

    @classmethod
    def from_uri(cls, uri: str, **kw: Any) -> "SourceRecord":
        return cls(id=source_id(uri), uri=uri, **kw)


class ClipRecord(BaseModel):
    """One clip: a span of a source, its encoded files, and every stage's results."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    schema_version: str = SCHEMA_VERSION
    id: str
    source_id: str
    source_uri: str
    dataset: str = ""
    license: str | None = None
    notes: str | None = None
    start: float  # seconds in the source
    end: float
    fps: float | None = None  # of the encoded clip
    width: int | None = None
    height: int | None = None
    source_fps: float | None = None
    source_width: int | None = None
    source_height: int | None = None
    crop: CropBox | None = None
    identity: str | None = None
    split: str | None = None
    scores: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    status: dict[str, str] = Field(default_factory=dict)  # stage -> done | failed | skipped: why
    attributes: dict[str, Attribute] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)  # stage -> JSON-able result
    rejected: str | None = None  # "stage: reason" of the first filter that dropped it
    array_meta: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Local working files while the pipeline runs ("video", "audio", "source"); not stored.
    files: dict[str, str] = Field(default_factory=dict, exclude=True)
    arrays: dict[str, FrameArray] = Field(default_factory=dict, exclude=True)

    @classmethod
    def for_span(cls, source: SourceRecord, start: float, end: float, **kw: Any) -> "ClipRecord":
        return cls(
            id=clip_id(source.id, start, end),
            source_id=source.id,
            source_uri=source.uri,
            dataset=source.dataset,
            license=source.license,
            notes=source.notes,
            identity=source.identity,
            start=round(start, 3),
            end=round(end, 3),
            source_fps=source.probe.get("fps"),
            source_width=source.probe.get("width"),
            source_height=source.probe.get("height"),
            files={"source": source.path} if source.path else {},
            **kw,
        )

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def kept(self) -> bool:
        return self.rejected is None

    # -- what stages call -------------------------------------------------------------
    def set_score(self, name: str, value: Any) -> None:
        """`name` is "stage.metric"; numpy scalars are stored as Python numbers."""
        if isinstance(value, np.generic):
            value = value.item()
        self.scores[name] = value

    def reject(self, stage: str, reason: str) -> None:
        """Drop the clip with a reason; the first rejection wins, the clip keeps flowing."""
        if self.rejected is None:
            self.rejected = f"{stage}: {reason}"

    def fail(self, stage: str, message: str) -> None:
        """A stage could not process this clip (bad data, not a bad call)."""
        self.errors[stage] = message
        self.status[stage] = "failed"

    def mark(self, stage: str, status: str = "done") -> None:
        self.status[stage] = status

    def add_array(self, name: str, data: np.ndarray, fps: float, start: float = 0.0) -> None:
        self.arrays[name] = FrameArray(np.asarray(data), float(fps), float(start))

    @property
    def reject_stage(self) -> str | None:
        return self.rejected.split(":", 1)[0] if self.rejected else None

    # -- serialisation ----------------------------------------------------------------
    def to_json(self) -> str:
        self.array_meta = {k: a.meta() for k, a in self.arrays.items()}
        return self.model_dump_json()

    def arrays_npz(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: a.data for k, a in self.arrays.items()})
        return buf.getvalue()

    @classmethod
    def from_json(cls, text: str | bytes, npz: bytes | None = None) -> "ClipRecord":
        rec = cls.model_validate(json.loads(text))
        if npz:
            with np.load(io.BytesIO(npz), allow_pickle=False) as z:
                for k in z.files:
                    m = rec.array_meta.get(k, {})
                    rec.arrays[k] = FrameArray(z[k], m.get("fps", 0.0), m.get("start", 0.0))
        return rec

    def to_row(self) -> dict[str, Any]:
        """The form a record travels in through Ray Data: one opaque column.

        Records carry nested dicts whose keys differ per clip; Arrow struct columns
        would have to unify them, so the record travels serialised.
        """
        return {"clip_id": self.id, "record": self.to_json(), "npz": self.arrays_npz(),
                "files": json.dumps(self.files)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ClipRecord":
        rec = cls.from_json(row["record"], row.get("npz"))
        rec.files = json.loads(row.get("files") or "{}")
        return rec

    def index_row(self) -> dict[str, Any]:
        """Flat row for the Parquet index: every score and attribute as its own column."""
        row: dict[str, Any] = {
            "clip_id": self.id,
            "source_id": self.source_id,
            "source_uri": self.source_uri,
            "dataset": self.dataset,
            "license": self.license,
            "identity": self.identity,
            "split": self.split,
            "start": self.start,
            "end": self.end,
            "duration": round(self.duration, 3),
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "rejected": self.rejected,
            "reject_stage": self.reject_stage,
            "status": json.dumps(self.status, sort_keys=True),
            "errors": json.dumps(self.errors, sort_keys=True),
        }
        for k, v in self.scores.items():
            row[f"score.{k}"] = v
        for k, a in self.attributes.items():
            row[f"attr.{k}"] = None if a.value is None else str(a.value)
            row[f"attr.{k}.confidence"] = a.confidence
        return row
