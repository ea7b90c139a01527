"""Dataset audit on stores built with known group sizes and rejection rates: the numbers and
flags come back, the files hold them, and the HTML page renders with its plots in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from mentor.audit import audit_store, wilson_interval
from mentor.config import AuditConfig
from mentor.record import Attribute, ClipRecord, SourceRecord

# group -> (kept clips, rejected clips, identities): rejection rates 10%, 10%, 50%
PLAN = {"light": (135, 15, 27), "medium": (72, 8, 12), "dark": (20, 20, 4)}
BALANCED = {"light": (40, 10, 8), "medium": (40, 10, 8), "dark": (40, 10, 8)}
MONK = {"light": 2, "medium": 5, "dark": 9}
ITA = {"light": 55.0, "medium": 25.0, "dark": -20.0}
CLIP_SECONDS = 8.0
TARGETS = {"attr.skin_tone_group": {"light": 1 / 3, "medium": 1 / 3, "dark": 1 / 3}}


def _record(group: str, i: int, person: int, rng, rejected: bool) -> ClipRecord:
    src = SourceRecord.from_uri(f"file:///{group}/person{person}.mp4", identity=f"{group}-p{person}")
    rec = ClipRecord.for_span(src, i * 10.0, i * 10.0 + CLIP_SECONDS, fps=25.0)
    rec.attributes["skin_tone_group"] = Attribute(value=group, confidence=0.9, method="test")
    rec.attributes["skin_tone_monk"] = Attribute(value=MONK[group], confidence=0.9, method="test")
    rec.attributes["skin_tone_ita"] = Attribute(value=ITA[group] + rng.normal(0, 5), method="test")
    rec.set_score("filter.yaw_deg", float(rng.normal(0, 10)))
    rec.set_score("filter.pitch_deg", float(rng.normal(0, 5)))
    rec.set_score("filter.body_visibility", ["head_torso", "torso_hands"][i % 2])
    rec.set_score("asr.language", ["en", "es", "en"][i % 3])
    if rejected and i % 5 == 0:
        rec.reject("sync", "audio_offset", f"audio offset {7 + i % 3} frames > 6", value=7 + i % 3, threshold=6)
    elif rejected:
        px = int(rng.integers(20, 60))
        rec.reject("filter", "face_small", f"face too small ({px} px < 64 px)", value=px, threshold=64)
    return rec


def build_store(path, plan, media=None, seed=0):
    """A store with plan[group] = (kept, rejected, identities) clips; `media` = (frames,
    landmarks) puts a video and a landmarks array on the first kept clip of each group."""
    from mentor.media import write_video
    from mentor.store import StoreWriter

    rng = np.random.default_rng(seed)
    with StoreWriter(path) as w:
        for group, (kept, rejected, people) in plan.items():
            for i in range(kept + rejected):
                rec = _record(group, i, i % people, rng, rejected=i >= kept)
                if media is not None and i == 0:
                    frames, lm = media
                    rec.files["video"] = str(write_video(frames, path.parent / f"{path.name}-{group}.mp4", 25.0))
                    rec.add_array("landmarks.face", np.repeat(lm[None], len(frames), 0), 25.0)
                    rec.end = rec.start + len(frames) / 25.0
                w.add(rec)
    return path


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    from mentor.store import Store
    from mentor.testmedia import _base_image, face_landmarks

    tmp = tmp_path_factory.mktemp("audit")
    frames = np.repeat(np.array(_base_image("astronaut", 256))[None], 12, 0)
    lm = face_landmarks("astronaut", 256)
    a = Store(build_store(tmp / "main", PLAN, media=(frames, lm)))
    b = Store(build_store(tmp / "balanced", BALANCED, seed=1))
    cfg = AuditConfig(targets=TARGETS, max_share_gap=0.1)
    result = audit_store(a, cfg, tmp / "report", compare=b)
    return result, tmp / "report", a, b


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_group_sizes_hours_identities(audited):
    result, *_ = audited
    g = result.tables["groups"]
    g = g[g["column"] == "attr.skin_tone_group"].set_index("group")
    assert list(g.index) == ["light", "medium", "dark"]
    for group, (kept, _, people) in PLAN.items():
        assert g.loc[group, "clips"] == kept
        assert g.loc[group, "identities"] == people
    assert g.loc["medium", "hours"] == pytest.approx(71 * CLIP_SECONDS / 3600 + 12 / 25 / 3600)
    monk = result.tables["groups"].query("column == 'attr.skin_tone_monk'")
    assert list(monk["group"]) == ["2", "5", "9"]  # steps stored as 2.0 read back as "2"
    assert result.summary["clips"] == sum(k for k, _, _ in PLAN.values())
    assert result.summary["rejected_clips"] == sum(r for _, r, _ in PLAN.values())
    combos = result.tables["combinations"]
    assert combos.query("combination == 'dark | 9'")["clips"].iloc[0] == 20


def test_rejection_rates_and_flags(audited):
    result, *_ = audited
    r = result.tables["rejections"]
    r = r[(r["column"] == "attr.skin_tone_group") & (r["stage"] == "all")].set_index("group")
    for group, (kept, rej, _) in PLAN.items():
        assert r.loc[group, "total"] == kept + rej
        assert r.loc[group, "rate"] == pytest.approx(rej / (kept + rej))
        assert r.loc[group, "ci_low"] < r.loc[group, "rate"] < r.loc[group, "ci_high"]
    pairs = {frozenset(f["groups"]) for f in result.flags
             if f["kind"] == "rejection_rate" and f["column"] == "attr.skin_tone_group" and f["stage"] == "all"}
    assert pairs == {frozenset({"dark", "light"}), frozenset({"dark", "medium"})}
    chi = [f for f in result.flags if f["kind"] == "rejection_chi2" and f["column"] == "attr.skin_tone_group"]
    assert chi and chi[0]["p_value"] < 0.001
    reasons = result.tables["reasons"].set_index("reason")["clips"]
    n_sync = sum(1 for kept, rej, _ in PLAN.values() for i in range(kept, kept + rej) if i % 5 == 0)
    assert reasons["sync: audio_offset"] == n_sync
    assert reasons["filter: face_small"] == sum(r for _, r, _ in PLAN.values()) - n_sync
    assert len(reasons) == 2, "one row per stage and code, whatever the measured values"
    per_stage = result.tables["rejections"].query("column == 'attr.skin_tone_group' and stage == 'sync'")
    assert per_stage.set_index("group").loc["dark", "rejected"] == 4  # clips 20, 25, 30, 35


def test_imbalance_flags_against_targets(audited):
    result, *_ = audited
    imb = result.tables["imbalance"].set_index("group")
    assert imb.loc["dark", "flag"] == "under" and imb.loc["light", "flag"] == "over"
    assert imb.loc["medium", "flag"] == ""
    assert {tuple(f["groups"]) for f in result.flags if f["kind"] == "imbalance"} == {("dark",), ("light",)}


def test_balanced_store_raises_no_flag(tmp_path):
    from mentor.store import Store

    s = Store(build_store(tmp_path / "b", BALANCED))
    result = audit_store(s, AuditConfig(targets=TARGETS), tmp_path / "out", frames=False)
    assert result.flags == []


def test_spread_language_compare_and_files(audited):
    result, out, *_ = audited
    spread = result.tables["spread"]
    assert {"duration", "score.filter.yaw_deg", "score.filter.pitch_deg"} <= set(spread["value"])
    lang = result.tables["categories"].query("of == 'score.asr.language' and column == 'attr.skin_tone_group'")
    assert set(lang["category"]) == {"en", "es"}
    assert result.tables["categories"].query("of == 'score.filter.body_visibility'")["category"].nunique() == 2
    cmp = result.tables["compare"].query("column == 'attr.skin_tone_group'").set_index("group")
    assert cmp.loc["dark", "clips balanced"] == 40 and cmp.loc["dark", "clips main"] == 20
    assert cmp.loc["dark", "share_gap"] > 0.2
    doc = json.loads((out / "audit.json").read_text())
    assert "perceived" in doc["about"].lower()
    assert len(doc["tables"]["groups"]) == len(result.tables["groups"])
    assert pd.read_csv(out / "tables" / "rejections.csv").shape[0] == len(result.tables["rejections"])
    page = (out / "index.html").read_text()
    assert "Perceived, automatic estimates" in page and "perceived skin tone group" in page
    assert page.count("<img") >= 8  # shares x2, hist x2, spread, rejections x2, examples, strips
    assert "Clips with face landmarks" in page and "Example frames per perceived skin tone group" in page


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="chromium is not installed: the page is not rendered")
def test_report_renders_in_headless_chromium(audited, tmp_path):
    _, out, *_ = audited
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = (out / "index.html").resolve().as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    marker = dom.split('data-images="', 1)[1].split('"', 1)[0]
    ok, total = map(int, marker.split("/"))
    assert total >= 8 and ok == total, marker
    shot = tmp_path / "page.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,2000", url],
                   capture_output=True, timeout=120)
    import cv2

    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2000, 1280)
    assert len(np.unique(img.reshape(-1, 3) // 16, axis=0)) > 50  # text, bars and photos, not a blank page
    assert img.std() > 20


# -- rejections grouped the same way by `mentor info`, the build summary and the audit

def _vad_rejected(fractions, min_fraction=0.3):
    src = SourceRecord.from_uri("file:///vad/a.mp4", identity="p0")
    out = []
    for i, f in enumerate(fractions):
        rec = ClipRecord.for_span(src, 10.0 * i, 10.0 * i + 3, fps=25.0)
        rec.attributes["skin_tone_group"] = Attribute(value="light", method="test")
        # what annotate/vad.py calls for a clip with too little speech
        rec.reject("vad", "low_speech", f"speech in {f:.0%} of the clip < {min_fraction:.0%}",
                   value=f, threshold=min_fraction)
        out.append(rec)
    kept = ClipRecord.for_span(src, 100.0, 103.0, fps=25.0)
    return out, kept


def _write(root, records):
    from mentor.store import StoreWriter

    with StoreWriter(root) as w:
        for r in records:
            w.add(r)
    return root


def test_vad_rejections_at_different_values_group_as_one_row(tmp_path, capsys):
    from mentor.audit.core import compute_tables
    from mentor.cli import main
    from mentor.store import Store
    from pipelines.summary import BuildSummary

    rejected, kept = _vad_rejected([0.12, 0.25, 0.05])
    assert len({r.rejected for r in rejected}) == 3, "the texts differ (they hold the measured values)"
    root = _write(tmp_path / "store", rejected + [kept])
    # mentor info
    assert main(["info", str(root)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "low_speech" in line]
    assert len(rows) == 1 and rows[0].split()[:3] == ["3", "vad:", "low_speech"], out
    assert "0.05..0.25" in rows[0] and "limit 0.3" in rows[0]
    # the build summary
    summary = BuildSummary(store=str(root))
    for r in rejected + [kept]:
        summary.add_clip(r)
    assert summary.clips_rejected == {"vad: low_speech": 3}
    lines = [line for line in summary.render().splitlines() if "low_speech" in line]
    assert len(lines) == 1 and "3  vad: low_speech" in lines[0]
    assert summary.as_dict()["rejections"][0]["clips"] == 3
    # the audit
    store = Store(root)
    assert store.rejected()["reject_code"].tolist() == ["low_speech"] * 3
    t = compute_tables(store.clips(), store.rejected(), AuditConfig(targets={})).tables
    assert t["reasons"][["reason", "clips"]].values.tolist() == [["vad: low_speech", 3]]
    by_group = t["reasons_by_group"]
    assert by_group[by_group["column"] == "attr.skin_tone_group"][["reason", "clips"]].values.tolist() == [["vad: low_speech", 3]]


def test_old_store_rejections_still_read_and_group(tmp_path):
    """A store written before codes (schema 1.0): free-text `rejected`, no reject_code column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mentor.rejections import group_rejections
    from mentor.store import Store, store_info

    rejected, kept = _vad_rejected([0.12, 0.25, 0.05])
    root = _write(tmp_path / "old", rejected + [kept])
    meta = json.loads((root / "store.json").read_text())
    meta["schema_version"] = "1.0"
    (root / "store.json").write_text(json.dumps(meta))
    for p in (root / "index" / "rejected").glob("*.parquet"):
        df = pq.read_table(p).to_pandas().drop(columns=["reject_code", "reject_value", "reject_threshold"])
        df["rejected"] = [t.replace("vad: low_speech: ", "vad: ") for t in df["rejected"]]
        df["record"] = [json.dumps({k: v for k, v in json.loads(r).items() if k != "rejection"}
                                   | {"schema_version": "1.0", "rejected": t})
                        for r, t in zip(df["record"], df["rejected"])]
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), p)
    store = Store(root)
    rej = store.rejected()
    assert rej["rejected"].iloc[0].startswith("vad: speech in ")
    assert rej["reject_stage"].tolist() == ["vad"] * 3 and rej["reject_code"].tolist() == ["legacy"] * 3
    g = group_rejections(rej)
    assert g[["reason", "clips"]].values.tolist() == [["vad: legacy", 3]]
    assert store_info(root)["rejected_by_reason"] == {"vad: legacy": 3}
    rec = ClipRecord.from_json(rej["record"].iloc[0])  # migrated 1.0 -> current on read
    assert rec.rejection.stage == "vad" and rec.rejection.code == "legacy" and not rec.kept
