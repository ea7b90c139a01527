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
        return torch.diag_embed(self.gn_diagonal(body_pose))

    def gn_diagonal(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(T,63) -> (T,63): gn_hessian's diagonal, all of it (the Gauss-Newton build adds only this)."""
        d = torch.full_like(body_pose, 2.0).view(-1, 21, 3).clone()
        pose = body_pose.view(-1, 21, 3)
        for j, axis, sign in ANGLE_LIMITS:
            d[:, j, axis] = d[:, j, axis] + 20.0 * (sign * pose[:, j, axis] > 0).to(pose.dtype)
        return d.reshape(-1, 63)


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

    def gn_diagonal(self, body_pose: torch.Tensor) -> None:
        """None: gn_hessian is a full matrix (the component's precision)."""
        return None


def make_pose_prior(path: str | None) -> nn.Module:
    return GMMPosePrior(path) if path else BuiltinPosePrior()


# body_pose joint indices (SMPL-X joint - 1) of spine1-3: what bends the torso between the hips and the chest
SPINE_POSE = (2, 5, 8)
# ... and of the collars (SMPL-X 13, 14): what moves a shoulder against the chest
COLLAR_POSE = (12, 13)


class HeldJoints(nn.Module):
    """A pose prior plus weight x |the rotations of `joints`|^2 (per rad^2): those joints held
    near zero beyond what the prior alone does (~1 per rad^2 against hundreds of px^2 of data)."""

    def __init__(self, prior: nn.Module, weight: float, joints: tuple[int, ...], what: str = "held joints"):
        super().__init__()
        if weight < 0:
            raise ValueError(f"{what} weight {weight}: use >= 0")
        self.prior = prior
        self.weight = float(weight)
        mask = torch.zeros(21, 3)
        mask[list(joints)] = 1.0
        self.register_buffer("mask", mask.reshape(63))

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:
        return self.prior(body_pose) + self.weight * (self.mask * body_pose ** 2).sum(1)

    def gn_hessian(self, body_pose: torch.Tensor) -> torch.Tensor:
        return self.prior.gn_hessian(body_pose) + torch.diag(2 * self.weight * self.mask)

    def gn_diagonal(self, body_pose: torch.Tensor) -> torch.Tensor | None:
        """gn_hessian's diagonal where the held prior's Hessian is diagonal, else None."""
        diagonal = self.prior.gn_diagonal(body_pose)
        return None if diagonal is None else diagonal + 2 * self.weight * self.mask


class HeldSpine(HeldJoints):
    """The spine held straight where the hips are not seen. In a frame cut at the chest nothing
    in the image pins the pelvis: under the prior alone the spine bent ~4 deg at each of its
    three joints, the fitted neck->pelvis axis 9 deg off the truth's and leaning toward the
    camera, and the hanging arms looked raised against it (see mentor/config.py
    smplx.held_spine_weight for the figures)."""

    def __init__(self, prior: nn.Module, weight: float):
        super().__init__(prior, weight, SPINE_POSE, "held spine")


def hold_torso(prior: nn.Module, collar_weight: float, spine_weight: float) -> nn.Module:
    """The built-in prior with the collars (COLLAR_POSE) and the spine (SPINE_POSE) held at these
    weights (HeldJoints; 0: that part not held); prior itself when it is a learnt one (SMPLify's
    GMM carries the torso's own spread). With the pelvis out of frame nothing in 2D pins the
    body's pitch: on issue 16's outliers truth the fitted body pitched 15 deg against the truth's
    with the collars turned 20 deg back against it and the spine bent 3 deg at each joint, the
    shoulders 20 mm behind the truth's (PA-MPJPE 23.7 mm at a 0.65 px 2D fit); with the collars
    alone held the spine took the pitch up (6-8 deg per joint). Figures: mentor/config.py
    smplx.held_collar_weight."""
    if not isinstance(prior, BuiltinPosePrior):
        return prior
    for weight, joints, what in ((collar_weight, COLLAR_POSE, "held collar"), (spine_weight, SPINE_POSE, "held spine")):
        if weight < 0:
            raise ValueError(f"{what} weight {weight}: use >= 0")
        if weight > 0:
            prior = HeldJoints(prior, weight, joints, what)
    return prior


def hold_spine_if_cut(prior: nn.Module, observed: np.ndarray, weight: float) -> nn.Module:
    """prior wrapped in HeldSpine(weight) when the frame cuts the torso at the chest: the hips
    (SMPL-X joints 1, 2) and the elbows (18, 19) each observed in under half of the frames that
    observe anything (observed (T,55) bool, smplx_fit.observed_joints); prior itself otherwise,
    or with weight 0. Not on the hips alone: at 1.9 m the benchmark's hips are just out of frame
    in 15 of 17 scenarios, and there holding the spine cost beats 8.9 -> 14.6 mm PA-MPJPE (with
    the collars free: with them held too, `hold_torso`, beats gained, 8.5 -> 6.6 mm; where both
    are on, this adds its weight on top on a cut torso)."""
    frames = observed.any(1)
    if weight <= 0 or not frames.any():
        return prior
    seen = observed[frames]
    cut = seen[:, [1, 2]].any(1).mean() < 0.5 and seen[:, [18, 19]].any(1).mean() < 0.5
    return HeldSpine(prior, weight) if cut else prior
