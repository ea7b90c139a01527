"""Seconds of work per second of clip for each audio annotator, on a talking test clip.

Prints, per annotator, its time per clip-second and the ratio to the baseline measured
in the same run: decoding the clip's audio once (`mentor.media.read_audio`). Models load
before timing and each annotator runs once untimed first (warm-up), as a pipeline actor
would. Wall and CPU seconds (this process's threads and its finished children) are both
printed: on a shared machine the CPU figure is the steadier one.

    .venv/bin/python -m benchmarks.audio_annotators [--seconds 10] [--threads 2] [--repeats 3]
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


def cpu_s() -> float:
    """CPU seconds of this process (all threads) and its finished children."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.seconds < 1 or args.threads < 1 or args.repeats < 1:
        raise SystemExit(f"--seconds {args.seconds:g} (>= 1), --threads {args.threads} (>= 1), "
                         f"--repeats {args.repeats} (>= 1): out of range")

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
    atexit.register(shutil.rmtree, tmp, True)  # the clip and models made for the run
    clip = make_talking_clip(tmp / "clip.mp4", seconds=args.seconds)
    wav = extract_audio(clip, tmp / "clip.wav")

    def record() -> ClipRecord:
        return ClipRecord(id="bench", source_id="s", source_uri="bench", start=0.0, end=args.seconds, fps=25.0,
                          files={"video": str(clip), "audio": str(wav)})

    cpu = {}

    def timed(fn, name: str) -> float:
        """Best wall seconds of `repeats` runs after a warm-up; the best CPU seconds go to cpu[name]."""
        fn()  # warm-up
        best, best_cpu = float("inf"), float("inf")
        for _ in range(args.repeats):
            t, c = time.perf_counter(), cpu_s()
            fn()
            best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, cpu_s() - c)
        cpu[name] = best_cpu
        return best

    base = timed(lambda: read_audio(wav), "baseline")
    base_cpu = max(cpu["baseline"], 1e-6)
    print(f"clip {args.seconds:g} s, torch threads {args.threads}, best of {args.repeats}, load average "
          f"{os.getloadavg()[0]:.1f}; baseline read_audio {base / args.seconds * 1000:.2f} ms per clip-second "
          f"({base_cpu / args.seconds * 1000:.2f} CPU-ms)")
    print(f"{'annotator':32s} {'s per clip-s':>12s} {'CPU-s per clip-s':>16s} {'x baseline (wall, CPU)':>24s}")
    out = {}

    def line(name: str, secs: float) -> None:
        c = cpu[name]
        out[name] = c / args.seconds
        print(f"{name:32s} {secs / args.seconds:12.4f} {c / args.seconds:16.4f} {secs / base:11.1f}x {c / base_cpu:11.1f}x")

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

        line(name, timed(run, name))
        if name.startswith("sync"):
            # the pipeline's usual case: landmarks come from the landmark stage
            landmarks = stage._run_face_mesh(__import__("mentor.media", fromlist=["read_frames"]).read_frames(clip, fps=25))

            def with_landmarks(stage=stage):
                rec = record()
                rec.add_array("landmarks.face", landmarks, fps=25.0)
                return stage(rec)

            line("sync (given landmarks)", timed(with_landmarks, "sync (given landmarks)"))
    total = sum(v for k, v in out.items() if k != "sync (FaceMesh + correlation)")
    print(f"ratio all audio annotators (sync given landmarks) / decoding: {total * args.seconds / base_cpu:.1f}x CPU "
          f"({total:.4f} CPU-s per clip-second)")
    return out


if __name__ == "__main__":
    main()
