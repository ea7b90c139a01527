"""What `mentor eval` costs per second of generated video, per metric family and in all,
against decoding the real and the generated video alone, measured in the same run.

The clip is a talking test clip (mentor.testmedia: the astronaut speaking, mouth in sync)
judged against itself, as one generated sample. Networks load before timing and each family
runs once untimed first (warm-up). Families:

- decode: both videos decoded at the clip's fps (the baseline; every family needs it)
- reconstruction: PSNR + SSIM (+ LPIPS with --lpips-weights)
- quality: CPBD + NIQE on --quality-frames frames of the generated video and of the real one
- landmarks: MediaPipe Holistic on every frame (shared by sync, identity and 3D)
- sync: lip gap vs speech envelope (+ SyncNet LSE with --syncnet-weights)
- identity: ArcFace on --identity-frames aligned crops (a tiny ONNX stand-in when no
  --arcface-model: same crops and alignment, a fraction of ResNet-50's compute)
- 3d: the project's SMPL-X fit of the generated video + LME, head pose, jitter, BC
- fid: Inception-v3 features of the --fid-frames frames (the torchvision architecture with
  random weights: the compute of the real one; FID numbers need the real weights)

Each family's best wall and CPU seconds (this process's threads and finished children) of
--repeats runs are printed per second of video and as a ratio to decoding; the last line is
the ratio of all families together to decoding.

Usage: .venv/bin/python -m benchmarks.eval [--seconds 4] [--size 256] [--threads 2] [--repeats 2]
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


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quality-frames", type=int, default=4)
    ap.add_argument("--identity-frames", type=int, default=8)
    ap.add_argument("--fid-frames", type=int, default=16)
    ap.add_argument("--lpips-weights")
    ap.add_argument("--syncnet-weights")
    ap.add_argument("--arcface-model")
    args = ap.parse_args(argv)
    if args.seconds < 1 or args.size < 64 or args.repeats < 1:
        raise SystemExit(f"--seconds {args.seconds:g} (>= 1), --size {args.size} (>= 64), --repeats {args.repeats} "
                         "(>= 1): out of range")

    import torch

    torch.set_num_threads(args.threads)
    from mentor.media import read_audio, read_frames
    from mentor.testmedia import make_talking_clip
    from models.evaluate import EvalConfig, Evaluator
    from models.metrics import image as I

    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    atexit.register(shutil.rmtree, tmp, True)  # the clip and models made for the run
    clip = make_talking_clip(tmp / "clip.mp4", seconds=args.seconds, size=args.size)
    arcface = args.arcface_model
    if not arcface:
        arcface = str(tmp / "arcface_standin.onnx")
        _tiny_arcface(arcface)
    import torchvision

    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    inception.fc = torch.nn.Identity()

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = inception.eval()

        def forward(self, x):
            x = torch.nn.functional.interpolate(x.float() / 255, size=(299, 299), mode="bilinear")
            return self.net(x)

    cfg = EvalConfig(lpips_weights=args.lpips_weights, syncnet_weights=args.syncnet_weights, arcface_model=arcface,
                     fid_extractor=Features(), quality_frames=args.quality_frames,
                     identity_frames=args.identity_frames, fid_frames=args.fid_frames, device="cpu")
    ev = Evaluator(cfg)
    fps = 25.0
    real, fake = read_frames(clip, fps=fps), read_frames(clip, fps=fps)
    audio = read_audio(clip)
    w = h = args.size
    lms = ev.landmarks(fake)
    real_fit, err = ev.fit(ev.landmarks(real), fps, w, h)
    if err:
        raise SystemExit(f"the real clip's SMPL-X fit failed: {err}")
    ref = ev._reference_embedding(real[0])

    class Res:
        errors: list = []

    families = {
        "decode": lambda: (read_frames(clip, fps=fps), read_frames(clip, fps=fps)),
        "reconstruction": lambda: (I.psnr(real, fake), I.ssim(real, fake),
                                   ev.lpips(real, fake) if ev.lpips is not None else None),
        "quality": lambda: (ev._quality(fake, Res), ev._quality(real, Res)),
        "landmarks": lambda: ev.landmarks(fake),
        "sync": lambda: ev._sync(fake, lms["face"], audio, fps),
        "identity": lambda: ev._identity(fake, lms["face"], ref),
        "3d": lambda: ev._motion(lms, fps, w, h, real_fit, audio, Res),
        "fid": lambda: ev.fid.features(fake[I.sample_indices(len(fake), args.fid_frames)]),
    }

    def timed(fn) -> tuple[float, float]:
        """(best wall s, best CPU s) of `repeats` runs after a warm-up."""
        fn()  # warm-up
        best, best_cpu = float("inf"), float("inf")
        for _ in range(args.repeats):
            t, c = time.perf_counter(), cpu_s()
            fn()
            best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, cpu_s() - c)
        return best, best_cpu

    seconds = len(fake) / fps
    load = os.getloadavg()[0]
    times = {name: timed(fn) for name, fn in families.items()}
    base, base_cpu = times["decode"]
    base_cpu = max(base_cpu, 1e-6)
    print(f"clip {seconds:g} s at {args.size}x{args.size}, {fps:g} fps, torch threads {args.threads}, "
          f"best of {args.repeats}; weights: LPIPS {'yes' if ev.lpips else 'no'}, SyncNet "
          f"{'yes' if ev.syncnet else 'no'}, ArcFace {'given' if args.arcface_model else 'tiny stand-in'}; "
          f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'family':<16}{'s per video-s':>15}{'CPU-s per video-s':>19}{'x decoding (wall, CPU)':>25}")
    for name, (t, c) in times.items():
        print(f"{name:<16}{t / seconds:>15.3f}{c / seconds:>19.3f}{t / base:>12.1f}x{c / base_cpu:>12.1f}x")
    total, total_cpu = (sum(v[i] for v in times.values()) for i in (0, 1))
    print(f"{'all':<16}{total / seconds:>15.3f}{total_cpu / seconds:>19.3f}{total / base:>12.1f}x"
          f"{total_cpu / base_cpu:>12.1f}x")
    print(f"ratio every metric / decoding both videos: {total / base:.0f}x wall, {total_cpu / base_cpu:.0f}x CPU")
    return {name: c / seconds for name, (t, c) in times.items()}


def cpu_s() -> float:
    """CPU seconds of this process (all threads: MediaPipe's graph, torch) and its finished children."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def _tiny_arcface(path: str) -> None:
    """A small ONNX with ArcFace's contract (Nx3x112x112 -> NxD), for timing the pipeline."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(48, 32)).astype(np.float32)
    nodes = [helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[28, 28], strides=[28, 28]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["embedding"])]
    graph = helper.make_graph(nodes, "arcface_standin",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["n", 3, 112, 112])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 32])],
                              initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


if __name__ == "__main__":
    main()
