"""Image and video metrics on decoded frames: (T, H, W, 3) uint8 RGB numpy arrays.

Reference-based (generated against the real clip, frame by frame): PSNR and SSIM
(torchmetrics), LPIPS (torchmetrics' LPIPS with its shipped linear layers; the AlexNet
backbone from a local torchvision checkpoint). No-reference: CPBD (the `cpbd` package, a
port of the authors' MATLAB code) and NIQE (models/metrics/niqe.py). Set-level: FID
(torchmetrics' FrechetInceptionDistance with a local Inception weights file, or any feature
extractor module) and FVD (I3D as the StyleGAN-V / "content-debiased FVD" TorchScript file).
Stochasticity: per-pixel standard deviation across K samples of one input.

Network metrics raise `MissingWeights` naming the file when their weights are not given
or not found; callers (models/evaluate.py) skip the metric and say so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

# Frames of identical images have infinite PSNR; it is reported as this many dB.
PSNR_CAP_DB = 100.0


class MissingWeights(FileNotFoundError):
    """A network metric has no weights file. `metric` and `path` (None: not configured)."""

    def __init__(self, metric: str, path: str | os.PathLike[str] | None, what: str, option: str):
        self.metric, self.path = metric, (str(path) if path else None)
        where = f"{path} not found" if path else "not configured"
        super().__init__(f"{metric}: skipped: {what} {where}; give it with {option}")


def require_weights(path: str | os.PathLike[str] | None, metric: str, what: str, option: str) -> Path:
    if not path or not Path(path).expanduser().is_file():
        raise MissingWeights(metric, path, what, option)
    return Path(path).expanduser()


def _check_frames(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"{name}: shape {a.shape} dtype {a.dtype}; expected (T, H, W, 3) uint8 RGB frames")
    return a


def _pair(real: Any, fake: Any) -> tuple[np.ndarray, np.ndarray]:
    r, f = _check_frames(real, "real"), _check_frames(fake, "generated")
    if r.shape[1:] != f.shape[1:]:
        raise ValueError(f"real frames {r.shape[1:3]} and generated frames {f.shape[1:3]} differ in size; "
                         "resize the generated video to the real clip's size first (evaluate.py does)")
    n = min(len(r), len(f))
    return r[:n], f[:n]


def to_tensor(frames: np.ndarray, device: Any = "cpu"):
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32 in [0, 1] on `device`."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0


def sample_indices(n: int, k: int | None) -> np.ndarray:
    """k indices spread evenly over n frames (all of them when k is None or >= n)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


# ------------------------------------------------------------------- reference-based

def psnr(real: Any, fake: Any, batch: int = 16) -> float:
    """Mean over frames of PSNR (dB, data range 1), each frame capped at PSNR_CAP_DB."""
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio

    r, f = _pair(real, fake)
    vals = []
    for i in range(0, len(r), batch):
        a, b = to_tensor(r[i:i + batch]), to_tensor(f[i:i + batch])
        v = peak_signal_noise_ratio(b, a, data_range=1.0, reduction="none", dim=(1, 2, 3))
        vals.append(torch.clamp(torch.nan_to_num(v, posinf=PSNR_CAP_DB), max=PSNR_CAP_DB))
    return float(torch.cat(vals).mean())


def ssim(real: Any, fake: Any, batch: int = 16) -> float:
    """Mean over frames of SSIM (torchmetrics: Gaussian 11x11, sigma 1.5, data range 1)."""
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    r, f = _pair(real, fake)
    vals = [structural_similarity_index_measure(to_tensor(f[i:i + batch]), to_tensor(r[i:i + batch]),
                                                data_range=1.0, reduction="none")
            for i in range(0, len(r), batch)]
    return float(torch.cat([v.reshape(-1) for v in vals]).mean())


class LPIPS:
    """LPIPS (Zhang et al. 2018), AlexNet variant: torchmetrics' network and its shipped
    linear layers, the backbone loaded from `backbone_weights` (torchvision's
    alexnet-owt-7be5be79.pth state dict). Lower is closer."""

    def __init__(self, backbone_weights: str | os.PathLike[str] | None, device: str = "cpu"):
        import torch
        from torchmetrics.functional.image.lpips import _LPIPS

        path = require_weights(backbone_weights, "LPIPS", "the AlexNet backbone weights (torchvision's "
                               "alexnet-owt-7be5be79.pth)", "--lpips-weights / eval.lpips_weights")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        net = _LPIPS(pretrained=True, net="alex", pnet_rand=True)
        want = {}
        for key in net.net.state_dict():
            slice_name, rest = key.split(".", 1)  # "slice2.3.weight" -> torchvision "features.3.weight"
            want[key] = f"features.{rest}"
        missing = [v for v in want.values() if v not in state]
        if missing:
            raise ValueError(f"{path}: not a torchvision AlexNet state dict (missing {missing[:3]})")
        net.net.load_state_dict({k: state[v] for k, v in want.items()})
        self.net = net.to(device).eval()
        self.device = device
        self.path = path

    def __call__(self, real: Any, fake: Any, batch: int = 8) -> float:
        import torch

        r, f = _pair(real, fake)
        vals = []
        with torch.inference_mode():
            for i in range(0, len(r), batch):
                a = to_tensor(r[i:i + batch], self.device) * 2 - 1
                b = to_tensor(f[i:i + batch], self.device) * 2 - 1
                vals.append(self.net(b, a).reshape(-1).cpu())
        return float(torch.cat(vals).mean())


# ------------------------------------------------------------------------ no-reference

def cpbd(frames: Any, max_frames: int | None = 4) -> float:
    """Mean CPBD sharpness (Narvekar & Karam 2011; the `cpbd` package) of up to max_frames
    frames spread over the video, on MATLAB-style gray. Higher is sharper, in [0, 1]."""
    import cpbd as _cpbd

    from models.metrics.niqe import rgb2gray_matlab

    v = _check_frames(frames, "frames")
    return float(np.mean([_cpbd.compute(rgb2gray_matlab(v[i])) for i in sample_indices(len(v), max_frames)]))


def niqe(frames: Any, max_frames: int | None = 4, params_path: str | None = None) -> float:
    """Mean NIQE of up to max_frames frames spread over the video. Lower is better."""
    from models.metrics.niqe import niqe as _niqe

    v = _check_frames(frames, "frames")
    vals = [_niqe(v[i], params_path) for i in sample_indices(len(v), max_frames)]
    vals = [x for x in vals if np.isfinite(x)]
    return float(np.mean(vals)) if vals else float("nan")


# ---------------------------------------------------------------------------- set-level

class FID:
    """Frechet Inception Distance over frames (torchmetrics' FrechetInceptionDistance).

    weights: torch-fidelity's pt_inception-2015-12-05-6726825d.pth (the TF-FID Inception),
    or extractor: any nn.Module mapping (N, 3, H, W) uint8 images to (N, D) features (tests
    use a small random one). Frames are added with `update(frames, real=...)`.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, extractor: Any = None, device: str = "cpu"):
        from torchmetrics.image.fid import FrechetInceptionDistance

        if extractor is None:
            path = require_weights(weights, "FID", "the Inception weights (torch-fidelity's "
                                   "pt_inception-2015-12-05-6726825d.pth)", "--fid-weights / eval.fid_weights")
            self.metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path))
            self.label = f"Inception ({path.name})"
        else:
            self.metric = FrechetInceptionDistance(feature=extractor)
            self.label = f"custom extractor ({type(extractor).__name__})"
        self.metric = self.metric.to(device)
        self.device = device
        self.counts = {True: 0, False: 0}

    def update(self, frames: Any, real: bool, batch: int = 32) -> None:
        import torch

        v = _check_frames(frames, "frames")
        for i in range(0, len(v), batch):
            x = torch.from_numpy(np.ascontiguousarray(v[i:i + batch])).permute(0, 3, 1, 2).to(self.device)
            self.metric.update(x, real=real)
        self.counts[real] += len(v)

    def compute(self) -> float:
        if min(self.counts.values()) < 2:
            return float("nan")
        return float(self.metric.compute())

    def features(self, frames: Any, batch: int = 32) -> np.ndarray:
        """(N, D) float64 features of (N, H, W, 3) uint8 frames, from the same extractor
        (so that any subset of clips, e.g. one perceived group, gets its own FID through
        `motion.frechet_distance_features`)."""
        import torch

        v = _check_frames(frames, "frames")
        out = []
        with torch.inference_mode():
            for i in range(0, len(v), batch):
                x = torch.from_numpy(np.ascontiguousarray(v[i:i + batch])).permute(0, 3, 1, 2).to(self.device)
                out.append(self.metric.inception(x).reshape(len(x), -1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0))


class FVD:
    """Frechet Video Distance with I3D features: the TorchScript I3D of StyleGAN-V / the
    FVD reference code (i3d_torchscript.pt), called as model(x, rescale=False, resize=True,
    return_features=True) on (N, 3, T, H, W) float in [-1, 1]; `clip_frames` consecutive
    frames per clip (16 as in the FVD papers)."""

    def __init__(self, weights: str | os.PathLike[str] | None, device: str = "cpu", clip_frames: int = 16):
        import torch

        path = require_weights(weights, "FVD", "the I3D TorchScript file (i3d_torchscript.pt)",
                               "--fvd-weights / eval.fvd_weights")
        self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device, self.clip_frames = device, clip_frames
        self.feats: dict[bool, list[np.ndarray]] = {True: [], False: []}

    def features(self, frames: Any) -> np.ndarray:
        """(n, D) I3D features of the n = T // clip_frames consecutive clips of a video."""
        import torch

        v = _check_frames(frames, "frames")
        out = []
        for i in range(len(v) // self.clip_frames):
            clip = v[i * self.clip_frames:(i + 1) * self.clip_frames]
            x = torch.from_numpy(np.ascontiguousarray(clip)).to(self.device).permute(3, 0, 1, 2)[None].float()
            with torch.inference_mode():
                f = self.model(x / 127.5 - 1, rescale=False, resize=True, return_features=True)
            out.append(f.reshape(1, -1).cpu().numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, 0))

    def update(self, frames: Any, real: bool) -> None:
        f = self.features(frames)
        if len(f):
            self.feats[real].append(f)

    def compute(self) -> float:
        from models.metrics.motion import frechet_distance_features

        if min(len(self.feats[True]), len(self.feats[False])) < 2:
            return float("nan")
        return frechet_distance_features(np.concatenate(self.feats[False]), np.concatenate(self.feats[True]))


# ------------------------------------------------------------------------ stochasticity

def stochasticity_map(samples: Any) -> np.ndarray:
    """(K, T, H, W, 3) uint8 K samples of one input -> (H, W) per-pixel standard deviation
    across the samples (0..255 units, averaged over colour channels and over time)."""
    s = np.asarray(samples)
    if s.ndim != 5 or s.shape[-1] != 3 or len(s) < 2:
        raise ValueError(f"samples has shape {s.shape}; expected (K >= 2, T, H, W, 3)")
    t = min(len(x) for x in s)
    return s[:, :t].astype(np.float32).std(axis=0).mean(axis=(0, 3))
