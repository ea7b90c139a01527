"""mentor cost: per-stage core-seconds per raw/kept hour, the keep rate, and the plan at scale."""

import json

import pytest

from mentor.cli import main
from mentor.cost import load_summary, parse_gpu_stages, plan_cost

SUMMARY = {"hours_in": 2.0, "hours_out": 0.5, "clips_kept": 40,
           "stage_seconds": {"prepare": 720.0, "filter": 3600.0, "landmarks": 1800.0, "smplx": 900.0}}


def test_per_hour_figures_keep_rate_and_plan():
    plan = plan_cost(SUMMARY, kept_hours=100, raw_per_kept=10, cores=100, gpus=0)
    by = {s["stage"]: s for s in plan.stages}
    assert plan.measured["keep_rate"] == pytest.approx(0.25)
    assert by["filter"]["core_s_per_raw_h"] == pytest.approx(1800) and by["filter"]["core_s_per_kept_h"] == 7200
    # filter scales with raw hours (1000 h raw * 1800 core-s), landmarks with kept hours (100 h * 3600 core-s)
    assert by["filter"]["plan_core_hours"] == pytest.approx(1000 * 1800 / 3600)
    assert by["landmarks"]["plan_core_hours"] == pytest.approx(100 * 3600 / 3600)
    total = (1000 * (360 + 1800) + 100 * (3600 + 1800)) / 3600
    assert plan.core_hours == pytest.approx(total) and plan.wall_hours == pytest.approx(total / 100)
    assert plan.gpu_hours == 0


def test_gpu_stage_moves_its_work_to_gpus_and_wall_is_the_longer_side():
    plan = plan_cost(SUMMARY, kept_hours=100, raw_per_kept=10, cores=1000, gpus=2, gpu_stages={"smplx": 10})
    by = {s["stage"]: s for s in plan.stages}
    assert by["smplx"]["plan_core_hours"] == 0
    assert by["smplx"]["plan_gpu_hours"] == pytest.approx(100 * 1800 / 3600 / 10)
    assert plan.wall_hours == pytest.approx(max(plan.core_hours / 1000, plan.gpu_hours / 2))
    assert "smplx (1 GPU = 10 cores" in plan.render()


def test_bad_arguments_say_the_fix():
    with pytest.raises(ValueError, match="pass --gpus"):
        plan_cost(SUMMARY, gpus=0, gpu_stages={"smplx": 5})
    with pytest.raises(ValueError, match="not in the build's stages"):
        plan_cost(SUMMARY, gpus=1, gpu_stages={"nope": 5})
    with pytest.raises(ValueError, match="STAGE=N"):
        parse_gpu_stages(["smplx"])
    with pytest.raises(ValueError, match="nothing to scale"):
        plan_cost(dict(SUMMARY, hours_out=0.0))


def test_reads_a_run_folder_marker_and_the_cli(tmp_path, capsys):
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "build.done").write_text(json.dumps(
        {"step": "build", "fingerprint": "x", "result": {"summary": SUMMARY}}))
    assert load_summary(tmp_path)["hours_out"] == 0.5
    assert main(["cost", str(tmp_path), "--kept-hours", "100", "--cores", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["core_hours"] == pytest.approx((1000 * 2160 + 100 * 5400) / 3600)
    assert main(["cost", str(tmp_path / "missing.json")]) == 2
    assert "summary-json" in capsys.readouterr().err


def test_cpu_seconds_are_preferred_over_wall_seconds_when_the_build_recorded_them():
    with_cpu = dict(SUMMARY, stage_cpu_seconds={"prepare": 360.0, "filter": 1800.0, "landmarks": 900.0,
                                                "smplx": 450.0})
    by_wall = {s["stage"]: s for s in plan_cost(SUMMARY, kept_hours=100, cores=100).stages}
    plan = plan_cost(with_cpu, kept_hours=100, cores=100)
    by_cpu = {s["stage"]: s for s in plan.stages}
    for stage in SUMMARY["stage_seconds"]:  # every figure from the CPU seconds: half the wall ones here
        assert by_cpu[stage]["core_s_per_kept_h"] == pytest.approx(by_wall[stage]["core_s_per_kept_h"] / 2)
    assert any("CPU seconds" in n for n in plan.notes)
    assert any("wall seconds" in n for n in plan_cost(SUMMARY).notes)
