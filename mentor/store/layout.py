"""Where things live in a store, and how a part is committed.

    STORE/
      store.json                          format marker and schema version
      shards/shard-000003.tar             WebDataset tar: {key}.mp4 .flac .json .npz [.txt]
      index/clips/part-000003.parquet     one row per kept clip in that shard
      index/rejected/part-000003.parquet  one row per rejected clip, with its reason
      index/sources/part-000003.parquet   sources finished (ok or failed) in that commit
      commits/part-000003.json            the commit point: files, sizes, sha256, counts

A part is written under temporary names and renamed; its commit marker is written last.
Files of a part with no marker are leftovers of a killed run (or a marker lost later):
on open, an intact such part is re-adopted (its shard holds exactly the clips its index
rows name, none of them committed elsewhere) and any other is removed, its sources
re-opened so that a resumed run redoes exactly its clips. A reader never sees a
half-written shard.

STORE/lock is held by the one process writing (mentor/store/lock.py). Every shard path
and clip key read from an index is checked against the layout (`index_problems`), so a
tampered index cannot make a reader open or write files outside the store.

STORE may be a local folder or a URL on object storage (mentor/store/fs.py): there a
part's objects are put whole (an object store has no rename, but a PUT is all or
nothing), its marker last, so the protocol and what a reader trusts are the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from mentor.store.fs import StoreError, StoreFS, StoreURL, write_atomic

__all__ = ["StoreError", "StoreFS", "StoreURL", "write_atomic"]  # re-exported: their home is mentor.store.fs

FORMAT = "mentor-store"
TABLES = ("clips", "rejected", "sources")


# What a writer puts in an index: "shards/shard-000003.tar" and a WebDataset key (no dot,
# no slash). Anything else in an index was not written by mentor.
SHARD_RE = re.compile(r"shards/shard-\d{6}\.tar")
KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
# columns every clips table has, with the kind of values they hold
CLIP_COLUMNS = {"clip_id": "text", "source_id": "text", "shard": "text", "key": "text", "members": "text",
                "duration": "number", "start": "number", "end": "number"}
TABLE_COLUMNS = {"clips": CLIP_COLUMNS, "rejected": {"clip_id": "text", "source_id": "text", "rejected": "text"},
                 "sources": {"source_id": "text", "status": "text", "attempts": "number"}}


def index_problems(df, table: str, where: str) -> list[str]:
    """What is wrong with one index table (a pandas frame) read from `where`: missing or
    wrongly typed columns, and for clips, shard paths and keys that are not the layout's."""
    import pandas as pd

    problems = []
    for col, kind in TABLE_COLUMNS[table].items():
        if col not in df.columns:
            problems.append(f"{where}: column {col!r} is missing (not an index mentor wrote)")
            continue
        values = df[col].dropna()
        ok = (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
              if kind == "number" else pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"))
        if len(values) and not ok:
            problems.append(f"{where}: column {col!r} holds {df[col].dtype} values, expected {kind}")
    if table == "clips" and not problems:
        bad_shard = ~df["shard"].str.fullmatch(SHARD_RE.pattern).fillna(False).astype(bool)
        bad_key = ~df["key"].str.fullmatch(KEY_RE.pattern).fillna(False).astype(bool)
        for i, v in df.loc[bad_shard, "shard"].items():
            problems.append(f"{where}: row {i}: shard path {v!r} is not shards/shard-NNNNNN.tar")
        for i, v in df.loc[bad_key, "key"].items():
            problems.append(f"{where}: row {i}: clip key {v!r} is not a plain key (letters, digits, - and _)")
    return problems


def part_of(name: str) -> int | None:
    """The part number in a store file's name (shard-000003.tar, part-000003.parquet), else None."""
    m = re.fullmatch(r"(?:shard|part)-(\d{6})\.(?:tar|parquet|json)", name)
    return int(m.group(1)) if m else None


def part_name(n: int) -> str:
    return f"part-{n:06d}"


# Paths of a part's files relative to the store's root (what commit markers and the
# index hold), and the same joined to a root (a Path, or a StoreURL for messages).
def shard_rel(n: int) -> str:
    return f"shards/shard-{n:06d}.tar"


def table_rel(table: str, n: int) -> str:
    return f"index/{table}/{part_name(n)}.parquet"


def commit_rel(n: int) -> str:
    return f"commits/{part_name(n)}.json"


def shard_path(root: Path | StoreURL, n: int) -> Path | StoreURL:
    return root / shard_rel(n)


def table_path(root: Path | StoreURL, table: str, n: int) -> Path | StoreURL:
    return root / table_rel(table, n)


def commit_path(root: Path | StoreURL, n: int) -> Path | StoreURL:
    return root / commit_rel(n)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def committed_parts(root: StoreFS | Path | str) -> dict[int, dict]:
    """Commit markers by part number, without parts that a later part supersedes.

    `mentor annotate` rewrites a part as a new one whose marker names the old part in
    "supersedes"; until the old files are removed, the new part wins.
    """
    fs = StoreFS.of(root)
    out = {}
    names = [name for name in fs.listdir("commits") if re.fullmatch(r"part-\d{6}\.json", name)]
    for rel, data in fs.read_many([f"commits/{name}" for name in names]).items():
        if isinstance(data, Exception):
            continue  # removed since the listing
        try:
            out[int(rel[len("commits/part-"):-len(".json")])] = json.loads(data)
        except (ValueError, json.JSONDecodeError):
            continue  # a marker is written atomically; an unreadable one is not ours
    for marker in list(out.values()):
        for old in marker.get("supersedes", []):
            out.pop(old, None)
    return out


def remove_part(root: StoreFS | Path | str, n: int) -> None:
    """Delete a part's files, its marker first: without its marker a part is not
    committed, so a crash half-way leaves only leftovers that the next open removes."""
    fs = StoreFS.of(root)
    fs.remove(commit_rel(n))
    fs.remove(shard_rel(n))
    for table in TABLES:
        fs.remove(table_rel(table, n))


def is_store(root: StoreFS | Path | str) -> bool:
    return StoreFS.of(root).isfile("store.json")


def require_store(root: StoreFS | Path | str) -> dict:
    """The store's store.json (format checked); raises StoreError saying what is wrong."""
    fs = StoreFS.of(root)
    root = fs.root
    if fs.local:
        if not root.is_dir():
            raise StoreError(f"{root}: no such store folder (build one with `mentor build datasets.yaml`)")
        if not is_store(fs):
            raise StoreError(f"{root}: not a mentor store (no store.json); pass the folder `mentor build` wrote")
    else:
        try:
            found = fs.isfile("store.json")
        except Exception as e:  # connection errors of the object store's client are not OSErrors
            raise StoreError(fs.diagnose(e)) from None
        if not found:
            raise StoreError(fs.diagnose() or f"{root}: not a mentor store (no store.json at that URL); pass the "
                             "URL `mentor build --out` wrote")
    meta = json.loads(fs.read_bytes("store.json"))
    if meta.get("format") != FORMAT:
        raise StoreError(f"{root}/store.json: format is {meta.get('format')!r}, expected {FORMAT!r}")
    return meta
