"""Rejections grouped by (stage, code): the one grouping used by the build summary
(pipelines/summary.py), `mentor info` (mentor.store.verify.store_info) and the audit
(mentor/audit).

A rejection's code is stable and holds no numbers, so three VAD rejections at 12 %, 25 %
and 5 % speech are one row, ("vad", "low_speech"), with count 3; the measured values
show as a range beside it. Rows of stores written before codes (schema 1.0) are read
from their text with `Rejection.from_text` (the stage, and code "legacy" unless the text
names one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from mentor.record import ClipRecord, Rejection

COLUMNS = ["reason", "stage", "code", "clips", "value_min", "value_max", "threshold", "example"]


def rejection_of(item: Any) -> Rejection | None:
    """The Rejection of a ClipRecord, a Rejection, an index row (dict / Series with
    reject_stage/reject_code/... or only the old `rejected` text), or a text."""
    if item is None:
        return None
    if isinstance(item, Rejection):
        return item
    if isinstance(item, ClipRecord):
        return item.rejection_info
    if isinstance(item, str):
        return Rejection.from_text(item) if item else None
    get = item.get
    stage, code, text = _cell(get("reject_stage")), _cell(get("reject_code")), _cell(get("rejected"))
    if stage is not None and code is not None:
        detail = str(text).split(":", 2)[2].strip() if text and str(text).count(":") >= 2 else ""
        return Rejection(stage=str(stage), code=str(code), detail=detail,
                         value=_float(get("reject_value")), threshold=_float(get("reject_threshold")))
    return Rejection.from_text(text) if text else None


def group_rejections(items: pd.DataFrame | Iterable[Any]) -> pd.DataFrame:
    """Rejections counted by (stage, code), most frequent first.

    items: the store's rejected index table (Store.rejected()), or ClipRecords /
    Rejections / index rows. Returns one row per (stage, code) with columns
    reason ("stage: code"), stage, code, clips, value_min, value_max (the measured values,
    NaN when the stage gives none), threshold (the limit when all agree, else NaN) and
    example (one detail text).
    """
    rows = items.to_dict("records") if isinstance(items, pd.DataFrame) else items
    found = [r for r in (rejection_of(x) for x in rows) if r is not None]
    if not found:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.DataFrame({"stage": [r.stage for r in found], "code": [r.code for r in found],
                       "value": [r.value for r in found], "threshold": [r.threshold for r in found],
                       "detail": [r.detail for r in found]})
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["threshold"] = pd.to_numeric(df["threshold"], errors="coerce")
    g = df.groupby(["stage", "code"], sort=False)
    out = g.agg(clips=("code", "size"), value_min=("value", "min"), value_max=("value", "max"),
                example=("detail", "first")).reset_index()
    thresholds = g["threshold"].agg(lambda s: s.iloc[0] if s.nunique(dropna=False) == 1 else float("nan"))
    out["threshold"] = thresholds.to_numpy()
    out.insert(0, "reason", out["stage"] + ": " + out["code"])
    return out.sort_values(["clips", "stage", "code"], ascending=[False, True, True], ignore_index=True)[COLUMNS]


def rejection_columns(df: pd.DataFrame) -> pd.DataFrame:
    """An index table with reject_stage and reject_code filled on every rejected row, also
    for rows of stores written before codes (read from their `rejected` text)."""
    if not len(df) or "rejected" not in df.columns:
        return df
    df = df.copy()
    for col in ("reject_stage", "reject_code"):
        if col not in df.columns:
            df[col] = None
    missing = df["rejected"].notna() & (df["reject_code"].isna() | df["reject_stage"].isna())
    if missing.any():
        parsed = [Rejection.from_text(t) for t in df.loc[missing, "rejected"]]
        df.loc[missing, "reject_stage"] = [r.stage for r in parsed]
        df.loc[missing, "reject_code"] = [r.code for r in parsed]
    return df


def render_rejections(table: pd.DataFrame, indent: str = "  ") -> list[str]:
    """Text lines of a group_rejections table: count, "stage: code", measured range and limit."""
    lines = []
    for r in table.itertuples():
        extra = ""
        if pd.notna(r.value_min):
            span = f"{r.value_min:g}" if r.value_min == r.value_max else f"{r.value_min:g}..{r.value_max:g}"
            extra = f"  (measured {span}" + (f", limit {r.threshold:g})" if pd.notna(r.threshold) else ")")
        elif r.example:
            extra = f"  (e.g. {r.example[:80]})"
        lines.append(f"{indent}{r.clips:5d}  {r.reason}{extra}")
    return lines


def _cell(v: Any) -> Any:
    return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v


def _float(v: Any) -> float | None:
    v = _cell(v)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None
