"""Body pose priors: SMPLify's Gaussian mixture when the user has it, else a built-in one.

The GMM (`gmm_08.pkl` from SMPLify: means (K,69), covars (K,69,69), weights (K,)) is read
like smplify-x's MaxMixturePrior: the cost is the negative log-likelihood of the best
component, over the 63 body-pose values SMPL-X has (the GMM's first 63 dims: SMPL's
hand joints are dropped). Without it, the built-in prior is a squared distance from a rest pose plus
smplify-x's joint-angle limits: elbows and knees bend one way only; its mean has the arms at
the sides (an arm the clip never shows falls there, not into the T-pose).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

# (body_pose joint index (SMPL-X joint - 1), axis, sign of the forbidden direction)
# left elbow bends about -y, right about +y; knees about +x (T-pose rest, smplx axes).
ANGLE_LIMITS = ((17, 1, 1.0), (18, 1, -1.0), (3, 0, -1.0), (4, 0, -1.0))


# the built-in prior's mean: a person standing with the arms hanging at the sides, elbows a
# little bent (body_pose joint index, axis, angle): not the T-pose, which is no one's rest
REST_MEAN = ((15, 2, -1.25), (16, 2, 1.25), (17, 1, -0.35), (18, 1, 0.35))


def rest_mean() -> torch.Tensor:
    """(63,) the built-in prior's mean body pose."""
    mean = torch.zeros(21, 3)
    for j, axis, angle in REST_MEAN:
        mean[j, axis] = angle
    return mean.reshape(63)


class BuiltinPosePrior(nn.Module):
    """Squared distance of the body pose from arms-at-the-sides (REST_MEAN) + a penalty on
    elbows/knees bending backwards. An unseen arm therefore hangs down, not out in a T."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", rest_mean())

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:
        """body_pose (T,63) -> (T,) cost."""
        pose = body_pose.view(-1, 21, 3)
        cost = ((body_pose - self.mean) ** 2).sum(1)
        for j, axis, sign in ANGLE_LIMITS:
            cost = cost + 10.0 * torch.relu(sign * pose[:, j, axis]) ** 2
        return cost

    def gn_hessian(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(T,63) -> (T,63,63) Hessian of forward (exact: the cost is piecewise quadratic)."""
        d = torch.full_like(body_pose, 2.0).view(-1, 21, 3).clone()
        pose = body_pose.view(-1, 21, 3)
        for j, axis, sign in ANGLE_LIMITS:
            d[:, j, axis] = d[:, j, axis] + 20.0 * (sign * pose[:, j, axis] > 0).to(pose.dtype)
        return torch.diag_embed(d.reshape(-1, 63))


class GMMPosePrior(nn.Module):
    """Max-mixture negative log-likelihood of a SMPLify GMM pickle (per frame)."""

    def __init__(self, path: str | Path):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: pose prior file not found (set annotate.smplx.pose_prior to "
                                    "SMPLify's gmm_08.pkl, or leave it empty for the built-in prior)")
        try:
            with open(path, "rb") as handle:
                gmm = pickle.load(handle, encoding="latin1")
            means, covars, weights = (np.asarray(gmm[k], np.float64) for k in ("means", "covars", "weights"))
        except Exception as e:
            raise ValueError(f"{path}: not a SMPLify GMM pickle with keys means/covars/weights ({e})") from None
        if means.ndim != 2 or means.shape[1] < 63 or covars.shape != (len(means), means.shape[1], means.shape[1]):
            raise ValueError(f"{path}: GMM shapes means {means.shape}, covars {covars.shape}; expected (K,>=63), (K,D,D)")
        means, covars = means[:, :63], covars[:, :63, :63]
        prec = np.linalg.inv(covars)
        logdet = np.linalg.slogdet(covars)[1]
        # constant part of each component's -log(w_k N(x | mu_k, S_k))
        const = -np.log(weights) + 0.5 * logdet + 0.5 * 63 * np.log(2 * np.pi)
        self.register_buffer("means", torch.tensor(means, dtype=torch.float32))
        self.register_buffer("precisions", torch.tensor(prec, dtype=torch.float32))
        self.register_buffer("const", torch.tensor(const - const.min(), dtype=torch.float32))

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:
        d = body_pose[:, None, :] - self.means  # (T,K,63)
        m = 0.5 * torch.einsum("tki,kij,tkj->tk", d, self.precisions, d) + self.const
        return m.min(1).values

    def gn_hessian(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(T,63) -> (T,63,63): the precision of each frame's best component."""
        d = body_pose[:, None, :] - self.means
        m = 0.5 * torch.einsum("tki,kij,tkj->tk", d, self.precisions, d) + self.const
        return self.precisions[m.argmin(1)]


def make_pose_prior(path: str | None) -> nn.Module:
    return GMMPosePrior(path) if path else BuiltinPosePrior()
