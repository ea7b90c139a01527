"""A factory for clip records pointing at test media (the tiny checkpoints are in
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentor.record import ClipRecord
from mentor.media import probe


@pytest.fixture(scope="module")
def body():
    """The synthetic body model the SMPL-X fitter tests fit against (one torch thread: tests/conftest.py)."""
    from mentor.body import load_body_model

    return load_body_model()


@pytest.fixture
def make_record():
    """make_record(audio=path, video=None, fps=25.0) -> a ClipRecord spanning the media."""

    def make(audio: Path | None = None, video: Path | None = None, fps: float = 25.0, **kw) -> ClipRecord:
        files = {}
        if audio is not None:
            files["audio"] = str(audio)
        if video is not None:
            files["video"] = str(video)
        duration = probe(video or audio).duration if (video or audio) else 1.0
        return ClipRecord(id="test", source_id="src", source_uri="file:///test", start=0.0, end=round(duration, 3),
                          fps=fps, files=files, **kw)

    return make
