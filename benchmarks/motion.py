"""Motion model speed: training throughput with its data-wait share, and sampling speed.

    python -m benchmarks.motion [--config base] [--steps 40] [--threads 1] [--sample-configs small base]

Training: the model (`--config`, default base: 4 layers, 256 wide, 50-frame windows) trains
`--steps` steps on a synthetic store (benchmarks/motion_data.py) through each loader path of
models/motion_train.window_batches: the clips' arrays preloaded once and windows cut in
memory (the default when they fit in `preload_arrays_gb`), and every window read from the
shards by mentor.store.windows (`preload_arrays_gb 0`) in the training process and with one
DataLoader worker process. Each prints samples/s and the share of the step loop's wall
time spent waiting for the next batch (goal: under 10 %).

Sampling: 10 s of espeak speech -> audio features (not timed) -> motion, model load
excluded, for each model size in `--sample-configs`: the fast solver (the model's
sample_scheduler, DPM-Solver++, with its sample_steps; guidance on: conditional and
unconditional in one batch) with the windows denoised in parallel (the default) and one
after the other, and, for `--config`, DDPM with every one of its training steps. Prints
seconds of motion per wall second and per CPU second (the machine is shared: CPU time is
the steadier figure), and the fast solver's speed-up over DDPM. Weights are freshly
initialised (speed does not depend on them).

Baselines, measured in the same run: for training, reading every window from the shards
(the preloaded path's samples/s as a ratio to it); for sampling, DDPM with all its
training steps, and the windows denoised one after the other.
"""

from __future__ import annotations

import argparse
import atexit
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/bench/motion")
    ap.add_argument("--config", default="base", help="tiny | small | base | a JSON file of model settings")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--audio-seconds", type=float, default=10.0)
    ap.add_argument("--sample-configs", nargs="*", default=["small", "base"])
    ap.add_argument("--ddpm", action=argparse.BooleanOptionalAction, default=True,
                    help="also time DDPM with all its steps (the baseline) for --config")
    ap.add_argument("--train", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from benchmarks.motion_data import fast_synthetic_store
    from models.motion import MotionDiffusionModel
    from models.motion_sample import audio_features_for_wav, generate
    from models.motion_train import MotionTrainConfig, build_model, model_preset, train_loop
    from mentor.store import Store
    from mentor.testmedia import make_speech

    out = Path(args.out)
    scratch = tempfile.mkdtemp(prefix="mentor-bench-motion-")  # the runs' folders, removed at exit
    atexit.register(shutil.rmtree, scratch, True)
    root = fast_synthetic_store(out / "store-12x4s", 12, 4.0, identities=4, splits=("train",))
    print(f"store: {root}; torch threads {args.threads}; training config {args.config}; "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.train:
        rates = {}
        for label, preload, workers in (("arrays preloaded (default)", 2.0, 0), ("read per window, in-process", 0.0, 0),
                                        ("read per window, 1 loader process", 0.0, 1)):
            run = Path(tempfile.mkdtemp(dir=scratch))
            cfg = MotionTrainConfig(store=str(root), run_dir=str(run), steps=args.steps, batch_size=args.batch_size,
                                    model=model_preset(args.config), loader_workers=workers, log_every=10,
                                    ckpt_every=10_000, progress=False, device="cpu", preload_arrays_gb=preload)
            c0 = time.process_time()
            ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = train_loop(cfg.model_dump())
            ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            kids = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
            print(f"train, {label}: {r['samples_per_s']:.1f} samples/s ({r['steps_per_s']:.2f} steps/s, "
                  f"batch {args.batch_size}), data wait {r['data_wait']:.1%} of the step loop "
                  f"({time.process_time() - c0:.1f} CPU-s here + {kids:.1f} in loader processes, "
                  f"preload and statistics included); load average {os.getloadavg()[0]:.1f}")
            rates[label] = (r["samples_per_s"], r["data_wait"])
        (pre, pre_wait), (own, own_wait), (one, one_wait) = rates.values()
        print(f"train: preloaded / read per window in-process: {pre / own:.2f}x samples/s "
              f"(data wait {pre_wait:.1%} vs {own_wait:.1%}); / 1 loader process: {pre / one:.2f}x ({one_wait:.1%})")

    with tempfile.TemporaryDirectory() as tmp:
        wav = make_speech(Path(tmp) / "speech.wav", " ".join(["Hello, and welcome back to my channel."] * 3),
                          seconds=args.audio_seconds)
        feats = None
        for name in dict.fromkeys([*args.sample_configs, args.config]):
            model, _ = build_model(MotionTrainConfig(store=str(root), run_dir=tempfile.mkdtemp(dir=scratch),
                                                     model=model_preset(name)), Store(root))
            model.eval()
            c = model.config
            if feats is None:
                feats, _, fps = audio_features_for_wav(wav, model)
            ref = {k: v[0].numpy() for k, v in _rest_reference(model).items()}
            generate(model, feats[:c.num_frames], ref, steps=2)  # warm-up (first-call allocations)
            kinds = [(c.sample_scheduler, c.sample_steps, "parallel"), (c.sample_scheduler, c.sample_steps, "sequential")]
            if args.ddpm and name == args.config:
                kinds.append(("ddpm", c.num_train_timesteps, "parallel"))
            speeds = {}
            for kind, steps, stitch in kinds:
                t, cpu = time.perf_counter(), time.process_time()
                generate(model, feats, ref, scheduler=kind, steps=steps, seed=0, stitch=stitch)
                dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
                speeds[(kind, stitch)] = (args.audio_seconds / dt, args.audio_seconds / max(dcpu, 1e-9))
                print(f"sample {args.audio_seconds:g} s, model {name} ({c.d_model} wide, {c.num_frames}-frame windows), "
                      f"{kind} x {steps} steps, {stitch} windows, guidance {c.guidance_scale:g}: {dt:.2f} s wall = "
                      f"{args.audio_seconds / dt:.1f}x real time; {dcpu:.2f} CPU-s = "
                      f"{args.audio_seconds / max(dcpu, 1e-9):.1f}x real time per busy core; "
                      f"load average {os.getloadavg()[0]:.1f}")
            fast = speeds[(c.sample_scheduler, "parallel")]
            if ("ddpm", "parallel") in speeds:
                slow = speeds[("ddpm", "parallel")]
                print(f"model {name}: fast solver / DDPM: {fast[0] / slow[0]:.0f}x (wall), "
                      f"{fast[1] / slow[1]:.0f}x (CPU)")
            seq = speeds[(c.sample_scheduler, "sequential")]
            print(f"model {name}: parallel / sequential windows: {fast[0] / seq[0]:.2f}x (wall), "
                  f"{fast[1] / seq[1]:.2f}x (CPU)")


def _rest_reference(model: "MotionDiffusionModel") -> dict[str, torch.Tensor]:
    """A plausible reference frame: rest pose facing the camera, 1.7 m away."""
    out = {name: torch.zeros(1, n) for name, n in model.layout.fields}
    out["global_orient"][0, 0] = 3.1416
    out["transl"][0] = torch.tensor([0.0, 0.36, 1.7])
    out["betas"] = torch.zeros(1, 10)
    return out


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
