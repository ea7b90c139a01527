"""What curation + annotation costs per hour of kept video: CPU core-hours per stage and
in all, from a real `mentor build` on generated talking-head media.

The media (mentor.testmedia: a real photo talking with espeak-ng speech, mouth in step)
hold a realistic share of clips that should be dropped: besides the good talking clips,
one with two people in the picture (the filter drops it), one with two voices taking
turns over one face (cut at the turn; the sync check drops the pieces whose voice the mouth
does not follow) and one with no speech (the filter's speech check).

Every stage but ASR runs (ASR needs a Whisper checkpoint; its cost is the model's), one
clip at a time per worker process (two filter and two annotate actors of one thread), so
that each stage call's CPU is its own. The figure per stage is the build summary's CPU
seconds for that stage (every thread of the worker process, MediaPipe's graph threads
included, plus its ffmpeg children: pipelines.cpu) over the kept seconds; "prepare" is
fetch + probe + shot detection per source. Ray's start-up and idle time are not in it, nor
is each worker process's own start-up (its boot and imports, the models it loads, prepare's
first-call warm-up: pipelines.stages.Startup), which is printed on a line of its own: it is
paid once per worker, not per kept hour. A line gives the landmark CPU of the clips the sync
check rejected (the two-voice pieces): the face mesh alone, since the landmark stage asks the
check's verdict before the pose and hands. The wall-clock line beside it says what the whole run took on this machine (and counts
other people's load on a shared one; the CPU seconds do not).

The landmark stage is set beside its ceiling, measured in the same run: MediaPipe
Holistic alone on the same decoded frames of the kept clips, in this process. Then each
choice of the part-wise landmark path (annotate.landmarks "parts": face mesh alone, in
the filter's face crop, pose every k-th frame or stretched while the face is still, hands
only where a wrist is in the picture) is timed on the first `--choice-clips` kept clips and compared with Holistic
on every frame: error in pixels and as a fraction of the face size, per part ("body": the
visible pose points from the shoulders down).

    python benchmarks/curation_cost.py [--sources 6] [--seconds 10] [--choice-clips 2] [--worker-check 3]

`--worker-check N` runs every stage N times on one clip in a Ray actor and in this process,
alternating, and prints each stage's CPU in both (a stage costs the same in a worker: the
gap seen between builds and single runs is the load, not Ray).

The goal (issue 15): at most 2 core-hours per kept hour on a 2-core CPU box.
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

CONFIG = """
sources:
  - {{name: bench, kind: folder, path: {folder}}}
annotate:
  asr: {{enabled: false}}
ray: {{filter_actors: 2, filter_threads: 1, annotate_actors: 2, annotate_threads: 1}}
"""
VOICES = ("en", "en+f3", "en+m7", "en-us", "en+f4")


def make_media(folder: Path, n_good: int, seconds: float) -> dict[str, str]:
    """n_good talking clips and three that should be dropped; {file name: what it is}."""
    from mentor.testmedia import (_write_wav, make_multi_person_clip, make_talking_clip,
                                  two_speaker_samples)

    kinds = {f"talk{i}.mp4": "good" for i in range(n_good)} | {
        "two_people.mp4": "two people (filter)", "two_voices.mp4": "two voices (diarization)",
        "silent.mp4": "no speech (voice activity)"}
    if all((folder / name).is_file() for name in kinds):  # made by an earlier run (--keep)
        return kinds
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for i in range(n_good):
        p = folder / f"talk{i}.mp4"
        # the astronaut: the other test photo is a man in profile, whom the head-pose gate drops
        make_talking_clip(p, seconds=seconds, seed=i, voice=VOICES[i % len(VOICES)])
        kinds[p.name] = "good"
    make_multi_person_clip(folder / "two_people.mp4", seconds=seconds, seed=n_good)
    kinds["two_people.mp4"] = "two people (filter)"
    # one face, two voices taking turns: the picture talks, the audio is two people
    face = make_talking_clip(folder / ".face.mp4", seconds=seconds, seed=n_good + 1, audio=False)
    samples, _ = two_speaker_samples(seconds, voices=("en", "en+f4"))
    wav = _write_wav(folder / ".two_voices.wav", samples, 16000)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(face), "-i", str(wav), "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-ar", "16000", str(folder / "two_voices.mp4")],
                   check=True)
    face.unlink()
    wav.unlink()
    kinds["two_voices.mp4"] = "two voices (diarization)"
    _silent(folder / "silent.mp4", seconds, n_good + 2)
    kinds["silent.mp4"] = "no speech (voice activity)"
    return kinds


def _silent(path: Path, seconds: float, seed: int) -> Path:
    """A still face with a silent audio track."""
    from mentor.testmedia import make_silence, make_talking_clip

    face = make_talking_clip(path.with_name(".silent_face.mp4"), seconds=seconds, seed=seed, audio=False, mouth=False)
    wav = make_silence(path.with_name(".silence.wav"), seconds)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(face), "-i", str(wav), "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-ar", "16000", str(path)], check=True)
    face.unlink()
    wav.unlink()
    return path


def cpu_now() -> float:
    """CPU seconds of this process, every thread (MediaPipe runs its graphs on its own)."""
    return time.process_time()


def landmark_error(got: dict, ref: dict) -> dict[str, float]:
    """Landmark error of `got` against `ref` (Holistic on every frame), on the same frames.

    Face: all points; pose: the points Holistic sees (visibility >= 0.5); hands: the points
    of frames where both found the hand, and the frames where only one did. px and as a
    fraction of the face size (the median side of Holistic's face-mesh box).
    """
    import numpy as np

    f = ref["face"][..., :2]
    face_size = float(np.nanmedian(np.nanmax(f, 1) - np.nanmin(f, 1)).max())

    def dist(a, b, mask=None):
        d = np.hypot(*(a[..., :2] - b[..., :2]).transpose(2, 0, 1))
        d = d[mask] if mask is not None else d.ravel()
        d = d[np.isfinite(d)]
        return d

    out = {"face_size": face_size}
    body = ref["pose"][..., 3] >= 0.5
    body[:, :11] = False  # BlazePose 11+: shoulders down (0-10 are the face's, which the face mesh also gives)
    parts = {"face": dist(got["face"], ref["face"]),
             "pose": dist(got["pose"], ref["pose"], ref["pose"][..., 3] >= 0.5),
             "body": dist(got["pose"], ref["pose"], body),
             "hands": np.concatenate([dist(got[h], ref[h]) for h in ("left_hand", "right_hand")])}
    for k, d in parts.items():
        out[f"{k}_mean_px"] = float(d.mean()) if d.size else float("nan")
        out[f"{k}_p95_px"] = float(np.percentile(d, 95)) if d.size else float("nan")
    seen = [(np.isfinite(got[h][..., 0]).any(1), np.isfinite(ref[h][..., 0]).any(1)) for h in ("left_hand", "right_hand")]
    out["hand_frames_ref"] = int(sum(r.sum() for _, r in seen))
    out["hand_frames_disagree"] = int(sum((g != r).sum() for g, r in seen))
    out["face_found_disagree"] = int((np.isfinite(got["face"][..., 0]).any(1) != np.isfinite(f[..., 0]).any(1)).sum())
    return out


def run_variant(annotator, clips: list, **kw) -> tuple[list[dict], float, int]:
    """The annotator's landmark arrays on each clip's frames; CPU seconds and frames."""
    outs, cpu, frames = [], 0.0, 0
    for frames_, box in clips:
        c0 = cpu_now()
        outs.append(annotator.process_frames(frames_, face_box=box if kw.get("seeded") else None,
                                             mode=kw.get("mode")))
        cpu += cpu_now() - c0
        frames += len(frames_)
    return outs, cpu, frames


def pooled(errors: list[dict]) -> dict[str, float]:
    """Per-clip figures over clips: counts summed, the rest averaged (clips of equal length)."""
    import numpy as np

    keys = errors[0].keys()
    return {k: (float(np.nansum([e[k] for e in errors])) if k.startswith(("hand_frames", "face_found"))
                else float(np.nanmean([e[k] for e in errors]))) for k in keys}


class ClipSteps:
    """The clip stages (filter, encode, the annotators) on one source's first clip, built
    once; `run()` -> CPU seconds per stage of one more pass (pipelines.stages.run_timed).
    Built in this process and in a Ray actor, the same class measures both."""

    def __init__(self, cfg, source: str, work: str):
        from annotate.registry import build_annotators
        from mentor.curate.prepare import source_clips
        from mentor.record import SourceRecord
        from pipelines.curation import plan

        curate, annotate = plan(cfg)
        self.steps = build_annotators(cfg, curate + annotate, Path(work))
        for a in self.steps:
            if callable(getattr(a, "warm", None)):
                a.warm()
        self.clip = source_clips(SourceRecord.from_uri(Path(source).as_uri()), cfg, Path(work))[0]

    def run(self) -> dict[str, float]:
        from pipelines.stages import CPU_SECONDS, PIPELINE, run_timed

        rec = run_timed(self.steps, self.clip.model_copy(deep=True))
        return rec.annotations[PIPELINE][CPU_SECONDS]


def worker_check(cfg, source: Path, root: Path, passes: int) -> None:
    """Each stage's CPU on the same clip in this process and in a Ray actor (one thread,
    as the build's), passes alternating so that both see the same load; a first pass each,
    not counted, pays the first-use costs."""
    import ray

    from pipelines.runtime import init_ray

    init_ray(num_cpus=2)
    module = sys.modules[ClipSteps.__module__]
    if module.__name__ != "__main__":  # imported (a test, python -m): the class travels by value all the same
        ray.cloudpickle.register_pickle_by_value(module)
    try:
        actor = ray.remote(num_cpus=0.5)(ClipSteps).remote(cfg, str(source), str(root / "check_ray"))
        here = ClipSteps(cfg, str(source), str(root / "check_here"))
        ray.get(actor.run.remote()), here.run()
        got: dict[str, list] = {"ray": [], "here": []}
        for _ in range(passes):
            got["ray"].append(ray.get(actor.run.remote()))
            got["here"].append(here.run())
    finally:
        ray.shutdown()
    print(f"\neach stage on the same clip ({source.name}), in a Ray actor and in this process, {passes} passes each, "
          f"alternating (CPU s per clip, mean; load average {os.getloadavg()[0]:.1f}):")
    for stage in got["here"][0]:
        r = sum(p.get(stage, 0.0) for p in got["ray"]) / passes
        h = sum(p.get(stage, 0.0) for p in got["here"]) / passes
        print(f"  {stage:14s} actor {r:7.3f}   here {h:7.3f}   actor / here {r / h if h > 0 else float('nan'):5.2f}")


def focal_search_seconds(records) -> tuple[float, int]:
    """CPU seconds the SMPL-X stage spent beyond its kept fit on clips whose focal was searched
    (the search's other candidates: the stage's CPU less the kept fit's stages), and how many."""
    extra, searched = 0.0, 0
    for r in records:
        smplx = r.annotations.get("smplx") or {}
        stage = (r.annotations.get("pipeline") or {}).get("cpu_seconds", {}).get("smplx")
        if smplx.get("focal_source") == "fitted" and stage and smplx.get("stage_cpu_seconds"):
            extra += max(stage - sum(smplx["stage_cpu_seconds"].values()), 0.0)
            searched += 1
    return extra, searched


def startup_seconds(store) -> dict[str, float]:
    """The workers' start-up CPU (boot, imports, model loads: pipelines.stages.Startup), from
    every record of the build, kept or rejected: once per worker process, not per clip."""
    import json

    from pipelines.stages import PIPELINE, STARTUP

    annotations = [r.annotations for r in store.records()]
    rejected = store.rejected()
    if len(rejected) and "record" in rejected.columns:
        annotations += [json.loads(r).get("annotations", {}) for r in rejected["record"] if isinstance(r, str)]
    out: dict[str, float] = {}
    for ann in annotations:
        for k, v in ((ann.get(PIPELINE) or {}).get(STARTUP) or {}).items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def landmark_seconds_of_rejected(store, stage: str) -> tuple[float, int]:
    """CPU seconds the landmark stage spent on clips `stage` rejected after it (the sync check:
    since the landmark stage asks its verdict first, the face mesh alone), and how many."""
    from mentor.record import ClipRecord
    from pipelines.stages import CPU_SECONDS, PIPELINE

    rejected = store.rejected()
    if not len(rejected) or "record" not in rejected.columns:
        return 0.0, 0
    recs = [ClipRecord.from_json(r) for r in rejected["record"] if isinstance(r, str)]
    recs = [r for r in recs if r.reject_stage == stage]
    return sum((r.annotations.get(PIPELINE) or {}).get(CPU_SECONDS, {}).get("landmarks", 0.0) for r in recs), len(recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=6, help="good talking clips (3 clips to drop are added)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each source")
    ap.add_argument("--choice-clips", type=int, default=2,
                    help="kept clips on which each landmark choice is timed and compared with Holistic (0: none)")
    ap.add_argument("--keep", help="a folder to keep the media and the store in (default: a temporary one)")
    ap.add_argument("--worker-check", type=int, default=0,
                    help="passes of every stage on one clip in a Ray actor and in this process, alternating "
                         "(0: none; checks that a stage costs no more in a worker)")
    args = ap.parse_args()

    import numpy as np
    import ray

    from annotate.landmarks import HolisticLandmarks, face_region
    from mentor.config import parse_config
    from mentor.media import read_frames
    from mentor.store import Store
    from pipelines.curation import build

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mentor-cost-"))
    folder, out = root / "media", root / "store"
    if out.exists():
        shutil.rmtree(out)  # a fresh build every run: a resumed one measures nothing
    t0 = time.perf_counter()
    kinds = make_media(folder, args.sources, args.seconds)
    print(f"media: {len(kinds)} sources x {args.seconds:g} s in {folder} ({time.perf_counter() - t0:.0f} s to make)")
    cfg = parse_config(CONFIG.format(folder=folder), "bench.yaml", str(root))
    load0 = os.getloadavg()
    for attempt in range(3):  # a busy machine can make Ray's first 30 s of start-up fail
        try:
            summary = build(cfg, out=out, progress=False)
            break
        except Exception as e:
            if "timed out during startup" not in str(e) or attempt == 2:
                raise
            print(f"Ray did not start (load average {os.getloadavg()[0]:.1f}); trying again")
            ray.shutdown()
            shutil.rmtree(out, ignore_errors=True)
    load1 = os.getloadavg()
    cores = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    ray.shutdown()
    print(summary.render())
    if summary.seconds_out <= 0:
        raise SystemExit("no clip was kept: nothing to divide by")

    # -- the landmark stage against Holistic alone, on the same frames of the kept clips ----
    lm_cfg = cfg.annotate.landmarks
    media = root / "kept_media"
    records = list(Store(out).records(media_dir=media))
    stage_cpu = sum((r.annotations.get("pipeline") or {}).get("cpu_seconds", {}).get("landmarks", 0.0)
                    for r in records)
    annotator = HolisticLandmarks(lm_cfg)
    ref, built, holistic_cpu, n_frames = [], [], 0.0, 0
    clips = []
    for r in records:
        frames = read_frames(r.files["video"], fps=r.fps)
        box = face_region(r, frames.shape[2], frames.shape[1])
        c0 = cpu_now()
        ref.append(annotator.process_frames(frames, mode="holistic"))
        holistic_cpu += cpu_now() - c0
        n_frames += len(frames)
        built.append({k.split(".", 1)[1]: np.asarray(r.arrays[k].data) for k in r.arrays if k.startswith("landmarks.")})
        if len(clips) < args.choice_clips:
            clips.append((frames, box))
    build_err = pooled([landmark_error(b, h) for b, h in zip(built, ref)])

    # -- each choice of the part-wise path, timed and compared on the first clips ---------
    choices = [("holistic, every frame (reference)", dict(mode="holistic"), lm_cfg),
               ("parts: stride 1, full-frame face mesh", dict(mode="parts"),
                lm_cfg.model_copy(update={"pose_stride": 1, "pose_max_stride": 1})),
               ("parts: stride 1, face mesh in the filter's crop", dict(mode="parts", seeded=True),
                lm_cfg.model_copy(update={"pose_stride": 1, "pose_max_stride": 1})),
               *((f"parts: pose every {k} frames, seeded", dict(mode="parts", seeded=True),
                  lm_cfg.model_copy(update={"pose_stride": k, "pose_max_stride": k})) for k in (2, 3, 4, 6)),
               (f"parts: every {lm_cfg.pose_stride}, to {lm_cfg.pose_max_stride} if still, seeded",
                dict(mode="parts", seeded=True), lm_cfg)]
    rows = []
    for name, kw, c in (choices if clips else ()):  # --choice-clips 0: no table
        outs, cpu, frames = run_variant(HolisticLandmarks(c), clips, **kw)
        err = pooled([landmark_error(o, h) for o, h in zip(outs, ref)])
        rows.append((name, cpu / frames, err))

    kept_s = summary.seconds_out
    print(f"\nkeep rate: {summary.clips_kept} clips, {kept_s:.0f} s kept of {summary.seconds_in:.0f} s seen "
          f"({kept_s / max(summary.seconds_in, 1e-9):.0%})")
    print(f"load average during the build: {load0[0]:.1f} at start, {load1[0]:.1f} at end (1-min; "
          f"{os.cpu_count()} CPUs)")
    print("CPU core-hours per kept hour, by stage (CPU seconds of every thread and ffmpeg child / kept seconds):")
    total = 0.0
    for name, secs in sorted(summary.stage_cpu_seconds.items(), key=lambda kv: -kv[1]):
        ratio = secs / kept_s
        total += ratio
        print(f"  {name:14s} {ratio:6.3f}   ({secs:7.1f} CPU s; {summary.stage_seconds[name]:7.1f} wall s)")
    print(f"  {'all stages':14s} {total:6.3f}   goal <= 2.0 -> {'met' if total <= 2.0 else 'NOT met'}")
    search_cpu, searched = focal_search_seconds(records)
    if searched:
        # the search fits a source's first clip under 4-6 focals (annotate/smplx_focal.py) and reuses
        # the focal for the source's other clips: here every source is one clip, so every source pays it
        per_kept = search_cpu / kept_s
        print(f"  of SMPL-X, ~the focal search's other candidates (the stage's CPU less the kept fit's, on the "
              f"{searched} clips with a fitted focal; paid once per source that gives none, here one {args.seconds:g} s clip each): {per_kept:.3f}; all stages without it "
              f"{total - per_kept:.3f}; with it paid once per 5-minute source {total - per_kept + per_kept * args.seconds / 300:.3f}")
    synced_out, n_synced_out = landmark_seconds_of_rejected(Store(out), "sync")
    if n_synced_out:
        print(f"  of the landmarks, the {n_synced_out} clips the sync check rejected: {synced_out:.1f} CPU s "
              f"({synced_out / kept_s:.3f} per kept hour)")
    startup = startup_seconds(Store(out))
    if startup:
        once = sum(startup.values())
        print(f"worker start-up, once per worker process and not in the figures above (it does not grow with the "
              f"video): {once:.1f} CPU s = {once / kept_s:.3f} core-hours per kept hour of this {kept_s:.0f} s build, "
              f"{once / 3600:.4f} per kept hour of a 1-hour build ({', '.join(f'{k} {v:.1f}' for k, v in sorted(startup.items(), key=lambda kv: -kv[1]))})")
        print(f"  all stages with this build's start-up: {total + once / kept_s:.3f}")
    # prepare and filter see every raw second, the later stages (mostly) the kept ones: what the same
    # work would cost per kept hour where far less is kept (an estimate from this run's own figures)
    raw = sum(summary.stage_cpu_seconds.get(k, 0.0) for k in ("prepare", "filter")) / max(summary.seconds_in, 1e-9)
    rest = total - sum(summary.stage_cpu_seconds.get(k, 0.0) for k in ("prepare", "filter")) / kept_s
    for rate in (0.25, 0.10):
        print(f"  at a {rate:.0%} keep rate (estimate: prepare + filter per raw hour / keep rate, the rest as "
              f"here): {raw / rate + rest:.2f}")
    print(f"wall clock: {summary.wall_seconds:.0f} s x {cores} cores = "
          f"{summary.wall_seconds * cores / kept_s:.2f} core-hours per kept hour (Ray start-up, idle and other "
          "people's load included)")
    if stage_cpu > 0:
        print(f"landmark stage ({lm_cfg.mode}, pose every {lm_cfg.pose_stride} to {lm_cfg.pose_max_stride}): "
              f"{stage_cpu:.1f} CPU s on {n_frames} "
              f"frames ({1000 * stage_cpu / n_frames:.1f} ms/frame, decoding included); Holistic alone on the same "
              f"frames: {holistic_cpu:.1f} CPU s ({1000 * holistic_cpu / n_frames:.1f} ms/frame); the stage takes "
              f"{stage_cpu / holistic_cpu:.2f} of Holistic's CPU (Holistic alone / stage = {holistic_cpu / stage_cpu:.2f})")
    e = build_err
    print(f"the build's landmarks against Holistic on every frame ({len(records)} clips; face size "
          f"{e['face_size']:.0f} px): face {e['face_mean_px']:.2f} px mean, {e['face_p95_px']:.2f} p95 "
          f"({e['face_mean_px'] / e['face_size']:.4f} of the face); pose (visible points) {e['pose_mean_px']:.2f} px "
          f"mean, {e['pose_p95_px']:.2f} p95 ({e['pose_mean_px'] / e['face_size']:.4f}), shoulders down "
          f"{e['body_mean_px']:.2f} px mean; hands: Holistic found "
          f"{e['hand_frames_ref']:.0f} hand-frames, {e['hand_frames_disagree']:.0f} disagree")
    if args.worker_check:
        worker_check(cfg, folder / "talk0.mp4", root, args.worker_check)
    if not rows:
        return
    print(f"\neach landmark choice on {len(clips)} kept clip(s), in this process (CPU ms per frame, decoding not "
          "included; error against Holistic on every frame, px and fraction of the face size):")
    print(f"  {'choice':48s} {'ms/frame':>8s} {'x Holistic':>10s} {'face px':>8s} {'face p95':>8s} {'pose px':>8s} "
          f"{'pose p95':>8s} {'pose/face':>9s} {'body px':>8s} {'hand frames off':>15s}")
    base = rows[0][1]
    for name, ms, err in rows:
        print(f"  {name:48s} {1000 * ms:8.1f} {ms / base:10.2f} {err['face_mean_px']:8.2f} {err['face_p95_px']:8.2f} "
              f"{err['pose_mean_px']:8.2f} {err['pose_p95_px']:8.2f} {err['pose_mean_px'] / err['face_size']:9.4f} "
              f"{err['body_mean_px']:8.2f} "
              f"{err['hand_frames_disagree']:7.0f} of {err['hand_frames_ref']:.0f}")


if __name__ == "__main__":
    main()
