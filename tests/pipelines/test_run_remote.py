"""mentor run with its run folder on object storage (`output: s3://...`), against moto's S3
server started by the test on 127.0.0.1: the store lives in the bucket, every step runs on
it, each step's outputs (models, reports, markers, the run's page) are copied into the
bucket, the checkpoints and markers that resume the run stay in the run's local folder
(named in the summary), and a second run finds everything done.

The store is the synthetic one (6 clips) put into the bucket first, and the config's
source folder is empty, so the build has nothing to do and no Ray starts: the test is about
where things live, not about building (tests/mentor/test_store_remote.py builds into a
bucket)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pipelines.run as run_mod
from mentor.config import parse_config

BUCKET = "mentor-run"

CONFIG = """version: 1
output: s3://{bucket}/demo
sources:
  - {{name: none, kind: folder, path: {root}/src}}
split: {{seed: 0, shares: {{train: 0.5, val: 0.25, test: 0.25}}, stratify_by: []}}
store: {{storage_options: {{endpoint_url: "{endpoint}"}}}}
train:
  motion: {{steps: 4, ckpt_every: 2, batch_size: 2}}
  video: {{stage1_steps: 2, stage2_steps: 2, ckpt_every: 2}}
eval: {{bootstrap: 20, gen_steps: 2, max_clips: 1, gen_seconds: 1.0}}
"""


@pytest.fixture
def s3(tmp_path, moto_s3):
    """A moto S3 server on 127.0.0.1 with credentials in the environment and the endpoint
    only in the config (store.storage_options), as a user would keep it."""
    with moto_s3(BUCKET, {"MENTOR_WORK_DIR": str(tmp_path / "work")},
                 unset=("MENTOR_STORAGE_OPTIONS", "AWS_ENDPOINT_URL")) as endpoint:
        yield endpoint


def _keys(endpoint: str, prefix: str) -> set[str]:
    import boto3

    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=prefix)
    return {o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])}


def test_default_run_folder_of_a_url_output_is_a_url_and_its_local_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MENTOR_WORK_DIR", str(tmp_path / "work"))
    cfg = parse_config(CONFIG.format(bucket=BUCKET, root=tmp_path, endpoint="http://127.0.0.1:1"), "r.yaml",
                       str(tmp_path))
    assert run_mod.default_run_dir(cfg) == f"s3://{BUCKET}/demo-run"
    lay = run_mod.RunLayout.at(run_mod.default_run_dir(cfg), cfg.store.storage_options)
    assert str(lay.store) == f"s3://{BUCKET}/demo-run/store"
    assert lay.store.storage_options == {"endpoint_url": "http://127.0.0.1:1"}
    assert lay.root == (tmp_path / "work" / "s3" / BUCKET / "demo-run").resolve()  # not ./s3:/... in the cwd
    assert lay.where(lay.eval / "index.html") == f"s3://{BUCKET}/demo-run/eval/index.html"
    local = run_mod.RunLayout.at(tmp_path / "r")
    assert local.remote is None and local.store == tmp_path / "r" / "store"
    assert run_mod.RunLayout.at(f"file://{tmp_path}/r").root == (tmp_path / "r").resolve()


@pytest.mark.slow
def test_mentor_run_with_its_output_on_s3(s3, tmp_path, synthetic_store):
    from mentor.store import Store, verify_store
    from mentor.store.fs import StoreFS

    (tmp_path / "src").mkdir()
    cfg = parse_config(CONFIG.format(bucket=BUCKET, root=tmp_path, endpoint=s3), "r.yaml", str(tmp_path))
    run_url = f"s3://{BUCKET}/demo-run"
    fs = StoreFS(run_url, {"endpoint_url": s3})
    for entry in synthetic_store.iterdir():  # the store, into the bucket (the local flock file is not one)
        if entry.name != "lock":
            fs.put_tree(entry, f"store/{entry.name}")
    cwd_before = set(Path.cwd().iterdir())

    summary = run_mod.run(cfg, progress=False)  # the run folder: output + "-run", on s3

    assert [s["status"] for s in summary.steps] == ["done now"] * len(run_mod.STEPS), summary.render()
    remote = _keys(s3, "demo-run/")
    for key in ("runs/motion/model/config.json", "runs/motion/result.json", "runs/motion/loss.csv",
                "runs/video/model/video.json", "runs/video/stage1/loss.csv", "eval/eval.json", "eval/index.html",
                "audit/index.html", "index.html", "run.json", *(f"steps/{s}.done" for s in run_mod.STEPS)):
        assert key in remote, (key, sorted(remote))
    assert not any("/checkpoints/" in k or k.startswith("runs/motion/ray/") for k in remote)  # stay local
    store = Store(f"{run_url}/store", storage_options={"endpoint_url": s3})
    assert verify_store(store.root) == [] and store.clips()["split"].notna().all()
    local = (tmp_path / "work" / "s3" / BUCKET / "demo-run").resolve()
    assert any((local / "runs" / "motion" / "checkpoints").glob("step-*.pt"))
    assert set(Path.cwd().iterdir()) == cwd_before  # no ./s3: folder
    text = summary.render()
    assert f"{run_url}/eval/index.html" in text and f"local folder   {local}" in text
    report = json.loads(fs.read_bytes("run.json"))
    assert report["remote"] == run_url and [s["step"] for s in report["steps"]] == list(run_mod.STEPS)

    again = run_mod.run(cfg, progress=False)
    assert again.all_done_before, again.render()


@pytest.mark.slow
def test_mentor_annotate_on_a_store_on_s3(s3, tmp_path, synthetic_store):
    """`mentor annotate s3://...`: the annotators run again on the bucket's store (media
    extracted to a local work folder), each part replaced whole, the rest carried over."""
    import ray

    from annotate.registry import all_off_yaml
    from mentor.store import Store, verify_store
    from mentor.store.fs import StoreFS
    from pipelines.reannotate import annotate_store

    url = f"s3://{BUCKET}/annotated/store"
    fs = StoreFS(url, {"endpoint_url": s3})
    for entry in synthetic_store.iterdir():
        if entry.name != "lock":
            fs.put_tree(entry, entry.name)
    (tmp_path / "src").mkdir()
    cfg = parse_config(f"sources:\n  - {{name: r, kind: folder, path: {tmp_path}/src}}\nray: {{annotate_actors: 1}}\n"
                       + all_off_yaml("annotate"), "a.yaml", str(tmp_path))
    cfg.annotate.vad.enabled = True
    before = Store(synthetic_store)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MENTOR_STORAGE_OPTIONS", json.dumps({"endpoint_url": s3}))  # as `mentor annotate` reads it
    try:
        summary = annotate_store(url, cfg)
    finally:
        ray.shutdown()
        monkeypatch.undo()
    store = Store(url, storage_options={"endpoint_url": s3})
    after = store.clips()
    assert sorted(after["clip_id"]) == sorted(before.clips()["clip_id"]) and summary.clips_kept == len(after)
    assert "score.vad.speech_fraction" in after and after["score.vad.speech_fraction"].notna().all()
    assert sorted(store.sources()["source_id"]) == sorted(before.sources()["source_id"])  # carried over
    assert verify_store(store.root) == []
    assert not (Path.cwd() / "s3:").exists()
