"""`mentor cost`: what building a dataset costs, from a build's own measurements.

A build summary (`mentor build --summary-json FILE`, or the one `mentor run` keeps in
RUN/steps/build.done) records the worker seconds of every stage summed over clips (each
clip step holds one core: MediaPipe, ffmpeg and torch run one thread per call) and the
hours of raw video seen and of clips kept. From those:

- per stage: core-seconds per hour of raw video and per hour of kept video (GPU-seconds
  when the build ran that stage on GPUs; a CPU build measures none);
- the keep rate (kept hours / raw hours);
- the plan for a set of K kept hours from R raw hours (MENTOR: 2,200 kept from about 10x
  that raw) on C cores and G GPUs: core-hours, GPU-hours and wall time.

The scaling model, stated in the output: the stages that look at every raw second
(`prepare`: fetch, probe, shots; `filter`: tracking and the filters) scale with the raw
hours; every later stage runs on the clips the filter passed and scales with the kept
hours (its measured cost per kept hour includes the clips a later stage rejected, at the
measured build's rejection mix). A stage moved to GPUs (`gpu_stages`, as STAGE=N: one GPU
does the work of N cores of that stage, a figure you measured) leaves the CPU total. Wall
time assumes the work spreads over every core and GPU (ideal scaling; multiply by your
cluster's measured efficiency) and that CPU and GPU stages overlap (the longer one wins).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAW_STAGES = ("prepare", "filter")  # scale with the raw hours; every other stage with the kept hours


def load_summary(path: str | Path) -> dict[str, Any]:
    """A build summary dict from a JSON file, a `mentor run` folder or its build marker."""
    p = Path(path)
    for candidate in (p / "steps" / "build.done", p):
        if candidate.is_file():
            try:
                d = json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"{candidate}: not a readable JSON build summary ({e})") from None
            d = d.get("result", {}).get("summary", d) if "fingerprint" in d else d
            if "stage_seconds" not in d or "hours_in" not in d:
                raise ValueError(f"{candidate}: no stage_seconds/hours_in; give `mentor build --summary-json` "
                                 "output or a `mentor run` folder")
            return d
    raise ValueError(f"{p}: not a build summary JSON nor a `mentor run` folder with steps/build.done; write one "
                     "with `mentor build CONFIG --summary-json FILE`")


@dataclass
class CostPlan:
    kept_hours: float
    raw_hours: float
    cores: int
    gpus: int
    measured: dict[str, Any]  # hours_in, hours_out, keep_rate, clips
    stages: list[dict[str, Any]] = field(default_factory=list)
    core_hours: float = 0.0
    gpu_hours: float = 0.0
    wall_hours: float = 0.0
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        m = self.measured
        lines = [f"measured build: {m['hours_in']:.4f} h raw -> {m['hours_out']:.4f} h kept "
                 f"(keep rate {100 * m['keep_rate']:.1f} %, {m['clips']} clips kept)",
                 f"{'stage':<12} {'core-s/raw h':>13} {'core-s/kept h':>14} {'GPU-s/kept h':>13} {'scales with':>12}"
                 f" {'plan core-h':>12} {'plan GPU-h':>11}"]
        for s in self.stages:
            lines.append(f"{s['stage']:<12} {s['core_s_per_raw_h']:>13.0f} {s['core_s_per_kept_h']:>14.0f} "
                         f"{s['gpu_s_per_kept_h']:>13.0f} {s['scales_with']:>12} {s['plan_core_hours']:>12.0f} "
                         f"{s['plan_gpu_hours']:>11.0f}")
        lines.append(f"plan: {self.kept_hours:,.0f} kept hours from {self.raw_hours:,.0f} raw hours: "
                     f"{self.core_hours:,.0f} core-hours + {self.gpu_hours:,.0f} GPU-hours; on {self.cores} cores"
                     f" and {self.gpus} GPUs about {self.wall_hours:,.1f} h wall ({self.wall_hours / 24:,.1f} days)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("kept_hours", "raw_hours", "cores", "gpus", "measured", "stages",
                                              "core_hours", "gpu_hours", "wall_hours", "notes")}


def plan_cost(summary: dict[str, Any], kept_hours: float = 2200.0, raw_per_kept: float = 10.0, cores: int = 512,
              gpus: int = 0, gpu_stages: dict[str, float] | None = None,
              core_hour_price: float | None = None, gpu_hour_price: float | None = None) -> CostPlan:
    """The plan (see the module docstring) from a build summary dict."""
    gpu_stages = dict(gpu_stages or {})
    for name, value in (("kept_hours", kept_hours), ("raw_per_kept", raw_per_kept)):
        if value <= 0:
            raise ValueError(f"{name}={value}: must be > 0")
    if cores < 1 or gpus < 0:
        raise ValueError(f"cores={cores}, gpus={gpus}: need at least one core and no negative GPUs")
    if gpu_stages and gpus == 0:
        raise ValueError(f"GPU stages {sorted(gpu_stages)} given but gpus=0: pass --gpus G")
    h_in, h_out = float(summary["hours_in"]), float(summary["hours_out"])
    if h_in <= 0 or h_out <= 0:
        raise ValueError(f"the build saw {h_in} h raw and kept {h_out} h: nothing to scale from (a resumed or "
                         "'nothing to do' build records only what it did itself); give the summary of a build that "
                         "made the clips (`mentor build --summary-json`), or build more video")
    # CPU seconds (every thread and ffmpeg child, pipelines.cpu) when the build recorded them
    secs = {k: float(v) for k, v in (summary.get("stage_cpu_seconds") or summary["stage_seconds"]).items()}
    unknown = set(gpu_stages) - set(secs)
    if unknown:
        raise ValueError(f"GPU stages {sorted(unknown)} are not in the build's stages ({', '.join(secs)})")
    gpu_measured = {k: float(v) for k, v in (summary.get("stage_gpu_seconds") or {}).items()}
    raw_hours = kept_hours * raw_per_kept
    plan = CostPlan(kept_hours, raw_hours, cores, gpus,
                    {"hours_in": h_in, "hours_out": h_out, "keep_rate": h_out / h_in,
                     "clips": int(summary.get("clips_kept", 0))})
    for stage, s in sorted(secs.items(), key=lambda kv: -kv[1]):
        raw_scaled = stage in RAW_STAGES
        per_raw, per_kept = s / h_in, s / h_out
        core_h = (per_raw * raw_hours if raw_scaled else per_kept * kept_hours) / 3600
        gpu_h = gpu_measured.get(stage, 0.0) / h_out * kept_hours / 3600
        if stage in gpu_stages:
            gpu_h += core_h / gpu_stages[stage]
            core_h = 0.0
        plan.stages.append({"stage": stage, "core_s_per_raw_h": per_raw, "core_s_per_kept_h": per_kept,
                            "gpu_s_per_kept_h": gpu_measured.get(stage, 0.0) / h_out,
                            "scales_with": "raw hours" if raw_scaled else "kept hours",
                            "plan_core_hours": core_h, "plan_gpu_hours": gpu_h})
    plan.core_hours = sum(s["plan_core_hours"] for s in plan.stages)
    plan.gpu_hours = sum(s["plan_gpu_hours"] for s in plan.stages)
    cpu_wall = plan.core_hours / cores
    gpu_wall = plan.gpu_hours / gpus if gpus else (float("inf") if plan.gpu_hours else 0.0)
    plan.wall_hours = max(cpu_wall, gpu_wall)
    plan.notes.append(f"keep rate of the plan: {100 / raw_per_kept:.1f} % (measured build: "
                      f"{100 * h_out / h_in:.1f} %); prepare and filter scale with raw hours, the rest with kept hours")
    plan.notes.append("stage seconds are CPU seconds (every thread of the worker and its ffmpeg children)"
                      if summary.get("stage_cpu_seconds") else
                      "stage seconds are a thread's wall seconds (a build before CPU seconds were recorded): a "
                      "machine busy with other work inflates them; measure on an idle node")
    plan.notes.append("wall time assumes ideal spreading over every core/GPU: multiply by your cluster's measured "
                      "efficiency (make bench: curation scaling)")
    if gpu_stages:
        plan.notes.append("on GPUs: " + ", ".join(f"{k} (1 GPU = {v:g} cores, your figure)" for k, v in
                                                  sorted(gpu_stages.items())))
    if core_hour_price is not None or gpu_hour_price is not None:
        money = plan.core_hours * (core_hour_price or 0) + plan.gpu_hours * (gpu_hour_price or 0)
        plan.notes.append(f"at {core_hour_price or 0:g}/core-hour and {gpu_hour_price or 0:g}/GPU-hour: {money:,.0f}")
    if "asr" in secs and secs["asr"] == 0:
        plan.notes.append("asr measured 0 s (skipped: no Whisper weights in the measured build); its cost is "
                          "not in the plan")
    return plan


def parse_gpu_stages(items: list[str]) -> dict[str, float]:
    """["smplx=20", ...] -> {"smplx": 20.0}; a bad item raises with the form expected."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = -1.0
        if not name or factor <= 0:
            raise ValueError(f"--gpu-stage {item!r}: use STAGE=N (one GPU does the work of N cores of that stage)")
        out[name] = factor
    return out
