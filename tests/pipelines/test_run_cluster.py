"""mentor run against a 2-node Ray cluster (ray.cluster_utils: a head and a worker node, as
separate raylets on this machine, 1 CPU each), the way a user runs it with --ray-address:
every step, build -> split -> train-motion -> train-video -> eval -> audit -> report.

The build must have had its actors on both nodes (its three half-CPU actors cannot fit on
one 1-CPU node), each trainer must have run as a Ray Train worker on the cluster (its
marker names the actor classes per node), and the store must hold the same clip ids, kept
and rejected, as the same stages run on one node. That reference is the build's own stage
classes (pipelines.stages: prepare_source, then AnnotatorStage with the filter + encode
and the annotate stages) called in this process on the same source, with no Ray at all:
the same work as a 1-node `mentor run --stop-after build`, without a Ray Data start on a
second cluster (it took 254 s of the first version's 18 min at a load average of 20-34).

10m44s on the 2-core box at a load average of 10-26 (the reference 43 s, `mentor run` 468 s:
build 178 s, train-motion 144 s, train-video 124 s, most of each trainer Ray Train starting
its controller and worker processes; eval 17 s, audit 4 s). The first version, a 1-node
`mentor run` to the split and then a 2-node one to train-motion, took 8m17s at a load of
12-25, and 17m52s at 20-34 once it ran every step (its 1-node build alone 254 s).
"""

from __future__ import annotations

import json
import shutil
import time
from functools import partial
from pathlib import Path

import pytest

import pipelines.run as run_mod
from mentor.config import parse_config

CONFIG = """version: 1
output: {root}/out
sources:
  - {{name: real, kind: folder, path: {root}/src, identity: per_source}}
video: {{size: 256}}
filters: {{min_face_px: 32}}
annotate:
  diarization: {{enabled: false}}
  asr: {{enabled: false}}
  attributes: {{enabled: false}}
split: {{seed: 0, shares: {{train: 0.5, val: 0.25, test: 0.25}}, stratify_by: []}}
ray: {{filter_actors: 2, filter_threads: 1, annotate_threads: 1}}
train:
  motion: {{steps: 4, ckpt_every: 2, batch_size: 2}}
  video: {{stage1_steps: 2, stage2_steps: 2, ckpt_every: 2}}
eval: {{bootstrap: 20, gen_steps: 2, max_clips: 1, gen_seconds: 1.0}}
"""
TRAIN_WORKER = "RayTrainWorker"  # Ray Train's worker actor class (ray.train.v2)


def one_process_clip_ids(cfg, out: Path) -> dict[str, bool]:
    """clip id -> kept, for the config's sources built by the build's own stage classes in
    this process (pipelines/curation.py's graph without Ray: one source row, its clip rows,
    each through the curate pool's AnnotatorStage and then the annotate pool's)."""
    from annotate.registry import build_annotators
    from mentor.fetch import discover_sources
    from mentor.record import ClipRecord
    from pipelines import stages
    from pipelines.curation import plan

    cfg = cfg.with_resolved_paths()
    pools = [stages.AnnotatorStage(partial(build_annotators, stages=pool, work=stages.work_dir(out)), cfg)
             for pool in plan(cfg) if pool]
    kept: dict[str, bool] = {}
    for src in discover_sources(cfg):
        for row in stages.prepare_source(stages.source_row(src), cfg, out, frozenset()):
            if row["kind"] != "clip":
                continue
            batch = stages._frame([row])
            for pool in pools:
                batch = pool(batch)
            rec = ClipRecord.from_row(batch.iloc[0].to_dict())
            kept[rec.id] = rec.kept
    return kept


@pytest.mark.slow
def test_mentor_run_on_a_two_node_cluster_uses_both_nodes_and_makes_the_one_node_clip_set(tmp_path, synthetic_store):
    import ray
    from ray.cluster_utils import Cluster

    from mentor.store import Store, verify_store
    from mentor.testmedia import make_talking_clip
    from pipelines.runtime import add_cluster_node

    make_talking_clip(tmp_path / "src" / "talk.mp4", seconds=4.0, size=256, seed=3)
    cfg = parse_config(CONFIG.format(root=tmp_path), "cluster.yaml", str(tmp_path))
    run_dir = tmp_path / "two-nodes"
    shutil.copytree(synthetic_store, run_dir / "store")  # 6 clips to train on; the build adds the real one

    t0 = time.perf_counter()
    reference = one_process_clip_ids(cfg, tmp_path / "reference")
    t_ref = time.perf_counter() - t0
    assert reference, "the reference made no clip of talk.mp4"

    if ray.is_initialized():  # an earlier test's local Ray: this test connects to its own cluster
        ray.shutdown()
    cluster = Cluster()
    try:
        head = add_cluster_node(cluster, num_cpus=1)  # the first node is the head
        worker = add_cluster_node(cluster, num_cpus=1)
        t0 = time.perf_counter()
        summary = run_mod.run(cfg, out=run_dir, ray_address=cluster.address, progress=False)
        t_run = time.perf_counter() - t0
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"reference (one process, no Ray) {t_ref:.0f} s; mentor run on 2 nodes {t_run:.0f} s\n" + summary.render())
    print(f"head node {head.node_id}, worker node {worker.node_id}; actors per node:\n"
          + json.dumps({s["step"]: s.get("ray_actors") for s in summary.steps if s.get("ray_actors")}, indent=1))

    steps = {s["step"]: s for s in summary.steps}
    assert [s["status"] for s in summary.steps] == ["done now"] * len(run_mod.STEPS), summary.render()
    assert nodes == {head.node_id, worker.node_id}
    build_nodes = steps["build"].get("ray_nodes", {})
    assert set(build_nodes) == nodes, (build_nodes, nodes)  # the build's actors ran on both nodes
    assert sum(build_nodes.values()) >= 3  # 2 filter actors + 1 annotate actor
    marker = json.loads((run_dir / "steps" / "build.done").read_text())
    assert set(marker["result"]["ray_nodes"]) == nodes  # the marker keeps where the build ran
    for step in ("train-motion", "train-video"):  # each trainer: a Ray Train worker on the cluster
        placed = {node: classes for node, classes in steps[step].get("ray_actors", {}).items()
                  if TRAIN_WORKER in classes}
        assert len(placed) == 1 and set(placed) <= nodes, (step, steps[step])
        assert json.loads((run_dir / "steps" / f"{step}.done").read_text())["result"]["ray_actors"]
    assert json.loads((run_dir / "runs" / "motion" / "result.json").read_text())["step"] == 4
    video = json.loads((run_dir / "runs" / "video" / "result.json").read_text())  # written by the launcher
    assert video["stage1_step"] == 2 and video["stage2_step"] == 2
    assert "stage 1: step 2" in steps["train-video"]["note"]
    for path in ("runs/video/model/video.json", "eval/eval.json", "audit/index.html", "index.html"):
        assert (run_dir / path).is_file(), path
    assert "ray_nodes" not in steps["eval"] or not steps["eval"]["ray_nodes"]  # eval and audit: no Ray

    assert verify_store(run_dir / "store") == []
    store = Store(run_dir / "store")
    synthetic = Store(synthetic_store)
    made = {**{c: True for c in store.clips()["clip_id"]}, **{c: False for c in store.rejected()["clip_id"]}}
    for c in synthetic.clips()["clip_id"]:
        assert made.pop(c) is True
    assert made == reference, (made, reference)  # the real source: the same clips, kept and rejected alike
