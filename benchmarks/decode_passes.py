"""How much decoding each curation pass over a source costs: CPU seconds and decoder opens.

On a generated talking-head source (mentor.testmedia, --seconds long, at 512 px and at a
1280x720 copy), each pass that decodes the source is run as curation runs it and set beside
one plain decode of the whole file in the same run (decord, every frame, full size):

  shots     prepare's shot detection (mentor.curate.shots.detect_shots: one reader, frames
            scaled by the decoder, its timestamps end the last shot)
  filter    the person filter's frames of one clip: the 5 fps samples at the detection size
            and the full-resolution quality frames from one reader (media.read_frame_sets),
            against the same frames from two readers (two read_frames calls, as before)
  encode    the clip's crop, scale and H.264 encode (ffmpeg: decode + x264)

CPU is the process's (every thread) plus its ffmpeg children, best of --repeat runs;
state the load beside it (printed) on a shared machine.

    python benchmarks/decode_passes.py [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def counted_opens() -> Counter:
    """Count every decord reader opened from now on (path -> opens)."""
    import decord

    opens: Counter = Counter()
    reader = decord.VideoReader

    class Counted(reader):
        def __init__(self, uri, *args, **kwargs):
            opens[str(uri)] += 1
            super().__init__(uri, *args, **kwargs)

    decord.VideoReader = Counted
    return opens


def best(fn, repeat: int, opens: Counter) -> tuple[float, int]:
    """(least CPU seconds over `repeat` runs, decoder opens per run)."""
    from pipelines.cpu import process_cpu

    cpu = []
    for _ in range(repeat):
        opens.clear()
        c0 = process_cpu()
        fn()
        cpu.append(process_cpu() - c0)
    return min(cpu), sum(opens.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from mentor.config import FilterConfig, ShotConfig
    from mentor.media import encode_clip, open_video, probe, read_frame_sets, read_frames
    from mentor.curate.shots import detect_shots
    from mentor.testmedia import make_talking_clip

    opens = counted_opens()
    root = Path(tempfile.mkdtemp(prefix="mentor-decode-"))
    small = make_talking_clip(root / "talk512.mp4", seconds=args.seconds, seed=0)
    large = root / "talk720.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(small), "-vf", "scale=1280:720",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", "50", "-c:a", "copy", str(large)],
                   check=True)
    fcfg = FilterConfig()
    print(f"load average {os.getloadavg()[0]:.1f} (1-min, {os.cpu_count()} CPUs); CPU seconds, best of {args.repeat}")
    for src in (small, large):
        info = probe(src)
        start, end = 0.2, info.duration - 0.2
        dur, k = end - start, fcfg.quality_frames
        scale = min(1.0, fcfg.detect_max_side / max(info.width, info.height))
        det = (round(info.width * scale), round(info.height * scale)) if scale < 1 else None
        side = min(info.width, info.height) * 5 // 8
        samplings = [(fcfg.sample_fps, start, end), (k / dur, start + dur / (2 * k), end)]

        def full_decode():
            vr = open_video(src)
            for _ in range(len(vr)):
                vr.next()

        def two_readers():
            read_frames(src, *samplings[0], size=det)
            read_frames(src, *samplings[1])

        passes = [
            ("one full decode (baseline)", full_decode),
            ("shots (prepare)", lambda: detect_shots(src, ShotConfig(), (info.width, info.height))),
            ("filter frames, one reader", lambda: read_frame_sets(src, samplings, sizes=[det, None])),
            ("filter frames, two readers (before)", two_readers),
            ("encode (decode + crop + scale + x264)",
             lambda: encode_clip(src, root / "clip.mp4", start, end, 25, 512, crop=(0, 0, side), crf=22,
                                 preset="superfast", source_fps=info.fps)),
        ]
        print(f"\n{src.name}: {info.width}x{info.height} at {info.fps:g} fps, {info.duration:.1f} s")
        base = None
        for name, fn in passes:
            cpu, n = best(fn, args.repeat, opens)
            base = base or cpu
            print(f"  {name:40s} {cpu:6.3f} CPU s  {cpu / base:5.2f} x one decode  {n} decord reader(s)")


if __name__ == "__main__":
    main()
