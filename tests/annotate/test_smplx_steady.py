"""The shape stage's steadied pose points (annotate/smplx_steady.py, smplx_fit.steady_pose): with 4 px of
noise the arm bones came out long against the shoulders and the eyes (a frame whose noise shortens a bone
is explained by its tilt in depth, one that lengthens it only by a longer bone)."""

from dataclasses import dataclass

import numpy as np
import torch

import annotate.smplx_fit as fit_module
from annotate.smplx_steady import steadied


def _track(frames: int = 80, noise: float = 4.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, noisy) (T,3,2): three points on quadratic paths, white noise of `noise` px."""
    t = torch.arange(frames, dtype=torch.float64)
    clean = torch.stack([0.04 * t ** 2 + 100, 2.5 * t + 50], -1)[:, None].repeat(1, 3, 1)
    clean[:, 1] += 30
    noisy = clean + noise * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return clean.float(), noisy.float()


def test_a_quadratic_path_is_kept_and_white_noise_shrinks():
    clean, noisy = _track()
    seen = torch.ones(clean.shape[:2], dtype=torch.bool)
    rows = np.array([True, True, False])
    assert torch.allclose(steadied(clean, seen, rows, 3), clean, atol=1e-3)  # a stroke's curvature kept
    out = steadied(noisy, seen, rows, 3)
    before = (noisy - clean)[:, :2].pow(2).mean().sqrt()
    after = (out - clean)[:, :2].pow(2).mean().sqrt()
    assert after < 0.7 * before  # 7 frames' quadratic: sd x 0.58 in the middle, more at the ends
    assert torch.equal(out[:, 2], noisy[:, 2])  # not one of the rows
    assert torch.equal(steadied(noisy, seen, rows, 0), noisy)


def test_unseen_frames_are_left_and_not_read():
    clean, noisy = _track()
    seen = torch.ones(clean.shape[:2], dtype=torch.bool)
    seen[20:23, 0] = False
    noisy[20:23, 0] = 1e4  # a missing landmark's value must not leak into its neighbours
    out = steadied(noisy, seen, np.array([True, False, False]), 3)
    assert torch.equal(out[20:23, 0], noisy[20:23, 0])
    assert (out[15:28, 0] - clean[15:28, 0]).abs()[~torch.isin(torch.arange(15, 28), torch.arange(20, 23))].max() < 20


@dataclass
class _Keys:
    observed: torch.Tensor
    confidence: torch.Tensor
    groups: tuple
    bounds: torch.Tensor | None = None


def test_the_shape_stage_reads_a_noisy_clips_pose_points_steadied():
    clean, noisy = _track()
    objective = _Keys(noisy, torch.ones(clean.shape[:2]), ("body", "body", "face"))
    keys = torch.arange(0, 80, 8)
    on_keys = _Keys(noisy[keys], torch.ones(len(keys), 3), objective.groups)
    assert fit_module.steady_pose(objective, keys, False, on_keys, noise_factor=1.0) is on_keys  # a 1 px clip: as it was
    steady = fit_module.steady_pose(objective, keys, False, on_keys, noise_factor=3.0)
    assert fit_module.SHAPE_STEADY_HALF > 0
    assert (steady.observed - clean[keys])[:, :2].abs().mean() < 0.8 * (noisy - clean)[keys][:, :2].abs().mean()
    assert torch.equal(steady.observed[:, 2], noisy[keys][:, 2])  # the face's points as they are
