"""Where things live in a store, and how a part is committed.

    STORE/
      store.json                          format marker and schema version
      shards/shard-000003.tar             WebDataset tar: {key}.mp4 .flac .json .npz [.txt]
      index/clips/part-000003.parquet     one row per kept clip in that shard
      index/rejected/part-000003.parquet  one row per rejected clip, with its reason
      index/sources/part-000003.parquet   sources finished (ok or failed) in that commit
      commits/part-000003.json            the commit point: files, sizes, sha256, counts

A part is written under temporary names and renamed; its commit marker is written last.
Files of a part with no marker are leftovers of a killed run and are removed on open,
so a reader never sees a half-written shard and a resumed run redoes exactly that part.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FORMAT = "mentor-store"
TABLES = ("clips", "rejected", "sources")


class StoreError(RuntimeError):
    """A store folder that is missing, not a store, or damaged."""


def part_name(n: int) -> str:
    return f"part-{n:06d}"


def shard_path(root: Path, n: int) -> Path:
    return root / "shards" / f"shard-{n:06d}.tar"


def table_path(root: Path, table: str, n: int) -> Path:
    return root / "index" / table / f"{part_name(n)}.parquet"


def commit_path(root: Path, n: int) -> Path:
    return root / "commits" / f"{part_name(n)}.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def committed_parts(root: Path) -> dict[int, dict]:
    """Commit markers by part number, without parts that a later part supersedes.

    `mentor annotate` rewrites a part as a new one whose marker names the old part in
    "supersedes"; until the old files are removed, the new part wins.
    """
    out = {}
    for p in sorted((root / "commits").glob("part-*.json")):
        try:
            out[int(p.stem.split("-")[1])] = json.loads(p.read_text())
        except (ValueError, json.JSONDecodeError):
            continue  # a marker is written atomically; an unreadable one is not ours
    for marker in list(out.values()):
        for old in marker.get("supersedes", []):
            out.pop(old, None)
    return out


def remove_part(root: Path, n: int) -> None:
    """Delete a part's files, its marker first: without its marker a part is not
    committed, so a crash half-way leaves only leftovers that the next open removes."""
    commit_path(root, n).unlink(missing_ok=True)
    shard_path(root, n).unlink(missing_ok=True)
    for table in TABLES:
        table_path(root, table, n).unlink(missing_ok=True)


def is_store(root: Path) -> bool:
    return (root / "store.json").is_file()


def require_store(root: Path) -> None:
    if not root.is_dir():
        raise StoreError(f"{root}: no such store folder (build one with `mentor build datasets.yaml`)")
    if not is_store(root):
        raise StoreError(f"{root}: not a mentor store (no store.json); pass the folder `mentor build` wrote")
    meta = json.loads((root / "store.json").read_text())
    if meta.get("format") != FORMAT:
        raise StoreError(f"{root}/store.json: format is {meta.get('format')!r}, expected {FORMAT!r}")
