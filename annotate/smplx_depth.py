"""Depth of the arms: bones mirrored in depth where MediaPipe's relative z says so, for the
fitter's Viterbi.

A bone seen in 2D has two 3D directions that project alike: the one the fit found and the
one that puts its lower joint at the other point of the same camera ray, in front of or
behind the upper joint (`mirror_bone`). Gauss-Newton stays in whichever it started in: the
fitter's body stage ends with forearms held away from the camera pointing toward it (every
keyframe of the benchmark's away scenario), because the pose prior (arms hanging, elbows
bent forward) prefers that side and the z term in the objective (smplx_objective.DepthTerm,
Geman-McClure at 20 px) is flat where a flipped wrist is 60-150 px off. Measured there (33
keyframes after the body stage, the truth's pose solved in the same stage): the flipped fit
cost 717, the one from both bones mirrored 714 and the upper arms alone mirrored 596; the
pose prior at the body stage's weight pays ~200 more for the true forearms than for the
flipped ones, the z term only ~95 less.

So `evidence_mirrored` mirrors exactly the bones whose depth then agrees better with
MediaPipe's z of the pose landmarks (shoulder -> elbow -> wrist; by MIN_GAIN of the bone's
length), the fitter solves those keyframes again from there (smplx_fit.depth_restarts), and
a Viterbi picks per keyframe between the two with each one's cost plus `DepthEvidence.costs`
(the bones' disagreement with z, capped at the bone's own observed depth rather than at 20
px, so a flipped forearm pays in proportion) and the pose change between keyframes.

MediaPipe's z is relative (pose: to the hips' midpoint; in pixels of the image width when
the landmarks annotator stores it, in metres in the synthetic ground truth): only
differences along a bone are used, rescaled per clip to the model's depth in pixels
(f dz / Z) by the ratio of their median magnitudes, so its unit does not matter.

Before (the restarts of all four mirrored arm combinations, picked the same way; measured
with benchmarks/smplx_truth, 250 frames): the toward/away switch went from 28 % to 1.1 %
depth flips, but forearms held away got worse (PA-MPJPE 41 -> 54 mm; flips 54 % -> 41 %) at
about 1.5x the CPU: the combination that was right (upper arm and forearm both mirrored)
was not among the candidates, and the four extra solves cost. Now one extra solve, of the
keyframes that disagree only: figures at mentor/config.py (annotate.smplx.depth_restarts).
"""

from __future__ import annotations

import numpy as np
import torch

from annotate.smplx_flat import FlatSMPLX
from mentor.body.geometry import rodrigues

# (upper joint, lower joint) of the bones whose depth is mirrored: upper arms, forearms
ARM_BONES = ((16, 18), (17, 19), (18, 20), (19, 21))
# a bone is mirrored where that brings its depth this x its length nearer MediaPipe's z (a bone
# 7 deg out of the image plane moves by 0.25 when mirrored: nearer the plane z's noise decides)
MIN_GAIN = 0.25
DEPTH_WEIGHT = 0.05  # cost per px^2 of disagreement: a tie-breaker between fits the 2D data finds alike


def axis_angle_from_matrix(rotation: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (...,3,3) -> axis-angle (...,3) (angles in [0, pi])."""
    trace = rotation.diagonal(dim1=-2, dim2=-1).sum(-1)
    cos = ((trace - 1) / 2).clamp(-1 + 1e-6, 1 - 1e-6)
    angle = torch.acos(cos)
    axis = torch.stack([rotation[..., 2, 1] - rotation[..., 1, 2], rotation[..., 0, 2] - rotation[..., 2, 0],
                        rotation[..., 1, 0] - rotation[..., 0, 1]], -1)
    norm = axis.norm(dim=-1, keepdim=True)
    near_pi = norm[..., 0] < 1e-4
    if bool(near_pi.any()):  # sin(angle) ~ 0 at pi: the axis from the diagonal of (R + I) / 2
        diagonal = ((rotation.diagonal(dim1=-2, dim2=-1) + 1) / 2).clamp(min=0).sqrt()
        axis = torch.where(near_pi[..., None], diagonal, axis)
        norm = axis.norm(dim=-1, keepdim=True)
    return axis / norm.clamp(min=1e-9) * angle[..., None]


def rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(...,3,3) the smallest rotation taking direction a (...,3) to direction b (...,3)."""
    a = a / a.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    b = b / b.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    axis = torch.cross(a, b, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(sin, (a * b).sum(-1, keepdim=True))
    return rodrigues(axis / sin.clamp(min=1e-9) * angle)


def mirror_bone(flat: FlatSMPLX, x: torch.Tensor, upper: int, lower: int) -> torch.Tensor:
    """x (N,D) with the bone upper -> lower mirrored in depth: `lower` moved along its own
    camera ray to the other point at the bone's length from `upper` (same pixel, the other
    depth), by changing `upper`'s local rotation; the
    limb below keeps its world orientation when `lower` is free. x is returned as it is
    when `upper` is not a free joint."""
    if upper not in flat.body_free:
        return x
    chain = {int(j): n for n, j in enumerate(flat.chain)}
    with torch.no_grad():
        pose = flat._pose(x, None)
        world_rot, world_t = pose["Rw"], pose["tw"]
        transl = x[:, flat.layout["transl"]]
        top = world_t[:, chain[upper]] + transl
        end = world_t[:, chain[lower]] + transl
        bone = end - top
        # the other point of the lower joint's camera ray at the bone's length from the upper
        # joint: s1 + s2 = 2 ray . top for the two roots s of |s ray - top| = |bone|
        distance = end.norm(dim=-1, keepdim=True).clamp(min=1e-9)
        ray = end / distance
        mirrored = (2 * (ray * top).sum(-1, keepdim=True) - distance) * ray - top
        delta = rotation_between(bone, mirrored)  # world frame
        parent_rot = world_rot[:, int(flat.par[chain[upper]])]
        column = flat.layout["body"].start + 3 * flat.body_free.index(upper)
        local = rodrigues(x[:, column:column + 3])
        new_local = parent_rot.transpose(1, 2) @ delta @ parent_rot @ local
        out = x.clone()
        out[:, column:column + 3] = axis_angle_from_matrix(new_local)
        if lower in flat.body_free:  # the limb below keeps its world orientation (its image barely moves)
            lower_column = flat.layout["body"].start + 3 * flat.body_free.index(lower)
            new_upper_world = delta @ world_rot[:, chain[upper]]
            lower_local = new_upper_world.transpose(1, 2) @ world_rot[:, chain[lower]]
            out[:, lower_column:lower_column + 3] = axis_angle_from_matrix(lower_local)
    return out


class DepthEvidence:
    """MediaPipe's z along the arms, in the model's depth pixels.

    z (T,P) the relative z of the clip's active points (NaN where none); points (P,) their
    SMPL-X joint (-1 for points that are not joints). Only the ARM_BONES whose two ends are
    both observed with z in a frame count there.
    """

    def __init__(self, z: torch.Tensor, joints: np.ndarray):
        self.bones, self.joints = [], []  # (top, bottom) point indices and their (upper, lower) joints
        for upper, lower in ARM_BONES:
            top, bottom = np.flatnonzero(joints == upper), np.flatnonzero(joints == lower)
            if len(top) and len(bottom):
                self.bones.append((int(top[0]), int(bottom[0])))
                self.joints.append((upper, lower))
        if self.bones:
            top = torch.as_tensor([b[0] for b in self.bones], device=z.device)
            bottom = torch.as_tensor([b[1] for b in self.bones], device=z.device)
            self.top, self.bottom = top, bottom
            self.dz = z[:, bottom] - z[:, top]  # (T,B)
        self._scale: dict[str, float | None] = {"value": None}  # shared with subsets and repeats

    @property
    def scale(self) -> float | None:
        return self._scale["value"]

    @property
    def usable(self) -> bool:
        return bool(self.bones) and bool(torch.isfinite(self.dz).any())

    def subset(self, frames: torch.Tensor) -> "DepthEvidence":
        """The same evidence on some frames (the clip's scale stays shared)."""
        other = DepthEvidence.__new__(DepthEvidence)
        other.__dict__.update(self.__dict__)
        if self.bones:
            other.dz = self.dz[frames]
        return other

    def repeat(self, times: int) -> "DepthEvidence":
        other = DepthEvidence.__new__(DepthEvidence)
        other.__dict__.update(self.__dict__)
        if self.bones:
            other.dz = self.dz.repeat(times, 1)
        return other

    def model_dz(self, points: torch.Tensor, focal: float) -> torch.Tensor:
        """(T,B) the model's depth along the bones in pixels (f dz / z) from points (T,P,3)."""
        top, bottom = points[:, self.top], points[:, self.bottom]
        return focal * (bottom[..., 2] - top[..., 2]) / top[..., 2].clamp(min=1e-3)

    def calibrate(self, points: torch.Tensor, focal: float) -> None:
        """The clip's scale from the observed z's unit to model pixels (ratio of median magnitudes)."""
        model = self.model_dz(points, focal).abs()
        seen = torch.isfinite(self.dz) & (self.dz != 0)
        if not bool(seen.any()):
            return
        observed = self.dz[seen].abs().median()
        self._scale["value"] = float(model[seen].median() / observed.clamp(min=1e-9))

    def costs(self, points: torch.Tensor, focal: float) -> torch.Tensor:
        """(T,) DEPTH_WEIGHT x squared disagreement (px^2) summed over the frame's observed bones,
        each Geman-McClure-capped at the bone's own observed depth (a wild z costs at most that)."""
        if not self.usable or self.scale is None:
            return torch.zeros(points.shape[0], device=points.device)
        target = self.dz * self.scale
        residual = self.model_dz(points, focal) - target
        seen = torch.isfinite(target)
        rho2 = (target.abs() + 10.0) ** 2
        squared = torch.where(seen, residual, torch.zeros_like(residual)) ** 2
        return DEPTH_WEIGHT * (rho2 * squared / (rho2 + squared)).sum(1)

    def misfit(self, points: torch.Tensor, focal: float) -> torch.Tensor:
        """(T,B) how far each bone's depth in the model points (T,P,3) is from MediaPipe's, in
        bone lengths (both in model pixels; 0 where MediaPipe has no z or no scale is set)."""
        if not self.usable or self.scale is None:
            return torch.zeros(points.shape[0], len(self.bones), device=points.device)
        top, bottom = points[:, self.top], points[:, self.bottom]
        length = focal * (bottom - top).norm(dim=-1) / top[..., 2].clamp(min=1e-3)
        off = (self.model_dz(points, focal) - self.dz * self.scale).abs() / length.clamp(min=1e-6)
        return torch.nan_to_num(off, nan=0.0)


def evidence_mirrored(flat: FlatSMPLX, x: torch.Tensor, evidence: DepthEvidence, focal: float,
                      min_gain: float = MIN_GAIN) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N,D) with every arm bone mirrored in depth (smplx_depth.mirror_bone: the other 3D
    direction with the same image) where that brings its depth nearer MediaPipe's by at least
    min_gain x its length (upper arms first, then the forearms of the result), and (N,) bool:
    the frames changed.

    Gauss-Newton cannot cross from a forearm toward the camera to one away from it (the z term
    is flat beyond its robust scale and the pose prior prefers the nearer side), so the start
    is put on the side the evidence says, and the fit compared from there."""
    changed = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    with torch.no_grad():
        for forearms in (False, True):
            for b, (upper, lower) in enumerate(evidence.joints):
                if (upper in (18, 19)) != forearms:
                    continue
                mirrored = mirror_bone(flat, x, upper, lower)
                gain = evidence.misfit(flat(x, None), focal)[:, b] - evidence.misfit(flat(mirrored, None), focal)[:, b]
                better = gain >= min_gain
                x = torch.where(better[:, None], mirrored, x)
                changed |= better
    return x, changed
