"""Session-wide test setup: one thread per math library, and real test media made once.

The media are made offline by `mentor.testmedia` (the skimage astronaut photo, moving a
little, speaking with espeak-ng, mouth opening in step with the speech) in one session
temp folder, and shared by every test that asks for them.
"""

from __future__ import annotations

import contextlib
import logging
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

import numpy as np  # noqa: E402
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


# -- tiny checkpoints in each library's own format (no weights can be downloaded here);
# shared by the annotator tests and the pipeline tests.

@pytest.fixture(scope="session")
def tiny_whisper_checkpoint(tmp_path_factory) -> Path:
    """A 1-layer, 64-wide multilingual Whisper saved as whisper saves its models:
    torch.save({"dims": ModelDimensions(...).__dict__, "model_state_dict": ...})."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    # n_audio_ctx must stay 1500 (30 s of mel frames / 2); n_vocab 51865 = multilingual,
    # so the real tokenizer and language detection run; n_text_ctx 64 caps a decode at 32
    # tokens. A random decoder is chaotic (it often says end-of-text first and leaves no
    # words to time), so its output layer is pinned: the final layer norm gives every
    # position the same vector b, the " la" token has logit 10 against it, end-of-text
    # and timestamps 0, the other tokens small random ones. Whisper then decodes
    # " la la la ..." after its forced first timestamp: garbage with words to align.
    from whisper.tokenizer import get_tokenizer

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51865, n_text_ctx=64, n_text_state=64, n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    model = Whisper(dims)
    tok = get_tokenizer(True, num_languages=99)
    with torch.no_grad():
        # whisper leaves the decoder's positional embedding as torch.empty (a real
        # checkpoint overwrites it): uninitialised memory, sometimes NaN
        model.decoder.positional_embedding.normal_(0.0, 0.01)
        b = torch.full((dims.n_text_state,), 0.1)
        model.decoder.ln.weight.zero_()
        model.decoder.ln.bias.copy_(b)
        emb = model.decoder.token_embedding.weight
        emb[tok.eot] = 0
        emb[tok.timestamp_begin:] = 0
        emb[tok.encode(" la")[0]] = b * 10 / b.dot(b)
    path = tmp_path_factory.mktemp("whisper") / "tiny-random.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def tiny_pyannote_dir(tmp_path_factory) -> Path:
    """A pyannote.audio 4 diarization pipeline folder laid out as
    speaker-diarization-community-1 is: config.yaml + segmentation/ + embedding/
    (pytorch_model.bin, pyannote's Lightning checkpoint format) + plda/ (VBx npz files),
    with a tiny PyanNet, a random WeSpeaker ResNet34 and a random PLDA."""
    import os

    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    import lightning
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pyannote")

    def save(model, folder: Path) -> None:
        folder.mkdir()
        ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__}
        model.on_save_checkpoint(ckpt)  # adds pyannote's versions / architecture / specifications
        torch.save(ckpt, folder / "pytorch_model.bin")

    seg = PyanNet(sincnet={"stride": 10},
                  lstm={"hidden_size": 8, "num_layers": 1, "bidirectional": True, "monolithic": True},
                  linear={"hidden_size": 8, "num_layers": 1})
    # powerset segmentation as in segmentation-3.0: 3 speakers per chunk, 2 at once
    seg.specifications = Specifications(problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME,
                                        duration=2.0, classes=["speaker#1", "speaker#2", "speaker#3"],
                                        powerset_max_classes=2, permutation_invariant=True)
    seg.build()
    save(seg, root / "segmentation")
    emb = WeSpeakerResNet34()
    emb.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=2.0)
    save(emb, root / "embedding")
    (root / "plda").mkdir()
    rng = np.random.default_rng(0)
    dim, lda = 256, 16
    np.savez(root / "plda" / "xvec_transform.npz", mean1=np.zeros(dim), mean2=np.zeros(lda),
             lda=rng.standard_normal((dim, lda)) / np.sqrt(dim))
    np.savez(root / "plda" / "plda.npz", mu=np.zeros(lda), tr=np.eye(lda), psi=np.linspace(2.0, 0.5, lda))
    (root / "config.yaml").write_text(
        "dependencies:\n"
        "  pyannote.audio: 4.0.0\n"
        "pipeline:\n"
        "  name: pyannote.audio.pipelines.SpeakerDiarization\n"
        "  params:\n"
        "    clustering: VBxClustering\n"
        "    segmentation: $model/segmentation\n"
        "    segmentation_step: 0.5\n"
        "    segmentation_batch_size: 8\n"
        "    embedding: $model/embedding\n"
        "    embedding_batch_size: 8\n"
        "    embedding_exclude_overlap: true\n"
        "    plda: $model/plda\n"
        "params:\n"
        "  clustering:\n"
        "    threshold: 0.6\n"
        "    Fa: 0.07\n"
        "    Fb: 0.8\n"
        "  segmentation:\n"
        "    min_duration_off: 0.0\n"
    )
    return root


@pytest.fixture(scope="session")
def tiny_syncnet_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised SyncNet saved as syncnet_python's syncnet_v2.model is: a
    plain state dict."""
    import torch

    from annotate.syncnet import SyncNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory) -> Path:
    """A real store of 6 synthetic talking bodies (mentor.synthstore): 2 s each, 25 fps,
    64x64 mp4 rendered from the stored SMPL-X parameters and camera, espeak-ng speech as
    16 kHz flac, audio.logmel; 3 identities with splits train/val/test by identity and
    perceived attributes varied across them; several shards. Shared by the session: treat
    it as read-only (copy the folder before changing its index)."""
    from mentor.synthstore import write_synthetic_store

    return write_synthetic_store(tmp_path_factory.mktemp("synthstore") / "store", n_clips=6, seconds=2.0,
                                 fps=25, size=64, seed=0, identities=3)


@contextlib.contextmanager
def moto_s3_server(bucket: str, env: dict[str, str], unset: tuple[str, ...] = ()):
    """A moto S3 server on 127.0.0.1 (a free port) holding an empty `bucket`, with test
    credentials and `env` in the environment ("{endpoint}" in a value becomes the server's
    URL) and `unset` removed from it; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        with pytest.MonkeyPatch.context() as mp:
            for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                         "AWS_DEFAULT_REGION": "us-east-1", **env}.items():
                mp.setenv(k, v.replace("{endpoint}", endpoint))
            for k in unset:
                mp.delenv(k, raising=False)
            import boto3

            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
            yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3():
    """`moto_s3_server` for a test module's own S3 fixture (any scope)."""
    return moto_s3_server


@pytest.fixture
def video_opens(monkeypatch):
    """A Counter, path -> video decoders opened on it (decord readers and OpenCV
    captures) while the test runs: what a test of "each pass decodes the source once"
    counts."""
    from collections import Counter

    import cv2
    import decord

    opens: Counter[str] = Counter()
    reader, capture = decord.VideoReader, cv2.VideoCapture

    class CountedReader(reader):
        def __init__(self, uri, *args, **kwargs):
            opens[str(uri)] += 1
            super().__init__(uri, *args, **kwargs)

    def counted_capture(*args, **kwargs):
        if args:
            opens[str(args[0])] += 1
        return capture(*args, **kwargs)

    monkeypatch.setattr(decord, "VideoReader", CountedReader)
    monkeypatch.setattr(cv2, "VideoCapture", counted_capture)
    return opens
