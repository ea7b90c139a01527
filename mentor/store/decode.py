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


def audio(data: bytes) -> tuple[np.ndarray, int]:
    """flac/wav bytes -> (float32 samples, sample rate)."""
    import soundfile as sf

    samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return samples, sr


def arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sample(s: dict[str, Any], decode_video: bool = True) -> dict[str, Any]:
    """A raw WebDataset sample (ext -> bytes) -> tensors and a ClipRecord."""
    import torch

    from mentor.record import ClipRecord

    out: dict[str, Any] = {"__key__": s["__key__"]}
    npz = s.get("npz")
    out["record"] = ClipRecord.from_json(s["json"], npz)
    out["arrays"] = {k: a.data for k, a in out["record"].arrays.items()}
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
