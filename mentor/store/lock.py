"""One writer per store: an exclusive lock on STORE/lock.

The lock is an flock(2) on the file, so the kernel drops it when its process ends in any
way (kill -9 included): a lock left by a process that is gone is never in the way. The
file holds the holder's host, pid and start time, for the message a second writer gets.
On a cluster the store must be on storage whose flock is shared by every node (NFSv4,
CephFS, Lustre with flock); the holder's host in the message tells where to look.

A store on object storage (s3://...) has no flock: `LeaseLock` writes STORE/lock only if
it is absent (a conditional PUT, If-None-Match: *), with the holder's host, pid, start
and a lease that a thread of the holder renews every lease/4 (If-Match its own version).
A lock whose lease was not renewed for `lease_s` (its holder was killed or cut off), or
whose holder is a pid gone from this same host, is taken over (If-Match the stale
version, so of two writers taking over only one wins). A holder that fails to renew
stops committing. Hosts must keep their clocks in step (NTP) within the lease.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from mentor.store.fs import StoreError, StoreFS

log = logging.getLogger(__name__)

LOCK_NAME = "lock"
# a remote store's lease: renewed every LEASE_S / 4 by the holder; a killed holder's lock
# is taken over after LEASE_S (a writer on the same host takes it at once when the pid is gone)
LEASE_S = float(os.environ.get("MENTOR_STORE_LEASE_S", 120))


class StoreLocked(StoreError):
    """Another process holds the store's lock."""


class StoreLock:
    """with StoreLock(root): ... — raises StoreLocked (holder's host and pid) if taken."""

    def __init__(self, root: str | os.PathLike[str]):
        self.path = Path(root) / LOCK_NAME
        self._fh = None

    def acquire(self) -> "StoreLock":
        if self._fh is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # not truncated: the holder's details stay readable
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fh)
            fh.close()
            raise StoreLocked(f"{self.path.parent}: another build is writing this store ({holder}); "
                              "wait for it to finish, or pick another --out") from None
        except OSError as e:
            fh.close()
            raise StoreError(f"{self.path}: cannot lock the store ({e.strerror}); the folder must be on a "
                             "file system with flock (local disk, NFSv4, CephFS)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
        except OSError:
            pass  # a full or read-only disk: the flock still goes with the close
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_for(fs: StoreFS, lease_s: float | None = None) -> "StoreLock | LeaseLock":
    """The right lock for where the store is: flock on a local folder, a lease object on
    object storage."""
    return StoreLock(fs.root) if fs.local else LeaseLock(fs, LEASE_S if lease_s is None else lease_s)


class LeaseLock:
    """The lock of a store on object storage (see the module docstring)."""

    def __init__(self, fs: StoreFS, lease_s: float = LEASE_S):
        if lease_s <= 0:
            raise ValueError(f"lease_s={lease_s!r}: must be > 0 seconds")
        self.fs, self.lease_s = fs, float(lease_s)
        self.path = fs.path(LOCK_NAME)
        self._token: str | None = None
        self._etag: str | None = None
        self._since = self._renewed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = ""  # why the lease was lost, when it was

    def _body(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": self._since,
                           "renewed": time.time(), "lease_s": self.lease_s, "token": self._token}).encode()

    def acquire(self) -> "LeaseLock":
        if self._token is not None:
            return self
        self._token, self._since, self.lost = uuid.uuid4().hex, time.time(), ""
        try:
            for _ in range(3):  # the holder may release between our two calls: try again
                try:
                    self._etag = self.fs.create(LOCK_NAME, self._body())
                    break
                except FileExistsError:
                    pass
                try:
                    info, etag = json.loads(self.fs.read_bytes(LOCK_NAME) or b"{}"), self.fs.etag(LOCK_NAME)
                except FileNotFoundError:
                    continue
                except ValueError:
                    info, etag = {}, self.fs.etag(LOCK_NAME)
                why = _stale(info, self.lease_s)
                if not why:
                    raise StoreLocked(f"{self.fs.root}: another build is writing this store ({_describe(info)}); "
                                      "wait for it to finish, or pick another --out (a lock whose holder was killed "
                                      f"is taken over {info.get('lease_s', self.lease_s):g} s after its last renewal)")
                try:
                    self._etag = self.fs.replace_if(LOCK_NAME, self._body(), etag)
                except (OSError, FileExistsError):
                    continue  # another writer took it over first: read again
                log.warning("%s: took over the lock of %s (%s)", self.fs.root, _describe(info), why)
                break
            else:
                raise StoreLocked(f"{self.fs.root}: the store's lock changed hands while taking it; try again")
        except StoreLocked:
            self._token = None
            raise
        except Exception as e:  # an unreachable endpoint, a missing bucket: one line with the fix
            self._token = None
            raise StoreError(self.fs.diagnose(e)) from None
        self._renewed = time.time()
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="mentor-store-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                current = json.loads(self.fs.read_bytes(LOCK_NAME))
                if current.get("token") != self._token:
                    self.lost = f"another writer took the lock over ({_describe(current)})"
                    return
                self._etag = self.fs.replace_if(LOCK_NAME, self._body(), self._etag)
                self._renewed = time.time()
            except Exception as e:
                # a brief outage is retried at the next tick; a lease past its end is lost
                if time.time() - self._renewed > self.lease_s:
                    self.lost = f"could not renew the lease ({type(e).__name__}: {str(e)[:120]})"
                    return

    def release(self) -> None:
        if self._token is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            if not self.lost and json.loads(self.fs.read_bytes(LOCK_NAME)).get("token") == self._token:
                self.fs.remove(LOCK_NAME)
        except Exception as e:  # left behind, it is taken over once its lease has run out
            log.warning("%s: could not remove the lock (%s); the next writer takes it over after %g s",
                        self.fs.root, e, self.lease_s)
        self._token = None

    @property
    def held(self) -> bool:
        return self._token is not None and not self.lost

    def __enter__(self) -> "LeaseLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _stale(info: dict, lease_s: float) -> str:
    """Why a lock object may be taken over ("" while its holder may still be writing)."""
    if not info.get("token"):
        return "the lock object is unreadable or empty"
    age = time.time() - float(info.get("renewed", 0))
    if age > float(info.get("lease_s", lease_s)):
        return f"its lease was last renewed {age:.0f} s ago"
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return f"pid {info['pid']} is gone from this host"
        except PermissionError:
            pass
    return ""


def _describe(info: dict) -> str:
    if not info:
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on host {info.get('host')}, since {since}"


def _holder(fh) -> str:
    try:
        fh.seek(0)
        info = json.loads(fh.read() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on host {info.get('host')}, since {since}"
