"""Training the video diffusion model from the shards, in VLOGGER's two stages.

Stage 1 trains the control branch (and the reference encoder, and the base when it does
not come pretrained) on single frames; stage 2 trains only the temporal layers on clips of
`window` frames, with the first half of the window given as known frames half the time
(what temporal outpainting feeds it at inference). Each training sample is a window from
`mentor.store.windows` with a reference frame of the same clip drawn at least
`min_reference_gap_s` away; its controls (dense template map, part masks, warped
reference) are rendered on the training device from the stored `smplx.*` arrays.

Frames are `size` x `height` pixels (square when height is None; a non-square size
stretches the clips in the decoder, and the cameras are stretched with them: fy != fx).
Each stage's loader starts before the model is built (`EpochBatches.start`) and keeps its
spawned workers across epochs, so no step waits for a worker's start-up (seconds of
imports), which was most of the data wait of short runs.

`train_loop(config) -> dict` is the trainer that `pipelines.train.launch` runs (in this
process, or on Ray Train workers with DDP); `models.training.train` brings checkpoints
and resume, AMP on CUDA, CSV + TensorBoard logs and data-wait timing. Run folder:

    RUN/config.json                  the resolved config
    RUN/stage1/, RUN/stage2/         checkpoints/, loss.csv, tb/ of each stage
    RUN/model/                       the final model (VideoDiffusion.save_pretrained),
                                     scheduler/ (DDPMScheduler), video.json (frame size,
                                     window, body model), vae/ when latent

Re-running the same command resumes: a finished stage 1 (its `stage1/model`) is not
trained again, and each stage continues from its newest checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass
class VideoTrainConfig:
    store: str
    run_dir: str
    where: str | None = "split == 'train'"
    size: int = 64  # frame width in pixels (frames are resized to size x height)
    height: int | None = None  # frame height in pixels (None: size, square frames)
    window: int = 8  # frames per clip in stage 2 (and per generated window)
    stage1_steps: int = 1000
    stage2_steps: int = 1000
    batch_size: int = 8  # stage 1 frames per step
    clip_batch_size: int = 2  # stage 2 clips per step
    lr: float = 1e-4
    lr_temporal: float | None = None  # stage 2 learning rate (default lr)
    channels: tuple[int, ...] = (32, 64)  # base UNet levels (from scratch)
    prediction_type: str = "epsilon"
    train_timesteps: int = 1000
    unet_dir: str | None = None  # pretrained UNet2DConditionModel folder: initialises the frozen base
    vae_dir: str | None = None  # AutoencoderKL folder: train in its latent space
    init_model: str | None = None  # a trained RUN/model to start from (personalisation)
    body_model_dir: str | None = None
    min_reference_gap_s: float = 1.0
    known_prob: float = 0.5  # stage 2: share of clips whose first half is given as known frames
    num_workers: int = 0  # DataLoader workers per training process
    loader_ahead: bool = True  # workers start before the model is built and persist across epochs
    # (False: torch's default, spawned at each epoch's first batch; kept for the benchmark's baseline)
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 200
    progress: bool = True
    stages: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        for name in ("size", "height"):
            v = getattr(self, name)
            if v is not None and (v < 8 or v % 8):
                raise ValueError(f"{name}={v}: must be a multiple of 8, at least 8")
        if self.window < 2:
            raise ValueError(f"window={self.window}: a clip window needs at least 2 frames")
        if not set(self.stages) <= {1, 2} or not self.stages:
            raise ValueError(f"stages={self.stages}: give 1, 2 or both")
        for name in ("stage1_steps", "stage2_steps", "batch_size", "clip_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type={self.prediction_type!r}: use 'epsilon', 'v_prediction' or 'sample'")
        self.channels = tuple(self.channels)
        self.stages = tuple(self.stages)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames the model is trained on."""
        return self.size, self.height or self.size


# --------------------------------------------------------------------- model + data

def build_model(cfg: VideoTrainConfig, render_channels: int, vae=None):
    from models.video import VideoDiffusion, tiny_base_config

    if cfg.init_model:
        return VideoDiffusion.from_pretrained(cfg.init_model, low_cpu_mem_usage=False)
    pixel_factor = 1
    W, H = cfg.frame_size
    in_ch = 3
    if vae is not None:
        pixel_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        in_ch = vae.config.latent_channels
    step = pixel_factor * 2 ** (len(cfg.channels) - 1)  # the UNet halves the sample at each level but the last
    if not cfg.unet_dir and (W % step or H % step):
        raise ValueError(f"frames {W}x{H}: both sides must be multiples of {step} for {len(cfg.channels)} UNet levels"
                         + (f" in a VAE's latent space (1/{pixel_factor})" if vae is not None else ""))
    sample = W // pixel_factor if W == H else (H // pixel_factor, W // pixel_factor)  # diffusers: (height, width)
    kw = dict(render_channels=render_channels, latent=vae is not None, pixel_factor=pixel_factor,
              prediction_type=cfg.prediction_type)
    if cfg.unet_dir:
        model = VideoDiffusion.from_base(cfg.unet_dir, freeze_base=True, **kw)
        if model.base.config.in_channels != in_ch:
            raise ValueError(f"{cfg.unet_dir}: the UNet takes {model.base.config.in_channels} channels but the "
                             f"{'VAE latents have' if vae is not None else 'pixel frames have'} {in_ch}")
        return model
    return VideoDiffusion(base_config=tiny_base_config(sample, in_ch, cfg.channels), **kw)


def load_vae(vae_dir: str | None, device):
    if not vae_dir:
        return None
    from diffusers import AutoencoderKL

    if not os.path.isdir(vae_dir):
        raise ValueError(f"vae_dir={vae_dir}: not a folder; give an AutoencoderKL folder (config.json + weights)")
    vae = AutoencoderKL.from_pretrained(vae_dir, low_cpu_mem_usage=False).to(device).eval()
    vae.requires_grad_(False)
    return vae


def encode(frames: torch.Tensor, vae) -> torch.Tensor:
    """(B,T,3,H,W) in [-1,1] -> the model's sample space (latents * scaling factor with a VAE)."""
    if vae is None:
        return frames
    B, T = frames.shape[:2]
    with torch.no_grad():
        z = vae.encode(frames.flatten(0, 1).to(vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
    return z.reshape(B, T, *z.shape[1:]).float().contiguous()


def decode(sample: torch.Tensor, vae) -> torch.Tensor:
    """Inverse of `encode`: (B,T,C,h,w) -> (B,T,3,H,W) in [-1,1]."""
    if vae is None:
        return sample.clamp(-1, 1)
    B, T = sample.shape[:2]
    with torch.no_grad():
        x = vae.decode((sample.flatten(0, 1) / vae.config.scaling_factor).to(vae.dtype)).sample
    return x.view(B, T, *x.shape[1:]).float().clamp(-1, 1)


def make_scheduler(cfg: VideoTrainConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type=cfg.prediction_type, clip_sample=False)


def prepare(batch: dict[str, Any], source, size: int | tuple[int, int]) -> dict[str, torch.Tensor]:
    """A collated window batch -> frames (B,T,3,H,W) in [-1,1], controls (B,T,C,H,W),
    reference (B,3,H,W) in [-1,1], valid (B,T); size: (width, height) or an int side."""
    from models.controls import frame_size

    W, H = frame_size(size)
    video = batch["video"]
    if video.shape[-2] != W or video.shape[-3] != H:
        raise ValueError(f"frames are {video.shape[-2]}x{video.shape[-3]}, expected {W}x{H} (loader size)")
    ref = batch["reference"]
    controls, valid = source.render(batch["arrays"], ref["arrays"], ref["video"], (W, H))
    frames = video.to(controls.device).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    reference = ref["video"].to(controls.device).permute(0, 3, 1, 2).float() / 127.5 - 1
    return {"frames": frames, "controls": controls, "reference": reference,
            "valid": valid & batch["valid"].to(controls.device)}


def diffusion_loss(net, scheduler, data: dict[str, torch.Tensor], vae=None, known_prob: float = 0.0,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Noise the frames at random timesteps and regress the model's target (masked MSE)."""
    from models.video import conditioning

    frames, valid = data["frames"], data["valid"]
    B, T = frames.shape[:2]
    x0 = encode(frames, vae)
    dev = x0.device
    noise = torch.randn(x0.shape, device=dev, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (B,), device=dev, generator=generator)
    alphas = scheduler.alphas_cumprod.to(dev)[t].view(B, 1, 1, 1, 1)
    xt = alphas.sqrt() * x0 + (1 - alphas).sqrt() * noise
    known_mask = torch.zeros(B, T, device=dev)
    if known_prob > 0 and T > 1:
        pick = torch.rand(B, device=dev, generator=generator) < known_prob
        known_mask[pick, : T // 2] = 1.0
    cond = conditioning(data["controls"], data["reference"], frames, known_mask)
    pred = net(xt, t, cond, data["reference"])
    ptype = scheduler.config.prediction_type
    target = noise if ptype == "epsilon" else x0 if ptype == "sample" else alphas.sqrt() * noise - (1 - alphas).sqrt() * x0
    w = valid.float().view(B, T, 1, 1, 1)
    err = ((pred.float() - target) ** 2 * w).sum() / (w.sum() * pred[0, 0].numel()).clamp_min(1)
    return err, {"valid_frames": float(valid.float().mean())}


# ------------------------------------------------------------------------ the trainer

def _loader(cfg: VideoTrainConfig, frames: int, batch_size: int, mode: str = "random", windows_per_clip=None):
    from mentor.store.windows import window_loader

    return window_loader(cfg.store, batch_size=batch_size, num_workers=cfg.num_workers,
                         persistent_workers=cfg.loader_ahead, where=cfg.where,
                         frames=frames, mode=mode, seed=cfg.seed, arrays=("smplx.*",), video=True, audio=False,
                         size=cfg.frame_size, reference=True, min_reference_gap_s=cfg.min_reference_gap_s,
                         windows_per_clip=windows_per_clip)


class EpochBatches:
    """`batches(epoch)` for `models.training.train` over a window loader. `start()` begins
    epoch 0 ahead: the loader's spawned workers pay their imports and fill their prefetch
    queues while the model is built and the stage before trains, instead of inside the first
    step's data wait. `close()` stops the workers (they persist across epochs)."""

    def __init__(self, loader):
        self.loader = loader
        self._ahead: tuple[int, Any] | None = None

    def start(self, epoch: int = 0) -> "EpochBatches":
        if self.loader.num_workers > 0:
            self.loader.dataset.set_epoch(epoch)
            self._ahead = (epoch, iter(self.loader))
        return self

    def __call__(self, epoch: int):
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == epoch:
            return ahead[1]
        self.loader.dataset.set_epoch(epoch)
        return self.loader

    def close(self) -> None:
        self._ahead = None
        it = getattr(self.loader, "_iterator", None)  # a persistent workers' iterator
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.loader._iterator = None


def save_model(model, run_dir: Path, cfg: VideoTrainConfig, scheduler, vae=None, out: Path | None = None) -> Path:
    from models.training import unwrap

    out = out or run_dir / "model"
    out.mkdir(parents=True, exist_ok=True)
    unwrap(model).save_pretrained(out)
    scheduler.save_pretrained(out / "scheduler")
    if vae is not None:
        vae.save_pretrained(out / "vae")
    meta = {"size": cfg.size, "height": cfg.frame_size[1], "window": cfg.window, "body_model_dir": cfg.body_model_dir,
            "latent": vae is not None, "store": str(cfg.store), "where": cfg.where}
    (out / "video.json").write_text(json.dumps(meta, indent=1))
    return out


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The video trainer (see module docstring); config: VideoTrainConfig fields."""
    from models.training import start_run

    cfg = config if isinstance(config, VideoTrainConfig) else VideoTrainConfig(**config)
    run = start_run(cfg.run_dir, cfg.device)  # seeded later: the initial weights depend on the seed only
    run.prepare({"config.json": json.dumps(asdict(cfg), indent=1, default=str)})
    run_dir, dist, device = run.dir, run.dist, run.device
    s1_model = run_dir / "stage1" / "model"
    s1_done = 2 in cfg.stages and (s1_model / "config.json").exists()
    # every stage's loader starts now: its workers spawn while the model is built (and
    # stage 2's while stage 1 trains), so no step waits for a worker's start-up
    feeds = {st: EpochBatches(_loader(cfg, 1 if st == 1 else cfg.window,
                                      cfg.batch_size if st == 1 else cfg.clip_batch_size))
             for st in cfg.stages if not (st == 1 and s1_done)}
    if cfg.loader_ahead:
        for feed in feeds.values():
            feed.start()
    try:
        return _train_stages(cfg, run_dir, dist, device, feeds, s1_model)
    finally:
        for feed in feeds.values():
            feed.close()


def _train_stages(cfg: VideoTrainConfig, run_dir: Path, dist, device, feeds: dict[int, EpochBatches],
                  s1_model: Path) -> dict[str, Any]:
    from mentor.body import load_body_model
    from models.controls import ControlSource
    from models.training import seed_everything, train

    body = load_body_model(cfg.body_model_dir, device=device)
    source = ControlSource(body)
    vae = load_vae(cfg.vae_dir, device)
    scheduler = make_scheduler(cfg)
    seed_everything(cfg.seed)  # the initial weights depend on the seed only
    model = build_model(cfg, source.num_channels, vae).to(device)
    results: dict[str, Any] = {}
    for stage in cfg.stages:
        if stage not in feeds:  # stage 1 done by an earlier run
            from models.video import VideoDiffusion

            model = VideoDiffusion.from_pretrained(s1_model, low_cpu_mem_usage=False).to(device)
            log.info("stage 1 already done (%s): going on with stage 2", s1_model)
            continue
        params = model.set_stage(stage)
        lr = cfg.lr if stage == 1 else (cfg.lr_temporal or cfg.lr)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        bs = cfg.batch_size if stage == 1 else cfg.clip_batch_size
        known = 0.0 if stage == 1 else cfg.known_prob

        def loss_fn(net, batch, known=known):
            data = prepare(batch, source, cfg.frame_size)
            return diffusion_loss(net, scheduler, data, vae, known)

        steps = cfg.stage1_steps if stage == 1 else cfg.stage2_steps
        res = train(model=model, optimizer=opt, loss_fn=loss_fn, batches=feeds[stage], steps=steps,
                    run_dir=run_dir / f"stage{stage}", device=device, amp=cfg.amp, log_every=cfg.log_every,
                    ckpt_every=cfg.ckpt_every, batch_size=bs, progress=cfg.progress, seed=cfg.seed + stage)
        results[f"stage{stage}"] = {k: getattr(res, k) for k in ("step", "resumed_from", "last_loss", "steps_per_s",
                                                                  "samples_per_s", "data_wait", "seconds")}
        feeds[stage].close()
        if dist.main and stage == 1:
            save_model(model, run_dir, cfg, scheduler, vae, out=s1_model)
    if dist.main:
        out = save_model(model, run_dir, cfg, scheduler, vae)
        results["model"] = str(out)
    flat = {"model": results.get("model", "")}
    for st, r in results.items():
        if isinstance(r, dict):
            flat.update({f"{st}_{k}": v for k, v in r.items()})
    return flat


def train_video(config: dict[str, Any] | VideoTrainConfig, num_workers: int = 1, use_gpu: bool = False,
                ray_address: str | None = None) -> dict[str, Any]:
    """Train through the one launcher (`pipelines.train.launch`): in process, or on Ray Train."""
    from pipelines.train import launch

    cfg = config if isinstance(config, VideoTrainConfig) else VideoTrainConfig(**config)
    return launch(train_loop, asdict(cfg), num_workers=num_workers, use_gpu=use_gpu, ray_address=ray_address,
                  run_dir=cfg.run_dir)
