"""Stage contracts: what each step of the curation graph reads from the clip record and
what it writes, checked when the graph is built.

A `Field` names one thing on a ClipRecord, by kind:

    score       record.scores[name]          ("filter.has_audio")
    array       record.arrays[name]          ("landmarks.face")
    annotation  record.annotations[name]     ("sync"; its payload may have a typed model)
    attribute   record.attributes[name]      ("skin_tone_group")
    file        record.files[name]           ("source", "video", "audio"; working files)
    field       a top-level record field     ("crop", "fps", "width", "height")

Names are constants of the module that writes them (`annotate.person_filter.HAS_AUDIO`);
a reader imports the constant, so a renamed field breaks at import, not silently.

A `Stage` is one line of the ordered stage list (annotate/registry.py): its name (the
record's stage name: it owns `scores["<name>.*"]`, `arrays["<name>.*"]` and
`annotations["<name>"]`), its config section, its constructor, and its reads and writes
(given on the line, or taken from the class's own `reads` / `writes` attributes).
`check_graph` walks the enabled stages in order and raises `GraphError` naming the stage
and the field when a stage reads a required field that nothing before it writes, or
writes a score, array or annotation outside its own name.

This module imports no stage: a constructor given as "module:Class" is imported only when
the stage's contract is read or the stage is built (in the worker that runs it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from mentor.config import ConfigError

Kind = Literal["score", "array", "annotation", "attribute", "file", "field"]
KINDS: tuple[str, ...] = ("score", "array", "annotation", "attribute", "file", "field")
Pool = Literal["curate", "annotate"]
# kinds whose names belong to the stage that writes them ("vad.speech_fraction" -> vad)
OWNED_KINDS = ("score", "array", "annotation")


class GraphError(ConfigError):
    """A stage graph that cannot run (a config that switches a stage on without what it
    reads, or a stage list that is wrong): the message names the stage and the field."""


@dataclass(frozen=True)
class Field:
    """One named thing on a clip record. `optional` (on a read): used when present, the
    stage works without it, so the graph check does not require a writer before it."""

    kind: Kind
    name: str
    optional: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field kind {self.kind!r} is not one of {KINDS}")
        if not self.name:
            raise ValueError(f"a {self.kind} field needs a name")

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}"


def score(name: str, optional: bool = False) -> Field:
    return Field("score", name, optional)


def array(name: str, optional: bool = False) -> Field:
    return Field("array", name, optional)


def annotation(name: str, optional: bool = False) -> Field:
    return Field("annotation", name, optional)


def attribute(name: str, optional: bool = False) -> Field:
    return Field("attribute", name, optional)


def file(name: str, optional: bool = False) -> Field:
    return Field("file", name, optional)


def record_field(name: str, optional: bool = False) -> Field:
    return Field("field", name, optional)


def present(record: Any) -> set[Field]:
    """Every field a ClipRecord carries now (for re-annotating a store, and for tests that
    hold a stage's output against its declared writes)."""
    out = {score(k) for k in record.scores}
    out |= {array(k) for k in record.arrays}
    out |= {annotation(k) for k in record.annotations}
    out |= {attribute(k) for k in record.attributes}
    out |= {file(k) for k in record.files}
    out |= {record_field(k) for k in ("crop", "fps", "width", "height") if getattr(record, k) is not None}
    return out


def config_value(cfg: Any, path: str) -> Any:
    """`cfg` at a dotted path ("annotate.vad", "annotate.attributes.on_rejected");
    raises naming the path and the missing part."""
    value = cfg
    for part in path.split("."):
        if not hasattr(value, part):
            raise GraphError(f"config has no {path!r} ({part!r} is missing): fix the stage's config path")
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class Stage:
    """One step of the graph, as one line of the stage list.

    name: the record's stage name (status, errors, owned scores/arrays/annotation).
    section: dotted config path of the stage's settings ("annotate.vad", "filters"); its
        `enabled` switches the stage; None: no settings, always on.
    constructor: the annotator class (or a factory), or "module:Class" imported when first
        needed. Built as `cls.from_config(cfg, work)` when it defines that (it needs more
        than its section: the whole config, the work folder), else `cls(section)`, or
        `cls()` with no section.
    pool: "curate" (on the source span, before and including the encode, in the filter
        actors) or "annotate" (on the encoded clip, in the annotate actors).
    reads / writes: the contract; None takes the class's `reads` / `writes` attributes.
    when: dotted config path of a value that must also be set for the stage to run
        (a weights path, say).
    on_rejected: dotted config path of a bool: when true the stage also runs on rejected
        clips (through mentor.curate.rejected_preview), so the audit can compare groups.
    """

    name: str
    section: str | None
    constructor: str | Callable[..., Any]
    pool: Pool = "annotate"
    reads: tuple[Field, ...] | None = None
    writes: tuple[Field, ...] | None = None
    when: str | None = None
    on_rejected: str | None = None
    _cache: dict = dc_field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if self.pool not in ("curate", "annotate"):
            raise ValueError(f"stage {self.name!r}: pool {self.pool!r} is not 'curate' or 'annotate'")
        if isinstance(self.constructor, str) and ":" not in self.constructor:
            raise ValueError(f"stage {self.name!r}: constructor {self.constructor!r} must be 'module:Class'")

    def cls(self) -> Callable[..., Any]:
        """The constructor, imported on first use."""
        if not isinstance(self.constructor, str):
            return self.constructor
        if "cls" not in self._cache:
            module, _, attr = self.constructor.partition(":")
            try:
                self._cache["cls"] = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as e:
                raise GraphError(f"stage {self.name!r}: cannot import {self.constructor!r} ({e})") from e
        return self._cache["cls"]

    def contract(self) -> tuple[tuple[Field, ...], tuple[Field, ...]]:
        """(reads, writes): the line's own, else the class's attributes."""
        reads, writes = self.reads, self.writes
        if reads is None or writes is None:
            cls = self.cls()
            reads = tuple(getattr(cls, "reads", ())) if reads is None else reads
            writes = tuple(getattr(cls, "writes", ())) if writes is None else writes
        return tuple(reads), tuple(writes)

    def enabled(self, cfg: Any) -> bool:
        if self.section is not None and not getattr(config_value(cfg, self.section), "enabled", True):
            return False
        return self.when is None or bool(config_value(cfg, self.when))

    def runs_on_rejected(self, cfg: Any) -> bool:
        return self.on_rejected is not None and bool(config_value(cfg, self.on_rejected))

    def build(self, cfg: Any, work: Path) -> Any:
        """The stage's annotator (loads its models: call it in the worker that runs it)."""
        cls = self.cls()
        make = getattr(cls, "from_config", None)
        if make is not None:
            return make(cfg, work)
        if self.section is None:
            return cls()
        return cls(config_value(cfg, self.section))


def enabled_stages(stages: Iterable[Stage], cfg: Any, pool: Pool | None = None) -> tuple[Stage, ...]:
    return tuple(s for s in stages if s.enabled(cfg) and (pool is None or s.pool == pool))


def check_graph(stages: Iterable[Stage], given: Iterable[Field] = (), off: Iterable[Stage] = ()) -> set[Field]:
    """Check the stages in order (only the ones that will run); `given` is what the
    records carry before the first one; `off` are stages that could run but are switched
    off (named in the message when one of them writes a missing field). Returns every
    field present after the last stage.

    Raises GraphError when a stage reads a required field that nothing before it writes
    (naming the stage, the field, and a stage that would write it), when two stages
    share a name, or when a stage writes a score, array or annotation outside its own name.
    """
    stages, off = tuple(stages), tuple(off)
    have = {f.key for f in given}
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        if stage.name in seen:
            raise GraphError(f"two stages are named {stage.name!r}: a stage name owns its fields, it must be unique")
        seen.add(stage.name)
        reads, writes = stage.contract()
        for f in reads:
            if f.optional or f.key in have:
                continue
            later = [s.name for s in stages[i + 1:] if f.key in {w.key for w in s.contract()[1]}]
            switched_off = [s for s in off if f.key in {w.key for w in s.contract()[1]}]
            if later:
                hint = "; " + ", ".join(f"stage {n!r}" for n in later) + " writes it but runs after it"
            elif switched_off:
                hint = "; " + ", ".join(f"stage {s.name!r} writes it but is off ({s.section or s.when})"
                                        for s in switched_off) + f", or switch {stage.name!r} off"
            else:
                hint = "; no stage in the list writes it"
            raise GraphError(f"stage {stage.name!r} reads {f}, which no stage before it writes{hint}")
        for f in writes:
            owned = f.name == stage.name if f.kind == "annotation" else f.name.startswith(stage.name + ".")
            if f.kind in OWNED_KINDS and not owned:
                raise GraphError(f"stage {stage.name!r} writes {f}, outside its own name "
                                 f"({stage.name!r} / '{stage.name}.*'): a stage writes only its own fields")
        have |= {f.key for f in writes}
    return {Field(k, n) for k, n in have}


def writes_of(stages: Iterable[Stage]) -> set[Field]:
    """Every field the stages write (no order)."""
    return {Field(f.kind, f.name) for s in stages for f in s.contract()[1]}
