"""Decoders for a store sample's members: mp4 -> frames, flac/wav -> samples, npz -> arrays."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def video(data: bytes) -> np.ndarray:
    """H.264 mp4 bytes -> TxHxWx3 uint8 RGB frames (decord, from memory)."""
    import decord

    vr = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def open_video(data: bytes, size: tuple[int, int] | None = None):
    """A decord VideoReader on H.264 mp4 bytes (resized in the decoder to `size`, (width,
    height), if given). Keep it to read several windows of one clip: reading frames after
    the last ones read continues decoding instead of seeking back to a key frame."""
    import decord

    kw = {"width": size[0], "height": size[1]} if size else {}
    return decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=1, **kw)


def video_frames(data_or_reader, indices, size: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """Only the frames `indices` of a video (mp4 bytes, or a reader from `open_video`) ->
    (len(indices) x H x W x 3 uint8 RGB, the video's frame count). decord seeks to the key
    frame before a wanted frame (or continues from where the reader is) and decodes
    forward, so a window costs its own span plus at most one GOP. Indices past the end
    give black frames (the caller marks them invalid)."""
    vr = open_video(data_or_reader, size) if isinstance(data_or_reader, (bytes, bytearray)) else data_or_reader
    n = len(vr)
    idx = np.asarray(indices, dtype=np.int64)
    ok = (idx >= 0) & (idx < n)
    if ok.any():
        got = vr.get_batch(idx[ok].tolist()).asnumpy()
        shape = got.shape[1:]
    else:  # the whole window is past the end: only the frame size is needed
        got, shape = None, (vr[0].shape if n else (size[1], size[0], 3) if size else (0, 0, 3))
    out = np.zeros((len(idx),) + tuple(shape), np.uint8)
    if got is not None:
        out[ok] = got
    return out, n


def audio_span(data: bytes, start: int, count: int) -> tuple[np.ndarray, int]:
    """`count` float32 samples of flac/wav bytes from sample `start` (zeros past either
    end), decoding only that span; returns (samples, sample rate)."""
    import soundfile as sf

    out = np.zeros(count, np.float32)
    with sf.SoundFile(io.BytesIO(data)) as f:
        lo, hi = max(start, 0), min(start + count, f.frames)
        if hi > lo:
            f.seek(lo)
            x = f.read(hi - lo, dtype="float32", always_2d=True)
            out[lo - start:lo - start + len(x)] = x.mean(1)
        return out, f.samplerate


def audio(data: bytes) -> tuple[np.ndarray, int]:
    """flac/wav bytes -> (float32 samples, sample rate)."""
    import soundfile as sf

    samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return samples, sr


def arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sample(s: dict[str, Any], decode_video: bool = True, index: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A raw WebDataset sample (ext -> bytes) -> tensors and a ClipRecord.

    "arrays" maps names to the record's FrameArrays (numpy sees their data; .fps and
    .start say when each row is). `index` (key -> {"split": ..., "identity": ...}) sets
    those fields from the store's index, which is where they live after `mentor split`.
    """
    import torch

    from mentor.record import ClipRecord

    out: dict[str, Any] = {"__key__": s["__key__"]}
    npz = s.get("npz")
    out["record"] = ClipRecord.from_json(s["json"], npz)
    for field, value in ((index or {}).get(s["__key__"]) or {}).items():
        setattr(out["record"], field, value)
    out["arrays"] = dict(out["record"].arrays)
    if "mp4" in s:
        out["video"] = torch.from_numpy(video(s["mp4"])) if decode_video else s["mp4"]
    for ext in ("flac", "wav"):
        if ext in s:
            samples, sr = audio(s[ext])
            out["audio"] = torch.from_numpy(samples)
            out["sample_rate"] = sr
    if "txt" in s:
        out["txt"] = s["txt"].decode() if isinstance(s["txt"], bytes) else s["txt"]
    return out
