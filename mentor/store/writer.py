"""StoreWriter: clip records in, WebDataset shards and a Parquet index out.

One writer per store (the pipeline's driver), held to that by STORE/lock. Kept clips go
into the current shard with their media; rejected clips and finished sources go into
side tables of the same part. A part is committed when its shard reaches `shard_bytes`
and when the writer closes.

Faults: a full disk (while writing the shard, committing, or reported by a worker in a
clip's or source's error) raises `DiskFull`; the part being written is discarded whole,
so what is committed stays whole and a re-run redoes the rest. A clip that failed for
a reason outside its data (a full disk, ffmpeg refusing the configured settings) is not
recorded as rejected: its source is recorded failed with 0 attempts, so the next run
redoes it instead of treating the rejection as final.

The store may be a URL on object storage (mentor/store/fs.py): the shard is then built
in a local staging folder and put whole at commit, and the lock is a lease object.
"""

from __future__ import annotations

import errno
import fnmatch
import io
import json
import logging
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mentor.media import DiskFull, disk_full_in, settings_error_in
from mentor.record import SCHEMA_VERSION, ClipRecord, SourceRecord
from mentor.store.fs import StoreFS
from mentor.store.layout import (
    FORMAT,
    TABLES,
    StoreError,
    commit_rel,
    committed_parts,
    index_problems,
    part_of,
    remove_part,
    is_store,
    sha256_file,
    shard_path,
    shard_rel,
    table_rel,
    write_atomic,
)
from mentor.store.lock import LOCK_NAME, lock_for

log = logging.getLogger(__name__)

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

    `root`: a folder, or a URL such as s3://bucket/store (`storage_options` for fsspec,
    else $MENTOR_STORAGE_OPTIONS, else the usual AWS_* variables). `lease_s`: a remote
    store's lock lease (mentor/store/lock.py).
    """

    def __init__(self, root: str | os.PathLike[str], shard_bytes: int = 1_000_000_000, meta: dict | None = None,
                 storage_options: dict[str, Any] | None = None, lease_s: float | None = None):
        self.fs = StoreFS(root, storage_options)
        self.root = self.fs.root
        self.shard_bytes = int(shard_bytes)
        if self.fs.local and self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root}: is a file, not a folder; pass a folder for the store (--out)")
        if self.fs.local and self.root.exists() and not is_store(self.fs) and any(
                p.name not in (LOCK_NAME, "store.json.tmp") for p in self.root.iterdir()):
            raise StoreError(f"{self.root}: folder exists, is not empty and is not a mentor store; pick an empty --out")
        self._tar_file = None
        self._tar: tarfile.TarFile | None = None
        self._clips: list[dict] = []
        self._rejected: list[dict] = []
        self._sources: list[dict] = []
        self._supersedes: list[int] = []
        self._retry: dict[str, str] = {}  # source id -> why some of its clips must be redone
        self.committed_clips = 0
        try:
            self.fs.makedirs()
        except OSError as e:
            raise _disk_full_or(e, self.root) from None
        self._lock = lock_for(self.fs, lease_s).acquire()  # before anything is read or removed
        try:
            if not is_store(self.fs):
                if not self.fs.local and [n for n in self.fs.listdir("", files_only=False) if n != LOCK_NAME]:
                    raise StoreError(f"{self.root}: holds objects and is not a mentor store (no store.json); "
                                     "pick an empty prefix for --out")
                info = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "created": time.time(), **(meta or {})}
                self._write("store.json", json.dumps(info, indent=1).encode())
            self._parts = committed_parts(self.fs)
            self._next = max(self._parts, default=-1) + 1
            reopen = self._recover()
            self._remove_uncommitted()
            self._next = max(self._parts, default=-1) + 1
            if reopen:
                self._sources.extend(reopen)
                self.commit()
        except OSError as e:
            self._lock.release()
            raise _disk_full_or(e, self.root) from None
        except BaseException:
            self._lock.release()
            raise

    def _write(self, rel: str, data: bytes) -> None:
        """One whole small file (store.json, an index table, a commit marker), atomically."""
        if self.fs.local:
            write_atomic(self.fs.path(rel), data)  # the module's name: tests make it fail
        else:
            self.fs.write_bytes(rel, data)

    # -- resume ---------------------------------------------------------------------
    def _recover(self) -> list[dict]:
        """Parts whose files are there but whose commit marker is not: re-adopt each that
        is intact, remove the others. Returns source rows that re-open the sources of the
        clips a removed part held (status failed, 0 attempts), so a build redoes them."""
        orphans = set()
        for folder in ("shards", *(f"index/{t}" for t in TABLES)):
            for name in self.fs.listdir(folder):
                n = part_of(name)
                if n is not None and n not in self._parts and not self.fs.exists(commit_rel(n)):
                    orphans.add(n)
        if not orphans:
            return []
        committed = self._committed_clip_ids()
        reopen: dict[str, dict] = {}
        for n in sorted(orphans):
            marker, why, rows = self._adoptable(n, committed)
            if marker is not None:
                self._write(commit_rel(n), json.dumps(marker, indent=1).encode())
                self._parts[n] = marker
                committed |= {r["clip_id"] for r in rows}
                log.warning("%s: part %d had no commit marker; its files are intact and were re-adopted", self.root, n)
                continue
            lost = [r for r in rows if r.get("clip_id") not in committed]
            log.warning("%s: part %d has no commit marker and is not intact (%s): removed; the sources of its "
                        "%d clip(s) will be redone", self.root, n, why, len(lost))
            remove_part(self.fs, n)
            for r in lost:
                if r.get("source_id"):
                    reopen[r["source_id"]] = {
                        "source_id": r["source_id"], "uri": r.get("source_uri") or "", "dataset": r.get("dataset") or "",
                        "status": "failed", "attempts": 0, "clips": 0, "duration": 0.0, "time": time.time(),
                        "error": f"store: part {n} was lost (no commit marker, {why}); its clips are redone by the next build"}
        return list(reopen.values())

    def _committed_clip_ids(self) -> set[str]:
        ids: set[str] = set()
        for n in self._parts:
            for table in ("clips", "rejected"):
                rel = table_rel(table, n)
                if self.fs.exists(rel):
                    try:
                        ids.update(pq.read_table(io.BytesIO(self.fs.read_bytes(rel)), columns=["clip_id"])
                                   .column("clip_id").to_pylist())
                    except (OSError, pa.ArrowException):
                        pass  # a damaged committed part is `mentor verify`'s to report
        return ids

    def _adoptable(self, n: int, committed: set[str]) -> tuple[dict | None, str, list[dict]]:
        """(marker, "", rows) for an intact part without a marker, else (None, why, rows):
        rows are whatever clip rows could be read (index tables, else the shard's records)."""
        tables: dict[str, list[dict]] = {}
        why = ""
        for table in TABLES:
            rel = table_rel(table, n)
            if not self.fs.exists(rel):
                continue
            try:
                df = pq.read_table(io.BytesIO(self.fs.read_bytes(rel))).to_pandas()
            except (OSError, pa.ArrowException) as e:
                why = why or f"{rel.rsplit('/', 1)[-1]} unreadable: {str(e)[:80]}"
                continue
            bad = index_problems(df, table, rel)
            if bad:
                why = why or bad[0]
                continue
            tables[table] = df.to_dict("records")
        shard = shard_rel(n)
        members: dict[str, dict[str, int]] = {}
        records: list[dict] = []
        if self.fs.exists(shard):
            try:
                with self.fs.open(shard) as f, tarfile.open(fileobj=f) as tf:
                    for m in tf:
                        if m.isfile():
                            key, _, ext = m.name.partition(".")
                            members.setdefault(key, {})[ext] = m.size
                            if ext == "json":
                                rec = json.loads(tf.extractfile(m).read())
                                records.append({"clip_id": rec.get("id"), "source_id": rec.get("source_id"),
                                                "source_uri": rec.get("source_uri"), "dataset": rec.get("dataset")})
            except (OSError, tarfile.TarError, ValueError) as e:
                why = why or f"{shard.rsplit('/', 1)[-1]} unreadable: {str(e)[:80]}"
        clips = tables.get("clips", [])
        rows = clips + tables.get("rejected", []) + [r for r in records if r["clip_id"] not in {c["clip_id"] for c in clips}]
        if not why:
            expected = {c["key"]: json.loads(c["members"]) for c in clips}
            if any(c["shard"] != shard for c in clips):
                why = "its index rows name another shard"
            elif expected != members:
                why = "its shard and its index rows disagree"
            elif committed & {r["clip_id"] for r in clips + tables.get("rejected", [])}:
                why = "it repeats clips committed in another part"
            elif not tables and not members:
                why = "nothing readable in it"
        if why:
            return None, why, rows
        files: dict[str, dict] = {}
        if self.fs.exists(shard):
            files[shard] = {"bytes": self.fs.size(shard), "sha256": self.fs.sha256(shard)}
        for table, trows in tables.items():
            files[table_rel(table, n)] = {"rows": len(trows)}
        marker = {"part": n, "time": time.time(), "files": files, "clips": len(clips),
                  "rejected": len(tables.get("rejected", [])), "sources": len(tables.get("sources", [])),
                  "recovered": "re-adopted: commit marker was missing, files intact"}
        return marker, "", rows

    def _remove_uncommitted(self) -> None:
        """Delete files of parts that never got a commit marker (a killed run), and of
        parts that a committed part supersedes."""
        for name in self.fs.listdir("commits"):
            if fnmatch.fnmatchcase(name, "part-*.json"):
                n = int(name.split("-")[1].split(".")[0])
                if n not in self._parts:
                    remove_part(self.fs, n)
        for folder, pattern in [("shards", "shard-*"), ("index/clips", "part-*"),
                                ("index/rejected", "part-*"), ("index/sources", "part-*"), ("commits", "*.tmp")]:
            for name in self.fs.listdir(folder):
                if not fnmatch.fnmatchcase(name, pattern):
                    continue
                try:
                    n = int(name.split("-")[1].split(".")[0])
                except (IndexError, ValueError):
                    n = -1
                if name.endswith(".tmp") or n not in self._parts:
                    self.fs.remove(f"{folder}/{name}")

    def _discard(self) -> None:
        """Drop the part being written (after a write failed): its temporary shard and
        every row added since the last commit. Nothing of it was committed."""
        if self._tar_file is not None:
            try:
                self._tar_file.close()
            except OSError:
                pass
        self.fs.tmp_for(shard_rel(self._next)).unlink(missing_ok=True)
        self._tar = self._tar_file = None
        self._clips, self._rejected, self._sources, self._retry = [], [], [], {}

    # -- writing --------------------------------------------------------------------
    def _open_shard(self) -> None:
        # A WebDataset shard is a plain tar of <key>.<ext> members; the stdlib writes it.
        # webdataset's TarWriter would do the same but imports torch (2.6 CPU-s here) into
        # the driver, which otherwise never needs it. webdataset reads the shards.
        path = self.fs.tmp_for(shard_rel(self._next))  # beside the shard, or local staging for a remote store
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tar_file = open(path, "wb")
        self._tar = tarfile.open(fileobj=self._tar_file, mode="w")

    def add(self, record: ClipRecord) -> None:
        """Write one clip: kept ones with their media into the shard, rejected into the table.

        Raises DiskFull when the clip (in a worker) or this write ran out of space."""
        if not record.kept:
            why = next((e for e in [record.rejected, *record.errors.values()] if disk_full_in(e)), None)
            if why:
                raise DiskFull(self.root / "_work", f"clip {record.id}: {why[:200]}")
            why = next((e for e in [record.rejected, *record.errors.values()] if settings_error_in(e)), None)
            if why:  # not the clip's fault: its source is redone once the config is fixed
                self._retry.setdefault(record.source_id, why[:300])
                return
            self._rejected.append(record.index_row() | {"record": record.to_json()})
            return
        sample: dict[str, bytes] = {}  # extension -> member bytes, written as <clip id>.<ext>
        for kind in MEDIA_KINDS:
            if kind in record.files:
                path = Path(record.files[kind])
                data = path.read_bytes()
                if not data:  # the encoder checks its output; this is the last line of defence
                    raise DiskFull(path, f"clip {record.id}: its {kind} file is empty") if _nearly_full(path) else \
                        StoreError(f"{path}: clip {record.id}'s {kind} file is empty; not stored")
                sample[path.suffix.lstrip(".")] = data
        text = (record.annotations.get("asr") or {}).get("text")
        if text:
            sample["txt"] = text.encode()
        sample["json"] = record.to_json().encode()
        if record.arrays:
            sample["npz"] = record.arrays_npz()
        now = time.time()
        try:
            if self._tar is None:
                self._open_shard()
            for ext, data in sample.items():
                info = tarfile.TarInfo(f"{record.id}.{ext}")
                info.size, info.mtime, info.mode = len(data), now, 0o444
                self._tar.addfile(info, io.BytesIO(data))
        except OSError as e:
            self._discard()
            raise _disk_full_or(e, shard_path(self.root, self._next)) from None
        sizes = {ext: len(data) for ext, data in sample.items()}
        row = record.index_row() | {
            "shard": shard_rel(self._next),
            "key": record.id,
            "bytes": sum(sizes.values()),
            "members": json.dumps(sizes, sort_keys=True),
        }
        self._clips.append(row)
        if self._tar_file.tell() >= self.shard_bytes:
            self.commit()

    def add_source(self, source: SourceRecord, status: str = "ok", attempts: int = 1, clips: int = 0) -> None:
        """Mark a source finished; call it after all of its clips were added.

        A source whose fetch ran out of space raises DiskFull; one with clips that failed
        for a reason outside their data is recorded failed with 0 attempts (redone)."""
        if disk_full_in(source.error):
            raise DiskFull(self.root / "cache", f"source {source.uri}: {source.error[:200]}")
        error = source.error
        # final: a failure no re-run can mend (not media, no video stream, too short), as
        # the stamp of the file it was found in (mentor.curate.prepare.source_stamp; "" when
        # the failure may pass): the next build skips it at once unless the file changed
        final = str((source.model_extra or {}).get("final") or "") if status == "failed" else ""
        if source.id in self._retry:
            status, attempts, final = "failed", 0, ""
            error = f"some clips failed for a reason outside their data, redone by the next build: {self._retry.pop(source.id)}"
        self._sources.append({
            "source_id": source.id, "uri": source.uri, "dataset": source.dataset, "status": status,
            "error": error, "attempts": attempts, "clips": clips, "final": final,
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
        if not self._lock.held:
            if getattr(self._lock, "lost", ""):
                self._discard()
                raise StoreError(f"{self.root}: this writer lost the store's lock ({self._lock.lost}); nothing more "
                                 "is committed by it: run the same command again to resume")
            raise StoreError(f"{self.root}: this writer is closed; open a new StoreWriter")
        n = self._next
        try:
            files = self._write_part(n)
            marker = {"part": n, "time": time.time(), "files": files, "clips": len(self._clips),
                      "rejected": len(self._rejected), "sources": len(self._sources)}
            if self._supersedes:
                marker["supersedes"] = self._supersedes
            self._write(commit_rel(n), json.dumps(marker, indent=1).encode())
        except OSError as e:
            # Without its marker the part is not committed; remove what was written of it.
            self._discard()
            if self.fs.local:
                for rel in [commit_rel(n), *(table_rel(t, n) for t in TABLES)]:
                    self.fs.tmp_for(rel).unlink(missing_ok=True)
            remove_part(self.fs, n)
            self._supersedes = []
            raise _disk_full_or(e, self.root) from None
        except Exception as e:
            if self.fs.local:
                raise
            # an object store's client error (connection lost...): the part has no marker,
            # so nothing of it counts; the next writer removes or re-adopts what was put
            self._discard()
            self._supersedes = []
            raise StoreError(f"{self.root}: committing part {n} failed ({self.fs.diagnose(e)}); nothing of it is "
                             "committed: run the same command again to resume") from None
        for old in self._supersedes:
            remove_part(self.fs, old)
            self._parts.pop(old, None)
        self._supersedes = []
        self._parts[n] = marker
        self.committed_clips += len(self._clips)
        self._next += 1
        self._tar = self._tar_file = None
        self._clips, self._rejected, self._sources = [], [], []

    def _write_part(self, n: int) -> dict[str, dict]:
        files: dict[str, dict] = {}
        if self._tar is not None:
            self._tar.close()
            self._tar_file.close()
            rel = shard_rel(n)
            tmp = self.fs.tmp_for(rel)
            files[rel] = {"bytes": tmp.stat().st_size, "sha256": sha256_file(tmp)}
            self.fs.put(tmp, rel)  # fsync + rename; or one upload to object storage
        for table, rows in (("clips", self._clips), ("rejected", self._rejected), ("sources", self._sources)):
            if not rows:
                continue
            rel = table_rel(table, n)
            buf = io.BytesIO()
            pq.write_table(_table(rows), buf)
            self._write(rel, buf.getvalue())
            files[rel] = {"rows": len(rows)}
        return files

    def close(self) -> None:
        """Commit what is pending and release the store's lock (also when the commit fails)."""
        try:
            self.commit()
        finally:
            self._lock.release()
            self.fs.cleanup()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Commit what is complete even on error: every added clip is whole.
        self.close()


def _nearly_full(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def _disk_full_or(e: OSError, path: Path) -> OSError:
    """DiskFull for ENOSPC/EDQUOT (one message, names the store), the error itself otherwise."""
    if isinstance(e, DiskFull):
        return e
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(path, e.strerror or "")
    return e
