"""`audit_store`: every number of the dataset audit, written as JSON, CSV and an HTML page.

Groups are perceived attributes (automatic estimates from images, never identities). The
audit reads the index (kept and rejected clips); only the example frames and landmark
strips read the shards.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mentor.audit import stats
from mentor.audit.labels import label
from mentor.config import AuditConfig

if TYPE_CHECKING:
    from mentor.store import Store

log = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """tables: name -> DataFrame (each also a CSV); flags: what needs a look (imbalance,
    rejection rates); summary: totals; paths of the page and the JSON."""

    tables: dict[str, pd.DataFrame]
    flags: list[dict[str, Any]]
    summary: dict[str, Any]
    html: Path | None = None
    json: Path | None = None
    notes: list[str] = field(default_factory=list)


def _present(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and df[col].notna().any()


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def compute_tables(clips: pd.DataFrame, rejected: pd.DataFrame, cfg: AuditConfig) -> AuditResult:
    """All audit tables and flags from the index tables of one store."""
    notes = []
    group_cols = [c for c in cfg.group_by if _present(clips, c) or _present(rejected, c)]
    for c in cfg.group_by:
        if c not in group_cols:
            notes.append(f"{label(c)} ({c}): not estimated in this store (no values), so not audited")
    spread_cols = [c for c in cfg.spread_columns if stats.is_numeric_column(clips, c)]
    spread_cols += [c for c in clips.columns if c.startswith("score.") and "expression" in c
                    and c not in spread_cols and stats.is_numeric_column(clips, c)]
    category_cols = [c for c in cfg.language_columns if _present(clips, c)]
    category_cols += [c for c in ("score.filter.body_visibility", "attr.body_visibility")
                      if _present(clips, c) and not stats.is_numeric_column(clips, c)]
    hours = stats.numeric(clips, "duration").fillna(0).sum() / 3600
    summary = {
        "clips": int(len(clips)), "hours": float(hours),
        "identities": int(stats.identities(clips).nunique()) if len(clips) else 0,
        "rejected_clips": int(len(rejected)),
        "rejected_hours": float(stats.numeric(rejected, "duration").fillna(0).sum() / 3600),
        "group_columns": group_cols, "spread_columns": spread_cols, "category_columns": category_cols,
    }
    t: dict[str, pd.DataFrame] = {}
    t["groups"] = _concat([stats.group_table(clips, c) for c in group_cols])
    t["combinations"] = stats.combination_table(clips, group_cols) if len(group_cols) > 1 else pd.DataFrame()
    t["spread"] = _concat([stats.spread_table(clips, c, spread_cols) for c in group_cols]) if spread_cols else pd.DataFrame()
    t["categories"] = _concat([stats.category_table(clips, g, c) for g in group_cols for c in category_cols])
    t["category_totals"] = _concat([stats.group_table(clips, c) for c in category_cols])
    t["rejections"] = _concat([stats.rejection_table(clips, rejected, c, cfg.confidence) for c in group_cols])
    t["reasons"] = stats.reason_counts(rejected)  # by stage and code, as the build summary and `mentor info`
    t["reasons_by_group"] = _concat([stats.reason_table(rejected, c) for c in group_cols])
    t["imbalance"] = stats.imbalance_flags(t["groups"], cfg.targets, cfg.max_share_gap) if len(t["groups"]) else \
        pd.DataFrame()
    flags: list[dict[str, Any]] = []
    if len(t["imbalance"]):
        for _, r in t["imbalance"][t["imbalance"]["flag"] != ""].iterrows():
            flags.append({"kind": "imbalance", "column": r["column"], "groups": [r["group"]],
                          "message": (f"{label(r['column'])} = {r['group']}: {r['share_hours']:.1%} of hours, target "
                                      f"{r['target']:.1%} ({r['flag']}-represented by {abs(r['gap']):.1%}, more "
                                      f"than {cfg.max_share_gap:.0%})")})
    if len(t["rejections"]):
        flags += stats.rejection_flags(t["rejections"], cfg.alpha, cfg.min_group_clips)
    if len(rejected) and group_cols:
        unknown = sum(stats.group_values(rejected, group_cols[0]) == stats.UNKNOWN)
        if unknown:
            notes.append(f"{unknown} of {len(rejected)} rejected clips have no {group_cols[0]} (rejected before "
                         "attributes were estimated); they count as 'unknown' and are never flagged")
    return AuditResult(tables=t, flags=flags, summary=summary, notes=notes)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def audit_store(store: "Store", cfg: AuditConfig | None, out_dir: str | Path, compare: "Store | None" = None,
                names: tuple[str, str] | None = None, frames: bool = True) -> AuditResult:
    """Audit one store (and optionally compare it with a second): writes `out_dir`/index.html,
    audit.json (every number) and tables/<name>.csv. Returns the tables and flags.

    `names` label the two stores (default: their folder names); `frames=False` skips
    reading example frames from the shards.
    """
    from mentor.audit.report import write_report

    cfg = cfg or AuditConfig()
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    names = names or (store.root.name, compare.root.name if compare is not None else "")
    if compare is not None and names[0] == names[1]:
        names = (f"{names[0]} (A)", f"{names[1]} (B)")
    clips, rejected = store.clips(), store.rejected()
    result = compute_tables(clips, rejected, cfg)
    other = None
    if compare is not None:
        other = compute_tables(compare.clips(), compare.rejected(), cfg)
        if len(result.tables["groups"]) or len(other.tables["groups"]):
            empty = pd.DataFrame(columns=["column", "group", "clips", "hours", "identities", "share_hours"])
            a = result.tables["groups"] if len(result.tables["groups"]) else empty
            b = other.tables["groups"] if len(other.tables["groups"]) else empty
            result.tables["compare"] = stats.compare_groups(a, b, names)
        result.summary["compare"] = {"name": names[1], **{k: other.summary[k] for k in
                                                          ("clips", "hours", "identities", "rejected_clips")}}
    result.summary["name"] = names[0]
    media = {}
    if frames:
        media = _media(store, clips, result.summary["group_columns"], cfg)
        if not media:
            result.notes.append("no clip video in the store: example frames and landmark strips are not shown")
    for name, table in result.tables.items():
        if len(table):
            table.to_csv(out / "tables" / f"{name}.csv", index=False)
    doc = {"about": "Perceived attributes are automatic estimates from images, not identities.",
           "summary": result.summary, "flags": result.flags, "notes": result.notes, "config": cfg.model_dump(),
           "tables": {k: v.to_dict(orient="records") for k, v in result.tables.items()}}
    result.json = out / "audit.json"
    result.json.write_text(json.dumps(_jsonable(doc), indent=1, default=str))
    result.html = write_report(result, cfg, out / "index.html", clips, other=other, other_clips=(
        compare.clips() if compare is not None else None), names=names, media=media)
    log.info("audit: %d clips, %d flags -> %s", len(clips), len(result.flags), result.html)
    return result


def _media(store: "Store", clips: pd.DataFrame, group_cols: list[str], cfg: AuditConfig) -> dict[str, Any]:
    """Example frames per group of the first group column, and landmark strips."""
    from mentor.audit.frames import clip_frames

    if not len(clips) or (cfg.example_clips == 0 and cfg.strip_clips == 0):
        return {}
    if "members" in clips.columns:  # the store writer's record of what each sample holds
        has_video = clips["members"].astype(str).str.contains('"mp4"')
        clips = clips[has_video]
        if not len(clips):
            return {}
    col = group_cols[0] if group_cols else None
    g = stats.group_values(clips, col) if col else pd.Series("all clips", index=clips.index)
    per_group = {grp: sorted(clips.loc[g == grp, "clip_id"])[:cfg.example_clips] for grp in stats.sort_groups(g)}
    strip_ids = sorted(clips["clip_id"])[:cfg.strip_clips]
    wanted = sorted({c for ids in per_group.values() for c in ids} | set(strip_ids))
    got = clip_frames(store, wanted, cfg.strip_frames)
    if not got:
        return {}
    return {"column": col, "examples": {grp: [got[c]["example"] for c in ids if c in got] for grp, ids in per_group.items()},
            "strips": {c: got[c]["strip"] for c in strip_ids if c in got}}
