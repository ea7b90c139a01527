"""A build that fails before its graph runs still releases the store's lock, so the same
process (a notebook, a test) can build into that store again."""

from __future__ import annotations

import pytest

from mentor.config import parse_config
from mentor.store import StoreWriter


def test_failed_build_releases_the_store_lock(tmp_path, monkeypatch):
    import pipelines.curation as curation

    media = tmp_path / "media"
    media.mkdir()
    cfg = parse_config(f"sources:\n  - {{name: local, kind: folder, path: {media}}}\n", "t.yaml", str(tmp_path))

    def broken(*_a, **_k):
        raise RuntimeError("planted failure before the graph")

    monkeypatch.setattr(curation, "pending_sources", broken)
    out = tmp_path / "store"
    with pytest.raises(RuntimeError, match="planted"):
        curation.build(cfg, out=out, progress=False)
    StoreWriter(out).close()  # raises StoreLocked if the failed build still held the lock
