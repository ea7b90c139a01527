"""Ground-truth scenarios for judging an SMPL-X fitter: motion, camera, MediaPipe-like landmarks.

Separate on purpose from annotate/smplx_synth.py (the fitter's test helper): its own motion
generator, camera, landmark model and noise, so that a fitter tuned on one is judged on the
other. Used by benchmarks/smplx_truth.py.

    from mentor.body.scenarios import SCENARIOS, make_truth
    truth = make_truth(body, SCENARIOS["away"], num_frames=250)
    truth.arrays      # landmarks.{pose,face,left_hand,right_hand} as the landmarks annotator stores them
    truth.params      # the SMPL-X parameters that made them (camera space), truth.joints (T,55,3)

Motion. Arms are specified by direction: per frame, the upper arm's and the forearm's unit
directions in the torso's frame (x the body's left, y up, z forward); the shoulder rotation
takes the rest arm onto the upper arm with the elbow's hinge in the plane of the two (an
elbow bends one way, as the fitter's prior and real elbows do), the elbow bends by the
angle between them and twists a little about the forearm. Head, spine, collars, wrists,
hands, jaw, eyes and expression move as smooth random signals; kinds:
  talking    forearms forward, hands drifting; jaw and expression follow a syllable rhythm
  beats      quick down-strokes of the forearms at ~2 Hz (beat gestures)
  crossed    forearms crossed in front of the chest
  toward     forearms pointing at the camera (strongly foreshortened)
  away       elbows out, forearms up and back: a hand raised beside the head
  switch     toward and away in turn, each change in 0.45 s
  hanging    arms hanging, forearms forward-down (the talking head's usual out-of-frame arms)

Camera. OpenCV pinhole at the origin, 512x512, focal 1000 px, principal point at the
centre; the person stands at `distance` m (1.3-2.8), the camera tilted (+-10 deg) and panned
(+-15 deg) by the seed, aimed at `aim_height` m above the pelvis (0.46: torso up; 0.70 cuts
the frame at the chest). The camera's rotation is folded into global_orient and transl, so
the truth is SMPL-X parameters in camera space, like the fitter's output.

Landmarks. smplx's own forward pass (BodyOutput.points: joints, keypoint vertices, face
landmarks) at the MediaPipe indices the fitter reads (annotate/correspondences.py's
table: which model point a MediaPipe landmark is), projected. As MediaPipe does: pose z is
depth relative to the hips' midpoint in x's pixel scale (face: to the face's mean depth,
hands: to the wrist), with a per-clip scale error and noise; a pose point outside the image
gets visibility 0.05-0.2 and a position pulled halfway back to the border (MediaPipe places
unseen elbows near the border), points inside 0.9-1.0; a hand with a point outside the
image is not detected. Noise: white Gaussian `noise_px` per coordinate plus a slowly
drifting offset of half that (hands x1.5). Drop-outs remove the whole person in a frame
(all four arrays NaN): "keyframe" one frame on the fitter's keyframe grid, "runs" 5 % of
frames in runs of 1-4; outliers move a hand or a pose point 40-100 px in `outliers` of the
frames, or swap the hands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from mentor.body.model import BodyModel
from mentor.body.params import Camera, SmplxParams

Motion = Literal["talking", "beats", "crossed", "toward", "away", "switch", "hanging"]
MOTIONS = ("talking", "beats", "crossed", "toward", "away", "switch", "hanging")
SIZE = 512
FOCAL = 1000.0
FPS = 25.0
SWITCH_SECONDS = 0.45
# body_pose rows (SMPL-X joint - 1)
SPINE = (2, 5, 8)
NECK, HEAD, L_COLLAR, R_COLLAR, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = (
    11, 14, 12, 13, 15, 16, 17, 18, 19, 20)


@dataclass(frozen=True)
class Scenario:
    """One ground-truth case: motion kind, camera, landmark noise and damage."""

    name: str
    motion: Motion = "talking"
    distance: float = 1.9  # metres from the camera to the person's chest
    aim_height: float = 0.46  # metres above the pelvis that the image centre looks at (before tilt)
    noise_px: float = 1.0
    dropout: Literal["none", "keyframe", "runs"] = "none"
    outliers: float = 0.0  # share of frames with a gross landmark error
    focal_known: bool = True  # False: the fitter is not told the focal length
    seed: int = 0
    about: str = ""

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"scenario {self.name}: motion {self.motion!r}, use one of {MOTIONS}")
        if not 0.5 <= self.distance <= 10:
            raise ValueError(f"scenario {self.name}: distance {self.distance} m, use 0.5-10")


def _scenarios() -> dict[str, Scenario]:
    s = [
        Scenario("talking", "talking", about="talking, forearms forward, 1 px"),
        Scenario("beats", "beats", seed=1, about="beat gestures (quick down-strokes), 1 px"),
        Scenario("crossed", "crossed", seed=2, about="forearms crossed in front of the chest, 1 px"),
        Scenario("toward", "toward", seed=3, about="forearms pointing at the camera, 1 px"),
        Scenario("away", "away", seed=4, about="forearms up and away from the camera (hand by the head), 1 px"),
        Scenario("switch", "switch", seed=5, about="toward <-> away, each change in 0.45 s, 1 px"),
        Scenario("near_1px", "beats", distance=1.5, seed=6, about="camera at 1.5 m, gestures, 1 px"),
        Scenario("near_4px", "beats", distance=1.5, noise_px=4.0, seed=6, about="camera at 1.5 m, gestures, 4 px"),
        Scenario("far_1px", "beats", distance=2.5, seed=7, about="camera at 2.5 m, gestures, 1 px"),
        Scenario("far_4px", "beats", distance=2.5, noise_px=4.0, seed=7, about="camera at 2.5 m, gestures, 4 px"),
        Scenario("noise_2px", "talking", noise_px=2.0, about="talking, 2 px"),
        Scenario("noise_4px", "talking", noise_px=4.0, about="talking, 4 px"),
        Scenario("drop_keyframe", "beats", dropout="keyframe", seed=8,
                 about="person missing in one frame on a keyframe, 1 px"),
        Scenario("drop_runs", "beats", dropout="runs", seed=9, about="5 % of frames missing in runs of 1-4, 1 px"),
        Scenario("outliers", "talking", outliers=0.05, seed=10, about="5 % of frames with a gross landmark error"),
        Scenario("cut_chest", "hanging", distance=1.5, aim_height=0.70, seed=11,
                 about="frame cut at the chest: arms out of frame"),
        Scenario("focal_unknown", "talking", focal_known=False,
                 about="talking, 1 px, focal length not given (estimated by the fitter)"),
    ]
    return {x.name: x for x in s}


SCENARIOS: dict[str, Scenario] = _scenarios()


@dataclass
class Truth:
    """A scenario made: parameters, camera, clean and observed landmarks."""

    scenario: Scenario
    params: dict[str, np.ndarray]  # SMPL-X parameters in camera space (betas (1,B))
    camera: np.ndarray  # (3,) the true f, cx, cy
    size: tuple[int, int]  # width, height
    fps: float
    joints: np.ndarray  # (T,55,3) camera space, smplx's forward
    uv: np.ndarray  # (T,K,2) the targets' clean projections (annotate.correspondences.all_targets order)
    in_frame: np.ndarray  # (T,K) bool: the target projects inside the image
    present: np.ndarray  # (T,) bool: the person is in the landmarks (not dropped)
    clean: dict[str, np.ndarray]  # landmark arrays without noise or damage
    arrays: dict[str, np.ndarray]  # what the landmarks annotator would have stored
    upper_arm: np.ndarray = field(default=None)  # (T,2,3) left/right upper-arm unit directions, torso frame
    forearm: np.ndarray = field(default=None)  # (T,2,3) forearm directions, torso frame

    @property
    def num_frames(self) -> int:
        return len(self.joints)


# ------------------------------------------------------------------------ motion

def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-9)


def _wave(rng: np.random.Generator, T: int, fps: float, lo: float = 0.2, hi: float = 1.0, dims: int = 1) -> np.ndarray:
    """(T,dims) smooth random signal in about [-1, 1]: two sinusoids and a filtered random walk."""
    t = np.arange(T)[:, None] / fps
    out = np.zeros((T, dims))
    for _ in range(2):
        out += 0.35 * np.sin(2 * np.pi * rng.uniform(lo, hi, dims) * t + rng.uniform(0, 2 * np.pi, dims))
    walk = np.cumsum(rng.normal(0, 1, (T, dims)), 0)
    k = max(int(fps / hi), 1)
    kernel = np.hanning(2 * k + 1)
    walk = np.stack([np.convolve(np.pad(walk[:, d], k, mode="edge"), kernel / kernel.sum(), "valid")
                     for d in range(dims)], 1)
    walk -= walk.mean(0)
    walk /= np.abs(walk).max(0).clip(1e-9)
    return out + 0.3 * walk


def _beats(rng: np.random.Generator, T: int, fps: float, rate: float = 2.0) -> np.ndarray:
    """(T,) pulses in [0,1] of ~0.12 s at random beat times (`rate` per second, with pauses)."""
    t = np.arange(T) / fps
    times, now = [], rng.uniform(0, 0.5)
    while now < T / fps:
        times.append(now)
        now += rng.uniform(0.8, 1.6) / rate * (3.0 if rng.random() < 0.15 else 1.0)
    if not times:
        return np.zeros(T)
    d = t[:, None] - np.array(times)[None]
    return np.exp(-0.5 * (d / 0.06) ** 2).max(1)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _switch(rng: np.random.Generator, T: int, fps: float) -> np.ndarray:
    """(T,) 0 (toward) / 1 (away) held 0.9-1.5 s, each change a smoothstep over 0.45 s."""
    t = np.arange(T) / fps
    level, state, now = np.zeros(T), 0.0, rng.uniform(0.5, 1.0)
    while now < T / fps:
        target = 1.0 - state
        level += (target - state) * _smoothstep((t - now) / SWITCH_SECONDS)
        state = target
        now += SWITCH_SECONDS + rng.uniform(0.9, 1.5)
    return level


def arm_directions(motion: Motion, T: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Upper-arm and forearm unit directions (T,2,3) [left, right] in the torso frame (x the
    body's left, y up, z forward); the right arm mirrors x and moves on its own."""
    upper, fore = np.zeros((T, 2, 3)), np.zeros((T, 2, 3))
    level = _switch(rng, T, fps) if motion == "switch" else None
    for side, sign in ((0, 1.0), (1, -1.0)):
        w = _wave(rng, T, fps, 0.2, 1.0, dims=6)
        if motion == "talking":
            u = np.c_[0.2 + 0.08 * w[:, 0], -np.ones(T), 0.3 + 0.12 * w[:, 1]]
            v = np.c_[0.05 + 0.2 * w[:, 2], 0.2 + 0.3 * w[:, 3], np.ones(T)]
        elif motion == "beats":
            pulse = _beats(rng, T, fps)
            u = np.c_[0.25 + 0.08 * w[:, 0], -np.ones(T), 0.4 + 0.15 * w[:, 1]]
            v = np.c_[0.1 + 0.2 * w[:, 2], 0.45 + 0.15 * w[:, 3] - 0.75 * pulse, np.ones(T)]
        elif motion == "crossed":
            u = np.c_[0.12 + 0.04 * w[:, 0], -np.ones(T), 0.5 + 0.08 * w[:, 1]]
            v = np.c_[-0.9 + 0.05 * w[:, 2], (0.25 if side == 0 else 0.05) + 0.05 * w[:, 3], 0.45 + 0.05 * w[:, 4]]
        elif motion == "toward":
            u = np.c_[0.2 + 0.05 * w[:, 0], -np.ones(T), 0.05 + 0.05 * w[:, 1]]
            v = np.c_[0.1 + 0.15 * w[:, 2], 0.05 + 0.15 * w[:, 3], np.ones(T)]
        elif motion == "away":
            u = np.c_[0.75 + 0.1 * w[:, 0], -0.3 + 0.1 * w[:, 1], 0.35 + 0.08 * w[:, 2]]
            v = np.c_[-0.15 + 0.1 * w[:, 3], 0.85 + 0.08 * w[:, 4], -0.5 + 0.1 * w[:, 5]]
        elif motion == "switch":
            a = level[:, None]
            u = (1 - a) * np.c_[0.2 + 0.05 * w[:, 0], -np.ones(T), 0.05 + 0.05 * w[:, 1]] + \
                a * np.c_[0.75 + 0.1 * w[:, 0], -0.3 + 0.1 * w[:, 1], 0.35 + 0.08 * w[:, 2]]
            v = (1 - a) * np.c_[0.1 + 0.15 * w[:, 2], 0.05 + 0.15 * w[:, 3], np.ones(T)] + \
                a * np.c_[-0.15 + 0.1 * w[:, 3], 0.85 + 0.08 * w[:, 4], -0.5 + 0.1 * w[:, 5]]
        else:  # hanging
            u = np.c_[0.12 + 0.04 * w[:, 0], -np.ones(T), 0.08 + 0.06 * w[:, 1]]
            v = np.c_[0.1 + 0.1 * w[:, 2], -0.5 + 0.2 * w[:, 3], 0.85 * np.ones(T)]
        u[:, 0] *= sign
        v[:, 0] *= sign
        upper[:, side], fore[:, side] = _unit(u), _unit(v)
    return upper, fore


def arm_rotations(upper: np.ndarray, fore: np.ndarray, side: int, twist: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Shoulder and elbow rotations (T,3,3), local (the collar's frame = torso frame), that point the
    upper arm along `upper` (T,3) and the forearm along `fore` (T,3), the elbow a hinge about its
    rest y axis (left bends about -y, right about +y, as SMPL-X's), `twist` (T,) rad about the forearm."""
    rest = np.array([1.0, 0, 0]) if side == 0 else np.array([-1.0, 0, 0])
    perp = fore - (fore * upper).sum(-1, keepdims=True) * upper
    # a nearly straight arm has no bending plane: fall back to bending forward
    fallback = np.cross(upper, np.array([0, 1.0, 0])) * (1 if side == 0 else -1)
    fallback = np.where(np.linalg.norm(fallback, axis=-1, keepdims=True) < 1e-3, [[0, 0, 1.0]], fallback)
    weak = np.linalg.norm(perp, axis=-1, keepdims=True) < 1e-3
    w = _unit(np.where(weak, _unit(fallback) - (_unit(fallback) * upper).sum(-1, keepdims=True) * upper, perp))
    # columns: images of x, y, z. Left: x -> upper, z -> w; right: -x -> upper, z -> w
    if side == 0:
        shoulder = np.stack([upper, np.cross(w, upper), w], -1)
    else:
        shoulder = np.stack([-upper, np.cross(upper, w), w], -1)
    bend = np.arccos(np.clip((fore * upper).sum(-1), -1, 1))
    sign = -1.0 if side == 0 else 1.0
    elbow = (Rotation.from_rotvec(np.c_[np.zeros_like(bend), sign * bend, np.zeros_like(bend)])
             * Rotation.from_rotvec(np.c_[twist * (rest[0]), np.zeros_like(bend), np.zeros_like(bend)])).as_matrix()
    return shoulder, elbow


def make_motion(scenario: Scenario, num_frames: int, fps: float = FPS, num_betas: int = 10,
                num_expression: int = 10, num_pca: int = 12) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Body-frame SMPL-X parameters (global_orient = upright facing the camera, transl 0) and the
    arm directions: (params, upper (T,2,3), fore (T,2,3))."""
    rng = np.random.default_rng([scenario.seed, 16])
    T = num_frames
    body = np.zeros((T, 21, 3))
    for j in SPINE:
        body[:, j] = 0.04 * _wave(rng, T, fps, 0.1, 0.5, 3)
    body[:, NECK] = 0.08 * _wave(rng, T, fps, 0.2, 0.8, 3)
    body[:, HEAD] = _wave(rng, T, fps, 0.3, 1.5, 3) * (0.15, 0.22, 0.08)
    body[:, L_COLLAR] = 0.05 * _wave(rng, T, fps, 0.2, 0.8, 3)
    body[:, R_COLLAR] = 0.05 * _wave(rng, T, fps, 0.2, 0.8, 3)
    upper, fore = arm_directions(scenario.motion, T, fps, rng)
    for side, (sh, el, wr, collar) in enumerate(((L_SHOULDER, L_ELBOW, L_WRIST, L_COLLAR),
                                                 (R_SHOULDER, R_ELBOW, R_WRIST, R_COLLAR))):
        twist = 0.25 * _wave(rng, T, fps, 0.2, 0.8)[:, 0]
        r_sh, r_el = arm_rotations(upper[:, side], fore[:, side], side, twist)
        # the directions are meant in the torso's frame: undo the collar's own rotation
        r_collar = Rotation.from_rotvec(body[:, collar]).as_matrix()
        body[:, sh] = Rotation.from_matrix(np.swapaxes(r_collar, 1, 2) @ r_sh).as_rotvec()
        body[:, el] = Rotation.from_matrix(r_el).as_rotvec()
        body[:, wr] = 0.3 * _wave(rng, T, fps, 0.3, 1.2, 3)
    # speech: syllables at ~4 Hz under a phrase envelope
    t = np.arange(T) / fps
    phrase = _smoothstep(0.5 + 2 * _wave(rng, T, fps, 0.1, 0.4)[:, 0])
    syllable = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + 3 * _wave(rng, T, fps, 0.3, 1.0)[:, 0])
    jaw = np.zeros((T, 3))
    jaw[:, 0] = 0.03 + 0.25 * phrase * syllable
    expression = 1.2 * _wave(rng, T, fps, 0.3, 2.0, num_expression)
    expression[:, 0] += 1.5 * phrase * syllable - 0.75
    sway = Rotation.from_rotvec(np.c_[0.04 * _wave(rng, T, fps, 0.1, 0.4), 0.12 * _wave(rng, T, fps, 0.1, 0.4),
                                      0.04 * _wave(rng, T, fps, 0.1, 0.4)])
    orient = (Rotation.from_rotvec([math.pi, 0, 0]) * sway).as_rotvec()
    eyes = 0.12 * _wave(rng, T, fps, 0.2, 1.0, 3)
    params = {
        "betas": np.clip(rng.normal(0, 1.0, (1, num_betas)), -2, 2),
        "global_orient": orient, "body_pose": body.reshape(T, 63), "jaw_pose": jaw,
        "leye_pose": eyes, "reye_pose": eyes.copy(),
        "left_hand_pose": 0.8 * _wave(rng, T, fps, 0.2, 1.0, num_pca),
        "right_hand_pose": 0.8 * _wave(rng, T, fps, 0.2, 1.0, num_pca),
        "expression": expression, "transl": np.zeros((T, 3)),
    }
    return params, upper, fore


def place_in_camera(body: BodyModel, params: dict[str, np.ndarray], scenario: Scenario, fps: float = FPS
                    ) -> dict[str, np.ndarray]:
    """Fold the camera (distance, tilt, pan, aim) into global_orient and transl: camera-space parameters.

    With X = R_b (X_rest - J0) + J0 + T_w in the body's world and X_c = R_c X + p:
    global_orient = R_c R_b, transl = R_c (J0 + T_w) + p - J0 (J0: the shaped model's pelvis)."""
    rng = np.random.default_rng([scenario.seed, 61])
    T = len(params["transl"])
    zero = {k: np.zeros_like(v[:1]) for k, v in params.items()}
    zero["betas"] = params["betas"]
    with torch.no_grad():
        rest = body(SmplxParams.from_dict(zero, device=body.device)).joints[0].cpu().numpy()
    j0 = rest[0]
    flip = Rotation.from_rotvec([math.pi, 0, 0]).as_matrix()
    aim_rest = j0 + np.array([0, scenario.aim_height, 0])
    aim = flip @ (aim_rest - j0) + j0  # where the aim point is in the upright body at transl 0
    tilt, pan = np.deg2rad(rng.uniform(-10, 10)), np.deg2rad(rng.uniform(-15, 15))
    r_cam = Rotation.from_rotvec([tilt, 0, 0]).as_matrix() @ Rotation.from_rotvec([0, pan, 0]).as_matrix()
    offset = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.03, 0.03), scenario.distance])
    sway = _wave(rng, T, fps, 0.05, 0.4, 3) * (0.02, 0.01, 0.03)
    t_world = -aim + sway
    r_body = Rotation.from_rotvec(params["global_orient"]).as_matrix()
    out = dict(params)
    out["global_orient"] = Rotation.from_matrix(r_cam @ r_body).as_rotvec()
    out["transl"] = (r_cam @ (j0 + t_world).T).T + offset - j0
    return out


# ------------------------------------------------------------------------ landmarks

def _targets():
    from annotate.correspondences import all_targets  # the MediaPipe index <-> model point table

    return all_targets()


def _drift(rng: np.random.Generator, shape: tuple[int, ...], sd: float) -> np.ndarray:
    """(T,...) AR(1) offsets (coefficient 0.9) with stationary sd `sd`."""
    out = np.zeros(shape)
    step = rng.normal(0, sd * math.sqrt(1 - 0.81), shape)
    out[0] = rng.normal(0, sd, shape[1:])
    for t in range(1, shape[0]):
        out[t] = 0.9 * out[t - 1] + step[t]
    return out


# landmark noise x this per array (hands: the hand model's points; the pose's hand points, rougher
# than its arm joints, as the hands')
NOISE_SCALE = {"landmarks.pose": 1.0, "landmarks.face": 1.0, "landmarks.left_hand": 1.5, "landmarks.right_hand": 1.5}
KNUCKLE_NOISE_SCALE = 1.5


def _observe(rng: np.random.Generator, uv: np.ndarray, rel_z: np.ndarray, obs_z: np.ndarray, inside: np.ndarray,
             source: np.ndarray, sigma: float, scale: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Some targets as MediaPipe reports them: (observed uv (T,N,2), z (T,N), visibility (T,N)) from
    their clean uv (T,N,2), relative z (T,N), z already scaled (T,N), in-image flags (T,N) and arrays
    (N,): per array (`scale`: its noise x sigma, in this order) white noise plus a drift of half of it, z noise; a point outside the image pulled
    halfway back to the border, visibility 0.05-0.2 there (0.9-1.0 inside)."""
    obs_uv, obs_z = uv.copy(), obs_z.copy()
    T = len(uv)
    for name in scale:
        sel = source == name
        n = int(sel.sum())
        s = sigma * scale[name]
        obs_uv[:, sel] += rng.normal(0, s, (T, n, 2)) + _drift(rng, (T, n, 2), 0.5 * s)
        spread = np.nanstd(rel_z[:, sel]) if n else 0.0
        obs_z[:, sel] += rng.normal(0, 0.15 * spread + 2 * s, (T, n))
    border = np.clip(uv, 0, SIZE - 1)
    outside = ~inside
    obs_uv[outside] = border[outside] + 0.5 * (uv[outside] - border[outside]) + rng.normal(0, 3 * sigma + 4,
                                                                                           (int(outside.sum()), 2))
    vis = np.where(inside, rng.uniform(0.9, 1.0, inside.shape), rng.uniform(0.05, 0.2, inside.shape))
    return obs_uv, obs_z, vis


def dropped_frames(scenario: Scenario, T: int, keyframe_stride: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) bool: frames where the person is missing from every landmark array."""
    gone = np.zeros(T, bool)
    if scenario.dropout == "keyframe" and T >= 3 * keyframe_stride:
        gone[int(round(T / 2 / keyframe_stride)) * keyframe_stride] = True
    elif scenario.dropout == "runs":
        while gone.mean() < 0.05:
            start = int(rng.integers(1, T - 1))
            gone[start:start + int(rng.integers(1, 5))] = True
    return gone


@torch.no_grad()
def make_truth(body: BodyModel, scenario: Scenario, num_frames: int = 250, fps: float = FPS,
               keyframe_stride: int = 8, focal: float = FOCAL) -> Truth:
    """The scenario's ground truth and its landmarks (see the module docstring).

    keyframe_stride: the fitter's, for the "keyframe" drop-out (a missing frame on its grid);
    focal: the camera's (px; a wider field needs the person nearer to fill the frame: the distance)."""
    if num_frames < 3:
        raise ValueError(f"num_frames={num_frames}: a scenario needs at least 3 frames")
    if not focal > 0:
        raise ValueError(f"focal={focal!r}: the camera's focal length must be a positive number of pixels")
    from annotate.correspondences import KNUCKLE_GROUPS

    rng = np.random.default_rng([scenario.seed, 7])
    T = num_frames
    local, upper, fore = make_motion(scenario, T, fps, body.num_betas, body.num_expression, body.num_pca_comps)
    params = place_in_camera(body, local, scenario, fps)
    out = body(SmplxParams.from_dict(params, device=body.device))
    targets = _targets()
    points = out.points([t.point for t in targets]).cpu().numpy().astype(np.float64)  # (T,K,3)
    joints = out.joints.cpu().numpy().astype(np.float64)
    camera = Camera.centered(focal, SIZE, SIZE)
    uv = camera.project(torch.as_tensor(points, dtype=torch.float32)).numpy().astype(np.float64)
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < SIZE) & (uv[..., 1] >= 0) & (uv[..., 1] < SIZE) & (points[..., 2] > 0)

    # MediaPipe's relative depth, in x's pixel scale at the person's distance
    hips = joints[:, [1, 2]].mean(1)  # SMPL-X hips (MediaPipe's hip points sit near them)
    source = np.array([t.source for t in targets])
    index = np.array([t.index for t in targets])
    ref_depth = np.zeros((T, len(targets)))
    ref_depth[:, source == "landmarks.pose"] = hips[:, None, 2]
    face = source == "landmarks.face"
    ref_depth[:, face] = points[:, face, 2].mean(1, keepdims=True)
    for name, joint in (("landmarks.left_hand", 20), ("landmarks.right_hand", 21)):
        ref_depth[:, source == name] = joints[:, None, joint, 2]
    rel_z = focal * (points[..., 2] - ref_depth) / ref_depth

    shapes = {"landmarks.pose": 33, "landmarks.face": 478, "landmarks.left_hand": 21, "landmarks.right_hand": 21}
    clean = {k: np.full((T, n, 4 if k == "landmarks.pose" else 3), np.nan) for k, n in shapes.items()}
    for name in shapes:
        sel = source == name
        clean[name][:, index[sel], :2] = uv[:, sel]
        clean[name][:, index[sel], 2] = rel_z[:, sel]
    pose_sel = source == "landmarks.pose"
    clean["landmarks.pose"][:, index[pose_sel], 3] = np.where(inside[:, pose_sel], 0.99, 0.1)

    # observed: noise (white + drift), MediaPipe's z error, visibility, out-of-frame behaviour; the
    # pose's hand points (knuckles) from a stream of their own, the other points' draws as before them
    z_scale = rng.uniform(0.6, 1.0)  # MediaPipe's depth is compressed by an unknown factor
    knuckle = np.array([t.group in KNUCKLE_GROUPS for t in targets])
    obs_uv, obs_z, vis = uv.copy(), rel_z * z_scale, np.zeros(inside.shape)
    for sel, stream, scale in ((~knuckle, rng, NOISE_SCALE), (knuckle, np.random.default_rng([scenario.seed, 17]),
                                                              {"landmarks.pose": KNUCKLE_NOISE_SCALE})):
        obs_uv[:, sel], obs_z[:, sel], vis[:, sel] = _observe(stream, uv[:, sel], rel_z[:, sel], obs_z[:, sel],
                                                              inside[:, sel], source[sel], scenario.noise_px, scale)
    arrays = {k: np.full_like(v, np.nan) for k, v in clean.items()}
    for name in shapes:
        sel = source == name
        arrays[name][:, index[sel], :2] = obs_uv[:, sel]
        arrays[name][:, index[sel], 2] = obs_z[:, sel]
    arrays["landmarks.pose"][:, index[pose_sel], 3] = vis[:, pose_sel]
    for name in ("landmarks.left_hand", "landmarks.right_hand"):  # a hand partly outside is not detected
        sel = source == name
        arrays[name][~inside[:, sel].all(1)] = np.nan
    face_out = (~inside[:, face]).mean(1) > 0.3
    arrays["landmarks.face"][face_out] = np.nan

    # gross errors: a hand or a pose point jumps, or the hands swap
    if scenario.outliers > 0:
        for t in np.flatnonzero(rng.random(T) < scenario.outliers):
            kind = rng.integers(3)
            jump = rng.uniform(40, 100) * _unit(rng.normal(0, 1, 2))
            if kind == 0:
                name = ("landmarks.left_hand", "landmarks.right_hand")[rng.integers(2)]
                arrays[name][t, :, :2] += jump
            elif kind == 1:
                arrays["landmarks.pose"][t, rng.choice([13, 14, 15, 16]), :2] += jump
            else:
                left = arrays["landmarks.left_hand"][t].copy()
                arrays["landmarks.left_hand"][t] = arrays["landmarks.right_hand"][t]
                arrays["landmarks.right_hand"][t] = left
    gone = dropped_frames(scenario, T, keyframe_stride, rng)
    for a in arrays.values():
        a[gone] = np.nan
    return Truth(scenario=scenario, params=params, camera=camera.to_array(), size=(SIZE, SIZE), fps=fps,
                 joints=joints, uv=uv, in_frame=inside, present=~gone,
                 clean={k: v.astype(np.float32) for k, v in clean.items()},
                 arrays={k: v.astype(np.float32) for k, v in arrays.items()}, upper_arm=upper, forearm=fore)
