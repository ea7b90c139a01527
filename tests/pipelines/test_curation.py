"""The curation graph end to end on real media: good and broken sources (local files and
a local HTTP server), the same clips on a two-node Ray cluster, kill -9 and resume."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from annotate.registry import all_off_yaml
from mentor.config import parse_config
from mentor.store import Store, verify_store

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

NO_ANNOTATORS = all_off_yaml("annotate")


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):  # keep test output clean
        pass

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(3)
        if self.path.startswith("/page.html"):
            body = b"<html><body>not a video</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        return super().do_GET()


@pytest.fixture(scope="module")
def server(media):
    handler = lambda *a, **k: _Handler(*a, directory=str(media["http"]), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from mentor.testmedia import make_broken_files, make_multi_person_clip, make_talking_clip

    root = tmp_path_factory.mktemp("curation")
    folder = root / "folder"
    folder.mkdir()
    make_talking_clip(folder / "speaker_a.mp4", seconds=7.0, seed=1)
    make_multi_person_clip(folder / "two_people.mp4", seconds=4.0)
    broken = make_broken_files(root / "broken")
    for name in ("truncated", "not_video", "audio_only", "empty"):
        shutil.copy(broken[name], folder / broken[name].name)
    make_talking_clip(folder / "video_only.mp4", seconds=4.0, audio=False, seed=3)
    http_dir = root / "http"
    http_dir.mkdir()
    make_talking_clip(http_dir / "remote.mp4", seconds=4.0, seed=2, voice="en+f3")
    shutil.copy(http_dir / "remote.mp4", http_dir / "slow.mp4")
    return {"folder": folder, "http": http_dir, "root": root, "broken": broken}


def config(media, server, extra: str = ""):
    text = f"""
sources:
  - {{name: local, kind: folder, path: {media['folder']}}}
  - name: web
    kind: urls
    items:
      - {server}/remote.mp4
      - {server}/missing.mp4
      - {server}/slow.mp4
      - {server}/page.html
filters: {{min_speech_fraction: 0.2}}
ray: {{filter_actors: 1}}
""" + NO_ANNOTATORS + (extra or "fetch: {timeout_s: 1.0, retries: 0, backoff_s: 0}\n")
    return parse_config(text, "test.yaml", str(media["root"]))


def _outcome(root: Path):
    store = Store(root)
    kept = sorted(store.clips()["clip_id"])
    rejected = dict(zip(store.rejected()["clip_id"], store.rejected()["rejected"]))
    sources = {r.uri: (r.status, r.error) for r in store.sources().itertuples()}
    return kept, rejected, sources


@pytest.fixture(scope="module")
def embedded_run(media, server, tmp_path_factory):
    import ray

    from pipelines.curation import build

    out = tmp_path_factory.mktemp("store") / "s"
    summary = build(config(media, server), out=out, progress=False)
    yield out, summary
    ray.shutdown()


def test_good_and_broken_sources(embedded_run, media, server):
    out, summary = embedded_run
    kept, rejected, sources = _outcome(out)
    by_name = {Path(u).name: v for u, v in sources.items()}
    # failed sources, each with its reason
    assert by_name["missing.mp4"][0] == "failed" and "404" in by_name["missing.mp4"][1]
    assert by_name["slow.mp4"][0] == "failed" and "timed out" in by_name["slow.mp4"][1]
    assert by_name["page.html"][0] == "failed" and "text/html" in by_name["page.html"][1]
    for name in ("not_video.mp4", "empty.mp4", "audio_only.m4a"):
        key = next(k for k in by_name if k.startswith(name.split(".")[0]))
        assert by_name[key][0] == "failed", (key, by_name[key])
    assert "empty" in by_name[next(k for k in by_name if k.startswith("empty"))][1]
    assert "no video stream" in by_name[next(k for k in by_name if k.startswith("audio_only"))][1]
    # good sources gave kept clips; the two-person clip and the silent one were rejected
    assert by_name["speaker_a.mp4"][0] == "ok" and by_name["remote.mp4"][0] == "ok"
    store = Store(out)
    clips = store.clips()
    kept_sources = set(clips["source_uri"].map(lambda u: Path(u).name))
    assert {"speaker_a.mp4", "remote.mp4"} <= kept_sources
    assert len(clips) >= 2
    reasons = {Path(u).name: r for u, r in zip(store.rejected()["source_uri"], store.rejected()["rejected"])}
    assert reasons["two_people.mp4"].startswith("filter: two_people")
    video_only = next(k for k in reasons if k.startswith("video_only"))
    assert reasons[video_only].startswith("filter: no_audio")
    # every kept clip was encoded at the configured size, with audio, and the store is whole
    assert set(clips["width"]) == {512} and verify_store(out) == []
    for s in store.dataset(decode_video=True):
        assert tuple(s["video"].shape[1:]) == (512, 512, 3) and s["sample_rate"] == 16000
    assert summary.clips_kept == len(clips)
    assert "404" in summary.render()


def test_rerun_over_finished_store_does_nothing(embedded_run, media, server):
    from pipelines.curation import build

    out, _ = embedded_run
    before = _outcome(out)
    again = build(config(media, server), out=out, progress=False)
    # failed sources are retried (attempt 2 of 3) but nothing that succeeded is redone
    assert again.clips_kept == 0 and sum(again.clips_rejected.values()) == 0
    assert _outcome(out)[0] == before[0]
    attempts = {Path(r.uri).name: r.attempts for r in Store(out).sources().itertuples()}
    assert attempts["missing.mp4"] == 2 and attempts["speaker_a.mp4"] == 1
    # with at most 2 attempts every source is now finished: no Ray, no model work
    done = build(config(media, server, "fetch: {max_attempts: 2, timeout_s: 1.0, retries: 0}\n"), out=out, progress=False)
    assert done.ray == "" and any("nothing to do" in n for n in done.notes)
    assert verify_store(out) == []


def test_two_node_cluster_gives_the_same_clips(embedded_run, media, server, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from pipelines.curation import build

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        summary = build(config(media, server), out=tmp_path / "c", ray_address=cluster.address, progress=False)
        nodes = len([n for n in ray.nodes() if n["Alive"]])
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert nodes == 2
    assert "cluster" in summary.ray
    embedded = _outcome(embedded_run[0])
    on_cluster = _outcome(tmp_path / "c")
    assert on_cluster[0] == embedded[0] and on_cluster[1] == embedded[1]


def test_kill_and_resume_gives_every_clip_once(media, tmp_path):
    """kill -9 the whole build (driver and Ray workers) once a first part is committed,
    start it again, and compare with an uninterrupted run."""
    from mentor.testmedia import make_talking_clip

    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(4):
        make_talking_clip(folder / f"s{i}.mp4", seconds=7.0, seed=10 + i)
    cfg = tmp_path / "k.yaml"
    cfg.write_text(f"sources:\n  - {{name: k, kind: folder, path: {folder}}}\nstore: {{shard_bytes: 1000}}\n"
                   "ray: {filter_actors: 1}\n" + NO_ANNOTATORS)
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "mentor.cli", "build", str(cfg), "--out", str(out), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "commits").glob("part-*.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
    proc.wait()
    subprocess.run(["pkill", "-9", "-f", f"ray.*{out}"], check=False)
    partial = len(Store(out).clips())
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    clips = Store(out).clips()
    assert clips["clip_id"].is_unique and verify_store(out) == []
    # the same clips as an uninterrupted run
    full = subprocess.run(cmd[:-3] + ["--out", str(tmp_path / "full"), "--quiet"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    assert sorted(clips["clip_id"]) == sorted(Store(tmp_path / "full").clips()["clip_id"])
    assert 1 <= partial < len(clips), "the kill should have come between the first and the last commit"
