"""SyncNet (Chung & Zisserman, "Out of time", 2016) for LSE-D / LSE-C, as in
joonson/syncnet_python and the Wav2Lip / LatentSync evaluations.

The layers and their names are those of syncnet_python's `S` so that its released
`syncnet_v2.model` (a plain state dict: "netcnnaud.0.weight", ...) loads as is. Inputs:

- lips: N x 3 x 5 x 224 x 224 float, five consecutive 25 fps face crops, BGR, 0..255;
- audio: N x 1 x 13 x 20 float, 13 MFCCs x 20 steps of 10 ms (0.2 s = the same five frames),
  computed like python_speech_features.mfcc on int16-scaled samples.

`lse()` slides the audio +-vshift frames against the video: LSE-D is the mean distance at
the best offset, LSE-C the median distance minus that (SyncNet's confidence).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

FPS = 25  # SyncNet was trained on 25 fps video and 100 Hz MFCCs: 4 MFCC steps per frame
SAMPLE_RATE = 16000
CROP = 224


class SyncNet(nn.Module):
    def __init__(self, embedding_dim: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512), nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding_dim))
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding_dim))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96), nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256), nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512), nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """N x 1 x 13 x 20 MFCC -> N x D."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 5 x 224 x 224 BGR 0..255 -> N x D."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path: str | Path, device: str = "cpu") -> SyncNet:
    """Load syncnet_python's state dict (e.g. syncnet_v2.model) into `SyncNet`.

    Raises FileNotFoundError naming the file, or ValueError when the keys or shapes are
    not SyncNet's (a different model's checkpoint).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"annotate.sync.syncnet_weights: {path} not found; give syncnet_python's syncnet_v2.model "
            "(a SyncNet state dict), or set it to null to skip LSE-D/LSE-C")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "netfcaud.3.weight" not in state:
        raise ValueError(f"{path}: not a SyncNet state dict (no 'netfcaud.3.weight' key)")
    model = SyncNet(embedding_dim=state["netfcaud.3.weight"].shape[0])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: does not match the SyncNet architecture ({str(e).splitlines()[0]})") from None
    return model.to(device).eval()


def mfcc(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """13 MFCCs every 10 ms (25 ms rectangular frames, 26 mel bands, 512-point FFT,
    pre-emphasis 0.97, lifter 22, c0 = log frame energy), as python_speech_features.mfcc
    computes them on int16 samples (what SyncNet was trained on). Returns frames x 13."""
    from scipy.fftpack import dct

    x = np.asarray(audio, np.float64) * 32768.0
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])
    flen, step, nfft = int(0.025 * sample_rate + 0.5), int(0.01 * sample_rate + 0.5), 512
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / step))
    x = np.pad(x, (0, max(0, (n - 1) * step + flen - len(x))))
    idx = np.arange(flen)[None, :] + step * np.arange(n)[:, None]
    pspec = np.abs(np.fft.rfft(x[idx], nfft)) ** 2 / nfft
    energy = pspec.sum(1)
    energy[energy == 0] = np.finfo(float).eps
    feat = pspec @ _mel_filterbank(26, nfft, sample_rate).T
    feat[feat == 0] = np.finfo(float).eps
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :13]
    cep *= 1 + 11.0 * np.sin(np.pi * np.arange(13) / 22)
    cep[:, 0] = np.log(energy)
    return cep


def _mel_filterbank(nfilt: int, nfft: int, sample_rate: int) -> np.ndarray:
    """Triangular filters on fft-bin edges, as python_speech_features.get_filterbanks."""
    high = 2595 * np.log10(1 + (sample_rate / 2) / 700.0)
    hz = 700 * (10 ** (np.linspace(0, high, nfilt + 2) / 2595.0) - 1)
    bins = np.floor((nfft + 1) * hz / sample_rate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def face_crops(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Square face crops as SyncNet saw them in training (syncnet_python's run_pipeline:
    the face box widened by 40 %, a bit more below the chin), resized to 224.

    frames: T x H x W x 3 uint8 RGB; boxes: T x 4 (x0, y0, x1, y1) pixels, NaN rows kept as
    the previous good box. Returns T x 224 x 224 x 3 uint8 BGR.
    """
    import cv2

    out = np.zeros((len(frames), CROP, CROP, 3), np.uint8)
    last = None
    for t, (img, box) in enumerate(zip(frames, boxes)):
        if np.all(np.isfinite(box)):
            last = box
        if last is None:
            continue
        x0, y0, x1, y1 = last
        half = max(x1 - x0, y1 - y0) / 2 * 1.4
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * half
        m = np.float32([[CROP / (2 * half), 0, CROP / 2 - cx * CROP / (2 * half)],
                        [0, CROP / (2 * half), CROP / 2 - cy * CROP / (2 * half)]])
        crop = cv2.warpAffine(img, m, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        out[t] = crop[:, :, ::-1]
    return out


@torch.inference_mode()
def lse(model: SyncNet, crops: np.ndarray, audio: np.ndarray, vshift: int = 15,
        batch_size: int = 16) -> tuple[float, float, int]:
    """(LSE-D, LSE-C, offset) of 25 fps BGR crops (T x 224 x 224 x 3) against 16 kHz audio.

    offset > 0: the audio is late (the video frame t matches the audio of frame t+offset);
    note syncnet_python prints the opposite sign.
    """
    device = next(model.parameters()).device
    cc = mfcc(audio).T.astype(np.float32)  # 13 x steps
    n = min(len(crops), cc.shape[1] // 4) - 4  # windows of 5 frames / 20 MFCC steps
    if n < 1:
        raise ValueError(f"clip too short for SyncNet: {len(crops)} frames, {len(audio) / SAMPLE_RATE:.2f} s audio")
    video = torch.from_numpy(crops).permute(3, 0, 1, 2).float()  # 3 x T x 224 x 224
    aud = torch.from_numpy(cc)
    lip_feats, aud_feats = [], []
    for i in range(0, n, batch_size):
        idx = range(i, min(n, i + batch_size))
        lip_feats.append(model.forward_lip(torch.stack([video[:, j:j + 5] for j in idx]).to(device)).cpu())
        aud_feats.append(model.forward_aud(torch.stack([aud[None, :, 4 * j:4 * j + 20] for j in idx]).to(device)).cpu())
    lip, au = torch.cat(lip_feats), torch.cat(aud_feats)
    padded = torch.nn.functional.pad(au, (0, 0, vshift, vshift))
    win = 2 * vshift + 1
    dists = torch.stack([torch.nn.functional.pairwise_distance(lip[[i]].repeat(win, 1), padded[i:i + win])
                         for i in range(n)])  # n x win: column j = audio lag j - vshift
    mean = dists.mean(0)
    best = int(torch.argmin(mean))
    return float(mean[best]), float(torch.median(mean) - mean[best]), best - vshift
