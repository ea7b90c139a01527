"""Session-wide test setup: one thread per math library, and real test media made once.

The media are made offline by `mentor.testmedia` (the skimage astronaut photo, moving a
little, speaking with espeak-ng, mouth opening in step with the speech) in one session
temp folder, and shared by every test that asks for them.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Several engineers share two cores: one thread per library, set before numpy/torch
# start their pools. setdefault keeps a value the caller chose.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402

_torch_limited = False


def pytest_runtest_setup(item):
    """Once torch is imported by some test module, keep it to one thread. Importing torch
    here would cost seconds for suites that never use it, so only look for it."""
    global _torch_limited
    if not _torch_limited and "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # allowed only before torch's first parallel work
            pass
        _torch_limited = True


TALKING_SECONDS = 4.0
TALKING_FPS = 25
TALKING_SIZE = 512
SHIFT_FRAMES = 4


@pytest.fixture(scope="session")
def media_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def talking_clip(media_root) -> Path:
    """4 s, 25 fps, 512x512 H.264 + 16 kHz mono AAC: the astronaut saying the default
    sentences (espeak-ng "en"), mouth in sync with the speech (seed 0)."""
    from mentor.testmedia import make_talking_clip

    return make_talking_clip(media_root / "talking.mp4", seconds=TALKING_SECONDS, fps=TALKING_FPS,
                             size=TALKING_SIZE)


@pytest.fixture(scope="session")
def talking_clip_shifted(media_root) -> Path:
    """The same pictures as `talking_clip` (same seed), audio delayed by 4 frames (160 ms)."""
    from mentor.testmedia import make_talking_clip

    return make_talking_clip(media_root / "talking_shift4.mp4", seconds=TALKING_SECONDS, fps=TALKING_FPS,
                             size=TALKING_SIZE, shift_frames=SHIFT_FRAMES)


@pytest.fixture(scope="session")
def broken_files(media_root) -> dict[str, Path]:
    """{"truncated", "truncated_no_moov", "not_video", "video_only", "audio_only", "empty"} -> path."""
    from mentor.testmedia import make_broken_files

    return make_broken_files(media_root / "broken")


@pytest.fixture(scope="session")
def media_dir(media_root, talking_clip, broken_files) -> Path:
    """A source folder as a user would have it: one good talking clip (good.mp4) and every
    broken file (named by its key, suffix kept)."""
    folder = media_root / "sources"
    folder.mkdir()
    shutil.copy(talking_clip, folder / "good.mp4")
    for key, path in broken_files.items():
        shutil.copy(path, folder / f"{key}{path.suffix}")
    return folder


@pytest.fixture(scope="session")
def speech_wav(media_root) -> Path:
    """3 s, 16 kHz mono wav of espeak-ng "en" saying one sentence (padded with silence)."""
    from mentor.testmedia import make_speech

    return make_speech(media_root / "speech.wav", "Hello, and welcome back to my channel.", seconds=3.0)


@pytest.fixture(scope="session")
def two_speaker_wav(media_root) -> Path:
    """8 s, 16 kHz mono wav: voices en+m3 and en+f4 taking turns; the turns are in
    `<stem>.turns.json` beside it as [[start_s, end_s, speaker], ...]."""
    from mentor.testmedia import make_two_speaker_audio

    return make_two_speaker_audio(media_root / "two_speakers.wav", seconds=8.0)


@pytest.fixture(scope="session")
def silence_wav(media_root) -> Path:
    """2 s of digital silence, 16 kHz mono wav."""
    from mentor.testmedia import make_silence

    return make_silence(media_root / "silence.wav", 2.0)
