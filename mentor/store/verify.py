"""Check a store against its index, and summarise what it holds."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pandas as pd

from mentor.store.layout import commit_path, sha256_file
from mentor.store.reader import Store


def verify_store(root: str | Path, checksums: bool = True) -> list[str]:
    """Every problem found, as one line each; an empty list means the store is whole.

    Checks each committed part's files (present, size, sha256), that each shard holds
    exactly the clips its index rows name with the member sizes recorded, that no clip
    appears twice, and reports leftovers of a killed run.
    """
    store = Store(root)
    root = store.root
    problems: list[str] = []
    parts = store.parts()
    for n, marker in sorted(parts.items()):
        for rel, info in marker.get("files", {}).items():
            p = root / rel
            if not p.exists():
                problems.append(f"{rel}: missing (listed in {commit_path(root, n).relative_to(root)})")
                continue
            if "bytes" in info and p.stat().st_size != info["bytes"]:
                problems.append(f"{rel}: {p.stat().st_size} bytes, commit says {info['bytes']}")
            elif checksums and "sha256" in info and sha256_file(p) != info["sha256"]:
                problems.append(f"{rel}: sha256 differs from the commit marker (file changed or corrupt)")
    clips = store.clips()
    for shard, group in clips.groupby("shard") if len(clips) else []:
        path = root / shard
        if not path.exists():
            continue  # reported above
        try:
            found = _tar_members(path)
        except (OSError, tarfile.TarError) as e:
            problems.append(f"{shard}: unreadable tar ({e})")
            continue
        expected = {row.key: json.loads(row.members) for row in group.itertuples()}
        for key in sorted(set(expected) - set(found)):
            problems.append(f"{shard}: clip {key} is in the index but not in the shard")
        for key in sorted(set(found) - set(expected)):
            problems.append(f"{shard}: clip {key} is in the shard but not in the index")
        for key in sorted(set(found) & set(expected)):
            if found[key] != expected[key]:
                problems.append(f"{shard}: clip {key} members {found[key]} != index {expected[key]}")
    rejected = store.rejected()
    ids = pd.concat([clips["clip_id"], rejected["clip_id"]]) if len(rejected) else clips["clip_id"]
    for cid, count in ids.value_counts().items():
        if count > 1:
            problems.append(f"clip {cid} appears {count} times in the index (should be exactly once)")
    for folder in ("shards", "index/clips", "index/rejected", "index/sources"):
        for p in sorted((root / folder).glob("*")):
            try:
                n = int(p.name.split("-")[1].split(".")[0])
            except (IndexError, ValueError):
                n = -1
            if p.name.endswith(".tmp") or n not in parts:
                problems.append(f"{p.relative_to(root)}: uncommitted leftover of an interrupted run "
                                "(removed by the next `mentor build` on this store)")
    return problems


def _tar_members(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    with tarfile.open(path) as tf:
        for m in tf:
            if m.isfile():
                key, _, ext = m.name.partition(".")
                out.setdefault(key, {})[ext] = m.size
    return out


def store_info(root: str | Path) -> dict:
    """What a store holds: clips, hours, identities, shards, rejections by reason."""
    store = Store(root)
    clips, rejected, sources = store.clips(), store.rejected(), store.sources()
    reasons = rejected["rejected"].str.split(":").str[:2].str.join(":").str.strip() if len(rejected) else pd.Series([], dtype=str)
    shards = sorted(store.root.glob("shards/*.tar"))
    return {
        "store": str(store.root),
        "clips": int(len(clips)),
        "hours": round(float(clips["duration"].sum()) / 3600, 4) if len(clips) else 0.0,
        "identities": int(clips["identity"].nunique()) if len(clips) else 0,
        "shards": len(shards),
        "bytes": int(sum(p.stat().st_size for p in shards)),
        "splits": clips["split"].fillna("unassigned").value_counts().to_dict() if len(clips) else {},
        "rejected": int(len(rejected)),
        "rejected_by_reason": reasons.value_counts().to_dict(),
        "sources_ok": int((sources["status"] == "ok").sum()) if len(sources) else 0,
        "sources_failed": int((sources["status"] == "failed").sum()) if len(sources) else 0,
        "failed_sources": (sources[sources["status"] == "failed"][["uri", "error"]].to_dict("records") if len(sources) else []),
    }
