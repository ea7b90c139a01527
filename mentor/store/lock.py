"""One writer per store: an exclusive lock on STORE/lock.

The lock is an flock(2) on the file, so the kernel drops it when its process ends in any
way (kill -9 included): a lock left by a process that is gone is never in the way. The
file holds the holder's host, pid and start time, for the message a second writer gets.
On a cluster the store must be on storage whose flock is shared by every node (NFSv4,
CephFS, Lustre with flock); the holder's host in the message tells where to look.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mentor.store.layout import StoreError

LOCK_NAME = "lock"


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
