"""The size-based focal guess against web cameras (issues 15 and 16): the joint focal fit
(smplx.focal_method "joint") on a talking clip whose true focal is 0.6-1.9x the image diagonal,
the person at the distance that fills the frame as at the truth's 1000 px and 1.9 m, fitted with
the focal given (the known-focal figure) and from guesses at a few multiples of the diagonal.

Printed per true focal and guess: the found focal / the true, PA-MPJPE (all joints) and its ratio to
the known focal's, the fit's CPU-seconds and their ratio to the known focal's fit (same run).

    python -m benchmarks.smplx_focal_guess [--truths 0.6,0.75,1.0,1.4,1.9] [--guesses 1.0,0.7] [--scenario talking]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import replace
from unittest import mock

from benchmarks.smplx_truth import measure, run_fitter

DISTANCE_AT_1000 = 1.9  # m: the talking (and beats) truth's at 1000 px (512x512): how full the frame is


def fit_once(body, truth, focal: float | None, guess: float | None, threads: int) -> dict:
    """The clip fitted with `focal` given, or from `guess` (px) fitted (the joint estimate)."""
    from annotate.smplx_fit import SmplxFitter
    from mentor.config import SmplxConfig

    fitter = SmplxFitter(SmplxConfig(focal_length=focal, device="cpu", threads=threads), body_model=body)
    with mock.patch("annotate.smplx_fit.estimate_focal", lambda w, h: guess):
        rec, fit = run_fitter(body, fitter, truth)
    if fit is None:
        return {"failed": rec.errors.get("smplx")}
    m = measure(truth, fit)
    return {"focal": m["focal"], "pa": m["pa"]["all"], "cpu": fit.cpu_seconds}


def main(argv: list[str] | None = None) -> dict:
    from mentor.body import load_body_model
    from mentor.body.scenarios import SCENARIOS, SIZE, make_truth

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truths", default="0.6,0.75,1.0,1.4,1.9", help="true focals, x the image diagonal")
    ap.add_argument("--guesses", default="1.0,0.7", help="guessed focals, x the image diagonal")
    ap.add_argument("--scenario", default="talking",
                    help="the truth scenario (mentor/body/scenarios.py) whose motion is fitted")
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    diagonal = math.hypot(SIZE, SIZE)
    body = load_body_model()
    load = os.getloadavg()
    if args.scenario not in SCENARIOS:
        raise SystemExit(f"--scenario {args.scenario!r}: choose one of {', '.join(SCENARIOS)}")
    print(f"{args.scenario}, {args.frames} frames, {SIZE}x{SIZE} (diagonal {diagonal:.0f} px), "
          f"{args.threads} thread(s), load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    out = {}
    for ratio in [float(r) for r in args.truths.split(",")]:
        true = ratio * diagonal
        scenario = replace(SCENARIOS[args.scenario], name=f"{args.scenario}_f{ratio:g}",
                           distance=DISTANCE_AT_1000 * true / 1000)
        truth = make_truth(body, scenario, args.frames, focal=true)
        known = fit_once(body, truth, true, None, args.threads)
        row = out[ratio] = {"true": true, "distance": scenario.distance, "known": known}
        print(f"true {ratio:g}x ({true:.0f} px, {scenario.distance:.2f} m): known focal PA-MPJPE "
              f"{known.get('pa', float('nan')):.1f} mm, {known.get('cpu', float('nan')):.1f} CPU-s")
        for scale in [float(g) for g in args.guesses.split(",")]:
            m = row[scale] = fit_once(body, truth, None, scale * diagonal, args.threads)
            if "failed" in m:
                print(f"  guess {scale:g}x: the fit failed: {m['failed']}")
                continue
            print(f"  guess {scale:g}x ({scale * diagonal:.0f} px): found {m['focal']:.0f} px = "
                  f"{m['focal'] / true:.2f}x the true; PA-MPJPE {m['pa']:.1f} mm = {m['pa'] / known['pa']:.2f}x "
                  f"the known focal's; "
                  f"CPU {m['cpu']:.1f} s = {m['cpu'] / known['cpu']:.2f}x", flush=True)
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in out.items()}, f, indent=1)
    return out


if __name__ == "__main__":
    main()
