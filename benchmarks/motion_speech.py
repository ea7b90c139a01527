"""Is speech -> mouth learned? Train briefly on CPU, then test on held-out speakers.

    python -m benchmarks.motion_speech [--clips 40] [--seconds 4] [--steps 3000] [--config small]
        [--samples 4] [--guidance 1 2] [--stitch parallel sequential] [--sample-steps 0 8]

1. A synthetic store (benchmarks/motion_data.py) of `--clips` talking bodies: espeak-ng
   sentences in several voices, the jaw opening with the speech envelope, the expression
   following the speech as a talking face's does (mouth open, rounding, fricatives,
   emphasis; a resting expression per identity; blinks and some of every coefficient
   random), the rest of the body moving on its own; identities split 3 train : 1 test.
   `--expression random` makes the store of mentor.synthstore instead (expression at random).
2. The motion model trains `--steps` steps on the train split (in this process; a run folder
   that already holds them is reused: only the scoring runs).
3. On every held-out clip, from its own audio and its first frame as the reference, for each
   guidance scale x window stitching x solver steps asked for:
   - r(jaw, envelope): Pearson correlation of the generated jaw opening (jaw_pose x) with
     the clip's speech envelope (mentor.testmedia.speech_envelope, as the data was made);
   - control: the same correlation when the jaw was generated from ANOTHER held-out
     clip's audio (should be near 0: the mouth follows the audio it is given);
   - LME (mm, models.metrics.motion) of the 20 lip landmarks of the posed body against the
     ground truth, head-aligned (the upper face fitted rigidly onto the truth's per frame),
     for the model (each sample scored alone, as VLOGGER reports it; with --samples > 1
     also the mean of the samples) and two baselines measured here on the same clips with
     the same alignment: the reference pose held still, and the mean training motion (the
     training split's mean motion, from the model's normalisation statistics, put on the
     reference).
Prints one table per setting; figures are means over the held-out clips (and samples).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch



def face_landmarks(body, params: dict[str, np.ndarray]) -> np.ndarray:
    """(T,68,3) SMPL-X face landmarks of the posed body (metres, camera space)."""
    from mentor.body import SmplxParams

    with torch.no_grad():
        return body(SmplxParams.from_dict(params)).landmarks.numpy().astype(np.float64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/bench/motion_speech")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--identities", type=int, default=12)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--config", default="small", help="small | tiny | base | a JSON file of model settings (models/motion_train.PRESETS)")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--guidance", type=float, nargs="*", default=[1.0, 2.0],
                    help="classifier-free guidance scales to score, each on the same clips (default 1 2)")
    ap.add_argument("--sample-steps", type=int, nargs="*", default=[0],
                    help="solver steps to score (0: the model's sample_steps)")
    ap.add_argument("--stitch", nargs="*", default=["parallel"], choices=["parallel", "sequential"],
                    help="how windows are joined in sampling (models/motion_sample.py)")
    ap.add_argument("--lip-weight", type=float, default=3.0,
                    help="weight of expression and jaw in the x0 loss (MotionTrainConfig.lip_weight)")
    ap.add_argument("--expression", default="speech", choices=["speech", "random"],
                    help="the store's expression: following the speech (benchmarks/motion_data.py) or random")
    ap.add_argument("--loader-workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    from benchmarks.motion_data import fast_synthetic_store
    from mentor.body import load_body_model
    from mentor.media import read_audio
    from mentor.store import Store
    from mentor.testmedia import speech_envelope
    from models.motion import decode_motion, encode_motion
    from models.metrics.motion import head_aligned, lip_landmark_error, lip_points
    from models.motion_sample import generate, load_motion_model
    from models.motion_train import MotionTrainConfig, model_preset, train_loop

    out = Path(args.out)
    t0 = time.perf_counter()
    tag = "" if args.expression == "random" else "-talk"
    root = fast_synthetic_store(out / f"store-{args.clips}x{args.seconds:g}s-{args.identities}id-seed{args.seed}{tag}",
                                args.clips, args.seconds, args.identities, seed=args.seed,
                                splits=("train", "train", "train", "test"), expression=args.expression)
    store = Store(root)
    clips = store.clips()
    print(f"store: {root} ({len(clips)} clips; {dict(clips['split'].value_counts())}; made/reused in "
          f"{time.perf_counter() - t0:.0f} s)")

    name = args.config if args.config in ("small", "tiny", "base") else Path(args.config).stem
    run = out / f"run-{name}-{args.steps}{tag}-lip{args.lip_weight:g}"
    model_cfg = model_preset(args.config)
    t1, c1 = time.perf_counter(), time.process_time()
    cfg = MotionTrainConfig(store=str(root), run_dir=str(run), steps=args.steps, batch_size=args.batch_size,
                            model=model_cfg, lr=1e-3, warmup_steps=50, log_every=50, ckpt_every=500,
                            seed=args.seed, loader_workers=args.loader_workers, lip_weight=args.lip_weight)
    result = train_loop(cfg.model_dump())
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"trained {result['step']} steps (resumed from {result['resumed_from']}) in "
          f"{time.perf_counter() - t1:.0f} s wall, {time.process_time() - c1:.0f} CPU-s in this process + "
          f"{children.ru_utime + children.ru_stime:.0f} CPU-s in loader processes; last loss "
          f"{result['last_loss']:.4f}; data wait {result['data_wait']:.1%}; load average {os.getloadavg()[0]:.1f}")

    model = load_motion_model(run)
    body = load_body_model(num_expression=model.layout.num_expression, num_pca_comps=model.layout.num_hand_pca)
    test_ids = list(clips[clips["split"] == "test"]["clip_id"])
    with tempfile.TemporaryDirectory() as tmp:
        recs = list(store.records(test_ids, media_dir=tmp))
        audio = {r.id: read_audio(r.files["audio"], 16000) for r in recs}
    fields = [k.split(".", 1)[1] for k in recs[0].arrays if k.startswith("smplx.") and k != "smplx.camera"]

    def lme(pred_params, gt_face):
        """(head-aligned LME, raw LME) in mm of the 20 lip landmarks."""
        face = face_landmarks(body, pred_params)
        return (lip_landmark_error(lip_points(head_aligned(face, gt_face)), lip_points(gt_face)),
                lip_landmark_error(lip_points(face), lip_points(gt_face)))

    feats = {r.id: r.arrays["audio.logmel"].data.reshape(len(r.arrays["audio.logmel"].data), -1) for r in recs}
    clip_data = []
    base = {k: [] for k in ("gt", "lme_still", "lme_mean", "raw_still", "raw_mean")}
    for rec in recs:  # ground truth and the two baselines (the same whatever the guidance)
        T = len(rec.arrays["smplx.transl"].data)
        gt = {f: rec.arrays[f"smplx.{f}"].data.astype(np.float32) for f in fields}
        ref = {f: v[0] for f, v in gt.items()}
        env = speech_envelope(audio[rec.id], 16000, rec.fps, T)
        gt_face = face_landmarks(body, gt)
        clip_data.append((rec, T, ref, env, gt_face))
        base["gt"].append(np.corrcoef(gt["jaw_pose"][:, 0], env)[0, 1])
        still = {f: np.repeat(v[None], T, 0) for f, v in ref.items()}
        mean_motion = model.motion_mean[None].expand(T, -1)
        mean = decode_motion(model.layout, mean_motion, {f: torch.as_tensor(v) for f, v in ref.items()})
        for name, params in (("still", still), ("mean", {f: mean[f].numpy() for f in fields})):
            a, r = lme(params, gt_face)
            base[f"lme_{name}"].append(a)
            base[f"raw_{name}"].append(r)
    bm = {k: float(np.nanmean(v)) for k, v in base.items()}
    bsd = {k: float(np.nanstd(v)) for k, v in base.items()}
    best = min(bm["lme_still"], bm["lme_mean"])
    guidances = args.guidance or [model.config.guidance_scale]
    print(f"\nheld-out: {len(recs)} clips of {args.seconds:g} s (test identities), {args.samples} sample(s) each")
    print(f"{'':34s} mean    sd")
    print(f"{'r(jaw, envelope) ground truth':34s} {bm['gt']:+.3f}  {bsd['gt']:.3f}")
    for name, label in (("still", "reference held still"), ("mean", "mean training motion")):
        print(f"{'LME mm ' + label:34s} {bm['lme_' + name]:.3f}  {bsd['lme_' + name]:.3f}   "
              f"(raw, head motion included: {bm['raw_' + name]:.2f})")
    combos = [(g, st, n) for g in guidances for st in args.stitch for n in args.sample_steps]
    for g, stitch, nsteps in combos:
        nsteps = nsteps or model.config.sample_steps
        rows = {k: [] for k in ("model", "control", "lme_model", "raw_model", "lme_avg", "raw_avg", "lme_best")}
        t2, c2 = time.perf_counter(), time.process_time()
        for i, (rec, T, ref, env, gt_face) in enumerate(clip_data):
            other = clip_data[(i + 1) % len(clip_data)][0]
            kw = dict(num_samples=args.samples, seed=args.seed + i, guidance=g, steps=nsteps, stitch=stitch)
            own = generate(model, feats[rec.id], ref, **kw)
            ctrl = generate(model, feats[other.id][:T], ref, **kw)
            per_sample = []
            for k in range(args.samples):
                rows["model"].append(np.corrcoef(own["jaw_pose"][k, :, 0], env)[0, 1])
                rows["control"].append(np.corrcoef(ctrl["jaw_pose"][k, :, 0], env)[0, 1])
                a, r = lme({f: own[f][k] for f in fields}, gt_face)
                per_sample.append(a)
                rows["lme_model"].append(a)
                rows["raw_model"].append(r)
            rows["lme_best"].append(min(per_sample))
            if args.samples > 1:  # the samples' mean motion (residuals averaged around the reference)
                tref = {f: torch.as_tensor(v) for f, v in ref.items()}
                res = encode_motion(model.layout, {f: torch.as_tensor(own[f]) for f in fields},
                                    {f: v[None].expand(args.samples, -1) for f, v in tref.items()}).mean(0)
                avg = decode_motion(model.layout, res, tref)
                a, r = lme({f: avg[f].numpy() for f in fields}, gt_face)
                rows["lme_avg"].append(a)
                rows["raw_avg"].append(r)
        m = {k: float(np.nanmean(v)) if v else float("nan") for k, v in rows.items()}
        sd = {k: float(np.nanstd(v)) if v else float("nan") for k, v in rows.items()}
        print(f"-- guidance {g:g}, {stitch} windows, {nsteps} solver steps (sampling and scoring {time.perf_counter() - t2:.0f} s wall, "
              f"{time.process_time() - c2:.0f} CPU-s)")
        print(f"{'r(jaw, envelope) model':34s} {m['model']:+.3f}  {sd['model']:.3f}")
        print(f"{'r(jaw, envelope) control audio':34s} {m['control']:+.3f}  {sd['control']:.3f}")
        print(f"{'LME mm model (one sample)':34s} {m['lme_model']:.3f}  {sd['lme_model']:.3f}   "
              f"(raw, head motion included: {m['raw_model']:.2f})")
        if args.samples > 1:
            print(f"{'LME mm mean of the samples':34s} {m['lme_avg']:.3f}  {sd['lme_avg']:.3f}   "
                  f"(raw, head motion included: {m['raw_avg']:.2f})")
            print(f"{'LME mm best of the samples (GT)':34s} {m['lme_best']:.3f}  {sd['lme_best']:.3f}   "
                  "(picked with the ground truth, as VLOGGER's best-of-8)")
            print(f"LME mean of the samples / best baseline: {m['lme_avg'] / best:.3f}")
        print(f"LME model / best baseline: {m['lme_model'] / best:.3f} (below 1: the model wins)")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s wall; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
