"""What the audio annotators share: reading a clip's audio once per stage, the torch
device choice, and the import of an optional dependency with its install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from mentor.media import MediaError, read_audio
from mentor.record import ClipRecord

SAMPLE_RATE = 16000  # every audio model here (silero, Resemblyzer, Whisper, pyannote) wants 16 kHz


def clip_audio(record: ClipRecord, stage: str) -> np.ndarray | None:
    """The clip's 16 kHz mono samples (float32, [-1, 1]); None after `record.fail` when the
    clip has no readable audio (a bad clip is data, not an exception)."""
    path = record.files.get("audio")
    if not path:
        record.fail(stage, "no audio file in record.files['audio']")
        return None
    try:
        return read_audio(path, SAMPLE_RATE)
    except MediaError as e:
        record.fail(stage, str(e))
        return None


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def require(module: str, package: str, stage: str) -> ModuleType:
    """Import an optional dependency or raise with the pip line that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{stage} needs the '{package}' package ({e}); install it with "
            f"`uv pip install -p .venv/bin/python {package}` or run `make setup`"
        ) from None


def merge_segments(segments: list[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    """Sort and join [start, end] spans that overlap or are closer than `gap` seconds."""
    out: list[list[float]] = []
    for s, e in sorted(segments):
        if out and s <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]
