"""Speed of the track-and-filter stage, against decoding alone, measured in the same run.

Prints: MediaPipe face detection frames/s (512x512, full-range model), the filter's
seconds per clip-second, and the ratio of the filter's time to the time it takes just to
decode the frames it samples (the baseline). Run: .venv/bin/python benchmarks/person_filter.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(seconds: float = 10.0, size: int = 512, repeats: int = 3) -> None:
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
        decode, run = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            read_frames(path, fps=cfg.sample_fps, start=0.0, end=seconds)
            decode.append(time.perf_counter() - t)
            rec = ClipRecord.for_span(src, 0.0, seconds)
            t = time.perf_counter()
            filt(rec)
            run.append(time.perf_counter() - t)
        filt.close()
    d, r = float(np.median(decode)), float(np.median(run))
    print(f"face detection (MediaPipe full-range, {size}x{size}): {det_fps:.0f} frames/s on one thread")
    print(f"filter: {r / seconds:.3f} s per clip-second at sample_fps={cfg.sample_fps:g} "
          f"({r:.2f} s for a {seconds:g} s clip, kept={rec.kept})")
    print(f"baseline (decode the sampled frames only): {d / seconds:.3f} s per clip-second; "
          f"filter / baseline = {r / d:.1f}x")


if __name__ == "__main__":
    main()
