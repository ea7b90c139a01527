"""Curation throughput: the Ray Data graph against the same stages in a plain loop.

Both run over the same generated media (talking clips of a real photo with espeak-ng
speech), with the same config (annotators off: this is the curation half of `mentor
build`) and one thread per ffmpeg / MediaPipe call, in one process run, so the ratio
is measured under the same machine load. Ray's start-up is reported, not counted: ray.init
and Ray Data's cluster-wide helper actors (started by a warm-up in a separate job). The
build's own worker processes, their imports and models are counted. Also prints
MediaPipe's own frames/s on the frames the filter examines: the practical ceiling of the
filter stage.

    python benchmarks/curation.py [--sources 8] [--seconds 30]

The last line is the ratio (pipeline / loop).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mentor.config import parse_config  # noqa: E402
from mentor.record import ClipRecord, SourceRecord  # noqa: E402
from mentor.store import StoreWriter  # noqa: E402

CONFIG = """
sources:
  - {{name: bench, kind: folder, path: {folder}}}
annotate:
  landmarks: {{enabled: false}}
  smplx: {{enabled: false}}
  vad: {{enabled: false}}
  diarization: {{enabled: false}}
  asr: {{enabled: false}}
  sync: {{enabled: false}}
  audio_features: {{enabled: false}}
  attributes: {{enabled: false}}
"""


def make_media(folder: Path, n: int, seconds: float) -> None:
    from mentor.testmedia import make_talking_clip

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = folder / f"talk{i}.mp4"
        if not p.exists():
            make_talking_clip(p, seconds=seconds, seed=i, voice=["en", "en+f3", "en+m3"][i % 3])


def plain_loop(cfg, out: Path) -> tuple[float, list[float]]:
    """The same stages, one after another, in this process. Returns video seconds seen
    and when each clip was written (seconds from the start)."""
    import torch

    from mentor.fetch import discover_sources
    from pipelines import annotators as ann
    from pipelines import stages

    torch.set_num_threads(1)
    filters = ann.filter_annotators(cfg)
    seconds = 0.0
    done: list[float] = []
    t0 = time.perf_counter()
    with StoreWriter(out, cfg.store.shard_bytes) as writer:
        for src in discover_sources(cfg):
            rows = stages.prepare_source(stages.source_row(src), cfg, out, frozenset())
            for row in rows:
                s = SourceRecord.model_validate_json(row["source"])
                if row["kind"] == "source":
                    writer.add_source(s, "failed" if s.error else "ok")
                    continue
                rec = ClipRecord.from_row(row)
                for f in filters:
                    rec = stages._call(f, rec)
                if rec.kept:
                    stages.encode_record(rec, cfg, stages.work_dir(out) / "clips")
                writer.add(rec)
                done.append(time.perf_counter() - t0)
            seconds += float(s.probe.get("duration") or 0.0)
            writer.add_source(s, "ok")
    return seconds, done


def middle_rate(times: list[float]) -> float:
    """Clips per second between the 25th and 75th percentile completion."""
    t = sorted(times)
    a, b = len(t) // 4, (3 * len(t)) // 4
    return (b - a) / max(t[b] - t[a], 1e-9)


def mediapipe_fps(folder: Path, sample_fps: float) -> tuple[float, int]:
    """Face detection + face mesh (what the filter runs per sampled frame) on the
    sampled frames of every source, decoded beforehand: frames/s on one core."""
    import mediapipe as mp

    from mentor.media import read_frames

    frames = [f for p in sorted(folder.glob("*.mp4")) for f in read_frames(p, fps=sample_fps)]
    det = mp.solutions.face_detection.FaceDetection(model_selection=1)
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=2)
    t0 = time.perf_counter()
    for f in frames:
        det.process(f)
        mesh.process(f)
    return len(frames) / (time.perf_counter() - t0), len(frames)


WARM_UP_JOB = """
import ray, ray.data

class Identity:
    def __call__(self, batch):
        return batch

ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
ray.data.DataContext.get_current().enable_progress_bars = False
(ray.data.range(4, override_num_blocks=4)
 .map_batches(lambda b: b, batch_size=1, num_cpus=0.5)
 .map_batches(Identity, batch_size=1, num_cpus=0.5, compute=ray.data.ActorPoolStrategy(size=1))
 .materialize())
"""


def warm_up_ray_data() -> None:
    """Run a trivial dataset once, in a separate Ray job on this cluster.

    Ray Data starts cluster-wide helper actors on first use (stats, autoscaling, actor
    locations: detached, about 4 CPU-s each here); a long-running cluster already has
    them. The benchmark's own job stays cold: the build pays for its worker processes
    and their imports, as a new `mentor build` on a running cluster does."""
    import ray

    env = os.environ | {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    subprocess.run([sys.executable, "-c", WARM_UP_JOB], env=env, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--media", default=None, help="folder of sources (default: out/bench-media/<N>x<S>s, "
                    "generated when missing); every video in it is used")
    ap.add_argument("--filter-actors", type=int, help="ray.filter_actors (default: the config's)")
    ap.add_argument("--filter-threads", type=int, help="ray.filter_threads (default: the config's)")
    args = ap.parse_args()
    # The default folder is named by its shape: every video in the folder is a source.
    folder = Path(args.media or f"out/bench-media/{args.sources}x{args.seconds:g}s").resolve()
    make_media(folder, args.sources, args.seconds)
    cfg = parse_config(CONFIG.format(folder=folder), "benchmark", str(folder))
    if args.filter_actors:
        cfg.ray.filter_actors = args.filter_actors
    if args.filter_threads:
        cfg.ray.filter_threads = args.filter_threads
    cpus = os.cpu_count() or 1
    print(f"machine: {cpus} CPUs; {args.sources} sources x {args.seconds:.0f} s, video {cfg.video.size}px "
          f"@ {cfg.video.fps:g} fps, filter samples {cfg.filters.sample_fps:g} frames per video second; "
          f"filter stage {cfg.ray.filter_actors} actor(s) x {cfg.ray.filter_threads} thread(s)")

    tmp = Path(tempfile.mkdtemp(prefix="mentor-bench-"))
    try:
        t0 = time.perf_counter()
        seconds, loop_done = plain_loop(cfg, tmp / "loop")
        loop_first = loop_done[0]
        loop_s = time.perf_counter() - t0
        loop_rate = seconds / loop_s
        print(f"plain loop: {seconds:.0f} s of video in {loop_s:.1f} s -> {loop_rate:.2f} video-s per wall-s "
              f"(first clip after {loop_first:.1f} s)")

        from pipelines.curation import build
        from pipelines.runtime import init_ray

        t0 = time.perf_counter()
        init_ray()
        warm_up_ray_data()
        print(f"ray start-up: {time.perf_counter() - t0:.1f} s (not counted: ray.init and Ray Data's cluster-wide "
              "helpers, which a long-running cluster has already)")
        t0 = time.perf_counter()
        summary = build(cfg, out=tmp / "pipe", progress=False)
        pipe_s = time.perf_counter() - t0
        pipe_rate = summary.seconds_in / pipe_s
        pipe_first = summary.first_clip_seconds or 0.0
        print(f"pipeline:   {summary.seconds_in:.0f} s of video in {pipe_s:.1f} s -> {pipe_rate:.2f} video-s per wall-s "
              f"({summary.clips_kept} clips kept, {sum(summary.clips_rejected.values())} rejected; "
              f"first clip after {pipe_first:.1f} s: actor processes start and load their models)")
        # Steady state, what a long build sees: clips per second over the middle half
        # of each run's clip completions (past warm-up, before the tail drains).
        steady = middle_rate(summary.clip_seconds) / middle_rate(loop_done)
        print(f"steady state (middle half of clip completions): pipeline/loop {steady:.2f}x")

        fps, n = mediapipe_fps(folder, cfg.filters.sample_fps)
        ceiling = fps * cpus / cfg.filters.sample_fps
        print(f"mediapipe alone: {fps:.1f} frames/s on one core ({n} sampled frames); filter-stage ceiling on "
              f"{cpus} cores: {ceiling:.2f} video-s per wall-s; pipeline reaches {100 * pipe_rate / ceiling:.0f}% of it")
        print(f"ratio pipeline/loop: {pipe_rate / loop_rate:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
