"""Training windows from a store: T frames of one clip with the audio of exactly that span,
the named per-frame arrays on the same frames, and the clip's record as the index has it.

    from mentor.store.windows import WindowDataset, window_loader
    ds = WindowDataset("out/store", where="split == 'train'", frames=32, mode="random", seed=0)
    loader = window_loader("out/store", batch_size=8, num_workers=2, where="split == 'train'", frames=32)
    for epoch in range(10):
        loader.dataset.set_epoch(epoch)
        for batch in loader:
            batch["video"]  # uint8 (B,T,H,W,3); batch["audio"] float32 (B, T*sr/fps) ...

Windows. A clip of n frames (n = round(duration * fps) from the index) gives, in
"sequential" mode, the windows starting at 0, T, 2T, ... (the last one padded past the
clip's end, `valid` False there), and in "random" mode `windows_per_clip` windows
(default max(1, n // T)) at random starts in [0, n - T]. Random windows depend only on
(seed, epoch, clip): the same whatever the worker count. Time of frame k of the clip:
k / fps seconds from the clip's start.

Arrays. Each `FrameArray` has its own fps and start (row i at start + i / fps). It is
read at the window's frame times by linear interpolation between its two nearest rows
(the row itself where a time falls on one, as for arrays at the video's rate); times
more than half a row period outside the array's span are NaN. Names are glob patterns
("smplx.*"); a name no clip has is simply absent.

Order and workers. The windows of an epoch form one list ordered by shard, then clip
(shuffled shards, clips and windows in "random" mode). It is cut into contiguous,
equal (+-1) pieces, one per Ray Train rank (or torch.distributed rank), and each piece
again per torch DataLoader worker, so every window is read exactly once per epoch and
neighbouring windows of one clip stay with one worker (its member bytes are read once).
A worker opens only the shards its windows are in, reads a shard's tar headers once,
then seeks straight to the members it needs; video is decoded only for the window's
frames (decord, one reader kept per clip, so the ordered windows of a clip decode forward
from one key frame instead of seeking back for each) and audio only for its span
(soundfile). `window_loader` spawns its workers and keeps them across epochs (the epoch
reaches them through shared memory), each with `prefetch_factor` batches ready.
"""

from __future__ import annotations

import fnmatch
import io
import math
import os
import tarfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mentor.record import ClipRecord, FrameArray
from mentor.store import decode
from mentor.store.fs import open_shard
from mentor.store.layout import StoreError
from mentor.store.reader import Store, _value

MODES = ("random", "sequential")


@dataclass(frozen=True)
class Window:
    """One planned window: `frames` frames of clip `clip_id` from frame `start`."""

    clip_id: str
    start: int
    reference: int | None = None  # frame index of the reference frame, when asked for


class WindowDataset(IterableDataset):
    """Windows of `frames` frames from the clips that match `where` (see module docstring).

    store: a Store or its path. arrays: names or glob patterns of per-frame arrays.
    video / audio: decode them (False leaves "video" / "audio" out of the samples).
    size: (width, height) or an int side to resize the video to in the decoder.
    reference: also draw one frame of the same clip at least `min_reference_gap_s` from
    every frame of the window (the farthest frame when the clip is too short for that).
    fit_quality: frames whose SMPL-X fit is marked bad (the clip's smplx.frame_ok array, 0;
    annotate/smplx_quality.py) are valid=False, like frames past the clip's end.
    rank / world_size: this process's share; by default torch.distributed's, else Ray
    Train's, else the whole list.
    """

    def __init__(self, store: Store | str | os.PathLike[str], where: str | None = None, frames: int = 32,
                 mode: str = "random", seed: int = 0, arrays: Sequence[str] = ("smplx.*", "audio.logmel"),
                 video: bool = True, audio: bool = True, size: int | tuple[int, int] | None = None,
                 reference: bool = False, min_reference_gap_s: float = 1.0, windows_per_clip: int | None = None,
                 rank: int | None = None, world_size: int | None = None, fit_quality: bool = True):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: must be one of {MODES}")
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames={frames!r}: must be an int >= 1 (frames per window)")
        if windows_per_clip is not None and (not isinstance(windows_per_clip, int) or windows_per_clip < 1):
            raise ValueError(f"windows_per_clip={windows_per_clip!r}: must be None or an int >= 1")
        if min_reference_gap_s < 0:
            raise ValueError(f"min_reference_gap_s={min_reference_gap_s!r}: must be >= 0 seconds")
        if isinstance(arrays, str):
            arrays = (arrays,)
        if isinstance(size, int):
            size = (size, size)
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size={size!r}: must be None, an int side or (width, height)")
        self.store = store if isinstance(store, Store) else Store(store)
        self.root = self.store.root
        self.where = where
        self.frames, self.mode, self.seed = frames, mode, int(seed)
        self.array_patterns = tuple(arrays)
        self.video, self.audio, self.size = bool(video), bool(audio), size
        self.reference, self.min_reference_gap_s = bool(reference), float(min_reference_gap_s)
        self.windows_per_clip = windows_per_clip
        self.fit_quality = bool(fit_quality)
        clips = self.store.clips(where)
        if not len(clips):
            raise StoreError(f"{self.root}: no clips match {where!r}")
        bad = clips[~(pd.to_numeric(clips["fps"], errors="coerce") > 0)]
        if len(bad):
            raise StoreError(f"{self.root}: clip {bad['clip_id'].iloc[0]} has no fps in the index; "
                             "only encoded clips can be windowed")
        cols = ["clip_id", "shard", "key", "fps", "duration", "split", "identity"]
        self.clips = clips[cols].sort_values(["shard", "key"], ignore_index=True)
        self.num_frames = {r.clip_id: max(1, int(round(r.duration * r.fps))) for r in self.clips.itertuples()}
        self.epoch = 0
        self._shared_epoch = None  # a spawn-shared int (window_loader's persistent workers read it)
        self._rank, self._world = rank, world_size
        self._reader: _ShardReader | None = None

    # -- the plan -------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Random windows and their order are drawn anew (deterministically) per epoch."""
        self.epoch = int(epoch)
        if self._shared_epoch is not None:  # reaches the loader's persistent workers too
            self._shared_epoch.value = self.epoch

    def share_epoch(self, context) -> None:
        """Let workers started from `context` (a multiprocessing context) see later
        `set_epoch` calls: a DataLoader's persistent workers keep the copy of the dataset
        they were started with, so the epoch goes through shared memory."""
        self._shared_epoch = context.RawValue("q", self.epoch)

    def plan(self) -> list[Window]:
        """Every window of this epoch, in reading order, before the split over ranks/workers."""
        T = self.frames
        rng = np.random.default_rng([self.seed, self.epoch])
        shards = list(dict.fromkeys(self.clips["shard"]))
        if self.mode == "random":
            shards = [shards[i] for i in rng.permutation(len(shards))]
        by_shard = {s: g for s, g in self.clips.groupby("shard", sort=False)}
        out: list[Window] = []
        for shard in shards:
            group = list(by_shard[shard].itertuples())
            if self.mode == "random":
                group = [group[i] for i in rng.permutation(len(group))]
            for row in group:
                n = self.num_frames[row.clip_id]
                crng = np.random.default_rng([self.seed, self.epoch, zlib.crc32(row.clip_id.encode())])
                if self.mode == "sequential":
                    starts = list(range(0, n, T))
                    if self.windows_per_clip is not None:
                        starts = starts[:self.windows_per_clip]
                else:
                    count = self.windows_per_clip or max(1, n // T)
                    starts = sorted(int(s) for s in crng.integers(0, max(n - T, 0) + 1, size=count))
                for s in starts:
                    ref = self._pick_reference(crng, n, s, float(row.fps)) if self.reference else None
                    out.append(Window(row.clip_id, s, ref))
        return out

    def _pick_reference(self, rng: np.random.Generator, n: int, start: int, fps: float) -> int:
        """A frame at least min_reference_gap_s from every frame of the window [start, start+T),
        uniformly among those; the farthest frame when none is far enough."""
        gap = int(math.ceil(self.min_reference_gap_s * fps - 1e-9))
        last = min(start + self.frames, n) - 1
        before = np.arange(0, max(start - gap + 1, 0))
        after = np.arange(last + gap, n) if last + gap < n else np.arange(0)
        far = np.concatenate([before, after])
        if len(far):
            return int(far[rng.integers(len(far))])
        return 0 if start >= n - 1 - last else n - 1

    def _share(self) -> tuple[int, int]:
        """(index, count) of this process's piece: ranks, then DataLoader workers."""
        rank, world = self._rank, self._world
        if rank is None or world is None:
            rank, world = distributed_rank()
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * nw + wid, world * nw

    def __len__(self) -> int:
        """Windows of this rank's piece per epoch (all its DataLoader workers together)."""
        rank, world = self._rank, self._world
        if rank is None or world is None:
            rank, world = distributed_rank()
        n = len(self.plan())
        return len(_piece(range(n), rank, world))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._shared_epoch is not None:
            self.epoch = int(self._shared_epoch.value)
        index, count = self._share()
        windows = _piece(self.plan(), index, count)
        if self._reader is None or self._reader.pid != os.getpid():  # a forked worker opens its own files
            self._reader = _ShardReader(self.root)
        rows = self.clips.set_index("clip_id")
        for w in windows:
            yield self._sample(w, rows.loc[w.clip_id])

    # -- one window ---------------------------------------------------------------------
    def _sample(self, w: Window, row: pd.Series) -> dict[str, Any]:
        members = self._reader.members(row["shard"], row["key"])
        rec = self._reader.record(row["shard"], row["key"], members)
        fps, T = float(row["fps"]), self.frames
        n = self.num_frames[w.clip_id]
        idx = np.arange(w.start, w.start + T)
        valid = idx < n
        out: dict[str, Any] = {"clip_id": w.clip_id, "start": int(w.start), "fps": fps}
        for wanted, exts in ((self.video, ("mp4",)), (self.audio, ("flac", "wav"))):
            if wanted and not any(e in members for e in exts):
                raise StoreError(f"{self.root / row['shard']}: clip {w.clip_id} has no {'/'.join(exts)} member; "
                                 f"pass {'video' if 'mp4' in exts else 'audio'}=False to read the store without it")
        if self.video:
            # one reader per clip for the windows (they come in order of start, so decoding
            # continues forward), another for the reference frames (anywhere in the clip)
            frames, decoded = decode.video_frames(self._reader.video(row["shard"], row["key"], self.size), idx)
            valid &= idx < decoded
            out["video"] = torch.from_numpy(frames)
        if self.audio:
            ext = "flac" if "flac" in members else "wav"
            sr = _sample_rate(members[ext])
            a0 = int(round(w.start * sr / fps))
            count = int(round(T * sr / fps))
            samples, sr = decode.audio_span(members[ext], a0, count)
            out["audio"] = torch.from_numpy(samples)
            out["sample_rate"] = int(sr)
        times = idx / fps
        out["arrays"] = {k: torch.from_numpy(resample(a, times)) for k, a in self._arrays(rec).items()}
        if self.fit_quality and "smplx.frame_ok" in rec.arrays:  # frames the SMPL-X fit marks bad
            valid &= np.nan_to_num(resample(rec.arrays["smplx.frame_ok"], times), nan=1.0) >= 1
        out["valid"] = torch.from_numpy(valid)
        meta = rec.model_copy()
        meta.arrays = {}
        meta.split = _value(row["split"])
        meta.identity = _value(row["identity"])
        out["record"] = meta
        if w.reference is not None:
            ref: dict[str, Any] = {"index": int(w.reference),
                                   "gap_s": float(_gap(w.reference, w.start, min(w.start + T, n) - 1) / fps)}
            if self.video:
                reader = self._reader.video(row["shard"], row["key"], self.size, purpose="reference")
                ref["video"] = torch.from_numpy(decode.video_frames(reader, [w.reference])[0][0])
            ref["arrays"] = {k: torch.from_numpy(np.asarray(resample(a, np.array([w.reference / fps]))[0]))
                             for k, a in self._arrays(rec).items()}
            out["reference"] = ref
        return out

    def _arrays(self, rec: ClipRecord) -> dict[str, FrameArray]:
        return {k: a for k, a in rec.arrays.items()
                if any(fnmatch.fnmatchcase(k, p) for p in self.array_patterns)}

    def __getstate__(self):  # workers open their own files
        state = dict(self.__dict__)
        state["_reader"] = None
        from multiprocessing.context import get_spawning_popen

        if get_spawning_popen() is None:  # shared memory goes only to processes being started
            state["_shared_epoch"] = None
        return state


def resample(a: FrameArray, times: np.ndarray) -> np.ndarray:
    """A FrameArray read at `times` (seconds from the clip's start): (len(times), ...) float32.

    Linear interpolation between the two nearest rows (the row itself where a time falls
    on one); NaN more than half a row period outside the array's span.
    """
    data = np.asarray(a.data)
    out = np.full((len(times),) + data.shape[1:], np.nan, np.float32)
    if not len(data) or not a.fps:
        return out
    pos = (np.asarray(times, np.float64) - a.start) * a.fps
    inside = (pos >= -0.5) & (pos <= len(data) - 0.5)
    pos = np.clip(pos, 0, len(data) - 1)
    lo = np.floor(pos + 1e-6).astype(np.int64)
    frac = pos - lo
    on_row = frac < 1e-6
    hi = np.minimum(lo + 1, len(data) - 1)
    x = data.astype(np.float32, copy=False)
    exact = inside & on_row
    out[exact] = x[lo[exact]]
    blend = inside & ~on_row
    if blend.any():
        f = frac[blend].astype(np.float32).reshape((-1,) + (1,) * (data.ndim - 1))
        out[blend] = x[lo[blend]] * (1 - f) + x[hi[blend]] * f
    return out


def collate_windows(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples -> a batch: tensors stacked on dim 0, "clip_id" and "record" as lists.

    Audio of windows at different frame rates is zero-padded to the longest; an array
    that some samples lack is NaN for them (its shape taken from the others).
    """
    if not samples:
        raise ValueError("collate_windows: no samples")
    batch: dict[str, Any] = {
        "clip_id": [s["clip_id"] for s in samples],
        "record": [s["record"] for s in samples],
        "start": torch.tensor([s["start"] for s in samples], dtype=torch.int64),
        "fps": torch.tensor([s["fps"] for s in samples], dtype=torch.float64),
        "valid": torch.stack([s["valid"] for s in samples]),
        "arrays": _stack_arrays([s["arrays"] for s in samples]),
    }
    if "video" in samples[0]:
        batch["video"] = torch.stack([s["video"] for s in samples])
    if "audio" in samples[0]:
        n = max(len(s["audio"]) for s in samples)
        batch["audio"] = torch.stack([torch.nn.functional.pad(s["audio"], (0, n - len(s["audio"]))) for s in samples])
        batch["sample_rate"] = torch.tensor([s["sample_rate"] for s in samples], dtype=torch.int64)
    if "reference" in samples[0]:
        refs = [s["reference"] for s in samples]
        batch["reference"] = {"index": torch.tensor([r["index"] for r in refs], dtype=torch.int64),
                              "gap_s": torch.tensor([r["gap_s"] for r in refs], dtype=torch.float64),
                              "arrays": _stack_arrays([r["arrays"] for r in refs])}
        if "video" in refs[0]:
            batch["reference"]["video"] = torch.stack([r["video"] for r in refs])
    return batch


def window_loader(store: Store | str | os.PathLike[str], batch_size: int, num_workers: int = 0,
                  prefetch_factor: int = 2, persistent_workers: bool = True, **dataset_kw: Any) -> DataLoader:
    """A torch DataLoader of collated windows; `loader.dataset.set_epoch(n)` before each epoch.

    Workers are started with "spawn": forking a process that has decoded video with decord
    can hang the children (seen here), so build your own DataLoader over a WindowDataset
    with multiprocessing_context="spawn" (or "forkserver") too. A spawned worker pays its
    imports (torch, decord: seconds), so by default the workers persist across epochs
    (persistent_workers; the epoch reaches them through shared memory, `share_epoch`), and
    each keeps `prefetch_factor` batches ready. Start an epoch's iteration early
    (`iter(loader)`) to have the workers start while the model is being built."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an int >= 1")
    if not isinstance(prefetch_factor, int) or prefetch_factor < 1:
        raise ValueError(f"prefetch_factor={prefetch_factor!r}: must be an int >= 1 (batches ready per worker)")
    ds = WindowDataset(store, **dataset_kw)
    # the loader's own generator: starting an iteration draws a worker seed from it, never
    # from torch's global RNG, so a trainer's noise does not depend on the worker count or on
    # when the loader started (the windows depend on the dataset's seed only)
    gen = torch.Generator().manual_seed(ds.seed)
    if num_workers == 0:
        return DataLoader(ds, batch_size=batch_size, num_workers=0, collate_fn=collate_windows, generator=gen)
    # workers are spawned, not forked: a parent that has already decoded video (decord /
    # FFmpeg threads) deadlocks forked children; spawned ones pay their imports once
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    if ds._rank is None or ds._world is None:  # a spawned worker cannot see torch.distributed / Ray Train
        ds._rank, ds._world = distributed_rank()
    if persistent_workers:
        ds.share_epoch(ctx)
    return DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_windows,
                      persistent_workers=persistent_workers, pin_memory=False, multiprocessing_context=ctx,
                      prefetch_factor=prefetch_factor, generator=gen)


def ray_windows(store: Store | str | os.PathLike[str], pieces: int = 16, **dataset_kw: Any):
    """The windows as a `ray.data.Dataset` for Ray Train (pass it to TorchTrainer's
    `datasets=`; each worker reads its piece with `ray.train.get_dataset_shard(...)`).

    One row per window, flat columns: clip_id, start, fps, valid, video, audio,
    sample_rate, "array.<name>" per array, record (JSON), and with reference=True
    reference_index, reference_video and "reference_array.<name>". Rows are produced by
    Ray tasks over `pieces` contiguous pieces of the window list (set_epoch is not
    available here: build a new one per epoch with another seed, or use Ray Data's own
    shuffling), each piece opening only its shards.
    """
    import ray

    ds = WindowDataset(store, rank=0, world_size=1, **dataset_kw)
    windows = ds.plan()
    pieces = max(1, min(len(windows), int(pieces)))
    items = [{"piece": i, "count": pieces} for i in range(pieces)]

    def read(batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows: list[dict[str, Any]] = []
        for i, count in zip(batch["piece"], batch["count"]):
            part = WindowDataset.__new__(WindowDataset)
            part.__dict__.update(ds.__getstate__())
            part._rank, part._world = int(i), int(count)
            for s in part:
                rows.append(_flat_row(s))
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}

    return ray.data.from_items(items).map_batches(read, batch_size=1, batch_format="numpy")


# ---------------------------------------------------------------------------- helpers

def distributed_rank() -> tuple[int, int]:
    """(rank, world size): torch.distributed's when initialised, else Ray Train's, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        import ray.train

        ctx = ray.train.get_context()
        return int(ctx.get_world_rank()), int(ctx.get_world_size())
    except Exception:  # not inside a Ray Train worker (or Ray not installed)
        return 0, 1


def _piece(items, index: int, count: int):
    """The index-th of `count` contiguous pieces of `items`, sizes equal +-1."""
    n = len(items)
    return items[index * n // count:(index + 1) * n // count]


def _gap(ref: int, first: int, last: int) -> int:
    return first - ref if ref < first else ref - last if ref > last else 0


def _sample_rate(data: bytes) -> int:
    import soundfile as sf

    return int(sf.info(io.BytesIO(data)).samplerate)


def _stack_arrays(dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    names = list(dict.fromkeys(k for d in dicts for k in d))
    out = {}
    for k in names:
        like = next(d[k] for d in dicts if k in d)
        out[k] = torch.stack([d[k] if k in d else torch.full_like(like, float("nan")) for d in dicts])
    return out


def _flat_row(s: dict[str, Any]) -> dict[str, Any]:
    row = {"clip_id": s["clip_id"], "start": s["start"], "fps": s["fps"], "valid": s["valid"].numpy(),
           "record": s["record"].to_json()}
    for k in ("video", "audio"):
        if k in s:
            row[k] = s[k].numpy()
    if "sample_rate" in s:
        row["sample_rate"] = s["sample_rate"]
    for k, v in s["arrays"].items():
        row[f"array.{k}"] = v.numpy()
    if "reference" in s:
        row["reference_index"] = s["reference"]["index"]
        if "video" in s["reference"]:
            row["reference_video"] = s["reference"]["video"].numpy()
        for k, v in s["reference"]["arrays"].items():
            row[f"reference_array.{k}"] = v.numpy()
    return row


class _ShardReader:
    """Member bytes of clips in the store's shards: each shard's tar headers are read once,
    then members are read by seeking to their offsets. Keeps the last few clips' bytes
    and records, so the windows of one clip read its members once."""

    def __init__(self, root: Path, keep: int = 4):
        self.root = root
        self.offsets: dict[str, dict[str, dict[str, tuple[int, int]]]] = {}  # shard -> key -> ext -> (offset, size)
        self.files: dict[str, Any] = {}
        self.cache: OrderedDict[tuple[str, str], tuple[dict[str, bytes], ClipRecord]] = OrderedDict()
        self.readers: OrderedDict[tuple, Any] = OrderedDict()
        self.keep = keep
        self.pid = os.getpid()

    def _open(self, shard: str):
        if shard not in self.files:
            path = self.root / shard
            try:
                f = open_shard(self.root, shard)  # a local file, or the shard on object storage
                index: dict[str, dict[str, tuple[int, int]]] = {}
                with tarfile.open(fileobj=f) as tf:
                    for m in tf:
                        if m.isfile():
                            key, _, ext = m.name.partition(".")
                            index.setdefault(key, {})[ext] = (m.offset_data, m.size)
            except (OSError, tarfile.TarError) as e:
                raise StoreError(f"{path}: cannot open shard ({e}); run `mentor verify`") from None
            self.files[shard], self.offsets[shard] = f, index
        return self.files[shard]

    def _load(self, shard: str, key: str) -> tuple[dict[str, bytes], ClipRecord]:
        got = self.cache.get((shard, key))
        if got is not None:
            self.cache.move_to_end((shard, key))
            return got
        f = self._open(shard)
        where = self.offsets[shard].get(key)
        if where is None:
            raise StoreError(f"{self.root / shard}: clip {key} is in the index but not in the shard; run `mentor verify`")
        members = {}
        for ext, (offset, size) in where.items():
            members[ext] = f.pread(size, offset)  # no shared file position (os.pread, or a ranged GET)
        rec = ClipRecord.from_json(members["json"], members.get("npz"))
        self.cache[(shard, key)] = (members, rec)
        while len(self.cache) > self.keep:
            self.cache.popitem(last=False)
        return members, rec

    def video(self, shard: str, key: str, size: tuple[int, int] | None, purpose: str = "window"):
        """A decord reader on the clip's mp4, kept with the clip's bytes."""
        members = self.members(shard, key)
        cache_key = (shard, key, size, purpose)
        vr = self.readers.get(cache_key)
        if vr is None:
            vr = self.readers[cache_key] = decode.open_video(members["mp4"], size)
        self.readers.move_to_end(cache_key)
        while len(self.readers) > 2 * self.keep:
            self.readers.popitem(last=False)
        return vr

    def members(self, shard: str, key: str) -> dict[str, bytes]:
        return self._load(shard, key)[0]

    def record(self, shard: str, key: str, members: dict[str, bytes] | None = None) -> ClipRecord:
        return self._load(shard, key)[1]

    def __del__(self):
        for f in self.files.values():
            try:
                f.close()
            except Exception:
                pass
