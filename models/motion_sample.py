"""Sampling motion of any length from a trained motion model.

    model = load_motion_model("runs/motion")               # a run folder or its model/ folder
    ref = reference_params(...)                             # SMPL-X of one frame: {field: (n,)}
    params = generate(model, audio_features (N,A), ref, num_samples=3, seed=0)
    # -> {field: (K, N, n)} SMPL-X parameters, one set per sample

Long audio is cut into windows of the model's `num_frames` that overlap by
`context_frames` frames; each window but the first is sampled with its first
`context_frames` frames given (the model was trained with known prefixes, and they are
written back into the sample at every denoising step), so the motion continues across the
join instead of restarting. Two ways to run the windows (`stitch`):

- "parallel" (default): every window is denoised at once, in one batch, and at each
  denoising step a window's known prefix is the previous window's current prediction of
  those frames (from the step before; the last step's is written over the prefix at the
  end). One network call per step whatever the length of the audio.
- "sequential": window after window, each from the previous one's finished frames
  (windows x steps network calls).

The K samples run in the same batch, and classifier-free guidance doubles it (conditional
and unconditional in one pass). Sampling runs under torch.inference_mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from models.motion import (MotionDiffusionModel, audio_features_from_arrays, decode_motion, make_scheduler,
                           reference_features)
from models.motion_train import MODEL_SUBDIR, SMPLX_FIELDS


def load_motion_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> MotionDiffusionModel:
    """from_pretrained of a run folder's model/ (or of a model folder itself), in eval mode."""
    p = Path(path)
    if (p / MODEL_SUBDIR / "config.json").is_file():
        p = p / MODEL_SUBDIR
    if not (p / "config.json").is_file():
        hint = " (training has not finished: the model is written at the end)" if (p / "checkpoints").is_dir() else ""
        raise FileNotFoundError(f"{path}: no motion model here (expected config.json or {MODEL_SUBDIR}/config.json){hint}")
    model = MotionDiffusionModel.from_pretrained(str(p), low_cpu_mem_usage=False)
    return model.to(device).eval()


@torch.inference_mode()
def sample_window(model: MotionDiffusionModel, scheduler, audio: torch.Tensor, reference: torch.Tensor,
                  known: torch.Tensor, known_mask: torch.Tensor, steps: int, guidance: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """One window: normalised audio (K,W,A), reference (K,R), known (K,W,D) + mask (K,W) ->
    normalised motion (K,W,D), known frames kept as given."""
    K, W = audio.shape[:2]
    D = model.layout.dim
    scheduler.set_timesteps(steps, device=audio.device)
    x = torch.randn((K, W, D), generator=generator, device="cpu").to(audio.device) * scheduler.init_noise_sigma
    m = known_mask[..., None]
    x0 = x
    for t in scheduler.timesteps:
        x0 = model.guided_x0(x, t, audio, reference, known, known_mask, guidance)
        x0 = torch.where(m, known, x0)
        x = scheduler.step(x0, t, x, generator=generator).prev_sample
    # the last step's prediction is the sample (schedulers end at sigma 0 up to rounding)
    return torch.where(m, known, x0)


def window_starts(num_frames: int, window: int, context: int) -> list[int]:
    """First frame of each window so that windows of `window` frames overlapping by
    `context` cover 0..num_frames (the last may run past the end: its audio is padded)."""
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames}: nothing to generate")
    starts, s = [0], 0
    while s + window < num_frames:
        s += window - context
        starts.append(s)
    return starts


STITCH = ("parallel", "sequential")


@torch.inference_mode()
def generate(model: MotionDiffusionModel, audio_features: torch.Tensor | np.ndarray,
             reference: dict[str, torch.Tensor | np.ndarray], num_samples: int = 1, seed: int = 0,
             guidance: float | None = None, scheduler: str | None = None, steps: int | None = None,
             device: str | torch.device | None = None, stitch: str = "parallel") -> dict[str, np.ndarray]:
    """SMPL-X motion for audio features (N,A) (raw, as `audio_features_from_arrays` makes
    them) around a reference frame {field: (n,)} (betas included).

    Returns {field: float32 (K, N, n)} for the SMPL-X fields (betas repeated). guidance,
    scheduler ("dpmsolver++" | "ddim" | "ddpm") and steps default to the model's config;
    "ddpm" with steps=None runs every training step. stitch: "parallel" | "sequential" (see
    the module docstring).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples}: ask for at least 1 sample")
    if stitch not in STITCH:
        raise ValueError(f"stitch={stitch!r}: use one of {STITCH}")
    dev = torch.device(device) if device is not None else model.device
    model.to(dev)
    was_training = model.training
    model.eval()
    try:
        return _generate(model, audio_features, reference, num_samples, seed, guidance, scheduler, steps, dev, stitch)
    finally:
        model.train(was_training)


def _generate(model, audio_features, reference, num_samples, seed, guidance, scheduler, steps, dev, stitch):
    c = model.config
    kind = scheduler or c.sample_scheduler
    sched = make_scheduler(kind, c.num_train_timesteps, c.beta_schedule)
    if steps is None:
        steps = c.num_train_timesteps if kind == "ddpm" else c.sample_steps
    if not 1 <= steps <= c.num_train_timesteps:
        raise ValueError(f"steps={steps}: use 1..{c.num_train_timesteps}")
    g = c.guidance_scale if guidance is None else float(guidance)
    feats = torch.as_tensor(np.asarray(audio_features), dtype=torch.float32)
    if feats.ndim != 2 or feats.shape[1] != model.audio_dim:
        raise ValueError(f"audio features have shape {tuple(feats.shape)}; expected (frames, {model.audio_dim})")
    N = feats.shape[0]
    ref = {k: torch.as_tensor(np.asarray(reference[k]), dtype=torch.float32).reshape(-1).to(dev)
           for k in SMPLX_FIELDS}
    K = num_samples
    audio_n = model.normalize_audio(feats.to(dev))
    ref_n = torch.nan_to_num(model.normalize_reference(reference_features(model.layout, ref)))[None].expand(K, -1)
    W, C = c.num_frames, c.context_frames
    D = model.layout.dim
    out = torch.zeros(K, N, D, device=dev)
    gen = torch.Generator().manual_seed(seed)
    starts = window_starts(N, W, C)
    if stitch == "parallel" and len(starts) > 1:
        out = _parallel_windows(model, sched, audio_n, ref_n, starts, N, steps, g, gen)
        starts = []
    done = 0
    for s in starts:
        idx = torch.arange(s, s + W).clamp_max(N - 1)  # past the end: the last frame's audio repeated
        audio_w = audio_n[idx][None].expand(K, -1, -1)
        known = torch.zeros(K, W, D, device=dev)
        known_mask = torch.zeros(K, W, dtype=torch.bool, device=dev)
        carry = max(0, min(done - s, W))
        if carry:
            known[:, :carry] = out[:, s:s + carry]
            known_mask[:, :carry] = True
        x = sample_window(model, sched, audio_w, ref_n, known, known_mask, steps, g, gen)
        end = min(s + W, N)
        out[:, s:end] = x[:, :end - s]
        done = end
    motion = model.denormalize_motion(out)
    params = decode_motion(model.layout, motion, {k: v[None].expand(K, -1) for k, v in ref.items()})
    return {k: v.float().cpu().numpy() for k, v in params.items()}


def _parallel_windows(model, scheduler, audio_n, ref_n, starts, N, steps, guidance, gen) -> torch.Tensor:
    """Every window denoised at once (stitch="parallel"): (K,N,D) normalised motion."""
    c = model.config
    W, C, D = c.num_frames, c.context_frames, model.layout.dim
    K, nw, dev = ref_n.shape[0], len(starts), audio_n.device
    idx = (torch.as_tensor(starts)[:, None] + torch.arange(W)[None]).clamp_max(N - 1)  # (nw, W)
    audio = audio_n[idx].repeat_interleave(K, 0)  # (nw*K, W, A), window-major
    ref = ref_n.repeat(nw, 1)
    known = torch.zeros(nw * K, W, D, device=dev)
    known_mask = torch.zeros(nw * K, W, dtype=torch.bool, device=dev)
    known_mask[K:, :C] = True  # every window but the first continues the one before
    m = known_mask[..., None]
    scheduler.set_timesteps(steps, device=dev)
    x = torch.randn((nw * K, W, D), generator=gen, device="cpu").to(dev) * scheduler.init_noise_sigma
    x0 = x
    for t in scheduler.timesteps:
        x0 = model.guided_x0(x, t, audio, ref, known, known_mask, guidance)
        known[K:, :C] = x0[:-K, W - C:]  # the previous window's current prediction of the overlap
        x0 = torch.where(m, known, x0)
        x = scheduler.step(x0, t, x, generator=gen).prev_sample
    x0 = x0.reshape(nw, K, W, D)
    out = torch.zeros(K, N, D, device=dev)
    for i in reversed(range(nw)):  # earlier windows written last: the overlaps are theirs (as the prefixes)
        s = starts[i]
        end = min(s + W, N)
        out[:, s:end] = x0[i, :, :end - s]
    return out


def audio_features_for_wav(path: str | os.PathLike[str], model: MotionDiffusionModel, fps: float | None = None,
                           seconds: float | None = None, whisper_model: str | None = None,
                           device: str = "cpu") -> tuple[np.ndarray, np.ndarray, float]:
    """The model's audio features for a speech file, computed by the store's own annotator
    (annotate.audio_features) at the model's fps: (features (N,A), samples 16 kHz, fps).
    seconds: trim, or pad with silence, to this length."""
    from annotate.audio_features import AudioFeatures
    from mentor.config import AudioFeatureConfig
    from mentor.media import read_audio
    from mentor.record import ClipRecord, SourceRecord

    c = model.config
    fps = float(fps or c.fps)
    samples = read_audio(path, 16000)
    if seconds is not None:
        if not seconds > 0:
            raise ValueError(f"--seconds {seconds}: must be > 0")
        n = int(round(seconds * 16000))
        samples = samples[:n] if len(samples) >= n else np.concatenate([samples, np.zeros(n - len(samples), np.float32)])
    if c.whisper_dim and not whisper_model:
        raise ValueError("this model was trained with Whisper features: give the same Whisper checkpoint "
                         "(--whisper-model PATH)")
    import tempfile

    from mentor.testmedia import _write_wav

    with tempfile.TemporaryDirectory(prefix="mentor-motion-") as tmp:
        wav = _write_wav(Path(tmp) / "speech.wav", samples, 16000)
        src = SourceRecord.from_uri(f"file://{Path(path).resolve()}")
        rec = ClipRecord.for_span(src, 0.0, len(samples) / 16000)
        rec.fps = fps
        rec.files = {"audio": str(wav)}
        feat = AudioFeatures(AudioFeatureConfig(n_mels=c.n_mels, window_frames=c.audio_window_frames,
                                                whisper_model=whisper_model if c.whisper_dim else None, device=device))
        rec = feat(rec)
        if rec.errors:
            raise ValueError(f"{path}: audio features failed: {rec.errors}")
        arrays = {k: rec.arrays[k].data for k in model.audio_arrays}
    return audio_features_from_arrays(arrays, model.audio_arrays, model.audio_dim).numpy(), samples, fps
