"""mentor run against a 2-node Ray cluster (ray.cluster_utils: a head and a worker node, as
separate raylets on this machine, 1 CPU each), the way a user runs it with --ray-address.

One cluster, two runs of the same config into two run folders: first with the head node
alone (build and split: the 1-node reference), then with a worker node added (build, split
and train-motion on Ray Train). The build of the 2-node run must have had its actors on both
nodes (the run's per-node counts: its three half-CPU actors cannot fit on one 1-CPU node),
the motion trainer must have run as a Ray Train worker on the cluster, and the two stores
must hold the same clip ids, kept and rejected. The run stops after train-motion: the video
trainer goes through the same launcher (pipelines/train.py), and evaluation and audit do not
use Ray (the kill test in test_run.py runs them). 8m17s on the 2-core box at a load average of 12-25
(1-node build 137 s, then the 2-node build 46 s: not a scaling figure, the first build also
started Ray Data's helper actors; benchmarks/scaling.py measures that).
"""

from __future__ import annotations

import json
import shutil
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
"""


def _add_node(cluster, tries: int = 3) -> None:
    """A raylet has a fixed 30 s to register with the GCS (ray/_private/node.py), which a
    loaded machine can miss: try again (what a user would do) before failing."""
    for attempt in range(tries):
        try:
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            return
        except Exception:
            if attempt == tries - 1:
                raise


def _cluster_with_head():
    from ray.cluster_utils import Cluster

    cluster = Cluster()
    _add_node(cluster)  # the first node is the head
    return cluster


@pytest.mark.slow
def test_mentor_run_on_a_two_node_cluster_uses_both_nodes_and_makes_the_one_node_clip_set(tmp_path, synthetic_store):
    import ray

    from mentor.store import Store, verify_store
    from mentor.testmedia import make_talking_clip

    make_talking_clip(tmp_path / "src" / "talk.mp4", seconds=4.0, size=256, seed=3)
    cfg = parse_config(CONFIG.format(root=tmp_path), "cluster.yaml", str(tmp_path))
    one, two = tmp_path / "one-node", tmp_path / "two-nodes"
    for run_dir in (one, two):  # 6 clips to train on; the build adds the real one
        shutil.copytree(synthetic_store, run_dir / "store")

    if ray.is_initialized():  # an earlier test's local Ray: this test connects to its own cluster
        ray.shutdown()
    cluster = _cluster_with_head()
    try:
        one_summary = run_mod.run(cfg, out=one, ray_address=cluster.address, progress=False, stop_after="split")
        _add_node(cluster)
        summary = run_mod.run(cfg, out=two, ray_address=cluster.address, progress=False, stop_after="train-motion")
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()

    steps = {s["step"]: s for s in summary.steps}
    assert [s["status"] for s in summary.steps] == ["done now"] * 3, summary.render()
    assert len(nodes) == 2
    build_nodes = steps["build"].get("ray_nodes", {})
    assert set(build_nodes) == nodes, (build_nodes, nodes)  # the build's actors ran on both nodes
    assert sum(build_nodes.values()) >= 3  # 2 filter actors + 1 annotate actor
    one_nodes = {s["step"]: set(s.get("ray_nodes", {})) for s in one_summary.steps}
    assert len(one_nodes["build"]) == 1 and one_nodes["build"] < nodes  # the 1-node run: the head alone
    assert set(steps["train-motion"].get("ray_nodes", {})) <= nodes  # a Ray Train worker on the cluster
    assert steps["train-motion"].get("ray_nodes"), steps["train-motion"]
    marker = json.loads((two / "steps" / "build.done").read_text())
    assert set(marker["result"]["ray_nodes"]) == nodes  # the marker keeps where the build ran

    for run_dir in (one, two):
        assert verify_store(run_dir / "store") == []
    s1, s2 = Store(one / "store"), Store(two / "store")
    assert sorted(s1.clips()["clip_id"]) == sorted(s2.clips()["clip_id"])
    assert sorted(s1.rejected()["clip_id"]) == sorted(s2.rejected()["clip_id"])
    made = [t for t in (s2.clips(), s2.rejected()) if "source_uri" in t]
    assert sum(t["source_uri"].str.endswith("talk.mp4").sum() for t in made) >= 1  # built, not only copied
    assert json.loads((two / "runs" / "motion" / "result.json").read_text())["step"] == 4
