"""A store that faults and hostile input cannot corrupt (issue 17).

Each test injects one fault or feeds one bad input and checks that nothing is lost,
doubled, read or written outside what was named. Store faults go through StoreWriter
directly (a real build is slow here); one slow test runs `mentor build` end to end on a
disk that fills up. Servers are loopback only (127.0.0.1); every wait is bounded.
Disk-full runs mount a small tmpfs (root only; skipped with the reason otherwise).

At the end the module prints: bad inputs tried, faults injected, clips lost, clips
duplicated, corrupt clips committed (the last three must be 0, and are asserted).
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mentor.config import ConfigError, FetchConfig, load_config, parse_config
from mentor.fetch import FetchError, fetch, fetch_source
from mentor.media import DiskFull, MediaError, encode_clip, extract_audio, probe
from mentor.record import ClipRecord, SourceRecord
from mentor.store import Store, StoreError, StoreWriter, verify_store
from mentor.store.layout import commit_path, shard_path, table_path
from mentor.store.lock import StoreLocked

COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    line = (f"reliability: bad inputs tried {COUNTS['bad_inputs']}, faults injected {COUNTS['faults']}, "
            f"clips lost {COUNTS['lost']}, clips duplicated {COUNTS['duplicated']}, "
            f"corrupt clips committed {COUNTS['corrupt']}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when output is captured
            reporter.write_line("")
            reporter.write_line(line)
    else:
        print(line)
    assert COUNTS["lost"] == COUNTS["duplicated"] == COUNTS["corrupt"] == 0, line


def tally(root: Path, expected: set[str], redo: set[str] = frozenset()) -> None:
    """Count lost (expected, neither stored nor to be redone), duplicated and corrupt
    (verify --deep) clips of a store, and assert there are none."""
    store = Store(root)
    ids = list(store.clips()["clip_id"]) + list(store.rejected()["clip_id"])
    counts = Counter(ids)
    lost = expected - set(counts) - set(redo)
    dup = sum(c - 1 for c in counts.values())
    problems = verify_store(root, deep=True)
    COUNTS["lost"] += len(lost)
    COUNTS["duplicated"] += dup
    COUNTS["corrupt"] += len(problems)
    assert not lost and not dup and not problems, (lost, dup, problems)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A 1 s 64x64 H.264 mp4 and a 1 s 16 kHz flac."""
    d = tmp_path_factory.mktemp("tiny")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25",
                    "-t", "1", "-pix_fmt", "yuv420p", str(d / "a.mp4"), "-f", "lavfi", "-i", "sine=f=440",
                    "-t", "1", "-ar", "16000", "-ac", "1", str(d / "a.flac")], check=True)
    return d / "a.mp4", d / "a.flac"


def clip(src: SourceRecord, i: int, media: tuple[Path, Path]) -> ClipRecord:
    rec = ClipRecord.for_span(src, 10.0 * i, 10.0 * i + 1.0)
    rec.fps, rec.width, rec.height = 25.0, 64, 64
    rec.add_array("landmarks.face", np.zeros((25, 4, 3), np.float32), fps=25.0)
    rec.files = {"video": str(media[0]), "audio": str(media[1])}
    return rec


def sources(n_src: int, per: int, media) -> list[tuple[SourceRecord, list[ClipRecord]]]:
    out = []
    for s in range(n_src):
        src = SourceRecord.from_uri(f"/videos/s{s}.mp4", dataset="d")
        out.append((src, [clip(src, i, media) for i in range(per)]))
    return out


def write_all(root: Path, plan, shard_bytes: int = 1) -> set[str]:
    """Write every source's clips, then mark it ok (a source's row lands in the part after
    its last clip when shard_bytes is tiny). Returns the clip ids."""
    with StoreWriter(root, shard_bytes=shard_bytes) as w:
        for src, recs in plan:
            for r in recs:
                w.add(r)
            w.add_source(src, "ok", clips=len(recs))
    return {r.id for _, recs in plan for r in recs}


class SmallFs:
    """A tmpfs of a given size mounted under a test's tmp_path."""

    def __init__(self, path: Path):
        self.path = path

    def resize(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def fill(self) -> Path:
        """Fill it up; returns the filler (delete it to free the space)."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for _ in range(1 << 20):  # bounded: 4 GB at most
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        return filler


@pytest.fixture()
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("disk-full tests mount a small tmpfs, which needs root; run the tests as root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()})")
    try:
        yield SmallFs(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# --------------------------------------------------------------------------- 1. disk full


def test_encode_on_a_full_disk_raises_and_keeps_nothing(small_fs, tiny):
    small_fs.fill()
    for call in (lambda: encode_clip(tiny[0], small_fs.path / "c.mp4", 0, 1, 25, 64),
                 lambda: extract_audio(tiny[1], small_fs.path / "c.flac", 16000, duration=1.0)):
        COUNTS["faults"] += 1
        with pytest.raises(DiskFull, match="No space left on device"):
            call()
    assert sorted(p.name for p in small_fs.path.iterdir()) == ["filler"]


def test_encoded_output_is_probed_when_ffmpeg_exits_0(tmp_path, tiny, monkeypatch):
    """An ffmpeg that exits 0 but leaves a cut mp4 / empty flac (as after a failed trailer)."""
    real = subprocess.run(["which", "ffmpeg"], capture_output=True, text=True).stdout.strip()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        {real} "$@" || exit $?
        out="${{!#}}"; out="${{out#file:}}"
        if [[ "$out" == *.mp4 ]]; then truncate -s 700 "$out"; else : > "$out"; fi
        exit 0
        """))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for dst, call in ((tmp_path / "o.mp4", lambda d: encode_clip(tiny[0], d, 0, 1, 25, 64)),
                      (tmp_path / "o.flac", lambda d: extract_audio(tiny[1], d, 16000, duration=1.0))):
        COUNTS["faults"] += 1
        with pytest.raises(MediaError, match=str(dst)):
            call(dst)


def test_shard_write_hits_enospc_then_resume_completes(tmp_path, tiny, monkeypatch):
    plan = sources(2, 2, tiny)
    root = tmp_path / "s"
    w = StoreWriter(root, shard_bytes=1)
    src0, recs0 = plan[0]
    for r in recs0:
        w.add(r)
    w.add_source(src0, "ok", clips=2)
    w.commit()
    before = {p.name: p.read_bytes() for p in (root / "shards").glob("*")}

    def full(self, tarinfo, fileobj=None):
        self.fileobj.write(b"\0" * 700)  # part of a member, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "addfile", full)
    COUNTS["faults"] += 1
    with pytest.raises(DiskFull):
        w.add(plan[1][1][0])
    monkeypatch.undo()
    w.close()
    assert {p.name: p.read_bytes() for p in (root / "shards").glob("*")} == before  # no half shard
    assert verify_store(root) == []
    write_all(root, plan[1:])  # space freed: the re-run adds the rest
    tally(root, {r.id for _, recs in plan for r in recs})


def test_commit_hits_enospc_leaves_no_half_part(tmp_path, tiny, monkeypatch):
    import mentor.store.writer as writer_mod

    plan = sources(2, 2, tiny)
    root = tmp_path / "s"
    write_all(root, plan[:1])
    parts = set(Store(root).parts())
    real_write = writer_mod.write_atomic

    def full(path, data):
        if path.parent.name == "commits":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, data)

    monkeypatch.setattr(writer_mod, "write_atomic", full)
    w = StoreWriter(root, shard_bytes=1 << 30)
    for r in plan[1][1]:
        w.add(r)
    COUNTS["faults"] += 1
    with pytest.raises(DiskFull):
        w.close()
    monkeypatch.undo()
    assert set(Store(root).parts()) == parts and verify_store(root) == []
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    write_all(root, plan[1:])
    tally(root, {r.id for _, recs in plan for r in recs})


def test_store_on_a_real_full_disk(small_fs, tiny):
    """Clips into a store on a 2 MB tmpfs until it is full; then space is freed and the
    same clips are offered again: each ends up exactly once, whole."""
    plan = sources(4, 2, tiny)  # 8 clips, one part each; the disk has room for about half
    clip_bytes = sum(p.stat().st_size for p in tiny) + 4096
    root = small_fs.path / "store"
    filler = small_fs.path / "filler"
    filler.write_bytes(b"\0" * (2 * 1024 * 1024 - 4 * clip_bytes - 96 * 1024))
    COUNTS["faults"] += 1
    with pytest.raises(DiskFull, match="No space left on device"):
        write_all(root, plan, shard_bytes=1)
    committed = Store(root).clips()["clip_id"].tolist()
    assert 0 < len(committed) < 8 and verify_store(root) == []
    filler.unlink()
    done = set(committed) | set(Store(root).rejected()["clip_id"])
    with StoreWriter(root, shard_bytes=1) as w:  # what a re-run does: skip what is committed
        for src, recs in plan:
            for r in recs:
                if r.id not in done:
                    w.add(r)
            w.add_source(src, "ok", clips=len(recs))
    tally(root, {r.id for _, recs in plan for r in recs})


def test_worker_reported_disk_full_stops_the_writer(tmp_path, tiny):
    """A clip rejected because its worker ran out of space, or a source whose download did,
    stops the build instead of becoming a final rejection or failure."""
    (src, recs), = sources(1, 2, tiny)
    w = StoreWriter(tmp_path / "s")
    w.add(recs[0])
    recs[1].fail("encode", "DiskFull: [Errno 28] No space left on device writing /x/_work/c.mp4")
    recs[1].reject("encode", "error: DiskFull: [Errno 28] No space left on device writing /x/_work/c.mp4")
    COUNTS["faults"] += 2
    with pytest.raises(DiskFull):
        w.add(recs[1])
    src.error = "fetch: OSError: [Errno 28] No space left on device"
    with pytest.raises(DiskFull):
        w.add_source(src, "failed")
    w.close()
    store = Store(tmp_path / "s")
    assert len(store.rejected()) == 0 and len(store.sources()) == 0  # nothing final recorded
    tally(tmp_path / "s", {recs[0].id}, redo={recs[1].id})


def test_verify_deep_finds_a_clip_that_does_not_decode(tmp_path, tiny):
    (src, recs), = sources(1, 2, tiny)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(tiny[0].read_bytes()[: tiny[0].stat().st_size // 2])  # an mp4 cut short
    recs[1].files["video"] = str(cut)
    root = tmp_path / "s"
    write_all(root, [(src, recs)])
    COUNTS["faults"] += 1
    assert verify_store(root) == []  # the tar matches the index ...
    problems = verify_store(root, deep=True)  # ... but the media do not decode
    assert any(recs[1].id in p and "mp4" in p for p in problems), problems
    assert not any(recs[0].id in p for p in problems)


# --------------------------------------------------------------------------- 2. store lock


def test_second_writer_is_refused_and_leaves_the_first_alone(tmp_path, tiny):
    (src, recs), = sources(1, 2, tiny)
    root = tmp_path / "s"
    w = StoreWriter(root)
    w.add(recs[0])
    open_shard = shard_path(root, 0).with_name("shard-000000.tar.tmp")
    assert open_shard.exists()
    COUNTS["faults"] += 1
    with pytest.raises(StoreLocked, match=rf"pid {os.getpid()} on host {socket.gethostname()}"):
        StoreWriter(root)
    assert open_shard.exists()  # the refused writer removed nothing
    w.add(recs[1])
    w.add_source(src, "ok")
    w.close()
    tally(root, {r.id for r in recs})


def test_lock_of_a_killed_process_is_not_in_the_way(tmp_path, tiny):
    root = tmp_path / "s"
    root.mkdir()
    code = ("import sys, time; from mentor.store.lock import StoreLock; lock = StoreLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLocked, match=f"pid {proc.pid}"):
            StoreWriter(root)
        COUNTS["faults"] += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    (src, recs), = sources(1, 1, tiny)
    write_all(root, [(src, recs)])  # the holder is gone: its lock went with it
    tally(root, {recs[0].id})


# --------------------------------------------------------------------------- 3. lost commit markers


def test_lost_marker_of_an_intact_part_is_readopted(tmp_path, tiny):
    plan = sources(2, 2, tiny)
    root = tmp_path / "s"
    expected = write_all(root, plan)  # one clip per part; each source's row in the next part
    for n in (0, 3):
        COUNTS["faults"] += 1
        commit_path(root, n).unlink()
    with StoreWriter(root):  # the next build opens the store
        pass
    assert {0, 3} <= set(Store(root).parts())
    tally(root, expected)


def test_lost_marker_of_a_damaged_part_reopens_its_sources(tmp_path, tiny):
    plan = sources(2, 2, tiny)
    root = tmp_path / "s"
    expected = write_all(root, plan)
    first = plan[0][1][0]
    COUNTS["faults"] += 1
    commit_path(root, 0).unlink()
    shard = shard_path(root, 0)
    shard.write_bytes(shard.read_bytes()[:1000])  # and its shard cut short
    with StoreWriter(root):
        pass
    store = Store(root)
    assert first.id not in set(store.clips()["clip_id"])
    row = store.sources().set_index("source_id").loc[plan[0][0].id]
    assert row["status"] == "failed" and row["attempts"] == 0 and "part 0" in row["error"]
    # the next build redoes that source: only the clip that was lost is missing
    done = set(store.clips()["clip_id"])
    with StoreWriter(root) as w:
        for r in plan[0][1]:
            if r.id not in done:
                w.add(r)
        w.add_source(plan[0][0], "ok", attempts=1)
    tally(root, expected)


# --------------------------------------------------------------------------- 4-7. hostile sources


class Hostile:
    """A loopback server with hostile routes."""

    def __init__(self, body: bytes, secret: Path):
        self.body = body
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                route = getattr(srv, "r_" + self.path.strip("/").replace(".", "_").replace("-", "_"), None)
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\n{secret.as_uri()}\n#EXT-X-ENDLIST\n".encode()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def send(h, body: bytes, ctype: str, length: bool = True):
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        if length:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    def r_list_m3u8(self, h):
        self.send(h, self.playlist, "application/vnd.apple.mpegurl")

    def r_list_mp4(self, h):  # a playlist that calls itself media
        self.send(h, self.playlist, "video/mp4")

    def r_fileref_html(self, h):
        self.send(h, b'<html><body><video src="file:///etc/hostname"></video></body></html>', "text/html")

    def r_big_mp4(self, h):  # no Content-Length, 3x the cap used below
        self.send(h, self.body * 40, "video/mp4", length=False)

    def r_bigpage_html(self, h):
        self.send(h, b'<html><head><title>t</title></head><body><video src="/big.mp4"></video></body></html>',
                  "text/html")

    def r_trickle_mp4(self, h):
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        h.end_headers()
        h.wfile.write(self.body[:64])
        for i in range(300):  # bounded: 30 s at most
            h.wfile.write(self.body[64 + i:65 + i])
            h.wfile.flush()
            time.sleep(0.1)

    def r_tricklepage_html(self, h):
        self.send(h, b'<html><head><title>t</title></head><body><video src="/trickle.mp4"></video></body></html>',
                  "text/html")


@pytest.fixture(scope="module")
def hostile(tiny, tmp_path_factory):
    secret = tmp_path_factory.mktemp("secret") / "private.mp4"
    secret.write_bytes(tiny[0].read_bytes())
    srv = Hostile(tiny[0].read_bytes(), secret)
    yield srv
    srv.httpd.shutdown()


FAST = FetchConfig(timeout_s=2, retries=1, backoff_s=0.05, rate_limit_s=0, deadline_s=20)


@pytest.mark.parametrize("route", ["list.m3u8", "list.mp4"])
def test_remote_playlist_naming_local_files_is_refused(hostile, tmp_path, route):
    COUNTS["bad_inputs"] += 1
    with pytest.raises(FetchError, match="playlist"):
        fetch(f"{hostile.url}/{route}", tmp_path, FAST)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != ".locks"]


def test_local_playlist_is_refused_by_every_media_call(tmp_path, hostile):
    m3u = tmp_path / "list.m3u8"
    m3u.write_bytes(hostile.playlist)
    renamed = tmp_path / "innocent.mp4"
    renamed.write_bytes(hostile.playlist)
    for path in (m3u, renamed):
        COUNTS["bad_inputs"] += 1
        with pytest.raises(MediaError, match="playlist"):
            probe(path)
        with pytest.raises(MediaError, match="playlist"):
            encode_clip(path, tmp_path / "out.mp4", 0, 1, 25, 64)
    assert not (tmp_path / "out.mp4").exists()


def _cfg(tmp_path, kind: str, items: list[str], **fetch_kw) -> object:
    fetch_yaml = ", ".join(f"{k}: {v}" for k, v in ({"timeout_s": 2, "retries": 0, "rate_limit_s": 0} | fetch_kw).items())
    text = f"sources: [{{name: s, kind: {kind}, items: {json.dumps(items)}}}]\nfetch: {{{fetch_yaml}}}\n"
    return parse_config(text, base_dir=str(tmp_path))


def _source(uri: str) -> SourceRecord:
    return SourceRecord.from_uri(uri, dataset="s")


@pytest.mark.parametrize("uri,words", [
    ("http://[::1:bad/x.mp4", "not a valid URL"),
    ("http://127.0.0.1:99999/x.mp4", "not a valid URL"),
    ("file:///etc/hostname", "outside the folders"),
    ("../../../../etc/hostname", "outside the folders"),
    ("file://otherhost/x.mp4", "another host"),
    ("gopher://127.0.0.1/x", "unsupported URL scheme"),
    ("\x00", "not a path or URL"),
])
def test_bad_urls_items_are_that_sources_error(tmp_path, uri, words):
    COUNTS["bad_inputs"] += 1
    src = fetch_source(_source(uri), _cfg(tmp_path, "urls", [uri]), tmp_path / "out")
    assert src.path is None and src.error.startswith("fetch:") and words in src.error, src.error


def test_page_linking_to_a_local_file_is_that_sources_error(hostile, tmp_path):
    COUNTS["bad_inputs"] += 1
    uri = f"{hostile.url}/fileref.html"
    src = fetch_source(_source(uri), _cfg(tmp_path, "pages", [uri]), tmp_path / "out")
    assert src.path is None and src.error.startswith("fetch: ") and "file" in src.error.lower(), src.error


def test_an_exception_of_any_kind_is_that_sources_error(tmp_path, monkeypatch):
    import mentor.fetch as fetch_mod

    def boom(*a, **k):
        raise KeyError("an extractor bug")

    monkeypatch.setattr(fetch_mod, "_fetch_http", boom)
    COUNTS["faults"] += 1
    uri = "http://127.0.0.1:1/x.mp4"
    src = fetch_source(_source(uri), _cfg(tmp_path, "urls", [uri]), tmp_path / "out")
    assert src.error == "fetch: KeyError: 'an extractor bug'"


def test_page_download_is_capped_without_content_length(hostile, tmp_path):
    COUNTS["bad_inputs"] += 1
    cap = len(hostile.body) * 13
    uri = f"{hostile.url}/bigpage.html"
    src = fetch_source(_source(uri), _cfg(tmp_path, "pages", [uri], max_bytes=cap), tmp_path / "out")
    assert src.error and "max_bytes" in src.error, src.error
    left = [p for p in (tmp_path / "out" / "cache").rglob("*") if p.is_file() and p.parent.name != ".locks"]
    assert all(p.stat().st_size <= cap + 65536 for p in left) and not [p for p in left if p.suffix == ".mp4"]


@pytest.mark.parametrize("kind,path", [("urls", "trickle.mp4"), ("pages", "tricklepage.html")])
def test_a_trickling_server_meets_the_deadline(hostile, tmp_path, kind, path):
    COUNTS["bad_inputs"] += 1
    uri = f"{hostile.url}/{path}"
    t0 = time.monotonic()
    src = fetch_source(_source(uri), _cfg(tmp_path, kind, [uri], deadline_s=4), tmp_path / "out")
    took = time.monotonic() - t0
    assert src.error and "deadline" in src.error, src.error
    assert took < 12, f"fetch took {took:.1f} s with deadline_s 4"


def test_option_like_names_never_reach_ffmpeg_as_options(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "-report").write_bytes(b"not media")
    monkeypatch.chdir(cwd)
    COUNTS["bad_inputs"] += 2
    with pytest.raises(MediaError, match="not readable media"):
        probe("-report")
    # a bare urls item is the config's, not the working directory's
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    src = fetch_source(_source("-report"), _cfg(cfg_dir, "urls", ["-report"]), tmp_path / "out")
    assert src.error == f"fetch: no such file: {cfg_dir / '-report'}"
    assert not list(cwd.glob("ffprobe-*.log")) and not list(cwd.glob("ffmpeg-*.log"))


# --------------------------------------------------------------------------- 8. tampered stores


def _rewrite_clips(root: Path, n: int, change) -> None:
    p = table_path(root, "clips", n)
    df = pq.read_table(p).to_pandas()
    df = change(df)
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    p.write_bytes(buf.getvalue())


@pytest.fixture()
def small_store(tmp_path, tiny):
    plan = sources(2, 2, tiny)
    root = tmp_path / "s"
    return root, write_all(root, plan, shard_bytes=25_000)


def test_absolute_key_in_the_index_writes_nothing_outside(small_store, tmp_path, capsys):
    from mentor.cli import main

    root, ids = small_store
    outside = tmp_path / "outside" / "evil"
    _rewrite_clips(root, 0, lambda df: df.assign(key=[str(outside)] + list(df["key"][1:])))
    COUNTS["bad_inputs"] += 1
    assert any("clip key" in p for p in verify_store(root))
    with pytest.raises(StoreError, match="clip key"):
        list(Store(root).records(media_dir=tmp_path / "media"))
    code = main(["preview", str(root), sorted(ids)[0], "-o", str(tmp_path / "p.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "clip key" in err, err
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("shard", ["../other/shard-000000.tar", "/tmp/shard-000000.tar", "shards/shard-000001.tar"])
def test_shard_path_outside_its_part_fails_verify(small_store, shard):
    root, _ = small_store
    _rewrite_clips(root, 0, lambda df: df.assign(shard=shard))
    COUNTS["bad_inputs"] += 1
    problems = verify_store(root)
    assert problems and any("shard" in p for p in problems), problems
    if not shard.startswith("shards/"):
        with pytest.raises(StoreError, match="shard path"):
            Store(root).clips()


def test_deleted_index_row_fails_verify(small_store):
    root, _ = small_store
    parts = Store(root).parts()
    one = [n for n, m in parts.items() if m.get("clips") == 1][:1]  # its only row goes: the shard is unnamed
    many = [n for n, m in parts.items() if m.get("clips", 0) > 1][:1]
    assert one
    for n in one + many:
        _rewrite_clips(root, n, lambda df: df.iloc[1:])
        COUNTS["bad_inputs"] += 1
    problems = verify_store(root)
    assert sum("in the shard but not in the index" in p for p in problems) == len(one + many), problems
    assert any("rows deleted" in p for p in problems)


# --------------------------------------------------------------------------- 9. config


BAD_YAML = {
    "alias bomb": "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
                          for p, c in zip([None, *"abcdefgh"], "abcdefghi")),
    "deep nesting": "x: " + "[" * 5000 + "]" * 5000 + "\n",
    "custom tag": "split: {stratify_by: !custom [a, b]}\n",  # was taken as a plain list
    "python tag": "split: {stratify_by: !!python/tuple [a, b]}\n",
    "bad preset": "video: {preset: bogus}\n",
    "bad device": "annotate: {smplx: {device: gpu0}}\n",
    "odd size": "video: {size: 513}\n",
}


@pytest.mark.parametrize("name", sorted(BAD_YAML))
def test_hostile_or_unrunnable_config_is_one_quick_message(name, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(BAD_YAML[name] + "sources: [{name: a, kind: urls, items: [x]}]\n")
    COUNTS["bad_inputs"] += 1
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert time.monotonic() - t0 < 10
    assert str(p) in str(e.value) and "Traceback" not in str(e.value)


def test_config_that_cannot_run_is_refused(tmp_path):
    for text, words in [("sources: []\n", "at least 1"),
                        ("sources: [{name: a, kind: urls, items: [x]}, {name: a, kind: urls, items: [y]}]\n", "unique"),
                        (b"sources: [{name: \xff\xfe, kind: urls, items: [x]}]\n", ":1: byte 0xff")]:
        p = tmp_path / "c.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        COUNTS["bad_inputs"] += 1
        with pytest.raises(ConfigError, match=words) as e:
            load_config(p)
        assert str(p) in str(e.value)


def test_rejection_caused_by_the_settings_is_not_final(tmp_path, tiny):
    """ffmpeg refusing the encoder settings rejects the clip in this run, but the source is
    recorded failed with 0 attempts: the next build (settings fixed) redoes its clips."""
    (src, recs), = sources(1, 2, tiny)
    with pytest.raises(MediaError, match="refused the configured settings") as e:
        encode_clip(tiny[0], tmp_path / "c.mp4", 0, 1, 25, 64, preset="bogus")
    COUNTS["faults"] += 1
    root = tmp_path / "s"
    with StoreWriter(root) as w:
        w.add(recs[0])
        recs[1].fail("encode", str(e.value))
        recs[1].reject("encode", str(e.value))
        w.add(recs[1])
        w.add_source(src, "ok", attempts=3, clips=2)
    store = Store(root)
    row = store.sources().iloc[0]
    assert row["status"] == "failed" and row["attempts"] == 0 and "settings" in row["error"]
    assert len(store.rejected()) == 0
    tally(root, {recs[0].id}, redo={recs[1].id})


# --------------------------------------------------------------------------- 10. messages, not tracebacks


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_messages(small_store, tmp_path, capsys, monkeypatch):
    from mentor.cli import main

    root, _ = small_store
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources: [{name: a, kind: urls, items: [x]}]\n")
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    COUNTS["bad_inputs"] += 1
    assert main(["build", str(cfg), "--out", str(a_file)]) == 2
    assert "is a file" in _one_line(capsys)

    import pipelines.curation as curation

    def raise_in(filename: str, text: str):
        def fn(*a, **k):
            exec(compile(text, filename, "exec"), {})
        return fn

    for fake, words in [(raise_in("/x/ray/_private/node.py", "raise Exception('timed out waiting for the raylet')"), "Ray failed"),
                        (raise_in("/x/driver.py", "raise OSError(28, 'No space left on device')"), "disk full")]:
        monkeypatch.setattr(curation, "build", fake)
        COUNTS["faults"] += 1
        assert main(["build", str(cfg), "--out", str(tmp_path / "o")]) == 1
        assert words in _one_line(capsys)
    monkeypatch.undo()

    index = table_path(root, "clips", 0)
    good = index.read_bytes()
    for data in (b"PAR1 garbage", None):
        if data is None:  # wrongly typed: durations as text
            index.write_bytes(good)
            _rewrite_clips(root, 0, lambda df: df.assign(duration=df["duration"].astype(str)))
        else:
            index.write_bytes(data)
        COUNTS["bad_inputs"] += 1
        assert main(["info", str(root)]) == 2
        assert "part-000000.parquet" in _one_line(capsys)
        assert main(["verify", str(root)]) == 1
        assert "part-000000.parquet" in capsys.readouterr().out


def test_preview_of_a_store_without_smplx(small_store, tmp_path, capsys):
    from mentor.cli import main

    root, ids = small_store
    out = tmp_path / "p.mp4"
    code = main(["preview", str(root), sorted(ids)[0], "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 0 and out.stat().st_size > 0, err


# --------------------------------------------------------------------------- end to end (slow)


@pytest.mark.slow
def test_build_on_a_disk_that_fills_up_then_resumes(small_fs, talking_clip, tmp_path, capsys):
    """`mentor build` into a store on a full tmpfs stops with one message and commits
    nothing half-written; with space freed, the same command completes, each clip once."""
    from mentor.cli import main

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(2):
        (raw / f"talk{i}.mp4").write_bytes(talking_clip.read_bytes())
    cfg = tmp_path / "c.yaml"
    off = {k: {"enabled": False} for k in ("landmarks", "smplx", "vad", "diarization", "asr", "sync",
                                           "audio_features", "attributes")}
    cfg.write_text(json.dumps({
        "sources": [{"name": "talks", "kind": "folder", "path": "raw"},
                    {"name": "bad", "kind": "urls", "items": ["http://[::1:bad/x.mp4", "-report", "/etc/hostname"]}],
        "video": {"size": 128}, "filters": {"min_speech_fraction": 0.0},
        "annotate": off, "ray": {"num_cpus": 2}}))
    out = small_fs.path / "store"
    small_fs.resize("40k")  # store.json, the lock and the cache fit; the clips do not
    COUNTS["faults"] += 1
    COUNTS["bad_inputs"] += 3
    code = main(["build", str(cfg), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err and "disk full" in err[-1] and "Traceback" not in "\n".join(err), err
    assert verify_store(out) == []
    small_fs.resize("50m")
    assert main(["build", str(cfg), "--out", str(out), "--quiet"]) == 0
    store = Store(out)
    clips = store.clips()
    assert len(clips) >= 2 and set(clips["source_id"]) == {SourceRecord.from_uri(str(p.resolve())).id for p in raw.iterdir()}
    failed = store.sources().query("status == 'failed'")
    assert len(failed) == 3, failed[["uri", "error"]]
    tally(out, set(clips["clip_id"]) | set(store.rejected()["clip_id"]))
