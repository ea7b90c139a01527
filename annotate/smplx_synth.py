"""Synthetic ground truth for the SMPL-X fitter: smooth random motion of a talking,
gesturing upper body, rendered to MediaPipe-layout landmark arrays.

The landmarks come from smplx's own forward pass (not the fitter's sparse evaluator), are
placed at the MediaPipe indices the fitter reads (annotate/correspondences.py; the pose's hand
points 17-22 too, on the joints that table gives them), get pixel
noise and drop-outs, and points outside the image get low visibility, so a test runs the
same path as real footage. Used by tests/annotate/test_smplx_fit.py and benchmarks/smplx_fit.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from annotate.correspondences import all_targets, gather_observations
from mentor.body import BodyModel, Camera, SmplxParams


@dataclass
class SyntheticClip:
    params: dict[str, np.ndarray]  # ground truth; betas (1,B)
    camera: np.ndarray  # (3,) f, cx, cy
    joints: np.ndarray  # (T,55,3) camera space
    clean: dict[str, np.ndarray]  # landmark arrays without noise / drop-outs
    arrays: dict[str, np.ndarray]  # what the landmarks annotator would have stored
    size: int
    fps: float


def _smooth(rng, T: int, dims: int, fps: float, amp, freqs=(0.2, 1.2)) -> np.ndarray:
    """Sum of 3 random sinusoids per dimension: (T,dims), amplitude amp (scalar or (dims,))."""
    t = np.arange(T)[:, None] / fps
    out = np.zeros((T, dims))
    for _ in range(3):
        f = rng.uniform(*freqs, size=dims)
        phase = rng.uniform(0, 2 * np.pi, size=dims)
        out += np.sin(2 * np.pi * f * t + phase) / 3
    return out * np.asarray(amp)


def make_motion(num_frames: int, fps: float = 25.0, seed: int = 0, num_betas: int = 10, num_expression: int = 10,
                num_pca: int = 12) -> dict[str, np.ndarray]:
    """Ground-truth SMPL-X parameters of a person talking to the camera, torso up."""
    rng = np.random.default_rng(seed)
    T = num_frames
    body = np.zeros((T, 21, 3))
    amp = np.zeros((21, 3))
    amp[[2, 5, 8]] = 0.06  # spine
    amp[11] = 0.15; amp[14] = 0.25  # neck, head
    amp[[12, 13]] = 0.1  # collars
    amp[[15, 16]] = 0.3  # shoulders
    amp[[17, 18]] = (0.15, 0.5, 0.15)  # elbows
    amp[[19, 20]] = 0.3  # wrists
    body += _smooth(rng, T, 63, fps, amp.ravel()).reshape(T, 21, 3)
    body[:, 15, 2] += -1.3; body[:, 16, 2] += 1.3  # arms down
    body[:, 17, 1] += -1.6; body[:, 18, 1] += 1.6  # forearms bent forward
    body[:, 17, 1] = np.minimum(body[:, 17, 1], -0.05); body[:, 18, 1] = np.maximum(body[:, 18, 1], 0.05)
    orient = np.zeros((T, 3)); orient[:, 0] = math.pi
    orient += _smooth(rng, T, 3, fps, (0.04, 0.12, 0.04), (0.05, 0.3))
    jaw = np.zeros((T, 3)); jaw[:, 0] = 0.12 + _smooth(rng, T, 1, fps, 0.12, (1.0, 3.0))[:, 0]
    return {
        "betas": rng.normal(0, 0.7, (1, num_betas)),
        "global_orient": orient, "body_pose": body.reshape(T, 63), "jaw_pose": jaw,
        "leye_pose": _smooth(rng, T, 3, fps, 0.1, (0.1, 0.8)), "reye_pose": None,
        "left_hand_pose": _smooth(rng, T, num_pca, fps, 1.0, (0.2, 1.0)),
        "right_hand_pose": _smooth(rng, T, num_pca, fps, 1.0, (0.2, 1.0)),
        "expression": _smooth(rng, T, num_expression, fps, 1.0, (0.3, 2.0)),
        "transl": np.array([0.0, 0.36, 1.7]) + _smooth(rng, T, 3, fps, (0.03, 0.02, 0.05), (0.05, 0.3)),
    }


@torch.no_grad()
def render_clip(body_model: BodyModel, params: dict[str, np.ndarray], size: int = 512, focal: float = 1000.0,
                fps: float = 25.0, noise_px: float = 1.5, seed: int = 0, face_dropout: float = 0.04,
                pose_dropout: float = 0.03, hand_dropout: float = 0.15) -> SyntheticClip:
    """Project the model's landmarks with a known camera into MediaPipe-layout arrays."""
    rng = np.random.default_rng(seed + 1)
    params = dict(params)
    if params.get("reye_pose") is None:
        params["reye_pose"] = params["leye_pose"]  # eyes look the same way
    T = len(params["transl"])
    out = body_model(SmplxParams.from_dict(params, device=body_model.device))
    targets = all_targets()
    points = out.points([t.point for t in targets]).cpu()  # (T,K,3) camera space
    camera = Camera.centered(focal, size, size)
    uv = camera.project(points).numpy()
    depth = (points[..., 2] - out.joints[:, 0, 2].cpu()[:, None]).numpy()  # relative to the pelvis, as MediaPipe's z
    clean = {"landmarks.pose": np.full((T, 33, 4), np.nan, np.float32),
             "landmarks.face": np.full((T, 478, 3), np.nan, np.float32),
             "landmarks.left_hand": np.full((T, 21, 3), np.nan, np.float32),
             "landmarks.right_hand": np.full((T, 21, 3), np.nan, np.float32)}
    for k, t in enumerate(targets):
        a = clean[t.source]
        a[:, t.index, :2] = uv[:, k]
        a[:, t.index, 2] = depth[:, k]
    inside = lambda p: ((p[..., 0] > 0) & (p[..., 0] < size) & (p[..., 1] > 0) & (p[..., 1] < size))  # noqa: E731
    pose = clean["landmarks.pose"]
    pose[..., 3] = np.where(inside(pose), 0.99, 0.05)
    pose[..., 3] = np.where(np.isnan(pose[..., 0]), np.nan, pose[..., 3])
    noisy = {k: v.copy() for k, v in clean.items()}
    for k, a in noisy.items():
        a[..., :2] += rng.normal(0, noise_px, a[..., :2].shape)
    for k, rate in (("landmarks.face", face_dropout), ("landmarks.pose", pose_dropout)):
        noisy[k][rng.random(T) < rate] = np.nan
    for k in ("landmarks.left_hand", "landmarks.right_hand"):
        a = noisy[k]
        a[~inside(a).all(1)] = np.nan  # a hand partly out of frame is not detected
        # drop-outs come in runs, as a tracker loses a hand for a while
        start = 0
        while start < T:
            run = int(rng.integers(3, 12))
            if rng.random() < hand_dropout:
                a[start:start + run] = np.nan
            start += run
    return SyntheticClip(params=params, camera=camera.to_array(), joints=out.joints.cpu().numpy(), clean=clean,
                         arrays=noisy, size=size, fps=fps)



def fit_inputs(body_model: BodyModel, frames: int, seed: int, noise_px: float = 1.0, min_conf: float = 0.5):
    """A clip of make_motion rendered with noise_px, and what fit_clip takes from it:
    (clip, targets, xy (T,K,2), conf (T,K), sparse evaluator)."""
    from annotate.smplx_sparse import SparseSMPLX

    clip = render_clip(body_model, make_motion(frames, seed=seed), noise_px=noise_px, seed=seed)
    targets = all_targets()
    xy, conf = gather_observations(clip.arrays, targets, frames, min_conf)
    return clip, targets, xy, conf, SparseSMPLX(body_model, [t.point for t in targets])


def fit_arrays(body_model: BodyModel, arrays: dict[str, np.ndarray], size: int, focal: float, fps: float = 25.0,
               **settings):
    """The annotator (annotate.smplx_fit.SmplxFitter, config defaults but the focal, on the CPU, and
    `settings`: smplx config fields) on a record holding these landmark arrays: the fitted record."""
    from annotate.smplx_fit import SmplxFitter
    from mentor.config import SmplxConfig
    from mentor.record import ClipRecord

    frames = len(next(iter(arrays.values())))
    rec = ClipRecord(id="synthetic", source_id="synthetic", source_uri="synthetic", start=0, end=frames / fps,
                     fps=fps, width=size, height=size)
    for name, a in arrays.items():
        rec.add_array(name, a, fps)
    cfg = SmplxConfig(**({"focal_length": float(focal), "device": "cpu"} | settings))
    return SmplxFitter(cfg, body_model=body_model)(rec)
