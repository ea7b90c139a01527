"""The clip record: the one dict-like thing that flows between every stage.

A `SourceRecord` is a raw video as found (lhotse's Recording); a `ClipRecord` is a time
span of one source (lhotse's Cut) with everything the stages learned about it. Stages own
their fields by name: a stage called "vad" writes `scores["vad.*"]`, `status["vad"]`,
`errors["vad"]`, `annotations["vad"]` and arrays named "vad.*", and nothing else.

A clip that fails a filter is not dropped: `reject()` records a `Rejection` (stage, stable
code, readable detail, measured value and threshold) and the clip keeps flowing, so the
run's tables show why every clip was kept or dropped; mentor.rejections groups them by
(stage, code) for the build summary, `mentor info` and the audit.

Schema versions: every record carries `schema_version`. Reading one (`from_json`,
`migrate_record`) migrates older versions step by step (MIGRATIONS) and refuses newer ones
with the version and the fix in the message. Fields this version does not know are kept
(extra="allow") and written back, so re-annotating never drops another tool's fields.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.1"  # 1.1: structured rejections (ClipRecord.rejection)

CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]*")  # a rejection code: lower_snake_case
LEGACY_CODE = "legacy"  # rejections from before codes, whose text names no code


class SchemaVersionError(ValueError):
    """A record or store written by a newer mentor than this one (or with a bad version)."""


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

    model_config = ConfigDict(extra="allow")

    x: int
    y: int
    size: int


class Attribute(BaseModel):
    """A perceived attribute: an automatic estimate, never an identity."""

    model_config = ConfigDict(extra="allow")

    value: str | float | None
    confidence: float | None = None
    method: str = ""


class Rejection(BaseModel):
    """Why a clip was dropped.

    stage: the stage that dropped it ("vad"); code: a stable lower_snake_case name of the
    reason within that stage ("low_speech"): rejections are grouped and counted by
    (stage, code), so a code never holds numbers; detail: readable text, numbers welcome
    ("speech in 12% of the clip < 30%"); value / threshold: the measured number and the
    limit it failed, when there is one.
    """

    model_config = ConfigDict(extra="allow")

    stage: str
    code: str
    detail: str = ""
    value: float | None = None
    threshold: float | None = None

    @property
    def reason(self) -> str:
        """"stage: code", the grouping key as text."""
        return f"{self.stage}: {self.code}"

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason

    @classmethod
    def from_text(cls, text: str) -> "Rejection":
        """A rejection from the free text of old records ("stage: reason"): the stage is the
        text before the first colon; the code is the next colon-separated part when it is
        a code ("filter: face_small: 40 px" -> face_small), else "legacy"."""
        stage, _, rest = str(text).partition(":")
        rest = rest.strip()
        head, sep, tail = rest.partition(":")
        if sep and CODE_PATTERN.fullmatch(head.strip()):
            return cls(stage=stage.strip(), code=head.strip(), detail=tail.strip())
        if CODE_PATTERN.fullmatch(rest):
            return cls(stage=stage.strip(), code=rest)
        return cls(stage=stage.strip(), code=LEGACY_CODE, detail=rest)


class SourceRecord(BaseModel):
    """A raw video as configured and fetched."""

    model_config = ConfigDict(extra="allow")

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

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="allow")

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
    rejection: Rejection | None = None  # the first filter that dropped it
    rejected: str | None = None  # the same as text, "stage: code: detail" (for people and old readers)
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
        return self.rejection is None and self.rejected is None

    # -- what stages call -------------------------------------------------------------
    def set_score(self, name: str, value: Any) -> None:
        """`name` is "stage.metric"; numpy scalars are stored as Python numbers."""
        if isinstance(value, np.generic):
            value = value.item()
        self.scores[name] = value

    def reject(self, stage: str, code: str, detail: str | None = None, value: Any = None,
               threshold: Any = None) -> None:
        """Drop the clip; the first rejection wins and the clip keeps flowing.

            record.reject("vad", "low_speech", f"speech in {f:.0%} of the clip < {m:.0%}",
                          value=f, threshold=m)

        code: lower_snake_case, stable, no numbers (it is what rejections are counted by);
        detail: readable text; value / threshold: the measured number and its limit.
        The old form `reject(stage, "reason text")` still works during the transition
        (a DeprecationWarning; the code is taken from "code: detail" text, else "legacy").
        """
        if detail is None and not CODE_PATTERN.fullmatch(code):
            warnings.warn(f"record.reject({stage!r}, {code!r}): pass a code and a detail, "
                          "reject(stage, code, detail, value=, threshold=)", DeprecationWarning, stacklevel=2)
            r = Rejection.from_text(f"{stage}: {code}")
        else:
            if not CODE_PATTERN.fullmatch(code):
                raise ValueError(f"rejection code {code!r} of stage {stage!r}: must be lower_snake_case with no "
                                 "spaces or numbers-with-units (put those in detail), e.g. 'low_speech'")
            r = Rejection(stage=stage, code=code, detail=detail or "", value=_number(value),
                          threshold=_number(threshold))
        if self.kept:
            self.rejection = r
            self.rejected = str(r)

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
        r = self.rejection_info
        return r.stage if r else None

    @property
    def reject_code(self) -> str | None:
        r = self.rejection_info
        return r.code if r else None

    @property
    def rejection_info(self) -> Rejection | None:
        """The rejection, also for a record that has only the old text."""
        if self.rejection is not None:
            return self.rejection
        return Rejection.from_text(self.rejected) if self.rejected else None

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
        """A stored record (any older schema version is migrated; a newer one raises
        SchemaVersionError naming the version and the fix)."""
        rec = cls.model_validate(migrate_record(json.loads(text)))
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
            "reject_code": self.reject_code,
            "reject_value": self.rejection.value if self.rejection else None,
            "reject_threshold": self.rejection.threshold if self.rejection else None,
            "status": json.dumps(self.status, sort_keys=True),
            "errors": json.dumps(self.errors, sort_keys=True),
        }
        for k, v in self.scores.items():
            row[f"score.{k}"] = v
        for k, a in self.attributes.items():
            row[f"attr.{k}"] = None if a.value is None else str(a.value)
            row[f"attr.{k}.confidence"] = a.confidence
        return row


def _number(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"rejection value/threshold {v!r}: must be a number or None")
    return float(v)


# -- schema versions ----------------------------------------------------------------------

def version_tuple(version: Any, what: str = "record") -> tuple[int, ...]:
    """"1.10" -> (1, 10); raises SchemaVersionError for text that is not a version."""
    try:
        return tuple(int(x) for x in str(version).split("."))
    except ValueError:
        raise SchemaVersionError(f"{what} has schema_version {version!r}, which is not a version number "
                                 f"(this mentor writes {SCHEMA_VERSION}); the file is damaged or not mentor's") from None


def check_version(version: Any, what: str = "record") -> None:
    """Raise SchemaVersionError if `version` is newer than this mentor's SCHEMA_VERSION."""
    if version_tuple(version, what) > version_tuple(SCHEMA_VERSION):
        raise SchemaVersionError(
            f"{what} has schema_version {version}, newer than this mentor's {SCHEMA_VERSION}: it was written by a "
            "newer mentor. Upgrade mentor (git pull && make setup, or pip install -U mentor) to read it; "
            "rewriting it with this version would lose what the newer one stored")


def _migrate_1_0(d: dict[str, Any]) -> dict[str, Any]:
    """1.0 -> 1.1: the free-text `rejected` ("stage: reason") becomes a structured rejection
    (code parsed from "stage: code: detail" text, else "legacy"); the text is kept."""
    if d.get("rejected") and not d.get("rejection"):
        d["rejection"] = Rejection.from_text(d["rejected"]).model_dump()
    return d


# from-version -> (to-version, step); applied in a chain until SCHEMA_VERSION
MIGRATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "1.0": ("1.1", _migrate_1_0),
}


def migrate_record(d: dict[str, Any]) -> dict[str, Any]:
    """A stored record's dict at this mentor's SCHEMA_VERSION: older versions migrated step
    by step, newer ones refused (SchemaVersionError). Records without a version are 1.0."""
    d = dict(d)
    version = str(d.get("schema_version") or "1.0")
    what = f"record {d.get('id', '?')}"
    check_version(version, what)
    while version != SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise SchemaVersionError(f"{what} has schema_version {version}, which this mentor cannot migrate to "
                                     f"{SCHEMA_VERSION} (known: {', '.join(MIGRATIONS)}); rebuild the store")
        version, step = MIGRATIONS[version]
        d = step(d)
        d["schema_version"] = version
    return d
