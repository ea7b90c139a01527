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
    rec.set_score("smplx.expression_std", float(rng.uniform(0.1, 1.0)))
    if rejected and i % 5 == 0:
        rec.reject("sync", f"audio offset {7 + i % 3} frames")
    elif rejected:
        rec.reject("filter", f"face too small ({int(rng.integers(20, 60))} px)")
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
    assert reasons["sync: audio offset # frames"] == n_sync
    assert reasons["filter: face too small (# px)"] == sum(r for _, r, _ in PLAN.values()) - n_sync
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
    assert {"duration", "score.filter.yaw_deg", "score.filter.pitch_deg", "score.smplx.expression_std"} <= set(spread["value"])
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
