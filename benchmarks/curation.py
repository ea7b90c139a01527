"""Curation throughput: the Ray Data graph against the same stages in a plain loop.

Both run over the same generated media (talking clips of a real photo with espeak-ng
speech), with the same config (annotators off: this is the curation half of `mentor
build`) and one thread per ffmpeg / MediaPipe call, one after the other in one benchmark
run, so the ratio is measured under the same machine load. Each runs in a fresh Python
process and pays for its own imports and models (the loop: the stages' libraries and the
shard writer's; the pipeline: Ray Data, the writer's, and in its workers the stages').
Ray's start-up is reported, not counted: ray.init with the idle workers it boots, and
Ray Data's cluster-wide helper actors (started by a warm-up in a separate job). Also
prints MediaPipe's own frames/s on the frames the filter examines: the practical ceiling
of the filter stage.

The default run is 24 sources x 30 s (12 minutes of video, about 5 minutes on 2 cores):
long enough that the figure is a throughput. On a short run the pipeline's start-up
dominates: its first clip comes after about 13 s (the driver and workers import Ray Data,
the actor torch and MediaPipe) against the loop's 8 s, which holds 8 x 30 s to 1.46-1.58x
on 2 cores.

    python benchmarks/curation.py [--sources 24] [--seconds 30]

The last line is the ratio (pipeline / loop).
"""

from __future__ import annotations

import argparse
import json
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
    t0 = time.perf_counter()
    import torch

    from annotate.registry import STAGES, build_annotators
    from mentor.curate import run as steps
    from mentor.fetch import discover_sources
    from mentor.store import StoreWriter
    from pipelines import stages

    torch.set_num_threads(1)
    curate = tuple(s for s in STAGES if s.pool == "curate")  # filter, encode
    annotators = build_annotators(cfg, curate, stages.work_dir(out))
    seconds = 0.0
    done: list[float] = []
    with StoreWriter(out, cfg.store.shard_bytes) as writer:
        for src in discover_sources(cfg):
            rows = stages.prepare_source(stages.source_row(src), cfg, out, frozenset())
            for row in rows:
                s = SourceRecord.model_validate_json(row["source"])
                if row["kind"] == "source":
                    writer.add_source(s, "failed" if s.error else "ok")
                    continue
                rec = steps.run(annotators, ClipRecord.from_row(row))
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
    """Run a trivial dataset once, in a separate Ray job on this cluster, then boot this
    job's idle workers again.

    Ray Data starts cluster-wide helper actors on first use (stats, autoscaling, actor
    locations: detached, about 4 CPU-s each here); a long-running cluster already has
    them. That job's workers make Ray retire the idle workers ray.init booted for this
    job, which a fresh `mentor build` finds ready, so as many are booted again (empty
    processes: no Ray Data, no model). The build still pays for its imports and models."""
    import ray

    env = os.environ | {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    subprocess.run([sys.executable, "-c", WARM_UP_JOB], env=env, check=True, capture_output=True)
    boot = ray.remote(num_cpus=1)(_boot_worker)
    pids = set(ray.get([boot.remote() for _ in range(int(ray.cluster_resources().get("CPU", 1)))]))
    print(f"booted {len(pids)} idle worker process(es) for this job, as ray.init does")


def _boot_worker() -> int:
    time.sleep(0.5)  # held, so that each call gets its own process
    return os.getpid()


def run_loop(cfg, out: Path) -> dict:
    t0 = time.perf_counter()
    seconds, done = plain_loop(cfg, out)
    return {"seconds": seconds, "wall": time.perf_counter() - t0, "first": done[0], "done": done}


def run_pipeline(cfg, out: Path) -> dict:
    from pipelines.runtime import init_ray

    t0 = time.perf_counter()
    init_ray()
    warm_up_ray_data()
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    from pipelines.curation import build

    imports = time.perf_counter() - t0  # build() times its clips from its own start
    summary = build(cfg, out=out, progress=False)
    done = [imports + t for t in summary.clip_seconds]
    return {"seconds": summary.seconds_in, "wall": time.perf_counter() - t0, "startup": startup,
            "first": done[0], "done": done, "kept": summary.clips_kept,
            "rejected": sum(summary.clips_rejected.values())}


def run_side(side: str, args: argparse.Namespace, folder: Path, out: Path) -> dict:
    """One side in a fresh Python process: nothing either side imported or loaded is
    reused by the other."""
    cmd = [sys.executable, __file__, "--side", side, "--out", str(out), "--media", str(folder)]
    for flag in ("filter_actors", "filter_threads"):
        if getattr(args, flag):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not result:
        sys.exit(f"the {side} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        if not line.startswith("RESULT "):
            print(line)
    return json.loads(result[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--media", default=None, help="folder of sources (default: out/bench-media/<N>x<S>s, "
                    "generated when missing); every video in it is used")
    ap.add_argument("--filter-actors", type=int, help="ray.filter_actors (default: the config's)")
    ap.add_argument("--filter-threads", type=int, help="ray.filter_threads (default: the config's)")
    ap.add_argument("--side", choices=["loop", "pipeline"], help=argparse.SUPPRESS)  # one side, in a child
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # The default folder is named by its shape: every video in the folder is a source.
    folder = Path(args.media or f"out/bench-media/{args.sources}x{args.seconds:g}s").resolve()
    cfg = parse_config(CONFIG.format(folder=folder), "benchmark", str(folder))
    if args.filter_actors:
        cfg.ray.filter_actors = args.filter_actors
    if args.filter_threads:
        cfg.ray.filter_threads = args.filter_threads
    if args.side:
        run = run_loop if args.side == "loop" else run_pipeline
        print("RESULT " + json.dumps(run(cfg, Path(args.out))))
        return

    make_media(folder, args.sources, args.seconds)
    cpus = os.cpu_count() or 1
    print(f"machine: {cpus} CPUs; {args.sources} sources x {args.seconds:.0f} s, video {cfg.video.size}px "
          f"@ {cfg.video.fps:g} fps, filter samples {cfg.filters.sample_fps:g} frames per video second; "
          f"filter stage {cfg.ray.filter_actors} actor(s) x {cfg.ray.filter_threads} thread(s)")
    tmp = Path(tempfile.mkdtemp(prefix="mentor-bench-"))
    try:
        loop = run_side("loop", args, folder, tmp / "loop")
        loop_rate = loop["seconds"] / loop["wall"]
        print(f"plain loop: {loop['seconds']:.0f} s of video in {loop['wall']:.1f} s -> {loop_rate:.2f} video-s per "
              f"wall-s (first clip after {loop['first']:.1f} s)")
        pipe = run_side("pipeline", args, folder, tmp / "pipe")
        pipe_rate = pipe["seconds"] / pipe["wall"]
        print(f"ray start-up: {pipe['startup']:.1f} s (not counted: ray.init with the idle workers it boots, and "
              "Ray Data's cluster-wide helpers, which a long-running cluster has already)")
        print(f"pipeline:   {pipe['seconds']:.0f} s of video in {pipe['wall']:.1f} s -> {pipe_rate:.2f} video-s per "
              f"wall-s ({pipe['kept']} clips kept, {pipe['rejected']} rejected; first clip after {pipe['first']:.1f} s: "
              "actor processes load their libraries and models)")
        # Steady state, what a long build sees: clips per second over the middle half
        # of each run's clip completions (past warm-up, before the tail drains).
        steady = middle_rate(pipe["done"]) / middle_rate(loop["done"])
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
