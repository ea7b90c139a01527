"""`mentor eval`: judge generated talking-human videos against a store's real clips.

Generated videos (from any method) are matched to the real clips of a split by clip id:
`DIR/<clip_id>.mp4`, `DIR/<clip_id>_<k>.mp4` or `DIR/<clip_id>/<anything>.mp4` (K samples of
one input), or through a manifest CSV with columns `file,clip_id` (paths relative to DIR).
Every generated video is decoded at its real clip's fps and size and scored with:

- reconstruction (against the real frames): PSNR, SSIM, LPIPS;
- image quality (no reference): CPBD, NIQE;
- audio-visual sync on the generated video with its own audio track (the real clip's audio
  when it has none): the project's weight-free lip-gap/speech-envelope score (|offset| in
  frames and its confidence, annotate/av_sync.py) and SyncNet's LSE-D / LSE-C with weights;
- identity: ArcFace cosine distance between the generated face and the real clip's first
  frame (the reference), with an ArcFace ONNX model;
- 3D, from the project's own MediaPipe landmarks and SMPL-X fit run on the generated video,
  against the real clip's stored fit: lip-landmark error (mm; in camera space, and after a
  rigid fit of the upper face to the real one's, which leaves the mouth's own motion),
  head-pose error (degrees), and on the generated fit alone jitter (mm/s^3), expression spread and EMAGE's beat
  consistency with the audio;
- set-level: FID over frames, FVD over 16-frame clips (overall and per perceived group);
- stochasticity over K samples of one input: per-pixel standard deviation over time
  (a map per clip and its mean) and best-of-K for every per-clip metric.

Each metric is summarised with a bootstrap confidence interval over clips, overall and per
perceived group of the real clips (the store's attr.* columns: skin tone, age, gender, body
visibility, and pairs of them where groups are large enough), with the gap between the best
and the worst group and a flag when that gap's interval excludes zero. A metric whose
weights are missing is skipped with a message naming the file; the rest runs.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.metrics import image as img_metrics
from models.metrics import motion as mot

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")

# name -> (family, direction, label); direction "lower"/"higher" is what "better" means.
METRICS: dict[str, tuple[str, str, str]] = {
    "psnr": ("reconstruction", "higher", "PSNR (dB)"),
    "ssim": ("reconstruction", "higher", "SSIM"),
    "lpips": ("reconstruction", "lower", "LPIPS"),
    "cpbd": ("quality", "higher", "CPBD sharpness"),
    "niqe": ("quality", "lower", "NIQE"),
    "cpbd_loss": ("quality", "lower", "CPBD lost vs the real clip"),
    "niqe_rise": ("quality", "lower", "NIQE added vs the real clip"),
    "sync_offset": ("sync", "lower", "|A/V offset| (frames, weight-free)"),
    "sync_confidence": ("sync", "higher", "A/V sync confidence (weight-free)"),
    "lse_d": ("sync", "lower", "LSE-D (SyncNet)"),
    "lse_c": ("sync", "higher", "LSE-C (SyncNet)"),
    "identity_distance": ("identity", "lower", "ArcFace distance to reference"),
    "lme": ("motion3d", "lower", "lip landmark error LME (mm, camera space)"),
    "lme_aligned": ("motion3d", "lower", "LME, head-aligned (mm)"),
    "head_pose_error": ("motion3d", "lower", "head-pose error (deg)"),
    "jitter": ("motion3d", "lower", "jitter (mm/s^3)"),
    "expression_spread": ("motion3d", "higher", "expression spread"),
    "beat_consistency": ("motion3d", "higher", "beat consistency (EMAGE BC)"),
    "stochasticity": ("diversity", "info", "stochasticity (pixel std over K)"),
}
# Metrics measured against the real clip (or its reference frame): a gap between groups in
# these is the generator's. The others (CPBD, NIQE, sync confidence, LSE, jitter, expression
# spread, BC) also describe the real footage, which differs between groups by itself; their
# group tables are shown, and only their changes from the real clip (cpbd_loss, niqe_rise)
# raise flags.
FLAGGED = ("psnr", "ssim", "lpips", "cpbd_loss", "niqe_rise", "sync_offset", "identity_distance", "lme",
           "lme_aligned", "head_pose_error")
SET_METRICS: dict[str, tuple[str, str, str]] = {
    "fid": ("set", "lower", "FID (frames)"),
    "fvd": ("set", "lower", "FVD (16-frame clips)"),
}
GROUP_COLUMNS = ("attr.skin_tone_group", "attr.skin_tone_monk", "attr.perceived_age", "attr.perceived_gender",
                 "attr.body_visibility")


@dataclass
class EvalConfig:
    """What `mentor eval` computes. Weight paths left None skip their metric (and say so)."""

    fid_weights: str | None = None  # torch-fidelity's pt_inception-2015-12-05-6726825d.pth
    fvd_weights: str | None = None  # i3d_torchscript.pt
    lpips_weights: str | None = None  # torchvision's alexnet-owt-7be5be79.pth
    syncnet_weights: str | None = None  # syncnet_python's syncnet_v2.model
    arcface_model: str | None = None  # an ArcFace ONNX (insightface's w600k_r50.onnx, ...)
    niqe_params: str | None = None  # .mat / .npz; None: the MATLAB release's (models/metrics/data)
    fid_extractor: Any = None  # an nn.Module used instead of Inception (tests, custom features)
    fid_frames: int = 16  # frames per clip (and per sample) for FID
    quality_frames: int = 4  # frames per video for CPBD and NIQE (CPBD is ~1-3 s a frame)
    identity_frames: int = 8
    face_metrics: bool = True  # landmark-based metrics: sync, identity, 3D (MediaPipe on every frame)
    fit_3d: bool = True  # landmarks + SMPL-X fit of each generated video for the 3D metrics
    real_fit: str = "stored"  # "stored" (the store's smplx.* arrays) or "refit" (the same fitter on the real video)
    body_model_dir: str | None = None  # SMPL-X folder; None: $MENTOR_SMPLX_DIR, else the synthetic model
    bootstrap: int = 1000
    set_bootstrap: int = 50  # resamples of clips for FID/FVD intervals (any feature size; thin-factor Frechet)
    confidence: float = 0.95
    min_group_clips: int = 3  # smaller groups are shown, never flagged or paired
    group_columns: tuple[str, ...] = GROUP_COLUMNS
    device: str = "auto"
    seed: int = 0
    example_groups: int = 6
    # A light evaluation (`make demo`, a quick look): judge at most max_clips clips, spread
    # over the first group column's groups (None: all). With `evaluate(..., gen_seconds=S)`
    # only the first S seconds of each clip are generated and judged.
    max_clips: int | None = None

    def __post_init__(self):
        if self.real_fit not in ("stored", "refit"):
            raise ValueError(f"real_fit={self.real_fit!r}: use 'stored' or 'refit'")
        for name in ("fid_frames", "quality_frames", "identity_frames", "min_group_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be >= 1")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"max_clips={self.max_clips!r}: must be >= 1 (or None for every clip)")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence={self.confidence!r}: must be between 0 and 1")
        if self.bootstrap < 0 or self.set_bootstrap < 0:
            raise ValueError("bootstrap and set_bootstrap must be >= 0")


# ------------------------------------------------------------------------- matching

def read_manifest(path: str | Path) -> pd.DataFrame:
    """A CSV with columns file, clip_id (and optionally sample)."""
    df = pd.read_csv(path)
    missing = {"file", "clip_id"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: manifest needs columns file,clip_id (missing {sorted(missing)}); "
                         f"it has {list(df.columns)}")
    return df


def match_generated(clip_ids: list[str], directory: str | Path, manifest: pd.DataFrame | None = None
                    ) -> tuple[dict[str, list[Path]], list[str]]:
    """{clip_id: [video paths, one per sample]} for the clips that have generated videos,
    and the files in `directory` that match no clip (reported, not evaluated)."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"--generated {root}: not a folder of generated videos")
    wanted = set(clip_ids)
    out: dict[str, list[tuple[str, Path]]] = {}
    unmatched: list[str] = []
    if manifest is not None:
        for i, row in manifest.iterrows():
            p = root / str(row["file"])
            if str(row["clip_id"]) not in wanted or not p.is_file():
                unmatched.append(str(row["file"]) + ("" if p.is_file() else " (file not found)"))
                continue
            out.setdefault(str(row["clip_id"]), []).append((str(row.get("sample", i)), p))
    else:
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            rel = p.relative_to(root)
            cid = None
            if len(rel.parts) > 1 and rel.parts[0] in wanted:
                cid, key = rel.parts[0], str(rel)
            elif p.stem in wanted:
                cid, key = p.stem, "0"
            else:
                m = re.match(r"^(.+?)[_-](?:s|sample)?(\d+)$", p.stem)
                if m and m.group(1) in wanted:
                    cid, key = m.group(1), m.group(2).zfill(6)
            if cid is None:
                unmatched.append(str(rel))
            else:
                out.setdefault(cid, []).append((key, p))
    return {c: [p for _, p in sorted(v)] for c, v in out.items()}, unmatched


# -------------------------------------------------------------------- statistics

def bootstrap_ci(values: np.ndarray, n_boot: int, confidence: float, rng: np.random.Generator
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (nan, nan) for fewer than 2 values."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2 or n_boot < 1:
        return float("nan"), float("nan")
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    a = (1 - confidence) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def gap_ci(worse: np.ndarray, better: np.ndarray, direction: str, n_boot: int, confidence: float,
           rng: np.random.Generator) -> tuple[float, float, float]:
    """(gap, lo, hi): how much worse the worse group's mean is than the better's (> 0 is a
    gap in the metric's bad direction), with a bootstrap interval resampling each group."""
    w, b = (np.asarray(x, float) for x in (worse, better))
    w, b = w[np.isfinite(w)], b[np.isfinite(b)]
    sign = 1.0 if direction == "lower" else -1.0
    gap = sign * (w.mean() - b.mean())
    if min(len(w), len(b)) < 2 or n_boot < 1:
        return float(gap), float("nan"), float("nan")
    mw = w[rng.integers(0, len(w), (n_boot, len(w)))].mean(1)
    mb = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    d = sign * (mw - mb)
    a = (1 - confidence) / 2
    return float(gap), float(np.quantile(d, a)), float(np.quantile(d, 1 - a))


def group_labels(groups: pd.DataFrame, col: str) -> pd.Series:
    from mentor.audit.stats import group_values

    return group_values(groups, col)


def stratify(per_clip: pd.DataFrame, groups: pd.DataFrame, metrics: dict[str, str], columns: list[str],
             min_group_clips: int = 3, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
             flag_metrics: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group means with bootstrap intervals, and the best-worst gap per metric and column.

    per_clip: one row per clip (clip_id + metric columns); groups: clip_id + group columns
    (values become labels as in the dataset audit; missing = "unknown", never flagged);
    metrics: name -> "lower" | "higher"; columns: group columns, and "a x b" for pairs;
    flag_metrics: the metrics whose gaps may be flagged (None: all).
    Returns (groups table: column, group, metric, clips, mean, ci_low, ci_high;
             gaps table: column, metric, best_group, worst_group, best, worst, gap, ci_low,
             ci_high, level (the interval's confidence, Bonferroni-adjusted for the k groups'
             pairs), groups, flagged).
    """
    rng = np.random.default_rng(seed)
    df = per_clip.merge(groups, on="clip_id", how="left")
    rows, gaps = [], []
    for col in columns:
        parts = col.split(" x ")
        if any(p not in df.columns for p in parts):
            continue
        lab = group_labels(df, parts[0])
        for p in parts[1:]:
            lab = lab + " | " + group_labels(df, p)
        for metric, direction in metrics.items():
            if metric not in df.columns or direction not in ("lower", "higher"):
                continue
            vals = pd.to_numeric(df[metric], errors="coerce")
            stats = []
            for g in sorted(lab.unique()):
                v = vals[lab == g].to_numpy(float)
                v = v[np.isfinite(v)]
                lo, hi = bootstrap_ci(v, n_boot, confidence, rng)
                rows.append({"column": col, "group": g, "metric": metric, "clips": len(v),
                             "mean": float(v.mean()) if len(v) else float("nan"), "ci_low": lo, "ci_high": hi})
                if len(v) >= min_group_clips and "unknown" not in g.split(" | "):
                    stats.append((g, v))
            if len(stats) < 2:
                continue
            key = (lambda gv: gv[1].mean()) if direction == "lower" else (lambda gv: -gv[1].mean())
            ordered = sorted(stats, key=key)
            (bg, bv), (wg, wv) = ordered[0], ordered[-1]
            # best and worst are picked from the same data: the interval is widened for every
            # pair that could have been picked (Bonferroni over k(k-1)/2 pairs), so that with no
            # real difference a flag comes at most 1 - confidence of the time per metric and column
            pairs = len(stats) * (len(stats) - 1) // 2
            level = 1 - (1 - confidence) / pairs
            gap, lo, hi = gap_ci(wv, bv, direction, n_boot, level, rng)
            gaps.append({"column": col, "metric": metric, "best_group": bg, "worst_group": wg,
                         "best": float(bv.mean()), "worst": float(wv.mean()), "gap": gap, "ci_low": lo,
                         "ci_high": hi, "level": level, "groups": len(stats),
                         "flagged": bool(np.isfinite(lo) and lo > 0
                                         and (flag_metrics is None or metric in flag_metrics))})
    return pd.DataFrame(rows), pd.DataFrame(gaps)


def pick_clips(clips: pd.DataFrame, n: int, columns: tuple[str, ...] = GROUP_COLUMNS) -> pd.DataFrame:
    """n clips spread over the groups of the first group column that has values: round-robin
    over its groups (ordered by clip id inside each), so a light evaluation still sees every
    group it can. Deterministic."""
    col = next((c for c in columns if c in clips.columns and clips[c].notna().any()), None)
    df = clips.sort_values("clip_id").reset_index(drop=True)
    if col is None:
        return df.head(n)
    lab = group_labels(df, col)
    rank = lab.groupby(lab).cumcount()
    order = pd.DataFrame({"rank": rank, "group": lab}).sort_values(["rank", "group"], kind="stable").index
    return df.loc[order[:n]].sort_values("clip_id").reset_index(drop=True)


def group_column_sets(groups: pd.DataFrame, columns: tuple[str, ...], min_group_clips: int) -> list[str]:
    """The group columns with values, and their pairs where at least two combined groups have
    min_group_clips clips (as "a x b")."""
    present = [c for c in columns if c in groups.columns and groups[c].notna().any()]
    out = list(present)
    for a, b in itertools.combinations(present, 2):
        lab = group_labels(groups, a) + " | " + group_labels(groups, b)
        if (lab.value_counts() >= min_group_clips).sum() >= 2:
            out.append(f"{a} x {b}")
    return out


# --------------------------------------------------------------------- the evaluator

def _device(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


@dataclass
class ClipResult:
    rows: list[dict[str, Any]]  # one per sample
    fid_real: np.ndarray | None = None
    fid_fake: list[np.ndarray] = field(default_factory=list)
    fvd_real: list[np.ndarray] = field(default_factory=list)
    fvd_fake: list[np.ndarray] = field(default_factory=list)
    stochasticity: np.ndarray | None = None
    examples: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Evaluator:
    """Loads every configured network once; `clip(record, paths)` scores one real clip's
    generated samples. `notes` says what was skipped and why."""

    def __init__(self, cfg: EvalConfig):
        self.cfg = cfg
        self.device = _device(cfg.device)
        self.notes: list[str] = []
        self.lpips = self._optional(lambda: img_metrics.LPIPS(cfg.lpips_weights, self.device))
        self.fid = self._optional(lambda: img_metrics.FID(cfg.fid_weights, cfg.fid_extractor, self.device))
        self.fvd = self._optional(lambda: img_metrics.FVD(cfg.fvd_weights, self.device))
        self.syncnet = self._optional(self._load_syncnet)
        self.arcface = self._optional(self._load_arcface)
        self._landmarks = self._fitter = self._body = None
        self._mesh = None
        self._fit_count = 0

    def _optional(self, make):
        try:
            return make()
        except img_metrics.MissingWeights as e:
            self.notes.append(str(e))
            return None

    def _load_syncnet(self):
        if not self.cfg.syncnet_weights or not Path(self.cfg.syncnet_weights).expanduser().is_file():
            raise img_metrics.MissingWeights("LSE-D/LSE-C", self.cfg.syncnet_weights,
                                             "the SyncNet weights (syncnet_python's syncnet_v2.model)",
                                             "--syncnet-weights / eval.syncnet_weights")
        from annotate.syncnet import load_syncnet

        return load_syncnet(self.cfg.syncnet_weights, self.device)

    def _load_arcface(self):
        if not self.cfg.arcface_model or not Path(self.cfg.arcface_model).expanduser().is_file():
            raise img_metrics.MissingWeights("ArcFace identity distance", self.cfg.arcface_model,
                                             "an ArcFace ONNX model (e.g. insightface's w600k_r50.onnx)",
                                             "--arcface-model / eval.arcface_model")
        from annotate.identity import FaceIdentity
        from mentor.config import AttributeConfig

        return FaceIdentity(AttributeConfig(face_recognition_model=str(self.cfg.arcface_model)), self.device)

    # -- shared models, built on first need
    def landmarks(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        if self._landmarks is None:
            from annotate.landmarks import HolisticLandmarks
            from mentor.config import LandmarksConfig

            self._landmarks = HolisticLandmarks(LandmarksConfig())
        return self._landmarks.process_frames(frames)

    def fit(self, arrays: dict[str, np.ndarray], fps: float, width: int, height: int) -> tuple[Any, str | None]:
        """SMPL-X fit of landmark arrays (the project's fitter) -> (record with smplx.*, error)."""
        from mentor.record import ClipRecord

        if self._fitter is None:
            from annotate.smplx_fit import SmplxFitter
            from mentor.config import SmplxConfig

            self._fitter = SmplxFitter(SmplxConfig(model_dir=self.cfg.body_model_dir), device=self.device)
        n = len(next(iter(arrays.values())))
        # each video its own source: the fitter keeps a source's fitted focal for its next clips
        # (one camera), which would fit every video after the first under the first one's focal
        self._fit_count += 1
        source = f"generated-{self._fit_count}"
        rec = ClipRecord(id=source, source_id=source, source_uri="generated", start=0.0, end=n / fps,
                         fps=fps, width=width, height=height)
        for k, a in arrays.items():
            rec.add_array(f"landmarks.{k}", a, fps)
        try:
            rec = self._fitter(rec)
        except Exception as e:  # the fitter failing on one video is that clip's problem, not the run's
            log.exception("SMPL-X fit")
            return None, f"SMPL-X fit raised {type(e).__name__}: {e}"
        if "smplx.expression" not in rec.arrays:
            return None, rec.errors.get("smplx", "SMPL-X fit failed")
        return rec, None

    def body(self):
        if self._body is None:
            from mentor.body import load_body_model

            fitted_with = self._fitter.body if self._fitter is not None else None
            self._body = load_body_model(self.cfg.body_model_dir,
                                         num_pca_comps=getattr(fitted_with, "num_pca_comps", 12))
        return self._body

    # -- one clip
    def clip(self, rec, paths: list[Path]) -> ClipResult:
        from mentor.media import MediaError, probe, read_audio, read_frames

        fps, w, h = float(rec.fps or 25.0), int(rec.width), int(rec.height)
        real = read_frames(rec.files["video"], fps=fps)
        real_audio = read_audio(rec.files["audio"]) if rec.files.get("audio") else None
        res = ClipResult(rows=[])
        fit_3d = self.cfg.fit_3d and self.cfg.face_metrics
        stored = rec if "smplx.expression" in rec.arrays else None
        if fit_3d and self.cfg.real_fit == "stored" and stored is None:
            res.errors.append("the real clip has no stored SMPL-X fit (smplx.* arrays)")
        real_fits: dict[int, Any] = {}

        def real_fit_for(n: int):
            """The real fit to compare n generated frames with: the stored one, unless the
            generated video covers under 90 % of the clip (a fit of a shorter span is not the
            same fit: the focal length and depth are estimated from the frames given; measured
            on one talking clip, 50 of its 100 frames fitted alone against the whole-clip fit:
            LME 451 mm in camera space, 4.9 mm head-aligned), or "refit": the project's fitter
            on the real clip's first n frames, like the generated video."""
            if self.cfg.real_fit == "stored" and (n >= 0.9 * len(real) or stored is None):
                return stored
            if n not in real_fits:
                real_fits[n], err = self.fit(self.landmarks(real[:n]), fps, w, h)
                if err:
                    res.errors.append(f"real clip refit ({n} frames): {err}")
            return real_fits[n]
        ref_emb = self._reference_embedding(real[0]) if self.arcface is not None and self.cfg.face_metrics else None
        if self.fid is not None:
            res.fid_real = self.fid.features(real[img_metrics.sample_indices(len(real), self.cfg.fid_frames)])
        if self.fvd is not None:
            res.fvd_real = [self.fvd.features(real)]
        samples = []
        real_quality = None
        for k, path in enumerate(paths):
            row: dict[str, Any] = {"clip_id": rec.id, "sample": k, "file": str(path)}
            try:
                info = probe(path)
                fake = read_frames(path, fps=fps, size=None if (info.width, info.height) == (w, h) else (w, h))
            except MediaError as e:
                res.errors.append(f"{path.name}: {e}")
                continue
            n = min(len(fake), len(real))
            fake = fake[:n]
            samples.append(fake)
            try:
                audio = read_audio(path)
                row["audio"] = "generated"
            except MediaError:
                audio, row["audio"] = real_audio, "real (the generated video has none)"
            row["psnr"] = img_metrics.psnr(real[:n], fake)
            row["ssim"] = img_metrics.ssim(real[:n], fake)
            if self.lpips is not None:
                row["lpips"] = self.lpips(real[:n], fake)
            if real_quality is None:
                real_quality = self._quality(real[:n], res)
            row.update(self._quality(fake, res))
            if "cpbd" in real_quality:
                row["cpbd_loss"] = real_quality["cpbd"] - row["cpbd"]
            if "niqe" in real_quality and "niqe" in row:
                row["niqe_rise"] = row["niqe"] - real_quality["niqe"]
            if self.fid is not None:
                res.fid_fake.append(self.fid.features(fake[img_metrics.sample_indices(n, self.cfg.fid_frames)]))
            if self.fvd is not None:
                res.fvd_fake.append(self.fvd.features(fake))
            lms = self.landmarks(fake) if self.cfg.face_metrics else None
            if audio is not None and lms is not None:
                row.update(self._sync(fake, lms["face"], audio, fps))
            if ref_emb is not None and lms is not None:
                row["identity_distance"] = self._identity(fake, lms["face"], ref_emb)
            if fit_3d and lms is not None:
                row.update(self._motion(lms, fps, w, h, real_fit_for(n), audio, res))
            res.rows.append(row)
        if len(samples) >= 2:
            res.stochasticity = img_metrics.stochasticity_map(np.stack([s[:min(len(x) for x in samples)]
                                                                        for s in samples]))
            for row in res.rows:
                row["stochasticity"] = float(res.stochasticity.mean())
        mid = len(real) // 2
        res.examples = {"real": real[mid], "generated": [s[min(mid, len(s) - 1)] for s in samples[:3]]}
        return res

    def _quality(self, frames: np.ndarray, res: ClipResult) -> dict[str, float]:
        out = {"cpbd": img_metrics.cpbd(frames, self.cfg.quality_frames)}
        try:
            v = img_metrics.niqe(frames, self.cfg.quality_frames, self.cfg.niqe_params)
            if np.isfinite(v):
                out["niqe"] = v
            else:
                res.errors.append("NIQE: fewer than two frame blocks of 96 px with texture")
        except ValueError as e:  # frames under 96 px
            res.errors.append(f"NIQE: {e}")
        return out

    def _sync(self, frames, face, audio, fps) -> dict[str, float]:
        from annotate.av_sync import lagged_correlation, mouth_opening, peak_prominence, speech_envelope

        out: dict[str, float] = {}
        mouth = mouth_opening(face)
        env = speech_envelope(audio, fps, len(mouth))
        lags, corr = lagged_correlation(mouth, env, 15)
        if np.isfinite(corr).any():
            best = int(np.nanargmax(corr))
            out["sync_offset"] = float(abs(lags[best]))
            out["sync_confidence"] = float(peak_prominence(lags, corr, best))
        if self.syncnet is not None:
            from annotate.syncnet import FPS, face_crops, lse

            idx = np.clip(np.round(np.arange(int(len(frames) / fps * FPS)) / FPS * fps).astype(int), 0, len(frames) - 1)
            pts = face[idx, :, :2]
            with np.errstate(all="ignore"):
                boxes = np.concatenate([np.nanmin(pts, 1), np.nanmax(pts, 1)], axis=1)
            try:
                d, c, _ = lse(self.syncnet, face_crops(frames[idx], boxes), audio)
                out["lse_d"], out["lse_c"] = d, c
            except ValueError as e:
                log.info("LSE skipped: %s", e)
        return out

    def _reference_embedding(self, frame: np.ndarray) -> np.ndarray | None:
        from annotate.face_regions import FaceMeshRunner, align_face

        if self._mesh is None:
            self._mesh = FaceMeshRunner()
        lm = self._mesh(frame)
        if lm is None:
            return None
        return self.arcface.embed(align_face(frame, lm)[None])[0]

    def _identity(self, frames, face, ref) -> float:
        from annotate.face_regions import align_face

        found = np.where(np.isfinite(face[:, :, 0]).all(1))[0]
        if not len(found):
            return float("nan")
        pick = found[img_metrics.sample_indices(len(found), self.cfg.identity_frames)]
        emb = self.arcface.embed(np.stack([align_face(frames[i], face[i]) for i in pick]))
        m = emb.mean(0)
        return float(1 - m @ ref / max(np.linalg.norm(m), 1e-12))

    def _motion(self, lms, fps, w, h, real_fit, audio, res: ClipResult) -> dict[str, float]:
        import torch

        from mentor.body import SmplxParams

        gen, err = self.fit(lms, fps, w, h)
        if err:
            res.errors.append(f"generated video's SMPL-X fit: {err}")
            return {}
        body = self.body()
        with torch.no_grad():
            pg = SmplxParams.from_record(gen)
            og = body.forward(pg)
        out = {"jitter": mot.jitter(og.joints.cpu().numpy(), fps),
               "expression_spread": mot.expression_spread(pg.expression.cpu().numpy())}
        if audio is not None:
            out["beat_consistency"] = mot.beat_consistency(og.joints.cpu().numpy(), fps, audio=audio)
        if real_fit is not None:
            with torch.no_grad():
                pr = SmplxParams.from_record(real_fit)
                n = min(pr.num_frames, pg.num_frames)
                orr = body.forward(pr[:n])
            gen_lm, real_lm = og.landmarks[:n].cpu().numpy(), orr.landmarks.cpu().numpy()
            out["lme"] = mot.lip_landmark_error(mot.lip_points(gen_lm), mot.lip_points(real_lm))
            out["lme_aligned"] = mot.lip_landmark_error(mot.lip_points(mot.head_aligned(gen_lm, real_lm)),
                                                        mot.lip_points(real_lm))
            out["head_pose_error"] = mot.head_pose_error(
                mot.head_rotation(pg.global_orient[:n].cpu().numpy(), pg.body_pose[:n].cpu().numpy()),
                mot.head_rotation(pr.global_orient[:n].cpu().numpy(), pr.body_pose[:n].cpu().numpy()))
        return out


# -------------------------------------------------------------------- summaries

@dataclass
class MethodResult:
    """Everything measured for one folder of generated videos."""

    name: str
    per_sample: pd.DataFrame
    per_clip: pd.DataFrame  # mean over samples
    best_of_k: pd.DataFrame  # best over samples
    overall: pd.DataFrame
    groups: pd.DataFrame
    gaps: pd.DataFrame
    set_groups: pd.DataFrame
    notes: list[str]
    errors: dict[str, list[str]]
    unmatched: list[str]
    missing: list[str]
    stochasticity: dict[str, np.ndarray]
    examples: dict[str, dict[str, Any]]
    seconds: float
    video_seconds: float


def _per_clip(per_sample: pd.DataFrame, metrics: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    cols = [m for m in metrics if m in per_sample.columns]
    if not len(per_sample):
        empty = pd.DataFrame(columns=["clip_id", "samples", *cols])
        return empty, empty.copy()
    g = per_sample.groupby("clip_id")
    mean = g[cols].mean().reset_index()
    mean.insert(1, "samples", g.size().to_numpy())
    best = {}
    for m in cols:
        d = METRICS[m][1]
        best[m] = g[m].min() if d == "lower" else g[m].max() if d == "higher" else g[m].mean()
    best = pd.DataFrame(best).reset_index()
    best.insert(1, "samples", g.size().to_numpy())
    return mean, best


def _set_metric(real: dict[str, np.ndarray], fake: dict[str, list[np.ndarray]], clips: list[str],
                n_boot: int, confidence: float, rng: np.random.Generator, device: str = "cpu"
                ) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) of a Frechet distance (FID, FVD) over `clips`: the interval
    resamples clips (each with its real frames and all its generated samples' frames)."""
    clips = [c for c in clips if c in real and fake.get(c)]
    r = [real[c] for c in clips]
    f = [np.concatenate(fake[c]) for c in clips]
    if not clips or min(sum(map(len, r)), sum(map(len, f))) < 2:
        return float("nan"), float("nan"), float("nan")
    v = mot.frechet_distance_weighted(np.concatenate(f), np.concatenate(r), device=device)
    if n_boot < 1 or len(clips) < 2:
        return v, float("nan"), float("nan")
    boots = mot.frechet_bootstrap(f, r, n_boot, rng, device)
    if not np.isfinite(boots).any():
        return v, float("nan"), float("nan")
    a = (1 - confidence) / 2
    return v, float(np.nanquantile(boots, a)), float(np.nanquantile(boots, 1 - a))


def evaluate_method(store, clips: pd.DataFrame, generated: str | Path, cfg: EvalConfig, evaluator: Evaluator,
                    manifest: pd.DataFrame | None = None, name: str = "", media_dir: Path | None = None
                    ) -> MethodResult:
    """Score every generated video of one folder against its real clip, and summarise."""
    t0 = time.perf_counter()
    matches, unmatched = match_generated(list(clips["clip_id"]), generated, manifest)
    missing = sorted(set(clips["clip_id"]) - set(matches))
    rows, errors, stoch, examples = [], {}, {}, {}
    fid_real, fid_fake, fvd_real, fvd_fake = {}, {}, {}, {}
    video_seconds = 0.0
    for rec in store.records(list(matches), media_dir=media_dir):
        try:
            r = evaluator.clip(rec, matches[rec.id])
        except Exception as e:  # a clip that cannot be scored is data: say why, go on
            log.exception("clip %s", rec.id)
            errors[rec.id] = [f"{type(e).__name__}: {e}"]
            continue
        rows += r.rows
        video_seconds += sum(rec.duration for _ in r.rows)
        if r.errors:
            errors[rec.id] = r.errors
        if r.stochasticity is not None:
            stoch[rec.id] = r.stochasticity
        examples[rec.id] = r.examples
        if r.fid_real is not None:
            fid_real[rec.id], fid_fake[rec.id] = r.fid_real, r.fid_fake
        if r.fvd_real and len(r.fvd_real[0]):
            fvd_real[rec.id] = r.fvd_real[0]
            fvd_fake[rec.id] = [x for x in r.fvd_fake if len(x)]
    per_sample = pd.DataFrame(rows)
    metric_names = list(METRICS)
    per_clip, best = _per_clip(per_sample, metric_names)
    rng = np.random.default_rng(cfg.seed)
    overall = []
    for m in metric_names:
        if m not in per_clip.columns:
            continue
        v = pd.to_numeric(per_clip[m], errors="coerce").to_numpy(float)
        fin = v[np.isfinite(v)]
        lo, hi = bootstrap_ci(fin, cfg.bootstrap, cfg.confidence, rng)
        bv = pd.to_numeric(best[m], errors="coerce").to_numpy(float)
        bv = bv[np.isfinite(bv)]
        overall.append({"metric": m, "label": METRICS[m][2], "family": METRICS[m][0], "better": METRICS[m][1],
                        "clips": len(fin), "mean": float(fin.mean()) if len(fin) else float("nan"),
                        "ci_low": lo, "ci_high": hi,
                        "best_of_k": float(bv.mean()) if len(bv) else float("nan"),
                        "k": int(per_clip["samples"].max()) if len(per_clip) else 0})
    groups = clips[["clip_id", *[c for c in cfg.group_columns if c in clips.columns]]]
    columns = group_column_sets(groups, cfg.group_columns, cfg.min_group_clips)
    directions = {m: METRICS[m][1] for m in metric_names}
    gtab, gaps = stratify(per_clip, groups, directions, columns, cfg.min_group_clips, cfg.bootstrap, cfg.confidence,
                          cfg.seed, flag_metrics=FLAGGED)
    set_rows = []
    for metric, real, fake in (("fid", fid_real, fid_fake), ("fvd", fvd_real, fvd_fake)):
        if not real:
            continue
        v, lo, hi = _set_metric(real, fake, list(real), cfg.set_bootstrap, cfg.confidence, rng, evaluator.device)
        overall.append({"metric": metric, "label": SET_METRICS[metric][2], "family": "set", "better": "lower",
                        "clips": len(real), "mean": v, "ci_low": lo, "ci_high": hi, "best_of_k": float("nan"),
                        "k": int(per_clip["samples"].max()) if len(per_clip) else 0})
        for col in columns:
            parts = col.split(" x ")
            g = groups.set_index("clip_id")
            lab = group_labels(g, parts[0])
            for p in parts[1:]:
                lab = lab + " | " + group_labels(g, p)
            for grp in sorted(lab.unique()):
                sel = [c for c in lab.index[lab == grp] if c in real]
                v, lo, hi = _set_metric(real, fake, sel, cfg.set_bootstrap, cfg.confidence, rng, evaluator.device)
                set_rows.append({"column": col, "group": grp, "metric": metric, "clips": len(sel), "value": v,
                                 "ci_low": lo, "ci_high": hi})
    return MethodResult(name=name or Path(generated).name, per_sample=per_sample, per_clip=per_clip, best_of_k=best,
                        overall=pd.DataFrame(overall), groups=gtab, gaps=gaps, set_groups=pd.DataFrame(set_rows),
                        notes=list(evaluator.notes), errors=errors, unmatched=unmatched, missing=missing,
                        stochasticity=stoch, examples=examples, seconds=time.perf_counter() - t0,
                        video_seconds=video_seconds)


def generate_for_eval(store, clips: pd.DataFrame, model: str | Path, out_dir: str | Path,
                      motion_model: str | Path | None = None, samples: int = 1, device: str = "auto",
                      steps: int = 25, seconds: float | None = None) -> Path:
    """Generate the videos to judge with the bundled video model (models/video_cli.py): per
    clip, its first frame as the reference image (with the clip's stored SMPL-X fit as the
    reference's fit) and its audio; the motion is the clip's own stored fit (a reconstruction
    run, VLOGGER's Table 3) or, with `motion_model`, sampled from speech (seed k for sample k,
    Table 4). seconds: only the first seconds of each clip (None: all of it). Writes
    out_dir/<clip_id>_<k>.mp4 and returns out_dir."""
    import tempfile

    from mentor.media import read_frames
    from models.video_cli import generate_video

    if samples < 1:
        raise ValueError(f"samples={samples}: must be >= 1")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds={seconds}: must be > 0 (or None for whole clips)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mentor-eval-gen-") as tmp:
        t = Path(tmp)
        for rec in store.records(list(clips["clip_id"]), media_dir=t):
            smplx = {k: np.asarray(v.data) for k, v in rec.arrays.items() if k.startswith("smplx.")}
            if "smplx.camera" not in smplx:
                log.warning("clip %s: no stored SMPL-X fit; not generated", rec.id)
                continue
            from PIL import Image

            ref_png = t / f"{rec.id}.png"
            Image.fromarray(read_frames(rec.files["video"], fps=rec.fps)[0]).save(ref_png)
            fit = t / f"{rec.id}.fit.npz"
            np.savez(fit, **{k: v[:1] for k, v in smplx.items()})
            motion = None
            if motion_model is None:
                motion = t / f"{rec.id}.motion.npz"
                np.savez(motion, fps=np.asarray(rec.fps), **smplx)
            for k in range(samples):
                dst = out / f"{rec.id}_{k}.mp4"
                if dst.exists():
                    continue
                generate_video(str(ref_png), rec.files["audio"], str(model), str(dst), motion=motion and str(motion),
                               motion_model=motion_model and str(motion_model), device=device, steps=steps, seed=k,
                               fps=rec.fps, reference_fit=str(fit), seconds=seconds)
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _records(df: pd.DataFrame) -> list[dict]:
    return _jsonable(df.to_dict(orient="records")) if df is not None and len(df) else []


def evaluate(store_path: str | Path, generated: str | Path | None, out_dir: str | Path, split: str | None = "test",
             manifest: str | Path | None = None, compare: str | Path | None = None, cfg: EvalConfig | None = None,
             where: str | None = None, model: str | Path | None = None, motion_model: str | Path | None = None,
             samples: int = 1, gen_steps: int = 25, gen_seconds: float | None = None) -> dict[str, Any]:
    """Evaluate `generated` (and `compare`, the same way) against the store's clips of
    `split` (None: every clip); writes eval.json, tables/*.csv and index.html to out_dir.
    With `model` (a `mentor train-video` run), the videos are first generated into
    `generated` (default out_dir/generated; see `generate_for_eval`; gen_seconds: only the
    first seconds of each clip). Returns the JSON summary."""
    import tempfile

    from mentor.store import Store

    cfg = cfg or EvalConfig()
    store = Store(store_path)
    query = " and ".join(q for q in ((f"split == '{split}'" if split else None), where) if q)
    clips = store.clips(query or None)
    if not len(clips):
        raise ValueError(f"no clips in {store_path} match {query!r}: check --split (the store's splits are "
                         f"{sorted(store.clips()['split'].dropna().unique().tolist())})")
    light = []
    if cfg.max_clips is not None and len(clips) > cfg.max_clips:
        light.append(f"light evaluation: {cfg.max_clips} of the {len(clips)} clips judged (max_clips), spread over "
                     "the groups")
        clips = pick_clips(clips, cfg.max_clips, cfg.group_columns)
    if gen_seconds is not None and model is not None:
        light.append(f"light evaluation: the first {gen_seconds:g} s of each clip generated and judged (gen_seconds)"
                     + ("; the real clips refitted on the same frames for the 3D metrics"
                        if cfg.fit_3d and cfg.face_metrics else ""))
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    if model is not None:
        generated = generate_for_eval(store, clips, model, generated or out / "generated", motion_model, samples,
                                      cfg.device, gen_steps, gen_seconds)
    elif generated is None:
        raise ValueError("give --generated DIR (videos to judge) or --model RUN (generate them first)")
    man = read_manifest(manifest) if manifest else None
    evaluator = Evaluator(cfg)
    evaluator.notes += light
    results = []
    with tempfile.TemporaryDirectory(prefix="mentor-eval-") as tmp:
        for folder in [generated] + ([compare] if compare else []):
            results.append(evaluate_method(store, clips, folder, cfg, evaluator, man, media_dir=Path(tmp)))
    if len(results) == 2 and results[0].name == results[1].name:
        results[1].name += " (compare)"
    summary = {"store": str(store_path), "split": split, "where": where, "clips": int(len(clips)),
               "generated_by": ({"model": str(model), "motion_model": motion_model and str(motion_model),
                                 "samples": samples, "gen_steps": gen_steps, "gen_seconds": gen_seconds}
                                if model is not None else None),
               "config": {k: (v if k != "fid_extractor" else (type(v).__name__ if v is not None else None))
                          for k, v in asdict(cfg).items()},
               "metrics": {m: {"family": f, "better": d, "label": lab}
                           for m, (f, d, lab) in {**METRICS, **SET_METRICS}.items()},
               "methods": []}
    for r in results:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", r.name)
        for tname, df in (("per_sample", r.per_sample), ("per_clip", r.per_clip), ("best_of_k", r.best_of_k),
                          ("overall", r.overall), ("groups", r.groups), ("gaps", r.gaps), ("set_groups", r.set_groups)):
            df.to_csv(out / "tables" / f"{slug}.{tname}.csv", index=False)
        summary["methods"].append({
            "name": r.name, "generated": str(generated if r is results[0] else compare), "seconds": r.seconds,
            "video_seconds": r.video_seconds, "notes": r.notes, "errors": r.errors, "unmatched_files": r.unmatched,
            "clips_without_generated_video": r.missing, "overall": _records(r.overall), "groups": _records(r.groups),
            "gaps": _records(r.gaps), "set_groups": _records(r.set_groups), "per_clip": _records(r.per_clip),
            "best_of_k": _records(r.best_of_k), "per_sample": _records(r.per_sample),
            "stochasticity_mean": {k: float(v.mean()) for k, v in r.stochasticity.items()}})
    (out / "eval.json").write_text(json.dumps(_jsonable(summary), indent=1))
    from models.eval_report import write_report

    write_report(summary, results, clips, out / "index.html", cfg)
    return summary
