"""Curation graph scaling: the same build on a 1-node and a 2-node Ray cluster.

Each side starts its own cluster on this machine with `ray.cluster_utils.Cluster` (every
node a separate raylet with `--cpus-per-node` logical CPUs, 1 by default), in a fresh
Python process, and builds the same generated talking-head media with the curation half
of `mentor build` (annotators off, as in benchmarks/curation.py), its pools sized to the
cluster: `prepare_tasks` and `filter_actors` = nodes x CPUs per node, one clip per actor
thread. Ray's start, the added node's start and Ray Data's cluster-wide helper actors are
not counted (warmed by a trivial dataset first). It prints each side's video-seconds per
wall-second, the speed-up and the efficiency per added CPU:

    efficiency = (rate(2 nodes) / rate(1 node) - 1) / (CPUs added / CPUs of 1 node)

1.0 means the added node's CPUs did as much as the first node's. The baseline is the
1-node side, measured in the same run on the same media.

Limits of the figure on a small machine: both "nodes" share this machine's cores, disk and
memory bus, and the driver, the raylets and the ffmpeg processes the stages start run
beside the workers. On the 2-core CPU box the 2-node side (2 CPUs) has the whole machine
and the 1-node side (1 CPU) leaves a core for that overhead, so the measured efficiency is
a lower bound of a real cluster's, where each node brings its own cores; and other jobs on
a shared box move the figure (the load average is printed before and after).

    python benchmarks/scaling.py [--sources 8] [--seconds 15] [--cpus-per-node 1]

The last line is the efficiency per added CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.curation import CONFIG, make_media  # noqa: E402
from mentor.config import parse_config  # noqa: E402


def run_side(nodes: int, cpus_per_node: int, folder: Path, out: Path) -> dict:
    """In this (child) process: a cluster of `nodes` nodes, a warm-up, then the build."""
    import ray
    from ray.cluster_utils import Cluster

    from pipelines.curation import build

    cfg = parse_config(CONFIG.format(folder=folder), "benchmark", str(folder))
    width = nodes * cpus_per_node
    cfg.ray.prepare_tasks, cfg.ray.filter_actors, cfg.ray.filter_threads = width, width, 1
    t0 = time.perf_counter()
    cluster = Cluster()
    try:
        for _ in range(nodes):  # the first is the head
            add_node(cluster, cpus_per_node)
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        warm_up_ray_data()  # in this job: its actor ends with the dataset, so it holds no CPU after
        startup = time.perf_counter() - t0
        summary = build(cfg, out=out, ray_address=cluster.address, progress=False)
        alive = sum(1 for n in ray.nodes() if n["Alive"])
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"nodes": alive, "cpus": float(width), "seconds": summary.seconds_in, "wall": summary.wall_seconds,
            "startup": startup, "kept": summary.clips_kept, "rejected": sum(summary.clips_rejected.values())}


class _Identity:
    def __call__(self, batch):
        return batch


def warm_up_ray_data() -> None:
    """A trivial dataset through an actor pool: Ray Data's cluster-wide helper
    actors start (a long-running cluster has them already). Run in this job, not a separate
    one as benchmarks/curation.py does: a finished job's actor can outlive its driver for a
    while on a loaded machine, and on 1-CPU nodes its half CPU starves the build."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    # from_items: no read task (ray.data.range's read tasks ask a whole CPU, which a 1-CPU node
    # with the actor's half never has: the warm-up hung)
    (ray.data.from_items([{"x": i} for i in range(4)], override_num_blocks=4)
     .map_batches(_Identity, batch_size=1, num_cpus=0.5, compute=ray.data.ActorPoolStrategy(size=1))
     .materialize())


def add_node(cluster, cpus: int, tries: int = 3) -> None:
    """A raylet has a fixed 30 s to register with the GCS (ray/_private/node.py), which a
    loaded machine can miss: try again before failing."""
    for attempt in range(tries):
        try:
            cluster.add_node(num_cpus=cpus)
            cluster.wait_for_nodes()
            return
        except Exception as e:
            if attempt == tries - 1:
                raise
            print(f"a node did not start ({e}); trying again", file=sys.stderr)


def side_in_child(nodes: int, args: argparse.Namespace, folder: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--side", str(nodes), "--cpus-per-node", str(args.cpus_per_node),
           "--media", str(folder), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not result:
        sys.exit(f"the {nodes}-node run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(result[-1][len("RESULT "):])


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--cpus-per-node", type=int, default=1)
    ap.add_argument("--media", default=None, help="folder of sources (default: out/bench-media/<N>x<S>s)")
    ap.add_argument("--side", type=int, help=argparse.SUPPRESS)  # one side, in a child process
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cpus_per_node < 1:
        sys.exit(f"--cpus-per-node {args.cpus_per_node}: must be >= 1")
    folder = Path(args.media or f"out/bench-media/{args.sources}x{args.seconds:g}s").resolve()
    if args.side:
        print("RESULT " + json.dumps(run_side(args.side, args.cpus_per_node, folder, Path(args.out))))
        return

    make_media(folder, args.sources, args.seconds)
    print(f"machine: {os.cpu_count()} CPUs, load average {load()}; {args.sources} sources x {args.seconds:g} s; "
          f"nodes of {args.cpus_per_node} CPU(s) each (ray.cluster_utils, one machine)")
    tmp = Path(tempfile.mkdtemp(prefix="mentor-scaling-"))
    try:
        rates = {}
        for nodes in (1, 2):
            r = side_in_child(nodes, args, folder, tmp / f"n{nodes}")
            rates[nodes] = r["seconds"] / r["wall"]
            print(f"{r['nodes']} node(s), {r['cpus']:g} CPUs: {r['seconds']:.0f} s of video in {r['wall']:.1f} s -> "
                  f"{rates[nodes]:.2f} video-s per wall-s ({r['kept']} clips kept, {r['rejected']} rejected; "
                  f"cluster start + warm-up {r['startup']:.1f} s, not counted)")
        speedup = rates[2] / rates[1]
        added = 1.0  # the second node adds as many CPUs as the first has
        print(f"load average after: {load()}")
        print(f"speed-up 2 nodes / 1 node: {speedup:.2f}x")
        print(f"efficiency per added CPU: {(speedup - 1) / added:.2f} (1.0: the added node's CPUs do as much as "
              "the first node's; on a 2-core machine a lower bound, see the docstring)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
