"""Find the configured sources and bring each one to a local file.

`discover_sources` expands the `sources:` of datasets.yaml into `SourceRecord`s;
`fetch` turns one URI into a local path:

- a local path or `file://` URL is used where it lies (no copy);
- an `http(s)://` URL is downloaded with requests into the cache, named by the sha1 of
  the URL, through a `.part` file that is renamed only when complete (so a killed run
  never leaves a file that looks whole) and resumed with a Range request next time;
- a page (`kind: pages`: YouTube, Vimeo, ... anything yt-dlp understands) is downloaded
  by yt-dlp used as a library, with a process-wide minimum gap between requests.

Every failure raises `FetchError(uri, reason)`; `fetch_source` never raises for a bad
source (any exception becomes that source's error), so the pipeline records it and goes
on with the others. Limits that hold whatever a server does: `fetch.max_bytes` counts
bytes as they arrive (with or without Content-Length), `fetch.deadline_s` bounds one
fetch from start to end (a watchdog cuts a trickling download; yt-dlp runs in a child
process that is killed at the deadline). Playlists and manifests (HLS, DASH) are refused,
since their entries can name local files or other hosts; local paths in `urls` items
are relative to the config file and must lie under `fetch.local_roots`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mentor.config import Config, ConfigError, FetchConfig, SourceConfig
from mentor.media import MediaError, refuse_references
from mentor.record import SourceRecord

log = logging.getLogger(__name__)

CHUNK = 1 << 16
# Suffixes that are not media ("pages" downloads write these beside the video).
_SIDE_FILES = {".part", ".ytdl", ".lock", ".json", ".tmp", ".temp"}


class FetchError(RuntimeError):
    """A source that could not be fetched; `reason` says why in words a user can act on."""

    def __init__(self, uri: str, reason: str):
        super().__init__(reason)
        self.uri = uri
        self.reason = reason


# --------------------------------------------------------------------------- discover


def discover_sources(cfg: Config) -> list[SourceRecord]:
    """Every raw video the config names, as SourceRecords (not fetched yet).

    folder: every regular, non-hidden file under `path` (recursively, sorted), whatever
    its suffix, so that broken or mislabelled files are recorded as failures rather than
    skipped silently; files: the listed paths (relative to the config file); urls and
    pages: the listed URLs. A URI listed twice is kept once (the first source wins).
    Raises ConfigError for a `folder` source whose path is not a directory.
    """
    out: list[SourceRecord] = []
    seen: set[str] = set()
    for src in cfg.sources:
        for uri in _source_uris(src, cfg):
            if uri in seen:
                log.warning("source %r: %s is already listed by an earlier source; kept once", src.name, uri)
                continue
            seen.add(uri)
            rec = SourceRecord.from_uri(uri, dataset=src.name, license=src.license, notes=src.notes)
            rec.identity = _identity(src, rec)
            out.append(rec)
    return out


def _source_uris(src: SourceConfig, cfg: Config) -> list[str]:
    if src.kind == "folder":
        root = cfg.resolve(src.path)
        if root is None or not root.is_dir():
            raise ConfigError(f"source {src.name!r}: folder {root} does not exist or is not a directory "
                              "(fix `path`, relative paths are read from the config file's folder)")
        files = [p for p in root.rglob("*") if p.is_file() and not _hidden(p.relative_to(root))]
        return [str(p.resolve()) for p in sorted(files)]
    if src.kind == "files":
        return [str(cfg.resolve(item).resolve()) for item in src.items]  # type: ignore[union-attr]
    return list(src.items)


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _identity(src: SourceConfig, rec: SourceRecord) -> str:
    if src.identity == "per_video":
        return rec.id
    if src.identity == "per_source":
        return src.name
    return src.identity


# --------------------------------------------------------------------------- fetch


def cache_key(uri: str) -> str:
    """Name of a URL's download in the cache: sha1 of the URL."""
    return hashlib.sha1(uri.encode()).hexdigest()


def fetch(uri: str, cache_dir: str | os.PathLike[str], cfg: FetchConfig, *, page: bool = False,
          local_roots: list[Path] | None = None) -> Path:
    """A local file holding the media of `uri` (downloaded into `cache_dir` when remote).

    page=True: `uri` is a web page for yt-dlp (a `kind: pages` source). A URL already in
    the cache is not downloaded again. `local_roots`: folders a local path or file:// URL
    must lie in (None: anywhere). Raises FetchError(uri, reason).
    """
    if not isinstance(uri, str) or not uri.strip() or "\x00" in uri:
        raise FetchError(str(uri), f"not a path or URL: {uri!r}")
    try:
        parsed = urlparse(uri)
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        raise FetchError(uri, f"not a valid URL: {uri} ({e})") from None
    scheme = parsed.scheme.lower()
    if len(scheme) == 1 and os.name == "nt":  # a drive letter
        scheme = ""
    if page:
        if scheme not in ("http", "https"):
            raise FetchError(uri, f"not a web page URL: {uri} (a `pages` source lists http(s) URLs)")
        return _fetch_page(uri, Path(cache_dir), cfg)
    if scheme in ("http", "https"):
        return _fetch_http(uri, Path(cache_dir), cfg)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise FetchError(uri, f"file URL names another host ({parsed.netloc}): {uri}")
        return _local(uri, Path(url2pathname(unquote(parsed.path))), local_roots)
    if scheme == "":
        return _local(uri, Path(os.path.expanduser(uri)), local_roots)
    raise FetchError(uri, f"unsupported URL scheme {scheme!r} in {uri} (use a path, file://, http(s):// "
                          "or a `kind: pages` source for sites like YouTube)")


def fetch_source(src: SourceRecord, cfg: Config, output: str | os.PathLike[str] | None = None) -> SourceRecord:
    """Fetch one discovered source; sets `src.path`, or `src.error` ("fetch: ...") on failure.

    The cache is `fetch.cache_dir`, by default <output>/cache (`output`: the store folder,
    default the config's); the source's kind is looked up by its dataset name.
    """
    try:
        kind = {s.name: s.kind for s in cfg.sources}.get(src.dataset)
        store = Path(output) if output is not None else cfg.resolve(cfg.output)
        cache = cfg.resolve(cfg.fetch.cache_dir) or store / "cache"  # type: ignore[operator]
        uri, roots = src.uri, None
        if kind == "urls":  # local items: relative to the config file, inside the allowed roots
            roots = [cfg.resolve(r) for r in cfg.fetch.local_roots] or [Path(cfg.base_dir)]
            if "://" not in uri and not uri.startswith(("~", "/")):
                uri = str(cfg.resolve(uri))
        src.path = str(fetch(uri, cache, cfg.fetch, page=kind == "pages", local_roots=roots))
        src.error = None
    except FetchError as e:
        src.error = f"fetch: {e.reason}"
        log.warning("source %s: %s", src.uri, e.reason)
    except Exception as e:  # any failure of one source is that source's error, never the run's
        src.error = f"fetch: {type(e).__name__}: {str(e)[:300]}"
        log.warning("source %s: %s", src.uri, src.error)
    return src


def _local(uri: str, path: Path, roots: list[Path] | None = None) -> Path:
    if roots is not None:
        real = path.resolve()
        if not any(real.is_relative_to(r.resolve()) for r in roots):
            allowed = ", ".join(str(r) for r in roots)
            raise FetchError(uri, f"local file {path} is outside the folders a `urls` source may read ({allowed}); "
                                  "add its folder to fetch.local_roots, or list it under a `files` source")
    if not path.exists():
        raise FetchError(uri, f"no such file: {path}")
    if not path.is_file():
        raise FetchError(uri, f"not a regular file: {path}")
    return path


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive lock on one cache entry, so two workers never write the same .part.

    Lock files stay (in <cache>/.locks): deleting one while another worker waits on it
    would let a third take a fresh lock on the same entry.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- http(s)


class _Retry(Exception):
    """A failure worth another attempt (connection trouble, 5xx, short body)."""


def _url_suffix(url: str) -> str:
    suffix = Path(urlparse(url).path).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) and suffix not in _SIDE_FILES else ".media"


def _fetch_http(url: str, cache_dir: Path, cfg: FetchConfig) -> Path:
    import requests

    key = cache_key(url)
    final = cache_dir / f"{key}{_url_suffix(url)}"
    if final.is_file():
        log.debug("cache hit for %s: %s", url, final)
        return final
    part = final.with_name(final.name + ".part")
    with _locked(cache_dir / ".locks" / f"{final.name}.lock"):
        if final.is_file():  # another worker finished it while we waited
            return final
        attempts = cfg.retries + 1
        last = ""
        deadline = time.monotonic() + cfg.deadline_s
        with requests.Session() as session:
            session.max_redirects = 10
            for attempt in range(attempts):
                if attempt:
                    delay = cfg.backoff_s * 2 ** (attempt - 1)
                    if time.monotonic() + delay >= deadline:
                        break
                    log.info("retrying %s in %.1f s (attempt %d/%d): %s", url, delay, attempt + 1, attempts, last)
                    time.sleep(delay)
                try:
                    _download(session, url, part, cfg, deadline)
                except _Retry as e:
                    last = str(e)
                    continue
                os.replace(part, final)
                return final
            else:
                if time.monotonic() < deadline:
                    raise FetchError(url, f"{last} (gave up after {attempts} attempt{'s' * (attempts > 1)})")
    raise FetchError(url, f"took longer than fetch.deadline_s ({cfg.deadline_s:g} s) ({last}); "
                          "raise fetch.deadline_s for slow servers")
    raise FetchError(url, f"{last} (gave up after {attempts} attempt{'s' * (attempts > 1)})")


def _download(session: Any, url: str, part: Path, cfg: FetchConfig, deadline: float) -> None:
    """One attempt: (re)start or resume `part`. Raises _Retry or FetchError."""
    import requests

    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(url, f"took longer than fetch.deadline_s ({cfg.deadline_s:g} s)")
    try:
        t = min(cfg.timeout_s, left)
        resp = session.get(url, stream=True, timeout=(t, t), headers=headers, allow_redirects=True)
    except requests.ConnectTimeout:
        raise _Retry(f"timed out after {cfg.timeout_s:.1f} s connecting to {url}") from None
    except requests.Timeout:
        raise _Retry(f"timed out after {cfg.timeout_s:.1f} s waiting for a response from {url}") from None
    except requests.ConnectionError as e:
        raise _Retry(f"connection failed for {url}: {_short(e)}") from None
    except requests.RequestException as e:
        raise FetchError(url, f"request failed for {url}: {_short(e)}") from None
    # A server that trickles bytes passes every read timeout: cut the socket at the deadline.
    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), resp.raw.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        _receive(resp, url, part, cfg, have, deadline)
    except (requests.RequestException, OSError, ValueError, AttributeError) as e:
        if time.monotonic() >= deadline:
            raise FetchError(url, f"took longer than fetch.deadline_s ({cfg.deadline_s:g} s); "
                                  "raise fetch.deadline_s for slow servers") from None
        if isinstance(e, OSError) and e.errno is not None:
            raise  # our own disk (ENOSPC, ...), not the server
        raise _Retry(f"connection broke while reading {url}: {_short(e)}") from None
    finally:
        watchdog.cancel()
        resp.close()


def _receive(resp: Any, url: str, part: Path, cfg: FetchConfig, have: int, deadline: float) -> None:
    import requests

    with resp:
        code = resp.status_code
        if code == 416 and have:  # our partial file is not a prefix the server knows: restart
            part.unlink(missing_ok=True)
            raise _Retry(f"HTTP 416 Range Not Satisfiable for {url} (partial download discarded)")
        if code >= 500:
            raise _Retry(f"HTTP {code} {resp.reason} for {url}")
        if code >= 400:
            raise FetchError(url, f"HTTP {code} {resp.reason} for {url}")
        if code not in (200, 206):
            raise FetchError(url, f"unexpected HTTP {code} {resp.reason} for {url}")

        offset = 0
        if code == 206:
            offset = _range_start(resp.headers.get("Content-Range", ""))
            if offset != have:
                part.unlink(missing_ok=True)
                raise _Retry(f"server resumed {url} at byte {offset}, not {have} (partial download discarded)")
        elif have:
            log.info("%s: server ignored the Range request, downloading from the start", url)
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        if total is not None and total > cfg.max_bytes:
            raise FetchError(url, f"larger than max_bytes: {total} bytes > {cfg.max_bytes} ({url}); "
                                  "raise fetch.max_bytes to accept it")

        chunks = resp.iter_content(CHUNK)
        written = offset
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            first = next(chunks, b"")
            if offset == 0:
                _check_content(url, ctype, first)
            with open(part, "ab" if offset else "wb") as fh:
                for chunk in _chain(first, chunks):
                    if time.monotonic() >= deadline:
                        raise OSError("deadline passed")
                    written += len(chunk)
                    if written > cfg.max_bytes:
                        fh.close()
                        part.unlink(missing_ok=True)
                        raise FetchError(url, f"larger than max_bytes: more than {cfg.max_bytes} bytes "
                                              f"received from {url}; raise fetch.max_bytes to accept it")
                    fh.write(chunk)
        except (requests.Timeout, requests.exceptions.ReadTimeout):
            raise _Retry(f"timed out after {cfg.timeout_s:.1f} s waiting for data from {url} "
                         f"({written} bytes so far)") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
            raise _Retry(f"connection broke while reading {url} after {written} bytes: {_short(e)}") from None
    if total is not None and written < total:
        raise _Retry(f"short body from {url}: {written} of {total} bytes")
    if written == 0:
        part.unlink(missing_ok=True)
        raise FetchError(url, f"empty body (0 bytes) from {url}")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _range_start(content_range: str) -> int:
    m = re.match(r"\s*bytes\s+(\d+)-", content_range)
    return int(m.group(1)) if m else -1


_MEDIA_TYPES = ("video/", "audio/")
_BINARY_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/mp4",
                 "application/x-matroska", "application/mxf", "application/ogg"}
# playlists and manifests: their entries can name local files (file://) or other hosts
_PLAYLIST_TYPES = {"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl",
                   "application/dash+xml", "video/vnd.mpeg.dash.mpd", "audio/x-scpls", "application/sdp"}


def _check_content(url: str, ctype: str, head: bytes) -> None:
    """Reject a playlist, and a body that is a web page or text unless its first bytes are media."""
    try:
        refuse_references(url, head)
        if ctype in _PLAYLIST_TYPES:
            raise MediaError(f"{url}: a playlist or manifest ({ctype}), refused")
    except MediaError as e:
        raise FetchError(url, f"{str(e).removeprefix(url + ': ')}: {url} (give a direct media URL, "
                              "or a `kind: pages` source)") from None
    if ctype.startswith(_MEDIA_TYPES) or ctype in _BINARY_TYPES or sniff_media(head):
        return
    preview = head[:60].decode("utf-8", "replace").replace("\n", " ").strip()
    hint = " (a web page: list it under a `kind: pages` source so yt-dlp reads it)" if "html" in ctype else ""
    raise FetchError(url, f"body is {ctype}, not video: {url} starts with {preview!r}{hint}")


def sniff_media(head: bytes) -> bool:
    """Whether the first bytes of a file look like a video or audio container."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return True  # ISO BMFF / QuickTime (mp4, mov, m4a, 3gp)
    if head.startswith((b"\x1a\x45\xdf\xa3", b"FLV", b"OggS", b"fLaC", b"ID3", b"\x00\x00\x01\xba",
                        b"\x00\x00\x01\xb3", b"\x30\x26\xb2\x75")):
        return True  # Matroska/WebM, FLV, Ogg, FLAC, MP3 (ID3), MPEG-PS, MPEG video, ASF/WMV
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE"):
        return True
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return True  # MPEG-TS sync bytes
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG audio frame


def _short(e: BaseException) -> str:
    text = str(e)
    m = re.search(r"\((Caused by )?(\w+\(.*)", text)
    return (m.group(2) if m else text)[:200]


# --------------------------------------------------------------------------- pages (yt-dlp)


class _RateLimit:
    """A minimum gap between requests, shared by every thread of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0.0

    def wait(self, gap_s: float) -> None:
        with self._lock:
            delay = self._last + gap_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._last = time.monotonic()


_PAGE_RATE = _RateLimit()


def _fetch_page(url: str, cache_dir: Path, cfg: FetchConfig) -> Path:
    import importlib.util

    if importlib.util.find_spec("yt_dlp") is None:  # imported by the child process only
        raise FetchError(url, "yt-dlp is not installed: pip install yt-dlp (needed for `kind: pages`)")

    key = cache_key(url)
    marker = cache_dir / f"{key}.json"
    done = _cached_page(marker)
    if done is not None:
        return done
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".locks" / f"{key}.lock"):
        done = _cached_page(marker)
        if done is not None:
            return done
        _PAGE_RATE.wait(cfg.rate_limit_s)
        job = {"url": url, "cache_dir": str(cache_dir), "key": key, "max_bytes": cfg.max_bytes,
               "format": cfg.ytdlp_format, "timeout_s": cfg.timeout_s, "retries": cfg.retries}
        try:
            meta = _run_page_child(job, cfg)
        except FetchError:
            for p in cache_dir.glob(f"{key}.*"):  # partial downloads of a refused or cut fetch
                if p.suffix != ".json":
                    p.unlink(missing_ok=True)
            raise
        path = cache_dir / meta["path"]
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, marker)  # the marker is what says "complete"
        return path


def _run_page_child(job: dict, cfg: FetchConfig) -> dict:
    """yt-dlp in a child process, killed (with its ffmpeg) at fetch.deadline_s."""
    url = job["url"]
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "mentor.ytdlp_child"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(json.dumps(job), timeout=cfg.deadline_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise FetchError(url, f"took longer than fetch.deadline_s ({cfg.deadline_s:g} s); "
                              "raise fetch.deadline_s for slow servers") from None
    lines = [line for line in out.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise FetchError(url, f"yt-dlp process failed (exit {proc.returncode}): {err.strip()[-300:]}") from None
    if "error" in result:
        raise FetchError(url, result["error"])
    path = Path(job["cache_dir"]) / result["path"]
    if path.stat().st_size > cfg.max_bytes:
        path.unlink()
        raise FetchError(url, f"larger than max_bytes: more than {cfg.max_bytes} bytes ({url}); "
                              "raise fetch.max_bytes to accept it")
    with open(path, "rb") as f:
        try:
            refuse_references(path, f.read(4096))
        except MediaError as e:
            path.unlink()
            raise FetchError(url, f"{str(e).removeprefix(str(path) + ': ')} ({url})") from None
    return result


def _cached_page(marker: Path) -> Path | None:
    if not marker.is_file():
        return None
    try:
        path = marker.parent / json.loads(marker.read_text())["path"]
    except (ValueError, KeyError, TypeError):
        return None
    return path if path.is_file() else None
