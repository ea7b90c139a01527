"""`mentor annotate STORE`: run the clip annotators again on a finished store.

Works part by part: a part's clips are read from its shard (media extracted to a work
folder, no re-encoding), annotated on Ray, and written as a new part that supersedes
the old one; the old part's rejected and source rows are carried over unchanged. A
killed run leaves each part either old or new, never half.
"""

from __future__ import annotations

import shutil
import time
from functools import partial
from pathlib import Path

from annotate.registry import STAGES, build_annotators
from mentor.config import Config
from mentor.contracts import Stage, check_graph, enabled_stages, present
from mentor.record import ClipRecord
from mentor.store import Store, StoreWriter
from mentor.store.fs import is_url, local_work_root, store_root
from mentor.store.layout import table_rel
from pipelines import stages
from pipelines.runtime import init_ray, quiet_ray_data
from pipelines.summary import BuildSummary


def annotate_store(root: str | Path, cfg: Config, ray_address: str | None = None,
                   stage_list: tuple[Stage, ...] = STAGES) -> BuildSummary:
    """Run the enabled annotate-pool stages of `stage_list` again on every part of the
    store. The graph is checked first, against what a stored clip already carries (a
    stage may read what an earlier run wrote), before Ray starts or anything is written."""
    import ray.data

    # a store on object storage (s3://...): its media are extracted to a local work folder
    url = str(root) if is_url(str(root)) else None
    root = store_root(url) if url else Path(root).resolve()
    cfg = cfg.with_resolved_paths()
    annotate = enabled_stages(stage_list, cfg, "annotate")
    store = Store(root)
    summary = BuildSummary(store=str(root))
    t0 = time.perf_counter()
    parts = sorted(store.parts())
    work = (local_work_root(url) if url else root) / "_work" / "annotate"
    clips = store.clips()
    if len(clips):  # the graph against what the clips carry already (an earlier run's fields count)
        check_graph(annotate, given=present(next(iter(store.records(clips["clip_id"][:1].tolist(), media_dir=work)))))
        shutil.rmtree(work, ignore_errors=True)
    summary.ray = init_ray(ray_address or cfg.ray.address, cfg.ray.num_cpus)
    quiet_ray_data()
    writer = StoreWriter(root, shard_bytes=1 << 62)  # one new part per old part
    for n in parts:
        clips = store.clips()
        ids = clips.loc[clips["part"] == n, "clip_id"].tolist()
        records = list(store.records(ids, media_dir=work))
        rows = [r.to_row() | {"kind": "clip", "source": "", "n_clips": 0} for r in records]
        if rows:
            ds = ray.data.from_items(rows, override_num_blocks=len(rows))
            r = cfg.ray
            factory = partial(build_annotators, stages=annotate, work=work)
            ds = ds.map_batches(stages.AnnotatorStage, fn_constructor_args=(factory, cfg, r.annotate_threads),
                                batch_size=1, batch_format="pandas",
                                # half a CPU per thread, as in `mentor build`; it is the only stage here
                                num_cpus=min(0.5 * r.annotate_threads, ray.cluster_resources().get("CPU", 1.0)),
                                compute=stages.actor_pool(r.annotate_actors, r.annotate_threads))
            for row in ds.iter_rows():
                rec = ClipRecord.from_row(row)
                writer.add(rec)
                summary.add_clip(rec)
        for table in ("rejected", "sources"):
            if store.fs.exists(table_rel(table, n)):
                writer.carry(table, store.fs.read_table(table_rel(table, n)).to_pylist())
        writer.supersede(n)
        writer.commit()
        shutil.rmtree(work, ignore_errors=True)
    writer.close()
    summary.wall_seconds = time.perf_counter() - t0
    return summary
