"""Speed of the track-and-filter stage, against decoding alone, measured in the same run.

Prints: MediaPipe face detection frames/s (512x512, full-range model), the filter's
seconds per clip-second, and the ratio of the filter's time to the time it takes just to
decode the frames it samples (the baseline), in wall and in CPU seconds (this process's
threads and its finished children: the machine may be shared).

    .venv/bin/python -m benchmarks.person_filter [--seconds 10] [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_s() -> float:
    """CPU seconds of this process (all threads) and its finished children (ffmpeg)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the talking clip")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side (the median is printed)")
    args = ap.parse_args(argv)
    if args.seconds < 1 or args.size < 64 or args.repeats < 1:
        raise SystemExit(f"--seconds {args.seconds:g} (>= 1), --size {args.size} (>= 64), --repeats {args.repeats} "
                         "(>= 1): out of range")
    seconds, size, repeats = args.seconds, args.size, args.repeats
    import torch

    torch.set_num_threads(1)
    import mediapipe as mp

    from annotate.person_filter import PersonFilter
    from mentor.config import FilterConfig
    from mentor.media import probe, read_frames
    from mentor.record import ClipRecord, SourceRecord
    from mentor.testmedia import make_talking_clip

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_talking_clip(Path(tmp) / "talk.mp4", seconds, size=size)
        cfg = FilterConfig()
        frames = read_frames(path, fps=cfg.sample_fps)

        with mp.solutions.face_detection.FaceDetection(model_selection=1) as det:
            det.process(frames[0])
            t = time.perf_counter()
            for f in frames:
                det.process(f)
            det_fps = len(frames) / (time.perf_counter() - t)

        src = SourceRecord.from_uri(str(path), path=str(path))
        src.probe = probe(path).as_dict()
        filt = PersonFilter(cfg)
        filt(ClipRecord.for_span(src, 0.0, 1.0))  # warm up
        decode, run, decode_cpu, run_cpu = [], [], [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), cpu_s()
            read_frames(path, fps=cfg.sample_fps, start=0.0, end=seconds)
            decode.append(time.perf_counter() - t)
            decode_cpu.append(cpu_s() - c)
            rec = ClipRecord.for_span(src, 0.0, seconds)
            t, c = time.perf_counter(), cpu_s()
            filt(rec)
            run.append(time.perf_counter() - t)
            run_cpu.append(cpu_s() - c)
        filt.close()
    d, r = float(np.median(decode)), float(np.median(run))
    dc, rc = float(np.median(decode_cpu)), float(np.median(run_cpu))
    print(f"face detection (MediaPipe full-range, {size}x{size}): {det_fps:.0f} frames/s on one thread")
    print(f"filter: {r / seconds:.3f} s per clip-second at sample_fps={cfg.sample_fps:g} "
          f"({r:.2f} s wall, {rc:.2f} CPU-s for a {seconds:g} s clip, kept={rec.kept}); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"baseline (decode the sampled frames only): {d / seconds:.3f} s per clip-second ({dc:.2f} CPU-s)")
    print(f"ratio filter / decoding: {r / d:.1f}x wall, {rc / max(dc, 1e-9):.1f}x CPU")
    return {"filter_s": r, "decode_s": d, "filter_cpu_s": rc, "decode_cpu_s": dc}


if __name__ == "__main__":
    main()
