"""A synthetic store for the motion benchmarks, fast to make.

`write_synthetic_store` (mentor.synthstore) renders every frame of every clip's mesh into
its mp4, which takes most of its time (about 0.25 s a frame on this 2-core machine). The
motion model reads no video (only `smplx.*` and `audio.logmel`), so for benchmarks of
tens of clips the mesh render is swapped for a flat grey frame: the store is otherwise the
same (the same espeak speech, SMPL-X motion with the jaw on the speech envelope, audio
features, identities and splits, written through StoreWriter).
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np


def _flat_frame(vertices, faces, camera, width, height, color, background, cull=True):
    return np.full((height, width, 3), 128, np.uint8)


def fast_synthetic_store(root: str | Path, n_clips: int, seconds: float, identities: int, seed: int = 0,
                         size: int = 32, splits: tuple[str, ...] = ("train", "val", "test")) -> Path:
    """write_synthetic_store without the mesh render (see the module docstring); reused when
    `root` already holds a store."""
    from mentor.synthstore import write_synthetic_store

    root = Path(root)
    if (root / "store.json").exists():
        return root
    with mock.patch("mentor.synthstore.render_mesh", _flat_frame):
        return write_synthetic_store(root, n_clips=n_clips, seconds=seconds, size=size, seed=seed,
                                     identities=identities, splits=splits, shard_bytes=2_000_000)
