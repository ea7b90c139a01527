"""The model evaluation's static HTML page, in the dataset audit's look (its CSS, tables,
embedded PNGs and image-count script, mentor/audit/report.py and plots.py).

One self-contained file beside eval.json and tables/*.csv, which hold every number on it.
Perceived groups are labelled as perceived, automatic estimates.
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mentor.audit import plots
from mentor.audit.labels import PERCEIVED, label
from mentor.audit.report import write_page
from mentor.audit.report import _img as img_tag
from mentor.audit.stats import sort_groups

if TYPE_CHECKING:
    from models.evaluate import EvalConfig, MethodResult

EXTRA_CSS = """
.ci { color: #666; font-size: 12px; } .better { color: #555; font-size: 12px; }
details { margin: 6px 0; } summary { cursor: pointer; color: #333; }
"""


def col_label(col: str) -> str:
    """Readable name of a group column or of a combination "a x b"."""
    return " x ".join(label(c) for c in col.split(" x "))


def _fmt(v: Any, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if not np.isfinite(f):
        return "&ndash;"
    return f"{f:.{digits}g}" if abs(f) < 1000 else f"{f:,.0f}"


def _labels(metrics: dict) -> dict[str, str]:
    return {m: v["label"] if isinstance(v, dict) else v[2] for m, v in metrics.items()}


def _panels(n: int, panel: tuple[float, float], top: float) -> tuple[Figure, list]:
    """A figure of n panels, four to a row, each panel (width, height) inches; `top`: inches
    above them for a title. Returns the figure and its axes in reading order."""
    ncols = min(4, n)
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(panel[0] * ncols + 0.3, panel[1] * nrows + top))
    return fig, [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]


def group_metric_plot(groups: list[tuple[str, pd.DataFrame]], column: str, metrics: list[str],
                      labels: dict[str, str]) -> bytes:
    """Mean per group with its interval, one panel per metric, one bar set per method.
    groups: (method name, groups table rows of one column)."""
    metrics = metrics[:8]
    fig, axes = _panels(len(metrics), (3.3, 2.7), 0.5)
    for i, (m, ax) in enumerate(zip(metrics, axes)):
        names = sort_groups(g for _, t in groups for g in t.loc[t["metric"] == m, "group"])
        x = np.arange(len(names))
        width = 0.8 / max(len(groups), 1)
        for j, (method, t) in enumerate(groups):
            t = t[t["metric"] == m].set_index("group").reindex(names)
            mean = t["mean"].to_numpy(float)
            lo, hi = t["ci_low"].to_numpy(float), t["ci_high"].to_numpy(float)
            err = np.stack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
            pos = x + (j - (len(groups) - 1) / 2) * width
            ax.bar(pos, np.nan_to_num(mean), width, color=plots.COLOURS[j % len(plots.COLOURS)], alpha=0.85,
                   label=method)
            ax.errorbar(pos, np.nan_to_num(mean), yerr=np.clip(err, 0, None), fmt="none", ecolor="black", capsize=3)
            for p, n in zip(pos, t["clips"].fillna(0).astype(int)):
                ax.annotate(str(n), (p, 0), ha="center", va="bottom", fontsize=6, color="white")
        ax.set_xticks(x, names, rotation=30 if len(names) > 3 else 0, fontsize=7)
        ax.set_title(labels.get(m, m), fontsize=8)
        if i == 0 and len(groups) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"per {col_label(column)} (mean and bootstrap interval; clips in white)", fontsize=9)
    return plots._png(fig)


def distributions_plot(per_clip: list[tuple[str, pd.DataFrame]], metrics: list[str], labels: dict[str, str]) -> bytes:
    """Box plots of the per-clip values of each metric, one box per method."""
    metrics = metrics[:12]
    fig, axes = _panels(len(metrics), (3.2, 2.4), 0.3)
    for m, ax in zip(metrics, axes):
        data = [pd.to_numeric(t[m], errors="coerce").dropna().to_numpy(float) if m in t.columns else np.array([])
                for _, t in per_clip]
        keep = [k for k, d in enumerate(data) if len(d)]
        if keep:
            ax.boxplot([data[k] for k in keep], showfliers=True)
            ax.set_xticks(np.arange(1, len(keep) + 1), [per_clip[k][0][:14] for k in keep], fontsize=7)
        ax.set_title(labels.get(m, m), fontsize=8)
    fig.suptitle("per-clip values", fontsize=9)
    return plots._png(fig)


def stochasticity_plot(maps: dict[str, np.ndarray], limit: int = 6) -> bytes:
    items = list(maps.items())[:limit]
    fig = Figure(figsize=(2.6 * len(items) + 0.8, 2.8))
    vmax = max(float(m.max()) for _, m in items) or 1.0
    im = None
    for i, (cid, m) in enumerate(items):
        ax = fig.add_subplot(1, len(items), i + 1)
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(f"{cid[:12]}\nmean {m.mean():.2f}", fontsize=7)
        ax.axis("off")
    fig.colorbar(im, ax=fig.axes, fraction=0.03, label="pixel std over samples (0-255)")
    fig.suptitle("stochasticity: per-pixel standard deviation across samples, averaged over time", fontsize=9)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _overall_table(summary: dict, results: list["MethodResult"]) -> str:
    metrics = summary["metrics"]
    order = [m for m in metrics if any(m in set(r.overall.get("metric", [])) for r in results)]
    head = "<tr><th>metric</th><th>better</th>" + "".join(
        f"<th>{html.escape(r.name)}</th><th>best of K</th>" for r in results) + "</tr>"
    body = []
    for m in order:
        cells = [f"<td>{html.escape(metrics[m]['label'])}</td>",
                 f"<td class=\"better\">{metrics[m]['better']}</td>"]
        for r in results:
            row = r.overall[r.overall["metric"] == m]
            if not len(row):
                cells += ["<td>&ndash;</td>", "<td></td>"]
                continue
            row = row.iloc[0]
            ci = (f' <span class="ci">[{_fmt(row.ci_low)}, {_fmt(row.ci_high)}]</span>'
                  if np.isfinite(row.ci_low) else "")
            k = int(row.get("k", 1) or 1)
            best = _fmt(row.best_of_k) + (f' <span class="ci">(K={k})</span>' if k > 1 else "") \
                if k > 1 and np.isfinite(row.best_of_k) else "&ndash;"
            cells += [f"<td>{_fmt(row['mean'])}{ci}</td>", f"<td>{best}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def write_report(summary: dict, results: list["MethodResult"], clips: pd.DataFrame, path: Path,
                 cfg: "EvalConfig") -> Path:
    labels = _labels(summary["metrics"])
    names = " vs ".join(r.name for r in results)
    parts = [f"<h1>Model evaluation: {html.escape(names)}</h1>",
             f'<p class="note">Store <code>{html.escape(summary["store"])}</code>, split '
             f'<code>{html.escape(str(summary["split"]))}</code>: {summary["clips"]} real clips.</p>',
             f'<p class="banner"><b>Perceived, automatic estimates.</b> {html.escape(PERCEIVED)}</p>']

    # -- coverage and skipped metrics
    rows = []
    for r in results:
        rows.append({"method": r.name, "clips scored": int(r.per_clip["clip_id"].nunique()) if len(r.per_clip) else 0,
                     "videos scored": len(r.per_sample), "clips without a generated video": len(r.missing),
                     "files matching no clip": len(r.unmatched), "clips with notes": len(r.errors),
                     "seconds": round(r.seconds, 1),
                     "s per video-s": round(r.seconds / r.video_seconds, 2) if r.video_seconds else None})
    parts += ["<h2>Summary</h2>", pd.DataFrame(rows).to_html(index=False, border=0, na_rep="")]
    notes = sorted({n for r in results for n in r.notes})
    if notes:
        parts.append("<h3>Skipped metrics</h3>")
        parts += [f'<div class="flag">{html.escape(n)}</div>' for n in notes]
    for r in results:
        if r.errors or r.unmatched or r.missing:
            items = [f"<li><code>{html.escape(c)}</code>: {html.escape('; '.join(e))}</li>"
                     for c, e in r.errors.items()]
            items += [f"<li>no clip for file <code>{html.escape(u)}</code></li>" for u in r.unmatched[:50]]
            items += [f"<li>no generated video for clip <code>{html.escape(m)}</code></li>" for m in r.missing[:50]]
            parts.append(f"<details><summary>{html.escape(r.name)}: {len(items)} notes on clips and files</summary>"
                         f"<ul>{''.join(items)}</ul></details>")

    # -- flags
    parts.append("<h2>Flags: gaps between perceived groups</h2>")
    flagged = [(r.name, g) for r in results if len(r.gaps) for g in r.gaps[r.gaps["flagged"]].to_dict("records")]

    def flag_html(name: str, g: dict) -> str:
        return (f'<div class="flag"><b>{html.escape(name)}</b>: {html.escape(labels.get(g["metric"], g["metric"]))} '
                f'is worse for {html.escape(col_label(g["column"]))} = <b>{html.escape(str(g["worst_group"]))}</b> '
                f'({_fmt(g["worst"])}) than for {html.escape(str(g["best_group"]))} ({_fmt(g["best"])}): gap '
                f'{_fmt(g["gap"])}, {g["level"]:.1%} interval [{_fmt(g["ci_low"])}, {_fmt(g["ci_high"])}] '
                "excludes zero.</div>")

    if flagged:
        single = [flag_html(n, g) for n, g in flagged if " x " not in g["column"]]
        combos = [flag_html(n, g) for n, g in flagged if " x " in g["column"]]
        parts += single
        if combos:
            parts.append(f"<details><summary>{len(combos)} more on combinations of groups</summary>"
                         f"{''.join(combos)}</details>")
    else:
        parts.append(f'<div class="ok">No metric differs between the best and the worst perceived group by more '
                     f'than its {cfg.confidence:.0%} bootstrap interval allows (groups of at least '
                     f'{cfg.min_group_clips} clips; "unknown" never flagged).</div>')

    # -- overall
    parts += ["<h2>Metrics</h2>",
              f'<p class="note">Mean over clips (each clip: mean over its samples) with a {cfg.confidence:.0%} '
              "bootstrap interval over clips; best of K: each clip's best sample. FID and FVD are set-level "
              "(all frames / 16-frame windows of the generated videos against the real clips').</p>",
              _overall_table(summary, results)]

    # -- per group
    group_cols = sorted({c for r in results if len(r.groups) for c in r.groups["column"].unique()},
                        key=lambda c: (" x " in c, c))
    if group_cols:
        parts.append("<h2>Per perceived group</h2>")
    for col in group_cols:
        per = [(r.name, r.groups[r.groups["column"] == col]) for r in results if len(r.groups)]
        metrics = [m for m in summary["metrics"] if any(m in set(t["metric"]) for _, t in per)]
        parts.append(f"<h3>{html.escape(col_label(col))}</h3>")
        if " x " not in col and metrics:
            parts.append(img_tag(group_metric_plot(per, col, metrics, labels), f"metrics per {col_label(col)}"))
        gaps = pd.concat([r.gaps[r.gaps["column"] == col].assign(method=r.name) for r in results if len(r.gaps)],
                         ignore_index=True) if any(len(r.gaps) for r in results) else pd.DataFrame()
        if len(gaps):
            gaps = gaps[["method", "metric", "best_group", "worst_group", "best", "worst", "gap", "ci_low", "ci_high",
                         "level", "flagged"]]
            gaps["metric"] = gaps["metric"].map(lambda m: labels.get(m, m))
            gaps["flagged"] = gaps["flagged"].map(lambda f: "FLAG" if f else "")
            parts += ["<p class=\"note\">Best and worst group per metric (groups of at least "
                      f"{cfg.min_group_clips} clips), gap in the metric's bad direction with its interval:</p>",
                      gaps.to_html(index=False, border=0, float_format="{:.3g}".format, na_rep="")]
        sets = [r.set_groups[r.set_groups["column"] == col].assign(method=r.name) for r in results if len(r.set_groups)]
        if sets:
            t = pd.concat(sets, ignore_index=True)[["method", "metric", "group", "clips", "value", "ci_low", "ci_high"]]
            t["metric"] = t["metric"].map(lambda m: labels.get(m, m))
            parts.append(t.to_html(index=False, border=0, float_format="{:.3g}".format, na_rep=""))
        if " x " in col:
            t = pd.concat([g.assign(method=n) for n, g in per], ignore_index=True)
            t["metric"] = t["metric"].map(lambda m: labels.get(m, m))
            parts.append("<details><summary>every group's mean and interval</summary>"
                         + t.drop(columns=["column"]).to_html(index=False, border=0, float_format="{:.3g}".format,
                                                              na_rep="")
                         + "</details>")

    # -- distributions
    per_clip = [(r.name, r.per_clip) for r in results if len(r.per_clip)]
    dist_metrics = [m for m in summary["metrics"] if any(m in t.columns for _, t in per_clip)]
    if dist_metrics:
        parts += ["<h2>Distributions</h2>", img_tag(distributions_plot(per_clip, dist_metrics, labels),
                                                    "per-clip metric distributions")]

    # -- examples
    first = next((c for c in cfg.group_columns if c in clips.columns and clips[c].notna().any()), None)
    cols = []
    grp = clips.set_index("clip_id")[first].map(lambda v: "unknown" if pd.isna(v) else str(v)) if first else None
    seen = set()
    for cid in clips["clip_id"]:
        g = grp[cid] if grp is not None else cid[:10]
        if g in seen or len(cols) >= cfg.example_groups:
            continue
        ex = [r.examples.get(cid) for r in results]
        if not ex[0]:
            continue
        frames = [ex[0]["real"]] + [f for e in ex if e for f in e["generated"]]
        cols.append((f"{g}\n{cid[:10]}", frames))
        seen.add(g)
    if cols:
        parts += [f"<h2>Example frames{' per ' + html.escape(label(first)) if first else ''}</h2>",
                  '<p class="note">Top: the real clip\'s middle frame; below it the same frame of each generated '
                  f"sample ({html.escape(', '.join(r.name for r in results))}, up to 3 samples each).</p>",
                  img_tag(plots.image_columns(cols), "example frames")]

    # -- stochasticity
    for r in results:
        if r.stochasticity:
            parts += [f"<h2>Stochasticity: {html.escape(r.name)}</h2>",
                      img_tag(stochasticity_plot(r.stochasticity), "stochasticity maps")]

    parts += ["<h2>How these numbers are made</h2><ul>",
              "<li>Generated videos are decoded at the real clip's frame rate and size; reference metrics compare "
              "frame t with real frame t.</li>",
              "<li>Sync uses the generated video's own audio track; the weight-free score is the lip gap "
              "(FaceMesh) against the speech envelope at lags of &plusmn;15 frames (annotate/av_sync.py).</li>",
              "<li>3D metrics: MediaPipe Holistic and the project's SMPL-X fitter on the generated video, "
              f"against the real clip's {'stored fit' if cfg.real_fit == 'stored' else 'refit'}; LME on the 20 lip "
              "landmarks in camera space, head-pose error between head-joint rotations.</li>",
              "<li>Intervals: percentile bootstrap over clips "
              f"({cfg.bootstrap} resamples; FID/FVD {cfg.set_bootstrap}). The best and worst group are chosen on "
              "the same data, so the gap's interval is widened for all k(k&minus;1)/2 pairs of k groups "
              "(Bonferroni); a "
              "flag still asks for a look, not a verdict (every metric and column is tested).</li>",
              "<li>Flags come only from metrics measured against the real clip (PSNR, SSIM, LPIPS, the CPBD lost "
              "and NIQE added relative to the real clip, the A/V offset, identity distance, LME, head-pose error). "
              "Absolute CPBD, NIQE, sync confidence, LSE, jitter, expression spread and BC also describe the real "
              "footage, which differs between groups by itself: their group tables are shown without flags.</li>",
              "<li>Every number here is in <code>eval.json</code> and <code>tables/*.csv</code>.</li></ul>"]
    return write_page(path, f"Model evaluation: {names}", parts, EXTRA_CSS)
