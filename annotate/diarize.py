"""Speaker diarization: who speaks when, and does one person dominate the clip.

Two backends with one output:

- pyannote.audio 4, its pipeline loaded from a local folder (`pyannote_dir`: config.yaml
  plus the checkpoints it names, e.g. speaker-diarization-community-1 as downloaded) with
  pyannote's own `Pipeline.from_pretrained(folder)`;
- otherwise Resemblyzer (weights ship in its wheel): one speaker embedding per window of
  `window_seconds` over the VAD segments, agglomerative clustering (average linkage,
  cosine distance cut at `cluster_threshold`, so one speaker is a possible answer).

annotations["diarization"] = {"backend": "pyannote" | "resemblyzer",
                              "turns": [[start_s, end_s, "SPEAKER_00"], ...]}
Speakers are renamed by talk time (SPEAKER_00 talks most). Scores:
`diarization.num_speakers`, `diarization.dominant_share` (dominant speaker's talk time /
all talk time). A clip whose dominant share is below `min_dominant_share` is rejected.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from annotate.audio_common import SAMPLE_RATE, clip_audio, merge_segments, require, resolve_device
from annotate.vad import VoiceActivity, vad_segments
from mentor.config import Config, DiarizationConfig, VadConfig
from mentor.contracts import annotation, file, score
from mentor.curate.encode import AUDIO
from mentor.record import ClipRecord

log = logging.getLogger(__name__)

Turn = tuple[float, float, str]


class Diarizer:
    name = "diarization"
    reads = (file(AUDIO), annotation(VoiceActivity.name, optional=True))  # without VAD it runs its own
    writes = (annotation("diarization"), score("diarization.num_speakers"), score("diarization.dominant_share"))

    @classmethod
    def from_config(cls, cfg: Config, work: Path) -> "Diarizer":
        """As the stage list builds it: its own VAD pass (when no vad stage ran) uses annotate.vad's settings."""
        return cls(cfg.annotate.diarization, cfg.annotate.vad)

    def __init__(self, cfg: DiarizationConfig, vad_cfg: VadConfig | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.pyannote_dir:
            self.backend: PyannoteBackend | ResemblyzerBackend = PyannoteBackend(cfg.pyannote_dir, self.device)
        else:
            self.backend = ResemblyzerBackend(cfg, self.device)
        self._vad_cfg = vad_cfg or VadConfig()
        self._vad: VoiceActivity | None = None  # only when the vad stage did not run first

    def _speech(self, record: ClipRecord, audio: np.ndarray) -> list[tuple[float, float]]:
        segs = vad_segments(record)
        if segs is None:
            if self._vad is None:
                self._vad = VoiceActivity(self._vad_cfg)
            segs = self._vad.segments(audio)
        return segs

    def __call__(self, record: ClipRecord) -> ClipRecord:
        audio = clip_audio(record, self.name)
        if audio is None:
            return record
        try:
            if isinstance(self.backend, ResemblyzerBackend):
                turns = self.backend.turns(audio, self._speech(record, audio))
            else:
                turns = self.backend.turns(audio)
        except (RuntimeError, ValueError) as e:  # a model that chokes on this clip's audio
            record.fail(self.name, f"{self.backend.name}: {e}")
            return record
        turns, talk = rename_by_talk_time(turns)
        total = sum(talk.values())
        share = max(talk.values()) / total if total > 0 else 0.0
        record.annotations[self.name] = {
            "backend": self.backend.name,
            "turns": [[round(s, 3), round(e, 3), spk] for s, e, spk in turns],
        }
        record.set_score("diarization.num_speakers", len(talk))
        record.set_score("diarization.dominant_share", round(share, 4))
        record.mark(self.name)
        if not talk:
            record.reject(self.name, "no speech found")
        elif share < self.cfg.min_dominant_share:
            record.reject(self.name, f"dominant speaker {share:.0%} < {self.cfg.min_dominant_share:.0%}")
        return record


def rename_by_talk_time(turns: list[Turn]) -> tuple[list[Turn], dict[str, float]]:
    """Rename speakers SPEAKER_00, SPEAKER_01, ... by decreasing talk time; sort turns by
    start. Returns (turns, {new name: seconds})."""
    talk: dict[str, float] = {}
    for s, e, spk in turns:
        talk[spk] = talk.get(spk, 0.0) + max(0.0, e - s)
    order = sorted(talk, key=lambda k: -talk[k])
    new = {old: f"SPEAKER_{i:02d}" for i, old in enumerate(order)}
    renamed = sorted((s, e, new[spk]) for s, e, spk in turns)
    return renamed, {new[k]: v for k, v in talk.items()}


class PyannoteBackend:
    """pyannote.audio 4's diarization pipeline from a local folder (no Hub access)."""

    name = "pyannote"

    def __init__(self, folder: str, device: str):
        path = Path(folder).expanduser()
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(
                f"annotate.diarization.pyannote_dir: {path / 'config.yaml'} not found; point it at a local "
                "pyannote pipeline folder (config.yaml + segmentation/ embedding/ plda/, e.g. "
                "speaker-diarization-community-1 downloaded once), or set it to null to use Resemblyzer"
            )
        # pyannote.audio 4 sends usage metrics to its servers unless told not to; nothing
        # here may reach the network. A value the user set explicitly is kept.
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        audio = require("pyannote.audio", "pyannote.audio", "diarization")
        self._torch = require("torch", "torch", "diarization")
        self.pipeline = audio.Pipeline.from_pretrained(str(path))
        if self.pipeline is None:
            raise FileNotFoundError(f"{path}: pyannote could not load a pipeline from this folder")
        self.pipeline.to(self._torch.device(device))

    def turns(self, audio: np.ndarray) -> list[Turn]:
        waveform = self._torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        out = self.pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE})
        # pyannote 4 returns DiarizeOutput; legacy pipelines (and 3.x) an Annotation
        annotation = getattr(out, "speaker_diarization", out)
        return [(float(seg.start), float(seg.end), str(label))
                for seg, _, label in annotation.itertracks(yield_label=True)]


class ResemblyzerBackend:
    """Resemblyzer window embeddings over the speech, clustered by cosine distance."""

    name = "resemblyzer"

    def __init__(self, cfg: DiarizationConfig, device: str):
        self.cfg = cfg
        self._torch = require("torch", "torch", "diarization")
        torchaudio = require("torchaudio", "torchaudio", "diarization")
        resemblyzer = require("resemblyzer", "resemblyzer", "diarization")
        self.encoder = resemblyzer.VoiceEncoder(device=device, verbose=False)
        self.device = device
        # Resemblyzer's input: librosa's power mel (25 ms / 10 ms, 40 bands, Slaney), not
        # log. torchaudio gives the same numbers without librosa's slow first call.
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=40,
            norm="slaney", mel_scale="slaney", pad_mode="constant", center=True, power=2.0)

    def embed_windows(self, audio: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
        """One L2-normalised 256-d embedding per (start_s, end_s) window of equal length."""
        torch = self._torch
        wav = normalize_volume(audio)
        mel = self.mel(torch.from_numpy(wav)).T  # frames x 40, 100 frames/s
        n = int(round(self.cfg.window_seconds * 100))
        if len(mel) < n:
            mel = torch.nn.functional.pad(mel, (0, 0, 0, n - len(mel)))
        starts = [min(max(0, int(round(s * 100))), len(mel) - n) for s, _ in windows]
        batch = torch.stack([mel[i:i + n] for i in starts]).to(self.device)
        with torch.inference_mode():
            return np.concatenate([self.encoder(b).cpu().numpy() for b in batch.split(64)])

    def windows(self, speech: list[tuple[float, float]], duration: float) -> list[tuple[float, float, float, float]]:
        """(window_start, window_end, span_start, span_end): windows of `window_seconds`
        every `hop_seconds` inside each speech segment; a segment shorter than a window
        gets one window centred on it. Span = the part of the speech the window labels."""
        win, hop = self.cfg.window_seconds, self.cfg.hop_seconds
        out = []
        for s, e in merge_segments(speech, gap=0.2):
            if e - s <= win:
                c = (s + e) / 2
                ws = min(max(0.0, c - win / 2), max(0.0, duration - win))
                out.append((ws, ws + win, s, e))
                continue
            starts = [float(x) for x in np.arange(s, e - win + 1e-6, hop)]
            if e - win - starts[-1] > hop / 2:
                starts.append(e - win)
            centres = [x + win / 2 for x in starts]
            bounds = [s] + [(a + b) / 2 for a, b in zip(centres[:-1], centres[1:])] + [e]
            out += [(x, x + win, bounds[i], bounds[i + 1]) for i, x in enumerate(starts)]
        return out

    def turns(self, audio: np.ndarray, speech: list[tuple[float, float]]) -> list[Turn]:
        wins = self.windows(speech, len(audio) / SAMPLE_RATE)
        if not wins:
            return []
        emb = self.embed_windows(audio, [(w[0], w[1]) for w in wins])
        spans = np.array([w[3] - w[2] for w in wins])
        labels = cluster_speakers(emb, spans, self.cfg.cluster_threshold, self.cfg.min_speaker_seconds)
        turns: list[list] = []
        for (_, _, s, e), lab in zip(wins, labels):
            if turns and turns[-1][2] == lab and s - turns[-1][1] < 0.25:
                turns[-1][1] = e
            else:
                turns.append([s, e, lab])
        return [(float(s), float(e), f"S{lab}") for s, e, lab in turns]


def cluster_speakers(emb: np.ndarray, seconds: np.ndarray, threshold: float, min_seconds: float) -> np.ndarray:
    """Speaker label per row of `emb` (N x D, L2-normalised).

    Average-linkage agglomerative clustering cut at cosine distance `threshold` (so the
    number of speakers follows from the threshold and may be 1). Clusters with less than
    `min_seconds` of speech (`seconds` per row) join the nearest larger cluster: a stray
    window should not invent a speaker.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(emb) == 1:
        return np.zeros(1, dtype=int)
    labels = fcluster(linkage(emb, method="average", metric="cosine"), t=threshold, criterion="distance") - 1
    talk = np.bincount(labels, weights=seconds)
    big = [k for k in range(len(talk)) if talk[k] >= min_seconds] or [int(np.argmax(talk))]
    centroids = np.stack([emb[labels == k].mean(0) for k in big])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    for k in set(labels.tolist()) - set(big):
        rows = labels == k
        labels[rows] = big[int(np.argmax(centroids @ emb[rows].mean(0)))]
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def normalize_volume(wav: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """Raise quiet audio to `target_dbfs` (never lower it), as Resemblyzer's preprocessing."""
    wav = np.asarray(wav, dtype=np.float32)
    power = float(np.mean(wav.astype(np.float64) ** 2))
    if power <= 0:
        return wav
    change = target_dbfs - 10 * np.log10(power)
    return wav * np.float32(10 ** (change / 20)) if change > 0 else wav
