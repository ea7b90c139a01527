"""fetch / discover_sources against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mentor.config import ConfigError, FetchConfig, parse_config
from mentor.fetch import FetchError, _RateLimit, cache_key, discover_sources, fetch, fetch_source, sniff_media
from mentor.media import probe


@pytest.fixture(scope="module")
def mp4_bytes(tmp_path_factory) -> bytes:
    """A real 1 s H.264 + AAC mp4 (a few kB)."""
    path = tmp_path_factory.mktemp("media") / "good.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", "1", "-c:v", "libx264", "-c:a", "aac",
                    "-shortest", str(path)], check=True)
    return path.read_bytes()


class _Server:
    """Routes for the tests; `hits` counts requests per path, `ranges` keeps Range headers."""

    def __init__(self, body: bytes):
        self.body = body
        self.hits: dict[str, int] = {}
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                server.hits[path] = server.hits.get(path, 0) + 1
                server.ranges.append(self.headers.get("Range"))
                route = getattr(server, "r_" + path.strip("/").replace(".", "_").replace("-", "_"), None)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                route(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def send(h, body: bytes, ctype: str = "video/mp4", code: int = 200, length: int | None = None, extra=None):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def r_good_mp4(self, h):  # honours Range
        rng = h.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send(h, self.body[start:], code=206,
                      extra={"Content-Range": f"bytes {start}-{len(self.body) - 1}/{len(self.body)}"})
        else:
            self.send(h, self.body)

    def r_norange_mp4(self, h):  # ignores Range
        self.send(h, self.body)

    def r_page_html(self, h):
        self.send(h, b"<!doctype html><html><body>Sign in to watch</body></html>", ctype="text/html; charset=utf-8")

    def r_mislabelled_mp4(self, h):  # a media body with a wrong content type
        self.send(h, self.body, ctype="text/html")

    def r_slow_mp4(self, h):
        time.sleep(1.5)
        self.send(h, self.body)

    def r_flaky_mp4(self, h):  # 500 once, then fine
        if self.hits["/flaky.mp4"] == 1:
            self.send(h, b"oops", ctype="text/plain", code=500)
        else:
            self.send(h, self.body)

    def r_down_mp4(self, h):
        self.send(h, b"down", ctype="text/plain", code=503)

    def r_big_mp4(self, h):  # says how big it is
        self.send(h, self.body)

    def r_nolength_mp4(self, h):  # streams without Content-Length (size known only while reading)
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        h.end_headers()
        h.wfile.write(self.body)
        h.close_connection = True

    def r_list_m3u8(self, h):  # an HLS playlist whose segment is a local file
        self.send(h, b"#EXTM3U\n#EXTINF:1.0,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n",
                  ctype="application/vnd.apple.mpegurl")

    def r_video_html(self, h):  # a page with an HTML5 <video>, for yt-dlp's generic extractor
        self.send(h, b'<html><head><title>talk</title></head><body><video src="/good.mp4"></video></body></html>',
                  ctype="text/html")


@pytest.fixture(scope="module")
def server(mp4_bytes):
    s = _Server(mp4_bytes)
    yield s
    s.httpd.shutdown()


CFG = FetchConfig(timeout_s=5, retries=2, backoff_s=0.05, rate_limit_s=0)


def test_downloads_a_good_mp4_once(server, tmp_path, mp4_bytes):
    url = server.url + "/good.mp4"
    path = fetch(url, tmp_path, CFG)
    assert path.read_bytes() == mp4_bytes
    assert path.name == cache_key(url) + ".mp4" and cache_key(url) == hashlib.sha1(url.encode()).hexdigest()
    assert probe(path).has_video
    hits = server.hits["/good.mp4"]
    assert fetch(url, tmp_path, CFG) == path  # cached: no second request
    assert server.hits["/good.mp4"] == hits
    assert not list(tmp_path.glob("*.part"))


def test_404_is_not_retried(server, tmp_path):
    with pytest.raises(FetchError) as e:
        fetch(server.url + "/missing.mp4", tmp_path, CFG)
    assert str(e.value) == f"HTTP 404 Not Found for {server.url}/missing.mp4"
    assert e.value.uri == server.url + "/missing.mp4"
    assert server.hits["/missing.mp4"] == 1


def test_slow_server_times_out(server, tmp_path):
    cfg = FetchConfig(timeout_s=0.3, retries=0)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 0\.3 s waiting for a response from http://127\.0\.0\.1:\d+/slow\.mp4"):
        fetch(server.url + "/slow.mp4", tmp_path, cfg)
    assert time.monotonic() - t0 < 1.4
    assert not any(p.suffix == ".mp4" for p in tmp_path.iterdir())


def test_html_body_is_rejected_unless_it_sniffs_as_media(server, tmp_path, mp4_bytes):
    with pytest.raises(FetchError, match=r"body is text/html, not video: .*<!doctype html>.*kind: pages"):
        fetch(server.url + "/page.html", tmp_path, CFG)
    assert not any(p.name.endswith((".html", ".part")) for p in tmp_path.iterdir())
    assert fetch(server.url + "/mislabelled.mp4", tmp_path, CFG).read_bytes() == mp4_bytes


def test_resumes_a_partial_download_with_range(server, tmp_path, mp4_bytes):
    url = server.url + "/good.mp4"
    final = tmp_path / (cache_key(url) + ".mp4")
    part = final.with_name(final.name + ".part")
    part.write_bytes(mp4_bytes[:1000])
    assert not final.exists()  # a partial download never looks complete
    server.ranges.clear()
    assert fetch(url, tmp_path, CFG).read_bytes() == mp4_bytes
    assert server.ranges == ["bytes=1000-"]
    assert not part.exists()


def test_restarts_when_the_server_ignores_range(server, tmp_path, mp4_bytes):
    url = server.url + "/norange.mp4"
    part = tmp_path / (cache_key(url) + ".mp4.part")
    part.write_bytes(b"\x00" * 500)  # would corrupt the file if appended to
    server.ranges.clear()
    assert fetch(url, tmp_path, CFG).read_bytes() == mp4_bytes
    assert server.ranges == ["bytes=500-"]


def test_5xx_is_retried_with_backoff(server, tmp_path, mp4_bytes):
    assert fetch(server.url + "/flaky.mp4", tmp_path, CFG).read_bytes() == mp4_bytes
    assert server.hits["/flaky.mp4"] == 2
    with pytest.raises(FetchError, match=r"HTTP 503 Service Unavailable .* \(gave up after 3 attempts\)"):
        fetch(server.url + "/down.mp4", tmp_path, CFG)
    assert server.hits["/down.mp4"] == 3


def test_size_limit_from_header_and_while_streaming(server, tmp_path, mp4_bytes):
    cfg = FetchConfig(max_bytes=len(mp4_bytes) - 1, retries=0)
    with pytest.raises(FetchError, match=rf"larger than max_bytes: {len(mp4_bytes)} bytes > {len(mp4_bytes) - 1}"):
        fetch(server.url + "/big.mp4", tmp_path, cfg)
    with pytest.raises(FetchError, match=r"larger than max_bytes: more than"):
        fetch(server.url + "/nolength.mp4", tmp_path, cfg)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob("*.part"))
    assert fetch(server.url + "/nolength.mp4", tmp_path, CFG).read_bytes() == mp4_bytes


def test_local_paths_and_file_urls(tmp_path, mp4_bytes):
    f = tmp_path / "my clip.mp4"
    f.write_bytes(mp4_bytes)
    assert fetch(str(f), tmp_path / "cache", CFG) == f
    assert fetch(f.as_uri(), tmp_path / "cache", CFG) == f  # file:// with a quoted space
    with pytest.raises(FetchError, match="no such file"):
        fetch(str(tmp_path / "nope.mp4"), tmp_path / "cache", CFG)
    with pytest.raises(FetchError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://example.org/a.mp4", tmp_path / "cache", CFG)
    assert not (tmp_path / "cache").exists()  # local files are not copied


def test_pages_through_ytdlp_generic_extractor(server, tmp_path, mp4_bytes):
    page = fetch(server.url + "/video.html", tmp_path, CFG, page=True)
    assert page.read_bytes() == mp4_bytes and page.name.startswith(cache_key(server.url + "/video.html"))
    hits = server.hits.get("/video.html", 0)
    assert fetch(server.url + "/video.html", tmp_path, CFG, page=True) == page  # cached
    assert server.hits["/video.html"] == hits
    with pytest.raises(FetchError, match=r"^yt-dlp: .*404"):
        fetch(server.url + "/gone.html", tmp_path, CFG, page=True)


def test_rate_limit_keeps_a_minimum_gap():
    rl = _RateLimit()
    t0 = time.monotonic()
    for _ in range(3):
        rl.wait(0.1)
    assert time.monotonic() - t0 >= 0.19


def test_sniff_media(mp4_bytes):
    assert sniff_media(mp4_bytes[:64])
    assert sniff_media(b"\x1a\x45\xdf\xa3" + b"\x00" * 20)
    assert not sniff_media(b"<!doctype html><html>")


def test_discover_sources(tmp_path, mp4_bytes):
    folder = tmp_path / "raw"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.mp4").write_bytes(mp4_bytes)
    (folder / "a.txt").write_text("broken")
    (folder / "sub" / "c.mov").write_bytes(mp4_bytes)
    (folder / ".hidden.mp4").write_bytes(mp4_bytes)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "d.mp4").write_bytes(mp4_bytes)
    text = """
sources:
  - {name: vlogs, kind: folder, path: raw, license: CC-BY, identity: per_source}
  - {name: listed, kind: files, items: [raw/b.mp4, raw/missing.mp4], notes: hand picked}
  - {name: web, kind: urls, items: ["http://127.0.0.1:1/x.mp4"], identity: alice}
  - {name: yt, kind: pages, items: ["https://www.youtube.com/watch?v=abc"]}
"""
    cfg = parse_config(text, base_dir=str(tmp_path))
    recs = discover_sources(cfg)
    uris = [r.uri for r in recs]
    assert uris == [str(folder / "a.txt"), str(folder / "b.mp4"), str(folder / "sub" / "c.mov"),
                    str(folder / "missing.mp4"), "http://127.0.0.1:1/x.mp4", "https://www.youtube.com/watch?v=abc"]
    by = {r.uri: r for r in recs}
    assert by[str(folder / "a.txt")].identity == "vlogs" and by[str(folder / "a.txt")].license == "CC-BY"
    assert by[str(folder / "missing.mp4")].notes == "hand picked" and by[str(folder / "missing.mp4")].dataset == "listed"
    assert by["http://127.0.0.1:1/x.mp4"].identity == "alice"
    yt = by["https://www.youtube.com/watch?v=abc"]
    assert yt.identity == yt.id and len({r.id for r in recs}) == len(recs)
    # a fetch failure is recorded on the source, not raised
    missing = fetch_source(by[str(folder / "missing.mp4")], cfg)
    assert missing.path is None and missing.error.startswith("fetch: no such file")
    assert fetch_source(by[str(folder / "b.mp4")], cfg).path == str(folder / "b.mp4")

    bad = parse_config("sources: [{name: x, kind: folder, path: nowhere}]", base_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        discover_sources(bad)


def test_playlists_bad_urls_and_local_roots(server, tmp_path, mp4_bytes):
    with pytest.raises(FetchError, match="playlist or manifest"):
        fetch(server.url + "/list.m3u8", tmp_path, CFG)
    for bad in ("http://[::1:bad/x.mp4", "http://127.0.0.1:70000/x.mp4"):
        with pytest.raises(FetchError, match="not a valid URL"):
            fetch(bad, tmp_path, CFG)
    inside = tmp_path / "media" / "a.mp4"
    inside.parent.mkdir()
    inside.write_bytes(mp4_bytes)
    assert fetch(inside.as_uri(), tmp_path / "c", CFG, local_roots=[inside.parent]) == inside
    link = inside.parent / "link.mp4"
    link.symlink_to("/etc/hostname")  # a way out of the root through a link
    for uri in ("/etc/hostname", link.as_uri(), str(inside.parent / ".." / ".." / "x.mp4")):
        with pytest.raises(FetchError, match="outside the folders"):
            fetch(uri, tmp_path / "c", CFG, local_roots=[inside.parent])


def test_fetch_source_resolves_bare_urls_items_against_the_config(tmp_path, mp4_bytes, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(mp4_bytes)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = parse_config("sources: [{name: u, kind: urls, items: [clip.mp4]}]", base_dir=str(tmp_path))
    src = discover_sources(cfg)[0]
    assert fetch_source(src, cfg).path == str(tmp_path / "clip.mp4")
