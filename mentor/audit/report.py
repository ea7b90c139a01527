"""The audit's static HTML page: tables, plots (embedded PNGs) and example frames.

One self-contained file (images as data: URIs) beside audit.json and tables/*.csv, which
hold every number on the page. Every attribute is labelled as a perceived, automatic
estimate.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mentor.audit import plots
from mentor.audit.labels import PERCEIVED, label
from mentor.config import AttributeConfig, AuditConfig

if TYPE_CHECKING:
    from mentor.audit.core import AuditResult

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; line-height: 1.45; padding: 0 16px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 34px; }
h3 { margin-bottom: 6px; }
.banner { background: #fff6d6; border: 1px solid #e5c55a; padding: 10px 14px; border-radius: 6px; }
.flag { background: #fde8e8; border-left: 4px solid #c44e52; padding: 6px 10px; margin: 6px 0; }
.ok { background: #e8f5e9; border-left: 4px solid #55a868; padding: 6px 10px; }
.note { color: #555; font-size: 14px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 8px 0; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; } .row > div { flex: 1 1 480px; }
code { background: #f3f3f3; padding: 0 3px; }
"""

# Counts the pictures that decoded, for a headless browser check (data-images="ok/total").
SCRIPT = """window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
});"""


def write_page(path: Path, title: str, parts: list[str], extra_css: str = "") -> Path:
    """One static page in the audit's look (its CSS and table script): the dataset audit and the
    model evaluation both write theirs with it."""
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}{extra_css}</style></head><body>"
            + "\n".join(parts) + f"<script>{SCRIPT}</script></body></html>")
    path.write_text(page, encoding="utf-8")
    return path


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> str:
    if df is None or not len(df):
        return '<p class="note">(none)</p>'
    df = df.drop(columns=[c for c in drop if c in df.columns]).copy()
    for c in ("column", "columns", "of", "value"):
        if c in df.columns:
            df[c] = df[c].map(lambda v: " x ".join(label(x) for x in str(v).split(" x ")))
    fmt = {}
    for c in df.columns:
        if c.startswith("share") or c in ("rate", "ci_low", "ci_high", "target", "gap") or c.startswith("share_"):
            fmt[c] = "{:.1%}".format
        elif c.startswith("hours"):
            fmt[c] = "{:.3f}".format
    return df.to_html(index=False, border=0, formatters=fmt, float_format="{:.3g}".format, na_rep="")


def write_report(result: "AuditResult", cfg: AuditConfig, path: Path, clips: pd.DataFrame,
                 other: "AuditResult | None" = None, other_clips: pd.DataFrame | None = None,
                 names: tuple[str, str] = ("", ""), media: dict[str, Any] | None = None) -> Path:
    s, t = result.summary, result.tables
    acfg = AttributeConfig()
    parts = [f"<h1>Dataset audit: {html.escape(str(s.get('name', '')))}</h1>",
             f'<p class="banner"><b>Perceived, automatic estimates.</b> {html.escape(PERCEIVED)}</p>']

    # -- summary and flags
    rows = [("clips kept", s["clips"]), ("hours kept", f"{s['hours']:.3f}"), ("identities", s["identities"]),
            ("clips rejected", s["rejected_clips"]), ("hours rejected", f"{s['rejected_hours']:.3f}")]
    summary = pd.DataFrame(rows, columns=["", names[0] or "this store"])
    if other is not None:
        o = other.summary
        summary[names[1]] = [o["clips"], f"{o['hours']:.3f}", o["identities"], o["rejected_clips"],
                             f"{o['rejected_hours']:.3f}"]
    parts += ["<h2>Summary</h2>", summary.to_html(index=False, border=0)]
    parts.append("<h2>Flags</h2>")
    if result.flags:
        parts += [f'<div class="flag">{html.escape(f["message"])}</div>' for f in result.flags]
    else:
        parts.append('<div class="ok">No group is off its target share by more than the allowed gap, and no filter '
                     'rejects one perceived group significantly more often than another.</div>')
    for n in result.notes:
        parts.append(f'<p class="note">Note: {html.escape(n)}</p>')

    # -- groups
    parts.append("<h2>Perceived groups: clips, hours, identities</h2>")
    for col in s["group_columns"]:
        g = t["groups"][t["groups"]["column"] == col]
        tables = [(names[0] or "this store", g)]
        if other is not None and len(other.tables["groups"]):
            tables.append((names[1], other.tables["groups"][other.tables["groups"]["column"] == col]))
        png = plots.group_shares(tables, f"share of hours by {label(col)}", cfg.targets.get(col))
        parts += [f"<h3>{html.escape(label(col))}</h3>", '<div class="row"><div>',
                  _img(png, f"share of hours by {label(col)}"), "</div><div>", _table(g, ("column",)), "</div></div>"]
    if len(t.get("imbalance", [])):
        parts += ["<h3>Against the target distribution</h3>",
                  f'<p class="note">Flagged where the share of hours is more than {cfg.max_share_gap:.0%} off '
                  "the target.</p>", _table(t["imbalance"])]
    if len(t.get("combinations", [])):
        parts += ["<h3>Combinations of perceived groups</h3>", _table(t["combinations"])]

    # -- distributions and spread
    parts.append("<h2>Distributions</h2><div class=\"row\">")
    parts.append("<div>" + _img(plots.histogram(clips.get("duration", pd.Series(dtype=float)), "clip duration",
                                                "seconds"), "clip duration histogram") + "</div>")
    if "attr.skin_tone_ita" in clips.columns and clips["attr.skin_tone_ita"].notna().any():
        lines = {f"light > {acfg.ita_light_min:g}": acfg.ita_light_min, f"dark <= {acfg.ita_dark_max:g}": acfg.ita_dark_max}
        parts.append("<div>" + _img(plots.histogram(clips["attr.skin_tone_ita"], "perceived skin tone (ITA)",
                                                    "ITA (degrees)", lines), "ITA histogram") + "</div>")
    parts.append("</div>")
    if len(t.get("spread", [])) and s["group_columns"]:
        col = s["group_columns"][0]
        parts += [f"<h3>Spread per {html.escape(label(col))}</h3>",
                  _img(plots.spread(clips, col, s["spread_columns"], {c: label(c) for c in s["spread_columns"] + [col]}),
                       f"spread per {label(col)}"),
                  _table(t["spread"][t["spread"]["column"] == col], ("column",)),
                  '<p class="note">Every group column\'s spread is in tables/spread.csv.</p>']
    if len(t.get("categories", [])):
        first = s["group_columns"][0] if s["group_columns"] else None
        cats = t["categories"][t["categories"]["column"] == first] if first else t["categories"]
        parts += ["<h3>Language and framing</h3>", _table(t["category_totals"]),
                  f"<h3>Language and framing per {html.escape(label(first or ''))}</h3>", _table(cats, ("column",))]

    # -- rejections
    parts.append("<h2>Rejected clips</h2>")
    parts.append('<p class="note">Rates with 95% Wilson intervals; a flag is raised when two groups\' intervals do '
                 f"not overlap or a chi-square test gives p &lt; {cfg.alpha:g} (groups of at least "
                 f"{cfg.min_group_clips} clips; 'unknown' is never flagged).</p>")
    parts += ["<h3>By reason</h3>", _table(t.get("reasons"))]
    for col in s["group_columns"]:
        r = t["rejections"][t["rejections"]["column"] == col] if len(t.get("rejections", [])) else pd.DataFrame()
        if not len(r):
            continue
        parts += [f"<h3>Rejection rate by {html.escape(label(col))}</h3>",
                  _img(plots.rejection_rates(r, f"rejection rate by {label(col)}"), f"rejection rate by {label(col)}"),
                  _table(r, ("column",))]
    if len(t.get("reasons_by_group", [])):
        parts += ["<h3>Reasons by group</h3>", _table(t["reasons_by_group"])]

    # -- comparison
    if len(t.get("compare", [])):
        parts += [f"<h2>{html.escape(names[0])} vs {html.escape(names[1])}</h2>", _table(t["compare"])]

    # -- frames
    if media:
        col = media.get("column")
        cols = [(g, frames) for g, frames in media["examples"].items() if frames]
        if cols:
            parts += [f"<h2>Example frames per {html.escape(label(col) if col else 'clip')}</h2>",
                      '<p class="note">One frame from the middle of each clip, in columns by perceived group.</p>',
                      _img(plots.image_columns(cols), "example frames per group")]
        if media.get("strips"):
            rows = [(f"clip {cid}", frames) for cid, frames in media["strips"].items()]
            parts += ["<h2>Clips with face landmarks</h2>",
                      _img(plots.image_grid(rows, "frames across each clip (zoomed to the face), face landmarks in green"), "landmark strips")]

    # -- method
    parts += ["<h2>How these numbers are made</h2><ul>",
              f"<li>Skin tone: Individual Typology Angle ITA = atan((L*&minus;50)/b*) in CIELAB, median over frames of "
              f"the median colour of well-lit forehead and cheek pixels. Groups from ITA: light &gt; "
              f"{acfg.ita_light_min:g}&deg;, medium {acfg.ita_dark_max:g}&ndash;{acfg.ita_light_min:g}&deg;, dark "
              f"&le; {acfg.ita_dark_max:g}&deg; (the audited store's own cut points are in each record's method "
              "text). Monk Skin Tone step: the nearest of the scale's 10 reference colours in Lab.</li>",
              "<li>Perceived age group and gender come from a classifier only when one is configured; otherwise "
              "they are 'not estimated' and not shown.</li>",
              "<li>Identities: face-embedding clusters where a face model was configured, else one per source "
              "video or channel.</li>",
              "<li>Every number on this page is in <code>audit.json</code> and <code>tables/*.csv</code> beside it."
              "</li></ul>"]
    return write_page(path, f"Dataset audit: {s.get('name', '')}", parts)
