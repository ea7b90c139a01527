"""What curation + annotation costs per hour of kept video: CPU core-hours per stage and
in all, from a real `mentor build` on generated talking-head media.

The media (mentor.testmedia: a real photo talking with espeak-ng speech, mouth in step)
hold a realistic share of clips that should be dropped: besides the good talking clips,
one with two people in the picture (the filter drops it), one with two voices taking
turns over one face (diarization drops it) and one with no speech (voice activity).

Every stage but ASR runs (ASR needs a Whisper checkpoint; its cost is the model's). The
figure per stage is the build summary's worker seconds for that stage (each clip step
runs on one core: one thread per MediaPipe / ffmpeg / torch call) over the kept hours;
"prepare" is fetch + probe + shot detection per source. Ray's start-up and idle time are
not in it: the wall-clock line beside it says what the whole run took on this machine.

The landmark stage is set beside its ceiling, measured in the same run: MediaPipe
Holistic alone on the same decoded frames of the kept clips (share = Holistic alone /
landmark stage; 1.0 would be a stage that adds nothing to Holistic's own time).

    python benchmarks/curation_cost.py [--sources 6] [--seconds 10]

The goal (issue 15): at most 2 core-hours per kept hour on a 2-core CPU box.
"""

from __future__ import annotations

import argparse
import os
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


def holistic_alone(videos: list[Path], cfg) -> tuple[float, int]:
    """Seconds MediaPipe Holistic alone takes on every frame of `videos` (decoded
    beforehand, one tracker per clip, as the landmark stage runs it)."""
    from mediapipe.python.solutions import holistic

    from mentor.media import read_frames

    total, frames = 0.0, 0
    for v in videos:
        clip = read_frames(v)
        with holistic.Holistic(static_image_mode=False, model_complexity=cfg.model_complexity, smooth_landmarks=True,
                               refine_face_landmarks=cfg.refine_face_landmarks) as tracker:
            t0 = time.perf_counter()
            for f in clip:
                tracker.process(f)
            total += time.perf_counter() - t0
        frames += len(clip)
    return total, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=6, help="good talking clips (3 clips to drop are added)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each source")
    ap.add_argument("--keep", help="a folder to keep the media and the store in (default: a temporary one)")
    args = ap.parse_args()

    import ray

    from mentor.config import parse_config
    from mentor.store import Store
    from pipelines.curation import build

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mentor-cost-"))
    folder, out = root / "media", root / "store"
    t0 = time.perf_counter()
    kinds = make_media(folder, args.sources, args.seconds)
    print(f"media: {len(kinds)} sources x {args.seconds:g} s in {folder} ({time.perf_counter() - t0:.0f} s to make)")
    cfg = parse_config(CONFIG.format(folder=folder), "bench.yaml", str(root))
    summary = build(cfg, out=out, progress=False, keep_work=True)
    cores = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    kept_h = summary.seconds_out / 3600
    print(summary.render())
    if kept_h <= 0:
        raise SystemExit("no clip was kept: nothing to divide by")

    # the landmark stage against Holistic alone, on the same frames of the kept clips
    store = Store(out)
    kept_ids = set(store.clips()["clip_id"])
    work = out / "_work" / "clips"
    videos = sorted(p for p in work.glob("*.mp4") if p.stem in kept_ids)
    alone, n_frames = holistic_alone(videos, cfg.annotate.landmarks)
    per_clip = {r.id: (r.annotations.get("pipeline") or {}).get("seconds", {}).get("landmarks", 0.0)
                for r in store.records(clip_ids=[p.stem for p in videos])}
    stage = sum(per_clip.values())

    print(f"\nkept: {summary.clips_kept} clips, {summary.seconds_out:.0f} s of {summary.seconds_in:.0f} s seen "
          f"({summary.seconds_out / max(summary.seconds_in, 1e-9):.0%})")
    print("CPU core-hours per kept hour, by stage (worker seconds / kept seconds):")
    total = 0.0
    for name, secs in sorted(summary.stage_seconds.items(), key=lambda kv: -kv[1]):
        ratio = secs / summary.seconds_out
        total += ratio
        print(f"  {name:14s} {ratio:6.3f}   ({secs:7.1f} worker s)")
    print(f"  {'all stages':14s} {total:6.3f}   goal <= 2.0 -> {'met' if total <= 2.0 else 'NOT met'}")
    print(f"wall clock: {summary.wall_seconds:.0f} s x {cores} cores = "
          f"{summary.wall_seconds * cores / summary.seconds_out:.2f} core-hours per kept hour (Ray start-up and idle included)")
    if stage > 0:
        print(f"landmark stage: {stage:.1f} s on {n_frames} frames ({n_frames / stage:.1f} frames/s); Holistic alone "
              f"on the same frames: {alone:.1f} s ({n_frames / alone:.1f} frames/s); share of the ceiling "
              f"{alone / stage:.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
