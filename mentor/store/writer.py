"""StoreWriter: clip records in, WebDataset shards and a Parquet index out.

One writer per store (the pipeline's driver). Kept clips go into the current shard with
their media; rejected clips and finished sources go into side tables of the same part.
A part is committed when its shard reaches `shard_bytes` and when the writer closes.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mentor.record import SCHEMA_VERSION, ClipRecord, SourceRecord
from mentor.store.layout import (
    FORMAT,
    StoreError,
    commit_path,
    committed_parts,
    remove_part,
    is_store,
    sha256_file,
    shard_path,
    table_path,
    write_atomic,
)

# record.files kinds stored in the shard; the member extension is the file's suffix
# (mp4 video, flac or wav audio). "source" and other working files are not stored.
MEDIA_KINDS = ("video", "audio")


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows)


class StoreWriter:
    """Append clips to a store; resumes an existing one.

    with StoreWriter("out/store") as w:
        w.add(record)                 # kept -> shard + index; rejected -> rejected table
        w.add_source(source, "ok")    # after all of a source's clips were added
    """

    def __init__(self, root: str | os.PathLike[str], shard_bytes: int = 1_000_000_000, meta: dict | None = None):
        self.root = Path(root)
        self.shard_bytes = int(shard_bytes)
        if self.root.exists() and any(self.root.iterdir()) and not is_store(self.root):
            raise StoreError(f"{self.root}: folder exists, is not empty and is not a mentor store; pick an empty --out")
        self.root.mkdir(parents=True, exist_ok=True)
        if not is_store(self.root):
            info = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "created": time.time(), **(meta or {})}
            write_atomic(self.root / "store.json", json.dumps(info, indent=1).encode())
        self._parts = committed_parts(self.root)
        self._remove_uncommitted()
        self._next = max(self._parts, default=-1) + 1
        self._tar_file = None
        self._tar: tarfile.TarFile | None = None
        self._clips: list[dict] = []
        self._rejected: list[dict] = []
        self._sources: list[dict] = []
        self._supersedes: list[int] = []
        self.committed_clips = 0

    # -- resume ---------------------------------------------------------------------
    def _remove_uncommitted(self) -> None:
        """Delete files of parts that never got a commit marker (a killed run), and of
        parts that a committed part supersedes."""
        for p in (self.root / "commits").glob("part-*.json"):
            n = int(p.stem.split("-")[1])
            if n not in self._parts:
                remove_part(self.root, n)
        for folder, pattern in [("shards", "shard-*"), ("index/clips", "part-*"),
                                ("index/rejected", "part-*"), ("index/sources", "part-*"), ("commits", "*.tmp")]:
            for p in (self.root / folder).glob(pattern):
                try:
                    n = int(p.name.split("-")[1].split(".")[0])
                except (IndexError, ValueError):
                    n = -1
                if p.name.endswith(".tmp") or n not in self._parts:
                    p.unlink()

    # -- writing --------------------------------------------------------------------
    def _open_shard(self) -> None:
        # A WebDataset shard is a plain tar of <key>.<ext> members; the stdlib writes it.
        # webdataset's TarWriter would do the same but imports torch (2.6 CPU-s here) into
        # the driver, which otherwise never needs it. webdataset reads the shards.
        path = shard_path(self.root, self._next)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tar_file = open(path.with_name(path.name + ".tmp"), "wb")
        self._tar = tarfile.open(fileobj=self._tar_file, mode="w")

    def add(self, record: ClipRecord) -> None:
        """Write one clip: kept ones with their media into the shard, rejected into the table."""
        if not record.kept:
            self._rejected.append(record.index_row() | {"record": record.to_json()})
            return
        if self._tar is None:
            self._open_shard()
        sample: dict[str, bytes] = {}  # extension -> member bytes, written as <clip id>.<ext>
        for kind in MEDIA_KINDS:
            if kind in record.files:
                path = Path(record.files[kind])
                sample[path.suffix.lstrip(".")] = path.read_bytes()
        text = (record.annotations.get("asr") or {}).get("text")
        if text:
            sample["txt"] = text.encode()
        sample["json"] = record.to_json().encode()
        if record.arrays:
            sample["npz"] = record.arrays_npz()
        now = time.time()
        for ext, data in sample.items():
            info = tarfile.TarInfo(f"{record.id}.{ext}")
            info.size, info.mtime, info.mode = len(data), now, 0o444
            self._tar.addfile(info, io.BytesIO(data))
        sizes = {ext: len(data) for ext, data in sample.items()}
        shard = shard_path(self.root, self._next)
        row = record.index_row() | {
            "shard": str(shard.relative_to(self.root)),
            "key": record.id,
            "bytes": sum(sizes.values()),
            "members": json.dumps(sizes, sort_keys=True),
        }
        self._clips.append(row)
        if self._tar_file.tell() >= self.shard_bytes:
            self.commit()

    def add_source(self, source: SourceRecord, status: str = "ok", attempts: int = 1, clips: int = 0) -> None:
        """Mark a source finished; call it after all of its clips were added."""
        self._sources.append({
            "source_id": source.id, "uri": source.uri, "dataset": source.dataset, "status": status,
            "error": source.error, "attempts": attempts, "clips": clips,
            "duration": float(source.probe.get("duration") or 0.0), "time": time.time(),
        })

    def carry(self, table: str, rows: list[dict]) -> None:
        """Copy index rows of another part unchanged (rejected or sources) into this one."""
        {"rejected": self._rejected, "sources": self._sources}[table].extend(rows)

    def supersede(self, part: int) -> None:
        """The next commit replaces `part` (used to rewrite a part with new annotations)."""
        self._supersedes.append(part)

    @property
    def pending(self) -> bool:
        return bool(self._clips or self._rejected or self._sources or self._supersedes)

    def commit(self) -> None:
        """Make everything added so far durable, as one part."""
        if not self.pending:
            return
        n = self._next
        files: dict[str, dict] = {}
        if self._tar is not None:
            self._tar.close()
            self._tar_file.close()
            final = shard_path(self.root, n)
            tmp = final.with_name(final.name + ".tmp")
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
            files[str(final.relative_to(self.root))] = {"bytes": final.stat().st_size, "sha256": sha256_file(final)}
        for table, rows in (("clips", self._clips), ("rejected", self._rejected), ("sources", self._sources)):
            if not rows:
                continue
            path = table_path(self.root, table, n)
            buf = io.BytesIO()
            pq.write_table(_table(rows), buf)
            write_atomic(path, buf.getvalue())
            files[str(path.relative_to(self.root))] = {"rows": len(rows)}
        marker = {"part": n, "time": time.time(), "files": files, "clips": len(self._clips),
                  "rejected": len(self._rejected), "sources": len(self._sources)}
        if self._supersedes:
            marker["supersedes"] = self._supersedes
        write_atomic(commit_path(self.root, n), json.dumps(marker, indent=1).encode())
        for old in self._supersedes:
            remove_part(self.root, old)
            self._parts.pop(old, None)
        self._supersedes = []
        self._parts[n] = marker
        self.committed_clips += len(self._clips)
        self._next += 1
        self._tar = self._tar_file = None
        self._clips, self._rejected, self._sources = [], [], []

    def close(self) -> None:
        self.commit()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Commit what is complete even on error: every added clip is whole.
        self.close()
