"""Where the SMPL-X fit's 3D jitter is (issue 16's "3D jitter at most 1.3x the truth's").

For each scenario (benchmarks/smplx_truth's fit: the annotator on the ground truth's record),
the excess jitter, the mean norm of the second difference of the fit's ERROR (fit - truth, per
joint and frame, camera space), split
  per joint group   neck/head, shoulders, elbows, wrists (benchmarks.smplx_truth.GROUPS)
  per axis          camera x, y (image plane) and z (depth), each |d2| of that coordinate
  per frame kind    second differences centred on a keyframe (the keyframe solve's frames,
                    recorded from the fit) against those centred between keyframes: a seam
                    at the keyframes shows as more jitter on them
  observed          the joint seen by a confident in-frame landmark in the frame or not
                    (smplx.observed): an unseen joint's track is the prior's
beside the fit's own jitter and the truth's (mm/frame^2).

    python -m benchmarks.jitter_where --scenarios crossed,cut_chest --frames 250
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from benchmarks.smplx_truth import GROUPS, UPPER, jitter, record_for, run_fitter

AXES = ("x", "y", "z")


def second_norms(x: np.ndarray) -> np.ndarray:
    """(T,J,D) -> (T-2,J) |second difference| of each joint, per centre frame 1..T-2."""
    return np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1)


def where_jitter(fit_joints: np.ndarray, truth_joints: np.ndarray, keys: np.ndarray | None,
                 observed: np.ndarray | None) -> dict:
    """The excess jitter's split (mm/frame^2): fit_joints, truth_joints (T,55,3) metres; keys
    the keyframes (frame indices) or None; observed (T,55) bool or None."""
    error = (fit_joints - truth_joints) * 1000
    out = {"fit": jitter(fit_joints[:, UPPER]) * 1000, "truth": jitter(truth_joints[:, UPPER]) * 1000,
           "error": float(second_norms(error[:, UPPER]).mean())}
    body = {g: j for g, j in GROUPS.items() if g != "fingers"}
    out["groups"] = {g: float(second_norms(error[:, j]).mean()) for g, j in body.items()}
    out["groups_fit_ratio"] = {g: jitter(fit_joints[:, j]) / max(jitter(truth_joints[:, j]), 1e-12)
                               for g, j in body.items()}
    out["axes"] = {a: float(np.abs(error[2:, UPPER, k] - 2 * error[1:-1, UPPER, k] + error[:-2, UPPER, k]).mean())
                   for k, a in enumerate(AXES)}
    per = second_norms(error[:, UPPER])  # (T-2,8)
    if keys is not None:
        centre = np.arange(1, len(error) - 1)
        on_key = np.isin(centre, keys)
        out["on_keys"] = float(per[on_key].mean()) if on_key.any() else float("nan")
        out["between"] = float(per[~on_key].mean()) if (~on_key).any() else float("nan")
        out["keys"] = int(len(keys))
    if observed is not None:
        seen = observed[1:-1, UPPER].astype(bool)
        out["observed"] = float(per[seen].mean()) if seen.any() else float("nan")
        out["unobserved"] = float(per[~seen].mean()) if (~seen).any() else float("nan")
        out["unobserved_share"] = float((~seen).mean())
    return out


def run(names: list[str], frames: int) -> dict:
    import annotate.smplx_fit as smplx_fit
    from annotate.smplx_fit import SmplxFitter
    from mentor.body import load_body_model
    from mentor.body.scenarios import SCENARIOS, make_truth
    from mentor.config import SmplxConfig

    body = load_body_model()
    seen_keys: list[np.ndarray] = []
    interpolate = smplx_fit.interpolate

    def recording(x_keys, keys, num_frames):  # the fit's keyframes, as the temporal solve starts from them
        seen_keys.append(keys.cpu().numpy())
        return interpolate(x_keys, keys, num_frames)

    smplx_fit.interpolate = recording
    results = {}
    load = os.getloadavg()
    print(f"excess 3D jitter = mean |d2 (fit - truth)| mm/frame^2, {frames} frames, load {load[0]:.1f}")
    print(f"{'scenario':12s} {'ratio':>5s} {'error':>6s} | {'neck/hd':>7s} {'should':>6s} {'elbows':>6s} {'wrists':>6s}"
          f" | {'x':>5s} {'y':>5s} {'z':>5s} | {'on key':>6s} {'betw':>5s} | {'seen':>5s} {'unseen':>6s} (share)")
    try:
        for name in names:
            sc = SCENARIOS[name]
            cfg = SmplxConfig(focal_length=1000.0 if sc.focal_known else None, device="cpu", threads=1)
            truth = make_truth(body, sc, frames, keyframe_stride=cfg.keyframe_stride)
            seen_keys.clear()
            rec, fit = run_fitter(body, SmplxFitter(cfg, body_model=body), truth)
            if fit is None:
                print(f"{name}: the fit failed: {rec.errors.get('smplx')}")
                continue
            observed = rec.arrays["smplx.observed"].data.astype(bool)
            keys = seen_keys[-1] if seen_keys else None
            m = results[name] = where_jitter(fit.joints, truth.joints, keys, observed)
            g, a = m["groups"], m["axes"]
            print(f"{name:12s} {m['fit'] / m['truth']:5.2f} {m['error']:6.3f} | {g['neck/head']:7.3f} "
                  f"{g['shoulders']:6.3f} {g['elbows']:6.3f} {g['wrists']:6.3f} | {a['x']:5.3f} {a['y']:5.3f} "
                  f"{a['z']:5.3f} | {m.get('on_keys', np.nan):6.3f} {m.get('between', np.nan):5.3f} | "
                  f"{m['observed']:5.3f} {m['unobserved']:6.3f} ({m['unobserved_share']:.0%})")
            print(f"{'':12s} fit/truth jitter by group: " + ", ".join(
                f"{k} {v:.2f}" for k, v in m["groups_fit_ratio"].items()) + f"; truth {m['truth']:.3f} mm/f^2")
    finally:
        smplx_fit.interpolate = interpolate
    return results


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="crossed,toward,away,noise_2px,noise_4px,cut_chest,talking")
    ap.add_argument("--frames", type=int, default=250)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    return run([s.strip() for s in args.scenarios.split(",") if s.strip()], args.frames)


if __name__ == "__main__":
    main()
