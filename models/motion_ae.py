"""A small motion autoencoder, trained on the shards, whose features give the Frechet motion
distance (FMD) between generated and real SMPL-X motion (as FGD does with EMAGE's motion
VAE, and FID with Inception).

    mentor train-motion-ae out/store -o runs/motion_ae --steps 3000
    ae = load_motion_ae("runs/motion_ae")
    fmd = frechet_motion_distance(ae, real_clips, generated_clips)   # lists of {field: (T, n)}

Input. A window of `num_frames` frames of SMPL-X parameters, written as the motion model
writes motion (models.motion.encode_motion): the expression as it is, every rotation and
the translation relative to the window's first frame (so a feature does not depend on
where the person stands or faces), normalised per dimension with the statistics of the
training split (buffers saved with the weights).

Network. A 1-D convolutional encoder over time, fed the motion and its frame-to-frame
change (each normalised; the change shows jitter that a time average would smooth away),
that halves the frame rate `num_down`
times down to `feature_dim` channels, and a mirrored decoder; trained to reconstruct its
input (mean squared error over valid frames) with models.training.train, so it has
checkpoints, resume, loss.csv and TensorBoard like every trainer here. A window's feature
is the encoder's output averaged over time: (feature_dim,).

FMD. Clips are cut into windows (stride num_frames // 2), each window gives a feature, and
the Frechet distance between the Gaussians fitted to the two feature sets is
models.metrics.motion.frechet_distance. It is 0 for a set against itself, grows with
noise added to the motion, and is large for frozen motion (tests/models/test_motion_ae.py).
Compare FMDs only between runs that used the same autoencoder folder.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from pydantic import Field
from torch import nn

from models.motion import MotionLayout, encode_motion
from models.motion_train import WindowTrainConfig, preset_settings, store_layout, window_loader, windows_per_clip

log = logging.getLogger(__name__)

MODEL_SUBDIR = "model"
MOTION_FIELDS = ("expression", "global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
                 "left_hand_pose", "right_hand_pose", "transl")
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(num_frames=16, hidden=32, feature_dim=16, num_down=2),
    "base": {},
}


class MotionAutoencoder(ModelMixin, ConfigMixin):
    """Conv1d autoencoder of motion windows (see the module docstring).

    forward(x (B,T,D) normalised motion) -> (B,T,D) reconstruction; encode(x) -> (B,T/2^d,F);
    features(x) -> (B,F), the encoding averaged over time.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, num_expression: int = 10, num_hand_pca: int = 12, num_frames: int = 32, hidden: int = 128,
                 feature_dim: int = 64, num_down: int = 2, fps: float = 25.0):
        super().__init__()
        if num_down < 0 or num_frames % (2 ** num_down):
            raise ValueError(f"num_frames={num_frames} must be divisible by 2**num_down={2 ** num_down}")
        if min(hidden, feature_dim, num_frames) < 1:
            raise ValueError(f"hidden={hidden}, feature_dim={feature_dim}, num_frames={num_frames}: all must be >= 1")
        self.layout = MotionLayout(num_expression, num_hand_pca)
        D = self.layout.dim
        act = nn.GELU
        enc: list[nn.Module] = [nn.Conv1d(2 * D, hidden, 3, padding=1), act()]
        for _ in range(num_down):
            enc += [nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), act(), nn.Conv1d(hidden, hidden, 3, padding=1),
                    act()]
        enc.append(nn.Conv1d(hidden, feature_dim, 1))
        dec: list[nn.Module] = [nn.Conv1d(feature_dim, hidden, 1), act()]
        for _ in range(num_down):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(hidden, hidden, 3, padding=1), act()]
        dec.append(nn.Conv1d(hidden, D, 3, padding=1))
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        self.register_buffer("motion_mean", torch.zeros(D))
        self.register_buffer("motion_std", torch.ones(D))
        self.register_buffer("velocity_std", torch.ones(D))  # of the normalised motion's frame-to-frame change

    def set_statistics(self, mean: np.ndarray, std: np.ndarray, velocity_std: np.ndarray) -> None:
        self.motion_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.motion_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        self.velocity_std.copy_(torch.as_tensor(velocity_std, dtype=torch.float32))

    def normalize(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 3 or x.shape[1] != c.num_frames or x.shape[2] != self.layout.dim:
            raise ValueError(f"motion windows have shape {tuple(x.shape)}; expected (B, {c.num_frames}, "
                             f"{self.layout.dim}) (motion_windows cuts clips into them)")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The motion and its frame-to-frame change (0 at the first frame), both normalised, in."""
        self._check(x)
        v = torch.nn.functional.pad(x[:, 1:] - x[:, :-1], (0, 0, 1, 0)) / self.velocity_std
        return self.encoder(torch.cat([x, v], -1).transpose(1, 2)).transpose(1, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)


# --------------------------------------------------------------------------- windows

def window_motion(layout: MotionLayout, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """SMPL-X fields (..., T, n) -> motion (..., T, D) relative to the window's first frame."""
    p = {k: torch.as_tensor(params[k]).float() for k in MOTION_FIELDS}
    return encode_motion(layout, p, {k: v[..., 0, :] for k, v in p.items()})


def motion_windows(layout: MotionLayout, params: Mapping[str, Any], num_frames: int,
                   stride: int | None = None) -> torch.Tensor:
    """One clip's SMPL-X fields {field: (T, n)} -> (N, num_frames, D) unnormalised windows
    (starts 0, stride, ...; a clip shorter than a window gives none). Frames with NaN are dropped
    with their windows."""
    stride = stride or max(1, num_frames // 2)
    missing = [f for f in MOTION_FIELDS if f not in params]
    if missing:
        raise ValueError(f"motion has no {missing}: pass SMPL-X fields {list(MOTION_FIELDS)} as (T, n) arrays")
    T = len(params["transl"])
    starts = list(range(0, T - num_frames + 1, stride))
    if not starts:
        return torch.zeros(0, num_frames, layout.dim)
    idx = torch.as_tensor(starts)[:, None] + torch.arange(num_frames)[None]
    win = {f: torch.as_tensor(np.asarray(params[f], np.float32))[idx] for f in MOTION_FIELDS}
    x = window_motion(layout, win)
    return x[torch.isfinite(x).all(-1).all(-1)]


@torch.inference_mode()
def motion_features(model: MotionAutoencoder, clips: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                    stride: int | None = None, batch_size: int = 512) -> np.ndarray:
    """Features (N, feature_dim) of every window of the clips ({field: (T, n)} each)."""
    if isinstance(clips, Mapping):
        clips = [clips]
    wins = [motion_windows(model.layout, c, model.config.num_frames, stride) for c in clips]
    x = torch.cat(wins) if wins else torch.zeros(0, model.config.num_frames, model.layout.dim)
    if not len(x):
        raise ValueError(f"no window of {model.config.num_frames} frames in the motion given (clips too short?)")
    was = model.training
    model.eval()
    try:
        dev = model.device
        out = [model.features(model.normalize(x[i:i + batch_size].to(dev))).float().cpu()
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out).numpy().astype(np.float64)


def frechet_motion_distance(model: MotionAutoencoder, real: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                            generated: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                            stride: int | None = None) -> float:
    """FMD between two sets of motion clips (each clip {field: (T, n)} SMPL-X arrays, betas
    not needed): the Frechet distance between Gaussians fitted to their window features.
    Needs at least 2 windows per side; more windows than feature_dim for a stable covariance."""
    from models.metrics.motion import frechet_distance_features

    a, b = motion_features(model, real, stride), motion_features(model, generated, stride)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FMD needs at least 2 windows per side; got {len(a)} real and {len(b)} generated")
    return frechet_distance_features(a, b)


def load_motion_ae(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> MotionAutoencoder:
    """from_pretrained of a `train-motion-ae` run folder's model/ (or a model folder), in eval mode."""
    p = Path(path)
    if (p / MODEL_SUBDIR / "config.json").is_file():
        p = p / MODEL_SUBDIR
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no motion autoencoder here (expected config.json or "
                                f"{MODEL_SUBDIR}/config.json; train one with `mentor train-motion-ae`)")
    return MotionAutoencoder.from_pretrained(str(p), low_cpu_mem_usage=False).to(device).eval()


# ---------------------------------------------------------------------------- training

class MotionAETrainConfig(WindowTrainConfig):
    """What `train_loop` reads."""

    steps: int = Field(3000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    log_every: int = Field(50, ge=1)
    ckpt_every: int = Field(500, ge=1)


def model_preset(name_or_file: str | None) -> dict[str, Any]:
    """"tiny" | "base" | a JSON file of MotionAutoencoder kwargs."""
    return preset_settings(name_or_file, PRESETS, "autoencoder settings")


def _statistics(store, where: str | None, layout: MotionLayout, num_frames: int, max_clips: int,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the windows' motion, and std of its normalised frame-to-frame change."""
    rng = np.random.default_rng(seed)
    ids = list(store.clips(where)["clip_id"])
    if len(ids) > max_clips:
        ids = list(rng.choice(ids, max_clips, replace=False))
    rows = []
    for rec in store.records(ids):
        try:
            params = {f: rec.arrays[f"smplx.{f}"].data for f in MOTION_FIELDS}
        except KeyError as e:
            log.warning("motion AE statistics: clip %s skipped (no %s)", rec.id, e)
            continue
        w = motion_windows(layout, params, num_frames)
        if len(w):
            rows.append(w.numpy())
    if not rows:
        raise ValueError(f"{store.root}: no clip of {where!r} has SMPL-X arrays and {num_frames} frames")
    w = np.concatenate(rows)
    x = w.reshape(-1, layout.dim)
    sd = x.std(0)
    sd = np.where(sd < 1e-3, 1.0, sd)
    v = (np.diff(w, axis=1) / sd).reshape(-1, layout.dim)
    vsd = v.std(0)
    return (x.mean(0).astype(np.float32), sd.astype(np.float32),
            np.where(vsd < 1e-3, 1.0, vsd).astype(np.float32))


class _ReconstructionLoss:
    def __init__(self, layout: MotionLayout):
        self.layout = layout

    def __call__(self, net, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from models.training import unwrap

        model = unwrap(net)
        params = {f: batch["arrays"][f"smplx.{f}"].float() for f in MOTION_FIELDS}
        x = model.normalize(window_motion(self.layout, params))
        ok = batch["valid"].bool() & torch.isfinite(x).all(-1)
        x = torch.nan_to_num(x) * ok[..., None]
        w = ok.to(x.dtype)[..., None]
        err = (net(x).float() - x) ** 2 * w
        loss = err.sum() / (w.sum() * x.shape[-1]).clamp_min(1)
        return loss, {}


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """Train the autoencoder (pipelines.train.launch runs it); returns a summary dict."""
    from mentor.store import Store
    from mentor.store.windows import WindowDataset
    from models.training import start_run, train, unwrap

    cfg = MotionAETrainConfig(**config)
    run = start_run(cfg.run_dir, cfg.device, seed=cfg.seed)
    store = Store(cfg.store)
    saved = run.dir / "model_config.json"
    if saved.exists():
        kwargs = json.loads(saved.read_text())
    else:
        layout, info = store_layout(store, cfg.where)
        kwargs = {"num_expression": layout.num_expression, "num_hand_pca": layout.num_hand_pca, "fps": info["fps"],
                  **cfg.model}
    model = MotionAutoencoder(**kwargs)
    c = model.config

    def statistics(path: Path) -> None:
        mean, std, vstd = _statistics(store, cfg.where, model.layout, c.num_frames, cfg.stats_clips, cfg.seed)
        np.savez(path, mean=mean, std=std, velocity_std=vstd)

    run.prepare({"model_config.json": json.dumps(dict(c), default=list), "config.json": cfg.model_dump_json(indent=1)},
                make={"normalization.npz": statistics})
    with np.load(run.dir / "normalization.npz") as z:
        model.set_statistics(z["mean"], z["std"], z["velocity_std"])
    model.to(run.device)
    per_rank = max(1, cfg.batch_size // run.dist.world_size)
    wpc = cfg.windows_per_clip or windows_per_clip(store, cfg.where, c.num_frames, per_rank, run.dist.world_size)
    ds = WindowDataset(store, where=cfg.where, frames=c.num_frames, mode="random", seed=cfg.seed,
                       arrays=tuple(f"smplx.{f}" for f in MOTION_FIELDS), video=False, audio=False,
                       windows_per_clip=wpc)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = train(model=model, optimizer=opt, loss_fn=_ReconstructionLoss(model.layout),
                   batches=window_loader(ds, per_rank, cfg.preload_arrays_gb, cfg.loader_workers), steps=cfg.steps,
                   run_dir=run.dir, device=run.device, amp=cfg.amp, log_every=cfg.log_every,
                   ckpt_every=cfg.ckpt_every, batch_size=per_rank, progress=cfg.progress, seed=cfg.seed)
    return run.finish(result, lambda folder: unwrap(model).to("cpu").save_pretrained(folder), subdir=MODEL_SUBDIR)
