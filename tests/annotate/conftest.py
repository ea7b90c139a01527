"""Tiny, randomly initialised checkpoints in each library's own format (no weights can be
downloaded here), and a factory for clip records pointing at test media. Session scope:
each is built once per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mentor.record import ClipRecord
from mentor.media import probe


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
