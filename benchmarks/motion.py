"""Motion model speed: training throughput with its data-wait share, and sampling speed.

    python -m benchmarks.motion [--config base] [--steps 40] [--threads 1]

Training: the model (`--config`, default base: 4 layers, 256 wide, 50-frame windows) trains
`--steps` steps on a synthetic store (benchmarks/motion_data.py) through the real loader
(mentor.store.windows), once with the windows read in the training process
(`loader_workers 0`) and once with one DataLoader worker process; each prints samples/s and
the share of wall time the step loop waited for its next batch (goal: under 10 %).

Sampling: 10 s of espeak speech -> audio features (not timed) -> motion with the fast solver
(the model's default, DPM-Solver++ with its configured steps, guidance on: two passes per
step in one batch), beside DDPM with every one of its training steps, same model, same audio,
in this run; model load excluded. Prints seconds of motion per wall second for each, and
their ratio. Weights are the freshly initialised model's (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/bench/motion")
    ap.add_argument("--config", default="base", help="tiny | base | a JSON file of model settings")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--audio-seconds", type=float, default=10.0)
    ap.add_argument("--ddpm", action=argparse.BooleanOptionalAction, default=True,
                    help="also time DDPM with all its steps (the baseline)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from benchmarks.motion_data import fast_synthetic_store
    from models.motion import MotionDiffusionModel
    from models.motion_sample import audio_features_for_wav, generate
    from models.motion_train import MotionTrainConfig, build_model, model_preset, train_loop
    from mentor.store import Store
    from mentor.testmedia import make_speech

    out = Path(args.out)
    root = fast_synthetic_store(out / "store-12x4s", 12, 4.0, identities=4, splits=("train",))
    print(f"store: {root}; torch threads {args.threads}; model config {args.config}")
    for workers in (0, 1):
        run = Path(tempfile.mkdtemp(prefix="mentor-bench-motion-"))
        cfg = MotionTrainConfig(store=str(root), run_dir=str(run), steps=args.steps, batch_size=args.batch_size,
                                model=model_preset(args.config), loader_workers=workers, log_every=10,
                                ckpt_every=10_000, progress=False, device="cpu")
        r = train_loop(cfg.model_dump())
        print(f"train, loader_workers {workers}: {r['samples_per_s']:.1f} samples/s ({r['steps_per_s']:.2f} steps/s, "
              f"batch {args.batch_size}), data wait {r['data_wait']:.1%} of the step loop")

    model, _ = build_model(MotionTrainConfig(store=str(root), run_dir=tempfile.mkdtemp(), model=model_preset(args.config)),
                           Store(root))
    model.eval()
    c = model.config
    with tempfile.TemporaryDirectory() as tmp:
        wav = make_speech(Path(tmp) / "speech.wav", " ".join(["Hello, and welcome back to my channel."] * 3),
                          seconds=args.audio_seconds)
        feats, _, fps = audio_features_for_wav(wav, model)
    ref = {k: v[0].numpy() for k, v in _rest_reference(model).items()}
    generate(model, feats[:c.num_frames], ref, steps=2)  # warm-up (first-call allocations)
    rows = []
    kinds = [(c.sample_scheduler, c.sample_steps)] + ([("ddpm", c.num_train_timesteps)] if args.ddpm else [])
    for kind, steps in kinds:
        t, cpu = time.perf_counter(), time.process_time()
        generate(model, feats, ref, scheduler=kind, steps=steps, seed=0)
        dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
        rows.append((kind, steps, dt, args.audio_seconds / dt))
        print(f"sample {args.audio_seconds:g} s of motion, {kind} x {steps} steps, guidance {c.guidance_scale:g}: "
              f"{dt:.2f} s wall = {args.audio_seconds / dt:.1f}x real time ({dcpu:.2f} CPU-s: "
              f"{args.audio_seconds / max(dcpu, 1e-9):.1f}x per busy core; the machine is shared)")
    if len(rows) == 2:
        print(f"fast solver / DDPM speed: {rows[0][3] / rows[1][3]:.0f}x")


def _rest_reference(model: MotionDiffusionModel) -> dict[str, torch.Tensor]:
    """A plausible reference frame: rest pose facing the camera, 1.7 m away."""
    out = {name: torch.zeros(1, n) for name, n in model.layout.fields}
    out["global_orient"][0, 0] = 3.1416
    out["transl"][0] = torch.tensor([0.0, 0.36, 1.7])
    out["betas"] = torch.zeros(1, 10)
    return out


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
