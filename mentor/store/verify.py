"""Check a store against its index, and summarise what it holds."""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mentor.store.fs import StoreFS
from mentor.store.layout import TABLES, commit_rel, index_problems, part_of, shard_rel, table_rel
from mentor.rejections import group_rejections
from mentor.store.reader import Store


def verify_store(root: str | Path, checksums: bool = True, deep: bool = False,
                 storage_options: dict | None = None) -> list[str]:
    """Every problem found, as one line each; an empty list means the store is whole.

    Checks each committed part's files (present, size, sha256, table row counts), that
    every index table is readable and well-formed (columns, shard paths, keys), that each
    committed shard and the index rows of its part name exactly the same clips with the
    member sizes recorded (both ways: a deleted row or a deleted member is found), that no
    clip appears twice, and reports leftovers of a killed run. `deep` also decodes every
    member of every shard (video and audio to the last frame, records and arrays). The
    store may be a folder or a URL (s3://...): the same checks, through its filesystem.
    """
    store = Store(root, storage_options)
    fs = store.fs
    problems: list[str] = []
    parts = store.parts()
    tables: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    listed = {folder: set(fs.listdir(folder)) for folder in ("shards", *(f"index/{t}" for t in TABLES))}

    def exists(rel: str) -> bool:  # one listing per folder instead of a look-up per file
        folder, _, name = rel.rpartition("/")
        return name in listed[folder] if folder in listed else fs.exists(rel)

    for n, marker in sorted(parts.items()):
        for rel, info in marker.get("files", {}).items():
            if not exists(rel):
                problems.append(f"{rel}: missing (listed in {commit_rel(n)})")
                continue
            size = fs.size(rel) if "bytes" in info else None
            if "bytes" in info and size != info["bytes"]:
                problems.append(f"{rel}: {size} bytes, commit says {info['bytes']}")
            elif checksums and "sha256" in info and fs.sha256(rel) != info["sha256"]:
                problems.append(f"{rel}: sha256 differs from the commit marker (file changed or corrupt)")
        for table in TABLES:
            rel = table_rel(table, n)
            if not exists(rel):
                continue
            try:
                df = fs.read_table(rel).to_pandas()
            except (OSError, pa.ArrowException) as e:
                problems.append(f"{rel}: not a readable Parquet table ({str(e)[:160]})")
                continue
            bad = index_problems(df, table, rel)
            problems += bad
            rows = marker.get("files", {}).get(rel, {}).get("rows")
            if rows is not None and rows != len(df):
                problems.append(f"{rel}: {len(df)} rows, commit says {rows} (rows deleted or added)")
            if not bad:
                tables[table].append(df.assign(part=n))
    clips = pd.concat(tables["clips"], ignore_index=True) if tables["clips"] else pd.DataFrame(
        columns=["clip_id", "shard", "key", "members", "part"])
    shards = {(n, rel) for n, m in parts.items() for rel in m.get("files", {}) if rel.startswith("shards/")}
    for n, shard in sorted(shards | {(int(r.part), r.shard) for r in clips[["part", "shard"]].itertuples()}):
        if shard != shard_rel(n):
            problems.append(f"index of part {n} names {shard}, not its own shard {shard_rel(n)}")
            continue
        if not exists(shard):
            if (n, shard) not in shards:
                problems.append(f"{shard}: missing (named by the index of part {n})")
            continue  # else reported above
        try:
            found = _tar_members(fs, shard)
        except (OSError, tarfile.TarError) as e:
            problems.append(f"{shard}: unreadable tar ({e})")
            continue
        group = clips[(clips["part"] == n) & (clips["shard"] == shard)]
        expected = {row.key: json.loads(row.members) for row in group.itertuples()}
        for key in sorted(set(expected) - set(found)):
            problems.append(f"{shard}: clip {key} is in the index but not in the shard")
        for key in sorted(set(found) - set(expected)):
            problems.append(f"{shard}: clip {key} is in the shard but not in the index")
        for key in sorted(set(found) & set(expected)):
            if found[key] != expected[key]:
                problems.append(f"{shard}: clip {key} members {found[key]} != index {expected[key]}")
        if deep:
            problems += _decode_members(fs, shard, set(found) & set(expected))
    ids = pd.concat([clips["clip_id"], *(t["clip_id"] for t in tables["rejected"])])
    for cid, count in ids.value_counts().items():
        if count > 1:
            problems.append(f"clip {cid} appears {count} times in the index (should be exactly once)")
    for folder in ("shards", "index/clips", "index/rejected", "index/sources"):
        for name in sorted(listed[folder]):
            n = part_of(name)
            if n is None or n not in parts:
                problems.append(f"{folder}/{name}: uncommitted leftover of an interrupted run "
                                "(removed by the next `mentor build` on this store)")
    return problems


def _decode_members(fs: StoreFS, shard: str, keys: set[str]) -> list[str]:
    """Decode every member of the given clips: media to the end, records and arrays."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mentor-verify-") as tmp, fs.open(shard) as f, \
            tarfile.open(fileobj=f) as tf:
        current, files = None, {}
        for m in [*tf, None]:  # a clip's members are consecutive: one clip in memory at a time
            key, _, ext = m.name.partition(".") if m is not None else ("", "", "")
            if key != current and current in keys:
                problems += _decode_clip(shard, current, files, Path(tmp))
            if key != current:
                current, files = key, {}
            if m is not None and m.isfile() and key in keys:
                files[ext] = tf.extractfile(m).read()
    return problems


def _decode_clip(shard: str, key: str, files: dict[str, bytes], tmp: Path) -> list[str]:
    from mentor.media import MediaError, check_output, ff_path
    from mentor.record import ClipRecord

    try:
        rec = ClipRecord.from_json(files["json"], files.get("npz"))
    except Exception as e:  # pydantic, json, numpy: any of them means a broken member
        return [f"{shard}: clip {key}: record/arrays do not load ({type(e).__name__}: {str(e)[:120]})"]
    problems = []
    for ext in ("mp4", "flac", "wav"):
        if ext not in files:
            continue
        f = tmp / f"{key}.{ext}"
        f.write_bytes(files[ext])
        try:
            check_output(f, video=ext == "mp4", audio=ext != "mp4", duration=rec.duration)
            res = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", ff_path(f), "-f", "null", "-"],
                                 capture_output=True, text=True, timeout=600)
            if res.returncode != 0 or res.stderr.strip():
                raise MediaError(f"decoding failed: {res.stderr.strip()[:160] or 'ffmpeg failed'}")
        except (MediaError, OSError) as e:
            problems.append(f"{shard}: clip {key}.{ext} does not decode ({str(e).replace(str(f), '').strip(': ')[:200]})")
        finally:
            f.unlink(missing_ok=True)
    return problems


def _tar_members(fs: StoreFS, shard: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    # remotely, tar headers are read in small ranges: the members' bytes are skipped
    with fs.open(shard, block_size=256 << 10) as f, tarfile.open(fileobj=f) as tf:
        for m in tf:
            if m.isfile():
                key, _, ext = m.name.partition(".")
                out.setdefault(key, {})[ext] = m.size
    return out


def store_info(root: str | Path, storage_options: dict | None = None) -> dict:
    """What a store holds: clips, hours, identities, shards, rejections by reason."""
    store = Store(root, storage_options)
    clips, rejected, sources = store.clips(), store.rejected(), store.sources()
    groups = group_rejections(rejected)  # one row per (stage, code), as the build summary and the audit
    shards = [f"shards/{n}" for n in store.fs.listdir("shards") if n.endswith(".tar")]
    return {
        "store": str(store.root),
        "clips": int(len(clips)),
        "hours": round(float(clips["duration"].sum()) / 3600, 4) if len(clips) else 0.0,
        "identities": int(clips["identity"].nunique()) if len(clips) else 0,
        "shards": len(shards),
        "bytes": int(sum(store.fs.size(p) for p in shards)),
        "splits": clips["split"].fillna("unassigned").value_counts().to_dict() if len(clips) else {},
        "rejected": int(len(rejected)),
        "rejected_by_reason": {r: int(n) for r, n in zip(groups["reason"], groups["clips"])},
        "rejections": json.loads(groups.to_json(orient="records")),  # with measured value ranges
        "sources_ok": int((sources["status"] == "ok").sum()) if len(sources) else 0,
        "sources_failed": int((sources["status"] == "failed").sum()) if len(sources) else 0,
        "failed_sources": (sources[sources["status"] == "failed"][["uri", "error"]].to_dict("records") if len(sources) else []),
    }
