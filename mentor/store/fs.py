"""Where a store lives: a local folder, or a URL on object storage (s3://, gs://, ...).

`store_root(root)` resolves a store's path or URL once. A plain path or a file:// URL is
a local `Path`, and every operation on it is the os call it always was (write to a
temporary name, fsync, rename; flock for the lock). Any other URL is a `StoreURL` (a str
that joins with `/` like a Path, for messages) read and written through fsspec's
filesystem for its protocol (s3fs for s3://; gcsfs, adlfs... when installed).

`StoreFS(root)` does a store's file operations by path relative to the root
("shards/shard-000003.tar"), with the same calls for both kinds.

Object stores have no rename; instead an object appears whole when its one PUT (or its
multipart upload) completes, or not at all. So a remote file is written in one put from
bytes or from a local file (shards are built in a local staging folder, then put), and
the commit protocol of mentor/store/layout.py holds unchanged: a part's shard and index
tables first, its commit marker last; readers trust only committed parts.

Credentials and endpoint, first found wins: `storage_options` given in code (or the
config's `store.storage_options`), the JSON object in $MENTOR_STORAGE_OPTIONS (it also
reaches Ray and DataLoader workers), then the filesystem's own defaults (for s3:
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws/...).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

ENV_OPTIONS = "MENTOR_STORAGE_OPTIONS"
URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# s3: fail in seconds, not minutes, when the endpoint is wrong (botocore's defaults are a
# 60 s connect timeout with 5 attempts); a user's own config_kwargs replace these.
S3_DEFAULTS = {"config_kwargs": {"connect_timeout": 10, "read_timeout": 120,
                                 "retries": {"max_attempts": 3, "mode": "standard"}}}


class StoreError(RuntimeError):
    """A store folder that is missing, not a store, or damaged."""


class StoreURL(str):
    """A store's URL ("s3://bucket/store"): a str that joins with `/` like a Path (for
    messages and shard URLs) and carries the storage options it was opened with."""

    storage_options: dict[str, Any]

    def __new__(cls, url: str, storage_options: dict[str, Any] | None = None):
        self = super().__new__(cls, url.rstrip("/"))
        self.storage_options = dict(storage_options or {})
        return self

    def __truediv__(self, rel: str | os.PathLike[str]) -> "StoreURL":
        return StoreURL(f"{self}/{str(rel).strip('/')}", self.storage_options)

    def __reduce__(self):
        return StoreURL, (str(self), self.storage_options)

    @property
    def name(self) -> str:
        return self.rsplit("/", 1)[-1]

    @property
    def protocol(self) -> str:
        return self.split("://", 1)[0]


def is_url(root: object) -> bool:
    """True for a URL other than file:// (a store that is not a local folder)."""
    return isinstance(root, str) and bool(URL_RE.match(root)) and not root.startswith("file://")


def env_storage_options() -> dict[str, Any]:
    text = os.environ.get(ENV_OPTIONS, "").strip()
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as e:
        raise StoreError(f"${ENV_OPTIONS} is not JSON ({e}); set it to an object such as "
                         '\'{"endpoint_url": "http://127.0.0.1:9000"}\'') from None
    if not isinstance(opts, dict):
        raise StoreError(f"${ENV_OPTIONS} is {type(opts).__name__}, expected a JSON object of fsspec storage options")
    return opts


def store_root(root: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> Path | StoreURL:
    """A store's root: a Path for a local folder (a plain path or file:// URL), else a
    StoreURL holding its storage options (given ones, else $MENTOR_STORAGE_OPTIONS')."""
    if isinstance(root, StoreURL):
        return root if storage_options is None else StoreURL(str(root), storage_options)
    if isinstance(root, str) and root.startswith("file://"):
        return Path(root[len("file://"):])
    if is_url(root):
        return StoreURL(str(root), env_storage_options() if storage_options is None else storage_options)
    return Path(root)


def local_work_root(url: str) -> Path:
    """The local folder for the working files of a build into a remote store (fetch cache,
    encoded clips, logs): $MENTOR_WORK_DIR/<protocol>/<bucket>/<path>, by default under
    ~/.cache/mentor/stores. On a cluster it must be a folder every node shares."""
    base = Path(os.environ.get("MENTOR_WORK_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "mentor" / "stores")
    protocol, _, rest = url.partition("://")
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in rest.split("/") if p not in ("", ".", "..")]
    return base.expanduser().resolve() / re.sub(r"[^A-Za-z0-9]", "_", protocol) / Path(*parts or ["_"])


def _filesystem(url: StoreURL):
    """(fsspec filesystem, the root's path on it)."""
    import fsspec

    opts = dict(url.storage_options)
    if url.protocol in ("s3", "s3a"):
        opts = {**S3_DEFAULTS, **opts}
    try:
        return fsspec.core.url_to_fs(str(url), **opts)
    except ImportError as e:
        raise StoreError(f"{url}: {e}; install the fsspec driver for {url.protocol}:// "
                         "(s3fs ships with mentor; gcsfs for gs://, adlfs for az://)") from None
    except (ValueError, TypeError) as e:
        raise StoreError(f"{url}: cannot open this URL with fsspec ({e}); check the URL and the "
                         f"storage options (${ENV_OPTIONS} or the config's store.storage_options)") from None


class StoreFS:
    """A store's file operations, by path relative to its root; see the module docstring.

    Local writes are atomic by rename; remote ones by being one put. `tmp_for(rel)` is the
    local file to build a large file in (a shard), `put(tmp, rel)` moves it into place.
    """

    def __init__(self, root: str | os.PathLike[str], storage_options: dict[str, Any] | None = None):
        self.root = store_root(root, storage_options)
        self.local = isinstance(self.root, Path)
        self._staging: Path | None = None
        if not self.local:
            self.fs, self.base = _filesystem(self.root)
            self.base = self.base.rstrip("/")

    @classmethod
    def of(cls, root: "StoreFS | str | os.PathLike[str]") -> "StoreFS":
        return root if isinstance(root, StoreFS) else cls(root)

    def __getstate__(self):  # workers and Ray tasks open their own filesystem
        return {"root": self.root}

    def __setstate__(self, state):
        self.__init__(state["root"])

    def path(self, rel: str) -> Path | StoreURL:
        """The full path or URL of `rel` (for messages, and readers that take paths)."""
        return self.root / rel

    def _p(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def describe_endpoint(self) -> str:
        if self.local:
            return "local disk"
        opts = self.root.storage_options
        ep = (opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url")
              or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
        return ep or f"the default {self.root.protocol}:// endpoint"

    # -- reading ----------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        if self.local:
            return (self.root / rel).exists()
        return self.fs.exists(self._p(rel))

    def isfile(self, rel: str) -> bool:
        if self.local:
            return (self.root / rel).is_file()
        return self.fs.isfile(self._p(rel))

    def size(self, rel: str) -> int:
        if self.local:
            return (self.root / rel).stat().st_size
        return int(self.fs.size(self._p(rel)))

    def read_bytes(self, rel: str) -> bytes:
        if self.local:
            return (self.root / rel).read_bytes()
        return self.fs.cat_file(self._p(rel))

    def read_range(self, rel: str, offset: int, size: int) -> bytes:
        if self.local:
            with open(self.root / rel, "rb") as f:
                return os.pread(f.fileno(), size, offset)
        return self.fs.cat_file(self._p(rel), start=offset, end=offset + size)

    def read_many(self, rels: list[str]) -> dict[str, bytes | Exception]:
        """Several files' bytes at once: on object storage the GETs run concurrently (a
        store's markers and index tables are many small objects). A file that could not
        be read maps to its exception."""
        if self.local:
            out: dict[str, bytes | Exception] = {}
            for rel in rels:
                try:
                    out[rel] = (self.root / rel).read_bytes()
                except OSError as e:
                    out[rel] = e
            return out
        if not rels:
            return {}
        got = self.fs.cat([self._p(r) for r in rels], on_error="return")
        return {r: got.get(self._p(r), FileNotFoundError(self._p(r))) for r in rels}

    def read_table(self, rel: str, columns: list[str] | None = None):
        """A Parquet file as a pyarrow Table."""
        import io

        import pyarrow.parquet as pq

        if self.local:
            return pq.read_table(self.root / rel, columns=columns)
        return pq.read_table(io.BytesIO(self.read_bytes(rel)), columns=columns)

    def open(self, rel: str, block_size: int = 8 << 20):
        """A binary file object for reading (remote: read ahead in `block_size` ranges)."""
        if self.local:
            return open(self.root / rel, "rb")
        return self.fs.open(self._p(rel), "rb", block_size=block_size, cache_type="readahead")

    def listdir(self, folder: str, files_only: bool = True) -> list[str]:
        """Names of the files (and folders, with files_only=False) in `folder`, sorted; []
        when it does not exist."""
        if self.local:
            d = self.root / folder
            return sorted(p.name for p in d.iterdir() if not files_only or p.is_file()) if d.is_dir() else []
        path = self._p(folder)
        self.fs.invalidate_cache(path)  # another process may have written since the last listing
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries
                      if not files_only or e.get("type") == "file")

    def sha256(self, rel: str, chunk: int = 1 << 20) -> str:
        h = hashlib.sha256()
        with self.open(rel) as f:
            while block := f.read(chunk):
                h.update(block)
        return h.hexdigest()

    # -- writing ----------------------------------------------------------------------
    def makedirs(self, rel: str = "") -> None:
        """Create a folder (local only: object stores have none)."""
        if self.local:
            (self.root / rel).mkdir(parents=True, exist_ok=True)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a whole file atomically: readers see the old file or the new one, never half."""
        if self.local:
            write_atomic(self.root / rel, data)
        else:
            self.fs.pipe_file(self._p(rel), data)

    def tmp_for(self, rel: str) -> Path:
        """The local file to build `rel` in before `put`: beside it in a local store, in a
        local staging folder for a remote one."""
        if self.local:
            path = self.root / rel
            return path.with_name(path.name + ".tmp")
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="mentor-store-"))
        return self._staging / (rel.replace("/", "__") + ".tmp")

    def put(self, tmp: Path, rel: str) -> None:
        """Move a finished local file (from `tmp_for`) into place atomically."""
        if self.local:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.root / rel)
            return
        self.fs.put_file(str(tmp), self._p(rel))
        tmp.unlink(missing_ok=True)

    def put_tree(self, src: Path, rel: str, skip: tuple[str, ...] = ()) -> int:
        """Copy a local file, or a folder's files (leaving out sub-folders named in `skip`),
        to `rel`, each file whole (one put; a folder copy is not atomic as a whole).
        Returns the files copied. Used for what is not a store: a run's models and reports."""
        src = Path(src)
        files = [src] if src.is_file() else sorted(
            f for f in src.rglob("*") if f.is_file() and not set(f.relative_to(src).parts[:-1]) & set(skip))
        for f in files:
            dest = rel if f == src else f"{rel}/{f.relative_to(src).as_posix()}"
            if self.local:
                (self.root / dest).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, self.root / dest)
            else:
                self.fs.put_file(str(f), self._p(dest))
        return len(files)

    def remove(self, rel: str) -> None:
        """Delete a file; a missing one is not an error."""
        if self.local:
            (self.root / rel).unlink(missing_ok=True)
            return
        try:
            self.fs.rm_file(self._p(rel))
        except FileNotFoundError:
            pass

    def cleanup(self) -> None:
        """Remove the local staging folder of a remote store (a writer's, when it closes)."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    # -- conditional writes (the lock of a remote store) ---------------------------------
    def create(self, rel: str, data: bytes) -> str | None:
        """Write `rel` only if it does not exist (S3: a PUT with If-None-Match: *); raises
        FileExistsError if it does. Returns the object's ETag where the store gives one."""
        out = self.fs.pipe_file(self._p(rel), data, mode="create")
        return _etag(out)

    def replace_if(self, rel: str, data: bytes, etag: str | None) -> str | None:
        """Overwrite `rel` only if it is still the version `etag` (S3: If-Match). Raises
        OSError if another writer changed it. Without ETags (filesystems other than S3):
        delete and create, which a writer racing in between can win; the lock says so."""
        if etag is not None and self.root.protocol in ("s3", "s3a"):
            return _etag(self.fs.pipe_file(self._p(rel), data, IfMatch=etag))
        self.remove(rel)
        return self.create(rel, data)

    def etag(self, rel: str) -> str | None:
        self.fs.invalidate_cache(self._p(rel))
        info = self.fs.info(self._p(rel))
        return info.get("ETag") or info.get("etag")

    def diagnose(self, e: BaseException | None = None) -> str:
        """Why a remote store cannot be used, as one line with the fix (for StoreError)."""
        endpoint = self.describe_endpoint()
        where = "$AWS_ENDPOINT_URL or store.storage_options.endpoint_url" if self.root.protocol.startswith("s3") \
            else f"${ENV_OPTIONS} or store.storage_options"
        bucket = self.base.split("/", 1)[0]
        try:
            if e is not None and _unreachable(e):
                raise e  # no second round of the client's retries to learn the same
            self.fs.invalidate_cache(bucket)
            self.fs.ls(bucket, detail=False)
        except FileNotFoundError:
            return (f"{self.root}: bucket {bucket!r} does not exist at {endpoint}; create it "
                    f"(e.g. `aws s3 mb {self.root.protocol}://{bucket}`) or fix the URL")
        except PermissionError as pe:
            return (f"{self.root}: access to bucket {bucket!r} at {endpoint} was refused ({str(pe)[:120]}); "
                    "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or storage options)")
        except Exception as ce:  # botocore's connection errors are not OSErrors
            return (f"{self.root}: cannot reach the object store at {endpoint} ({type(ce).__name__}: "
                    f"{str(ce).splitlines()[0][:160] if str(ce) else ''}); check the endpoint ({where}) and the network")
        if e is not None:
            return f"{self.root}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        return ""


def write_atomic(path: Path, data: bytes) -> None:
    """A local file written under a temporary name, fsynced, then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_shard(root: "StoreFS | str | os.PathLike[str]", shard: str) -> "ShardFile":
    """A store's shard ("shards/shard-000003.tar") open for reading members by offset."""
    return ShardFile(StoreFS.of(root), shard)


class ShardFile:
    """A shard open for reading: a binary file (read, seek, tell: what tarfile needs for
    its header scan) plus `pread(size, offset)`, one member's bytes without moving any
    shared position (os.pread locally, one ranged GET on object storage)."""

    def __init__(self, fs: StoreFS, rel: str):
        self._fs, self._rel = fs, rel
        # headers are 512 bytes at each member's start: small read-ahead blocks remotely
        self.file = fs.open(rel, block_size=256 << 10)

    def pread(self, size: int, offset: int) -> bytes:
        if self._fs.local:
            return os.pread(self.file.fileno(), size, offset)
        return self._fs.read_range(self._rel, offset, size)

    def read(self, n: int = -1) -> bytes:
        return self.file.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


def _unreachable(e: BaseException) -> bool:
    """A connection that could not be made or was cut (botocore's errors, or the OS's)."""
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                         "ConnectionRefusedError", "ClientConnectorError", "ServerDisconnectedError"})


def _etag(response: Any) -> str | None:
    return response.get("ETag") if isinstance(response, dict) else None
