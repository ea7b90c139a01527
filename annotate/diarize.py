"""Speaker diarization: who speaks when, and does one person dominate the clip.

Two backends with one output:

- pyannote.audio 4, its pipeline loaded from a local folder (`pyannote_dir`: config.yaml
  plus the checkpoints it names, e.g. speaker-diarization-community-1 as downloaded) with
  pyannote's own `Pipeline.from_pretrained(folder)`;
- otherwise Resemblyzer (weights ship in its wheel) plus the voice's spectral envelope.
  The units are the speech segments (VAD, pauses under 0.2 s joined, long ones cut into
  pieces of at most `unit_seconds`): speakers change at pauses far more often than inside
  them. Each unit gets two descriptions: its Resemblyzer embedding (the mean of its
  `window_seconds` partials) and a Gaussian of its MFCCs (the classic BIC-diarization
  model of a voice, content averaged out over a second or more). Two units differ by
  max(cosine distance / `cluster_threshold`, symmetric KL / `mfcc_threshold`); average
  linkage cut at 1 (so one speaker is a possible answer). Resemblyzer alone missed
  espeak's en vs en+m7 (cosine 0.21, under its 0.3 cut); the MFCC Gaussians part them
  (KL 20-80 between the voices, 3-25 between sentences of one voice).

annotations["diarization"] = {"backend": "pyannote" | "resemblyzer",
                              "turns": [[start_s, end_s, "SPEAKER_00"], ...],
                              "verdict": "one speaker" | "N speakers" | "cannot tell",
                              "why": reason, only with "cannot tell"}
Speakers are renamed by talk time (SPEAKER_00 talks most). Scores:
`diarization.num_speakers`, `diarization.dominant_share` (dominant speaker's talk time /
all talk time), and with Resemblyzer `diarization.confidence` in [0, 1]: how far the
clustering's nearest decision lies from its cut (0 = on the cut, or too little speech
to compare two units). Below `min_confidence` the verdict is "cannot tell" rather than a
speaker count given with full confidence (the clip is not rejected for that: its
scores say it). A clip whose dominant share is below `min_dominant_share` is rejected.

What it cannot do: voices that differ less than two sentences of one voice do (espeak's
en vs en+m3: formants 3-5 % apart, same pitch; cosine 0.05-0.24 and KL 3-28 between
them, inside one voice's own spread) come out as one speaker, and the confidence does
not warn of it. A pyannote pipeline (`pyannote_dir`) is the better model when one is at hand.
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
    writes = (annotation("diarization"), score("diarization.num_speakers"), score("diarization.dominant_share"),
              score("diarization.confidence"))

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

    def warm(self) -> None:
        """Import what diarizing imports on first use and run the models once on a second of
        generated noise, so that the first clip does not pay for it (1.25 CPU-s of it the
        scipy.cluster import): pipelines.stages calls it while the worker starts up."""
        import scipy.cluster.hierarchy  # noqa: F401  (cluster_units' imports)
        import scipy.spatial.distance  # noqa: F401

        import annotate.syncnet  # noqa: F401

        if isinstance(self.backend, ResemblyzerBackend):
            noise = np.random.default_rng(0).normal(0, 0.05, SAMPLE_RATE).astype(np.float32)
            if self._vad is not None:  # its own VAD (source_diarizer's); the clip stage's comes later if needed
                self._vad.segments(noise)
            self.backend.embed_windows(noise, [(0.0, 1.0)])

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
        confidence = None
        try:
            if isinstance(self.backend, ResemblyzerBackend):
                turns, confidence = self.backend.diarize(audio, self._speech(record, audio))
            else:
                turns = self.backend.turns(audio)
        except (RuntimeError, ValueError) as e:  # a model that chokes on this clip's audio
            record.fail(self.name, f"{self.backend.name}: {e}")
            return record
        turns, talk = rename_by_talk_time(turns)
        total = sum(talk.values())
        share = max(talk.values()) / total if total > 0 else 0.0
        ann: dict = {"backend": self.backend.name, "turns": [[round(s, 3), round(e, 3), spk] for s, e, spk in turns]}
        ann["verdict"] = "one speaker" if len(talk) == 1 else f"{len(talk)} speakers"
        if confidence is not None:
            record.set_score("diarization.confidence", round(confidence, 4))
            if talk and confidence < self.cfg.min_confidence:
                ann["verdict"] = "cannot tell"
                ann["why"] = (f"one stretch of speech ({total:.1f} s): nothing to compare it with"
                              if len(turns) == 1 and confidence == 0 else
                              f"{len(talk)} speaker(s) found, but the nearest decision is close to the cut "
                              f"(confidence {confidence:.2f} < {self.cfg.min_confidence})")
        record.annotations[self.name] = ann
        record.set_score("diarization.num_speakers", len(talk))
        record.set_score("diarization.dominant_share", round(share, 4))
        record.mark(self.name)
        if not talk:
            record.reject(self.name, "no_speech", "no speech found")
        elif share < self.cfg.min_dominant_share:
            record.reject(self.name, "dominant_speaker", f"dominant speaker {share:.0%} < {self.cfg.min_dominant_share:.0%}",
                          value=share, threshold=self.cfg.min_dominant_share)
        return record


_SOURCE_DIARIZERS: dict[str, "Diarizer"] = {}


def source_diarizer(cfg: DiarizationConfig, vad_cfg: VadConfig | None = None, warm: bool = False) -> "Diarizer":
    """The diarizer (and, with Resemblyzer, its VAD) that source_speech_turns uses, built
    once per process. `warm`: also import what diarizing imports on first use and run each
    model once on a second of generated noise, so that the first source does not pay for
    them (pipelines.stages counts that as the worker's start-up, not as the source's)."""
    key = cfg.model_dump_json() + (vad_cfg.model_dump_json() if vad_cfg else "")
    if key not in _SOURCE_DIARIZERS:
        dia = Diarizer(cfg, vad_cfg)
        if isinstance(dia.backend, ResemblyzerBackend):
            dia._vad = VoiceActivity(dia._vad_cfg)
        if warm:
            dia.warm()
        _SOURCE_DIARIZERS[key] = dia
    return _SOURCE_DIARIZERS[key]


def source_turns(path: str, cfg: DiarizationConfig, vad_cfg: VadConfig | None = None) -> list[Turn]:
    """Speaker turns over a whole source file (its audio on the video's timeline), for
    cutting clips at speaker changes before any clip is made. The models load once per
    process. An empty list when the file has no readable audio."""
    return source_speech_turns(path, cfg, vad_cfg)[1]


def source_speech_turns(path: str, cfg: DiarizationConfig,
                        vad_cfg: VadConfig | None = None) -> tuple[list[tuple[float, float]] | None, list[Turn]]:
    """source_turns, with the source's speech segments (seconds, the VAD's) that the turns
    were found in, so the clip filter need not run the VAD again; None when no VAD ran
    (pyannote, or no readable audio)."""
    from mentor.media import MediaError, read_audio

    dia = source_diarizer(cfg, vad_cfg)
    try:
        audio = read_audio(path, SAMPLE_RATE)
    except MediaError:
        return None, []
    if isinstance(dia.backend, ResemblyzerBackend):
        speech = dia._vad.segments(audio)
        turns, _ = dia.backend.diarize(audio, speech)
        return speech, turns
    return None, dia.backend.turns(audio)


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

    def units(self, speech: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """Speech segments (pauses under 0.2 s joined), long ones cut into equal pieces of
        at most `unit_seconds`: the stretches that get one speaker label each."""
        out = []
        for s, e in merge_segments(speech, gap=0.2):
            n = max(1, int(np.ceil((e - s) / self.cfg.unit_seconds - 1e-9)))
            step = (e - s) / n
            out += [(s + i * step, s + (i + 1) * step) for i in range(n)]
        return out

    def unit_embeddings(self, audio: np.ndarray, units: list[tuple[float, float]]) -> np.ndarray:
        """One L2-normalised Resemblyzer embedding per unit: the mean of its partials
        (`window_seconds` every `hop_seconds`; a short unit gets one centred window)."""
        win, hop, duration = self.cfg.window_seconds, self.cfg.hop_seconds, len(audio) / SAMPLE_RATE
        windows, owner = [], []
        for k, (s, e) in enumerate(units):
            if e - s <= win:
                starts = [min(max(0.0, (s + e - win) / 2), max(0.0, duration - win))]
            else:
                starts = [float(x) for x in np.arange(s, e - win + 1e-6, hop)]
                if e - win - starts[-1] > hop / 2:
                    starts.append(e - win)
            windows += [(x, x + win) for x in starts]
            owner += [k] * len(starts)
        emb = self.embed_windows(audio, windows)
        owner_arr = np.array(owner)
        out = np.stack([emb[owner_arr == k].mean(0) for k in range(len(units))])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def diarize(self, audio: np.ndarray, speech: list[tuple[float, float]]) -> tuple[list[Turn], float]:
        """(turns, confidence) of 16 kHz `audio` whose speech is `speech` (VAD spans)."""
        units = self.units(speech)
        if not units:
            return [], 0.0
        dist = unit_distances(self.unit_embeddings(audio, units), mfcc_gaussians(audio, units),
                              np.array([e - s for s, e in units]), self.cfg)
        labels, confidence = cluster_units(dist, np.array([e - s for s, e in units]), self.cfg.min_speaker_seconds)
        turns: list[list] = []
        for (s, e), lab in zip(units, labels):
            if turns and turns[-1][2] == lab and s - turns[-1][1] < 0.25:
                turns[-1][1] = e
            else:
                turns.append([s, e, lab])
        return [(float(s), float(e), f"S{lab}") for s, e, lab in turns], confidence


MIN_MFCC_SECONDS = 1.5  # shorter units' MFCC Gaussians are too noisy to compare: embedding only


def mfcc_gaussians(audio: np.ndarray, units: list[tuple[float, float]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(mean, covariance) of MFCCs 1-12 over the louder 70 % of each unit's 10 ms frames
    (c0, the loudness, left out; covariance shrunk 1 % towards its mean variance)."""
    from annotate.syncnet import mfcc

    cep = mfcc(audio)
    loud = cep[:, 0] > np.percentile(cep[:, 0], 30)
    out = []
    for s, e in units:
        idx = np.arange(int(s * 100), min(int(np.ceil(e * 100)), len(cep)))
        x = cep[idx[loud[idx]] if loud[idx].sum() > 13 else idx, 1:]
        if len(x) < 2:
            x = cep[max(0, len(cep) - 2):, 1:]
        cov = np.cov(x.T) + 1e-6 * np.eye(x.shape[1])
        cov += 0.01 * np.trace(cov) / len(cov) * np.eye(len(cov))
        out.append((x.mean(0), cov))
    return out


def gaussian_kl(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Symmetric Kullback-Leibler divergence of two Gaussians (mean, covariance)."""
    (ma, sa), (mb, sb) = a, b
    ia, ib = np.linalg.inv(sa), np.linalg.inv(sb)
    dm = ma - mb
    return float(0.5 * (np.trace(ia @ sb) + np.trace(ib @ sa) - 2 * len(ma) + dm @ (ia + ib) @ dm))


def unit_distances(emb: np.ndarray, gaussians: list, seconds: np.ndarray, cfg: DiarizationConfig) -> np.ndarray:
    """N x N: max(cosine distance / cluster_threshold, KL / mfcc_threshold), 1 = the cut.
    The KL term only between units of at least MIN_MFCC_SECONDS each."""
    dist = np.clip(1.0 - emb @ emb.T, 0.0, 2.0) / cfg.cluster_threshold
    for i in range(len(emb)):
        for j in range(i + 1, len(emb)):
            if min(seconds[i], seconds[j]) >= MIN_MFCC_SECONDS:
                kl = gaussian_kl(gaussians[i], gaussians[j]) / cfg.mfcc_threshold
                dist[i, j] = dist[j, i] = max(dist[i, j], kl)
    np.fill_diagonal(dist, 0.0)
    return dist


def cluster_units(dist: np.ndarray, seconds: np.ndarray, min_seconds: float) -> tuple[np.ndarray, float]:
    """(speaker label per unit, confidence) from an N x N distance whose cut is 1.

    Average-linkage clustering cut at 1; clusters with less than `min_seconds` of speech
    join the cluster nearest on average (a stray short unit should not invent a
    speaker). Confidence = how far the merges nearest the cut lie from it, over 0.5,
    clipped to [0, 1]; 0 with a single unit (nothing to compare).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if len(dist) == 1:
        return np.zeros(1, dtype=int), 0.0
    tree = linkage(squareform(dist, checks=False), method="average")
    labels = fcluster(tree, t=1.0, criterion="distance") - 1
    heights = tree[:, 2]
    confidence = float(np.clip(np.min(np.abs(heights - 1.0)) / 0.5, 0.0, 1.0))
    talk = np.bincount(labels, weights=seconds)
    big = [k for k in range(len(talk)) if talk[k] >= min_seconds] or [int(np.argmax(talk))]
    for k in set(labels.tolist()) - set(big):
        rows = labels == k
        labels[rows] = big[int(np.argmin([dist[np.ix_(rows, labels == b)].mean() for b in big]))]
    _, labels = np.unique(labels, return_inverse=True)
    return labels, confidence


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
