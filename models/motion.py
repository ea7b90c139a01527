"""VLOGGER's motion diffusion model (arXiv 2403.08764, section 3.1): speech -> SMPL-X motion.

A transformer over time (4 layers by default) with a causal mask. Each frame is one
token: the noisy motion x_t, the frames already known (a prefix carried over from the
previous window when a long clip is made window by window, and its mask), an MLP
embedding of the frame's audio features, sinusoidal positional encodings of the frame
index, the diffusion step (sinusoid + MLP) and the reference frame's pose. The network
predicts x0, the clean motion, not the noise (diffusers `prediction_type="sample"`).

The motion of a frame (`MotionLayout`, normalised per dimension with statistics of the
training split held as buffers and also written beside the weights as normalization.json):

    expression          E   absolute (as VLOGGER: per-frame expression)
    jaw_pose            3   rotation residual R_ref^T R_t (axis-angle)
    global_orient       3   rotation residual
    body_pose          63   rotation residual per joint (head and neck are joints 12 and 15)
    leye_pose, reye_pose 6  rotation residuals
    left/right_hand_pose 2H hand PCA minus the reference's
    transl              3   minus the reference's
Body shape (betas) is the reference's. `decode_motion` turns a motion back into SMPL-X
parameters around a reference.

Classifier-free guidance on audio: a learned null embedding replaces the audio embedding
where `audio_keep` is False (audio dropout in training); `guided_x0` mixes the two
predictions at sampling. Noise schedules are diffusers schedulers (`make_scheduler`):
DDPM for training, DDIM or DPM-Solver++ for sampling, all from one scheduler config.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

ROT_FIELDS = ("jaw_pose", "global_orient", "body_pose", "leye_pose", "reye_pose")
FACE_FIELDS = ("expression", "jaw_pose", "leye_pose", "reye_pose")  # temporal loss weighted apart
SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmsolver++": DPMSolverMultistepScheduler}
NORMALIZATION_FILE = "normalization.json"


# ------------------------------------------------------------------------ rotations

def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices (Rodrigues)."""
    angle = aa.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    axis = aa / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(K)
    small = (aa.norm(dim=-1) < 1e-8)[..., None, None]
    R = eye + s * K + (1 - c) * (K @ K)
    return torch.where(small, eye + K * angle[..., None], R)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle, angle in [0, pi] (via quaternions)."""
    m = R
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # four candidate quaternions (w, x, y, z); take the numerically best per element
    q = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], -2)  # (..., 4, 4)
    diag = torch.stack([1 + tr, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = diag.argmax(-1)
    quat = torch.gather(q, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quat = quat / quat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)  # w >= 0: angle in [0, pi]
    w, xyz = quat[..., 0], quat[..., 1:]
    sin_half = xyz.norm(dim=-1)
    angle = 2 * torch.atan2(sin_half, w)
    scale = torch.where(sin_half > 1e-8, angle / sin_half.clamp_min(1e-12), 2.0 / w.clamp_min(1e-12))
    return xyz * scale[..., None]


def _rot6d(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 6): the first two columns of the matrix (continuous)."""
    return axis_angle_to_matrix(aa)[..., :, :2].reshape(*aa.shape[:-1], 6)


# ---------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class MotionLayout:
    """Where each SMPL-X field sits in a motion vector (see the module docstring)."""

    num_expression: int = 10
    num_hand_pca: int = 12

    @property
    def fields(self) -> tuple[tuple[str, int], ...]:
        return (("expression", self.num_expression), ("jaw_pose", 3), ("global_orient", 3), ("body_pose", 63),
                ("leye_pose", 3), ("reye_pose", 3), ("left_hand_pose", self.num_hand_pca),
                ("right_hand_pose", self.num_hand_pca), ("transl", 3))

    @property
    def dim(self) -> int:
        return sum(n for _, n in self.fields)

    def slices(self) -> dict[str, slice]:
        out, i = {}, 0
        for name, n in self.fields:
            out[name] = slice(i, i + n)
            i += n
        return out

    @property
    def reference_dim(self) -> int:
        """Size of `reference_features`: rotations as 6D, the rest as they are."""
        return sum(n * 2 if name in ROT_FIELDS else n for name, n in self.fields)

    def face_mask(self) -> torch.Tensor:
        """(D,) bool: the face dimensions (expression, jaw, eyes); the rest is body and hands."""
        m = torch.zeros(self.dim, dtype=torch.bool)
        for name, sl in self.slices().items():
            if name in FACE_FIELDS:
                m[sl] = True
        return m

    def check(self, params: dict[str, torch.Tensor], what: str) -> None:
        for name, n in self.fields:
            if name not in params:
                raise ValueError(f"{what}: missing SMPL-X field {name!r} (need {[f for f, _ in self.fields]})")
            if params[name].shape[-1] != n:
                raise ValueError(f"{what}: {name} has {params[name].shape[-1]} values per frame, the model expects "
                                 f"{n} (num_expression={self.num_expression}, num_hand_pca={self.num_hand_pca}); "
                                 "train a model with the store's sizes")


def encode_motion(layout: MotionLayout, params: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> torch.Tensor:
    """SMPL-X fields (..., T, n) around a reference (..., n) -> motion (..., T, D), unnormalised."""
    layout.check(params, "motion")
    layout.check(ref, "reference")
    parts = []
    for name, n in layout.fields:
        x, r = params[name], ref[name].unsqueeze(-2)
        if name == "expression":
            parts.append(x)
        elif name in ROT_FIELDS:
            xr = axis_angle_to_matrix(x.reshape(*x.shape[:-1], n // 3, 3))
            rr = axis_angle_to_matrix(r.reshape(*r.shape[:-1], n // 3, 3))
            res = matrix_to_axis_angle(rr.transpose(-1, -2) @ xr)
            parts.append(res.reshape(*x.shape[:-1], n))
        else:
            parts.append(x - r)
    return torch.cat(parts, -1)


def decode_motion(layout: MotionLayout, motion: torch.Tensor, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Motion (..., T, D) around a reference (..., n) -> SMPL-X fields (..., T, n), betas from the reference."""
    out = {}
    for name, sl in layout.slices().items():
        x, r = motion[..., sl], ref[name].unsqueeze(-2)
        n = sl.stop - sl.start
        if name == "expression":
            out[name] = x
        elif name in ROT_FIELDS:
            xr = axis_angle_to_matrix(x.reshape(*x.shape[:-1], n // 3, 3))
            rr = axis_angle_to_matrix(r.reshape(*r.shape[:-1], n // 3, 3)).expand_as(xr)
            out[name] = matrix_to_axis_angle(rr @ xr).reshape(*x.shape[:-1], n)
        else:
            out[name] = x + r
    if "betas" in ref:
        out["betas"] = ref["betas"].unsqueeze(-2).expand(*motion.shape[:-1], ref["betas"].shape[-1])
    return out


def reference_features(layout: MotionLayout, ref: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference frame's pose (..., n) -> (..., R): rotations as 6D, the rest as is."""
    layout.check(ref, "reference")
    parts = []
    for name, n in layout.fields:
        x = ref[name]
        if name in ROT_FIELDS:
            parts.append(_rot6d(x.reshape(*x.shape[:-1], n // 3, 3)).reshape(*x.shape[:-1], n * 2))
        else:
            parts.append(x)
    return torch.cat(parts, -1)


# ------------------------------------------------------------------------------ model

def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(...,) positions -> (..., dim) sin/cos encodings (Vaswani et al.)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    ang = positions.float()[..., None] * freq
    enc = torch.cat([torch.sin(ang), torch.cos(ang)], -1)
    return nn.functional.pad(enc, (0, dim - 2 * half))


class MotionDiffusionModel(ModelMixin, ConfigMixin):
    """x0-predicting transformer over time; see the module docstring.

    forward(sample (B,T,D) noisy normalised motion, timestep (B,) or scalar, audio (B,T,A)
    normalised audio features, reference (B,R) normalised reference features,
    known (B,T,D) and known_mask (B,T) frames given in advance (zeros/False when none),
    audio_keep (B,) bool, False = unconditional) -> (B,T,D) predicted clean motion.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        num_expression: int = 10,
        num_hand_pca: int = 12,
        n_mels: int = 80,
        audio_window_frames: int = 2,
        whisper_dim: int = 0,
        d_model: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        ff_mult: int = 4,
        dropout: float = 0.1,
        num_frames: int = 50,
        context_frames: int = 10,
        fps: float = 25.0,
        audio_dropout: float = 0.1,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        sample_scheduler: str = "dpmsolver++",
        sample_steps: int = 10,  # benchmarks/motion_speech: 8 and 15 DPM-Solver++ steps scored the same
        guidance_scale: float = 1.0,  # same benchmark: LME 3.69 mm at 1 against 4.38 at 2 (jaw r 0.65 / 0.71)
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if not 0 <= context_frames < num_frames:
            raise ValueError(f"context_frames={context_frames} must be in [0, num_frames={num_frames})")
        if sample_scheduler not in SCHEDULERS:
            raise ValueError(f"sample_scheduler={sample_scheduler!r}: use one of {sorted(SCHEDULERS)}")
        self.layout = MotionLayout(num_expression, num_hand_pca)
        D, R = self.layout.dim, self.layout.reference_dim
        audio_dim = self.audio_dim
        self.motion_in = nn.Linear(2 * D + 1, d_model)
        self.audio_mlp = nn.Sequential(nn.Linear(audio_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.null_audio = nn.Parameter(torch.zeros(d_model))
        self.ref_in = nn.Linear(R, d_model)
        self.time_proj = Timesteps(d_model, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_mlp = TimestepEmbedding(d_model, d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, d_model * ff_mult, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm_out = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, D)
        # normalisation statistics of the training split (set_statistics), saved with the weights
        self.register_buffer("motion_mean", torch.zeros(D))
        self.register_buffer("motion_std", torch.ones(D))
        self.register_buffer("audio_mean", torch.zeros(audio_dim))
        self.register_buffer("audio_std", torch.ones(audio_dim))
        self.register_buffer("ref_mean", torch.zeros(R))
        self.register_buffer("ref_std", torch.ones(R))

    @property
    def audio_dim(self) -> int:
        """Audio features per frame: the flattened log-mel window, then Whisper's (when used)."""
        c = self.config
        return (2 * c.audio_window_frames + 1) * c.n_mels + c.whisper_dim

    @property
    def audio_arrays(self) -> tuple[str, ...]:
        """The store arrays this model reads: audio.logmel, and audio.whisper when whisper_dim > 0."""
        return ("audio.logmel", "audio.whisper") if self.config.whisper_dim else ("audio.logmel",)

    # -- normalisation -------------------------------------------------------------
    def set_statistics(self, stats: "MotionStatistics") -> None:
        for name in ("motion", "audio", "ref"):
            getattr(self, f"{name}_mean").copy_(torch.as_tensor(getattr(stats, f"{name}_mean")))
            getattr(self, f"{name}_std").copy_(torch.as_tensor(getattr(stats, f"{name}_std")))

    def normalize_motion(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.motion_mean) / self.motion_std

    def denormalize_motion(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.motion_std + self.motion_mean

    def normalize_audio(self, a: torch.Tensor) -> torch.Tensor:
        """(B,T,A) raw features (audio_features_from_arrays) -> normalised; NaN (missing) -> 0."""
        return torch.nan_to_num((a - self.audio_mean) / self.audio_std)

    def normalize_reference(self, r: torch.Tensor) -> torch.Tensor:
        return (r - self.ref_mean) / self.ref_std

    # -- network ---------------------------------------------------------------------
    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, audio: torch.Tensor,
                reference: torch.Tensor, known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
                audio_keep: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = sample.shape
        if D != self.layout.dim:
            raise ValueError(f"sample has {D} motion dims per frame; this model has {self.layout.dim}")
        if audio.shape[:2] != (B, T) or audio.shape[-1] != self.audio_dim:
            raise ValueError(f"audio has shape {tuple(audio.shape)}; expected ({B}, {T}, {self.audio_dim}) "
                             "normalised features (normalize_audio)")
        if known is None:
            known = torch.zeros_like(sample)
        if known_mask is None:
            known_mask = torch.zeros(B, T, dtype=torch.bool, device=sample.device)
        m = known_mask.to(sample.dtype)[..., None]
        h = self.motion_in(torch.cat([sample, known * m, m], -1))
        a = self.audio_mlp(audio)
        if audio_keep is not None:
            a = torch.where(audio_keep.view(B, 1, 1), a, self.null_audio.to(a.dtype).expand_as(a))
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(B)
        temb = self.time_mlp(self.time_proj(t).to(sample.dtype))
        pos = sinusoid(torch.arange(T, device=sample.device), self.config.d_model).to(sample.dtype)
        h = h + a + pos[None] + temb[:, None] + self.ref_in(reference)[:, None]
        causal = torch.triu(torch.full((T, T), float("-inf"), device=sample.device), diagonal=1)
        h = self.transformer(h, mask=causal, is_causal=True)
        return self.out(self.norm_out(h))

    def guided_x0(self, sample, timestep, audio, reference, known=None, known_mask=None,
                  guidance_scale: float = 1.0) -> torch.Tensor:
        """x0 with classifier-free guidance on audio: u + g (c - u); g = 1 is the plain conditional."""
        B = sample.shape[0]
        if guidance_scale == 1.0:
            return self(sample, timestep, audio, reference, known, known_mask)
        keep = torch.cat([torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)]).to(sample.device)
        dup = lambda x: None if x is None else torch.cat([x, x])  # noqa: E731
        out = self(dup(sample), timestep, dup(audio), dup(reference), dup(known), dup(known_mask), keep)
        cond, uncond = out[:B], out[B:]
        return uncond + guidance_scale * (cond - uncond)


def audio_features_from_arrays(arrays: dict[str, torch.Tensor], names: tuple[str, ...],
                               expect_dim: int | None = None) -> torch.Tensor:
    """The store's per-frame audio arrays -> (..., T, A): audio.logmel (..., T, 2w+1, n_mels)
    flattened, then audio.whisper (..., T, d) when named."""
    parts = []
    for name in names:
        if name not in arrays:
            raise ValueError(f"no array {name!r} among {sorted(arrays)}: the model was trained with {list(names)}; "
                             "run `mentor annotate` with the audio features (and the same Whisper checkpoint)")
        a = torch.as_tensor(arrays[name]).float()
        parts.append(a.flatten(-2) if name == "audio.logmel" else a)
    out = torch.cat(parts, -1)
    if expect_dim is not None and out.shape[-1] != expect_dim:
        raise ValueError(f"audio features have {out.shape[-1]} values per frame, the model expects {expect_dim} "
                         "(n_mels / window_frames / Whisper size differ from the training store's)")
    return out


# ------------------------------------------------------------------------- schedulers

def make_scheduler(kind: str, num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2"):
    """A diffusers scheduler predicting x0 ("sample"): ddpm (training, and sampling with every
    step), ddim, or dpmsolver++ (fast sampling). All share one beta schedule."""
    if kind not in SCHEDULERS:
        raise ValueError(f"scheduler {kind!r}: use one of {sorted(SCHEDULERS)}")
    base = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         prediction_type="sample", clip_sample=False)
    if kind == "ddpm":
        return base
    return SCHEDULERS[kind].from_config(base.config, prediction_type="sample")


# ------------------------------------------------------------------------ statistics

@dataclass
class MotionStatistics:
    """Per-dimension mean and std of motion, audio features and reference features."""

    motion_mean: np.ndarray
    motion_std: np.ndarray
    audio_mean: np.ndarray
    audio_std: np.ndarray
    ref_mean: np.ndarray
    ref_std: np.ndarray
    windows: int = 0
    where: str | None = None

    @staticmethod
    def from_samples(motion: np.ndarray, audio: np.ndarray, ref: np.ndarray, where: str | None = None,
                     min_std: float = 1e-3) -> "MotionStatistics":
        """motion (N,D), audio (N,A), ref (M,R) rows (NaN rows dropped) -> statistics; a
        dimension that never moves (e.g. the legs of torso-up clips) gets std 1."""
        def ms(x):
            x = x[np.isfinite(x).all(1)]
            if not len(x):
                raise ValueError("no finite rows to compute normalisation statistics from")
            sd = x.std(0)
            return x.mean(0).astype(np.float32), np.where(sd < min_std, 1.0, sd).astype(np.float32)
        (mm, msd), (am, asd), (rm, rsd) = ms(motion), ms(audio), ms(ref)
        return MotionStatistics(mm, msd, am, asd, rm, rsd, windows=len(ref), where=where)

    def save(self, folder: str | os.PathLike[str], layout: MotionLayout) -> Path:
        """normalization.json beside the model: per-field means and stds, readable."""
        path = Path(folder) / NORMALIZATION_FILE
        per_field = {name: {"mean": self.motion_mean[sl].round(5).tolist(), "std": self.motion_std[sl].round(5).tolist()}
                     for name, sl in layout.slices().items()}
        data = {"computed_on": self.where, "windows": self.windows, "motion": per_field,
                "audio_mean": self.audio_mean.tolist(), "audio_std": self.audio_std.tolist(),
                "ref_mean": self.ref_mean.tolist(), "ref_std": self.ref_std.tolist()}
        path.write_text(json.dumps(data))
        return path

    @staticmethod
    def load(folder: str | os.PathLike[str]) -> "MotionStatistics":
        data = json.loads((Path(folder) / NORMALIZATION_FILE).read_text())
        motion = data["motion"]
        cat = lambda key: np.concatenate([np.asarray(v[key], np.float32) for v in motion.values()])  # noqa: E731
        return MotionStatistics(cat("mean"), cat("std"), np.asarray(data["audio_mean"], np.float32),
                                np.asarray(data["audio_std"], np.float32), np.asarray(data["ref_mean"], np.float32),
                                np.asarray(data["ref_std"], np.float32), data.get("windows", 0), data.get("computed_on"))


def tiny_config(**overrides) -> dict:
    """A 2-layer, 64-wide model for tests and CPU demos."""
    cfg = dict(d_model=64, num_layers=2, num_heads=2, ff_mult=2, dropout=0.0, num_frames=32, context_frames=8,
               sample_steps=10)
    cfg.update(overrides)
    return cfg
