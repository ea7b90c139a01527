"""Identity-disjoint splits: no person in two splits, target shares by hours, a test split
with the same group mix as the whole, the per-identity cap, and determinism by seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mentor.config import SplitConfig
from mentor.splits import EXCLUDED, assign_splits, split_summary

GROUP_SIZES = {"light": 180, "medium": 120, "dark": 60}  # identities per group


def make_clips(seed: int = 0) -> pd.DataFrame:
    """360 identities, 1-12 clips of 3-10 s each, groups of known sizes."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, n in GROUP_SIZES.items():
        for i in range(n):
            for j in range(int(rng.integers(1, 13))):
                rows.append({"clip_id": f"{group}{i}-{j}", "identity": f"{group}{i}", "source_id": f"s{group}{i}",
                             "duration": float(rng.uniform(3, 10)), "attr.skin_tone_group": group})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def clips():
    return make_clips()


@pytest.fixture(scope="module")
def split(clips):
    return assign_splits(clips, SplitConfig(seed=3))


def test_no_identity_in_two_splits(clips, split):
    per_identity = split.groupby(clips["identity"]).nunique()
    assert per_identity.max() == 1
    assert set(split) == {"train", "val", "test"}


def test_shares_by_hours_near_target(clips, split):
    hours = clips["duration"].groupby(split).sum()
    shares = hours / hours.sum()
    for name, target in SplitConfig().shares.items():
        assert shares[name] == pytest.approx(target, abs=0.02), shares.to_dict()


def test_test_split_stratified_by_group(clips, split):
    overall = clips.groupby("attr.skin_tone_group")["duration"].sum()
    overall = overall / overall.sum()
    test = clips[split == "test"].groupby("attr.skin_tone_group")["duration"].sum()
    test = test / test.sum()
    for group in GROUP_SIZES:
        assert test[group] == pytest.approx(overall[group], abs=0.04), (test.to_dict(), overall.to_dict())
    summary = split_summary(clips, split, ["attr.skin_tone_group"])
    assert set(summary["attr.skin_tone_group"]) == set(GROUP_SIZES)
    assert summary.groupby("split")["share_of_split"].sum().round(6).eq(1.0).all()


def test_deterministic_for_seed_whatever_the_row_order(clips, split):
    shuffled = clips.sample(frac=1.0, random_state=7)
    again = assign_splits(shuffled, SplitConfig(seed=3))
    assert again.reindex(clips.index).equals(split)
    other = assign_splits(clips, SplitConfig(seed=4))
    assert not other.equals(split)


def test_cap_excludes_clips_over_the_limit():
    rng = np.random.default_rng(1)
    rows = [{"clip_id": f"big-{j}", "identity": "big", "duration": 600.0, "attr.skin_tone_group": "light"}
            for j in range(60)]  # 10 hours of one person
    rows += [{"clip_id": f"p{i}-{j}", "identity": f"p{i}", "duration": float(rng.uniform(3, 10)),
              "attr.skin_tone_group": "dark"} for i in range(50) for j in range(5)]
    clips = pd.DataFrame(rows)
    split = assign_splits(clips, SplitConfig(max_hours_per_identity=2.0))
    big = clips["identity"] == "big"
    kept_hours = clips.loc[big & (split != EXCLUDED), "duration"].sum() / 3600
    assert kept_hours == pytest.approx(2.0)
    assert (split[big] == EXCLUDED).sum() == 48
    assert (split[~big] != EXCLUDED).all()
    assert split[big & (split != EXCLUDED)].nunique() == 1


def test_missing_identity_falls_back_to_source_and_stratum_column_is_optional():
    clips = pd.DataFrame({"clip_id": [f"c{i}" for i in range(40)], "identity": [None] * 40,
                          "source_id": [f"s{i // 4}" for i in range(40)], "duration": 5.0})
    split = assign_splits(clips, SplitConfig())  # attr.skin_tone_group absent: ignored
    assert split.groupby(clips["source_id"]).nunique().max() == 1
    with pytest.raises(ValueError, match="duration"):
        assign_splits(clips.drop(columns="duration"), SplitConfig())
