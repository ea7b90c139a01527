"""The audit's figures as PNG bytes (matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mentor.audit.stats import group_values, numeric, sort_groups

COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def group_shares(tables: list[tuple[str, pd.DataFrame]], title: str, targets: dict[str, float] | None = None) -> bytes:
    """Bars of the share of hours per group, one bar set per store; targets as black ticks.
    tables: (store name, group table of one column)."""
    groups = sort_groups(g for _, t in tables for g in t["group"])
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    width = 0.8 / len(tables)
    for i, (name, t) in enumerate(tables):
        share = t.set_index("group")["share_hours"].reindex(groups).fillna(0).to_numpy()
        clips = t.set_index("group")["clips"].reindex(groups).fillna(0).astype(int).to_numpy()
        bars = ax.bar(x + (i - (len(tables) - 1) / 2) * width, share, width, label=name, color=COLOURS[i % len(COLOURS)])
        for b, n in zip(bars, clips):
            ax.annotate(str(n), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=7)
    if targets:
        for j, g in enumerate(groups):
            if g in targets:
                ax.hlines(targets[g], j - 0.45, j + 0.45, colors="black", linewidth=2,
                          label="target" if j == min(i for i, g2 in enumerate(groups) if g2 in targets) else None)
    ax.set_xticks(x, groups, rotation=30 if len(groups) > 5 else 0)
    ax.set_ylabel("share of hours")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def rejection_rates(table: pd.DataFrame, title: str) -> bytes:
    """Rejection rate per group with Wilson intervals, one panel per stage (all first, at most 4)."""
    stages = list(dict.fromkeys(table["stage"]))[:4]
    fig = Figure(figsize=(3.2 * len(stages) + 0.4, 3.0))
    for i, stage in enumerate(stages):
        ax = fig.add_subplot(1, len(stages), i + 1)
        t = table[table["stage"] == stage]
        x = np.arange(len(t))
        rate = t["rate"].fillna(0).to_numpy()
        err = np.stack([rate - t["ci_low"].to_numpy(), t["ci_high"].to_numpy() - rate])
        ax.bar(x, rate, color=COLOURS[0], alpha=0.8)
        ax.errorbar(x, rate, yerr=np.clip(err, 0, None), fmt="none", ecolor="black", capsize=4)
        ax.set_xticks(x, list(t["group"]), rotation=30 if len(t) > 4 else 0, fontsize=8)
        ax.set_ylim(0, min(1.0, max(0.1, float(t["ci_high"].max()) * 1.15)))
        ax.set_title("rejected by any stage" if stage == "all" else f"rejected by: {stage}", fontsize=9)
        if i == 0:
            ax.set_ylabel("rejection rate (95% CI)")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def histogram(values: pd.Series, title: str, xlabel: str, lines: dict[str, float] | None = None) -> bytes:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    fig = Figure(figsize=(5.0, 2.8))
    ax = fig.add_subplot()
    ax.hist(v, bins=min(40, max(5, len(v) // 5)), color=COLOURS[0], alpha=0.85)
    for name, x in (lines or {}).items():
        ax.axvline(x, color="black", linestyle="--", linewidth=1)
        ax.annotate(name, (x, ax.get_ylim()[1] * 0.5), fontsize=7, rotation=90, ha="right", va="center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def spread(clips: pd.DataFrame, col: str, value_cols: list[str], labels: dict[str, str]) -> bytes:
    """Box plots of each numeric column per group of `col`."""
    g = group_values(clips, col)
    groups = sort_groups(g)
    fig = Figure(figsize=(3.1 * len(value_cols) + 0.4, 3.0))
    for i, vc in enumerate(value_cols):
        ax = fig.add_subplot(1, len(value_cols), i + 1)
        v = numeric(clips, vc)
        data = [v[(g == grp) & v.notna()].to_numpy(float) for grp in groups]
        keep = [j for j, d in enumerate(data) if len(d)]
        if keep:
            ax.boxplot([data[j] for j in keep], showfliers=False)
            ax.set_xticks(np.arange(1, len(keep) + 1), [groups[j] for j in keep], rotation=30 if len(keep) > 4 else 0,
                          fontsize=8)
        ax.set_title(labels.get(vc, vc), fontsize=9)
    fig.suptitle(f"spread per {labels.get(col, col)}", fontsize=10)
    return _png(fig)


def image_grid(rows: list[tuple[str, list[np.ndarray]]], title: str) -> bytes:
    """A grid of frames: one row per (label, frames HxWx3 uint8)."""
    ncols = max(len(f) for _, f in rows)
    fig = Figure(figsize=(1.7 * ncols + 0.8, 1.8 * len(rows) + 0.4))
    for r, (label, frames) in enumerate(rows):
        for c in range(ncols):
            ax = fig.add_subplot(len(rows), ncols, r * ncols + c + 1)
            ax.axis("off")
            if c < len(frames):
                ax.imshow(frames[c])
            if c == 0:
                ax.set_title(label, fontsize=8, loc="left")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def image_columns(columns: list[tuple[str, list[np.ndarray]]]) -> bytes:
    """Frames in columns, one column per (label, frames HxWx3 uint8), label on top."""
    nrows = max(len(f) for _, f in columns)
    ncols = len(columns)
    fig = Figure(figsize=(max(2.2 * ncols, 4.0), 2.2 * nrows + 0.3))
    for c, (name, frames) in enumerate(columns):
        for r in range(nrows):
            ax = fig.add_subplot(nrows, ncols, r * ncols + c + 1)
            ax.axis("off")
            if r < len(frames):
                ax.imshow(frames[r])
            if r == 0:
                ax.set_title(name, fontsize=10)
    return _png(fig)
