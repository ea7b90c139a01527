"""Is speech -> mouth learned? Train briefly on CPU, then test on held-out speakers.

    python -m benchmarks.motion_speech [--clips 40] [--seconds 4] [--steps 1500] [--config small]

1. A synthetic store (benchmarks/motion_data.py) of `--clips` talking bodies: espeak-ng
   sentences in several voices, the jaw opening with the speech envelope, the rest of the
   body and the expression moving on their own; identities split 3 train : 1 test.
2. The motion model trains `--steps` steps on the train split (in this process).
3. On every held-out clip, from its own audio and its first frame as the reference:
   - r(jaw, envelope): Pearson correlation of the generated jaw opening (jaw_pose x) with
     the clip's speech envelope (mentor.testmedia.speech_envelope, as the data was made);
   - control: the same correlation when the jaw was generated from ANOTHER held-out
     clip's audio (should be near 0: the mouth follows the audio it is given);
   - LME (mm, models.metrics.motion) of the 20 lip landmarks of the posed body against the
     ground truth, for the model and two baselines measured here: the reference pose held
     still, and the mean training motion (the training split's mean motion, from the
     model's normalisation statistics, put on the reference).
Prints one table; figures are means over the held-out clips (and over --samples samples).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SMALL = dict(d_model=128, num_layers=4, num_heads=4, ff_mult=2, dropout=0.0, num_frames=40, context_frames=8,
             sample_steps=15)


def lip_landmarks(body, params: dict[str, np.ndarray]) -> np.ndarray:
    from mentor.body import SmplxParams
    from models.metrics.motion import lip_points

    with torch.no_grad():
        out = body(SmplxParams.from_dict(params))
    return lip_points(out.landmarks.numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/bench/motion_speech")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--identities", type=int, default=12)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--config", default="small", help="small | tiny | base | a JSON file of model settings")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    from benchmarks.motion_data import fast_synthetic_store
    from mentor.body import load_body_model
    from mentor.media import read_audio
    from mentor.store import Store
    from mentor.testmedia import speech_envelope
    from models.motion import decode_motion
    from models.metrics.motion import lip_landmark_error
    from models.motion_sample import generate, load_motion_model
    from models.motion_train import MotionTrainConfig, model_preset, train_loop

    out = Path(args.out)
    t0 = time.perf_counter()
    root = fast_synthetic_store(out / f"store-{args.clips}x{args.seconds:g}s-{args.identities}id-seed{args.seed}",
                                args.clips, args.seconds, args.identities, seed=args.seed,
                                splits=("train", "train", "train", "test"))
    store = Store(root)
    clips = store.clips()
    print(f"store: {root} ({len(clips)} clips; {dict(clips['split'].value_counts())}; made/reused in "
          f"{time.perf_counter() - t0:.0f} s)")

    run = out / f"run-{args.config if args.config in ('small', 'tiny', 'base') else Path(args.config).stem}-{args.steps}"
    model_cfg = dict(SMALL) if args.config == "small" else model_preset(args.config)
    t1 = time.perf_counter()
    cfg = MotionTrainConfig(store=str(root), run_dir=str(run), steps=args.steps, batch_size=args.batch_size,
                            model=model_cfg, lr=1e-3, warmup_steps=50, log_every=50, ckpt_every=500,
                            seed=args.seed, loader_workers=1)
    result = train_loop(cfg.model_dump())
    print(f"trained {result['step']} steps (resumed from {result['resumed_from']}) in "
          f"{time.perf_counter() - t1:.0f} s; last loss {result['last_loss']:.4f}")

    model = load_motion_model(run)
    body = load_body_model(num_expression=model.layout.num_expression, num_pca_comps=model.layout.num_hand_pca)
    test_ids = list(clips[clips["split"] == "test"]["clip_id"])
    with tempfile.TemporaryDirectory() as tmp:
        recs = list(store.records(test_ids, media_dir=tmp))
        audio = {r.id: read_audio(r.files["audio"], 16000) for r in recs}
    fields = [k.split(".", 1)[1] for k in recs[0].arrays if k.startswith("smplx.") and k != "smplx.camera"]
    rows = {"model": [], "control": [], "gt": [], "lme_model": [], "lme_still": [], "lme_mean": []}
    t2 = time.perf_counter()
    gen_seconds = 0.0
    feats = {r.id: r.arrays["audio.logmel"].data.reshape(len(r.arrays["audio.logmel"].data), -1) for r in recs}
    for i, rec in enumerate(recs):
        other = recs[(i + 1) % len(recs)]
        T = len(rec.arrays["smplx.transl"].data)
        gt = {f: rec.arrays[f"smplx.{f}"].data.astype(np.float32) for f in fields}
        ref = {f: v[0] for f, v in gt.items()}
        env = speech_envelope(audio[rec.id], 16000, rec.fps, T)
        g0 = time.perf_counter()
        own = generate(model, feats[rec.id], ref, num_samples=args.samples, seed=args.seed + i, guidance=args.guidance)
        gen_seconds += time.perf_counter() - g0
        ctrl = generate(model, feats[other.id][:T], ref, num_samples=args.samples, seed=args.seed + i,
                        guidance=args.guidance)
        for k in range(args.samples):
            rows["model"].append(np.corrcoef(own["jaw_pose"][k, :, 0], env)[0, 1])
            rows["control"].append(np.corrcoef(ctrl["jaw_pose"][k, :, 0], env)[0, 1])
            lips = lip_landmarks(body, {f: own[f][k] for f in fields})
            rows["lme_model"].append(lip_landmark_error(lips, lip_landmarks(body, gt)))
        rows["gt"].append(np.corrcoef(gt["jaw_pose"][:, 0], env)[0, 1])
        gt_lips = lip_landmarks(body, gt)
        still = {f: np.repeat(v[None], T, 0) for f, v in ref.items()}
        rows["lme_still"].append(lip_landmark_error(lip_landmarks(body, still), gt_lips))
        mean_motion = model.motion_mean[None].expand(T, -1)
        mean = decode_motion(model.layout, mean_motion, {f: torch.as_tensor(v) for f, v in ref.items()})
        rows["lme_mean"].append(lip_landmark_error(lip_landmarks(body, {f: mean[f].numpy() for f in fields}), gt_lips))
    m = {k: float(np.nanmean(v)) for k, v in rows.items()}
    sd = {k: float(np.nanstd(v)) for k, v in rows.items()}
    print(f"\nheld-out: {len(recs)} clips of {args.seconds:g} s (test identities), {args.samples} sample(s) each; "
          f"sampling {gen_seconds:.1f} s for {len(recs) * args.seconds * args.samples:.0f} s of motion")
    print(f"{'':34s} mean    sd")
    print(f"{'r(jaw, envelope) model':34s} {m['model']:+.3f}  {sd['model']:.3f}")
    print(f"{'r(jaw, envelope) control audio':34s} {m['control']:+.3f}  {sd['control']:.3f}")
    print(f"{'r(jaw, envelope) ground truth':34s} {m['gt']:+.3f}  {sd['gt']:.3f}")
    print(f"{'LME mm model':34s} {m['lme_model']:.3f}  {sd['lme_model']:.3f}")
    print(f"{'LME mm reference held still':34s} {m['lme_still']:.3f}  {sd['lme_still']:.3f}")
    print(f"{'LME mm mean training motion':34s} {m['lme_mean']:.3f}  {sd['lme_mean']:.3f}")
    best = min(m["lme_still"], m["lme_mean"])
    print(f"\nLME model / best baseline: {m['lme_model'] / best:.3f} (below 1: the model wins); "
          f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
