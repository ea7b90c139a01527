"""Interleaved A/B of SMPL-X fitter variants on issue 16's ground-truth scenarios: CPU per stage and accuracy.

On a shared box, CPU-s of one run swing +-15-30 % per stage with the load (the same code read 7.4
and 9.0 CPU-s on talking minutes apart, load 3-5 on 2 cores), so a variant judged against
main's figures from another run is noise. Here every variant runs in ONE process beside the
baseline, in alternating order (base, v1, .., vn, then vn, .., base), `--reps` times; each
stage's CPU is the least over the reps (what the code costs when the box lets it) and the
accuracy is deterministic per variant (seeded). Variants are patches of the fitter's module
(schedule fields, module constants), named in VARIANTS; join several with '+'.

One seed's PA-MPJPE moves by up to ~0.7 mm from a change that changes nothing that matters (jiggle99/101),
so `--seeds N` also draws each scenario at seeds scenario.seed + 1000 k (k = 1..N-1; "beats@1001"), and
a summary judges each variant against base over all scenarios x seeds: the mean PA-MPJPE change (all joints,
worst group), its spread, the worst single change, the worst scenario's mean over its seeds, issue 16's goals
(smplx_truth.goals, speed aside) that base met and the variant lost, and the CPU ratio (least of reps
summed over the fits). Long judgements run in pieces (--scenarios, --json) and are summed with --from-json.

    nice -n 19 .venv/bin/python -m benchmarks.smplx_ab --variants betas_free+steps10,steps10 --reps 2
    nice -n 10 .venv/bin/python -m benchmarks.smplx_ab --variants settle2 --scenarios all --seeds 3 --reps 1 --json a.json
    .venv/bin/python -m benchmarks.smplx_ab --from-json a.json,b.json

(betas_free+steps10 is main's schedule at ba65648: a no-op there, base's own schedule elsewhere.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import replace

import numpy as np
import torch

import annotate.smplx_fit as fit_module
from annotate.smplx_objective import DepthTerm

STAGES = ("setup", "camera", "body", "depth", "hands", "full", "shape", "neighbours", "smooth", "despike")
RESTARTS = ("elbow_restarts", "depth_restarts", "neighbour_restarts")
_SCHEDULE, _MOTION_KEYFRAMES = fit_module.default_schedule, fit_module.motion_keyframes
_PER_FRAME_CHOICE = fit_module.per_frame_choice
_FIT_CLIP = fit_module.fit_clip
_FOREARMS_SEEN, _HANDS_SEEN, _SEES_BONES = fit_module.forearms_seen, fit_module.hands_seen, DepthTerm.sees_bones
_BANDED = fit_module.banded_cholesky, fit_module.banded_solve
# --seeds: a variant is within the noise of one seed (session 14's jiggle99/101 moved one seed's PA-MPJPE by up
# to 0.7 mm) when its mean PA-MPJPE change over scenarios x seeds is at most ACCEPT_MEAN_MM, no scenario's mean
# over its seeds more than ACCEPT_SCENARIO_MM, and no goal of issue 16 that base met is lost
ACCEPT_MEAN_MM, ACCEPT_SCENARIO_MM = 0.15, 0.5
PICK_MOVED = 0.05  # rad (m for the translation): a pick this far from the first candidate changed the fit


def count_picks(into: dict) -> None:
    """From now on, each restart strategy's per-frame pick (RESTARTS) adds to into[strategy]:
    [frames picked from, frames whose pick moved a parameter > PICK_MOVED from the first candidate,
    the picks' cost gain over the first candidate as a share of its cost, the other candidates equal to the
    first (a frame not restarted: depth_restarts' unmirrored ones)]."""
    def choice(problem, candidates, pick):
        frame, caller = sys._getframe(1), None
        for _ in range(3):  # the strategy calls per_frame_choice directly or through best_of_starts
            if frame is None or caller:
                break
            caller, frame = (frame.f_code.co_name if frame.f_code.co_name in RESTARTS else None), frame.f_back
        if caller is None:
            return _PER_FRAME_CHOICE(problem, candidates, pick)

        def counted(costs, cands):
            best = pick(costs, cands)
            frames = torch.arange(cands.shape[1], device=cands.device)
            moved = (cands[best, frames] - cands[0]).abs().amax(-1) > PICK_MOVED
            gain = costs[0] - costs[best, frames]
            tally = into.setdefault(caller, [0, 0, 0.0, 0])
            tally[0] += int(cands.shape[1])
            tally[1] += int(moved.sum())
            tally[2] += float(gain.sum() / costs[0].sum().clamp(min=1e-12))
            tally[3] += int((cands[1:] == cands[0]).all(-1).sum())
            return best

        return _PER_FRAME_CHOICE(problem, candidates, counted)

    fit_module.per_frame_choice = choice


def _without(names: tuple[str, ...], dropped: str) -> tuple[str, ...]:
    return tuple(n for n in names if n != dropped)


STAGE_LETTERS = {"h": "hands", "f": "full", "n": "neighbours"}
PATTERNS = {  # variants named by a pattern: its parts in the name
    r"betas_out_[hfn]+": "those stages (h hands, f full, n neighbours) hold the betas",
    r"betas_free_[hfn]+": "those stages free the betas (main's schedule at ba65648: all three)",
    r"steps\d+": "hands and full stages capped at this many steps (main's at ba65648: 10)",
    r"(camera|body|depth|hands|full|shape|neighbours|smooth)\d+": "that stage capped at this many steps",
    r"settle\d+(_[cbdhfn]+)?": "keyframe stages (c camera, b body, d depth, h hands, f full, n neighbours; all "
                              "when none named) settle a frame after its accepted steps each gain < 1e-N",
    r"settled\d+": "keyframe_solve settles a frame after this many accepted steps each under its stage's settle_gain "
                   "(FRAME_SETTLED_STEPS; main's: 2)",
    r"elbowk\d+": "elbow_restarts: both starts for this many steps, then each frame's cheaper one alone",
    r"reread\d+": "z's unit read again from the arm bones after the full stage taken where it reads under N % of the "
                   "unit in use (KAPPA_REREAD; main's 100, 90 before session 15; 10000: always)",
    r"blend\d+": "z's unit tests (KAPPA_HELD, KAPPA_SCREEN, KAPPA_TRAPPED) as ramps of half-width N/100 (KAPPA_BLEND; "
                  "main's 10; 0: the steps before session 15), the 2D-only solve's unit taken at the weight "
                  "smplx_fit.unit_blend gives",
    r"despike_context\d+": "despiked's second temporal solve on windows: each run of zig-zag frames (widened by "
                            "DESPIKE_MARGIN) and N frames either side free, the 2 beyond held (DESPIKE_CONTEXT; main's 16; "
                            "0: the whole clip, as before session 16)",
    r"gain\d+": "the temporal solve stops past SMOOTH_STEPS steps where a step gained < N per mille (SMOOTH_GAIN)",
    r"damp\d+(_[cbdhfn]+)?": "keyframe stages (letters as settleN; all when none named) start each frame's "
                            "damping at 1e-N (main's: 1e-3)",
    r"shapew\d+(_[bdhfsn]+)?": "those stages (b body, d depth, h hands, f full, s shape, n neighbours; the shape stage "
                               "when none named) weigh the betas' prior at N per clip (main's: body, depth 50, shape 10, "
                               "the others 25)",
    r"steady\d+": "the shape stage reads a noisy clip's pose points through a local quadratic over N frames either "
                   "side (SHAPE_STEADY_HALF; 0: off)",
    r"jiggle\d+": "every keyframe stage's first damping at N % of its own (main: 1e-3; jiggle101: 1 % higher): how far a "
                  "change that changes nothing that matters moves the figures (the noise floor of one seed)",
}
_CONSTANTS = {"FRAME_SETTLED_STEPS": fit_module.FRAME_SETTLED_STEPS, "ELBOW_SHARED_STEPS": fit_module.ELBOW_SHARED_STEPS,
              "SMOOTH_GAIN": fit_module.SMOOTH_GAIN,
              "KAPPA_REREAD": fit_module.KAPPA_REREAD, "KAPPA_BLEND": fit_module.KAPPA_BLEND,
              "DESPIKE_CONTEXT": fit_module.DESPIKE_CONTEXT, "SHAPE_STEADY_HALF": fit_module.SHAPE_STEADY_HALF}
SETTLE_LETTERS = {"c": "camera", "b": "body", "d": "depth", "h": "hands", "f": "full", "n": "neighbours"}


def _constant_patch(part: str) -> None:
    """One named change of a module constant (PATTERNS settledN, elbowkN, gainN, despike_contextN, steadyN)."""
    if re.fullmatch(r"settled\d+", part):
        fit_module.FRAME_SETTLED_STEPS = int(part[len("settled"):])
    if re.fullmatch(r"elbowk\d+", part):
        fit_module.ELBOW_SHARED_STEPS = int(part[len("elbowk"):])
    if re.fullmatch(r"reread\d+", part):
        fit_module.KAPPA_REREAD = int(part[len("reread"):]) / 100
    if re.fullmatch(r"blend\d+", part):
        fit_module.KAPPA_BLEND = int(part[len("blend"):]) / 100
    if re.fullmatch(r"despike_context\d+", part):
        fit_module.DESPIKE_CONTEXT = int(part[len("despike_context"):])
    if re.fullmatch(r"steady\d+", part):
        fit_module.SHAPE_STEADY_HALF = int(part[len("steady"):])
    if re.fullmatch(r"gain\d+", part):
        fit_module.SMOOTH_GAIN = int(part[len("gain"):]) / 1000


def _schedule_patch(schedule, part: str):
    """One named schedule change (see VARIANTS and PATTERNS)."""
    if part.startswith(("betas_out", "betas_free")):  # those stages hold / free the shape
        letters = part.rsplit("_", 1)[1] if part.count("_") == 2 else "hfn"
        held = part.startswith("betas_out")
        return replace(schedule, **{n: replace(getattr(schedule, n), shape_per_clip=not held,
                                               free=(_without(getattr(schedule, n).free, "betas") if held
                                                     else fit_module.FLAT_ALL))
                                    for n in (STAGE_LETTERS[c] for c in letters)})
    settle = re.fullmatch(r"settle(\d+)(?:_([cbdhfn]+))?", part)
    if settle:  # those keyframe stages settle a frame whose accepted steps gain < 1e-N
        names = [SETTLE_LETTERS[c] for c in (settle[2] or "".join(SETTLE_LETTERS))]
        return replace(schedule, **{n: replace(getattr(schedule, n), settle_gain=10.0 ** -int(settle[1]))
                                    for n in names})
    def first_damping(names, value):  # value(stage's own first damping) -> those stages' new one
        return replace(schedule, **{n: replace(getattr(schedule, n), initial_damping=value(getattr(schedule, n)
                                                                                               .initial_damping))
                                    for n in names})

    damp = re.fullmatch(r"damp(\d+)(?:_([cbdhfn]+))?", part)
    if damp:  # those keyframe stages: each frame's damping starts at 1e-N
        return first_damping([SETTLE_LETTERS[c] for c in (damp[2] or "".join(SETTLE_LETTERS))],
                             lambda _: 10.0 ** -int(damp[1]))
    shapew = re.fullmatch(r"shapew(\d+)(?:_([bdhfsn]+))?", part)
    if shapew:  # those stages' betas prior (per clip: shape_per_clip)
        letters = {**SETTLE_LETTERS, "s": "shape"}
        return replace(schedule, **{letters[c]: replace(getattr(schedule, letters[c]), shape_weight=float(shapew[1]))
                                    for c in (shapew[2] or "s")})
    jiggle = re.fullmatch(r"jiggle(\d+)", part)
    if jiggle:  # the noise floor: every keyframe stage's first damping at N % of its own
        return first_damping(SETTLE_LETTERS.values(), lambda own: own * int(jiggle[1]) / 100)
    if part == "settle_off":  # every frame through all of each keyframe stage's steps
        return replace(schedule, **{n: replace(getattr(schedule, n), settle_gain=0.0) for n in SETTLE_LETTERS.values()})
    if part.startswith("steps"):  # hands and full: this many Gauss-Newton steps each
        steps = int(part[len("steps"):])
        return replace(schedule, hands=replace(schedule.hands, iterations=steps),
                       full=replace(schedule.full, iterations=steps))
    stage = re.fullmatch(r"([a-z]+)(\d+)", part)
    if stage and stage[1] in STAGES:  # one stage: this many steps
        return replace(schedule, **{stage[1]: replace(getattr(schedule, stage[1]), iterations=int(stage[2]))})
    if part == "smooth_noexpr":  # the temporal solve holds the keyframes' interpolated expression
        return replace(schedule, smooth=replace(schedule.smooth, free=_without(schedule.smooth.free, "expression")))
    return schedule


VARIANTS = {
    "base": "the fitter as it is in this tree",
    "betas_out": "hands, full and neighbours hold the betas (the Jacobian's shape columns and the pooled shape "
                 "only in body, depth and shape)",
    "betas_free": "hands, full and neighbours free the betas (main's schedule at ba65648)",
    "smooth_noexpr": "the temporal solve without the expression columns (112 -> 102 per frame; at 158affd smooth "
                     "stage 1.11x talking, 1.14x beats, expression r 0.80 -> 0.74, 0.78 -> 0.71: not taken)",
    "tiers": "smplx.motion_tiers on: the hands stage on the stride keyframes alone, the motion keyframes' hands "
             "and face from those fits interpolated (smplx_fit.hands_from_stride)",
    "tiers_off": "smplx.motion_tiers off: every keyframe through the hands stage",
    "settle_off": "no keyframe stage settles a frame (settle_gain 0: the fitter before KEYFRAME_SETTLE_GAIN)",
    "tol6": "motion keyframes only past 6 px off the line (smplx.motion_tolerance_px 3)",
    "banded_loop": "the temporal solve's banded Cholesky and solve as before session 16 (frame by frame, 13 ops a "
                   "frame, each result copied back from LAPACK's layout): the same step up to float32 rounding",
    "unseen_work": "the fitter before its gates on what no landmark sees: elbow restarts with no forearm seen, the "
                   "2D-only depth_unit solve with no arm bone's z seen, a hand's fingers free with its pose points alone",
}


def _banded_cholesky_loop(diag: torch.Tensor, next_: torch.Tensor, skip: torch.Tensor, workspace=None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """banded_cholesky as it was before session 16 (variant banded_loop): frame by frame, 13 ops a frame."""
    frames = diag.shape[0]
    factor0, factor1, factor2 = torch.empty_like(diag), torch.empty_like(next_), torch.empty_like(skip)
    failed = torch.zeros((), dtype=torch.int32, device=diag.device)
    for t in range(frames):
        block = diag[t]
        if t >= 2:  # L[t,t-2] = A[t,t-2] L[t-2,t-2]^-T
            lower2 = torch.linalg.solve_triangular(factor0[t - 2], skip[t - 2], upper=False).T
            factor2[t - 2] = lower2
            block = block - lower2 @ lower2.T
        if t >= 1:  # L[t,t-1] = (A[t,t-1] - L[t,t-2] L[t-1,t-2]^T) L[t-1,t-1]^-T
            rhs = next_[t - 1] if t < 2 else next_[t - 1] - factor1[t - 2] @ lower2.T
            lower1 = torch.linalg.solve_triangular(factor0[t - 1], rhs, upper=False).T
            factor1[t - 1] = lower1
            block = block - lower1 @ lower1.T
        factor0[t], info = torch.linalg.cholesky_ex(block)
        failed = failed + info  # checked once at the end (no device sync per frame)
    if int(failed) > 0 or not bool(torch.isfinite(factor0).all()):
        return None
    return factor0, factor1, factor2


def _banded_solve_loop(factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], b: torch.Tensor) -> torch.Tensor:
    """banded_solve as it was before session 16, on _banded_cholesky_loop's factors."""
    factor0, factor1, factor2 = factors
    frames = b.shape[0]
    y = torch.empty_like(b)
    for t in range(frames):  # L y = b
        rhs = b[t]
        if t >= 1:
            rhs = rhs - factor1[t - 1] @ y[t - 1]
        if t >= 2:
            rhs = rhs - factor2[t - 2] @ y[t - 2]
        y[t] = torch.linalg.solve_triangular(factor0[t], rhs[:, None], upper=False)[:, 0]
    x = torch.empty_like(b)
    for t in range(frames - 1, -1, -1):  # L^T x = y
        rhs = y[t]
        if t + 1 < frames:
            rhs = rhs - factor1[t].T @ x[t + 1]
        if t + 2 < frames:
            rhs = rhs - factor2[t].T @ x[t + 2]
        x[t] = torch.linalg.solve_triangular(factor0[t].T, rhs[:, None], upper=True)[:, 0]
    return x


def known(part: str) -> bool:
    return part in VARIANTS or any(re.fullmatch(p, part) for p in PATTERNS)


def apply(variant: str) -> None:
    """Patch annotate.smplx_fit for `variant` ('+'-joined names of VARIANTS); 'base' undoes every patch."""
    parts = variant.split("+")
    unknown = [p for p in parts if not known(p)]
    if unknown:
        raise ValueError(f"smplx_ab: unknown variant(s) {unknown}: use {', '.join(VARIANTS)} or a name matching "
                         f"{', '.join(PATTERNS)} (joined with '+')")

    def schedule(iterations: int):
        out = _SCHEDULE(iterations)
        for part in parts:
            out = _schedule_patch(out, part)
        return out

    fit_module.default_schedule = schedule
    for name, value in _CONSTANTS.items():
        setattr(fit_module, name, value)
    for part in parts:
        _constant_patch(part)
    tiers = [p != "tiers_off" for p in parts if p in ("tiers", "tiers_off")]
    fit_module.fit_clip = (_FIT_CLIP if not tiers
                           else lambda *a, **k: _FIT_CLIP(*a, **{**k, "motion_tiers": tiers[-1]}))
    fit_module.motion_keyframes = ((lambda *a, **k: _MOTION_KEYFRAMES(*a, **{**k, "min_tolerance_px": 6.0}))
                                   if "tol6" in parts else _MOTION_KEYFRAMES)
    unseen = "unseen_work" in parts
    fit_module.forearms_seen = (lambda observed: True) if unseen else _FOREARMS_SEEN
    fit_module.hands_seen = (lambda targets: (True, True)) if unseen else _HANDS_SEEN
    DepthTerm.sees_bones = (lambda self: True) if unseen else _SEES_BONES
    fit_module.banded_cholesky, fit_module.banded_solve = ((_banded_cholesky_loop, _banded_solve_loop)
                                                           if "banded_loop" in parts else _BANDED)


def _goal_key(text: str) -> str:
    """A goal's text from smplx_truth.goals without the figures it quotes (the same goal across variants)."""
    return text.split(" (")[0]


def fit_label(name: str, k: int, seed: int) -> str:
    """The scenario's name at its own seed (k 0), name@seed at the others."""
    return name if k == 0 else f"{name}@{seed}"


def base_name(label: str) -> str:
    return label.split("@")[0]


def print_tables(results: dict, frames: int, reps: int) -> None:
    """Per scenario (and seed): each variant's least CPU per stage, its speed against base's, its accuracy."""
    for label, runs in results.items():
        base = min(runs["base"]["cpu"])
        loads = [x for r in runs.values() for x in r["load"]]
        print(f"\n{label}, {frames} frames: least CPU-s of {reps} interleaved runs (load {min(loads):.1f}-"
              f"{max(loads):.1f} on {os.cpu_count()} CPUs); accuracy per variant (deterministic)")
        print("variant".ljust(34) + " ".join(s[:6].rjust(6) for s in STAGES)
              + " |   cpu f/CPU-s  x base | PA all worst    2D  jit3D forearm flips bones% betas r")
        for v, run in runs.items():
            cpu, f = min(run["cpu"]), run["figures"]
            run["least_stages"] = {s: min(st.get(s, 0.0) for st in run["stages"]) for s in STAGES}
            print(v.ljust(34) + " ".join(f"{run['least_stages'][s]:6.2f}" for s in STAGES)
                  + f" | {cpu:5.2f} {frames / cpu:7.1f} {base / cpu:5.2f}x | {f['pa_all']:6.1f} {f['pa_worst']:5.1f}"
                  f" {f['err2d']:5.2f} {f['jitter3d_ratio']:6.2f} {f['forearm_deg']:7.1f} {100 * f['flip_share']:4.1f}%"
                  f" {f['bone_pct_worst']:6.2f} {f['betas_r']:7.2f}")
        print(f"{label}: ratio of base's least CPU-s to each variant's: "
              + ", ".join(f"{v} {base / min(run['cpu']):.2f}x" for v, run in runs.items() if v != "base"))


def summarize(results: dict) -> dict:
    """Each variant against base over every scenario x seed it ran on: the PA-MPJPE change (all joints and the
    worst group: mean, spread, the worst single one, the worst scenario's mean over its seeds), the goals of
    issue 16 that base met and it did not (and the other way), the CPU ratio (base's least CPU-s summed over the
    fits / the variant's), and whether it is within the noise (ACCEPT_MEAN_MM, ACCEPT_SCENARIO_MM, no goal lost)."""
    variants = [v for v in dict.fromkeys(v for runs in results.values() for v in runs) if v != "base"]
    out = {}
    for v in variants:
        labels = [lb for lb, runs in results.items() if v in runs and "base" in runs]
        if not labels:
            continue
        d_all = np.array([results[lb][v]["figures"]["pa_all"] - results[lb]["base"]["figures"]["pa_all"]
                          for lb in labels])
        d_worst = np.array([results[lb][v]["figures"]["pa_worst"] - results[lb]["base"]["figures"]["pa_worst"]
                            for lb in labels])
        per_scenario: dict[str, list[float]] = {}
        for lb, d in zip(labels, d_all):
            per_scenario.setdefault(base_name(lb), []).append(float(d))
        scenario_means = {n: float(np.mean(ds)) for n, ds in per_scenario.items()}
        lost, gained, missed = [], [], []
        for lb in labels:
            met_base, met_v = results[lb]["base"].get("goals", {}), results[lb][v].get("goals", {})
            missed += [f"{lb}: {g}" for g, ok in met_base.items() if not ok]
            lost += [f"{lb}: {g}" for g, ok in met_base.items() if ok and met_v.get(g) is False]
            gained += [f"{lb}: {g}" for g, ok in met_base.items() if not ok and met_v.get(g) is True]
        base_cpu = np.array([min(results[lb]["base"]["cpu"]) for lb in labels])
        cpu = np.array([min(results[lb][v]["cpu"]) for lb in labels])
        worst = int(d_all.argmax())
        worst_scenario = max(scenario_means, key=scenario_means.get)
        out[v] = {"fits": len(labels), "pa_all_mean": float(d_all.mean()), "pa_all_sd": float(d_all.std()),
                  "pa_worst_mean": float(d_worst.mean()), "worst_change": (labels[worst], float(d_all[worst])),
                  "scenario_means": scenario_means, "worst_scenario": (worst_scenario, scenario_means[worst_scenario]),
                  "goals_lost": lost, "goals_gained": gained, "base_missed": missed, "cpu_ratio": float(base_cpu.sum() / cpu.sum()),
                  "cpu_ratio_range": (float((base_cpu / cpu).min()), float((base_cpu / cpu).max())),
                  "within_noise": bool(d_all.mean() <= ACCEPT_MEAN_MM and scenario_means[worst_scenario]
                                       <= ACCEPT_SCENARIO_MM and not lost)}
    return out


def print_summary(summary: dict) -> None:
    if not summary:
        return
    names = list(dict.fromkeys(n for s in summary.values() for n in s["scenario_means"]))
    print("\nPA-MPJPE all joints, change against base (mm), each scenario's mean over its seeds:")
    print("scenario".ljust(16) + "".join(v[:22].rjust(23) for v in summary))
    for n in names:
        print(n.ljust(16) + "".join((f"{s['scenario_means'][n]:+.2f}" if n in s["scenario_means"] else "-").rjust(23)
                                    for s in summary.values()))
    print(f"\nsummary against base over scenarios x seeds (within the noise: mean change <= +{ACCEPT_MEAN_MM} mm, no "
          f"scenario's mean over its seeds > +{ACCEPT_SCENARIO_MM} mm, no goal lost):")
    for v, s in summary.items():
        print(f"{v}: {s['fits']} fits; PA-MPJPE all {s['pa_all_mean']:+.2f} mm mean (sd {s['pa_all_sd']:.2f}), worst "
              f"group {s['pa_worst_mean']:+.2f}; worst single {s['worst_change'][1]:+.2f} ({s['worst_change'][0]}), "
              f"worst scenario {s['worst_scenario'][1]:+.2f} ({s['worst_scenario'][0]}); goals lost "
              f"{len(s['goals_lost'])}" + "".join(f"\n    lost   {g}" for g in s["goals_lost"])
              + f"; gained {len(s['goals_gained'])}" + "".join(f"\n    gained {g}" for g in s["goals_gained"])
              + f"\n    CPU ratio base / {v} {s['cpu_ratio']:.2f}x (per fit {s['cpu_ratio_range'][0]:.2f}-"
              f"{s['cpu_ratio_range'][1]:.2f}x); {'within the noise' if s['within_noise'] else 'NOT within the noise'}")
    missed = next(iter(summary.values()))["base_missed"]
    print(f"base itself misses {len(missed)} goal(s) at these scenarios x seeds (a goal near its line moves with the "
          "seed too)" + "".join(f"\n    {g}" for g in missed))


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.smplx_truth import (SCENARIOS, goals, load_body_model, make_truth, measure, run_fitter,
                                        seen_betas)
    from mentor.config import SmplxConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default=None,
                    help=f"comma-separated; each one or '+'-joined: {', '.join([*VARIANTS, *PATTERNS])}")
    ap.add_argument("--scenarios", default="talking,beats")
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--reps", type=int, default=2, help="interleaved runs of each variant (the least CPU is kept)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="each scenario also drawn at seeds scenario.seed + 1000 k, k = 1..N-1 (named scenario@seed): "
                         "a change judged over several seeds, not one seed's noise")
    ap.add_argument("--count-picks", action="store_true",
                    help="also count, per restart strategy, the frames whose pick is not their first candidate")
    ap.add_argument("--json", default=None)
    ap.add_argument("--from-json", default=None,
                    help="comma-separated --json files of earlier runs (pieces of one judgement): their tables and "
                         "summary, no fit")
    args = ap.parse_args(argv)
    if args.from_json:
        results = {}
        for path in args.from_json.split(","):
            with open(path) as fh:
                for label, runs in json.load(fh).items():
                    results.setdefault(label, {}).update(runs)
        print_tables(results, args.frames, min(len(r["cpu"]) for runs in results.values() for r in runs.values()))
        print_summary(summarize(results))
        return results
    if not args.variants:
        ap.error("--variants is required (or --from-json)")
    if args.seeds < 1:
        ap.error(f"--seeds {args.seeds}: use 1 or more (1: each scenario at its own seed only)")
    if args.scenarios == "all":
        args.scenarios = ",".join(SCENARIOS)
    variants = ["base"] + [v for v in args.variants.split(",") if v and v != "base"]
    for v in variants:
        apply(v)  # a bad name fails here, before any fit
    apply("base")
    torch.set_num_threads(1)
    body = load_body_model()
    results: dict = {}
    for k in range(args.seeds):
        for name in args.scenarios.split(","):
            sc = SCENARIOS[name]
            sc = replace(sc, seed=sc.seed + 1000 * k)
            label = fit_label(name, k, sc.seed)
            cfg = SmplxConfig(focal_length=1000.0 if sc.focal_known else None, device="cpu", threads=1)
            truth = make_truth(body, sc, args.frames, keyframe_stride=cfg.keyframe_stride)
            beta_px = seen_betas(body, truth, [t.point for t in fit_module.SmplxFitter(cfg, body_model=body).targets])
            for rep in range(args.reps):
                for v in (variants if rep % 2 == 0 else variants[::-1]):
                    apply(v)
                    picks: dict = {}
                    if args.count_picks:
                        count_picks(picks)
                    rec, fit = run_fitter(body, fit_module.SmplxFitter(cfg, body_model=body), truth)
                    fit_module.per_frame_choice = _PER_FRAME_CHOICE
                    apply("base")
                    m = measure(truth, fit, beta_px=beta_px)
                    run = results.setdefault(label, {}).setdefault(v, {"cpu": [], "stages": [], "load": []})
                    run["cpu"].append(fit.cpu_seconds)
                    run["stages"].append(rec.annotations["smplx"]["stage_cpu_seconds"])
                    run["load"].append(os.getloadavg()[0])
                    groups = {k_: x for k_, x in m["pa"].items() if k_ not in ("all", "worst")}
                    run["figures"] = {"pa_all": m["pa"]["all"], "pa_worst": max(groups.values()), "err2d": m["err2d"],
                                      "jitter3d_ratio": m["jitter3d_ratio"], "forearm_deg": m["forearm_deg"],
                                      "flip_share": m["flip_share"], "bone_pct_worst": m["bone_pct_worst"],
                                      "betas_r": m["betas_r"], "expression_r": m["expression_r"], "jaw_r": m["jaw_r"]}
                    # issue 16's goals at this scenario and seed, speed aside (smplx_truth.goals; the focal one
                    # against talking at the same seed and variant where it ran before)
                    known = results.get(fit_label("talking", k, SCENARIOS["talking"].seed + 1000 * k), {}).get(v)
                    known = {"talking": {"pa": {"all": known["figures"]["pa_all"]}}} if known else {}
                    run["goals"] = {_goal_key(text): met for text, met in goals(name, m, known, args.frames, 1)
                                    if met is not None and "per CPU-s" not in text}
                    run["picks"] = picks
                    f = run["figures"]
                    print(f"{label} rep {rep} {v}: {fit.cpu_seconds:.2f} CPU-s, load {run['load'][-1]:.1f}; PA "
                          f"{f['pa_all']:.2f} ({f['pa_worst']:.2f}) mm, jitter {f['jitter3d_ratio']:.2f}x, flips "
                          f"{100 * f['flip_share']:.1f} %, bones {f['bone_pct_worst']:.2f} %, betas r {f['betas_r']:.2f}, "
                          f"expression r {f['expression_r']:.3f}"
                          + "".join(f"; {k_}: {moved} of {n} frames moved by the pick, their cost gain {100 * gain:+.2f} %"
                                    f", {same} candidates equal to the first"
                                    for k_, (n, moved, gain, same) in picks.items()),
                          flush=True)
    print_tables(results, args.frames, args.reps)
    print_summary(summarize(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
    return results


if __name__ == "__main__":
    main()
