"""Seconds of work per second of clip for each audio annotator, on a talking test clip.

Prints, per annotator, its time per clip-second and the ratio to the baseline measured
in the same run: decoding the clip's audio once (`mentor.media.read_audio`). Models load
before timing and each annotator runs once untimed first (warm-up), as a pipeline actor
would. Usage: .venv/bin/python benchmarks/audio_annotators.py [--seconds 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from annotate.audio_features import AudioFeatures
    from annotate.av_sync import AvSync
    from annotate.diarize import Diarizer
    from annotate.vad import VoiceActivity
    from mentor.config import AudioFeatureConfig, DiarizationConfig, SyncConfig, VadConfig
    from mentor.media import extract_audio, read_audio
    from mentor.record import ClipRecord
    from mentor.testmedia import make_talking_clip

    tmp = Path(tempfile.mkdtemp(prefix="bench_audio_"))
    clip = make_talking_clip(tmp / "clip.mp4", seconds=args.seconds)
    wav = extract_audio(clip, tmp / "clip.wav")

    def record() -> ClipRecord:
        return ClipRecord(id="bench", source_id="s", source_uri="bench", start=0.0, end=args.seconds, fps=25.0,
                          files={"video": str(clip), "audio": str(wav)})

    def timed(fn) -> float:
        fn()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    base = timed(lambda: read_audio(wav))
    print(f"clip {args.seconds:g} s, torch threads {args.threads}; baseline read_audio "
          f"{base / args.seconds * 1000:.2f} ms per clip-second")
    stages = {
        "vad (silero)": VoiceActivity(VadConfig()),
        "diarization (resemblyzer)": Diarizer(DiarizationConfig(device="cpu")),
        "sync (FaceMesh + correlation)": AvSync(SyncConfig(device="cpu")),
        "audio features (log-mel)": AudioFeatures(AudioFeatureConfig(device="cpu")),
    }
    landmarks = None
    for name, stage in stages.items():
        def run(stage=stage):
            return stage(record())

        secs = timed(run)
        print(f"{name:32s} {secs / args.seconds:.4f} s per clip-second  ({secs / base:6.1f}x baseline)")
        if name.startswith("sync"):
            # the pipeline's usual case: landmarks come from the landmark stage
            landmarks = stage._run_face_mesh(__import__("mentor.media", fromlist=["read_frames"]).read_frames(clip, fps=25))

            def with_landmarks(stage=stage):
                rec = record()
                rec.add_array("landmarks.face", landmarks, fps=25.0)
                return stage(rec)

            secs = timed(with_landmarks)
            print(f"{'sync (given landmarks)':32s} {secs / args.seconds:.4f} s per clip-second  ({secs / base:6.1f}x baseline)")


if __name__ == "__main__":
    main()
