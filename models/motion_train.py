"""Train the motion diffusion model (models/motion.py) on a store's training windows.

    from pipelines.train import launch
    from models.motion_train import train_loop
    launch(train_loop, {"store": "out/store", "run_dir": "runs/motion", "steps": 2000}, num_workers=1)

or `mentor train-motion STORE -o RUN_DIR`. Windows come from `mentor.store.windows`
(split and filters from the index, a reference frame of the same clip drawn away from the
window). Per step:

    x0      = normalised motion of the window, relative to its reference frame
    x_t     = DDPM noising of x0 at a random step t (diffusers DDPMScheduler)
    known   = with probability `context_prob`, the first 1..context_frames frames are
              given clean (the carried-over frames of window-by-window sampling)
    audio   = replaced by the null embedding with probability audio_dropout (for CFG)
    loss    = |f(x_t) - x0|^2 over valid frames, the dims that move the lips (expression,
              jaw) weighted `lip_weight` against 1 for the rest             (diffusion, x0)
            + w_face |d/dt f - d/dt x0|^2 on expression, jaw, eyes     (temporal)
            + w_body |d/dt f - d/dt x0|^2 on head, body, hands, transl

The run folder (models/training.py) gets checkpoints, loss.csv, tb/, and at the end
`model/` (save_pretrained + normalization.json + training.json), which `from_pretrained`
and `mentor generate-motion` read. Normalisation statistics are computed once, from the
training selection, before the first step, and kept in RUN/normalization.json so that a
resumed run uses the same ones.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from models.motion import (MotionDiffusionModel, MotionLayout, MotionStatistics, audio_features_from_arrays,
                           encode_motion, make_scheduler, reference_features, tiny_config)
from models.training import save_atomic, start_run, train, unwrap

log = logging.getLogger(__name__)

MODEL_SUBDIR = "model"
# "small": 4 layers, 128 wide, 40-frame windows: the size benchmarks/motion_speech.py trains on the CPU
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": tiny_config(),
    "small": dict(d_model=128, num_layers=4, num_heads=4, ff_mult=2, dropout=0.0, num_frames=40, context_frames=8),
    "base": {},
}


class WindowTrainConfig(BaseModel):
    """What every trainer on a store's motion windows reads (this one and models/motion_ae.py);
    a plain dict travels to Ray workers and is checked here."""

    model_config = ConfigDict(extra="forbid")

    store: str
    run_dir: str
    where: str = "split == 'train'"
    model: dict[str, Any] = Field(default_factory=dict)  # the model's kwargs (a preset or a file)
    loader_workers: int = Field(0, ge=0)  # torch DataLoader worker processes per rank (when not preloaded)
    preload_arrays_gb: float = Field(2.0, ge=0)  # read the clips' arrays once when they fit in this; 0: never
    windows_per_clip: int | None = Field(None, ge=1)  # per epoch; None: see windows_per_clip()
    stats_clips: int = Field(500, ge=1)  # clips read for the normalisation statistics
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    progress: bool = True


class MotionTrainConfig(WindowTrainConfig):
    """What `train_loop` reads."""

    steps: int = Field(2000, ge=1)
    batch_size: int = Field(32, ge=1)  # global: split over the workers
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    temporal_face: float = Field(1.0, ge=0)
    lip_weight: float = Field(1.0, gt=0)  # weight of expression and jaw dims in the x0 loss (the rest: 1)
    temporal_body: float = Field(1.0, ge=0)
    context_prob: float = Field(0.5, ge=0, le=1)
    min_reference_gap_s: float = Field(1.0, ge=0)
    log_every: int = Field(10, ge=1)
    ckpt_every: int = Field(200, ge=1)
    keep_checkpoints: int = Field(3, ge=1)
    use_whisper: Literal["auto", "yes", "no"] = "auto"


def model_preset(name_or_file: str | None) -> dict[str, Any]:
    """"tiny" | "small" | "base" | a JSON file of MotionDiffusionModel kwargs."""
    return preset_settings(name_or_file, PRESETS, "model settings")


def preset_settings(name_or_file: str | None, presets: dict[str, dict[str, Any]], what: str) -> dict[str, Any]:
    """A model's kwargs: {} for None, a copy of presets[name], or a JSON file's object (`what`
    names what the file holds in the error)."""
    if not name_or_file:
        return {}
    if name_or_file in presets:
        return dict(presets[name_or_file])
    p = Path(name_or_file)
    if not p.is_file():
        names = ", ".join(repr(n) for n in presets)
        raise ValueError(f"--config {name_or_file!r}: use {names} or a JSON file of {what}")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None


# ----------------------------------------------------------------------------- data

SMPLX_FIELDS = ("betas", "expression", "global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
                "left_hand_pose", "right_hand_pose", "transl")


def _clip_params(arrays: dict[str, Any], frames=slice(None)) -> dict[str, torch.Tensor]:
    return {f: torch.as_tensor(np.asarray(getattr(arrays[f"smplx.{f}"], "data", arrays[f"smplx.{f}"]))[frames],
                               dtype=torch.float32) for f in SMPLX_FIELDS}


def store_layout(store, where: str | None) -> tuple[MotionLayout, dict[str, Any]]:
    """Sizes the model must have, read from the first selected clip: (layout, audio info)."""
    df = store.clips(where)
    if not len(df):
        raise ValueError(f"{store.root}: no clips match {where!r}; check --where and `mentor info`")
    rec = next(store.records(list(df["clip_id"][:1])))
    missing = [f"smplx.{f}" for f in SMPLX_FIELDS if f"smplx.{f}" not in rec.arrays]
    if missing or "audio.logmel" not in rec.arrays:
        raise ValueError(f"{store.root}: clip {rec.id} has no {missing or ['audio.logmel']}: the motion model "
                         "needs SMPL-X fits and audio features (`mentor annotate`)")
    logmel = rec.arrays["audio.logmel"].data
    info = {"n_mels": int(logmel.shape[-1]), "audio_window_frames": int((logmel.shape[-2] - 1) // 2),
            "whisper_dim": int(rec.arrays["audio.whisper"].data.shape[-1]) if "audio.whisper" in rec.arrays else 0,
            "fps": float(rec.fps or 25.0)}
    layout = MotionLayout(int(rec.arrays["smplx.expression"].data.shape[-1]),
                          int(rec.arrays["smplx.left_hand_pose"].data.shape[-1]))
    return layout, info


def compute_statistics(store, where: str | None, layout: MotionLayout, audio_names: tuple[str, ...],
                       max_clips: int = 500, refs_per_clip: int = 4, seed: int = 0) -> MotionStatistics:
    """Normalisation statistics from whole clips of the selection: motion relative to a few
    random reference frames per clip, audio features, reference features."""
    rng = np.random.default_rng(seed)
    df = store.clips(where)
    ids = list(df["clip_id"])
    if len(ids) > max_clips:
        ids = list(rng.choice(ids, max_clips, replace=False))
    motion, audio, refs = [], [], []
    for rec in store.records(ids):
        try:
            p = _clip_params(rec.arrays)
            a = audio_features_from_arrays({n: rec.arrays[n].data for n in audio_names if n in rec.arrays},
                                           audio_names)
        except (KeyError, ValueError) as e:
            log.warning("statistics: clip %s skipped (%s)", rec.id, e)
            continue
        T = len(p["transl"])
        for r in rng.choice(T, min(refs_per_clip, T), replace=False):
            ref = {k: v[r] for k, v in p.items()}
            motion.append(encode_motion(layout, p, ref).numpy())
            refs.append(reference_features(layout, ref).numpy()[None])
        audio.append(a.numpy())
    if not motion:
        raise ValueError(f"{store.root}: no clip of {where!r} has SMPL-X and audio arrays for the statistics")
    return MotionStatistics.from_samples(np.concatenate(motion), np.concatenate(audio), np.concatenate(refs),
                                         where=where)


def window_batches(cfg: MotionTrainConfig, frames: int, audio_names: tuple[str, ...], per_rank_batch: int):
    """batches(epoch) for models.training.train: random training windows with a reference.

    The windows and their references are planned by mentor.store.windows.WindowDataset
    (`windows_per_clip` of them per clip and epoch) and read as `window_loader` says."""
    from mentor.store.windows import WindowDataset, distributed_rank

    _, world = distributed_rank()
    wpc = cfg.windows_per_clip or windows_per_clip(cfg.store, cfg.where, frames, per_rank_batch, world)
    arrays = tuple(f"smplx.{f}" for f in SMPLX_FIELDS) + tuple(audio_names)
    ds = WindowDataset(cfg.store, where=cfg.where, frames=frames, mode="random", seed=cfg.seed,
                       arrays=arrays, video=False, audio=False, reference=True,
                       min_reference_gap_s=cfg.min_reference_gap_s, windows_per_clip=wpc)
    return window_loader(ds, per_rank_batch, cfg.preload_arrays_gb, cfg.loader_workers)


def windows_per_clip(store, where: str | None, frames: int, per_rank_batch: int, world: int) -> int:
    """Windows per clip and epoch when the config leaves it open: enough to cover a mean
    clip, and enough for a few batches even on a small store (random starts, so
    overlapping windows are fresh crops, not repeats)."""
    from mentor.store import Store

    df = (store if hasattr(store, "clips") else Store(store)).clips(where)
    mean_frames = float((df["duration"] * df["fps"]).mean())
    return max(1, math.ceil(mean_frames / frames), math.ceil(2 * per_rank_batch * world / len(df)))


def window_loader(ds, per_rank_batch: int, preload_gb: float, loader_workers: int):
    """batches(epoch) over a WindowDataset: when the selected clips' arrays fit in
    preload_gb, each clip's arrays are read once, at the start (`preload_clip_arrays`), and
    windows are cut from memory (`PreloadedWindows`: no decoding per step); otherwise every
    window is read from the shards through a DataLoader with `loader_workers` processes."""
    from torch.utils.data import DataLoader

    from mentor.store.windows import collate_windows

    pin = torch.cuda.is_available()
    clips = preload_clip_arrays(ds, preload_gb)
    if clips is not None:
        data = PreloadedWindows(ds, clips)
        loader = DataLoader(data, batch_size=per_rank_batch, num_workers=0, collate_fn=collate_preloaded,
                            drop_last=True, pin_memory=pin)
    else:
        data = ds
        loader = DataLoader(ds, batch_size=per_rank_batch, num_workers=loader_workers,
                            collate_fn=collate_windows, drop_last=True, persistent_workers=loader_workers > 0,
                            pin_memory=pin, prefetch_factor=4 if loader_workers else None)

    def batches(epoch: int):
        data.set_epoch(epoch)
        return loader

    return batches


def preload_clip_arrays(ds, budget_gb: float) -> dict[str, dict[str, np.ndarray]] | None:
    """{clip_id: {array: (n, ...) float32 at the clip's frame times}} for every clip of a
    WindowDataset's selection, or None when they would take more than budget_gb (estimated
    from the index's frame counts and the first clip's bytes per frame) or budget_gb is 0."""
    from mentor.store.windows import WindowDataset

    if budget_gb <= 0:
        return None
    n = ds.num_frames
    longest = max(n.values())
    whole = WindowDataset(ds.store, where=ds.where, frames=longest, mode="sequential", windows_per_clip=1,
                          arrays=ds.array_patterns, video=False, audio=False, rank=0, world_size=1)
    out: dict[str, dict[str, np.ndarray]] = {}
    for sample in whole:  # read in this process (rank 0 of 1, no DataLoader worker): every clip once
        k = n[sample["clip_id"]]
        out[sample["clip_id"]] = {name: a[:k].numpy() for name, a in sample["arrays"].items()}
        if len(out) == 1:
            per_frame = sum(a.nbytes for a in out[sample["clip_id"]].values()) / max(k, 1)
            if per_frame * sum(n.values()) > budget_gb * 2**30:
                log.info("training windows are read from the shards: the arrays would take %.1f GB (> %.1f GB)",
                         per_frame * sum(n.values()) / 2**30, budget_gb)
                return None
    return out


class PreloadedWindows(torch.utils.data.IterableDataset):
    """The windows WindowDataset plans (same clips, starts, references and rank pieces), cut
    from clip arrays held in memory (`preload_clip_arrays`): frames past a clip's end are NaN
    with `valid` False, as WindowDataset gives them."""

    def __init__(self, plan: Any, clips: dict[str, dict[str, np.ndarray]]):
        self.plan, self.clips = plan, clips

    def set_epoch(self, epoch: int) -> None:
        self.plan.set_epoch(epoch)

    def __iter__(self):
        from mentor.store.windows import distributed_rank

        rank, world = distributed_rank()
        windows = self.plan.plan()
        piece = windows[rank * len(windows) // world:(rank + 1) * len(windows) // world]
        T = self.plan.frames
        for w in piece:
            arrays = self.clips[w.clip_id]
            n = self.plan.num_frames[w.clip_id]
            idx = np.arange(w.start, w.start + T)
            valid = idx < n
            take = np.minimum(idx, n - 1)
            cut = {}
            for name, a in arrays.items():
                x = a[take]
                if not valid.all():
                    x[~valid] = np.nan
                cut[name] = x
            sample = {"arrays": cut, "valid": valid}
            if w.reference is not None:
                sample["reference"] = {name: a[w.reference] for name, a in arrays.items()}
            yield sample


def collate_preloaded(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """PreloadedWindows samples -> the batch layout of mentor.store.windows.collate_windows
    (arrays, valid, and reference arrays when planned) that MotionLoss reads."""
    names = samples[0]["arrays"].keys()
    batch = {"arrays": {k: torch.from_numpy(np.stack([s["arrays"][k] for s in samples])) for k in names},
             "valid": torch.from_numpy(np.stack([s["valid"] for s in samples]))}
    if "reference" in samples[0]:
        batch["reference"] = {"arrays": {k: torch.from_numpy(np.stack([s["reference"][k] for s in samples]))
                                         for k in names}}
    return batch


# ----------------------------------------------------------------------------- loss

class MotionLoss:
    """loss_fn(model, batch) for models.training.train (see the module docstring)."""

    def __init__(self, layout: MotionLayout, audio_names: tuple[str, ...], cfg: MotionTrainConfig,
                 num_train_timesteps: int, beta_schedule: str, context_frames: int, audio_dropout: float):
        self.layout = layout
        self.audio_names = audio_names
        self.cfg = cfg
        self.scheduler = make_scheduler("ddpm", num_train_timesteps, beta_schedule)
        self.context_frames = context_frames
        self.audio_dropout = audio_dropout
        self.face = layout.face_mask()
        self.dim_weight = torch.ones(layout.dim)
        for name in ("expression", "jaw_pose"):
            self.dim_weight[layout.slices()[name]] = cfg.lip_weight

    def inputs(self, model: MotionDiffusionModel, batch: dict) -> dict[str, torch.Tensor]:
        """Normalised x0 (B,T,D), audio (B,T,A), reference (B,R) and the frame mask (B,T)."""
        arrays, ref_arrays = batch["arrays"], batch["reference"]["arrays"]
        params = {f: arrays[f"smplx.{f}"].float() for f in SMPLX_FIELDS}
        ref = {f: ref_arrays[f"smplx.{f}"].float() for f in SMPLX_FIELDS}
        x0 = model.normalize_motion(encode_motion(self.layout, params, ref))
        ok = batch["valid"].bool() & torch.isfinite(x0).all(-1)
        audio = model.normalize_audio(audio_features_from_arrays(arrays, self.audio_names, model.audio_dim))
        reff = torch.nan_to_num(model.normalize_reference(reference_features(self.layout, ref)))
        return {"x0": torch.nan_to_num(x0) * ok[..., None], "audio": audio, "reference": reff, "mask": ok}

    def __call__(self, net, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        model = unwrap(net)
        inp = self.inputs(model, batch)
        x0, mask = inp["x0"], inp["mask"]
        B, T, D = x0.shape
        dev = x0.device
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (B,), device=dev)
        noise = torch.randn_like(x0)
        xt = self.scheduler.add_noise(x0, noise, t)
        known_len = torch.randint(1, max(self.context_frames, 1) + 1, (B,), device=dev)
        if not self.context_frames:
            known_len.zero_()
        known_len = torch.where(torch.rand(B, device=dev) < self.cfg.context_prob, known_len, torch.zeros_like(known_len))
        known_mask = torch.arange(T, device=dev)[None] < known_len[:, None]
        keep = torch.rand(B, device=dev) >= self.audio_dropout
        pred = net(xt, t, inp["audio"], inp["reference"], x0, known_mask, keep)
        w = mask.to(pred.dtype)[..., None]
        dw = self.dim_weight.to(dev)
        diffusion = ((pred.float() - x0) ** 2 * w * dw).sum() / (w.sum() * dw.sum()).clamp_min(1e-9)
        dp, dx = pred.float()[:, 1:] - pred.float()[:, :-1], x0[:, 1:] - x0[:, :-1]
        pair = (w[:, 1:] * w[:, :-1])
        sq = (dp - dx) ** 2 * pair
        face = self.face.to(dev)
        n_pairs = pair.sum().clamp_min(1)
        t_face = sq[..., face].sum() / (n_pairs * face.sum())
        t_body = sq[..., ~face].sum() / (n_pairs * (~face).sum())
        loss = diffusion + self.cfg.temporal_face * t_face + self.cfg.temporal_body * t_body
        return loss, {"diffusion": float(diffusion.detach()), "temporal_face": float(t_face.detach()),
                      "temporal_body": float(t_body.detach())}


# ------------------------------------------------------------------------------ loop

def build_model(cfg: MotionTrainConfig, store) -> tuple[MotionDiffusionModel, tuple[str, ...]]:
    """The model for a run: its config from RUN/model_config.json when resuming, else from the
    preset and the store's sizes."""
    run = Path(cfg.run_dir)
    saved = run / "model_config.json"
    if saved.exists():
        kwargs = json.loads(saved.read_text())
    else:
        layout, info = store_layout(store, cfg.where)
        use_whisper = info["whisper_dim"] > 0 if cfg.use_whisper == "auto" else cfg.use_whisper == "yes"
        if cfg.use_whisper == "yes" and not info["whisper_dim"]:
            raise ValueError(f"{cfg.store}: use_whisper='yes' but the store has no audio.whisper array "
                             "(set audio.whisper_model in datasets.yaml and run `mentor annotate`)")
        kwargs = {"num_expression": layout.num_expression, "num_hand_pca": layout.num_hand_pca,
                  "n_mels": info["n_mels"], "audio_window_frames": info["audio_window_frames"],
                  "whisper_dim": info["whisper_dim"] if use_whisper else 0, "fps": info["fps"], **cfg.model}
    model = MotionDiffusionModel(**kwargs)
    return model, model.audio_arrays


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """One worker's training (see pipelines/train.py); returns a summary dict."""
    from mentor.store import Store

    cfg = MotionTrainConfig(**config)
    run = start_run(cfg.run_dir, cfg.device, seed=cfg.seed)
    store = Store(cfg.store)
    model, audio_names = build_model(cfg, store)
    run.prepare({"model_config.json": json.dumps(dict(model.config), default=list),
                 "config.json": cfg.model_dump_json(indent=1)},
                make={"normalization.json": lambda path: compute_statistics(
                    store, cfg.where, model.layout, audio_names, cfg.stats_clips, seed=cfg.seed).save(
                    path.parent, model.layout)})
    model.set_statistics(MotionStatistics.load(run.dir))
    model.to(run.device)
    per_rank = max(1, cfg.batch_size // run.dist.world_size)
    c = model.config
    loss_fn = MotionLoss(model.layout, audio_names, cfg, c.num_train_timesteps, c.beta_schedule, c.context_frames,
                         c.audio_dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = cfg.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    result = train(model=model, optimizer=opt, loss_fn=loss_fn,
                   batches=window_batches(cfg, c.num_frames, audio_names, per_rank), steps=cfg.steps,
                   run_dir=run.dir, lr_scheduler=sched, device=run.device, amp=cfg.amp, log_every=cfg.log_every,
                   ckpt_every=cfg.ckpt_every, keep=cfg.keep_checkpoints, batch_size=per_rank,
                   progress=cfg.progress, seed=cfg.seed)
    return run.finish(result, lambda folder: write_model(model, run.dir, folder), subdir=MODEL_SUBDIR)


def write_model(model: MotionDiffusionModel, run: Path, folder: Path) -> None:
    """The model of run `run` into `folder`: save_pretrained, normalization.json, training.json."""
    unwrap(model).to("cpu").save_pretrained(folder)
    MotionStatistics.load(run).save(folder, model.layout)
    (folder / "training.json").write_text((run / "config.json").read_text())
