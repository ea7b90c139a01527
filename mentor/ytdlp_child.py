"""yt-dlp in a child process, for `mentor.fetch` (`kind: pages` sources).

    python -m mentor.ytdlp_child < job.json

Reads one job (url, cache_dir, key, max_bytes, format, timeout_s, retries) from stdin,
downloads the page's media into cache_dir as <key>.<ext>, and prints one JSON line:
{"path": name, "id", "title", ...} or {"error": reason}. The parent kills the process
group at `fetch.deadline_s`; bytes are capped here as they arrive (yt-dlp's own
max_filesize trusts the size a server declares). Imports only yt-dlp, so it starts fast.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any


class _TooBig(Exception):
    pass


class _Log:
    """yt-dlp's messages to stderr (the parent keeps the tail for its error message)."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        print(f"yt-dlp: {msg}", file=sys.stderr)

    def error(self, msg: str) -> None:
        print(f"yt-dlp: {msg}", file=sys.stderr)


def download(job: dict) -> dict:
    import yt_dlp
    from yt_dlp.utils import DownloadError

    url, cache_dir, key, cap = job["url"], Path(job["cache_dir"]), job["key"], int(job["max_bytes"])

    def check(d: dict) -> None:
        if (d.get("downloaded_bytes") or 0) > cap:
            raise _TooBig(f"larger than max_bytes: more than {cap} bytes received from {url}; "
                          "raise fetch.max_bytes to accept it")

    opts = {
        "outtmpl": {"default": str(cache_dir / f"{key}.%(ext)s")},
        "format": job["format"],
        "merge_output_format": "mp4",
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _Log(),
        "socket_timeout": job["timeout_s"],
        "retries": job["retries"],
        "max_filesize": cap,
        "continuedl": True,
        "overwrites": False,
        "progress_hooks": [check],
        "buffersize": 16384,
        "noresizebuffer": True,
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
            path = _downloaded_path(ydl, info)
    except _TooBig as e:
        return {"error": str(e)}
    except DownloadError as e:
        cause = getattr(e, "exc_info", None)
        if cause and isinstance(cause[1], _TooBig):
            return {"error": str(cause[1])}
        return {"error": f"yt-dlp: {_strip_ansi(str(e)).removeprefix('ERROR: ')}"}
    if path is None or not path.is_file():
        return {"error": f"yt-dlp finished but wrote no media file for {url} (too large for fetch.max_bytes, or a playlist?)"}
    return {"path": path.name, "id": info.get("id"), "title": info.get("title"),
            "uploader": info.get("uploader"), "license": info.get("license"),
            "webpage_url": info.get("webpage_url"), "extractor": info.get("extractor_key")}


def _downloaded_path(ydl: Any, info: dict[str, Any] | None) -> Path | None:
    if not info:
        return None
    for item in info.get("requested_downloads") or []:
        if item.get("filepath"):
            return Path(item["filepath"])
    name = Path(ydl.prepare_filename(info))
    return name if name.suffix not in {".part", ".ytdl", ".lock", ".json", ".tmp", ".temp"} else None


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def main() -> None:
    job = json.loads(sys.stdin.read())
    try:
        result = download(job)
    except Exception as e:  # yt-dlp's own errors (RequestError, ...) on a hostile page
        result = {"error": f"yt-dlp: {type(e).__name__}: {_strip_ansi(str(e))[:300]}"}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
