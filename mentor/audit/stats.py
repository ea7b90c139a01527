"""The audit's numbers, from the index tables alone (Store.clips() / Store.rejected()).

Every function takes plain DataFrames and returns a DataFrame, so each table is also a
CSV. Group columns hold perceived attributes (automatic estimates); a missing value is the
group "unknown", which is shown but never flagged.
"""

from __future__ import annotations

import itertools
from statistics import NormalDist

import numpy as np
import pandas as pd

from mentor.audit.labels import label
from mentor.rejections import group_rejections, rejection_columns

UNKNOWN = "unknown"
_ORDER = {"light": 0, "medium": 1, "dark": 2}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, float(centre - half))  # exact ends, not rounding noise
    hi = 1.0 if k == n else min(1.0, float(centre + half))
    return lo, hi


def _label(v) -> str:
    """Group label of one value: "5.0" -> "5", missing -> "unknown"."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return UNKNOWN
    s = str(v)
    try:
        f = float(s)
        if np.isfinite(f) and f == int(f):
            return str(int(f))
    except ValueError:
        pass
    return s if s not in ("", "None", "nan") else UNKNOWN


def group_values(df: pd.DataFrame, col: str) -> pd.Series:
    """The group label of every row for column `col` (all "unknown" if the column is absent)."""
    if col not in df.columns:
        return pd.Series(UNKNOWN, index=df.index)
    return df[col].map(_label)


def sort_groups(labels) -> list[str]:
    """light/medium/dark first, numbers by value, then words; "unknown" last."""
    def key(g: str):
        if g == UNKNOWN:
            return (3, 0.0, g)
        if g in _ORDER:
            return (0, float(_ORDER[g]), g)
        try:
            return (1, float(g), g)
        except ValueError:
            return (2, 0.0, g)
    return sorted(set(labels), key=key)


def numeric(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(np.nan, index=df.index)


def identities(df: pd.DataFrame) -> pd.Series:
    out = pd.Series(np.nan, index=df.index, dtype=object)
    for col in ("identity", "source_id", "clip_id"):
        if col in df.columns:
            out = out.where(out.notna(), df[col])
    return out.astype(str)


def group_table(clips: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per group of `col`: clips, hours, identities, share of clips and of hours."""
    g = group_values(clips, col)
    df = pd.DataFrame({"group": g, "hours": numeric(clips, "duration").fillna(0) / 3600, "identity": identities(clips)})
    out = df.groupby("group").agg(clips=("hours", "size"), hours=("hours", "sum"), identities=("identity", "nunique"))
    out = out.reindex(sort_groups(out.index)).reset_index()
    out.insert(0, "column", col)
    out["share_clips"] = out["clips"] / max(out["clips"].sum(), 1)
    out["share_hours"] = out["hours"] / out["hours"].sum() if out["hours"].sum() > 0 else 0.0
    return out


def combination_table(clips: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Clips, hours and identities per combination of the groups of `cols` (every pair,
    and all of them together when more than two)."""
    sets = [list(p) for p in itertools.combinations(cols, 2)]
    if len(cols) > 2:
        sets.append(list(cols))
    frames = []
    hours = numeric(clips, "duration").fillna(0) / 3600
    ident = identities(clips)
    for combo in sets:
        df = pd.DataFrame({c: group_values(clips, c) for c in combo})
        df["hours"], df["identity"] = hours, ident
        t = df.groupby(combo).agg(clips=("hours", "size"), hours=("hours", "sum"), identities=("identity", "nunique"))
        t = t.reset_index()
        t.insert(0, "columns", " x ".join(combo))
        t.insert(1, "combination", t[combo].astype(str).agg(" | ".join, axis=1))
        t["share_hours"] = t["hours"] / t["hours"].sum() if t["hours"].sum() > 0 else 0.0
        frames.append(t[["columns", "combination", "clips", "hours", "identities", "share_hours"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["columns", "combination", "clips", "hours", "identities", "share_hours"])


def is_numeric_column(df: pd.DataFrame, col: str) -> bool:
    if col not in df.columns or df[col].notna().sum() == 0:
        return False
    return numeric(df, col).notna().sum() >= 0.9 * df[col].notna().sum()


def spread_table(clips: pd.DataFrame, col: str, value_cols: list[str]) -> pd.DataFrame:
    """Per group of `col` and numeric column: n, mean, std, p10, median, p90."""
    g = group_values(clips, col)
    rows = []
    for vc in value_cols:
        v = numeric(clips, vc)
        for group in sort_groups(g):
            x = v[(g == group) & v.notna()].to_numpy(float)
            rows.append({"column": col, "group": group, "value": vc, "n": len(x),
                         "mean": float(x.mean()) if len(x) else np.nan,
                         "std": float(x.std(ddof=1)) if len(x) > 1 else np.nan,
                         "p10": float(np.percentile(x, 10)) if len(x) else np.nan,
                         "median": float(np.median(x)) if len(x) else np.nan,
                         "p90": float(np.percentile(x, 90)) if len(x) else np.nan})
    return pd.DataFrame(rows, columns=["column", "group", "value", "n", "mean", "std", "p10", "median", "p90"])


def category_table(clips: pd.DataFrame, col: str, cat_col: str) -> pd.DataFrame:
    """Per group of `col` and value of the categorical `cat_col` (a language, a framing):
    clips, hours and the share of the group's hours."""
    df = pd.DataFrame({"group": group_values(clips, col), "category": group_values(clips, cat_col),
                       "hours": numeric(clips, "duration").fillna(0) / 3600})
    t = df.groupby(["group", "category"]).agg(clips=("hours", "size"), hours=("hours", "sum")).reset_index()
    total = t.groupby("group")["hours"].transform("sum")
    t["share_of_group"] = np.where(total > 0, t["hours"] / total.where(total > 0, 1), 0.0)
    t.insert(0, "column", col)
    t.insert(2, "of", cat_col)
    return t


def reason_counts(rejected: pd.DataFrame) -> pd.DataFrame:
    """Rejected clips per reason, "stage: code" (mentor.rejections.group_rejections, the same
    grouping as the build summary and `mentor info`): reason, stage, code, clips, the range
    of measured values and the limit."""
    return group_rejections(rejected)


def reasons(rejected: pd.DataFrame) -> pd.Series:
    """Each rejected row's reason, "stage: code" (stores from before codes: see
    mentor.rejections.rejection_columns)."""
    if not len(rejected):
        return pd.Series([], dtype=object)
    df = rejection_columns(rejected)
    if "reject_code" not in df.columns:
        return pd.Series(UNKNOWN, index=rejected.index)
    return (df["reject_stage"].fillna(UNKNOWN).astype(str) + ": " + df["reject_code"].fillna(UNKNOWN).astype(str))


def _all_clips(kept: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    k = kept.assign(_rejected=False, _stage=None)
    r = rejected.assign(_rejected=True, _stage=rejected.get("reject_stage", pd.Series(UNKNOWN, index=rejected.index)))
    return pd.concat([k, r], ignore_index=True, sort=False)


def rejection_table(kept: pd.DataFrame, rejected: pd.DataFrame, col: str, confidence: float = 0.95) -> pd.DataFrame:
    """Rejection rate per group of `col`, overall (stage "all") and per rejecting stage when
    more than one stage rejected clips: total clips, rejected, rate and its Wilson interval."""
    allc = _all_clips(kept, rejected)
    g = group_values(allc, col)
    per_stage = sorted({str(s) for s in allc.loc[allc["_rejected"], "_stage"].dropna()})
    stages = ["all"] + (per_stage if len(per_stage) > 1 else [])  # one stage: the same rows as "all"
    rows = []
    for stage in stages:
        hit = allc["_rejected"] if stage == "all" else allc["_stage"].astype(str).eq(stage) & allc["_rejected"]
        for group in sort_groups(g):
            m = g == group
            n, k = int(m.sum()), int((hit & m).sum())
            lo, hi = wilson_interval(k, n, confidence)
            rows.append({"column": col, "stage": stage, "group": group, "total": n, "rejected": k,
                         "rate": k / n if n else np.nan, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["column", "stage", "group", "total", "rejected", "rate", "ci_low", "ci_high"])


def reason_table(rejected: pd.DataFrame, col: str) -> pd.DataFrame:
    """Rejected clips per reason ("stage: code") and group of `col`."""
    if not len(rejected):
        return pd.DataFrame(columns=["column", "reason", "group", "clips"])
    df = pd.DataFrame({"reason": reasons(rejected), "group": group_values(rejected, col)})
    t = df.groupby(["reason", "group"]).size().rename("clips").reset_index()
    t.insert(0, "column", col)
    return t.sort_values(["reason", "clips"], ascending=[True, False], ignore_index=True)


def _who(stage: str) -> str:
    return "all filters together" if stage == "all" else f"stage {stage}"


def _who_rejects(stage: str) -> str:
    return "all filters together reject" if stage == "all" else f"stage {stage} rejects"


def rejection_flags(table: pd.DataFrame, alpha: float = 0.05, min_clips: int = 10) -> list[dict]:
    """Flags where a filter rejects one group more often than another: for each stage, every
    pair of known groups (>= min_clips clips each) whose Wilson intervals do not overlap, and a
    chi-square test of rejection against group (p < alpha)."""
    from scipy.stats import chi2_contingency

    flags = []
    for (col, stage), t in table.groupby(["column", "stage"], sort=False):
        t = t[(t["group"] != UNKNOWN) & (t["total"] >= min_clips)]
        if len(t) < 2:
            continue
        for (_, a), (_, b) in itertools.combinations(t.iterrows(), 2):
            if a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"]:
                lo, hi = (a, b) if a["rate"] < b["rate"] else (b, a)
                flags.append({
                    "kind": "rejection_rate", "column": col, "stage": stage, "groups": [hi["group"], lo["group"]],
                    "message": (f"{label(col)}: {_who_rejects(stage)} {hi['group']} clips more often "
                                f"({hi['rate']:.1%}, 95% CI {hi['ci_low']:.1%}-{hi['ci_high']:.1%}) than {lo['group']} "
                                f"clips ({lo['rate']:.1%}, CI {lo['ci_low']:.1%}-{lo['ci_high']:.1%}): the intervals "
                                "do not overlap")})
        counts = np.stack([t["rejected"].to_numpy(), (t["total"] - t["rejected"]).to_numpy()], axis=1)
        if (counts.sum(0) > 0).all():
            chi2, p, dof, _ = chi2_contingency(counts)
            if p < alpha:
                flags.append({"kind": "rejection_chi2", "column": col, "stage": stage, "groups": list(t["group"]),
                              "p_value": float(p), "chi2": float(chi2),
                              "message": (f"{label(col)}: the rejection rate ({_who(stage)}) depends on the "
                                          f"group (chi-square {chi2:.1f}, dof {dof}, p = {p:.2g} < {alpha:g})")})
    return flags


def imbalance_flags(groups: pd.DataFrame, targets: dict[str, dict[str, float]], max_gap: float) -> pd.DataFrame:
    """Share of hours against the target share for every targeted group; `flag` is "under"
    or "over" where the gap exceeds `max_gap`, else ""."""
    rows = []
    for col, want in targets.items():
        t = groups[groups["column"] == col].set_index("group")
        for group, target in want.items():
            label = _label(group)
            share = float(t["share_hours"].get(label, 0.0)) if len(t) else 0.0
            gap = share - float(target)
            flag = "under" if gap < -max_gap else "over" if gap > max_gap else ""
            rows.append({"column": col, "group": label, "target": float(target), "share_hours": share,
                         "gap": gap, "flag": flag})
    return pd.DataFrame(rows, columns=["column", "group", "target", "share_hours", "gap", "flag"])


def compare_groups(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    """Two group tables side by side: clips, hours, identities and shares of each, and the
    difference in share of hours (b - a)."""
    keys = ["column", "group"]
    cols = ["clips", "hours", "identities", "share_hours"]
    m = a[keys + cols].merge(b[keys + cols], on=keys, how="outer", suffixes=(f" {names[0]}", f" {names[1]}"))
    for c in cols:
        for n in names:
            m[f"{c} {n}"] = m[f"{c} {n}"].fillna(0)
    m["share_gap"] = m[f"share_hours {names[1]}"] - m[f"share_hours {names[0]}"]
    return m
