"""`mentor build`: datasets.yaml -> discover -> fetch/probe/shots -> filter -> encode ->
annotate -> store, as one streaming Ray Data graph.

The steps themselves are mentor/curate (per source) and the stage list of
annotate/registry.py (per clip, checked before Ray starts); this module decides only how
they run: which pool, how many actors and threads, how many CPUs and GPUs each.

The driver is the only writer: it commits shards as clips arrive, and marks a source
finished once all of its clips are in. A killed run loses only the uncommitted part; a
re-run skips finished sources before Ray starts and drops already committed clips.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import Counter
from functools import partial
from pathlib import Path

from annotate.registry import STAGES, build_annotators
from mentor.config import Config
from mentor.contracts import Stage, check_graph, enabled_stages
from mentor.curate.prepare import GIVEN, source_stamp
from mentor.fetch import discover_sources
from mentor.record import ClipRecord, SourceRecord
from mentor.store import Store, StoreWriter
from mentor.store.fs import is_url, local_work_root
from mentor.store.layout import is_store
from pipelines import stages
from pipelines.progress import Progress, quiet_console
from pipelines.runtime import init_ray, quiet_ray_data
from pipelines.summary import BuildSummary

log = logging.getLogger(__name__)


def pending_sources(cfg: Config, out: Path) -> tuple[list[SourceRecord], dict[str, int], frozenset[str], int]:
    """Sources still to do, previous attempts per source, committed clip ids, and how
    many sources are already finished."""
    sources = discover_sources(cfg)
    attempts: dict[str, int] = {}
    done_ids: set[str] = set()
    finished: set[str] = set()
    if is_store(out):  # `out`: a folder, or a store's URL on object storage
        store = Store(out)
        for row in store.sources().to_dict("records"):
            attempts[row["source_id"]] = int(row["attempts"])
            final = row.get("final") if isinstance(row.get("final"), str) else ""  # absent in older parts
            if (row["status"] == "ok" or int(row["attempts"]) >= cfg.fetch.max_attempts
                    or (final and final == source_stamp(row["uri"]))):  # failed for good, file unchanged
                finished.add(row["source_id"])
        for table in (store.clips(), store.rejected()):
            if len(table):
                done_ids.update(table["clip_id"])
    todo = [s for s in sources if s.id not in finished]
    return todo, attempts, frozenset(done_ids), len(sources) - len(todo)


def plan(cfg: Config, stage_list: tuple[Stage, ...] = STAGES) -> tuple[tuple[Stage, ...], tuple[Stage, ...]]:
    """The enabled clip stages of each pool (curate, annotate), after checking the graph
    they make: raises mentor.contracts.GraphError naming the stage and the field when a
    stage reads what nothing before it writes."""
    enabled = enabled_stages(stage_list, cfg)
    check_graph(enabled, given=GIVEN, off=[s for s in stage_list if s not in enabled])
    return tuple(s for s in enabled if s.pool == "curate"), tuple(s for s in enabled if s.pool == "annotate")


def build_dataset(cfg: Config, todo: list[SourceRecord], out: Path, done_ids: frozenset[str],
                  stage_list: tuple[Stage, ...] = STAGES):
    """The Ray Data graph (lazy; runs as the driver iterates it)."""
    import ray.data

    curate, annotate = plan(cfg, stage_list)
    work = stages.work_dir(out)
    r = cfg.ray
    # Half a CPU each: on a small machine every stage gets a worker at once (Ray Data
    # would otherwise wait for whole free CPUs that the actors already hold).
    task_args = {"num_cpus": 0.5, "ray_remote_args_fn": partial(dict, max_retries=r.max_task_retries)}
    actor_args = {"num_cpus": 0.5, "ray_remote_args_fn": partial(dict, max_restarts=r.max_task_retries,
                                                                  max_task_retries=r.max_task_retries)}
    ds = ray.data.from_items([stages.source_row(s) for s in todo], override_num_blocks=max(1, len(todo)))
    # Fetching and shot detection are light next to the filter; a small pool of them keeps
    # new worker processes from crowding the model actors while those load.
    ds = ds.flat_map(stages.prepare_source, fn_kwargs={"cfg": cfg, "out": out, "done_clip_ids": done_ids},
                     compute=ray.data.TaskPoolStrategy(size=r.prepare_tasks), **task_args)
    # Threads of a stage share one actor process (one set of imports and model files).
    filter_cpus, annotate_cpus = actor_cpus(cfg, ray.cluster_resources().get("CPU", 1.0), stage_list)
    ds = ds.map_batches(stages.AnnotatorStage,
                        fn_constructor_args=(partial(build_annotators, stages=curate, work=work), cfg, r.filter_threads),
                        batch_size=1, batch_format="pandas", compute=stages.actor_pool(r.filter_actors, r.filter_threads),
                        **(actor_args | {"num_cpus": filter_cpus}))
    if annotate:
        gpu = {"num_gpus": r.annotate_gpus} if r.annotate_gpus else {}
        ds = ds.map_batches(stages.AnnotatorStage,
                            fn_constructor_args=(partial(build_annotators, stages=annotate, work=work), cfg,
                                                 r.annotate_threads),
                            batch_size=1, batch_format="pandas",
                            compute=stages.actor_pool(r.annotate_actors, r.annotate_threads),
                            **(actor_args | {"num_cpus": annotate_cpus}), **gpu)
    return ds


def actor_cpus(cfg: Config, cluster_cpus: float, stage_list: tuple[Stage, ...] = STAGES) -> tuple[float, float]:
    """CPUs each filter and annotate actor asks Ray for: half a CPU per thread (measured
    faster than half a CPU per actor: Ray Data then keeps every thread fed), scaled down
    when the pools would not fit beside the fetch/shot tasks, so that on a small machine
    every stage still gets its workers at once. The annotate share is 0 when no
    annotator is enabled (that stage is then not in the graph)."""
    r = cfg.ray
    filter_cpus = 0.5 * r.filter_threads
    annotate_cpus = 0.5 * r.annotate_threads if enabled_stages(stage_list, cfg, "annotate") else 0.0
    want = r.filter_actors * filter_cpus + r.annotate_actors * annotate_cpus
    room = max(cluster_cpus - 0.5 * r.prepare_tasks, 0.5)
    scale = min(1.0, room / want)
    # rounded down: rounded to nearest, 3 actors of 1/6 CPU came to 0.501 and left the fetch/shot
    # task's 0.5 no room on a 1-CPU node (the build hung; tests/pipelines/test_run_cluster.py)
    return math.floor(filter_cpus * scale * 1000) / 1000, math.floor(annotate_cpus * scale * 1000) / 1000


def build(cfg: Config, out: str | Path | None = None, ray_address: str | None = None,
          progress: bool = True, keep_work: bool = False, stage_list: tuple[Stage, ...] = STAGES) -> BuildSummary:
    """Run the curation graph into the store at `out` (default: the config's output).

    `stage_list`: the clip stages (default annotate.registry.STAGES; a test or a plug-in
    passes its own list, e.g. `with_stage(...)`). The graph is checked first, before
    anything is written or Ray starts.
    """
    # a store on object storage (s3://...): working files (cache, clips, logs) in a local folder
    url = str(out or cfg.output) if is_url(str(out or cfg.output)) else None
    out = local_work_root(url) if url else (Path(out) if out else cfg.resolve(cfg.output)).resolve()
    cfg = cfg.with_resolved_paths()
    plan(cfg, stage_list)
    t0 = time.perf_counter()
    summary = BuildSummary(store=url or str(out))
    writer = StoreWriter(url or out, cfg.store.shard_bytes,  # opens/resumes before any work
                         storage_options=cfg.store.storage_options or None)
    try:
        return _build(cfg, out, writer, summary, ray_address, progress, keep_work, stage_list, t0)
    finally:
        writer.close()  # commits what is pending and releases the store's lock, whatever raised


def _build(cfg: Config, out: Path, writer: StoreWriter, summary: BuildSummary, ray_address: str | None,
           progress: bool, keep_work: bool, stage_list: tuple[Stage, ...], t0: float) -> BuildSummary:
    todo, attempts, done_ids, finished = pending_sources(cfg, writer.root)
    summary.sources_skipped = finished
    if not todo:
        summary.wall_seconds = time.perf_counter() - t0
        summary.note("nothing to do: every source is in the store or failed for good "
                     "(`mentor info` lists the failures; a replaced file is tried again)")
        return summary
    # Library noise (MediaPipe, TFLite, Ray's notices and core lines) goes to a log in the
    # store, named in the summary; Ray's own processes start inside, so theirs does too.
    # With `mentor -v` (logging at INFO) nothing is redirected.
    log_file = out / "logs" / f"build-{time.strftime('%Y%m%d-%H%M%S')}.log"
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    summary.log_file = str(log_file) if quiet else ""
    with quiet_console(log_file, enabled=quiet) as console:
        summary.ray = init_ray(ray_address or cfg.ray.address, cfg.ray.num_cpus)
        quiet_ray_data()
        ds = build_dataset(cfg, todo, out, done_ids, stage_list)
        remaining: dict[str, int] = {}
        received: Counter[str] = Counter()
        show = Progress(len(todo), enabled=progress, stream=console)
        try:
            for row in ds.iter_rows():
                src = SourceRecord.model_validate_json(row["source"])
                if row["kind"] == "source":
                    status = "failed" if src.error else "ok"
                    writer.add_source(src, status, attempts=attempts.get(src.id, 0) + 1)
                    summary.add_source(src, status)
                    show.source_done(src, failed=bool(src.error))
                    continue
                rec = ClipRecord.from_row(row)
                writer.add(rec)
                summary.add_clip(rec)
                summary.clip_seconds.append(time.perf_counter() - t0)
                if summary.first_clip_seconds is None:
                    summary.first_clip_seconds = summary.clip_seconds[0]
                show.clip(rec)
                if not keep_work:
                    _remove_work_files(rec)
                remaining.setdefault(src.id, int(row["n_clips"]))
                received[src.id] += 1
                if received[src.id] == remaining[src.id]:
                    writer.add_source(src, "ok", attempts=attempts.get(src.id, 0) + 1, clips=received[src.id])
                    summary.add_source(src, "ok")
                    show.source_done(src, failed=False)
        finally:
            show.close()
            if quiet and summary.ray.startswith("local ray"):
                _append_worker_output(log_file)
    if not keep_work:
        shutil.rmtree(stages.work_dir(out), ignore_errors=True)
    summary.wall_seconds = time.perf_counter() - t0
    return summary


def _append_worker_output(log_file: Path, max_bytes: int = 1 << 20) -> None:
    """The local Ray's workers' own output (MediaPipe's protobuf AttributeError, TensorFlow
    Lite / XNNPACK and glog lines from the stage actors), which Ray writes to its session's
    worker-*.out/.err files and never to this process, appended to the build's log (the
    last `max_bytes` of each file): the store keeps it, /tmp/ray does not for long."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)  # no public API names the session's log folder
    if node is None:
        return
    with open(log_file, "a", errors="replace") as log:
        logs = Path(node.get_logs_dir_path())
        for path in sorted([*logs.glob("worker-*.out"), *logs.glob("worker-*.err")]):
            size = path.stat().st_size
            if not size:
                continue
            with open(path, "rb") as f:
                f.seek(max(0, size - max_bytes))
                log.write(f"\n--- Ray worker output: {path.name} ---\n")
                log.write(f.read().decode(errors="replace"))


def _remove_work_files(rec: ClipRecord) -> None:
    for kind in ("video", "audio"):
        if kind in rec.files:
            Path(rec.files[kind]).unlink(missing_ok=True)


__all__ = ["build", "build_dataset", "pending_sources"]
