"""SMPL-X fitting speed: the clip-batched fitter vs SMPLify-X-style frame-by-frame L-BFGS.

Synthetic ground truth (annotate/smplx_synth.py): a 10 s, 25 fps clip, 512 px, known camera,
1.5 px landmark noise with drop-outs. The batched fitter (annotate/smplx_fit.py: per-frame
Levenberg-Marquardt on keyframes, then one temporal solve) runs on all 250 frames; the
per-frame fitter (the same objective without the temporal terms, torch L-BFGS with strong
Wolfe, each stage of each frame run to convergence from the same initialisation) runs on
every `--stride`-th frame (all frames with --stride 1); its frames/s is measured on those
frames and stands for the whole clip. Errors are mean reprojection px of the observed
points, against the noisy input and against the clean (noise-free) landmarks, both on the
per-frame fitter's frames; the goal compares the "vs clean" figures. Both run with the
same torch thread count (--threads, default 1). Both are timed in wall and in CPU seconds
(time.process_time: the wall clock of a loaded machine counts other jobs too). The last line
is the speed ratio, in CPU time and in wall time.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from annotate.correspondences import all_targets, gather_observations
from annotate.smplx_fit import fit_clip
from annotate.smplx_sparse import SparseSMPLX
from annotate.smplx_synth import make_motion, render_clip
from mentor.body import load_body_model


def errors(points2d, xy, conf, cxy, cconf):
    ok = np.isfinite(points2d).all(-1)
    m, mc = (conf > 0.5) & ok, (cconf > 0.5) & (conf > 0.5) & ok
    points2d = np.nan_to_num(points2d)
    e = np.linalg.norm(points2d - xy, axis=-1)
    ec = np.linalg.norm(points2d - cxy, axis=-1)
    return float((e * m).sum() / m.sum()), float((ec * mc).sum() / mc.sum())


def per_frame_fits(sparse, targets, xy, conf, camera, image_size, frames, device="cpu") -> list:
    """SMPLify-X's way, the per-frame baseline: each of `frames` fitted alone with L-BFGS to
    convergence (fit_clip(optimizer="lbfgs") on one frame). Returns one FitResult (of 1 frame)
    per frame, None where the frame has too few landmarks to start from (the batched fitter fills it).
    Also imported by benchmarks/smplx_truth.py."""
    out = []
    for t in frames:
        try:
            out.append(fit_clip(sparse, targets, xy[t:t + 1], conf[t:t + 1], camera, image_size, iterations=200,
                                optimizer="lbfgs", tolerance=1e-6, device=device))
        except ValueError:
            out.append(None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--stride", type=int, default=10, help="per-frame baseline on every n-th frame")
    ap.add_argument("--iterations", type=int, default=60, help="batched: cap on Gauss-Newton steps per stage")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    body = load_body_model()
    T = int(args.seconds * 25)
    clip = render_clip(body, make_motion(T, seed=1), seed=1)
    targets = all_targets()
    xy, conf = gather_observations(clip.arrays, targets, T, 0.5)
    cxy, cconf = gather_observations(clip.clean, targets, T, 0.5)
    sparse = SparseSMPLX(body, [t.point for t in targets])
    print(f"synthetic clip: {T} frames, 512 px, {len(targets)} landmarks, {len(sparse.sel)} skinned vertices, "
          f"{args.threads} thread(s), device {args.device}")

    cpu = time.process_time()
    res = fit_clip(sparse, targets, xy, conf, clip.camera, (512, 512), iterations=args.iterations, device=args.device)
    b_cpu = time.process_time() - cpu
    b_fps, b_cpu_fps = T / res.seconds, T / b_cpu
    frames = np.arange(0, T, args.stride)
    b_err = errors(res.points2d[frames], xy[frames], conf[frames], cxy[frames], cconf[frames])
    b_all = errors(res.points2d, xy, conf, cxy, cconf)
    print(f"batched:   {b_fps:7.2f} frames/s wall, {b_cpu_fps:7.2f} per CPU-s ({res.seconds:.1f} s, {b_cpu:.1f} CPU-s "
          f"for {T} frames, {res.evaluations} evaluations), "
          f"reprojection {b_err[0]:.2f} px vs input, {b_err[1]:.2f} px vs clean "
          f"(all frames: {b_all[0]:.2f} / {b_all[1]:.2f})")

    t0, cpu = time.perf_counter(), time.process_time()
    fits = per_frame_fits(sparse, targets, xy, conf, clip.camera, (512, 512), frames, device=args.device)
    pts = [r.points2d[0] if r is not None else np.full_like(xy[t], np.nan) for t, r in zip(frames, fits)]
    evals = sum(r.evaluations for r in fits if r is not None)
    secs, f_cpu = time.perf_counter() - t0, time.process_time() - cpu
    f_fps, f_cpu_fps = len(frames) / secs, len(frames) / f_cpu
    f_err = errors(np.stack(pts), xy[frames], conf[frames], cxy[frames], cconf[frames])
    print(f"per-frame: {f_fps:7.2f} frames/s wall, {f_cpu_fps:7.2f} per CPU-s ({secs:.1f} s, {f_cpu:.1f} CPU-s "
          f"for {len(frames)} frames, every {args.stride}th, "
          f"{evals / len(frames):.0f} evaluations a frame), "
          f"reprojection {f_err[0]:.2f} px vs input, {f_err[1]:.2f} px vs clean")
    load = os.getloadavg()
    print(f"speed ratio batched / per-frame: {b_cpu_fps / f_cpu_fps:.1f}x in CPU time, {b_fps / f_fps:.1f}x wall "
          f"(load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}: on a shared machine the CPU ratio is the one to compare)")


if __name__ == "__main__":
    main()
