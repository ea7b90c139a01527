"""Training windows: WindowDataset (decodes only each window's frames and audio span)
against the baseline of decoding whole clips with Store.dataset and cutting the same
windows out of them, in the same run, on the same synthetic store.

    python -m benchmarks.windows [--clips 8] [--seconds 8] [--frames 16] [--size 128]
                                 [--windows-per-clip 4] [--store PATH]

Prints windows per second for both and the ratio. Both sides produce the same windows
(same clips and starts); the first pass of each warms the page cache and imports.
--store keeps the generated store at PATH (reused when it exists). The clips are encoded
as the pipeline encodes them (libx264 defaults: one key frame per 250 frames), so a clip's
windows decode forward from its start: the saving grows with the clip's length against
the frames the windows need.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--windows-per-clip", type=int, default=4)
    ap.add_argument("--store", default=None, help="keep (or reuse) the generated store here")
    args = ap.parse_args()

    import torch

    from mentor.store import Store
    from mentor.store.windows import WindowDataset, resample
    from mentor.synthstore import write_synthetic_store

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="mentor-bench-windows-") as tmp:
        t0 = time.perf_counter()
        root = Path(args.store) if args.store else Path(tmp) / "store"
        if not (root / "store.json").exists():
            write_synthetic_store(root, n_clips=args.clips, seconds=args.seconds, size=args.size,
                                  shard_bytes=2_000_000)
            print(f"store: {args.clips} clips x {args.seconds:g} s at {args.size} px in "
                  f"{time.perf_counter() - t0:.1f} s")
        kw = dict(frames=args.frames, mode="random", seed=0, windows_per_clip=args.windows_per_clip,
                  arrays=("smplx.*", "audio.logmel"))
        plan = WindowDataset(root, **kw).plan()
        by_clip: dict[str, list[int]] = {}
        for w in plan:
            by_clip.setdefault(w.clip_id, []).append(w.start)

        def windows() -> int:
            return sum(1 for _ in WindowDataset(root, **kw))

        def baseline() -> int:
            n = 0
            for s in Store(root).dataset():
                rec, fps = s["record"], s["record"].fps
                for start in by_clip.get(rec.id, []):
                    _ = s["video"][start:start + args.frames]
                    per = s["sample_rate"] / fps
                    _ = s["audio"][int(round(start * per)):int(round((start + args.frames) * per))]
                    times = (start + torch.arange(args.frames).numpy()) / fps
                    _ = {k: resample(a, times) for k, a in rec.arrays.items()
                         if k.startswith("smplx.") or k == "audio.logmel"}
                    n += 1
            return n

        for name, fn in (("warm-up windows", windows), ("warm-up baseline", baseline)):
            fn()
        t = time.perf_counter()
        nw = windows()
        tw = time.perf_counter() - t
        t = time.perf_counter()
        nb = baseline()
        tb = time.perf_counter() - t
        assert nw == nb == len(plan), (nw, nb, len(plan))
        print(f"{nw} windows of {args.frames} frames from {args.clips} clips of {args.seconds:g} s")
        print(f"WindowDataset: {nw / tw:.1f} windows/s   whole-clip decode + cut: {nb / tb:.1f} windows/s   "
              f"ratio {tb / tw:.2f}x")


if __name__ == "__main__":
    main()
