"""The SMPL-X fit's temporal solve alone, re-run under variants on one keyframe fit (issue 16's jitter).

Each scenario's fit runs once up to its keyframes' last stage (fit_clip's stop_after); its
temporal solve (the "smooth" stage) and the result are then finished once per variant from that
same state, in one process: a change to the smoothing is judged on accuracy (deterministic, as
benchmarks/smplx_truth's figures) at the cost of one smooth stage per variant, not a whole fit.
Variants patch annotate.smplx_fit (VARIANTS; join several with '+'); each is judged against the
baseline "base" (the fitter as it is in this tree), finished from the same keyframes in the same run.
Not for speed: CPU-s of one stage between variants are the box's noise (use benchmarks/smplx_ab).

    nice -n 10 .venv/bin/python -m benchmarks.smooth_ab --scenarios switch,near_1px --variants despike0,again
"""

from __future__ import annotations

import argparse
import json
import os
import re

import torch

import annotate.smplx_fit as fit_module

_FIT_CLIP, _DESPIKED, _DESPIKE_STEPS = fit_module.fit_clip, fit_module.despiked, fit_module.DESPIKE_STEPS
_TEMPORAL_SOLVE = fit_module.temporal_solve
_SMOOTH_GAIN = fit_module.SMOOTH_GAIN
SOLVES: list[tuple[float, float]] = []  # each temporal solve's (data cost, temporal cost) at its end


def _recorded_solve(problem, x, progress, rho_2d=0.0, rho_param=0.0):
    """fit.temporal_solve, its end's costs appended to SOLVES."""
    out = _TEMPORAL_SOLVE(problem, x, progress, rho_2d, rho_param)
    with torch.no_grad():
        uv, points = problem.project_points(out)
        SOLVES.append((float(problem.frame_costs(out, uv=uv).sum()),
                       float(fit_module.temporal_cost(problem.objective, out, uv, rho_2d, rho_param, points))))
    return out


PATTERNS = {
    r"steps(\d+)": "the second solve of despiked capped at this many steps (fit.DESPIKE_STEPS)",
    r"again": "the temporal solve run twice (the second from the first's end: what more steps alone do)",
    r"despike(\d+)": "depth zig-zags past this many px/frame^2 solved again (smplx.smooth_despike_px's; 0: off)",
    r"gain(\d+)": "the temporal solve stops past fit.SMOOTH_STEPS steps where a step gained < N per mille (SMOOTH_GAIN)",
}
VARIANTS = {"base": "the fitter as it is in this tree"}


def apply(variant: str) -> None:
    """Patch annotate.smplx_fit for `variant` ('+'-joined); 'base' undoes every patch."""
    fit_module.despiked, fit_module.DESPIKE_STEPS = _despike_at(None), _DESPIKE_STEPS
    fit_module.SMOOTH_GAIN = _SMOOTH_GAIN
    for part in variant.split("+"):
        if part == "base":
            continue
        if re.fullmatch(r"steps\d+", part):
            fit_module.DESPIKE_STEPS = int(part[len("steps"):])
            continue
        if re.fullmatch(r"gain\d+", part):
            fit_module.SMOOTH_GAIN = int(part[len("gain"):]) / 1000
            continue
        if part == "again":
            fit_module.despiked = lambda x, smoothing, flat, focal, threshold, solve, *_: solve(x)
            continue
        if re.fullmatch(r"despike\d+", part):
            fit_module.despiked = _despike_at(float(part[len("despike"):]))
            continue
        raise ValueError(f"smooth_ab: unknown variant {part!r}: use {', '.join(VARIANTS)} or a name matching "
                         f"{', '.join(PATTERNS)} (joined with '+')")


ZIGZAG_FRAMES: list[int] = []  # the frames each despiked call found to solve again (0: none)


def _despike_at(threshold: float | None):
    """fit.despiked at this threshold whatever the config's (None: the config's; 0: off), counting the
    frames it solves again in ZIGZAG_FRAMES; called only where the config's is on."""
    def despiked(x, smoothing, flat, focal, configured, solve, *rest):
        at = configured if threshold is None else threshold
        with torch.no_grad():
            ZIGZAG_FRAMES.append(int(smoothing.zigzags(flat(x, None), focal, at).sum()) if at > 0 else 0)
        return x if at <= 0 else _DESPIKED(x, smoothing, flat, focal, at, solve, *rest)
    return despiked


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.smplx_truth import SCENARIOS, load_body_model, make_truth, measure, run_fitter, seen_betas
    from mentor.config import SmplxConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", required=True, help="comma-separated; each one or '+'-joined: "
                    + ", ".join([*VARIANTS, *PATTERNS]))
    ap.add_argument("--scenarios", default="switch")
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.scenarios == "all":
        args.scenarios = ",".join(SCENARIOS)
    variants = ["base"] + [v for v in args.variants.split(",") if v and v != "base"]
    for v in variants:
        apply(v)  # a bad name fails here, before any fit
    apply("base")
    torch.set_num_threads(1)
    body = load_body_model()
    results: dict = {}
    print(f"temporal solve re-run per variant, {args.frames} frames, load {os.getloadavg()[0]:.1f}")
    for name in args.scenarios.split(","):
        sc = SCENARIOS[name]
        cfg = SmplxConfig(focal_length=1000.0 if sc.focal_known else None, device="cpu", threads=1)
        truth = make_truth(body, sc, args.frames, keyframe_stride=cfg.keyframe_stride)
        fitter = fit_module.SmplxFitter(cfg, body_model=body)
        beta_px = seen_betas(body, truth, [t.point for t in fitter.targets])
        held: list = []

        def resumed(*a, **k):  # the keyframe fit once (the annotator's own call), its finish per variant
            if k.get("stop_after") is not None:  # a focal search's own stops: as they are
                return _FIT_CLIP(*a, **k)
            if not held:
                held.append(_FIT_CLIP(*a, **{**k, "stop_after": "neighbours"}))
            return held[0].finish()

        fit_module.fit_clip, fit_module.temporal_solve = resumed, _recorded_solve
        try:
            for v in variants:
                apply(v)
                ZIGZAG_FRAMES.clear()
                SOLVES.clear()
                rec, fit = run_fitter(body, fitter, truth)
                apply("base")
                m = measure(truth, fit, beta_px=beta_px)
                groups = {k: x for k, x in m["pa"].items() if k != "all"}
                f = results.setdefault(name, {})[v] = {
                    "pa_all": m["pa"]["all"], "pa_worst": max(groups.values()), "pa": m["pa"], "err2d": m["err2d"],
                    "jitter3d_ratio": m["jitter3d_ratio"], "forearm_deg": m["forearm_deg"],
                    "flip_share": m["flip_share"], "bone_pct_worst": m["bone_pct_worst"], "betas_r": m["betas_r"],
                    "zigzag_frames": list(ZIGZAG_FRAMES), "solves": list(SOLVES)}
                print(f"{name:13s} {v:24s} PA {f['pa_all']:6.3f} ({f['pa_worst']:6.3f}) mm, 2D {f['err2d']:.3f} px,"
                      f" jitter {f['jitter3d_ratio']:.3f}x, forearm {f['forearm_deg']:.2f} deg,"
                      f" flips {100 * f['flip_share']:.1f} %, bones {f['bone_pct_worst']:.2f} %, zig-zag frames"
                      f" {f['zigzag_frames']}; solves' (data, temporal) cost "
                      + ", ".join(f"({d:.0f}, {t:.0f})" for d, t in SOLVES), flush=True)
        finally:
            fit_module.fit_clip, fit_module.temporal_solve = _FIT_CLIP, _TEMPORAL_SOLVE
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
