"""Shard reading: decoded training windows per second from the store's shards (WindowDataset)
against the same clips as loose files read with decord, and against decoding whole clips,
in the same run, on the same synthetic store.

Three readers produce the same windows (same clips, same starts, same order: video frames,
the audio of the window's span and the per-frame `smplx.*` / `audio.logmel` arrays at the
window's frame times), one thread each:

- shards: `mentor.store.windows.WindowDataset` (reads a shard's tar headers once, seeks to a
  clip's members, decodes only the window's frames with one decord reader kept per clip).
- loose files (the baseline the issue names): every clip written out of the store as
  `<key>.mp4` + `<key>.flac` + `<key>.json` / `<key>.npz` (its record and arrays), the usual
  "folder of mp4 files" dataset; windows read with `decord.VideoReader(path).get_batch`,
  the audio span with soundfile, the arrays from the npz (loaded once per clip). Two ways:
  a reader opened per window (a map-style dataset's `__getitem__`), and one reader kept
  per clip (the same forward decoding the shard reader does: only the container differs).
- whole clips: `Store.dataset` decoding every clip whole and cutting the windows out.

Prints windows/s and CPU-ms per window for each, and the ratios; the last line is the
ratio shards / loose files (reader kept per clip). The first pass of each side warms the
page cache and imports and is not timed.

    python -m benchmarks.windows [--clips 8] [--seconds 8] [--frames 16] [--size 128]
                                 [--windows-per-clip 4] [--store PATH]

The store is mentor.synthstore's (speech, SMPL-X arrays, audio features, shards), with the
frames drawn fast: the astronaut photo (mentor.testmedia) moved with the body's projected
centre, a real picture in motion for the encoder and decoder, instead of the flat-shaded
mesh render (about 0.25 s a frame on a 2-core box; `--mesh-render` uses it).
--store keeps the generated store at PATH (reused when it exists). The clips are encoded
as the pipeline encodes them (libx264 defaults: one key frame per 250 frames), so a clip's
windows decode forward from its start: the saving against whole clips grows with the
clip's length against the frames the windows need.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np


@functools.lru_cache(maxsize=4)
def _photo(size: int) -> np.ndarray:
    from mentor.testmedia import base_image

    return base_image("astronaut", size)


def photo_frame(vertices, pixels, faces, width, height, color, background, winding=None) -> np.ndarray:
    """mentor.synthstore.render_mesh's stand-in: the astronaut photo shifted by the body's
    projected centre (so the picture moves as the body does), tinted by the clip's background."""
    photo = _photo(max(width, height))[:height, :width]
    dx, dy = np.nan_to_num(np.asarray(pixels, np.float64).mean(0) - (width / 2, height / 2))
    frame = np.roll(photo, (int(round(dy)) % height, int(round(dx)) % width), axis=(0, 1)).astype(np.float32)
    return np.clip(0.8 * frame + 0.2 * np.asarray(background, np.float32), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--windows-per-clip", type=int, default=4)
    ap.add_argument("--store", default=None, help="keep (or reuse) the generated store here")
    ap.add_argument("--mesh-render", action="store_true",
                    help="render the store's frames as mentor.synthstore does (slow) instead of the moving photo")
    args = ap.parse_args(argv)
    for name in ("clips", "frames", "size", "windows_per_clip"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')}={getattr(args, name)}: must be >= 1")
    if args.seconds * 25 < args.frames:
        raise SystemExit(f"--seconds={args.seconds:g}: a clip must hold a window of --frames={args.frames} "
                         "frames at 25 fps; give longer clips or fewer frames")

    import decord
    import soundfile as sf
    import torch

    from mentor.record import ClipRecord
    from mentor.store import Store
    from mentor.store.windows import WindowDataset, resample
    from mentor.synthstore import write_synthetic_store

    torch.set_num_threads(1)
    wanted = lambda k: k.startswith("smplx.") or k == "audio.logmel"  # noqa: E731 (the arrays WindowDataset reads)
    with tempfile.TemporaryDirectory(prefix="mentor-bench-windows-") as tmp:
        t0 = time.perf_counter()
        root = Path(args.store) if args.store else Path(tmp) / "store"
        if not (root / "store.json").exists():
            with contextlib.ExitStack() as stack:
                if not args.mesh_render:
                    stack.enter_context(mock.patch("mentor.synthstore.render_mesh", photo_frame))
                write_synthetic_store(root, n_clips=args.clips, seconds=args.seconds, size=args.size,
                                      shard_bytes=2_000_000)
            print(f"store: {args.clips} clips x {args.seconds:g} s at {args.size} px in "
                  f"{time.perf_counter() - t0:.1f} s")
        loose = Path(tmp) / "loose"
        keys = {}
        for rec in Store(root).records(media_dir=loose):  # <key>.mp4 / .flac as the shards hold them
            key = Path(rec.files["video"]).stem
            keys[rec.id] = key
            (loose / f"{key}.json").write_text(rec.to_json())
            (loose / f"{key}.npz").write_bytes(rec.arrays_npz())
        kw = dict(frames=args.frames, mode="random", seed=0, windows_per_clip=args.windows_per_clip,
                  arrays=("smplx.*", "audio.logmel"))
        plan = WindowDataset(root, **kw).plan()
        by_clip: dict[str, list[int]] = {}
        for w in plan:
            by_clip.setdefault(w.clip_id, []).append(w.start)
        T = args.frames

        def shards() -> int:
            return sum(1 for _ in WindowDataset(root, **kw))

        def loose_files(keep_reader: bool) -> int:
            n, cur, vr, rec = 0, None, None, None
            for w in plan:
                key = keys[w.clip_id]
                if w.clip_id != cur:  # a new clip: its record and arrays, once
                    cur = w.clip_id
                    rec = ClipRecord.from_json((loose / f"{key}.json").read_text(),
                                               (loose / f"{key}.npz").read_bytes())
                    vr = None
                if vr is None or not keep_reader:
                    vr = decord.VideoReader(str(loose / f"{key}.mp4"), ctx=decord.cpu(0), num_threads=1)
                idx = np.arange(w.start, w.start + T)
                _ = torch.from_numpy(vr.get_batch(idx[idx < len(vr)].tolist()).asnumpy())
                with sf.SoundFile(str(loose / f"{key}.flac")) as f:
                    per = f.samplerate / rec.fps
                    f.seek(int(round(w.start * per)))
                    _ = torch.from_numpy(f.read(int(round(T * per)), dtype="float32"))
                times = idx / rec.fps
                _ = {k: torch.from_numpy(resample(a, times)) for k, a in rec.arrays.items() if wanted(k)}
                n += 1
            return n

        def whole_clips() -> int:
            n = 0
            for s in Store(root).dataset():
                rec, fps = s["record"], s["record"].fps
                for start in by_clip.get(rec.id, []):
                    _ = s["video"][start:start + T]
                    per = s["sample_rate"] / fps
                    _ = s["audio"][int(round(start * per)):int(round((start + T) * per))]
                    times = (start + torch.arange(T).numpy()) / fps
                    _ = {k: resample(a, times) for k, a in rec.arrays.items() if wanted(k)}
                    n += 1
            return n

        sides = [("shards (WindowDataset)", shards),
                 ("loose mp4 + flac + npz, decord reader kept per clip", lambda: loose_files(True)),
                 ("loose mp4 + flac + npz, decord reader opened per window", lambda: loose_files(False)),
                 ("whole clips decoded from the shards (Store.dataset) + cut", whole_clips)]
        load = os.getloadavg()
        rates: dict[str, tuple[float, float]] = {}
        for name, fn in sides:
            fn()  # warm-up: page cache, imports
            t, c = time.perf_counter(), time.process_time()
            n = fn()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            if n != len(plan):
                raise RuntimeError(f"{name}: read {n} windows, the plan has {len(plan)}")
            rates[name] = (n / wall, 1000 * cpu / n)
        print(f"{len(plan)} windows of {T} frames from {args.clips} clips of {args.seconds:g} s at {args.size} px, "
              f"1 thread, load average {load[0]:.1f} -> {os.getloadavg()[0]:.1f}:")
        for name, (rate, ms) in rates.items():
            print(f"  {name:58s} {rate:7.1f} windows/s  {ms:6.1f} CPU-ms/window")
        (s_rate, s_ms), (k_rate, k_ms), (o_rate, o_ms), (w_rate, w_ms) = rates.values()
        print(f"ratio shards / whole-clip decode: {s_rate / w_rate:.2f}x wall, {w_ms / s_ms:.2f}x CPU")
        print(f"ratio shards / loose files, reader opened per window: {s_rate / o_rate:.2f}x wall, {o_ms / s_ms:.2f}x CPU")
        print(f"ratio shards / loose files (decord, reader kept per clip): {s_rate / k_rate:.2f}x wall, "
              f"{k_ms / s_ms:.2f}x CPU")
        return {"shards": s_rate, "loose_kept": k_rate, "loose_per_window": o_rate, "whole": w_rate,
                "ratio_loose": s_rate / k_rate}


if __name__ == "__main__":
    main()
