"""Identity-disjoint train / val / test splits, stratified by perceived attribute group.

`assign_splits` works on the index table alone (Store.clips()):

1. Identity: the "identity" column, else the source id (one video = one person).
2. Cap: an identity's clips beyond `max_hours_per_identity` (in a seeded order) get the
   split "excluded", so no one person dominates; the rest of that identity stays.
3. Strata: each identity gets the duration-weighted most common value of each
   `stratify_by` column over its clips (missing -> "unknown"); the tuple is its stratum.
4. Within each stratum, identities in a seeded random order each go to the split furthest
   below its target hours (share x the stratum's hours). So every split, the test split
   included, has about the same mix of groups as the whole, and about its target share of
   hours; a person is never in two splits.

The same clips and seed give the same splits whatever the row order.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from mentor.config import SplitConfig

log = logging.getLogger(__name__)

EXCLUDED = "excluded"
UNKNOWN = "unknown"


def identity_of(clips: pd.DataFrame) -> pd.Series:
    """The identity of each clip: "identity", else "source_id", else "clip_id"."""
    out = pd.Series(np.nan, index=clips.index, dtype=object)
    for col in ("identity", "source_id", "clip_id"):
        if col in clips.columns:
            out = out.where(out.notna(), clips[col])
    if out.isna().any():
        raise ValueError("clips need an 'identity', 'source_id' or 'clip_id' column to tell people apart")
    return out.astype(str)


def _order_key(seed: int, text: str) -> str:
    return hashlib.sha1(f"{seed}|{text}".encode()).hexdigest()


def _cap(clips: pd.DataFrame, ident: pd.Series, seconds: pd.Series, cap_hours: float | None, seed: int) -> pd.Series:
    """True for clips dropped by the per-identity cap (in a seeded order within each identity)."""
    over = pd.Series(False, index=clips.index)
    if cap_hours is None:
        return over
    names = clips["clip_id"].astype(str) if "clip_id" in clips.columns else pd.Series(clips.index.astype(str), index=clips.index)
    key = names.map(lambda c: _order_key(seed, c))
    order = pd.DataFrame({"ident": ident, "key": key, "sec": seconds}).sort_values(["ident", "key"])
    cum = order.groupby("ident")["sec"].cumsum()
    over.loc[cum.index] = (cum > cap_hours * 3600.0 + 1e-6).to_numpy()
    return over


def _strata(clips: pd.DataFrame, ident: pd.Series, seconds: pd.Series, columns: list[str]) -> pd.Series:
    """Stratum label per identity: the duration-weighted mode of each column, joined by '|'."""
    parts = []
    for col in columns:
        values = clips[col].astype(object).where(clips[col].notna(), UNKNOWN).astype(str)
        w = pd.DataFrame({"ident": ident, "v": values, "sec": seconds}).groupby(["ident", "v"])["sec"].sum()
        w = w.reset_index().sort_values(["ident", "sec", "v"], ascending=[True, False, True])
        parts.append(w.drop_duplicates("ident").set_index("ident")["v"])
    if not parts:
        return pd.Series("all", index=pd.Index(sorted(ident.unique())))
    out = parts[0]
    for p in parts[1:]:
        out = out + "|" + p.reindex(out.index)
    return out


def assign_splits(clips: pd.DataFrame, cfg: SplitConfig | None = None) -> pd.Series:
    """Split name per clip (index of `clips`): one of cfg.shares' keys, or "excluded" for
    clips over the per-identity hours cap. Needs "duration" (seconds) and an identity
    column (see `identity_of`); `cfg.stratify_by` columns missing from `clips` are ignored
    with a warning."""
    cfg = cfg or SplitConfig()
    if "duration" not in clips.columns:
        raise ValueError("clips need a 'duration' column (seconds)")
    if not len(clips):
        return pd.Series([], index=clips.index, dtype=object, name="split")
    ident = identity_of(clips)
    seconds = pd.to_numeric(clips["duration"], errors="coerce").fillna(0.0).clip(lower=0.0)
    columns = [c for c in cfg.stratify_by if c in clips.columns]
    missing = [c for c in cfg.stratify_by if c not in clips.columns]
    if missing:
        log.warning("split: stratify_by columns %s are not in the index (annotate attributes first); "
                    "splitting without them", missing)
    excluded = _cap(clips, ident, seconds, cfg.max_hours_per_identity, cfg.seed)
    kept = ~excluded
    hours = seconds[kept].groupby(ident[kept]).sum() / 3600.0
    strata = _strata(clips[kept], ident[kept], seconds[kept], columns).reindex(hours.index)
    names = list(cfg.shares)
    shares = np.array([cfg.shares[n] for n in names], float)
    chosen: dict[str, str] = {}
    for stratum in sorted(strata.unique()):
        members = sorted(strata.index[strata == stratum])
        rng = np.random.default_rng([cfg.seed, int(_order_key(0, stratum)[:8], 16)])
        members = [members[i] for i in rng.permutation(len(members))]
        target = shares * float(hours.loc[members].sum())
        assigned = np.zeros(len(names))
        for person in members:
            k = int(np.argmax(target - assigned))  # ties go to the first split named
            chosen[person] = names[k]
            assigned[k] += hours.loc[person]
    split = ident.map(chosen).where(kept, EXCLUDED)
    split = split.fillna(EXCLUDED)  # an identity whose every clip is over the cap
    log.info("split: %s", split.value_counts().to_dict())
    return split.rename("split")


def split_summary(clips: pd.DataFrame, split: pd.Series, by: list[str] | None = None) -> pd.DataFrame:
    """Hours, clips and identities per split (and per value of the `by` columns), with each
    row's share of its split's hours."""
    df = pd.DataFrame({"split": split, "identity": identity_of(clips),
                       "hours": pd.to_numeric(clips["duration"], errors="coerce").fillna(0) / 3600.0})
    keys = ["split"]
    for col in by or []:
        if col in clips.columns:
            df[col] = clips[col].astype(object).where(clips[col].notna(), UNKNOWN).astype(str)
            keys.append(col)
    out = df.groupby(keys).agg(hours=("hours", "sum"), clips=("hours", "size"), identities=("identity", "nunique"))
    out = out.reset_index()
    out["share_of_split"] = out["hours"] / out.groupby("split")["hours"].transform("sum")
    return out
