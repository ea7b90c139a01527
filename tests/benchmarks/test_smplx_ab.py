"""benchmarks/smplx_ab.py: its variants patch the fitter's schedule and 'base' undoes them."""

from __future__ import annotations

import pytest

import annotate.smplx_fit as fit_module
from benchmarks import smplx_ab


@pytest.fixture(autouse=True)
def _restore():
    yield
    smplx_ab.apply("base")


def test_variants_patch_the_schedule_and_base_undoes_them():
    base = fit_module.default_schedule(60)
    smplx_ab.apply("betas_free+steps10")
    old = fit_module.default_schedule(60)
    assert old.hands.iterations == old.full.iterations == 10
    assert all("betas" in getattr(old, n).free for n in ("hands", "full", "neighbours"))
    smplx_ab.apply("betas_out+steps6")
    new = fit_module.default_schedule(60)
    assert new.hands.iterations == new.full.iterations == 6
    assert not any("betas" in getattr(new, n).free for n in ("hands", "full", "neighbours"))
    smplx_ab.apply("betas_free+betas_out_n+steps8")
    mixed = fit_module.default_schedule(60)
    assert "betas" in mixed.hands.free and "betas" in mixed.full.free and "betas" not in mixed.neighbours.free
    assert mixed.hands.iterations == 8
    smplx_ab.apply("hands4+full7")
    split = fit_module.default_schedule(60)
    assert (split.hands.iterations, split.full.iterations, split.body.iterations) == (4, 7, base.body.iterations)
    smplx_ab.apply("base")
    assert fit_module.default_schedule(60) == base


def test_an_unknown_variant_is_refused_with_the_names():
    with pytest.raises(ValueError, match="betas_free"):
        smplx_ab.apply("steps10+nonsense")


def test_damping_variants_set_the_keyframe_stages_first_damping():
    base = fit_module.default_schedule(60)
    smplx_ab.apply("damp2_cb")
    camera = fit_module.default_schedule(60)
    assert camera.camera.initial_damping == camera.body.initial_damping == 1e-2
    assert camera.hands.initial_damping == base.hands.initial_damping == 1e-3
    smplx_ab.apply("jiggle101")
    jiggled = fit_module.default_schedule(60)
    keyframe_stages = ("camera", "body", "depth", "hands", "full", "neighbours")
    assert all(getattr(jiggled, n).initial_damping == pytest.approx(1.01e-3) for n in keyframe_stages)
    assert jiggled.shape == base.shape and jiggled.smooth == base.smooth  # their own solvers: untouched


def _run(pa_all: float, cpu: float, goals: dict) -> dict:
    return {"cpu": [cpu, cpu + 1], "figures": {"pa_all": pa_all, "pa_worst": pa_all + 1}, "goals": goals}


def test_the_summary_judges_a_variant_over_scenarios_and_seeds():
    met = {"3D jitter <= 1.3x the truth's": True}
    results = {"beats": {"base": _run(8.0, 4.0, met), "fast": _run(8.1, 2.0, met)},
               "beats@1001": {"base": _run(9.0, 4.0, met), "fast": _run(8.9, 2.0, met)},
               "away": {"base": _run(7.0, 4.0, met), "fast": _run(7.9, 4.0, {"3D jitter <= 1.3x the truth's": False})}}
    summary = smplx_ab.summarize(results)["fast"]
    assert summary["fits"] == 3
    assert summary["pa_all_mean"] == pytest.approx(0.9 / 3)
    assert summary["worst_change"][0] == "away" and summary["worst_change"][1] == pytest.approx(0.9)
    assert summary["scenario_means"]["beats"] == pytest.approx(0.0)  # its two seeds' changes cancel
    assert summary["goals_lost"] == ["away: 3D jitter <= 1.3x the truth's"]
    assert summary["cpu_ratio"] == pytest.approx(12 / 8)  # least CPU-s of each fit, summed
    assert not summary["within_noise"]
    del results["away"]
    assert smplx_ab.summarize(results)["fast"]["within_noise"]


def test_settle_off_undoes_the_keyframe_stages_settle_gain():
    keyframe_stages = ("camera", "body", "depth", "hands", "full", "neighbours")
    base = fit_module.default_schedule(60)
    assert all(getattr(base, n).settle_gain == fit_module.KEYFRAME_SETTLE_GAIN > 0 for n in keyframe_stages)
    smplx_ab.apply("settle_off")
    off = fit_module.default_schedule(60)
    assert all(getattr(off, n).settle_gain == 0 for n in keyframe_stages)
    assert off.shape == base.shape and off.smooth == base.smooth


def test_settled_sets_the_steps_a_frame_settles_after_and_base_restores_them():
    main_steps = fit_module.FRAME_SETTLED_STEPS
    smplx_ab.apply("settled1+elbowk6")
    assert (fit_module.FRAME_SETTLED_STEPS, fit_module.ELBOW_SHARED_STEPS) == (1, 6)
    smplx_ab.apply("base")
    assert fit_module.FRAME_SETTLED_STEPS == main_steps and fit_module.ELBOW_SHARED_STEPS is None
