"""datasets.yaml: a typed, validated config.

Every section is a pydantic model with `extra="forbid"`, so a misspelt key is an error,
not a silently ignored setting. `load_config` reports the file, the line and the key of
every problem, and what is allowed there. Every value a later stage hands to a tool is
checked here (the x264 preset, device strings, an even frame size, unique source names),
so a run never starts with settings that would fail every clip.

The YAML is read safely: plain YAML types only (no custom or python tags), nesting at
most MAX_DEPTH deep, and no more than MAX_NODES nodes once aliases are expanded (an
"alias bomb" is refused at once rather than expanded), in UTF-8.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml import events as ev
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_NODES = 100_000  # nodes once every alias is expanded
MAX_BYTES = 4 << 20  # a config file is a few kB
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}


def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
        raise ValueError(f"device {value!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return value


Device = Annotated[str, AfterValidator(_device)]


class ConfigError(ValueError):
    """A config file (or value) that cannot be used; the message says where and why."""


class _Weights:
    """Marks a field that holds a local weights path (see WeightsPath)."""


WEIGHTS = _Weights()
# A local weights file or folder: `with_resolved_paths` makes it absolute against the
# config file's folder, so a section that declares its weights this way needs no table.
WeightsPath = Annotated[str | None, WEIGHTS]


def weight_fields(section: type[BaseModel]) -> list[str]:
    """The fields of a config section declared as WeightsPath."""
    return [k for k, f in section.model_fields.items() if WEIGHTS in f.metadata]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Section):
    """One source of raw video.

    kind: folder (every video file under `path`), files (listed paths), urls (http(s)/file
    URLs, fetched and cached), pages (pages yt-dlp understands: YouTube, Vimeo, ...).
    """

    name: str
    kind: Literal["folder", "files", "urls", "pages"]
    path: str | None = None
    items: list[str] = Field(default_factory=list)
    license: str | None = None
    notes: str | None = None
    # one identity per video (default), one for the whole source (a channel), or a name
    identity: Literal["per_video", "per_source"] | str = "per_video"

    @model_validator(mode="after")
    def _needs_input(self) -> "SourceConfig":
        if self.kind == "folder" and not self.path:
            raise ValueError("a 'folder' source needs 'path' (a local directory)")
        if self.kind != "folder" and not self.items:
            raise ValueError(f"a '{self.kind}' source needs a non-empty 'items' list")
        return self


class ClipConfig(Section):
    min_seconds: float = Field(3.0, gt=0)
    max_seconds: float = Field(10.0, gt=0)
    trim_seconds: float = Field(0.2, ge=0)  # cut from both shot edges (fades, cuts)

    @model_validator(mode="after")
    def _ordered(self) -> "ClipConfig":
        if self.max_seconds < self.min_seconds:
            raise ValueError(f"max_seconds ({self.max_seconds}) < min_seconds ({self.min_seconds})")
        return self


class VideoConfig(Section):
    fps: float = Field(25.0, gt=0, le=120)
    size: int = Field(512, ge=64, le=4096, multiple_of=2)  # square output side in pixels (even: yuv420p)
    # H.264 quality and speed. superfast at crf 22: on 2 generated 10 s clips (a 320 px crop scaled to
    # 512) 1.08 CPU-s per clip against 1.37 for veryfast at crf 20 (best of 3), at the same quality
    # against a lossless encode of the same crop (SSIM 0.9901 vs 0.9903, PSNR 44.9 vs 44.8 dB), files
    # 24 % larger (484 vs 389 kB); ultrafast: 0.95 CPU-s but 6.5x the size at SSIM 0.986
    crf: int = Field(22, ge=0, le=51)
    preset: Literal[X264_PRESETS] = "superfast"  # type: ignore[valid-type]
    threads: int = Field(1, ge=0)  # ffmpeg threads per clip; clips run in parallel (0 = ffmpeg's choice)


class AudioConfig(Section):
    sample_rate: int = Field(16000, ge=8000, le=192000)
    format: Literal["flac", "wav"] = "flac"


class ShotConfig(Section):
    threshold: float = Field(27.0, gt=0)  # PySceneDetect ContentDetector threshold
    min_shot_seconds: float = Field(1.0, ge=0)
    # compare frames at 1/downscale; 0 -> about 128 px wide (width // 128). On a 3-shot 512 px clip and
    # its 1280x720 copy every cut was found on its frame at 128 px wide; a 10 s source took 0.42-0.51
    # CPU-s at 512 px (1/4) and 0.68-0.79 at 720p (1/10) against 0.55-0.62 and 0.92-0.99 at PySceneDetect's
    # own 256 px (best of 3 runs each on the loaded 2-core box)
    downscale: int = Field(0, ge=0)
    # look at 1 frame in (1 + frame_skip): faster, cuts less exact. Left at 0: with 1 the cuts came
    # 1 frame late (40 ms) at 25 fps, and 0.2 s late on a variable-rate file's 8 fps stretch
    frame_skip: int = Field(0, ge=0)


class FetchConfig(Section):
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    max_bytes: int = Field(4_000_000_000, gt=0)
    rate_limit_s: float = Field(1.0, ge=0)  # minimum gap between yt-dlp page requests
    cache_dir: str | None = None  # default: <output>/cache
    max_attempts: int = Field(3, ge=1)  # a source failing this often over re-runs stays failed
    deadline_s: float = Field(1800.0, gt=0)  # one fetch, all its attempts, from start to end
    # folders that `urls` items may name as local paths or file:// URLs (relative to the
    # config file's folder); none listed -> the config file's folder only
    local_roots: list[str] = Field(default_factory=list)
    # yt-dlp format selection for `pages` sources (merged to mp4 with ffmpeg when split)
    ytdlp_format: str = "bv*[height<=1080]+ba/b[height<=1080]/bv*+ba/b"


class FilterConfig(Section):
    """Thresholds of the track-and-filter stage; every score is recorded either way."""

    sample_fps: float = Field(5.0, gt=0)  # frames per second examined by the filters
    max_extra_person_fraction: float = Field(0.1, ge=0, le=1)
    min_face_fraction: float = Field(0.8, ge=0, le=1)  # frames with the main face found
    min_face_px: int = Field(64, ge=0)
    max_face_jitter: float = Field(0.15, ge=0)  # face centre motion / face size, per sample
    max_abs_yaw_deg: float = Field(45.0, ge=0)
    max_abs_pitch_deg: float = Field(35.0, ge=0)
    min_resolution: int = Field(256, ge=0)  # shorter source side
    min_blur_var: float = Field(20.0, ge=0)  # variance of Laplacian on the face crop
    min_brightness: float = Field(40.0, ge=0)
    max_brightness: float = Field(220.0, ge=0)
    require_audio: bool = True
    min_speech_fraction: float = Field(0.3, ge=0, le=1)
    # the audio checks (no_audio, little_speech) before the picture is decoded: a clip that fails
    # them is rejected without its picture scores (None). On: the cost benchmark's silent 10 s clip cost
    # the filter 0.0001 CPU-s instead of 0.93-1.11, and its attributes preview 0 instead of 0.87-1.11
    # (it has no face seen; in-process, alternating runs at load 31-39); off: every score for every clip
    audio_first: bool = True
    crop_margin: float = Field(1.0, ge=0)  # crop side = face size * (1 + 2 * margin), clipped
    crop_down_shift: float = Field(0.35, ge=0)  # crop centre moved down by this * face size (torso)
    min_detection_confidence: float = Field(0.5, ge=0, le=1)  # MediaPipe face detector score
    extra_face_min_ratio: float = Field(0.25, ge=0)  # a 2nd face counts if its side >= ratio * main face
    detect_max_side: int = Field(640, ge=64)  # frames are downscaled to this longer side for detection
    quality_frames: int = Field(3, ge=1)  # full-resolution frames for blur, brightness and framing
    # body framings that are kept (from pose landmark visibility)
    body_visibility: list[Literal["face", "head_torso", "torso_hands"]] = Field(
        default_factory=lambda: ["face", "head_torso", "torso_hands"])


class LandmarksConfig(Section):
    enabled: bool = True
    model_complexity: Literal[0, 1] = 1  # 1 is what ships in the wheel
    min_detection_confidence: float = Field(0.5, ge=0, le=1)
    min_tracking_confidence: float = Field(0.5, ge=0, le=1)
    refine_face_landmarks: bool = True  # 478 face points (with irises) instead of 468
    # no longer used (the clip is decoded once, in order, one frame held at a time); kept so
    # configs that set it still validate
    chunk_seconds: float = Field(4.0, gt=0)
    # "parts": FaceMesh every frame (in the filter's face crop), Pose every pose_stride-th frame
    # (interpolated), Hands only where a wrist is in the picture; "holistic": Holistic on every
    # frame. Set from benchmarks/curation_cost.py (CPU and error against holistic, same clips).
    mode: Literal["parts", "holistic"] = "parts"
    # 3: on 2 generated 10 s clips (benchmarks/curation_cost.py) pose every 3rd frame cost 14.9 ms/frame
    # against 18.4 every 2nd and 63.1 for Holistic, at 5.04 px mean error on the visible pose points
    # (0.032 of the face size; p95 10.1 px) against 3.97 px (0.026; p95 8.5) every 2nd (4: 12.9 ms,
    # 6.35 px); the face mesh is the same model (0.05 px). Set to 3 (was 2) for issue 15's cost goal:
    # about 0.1 core-hours per kept hour for 1 px more on the body points
    pose_stride: int = Field(3, ge=1)
    # the pose keyframes stretched up to every pose_max_stride-th frame while the last one saw no arm or
    # hip in the picture and the face mesh has moved less than pose_face_motion of the face's size since
    # (annotate/landmarks.py; at most pose_stride: off). Set from two generated 4 s head-and-shoulders
    # clips against Holistic on every frame: 6 and 0.015 ran the pose on 51 of 200 frames instead of 68
    # at 1.65 px mean pose error against 1.72 (p95 4.34 vs 4.39); 0.02 on 42, 2.09 px (p95 4.44). The
    # error moves as much with which frames are keyframes (the same count, other frames: 1.26 -> 1.59 px)
    pose_max_stride: int = Field(6, ge=1)
    pose_face_motion: float = Field(0.015, ge=0)
    hand_min_visibility: float = Field(0.5, ge=0, le=1)  # pose wrist visibility that starts the hand model
    # "parts" asks the sync check (the next stage) for its verdict on the face mesh before the pose and
    # hands, holding the clip's decoded frames until it answers, when they fit in this many MiB: a clip it
    # rejects then pays the face mesh only (issue 15's cost goal). 512: the default clip (10 s, 25 fps,
    # 512 px) is 188 MiB; a larger clip runs the body as the frames come, unasked (decoding it twice
    # instead would cost every kept clip 0.59 CPU-s per 10 s at 512 px: more than the rejected ones
    # save). 0: never ask
    hold_frames_mb: int = Field(512, ge=0)


class SmplxConfig(Section):
    enabled: bool = True
    # folder holding smplx/SMPLX_NEUTRAL.npz; None -> $MENTOR_SMPLX_DIR, else the bundled
    # synthetic model (labelled synthetic in every record)
    model_dir: WeightsPath = None
    gender: Literal["neutral", "male", "female"] = "neutral"
    num_betas: int = Field(10, ge=1, le=300)
    num_expression: int = Field(10, ge=1, le=100)
    num_pca_comps: int = Field(12, ge=1, le=45)  # hand pose PCA components
    focal_length: float | None = None  # pixels; None -> estimated from the image size ...
    # ... and with this, fitted inside the fit (focal_method, below) or searched (annotate/smplx_focal.py):
    # the whole clip fitted under 4-6 focals, each scored by its keyframes' objective, the best fit kept; once per source video, reused for
    # its other clips (SmplxFitter.searched_focal). Set on from issue 16's truths at 250 frames with
    # the size-based guess 0.72x the true focal (busy 2-core box, load 11-23): talking found 1.014x,
    # PA-MPJPE 6.1 mm = the known focal's (guess: 16.4, 2.70x); beats 1.014x, 9.3 mm (1.09x the
    # known focal's 8.5; guess 14.2). Cost: 4-6 fits of the source's first clip to its keyframes' last
    # stage, the best one finished (issue 15: 3.9x talking's plain fit, was 5.4x; README "The focal
    # search's cost"). The search before it (8 frames alone, scored by the reprojection error, which
    # moves < 0.03 px from 0.72x to 1.4x) kept the guess. Why a wrong focal costs what it does:
    # README "Shape and focal"; benchmarks/smplx_truth --focal-sensitivity.
    fit_focal: bool = True
    # how: "joint" fits log(focal) inside the one fit, one more unknown the keyframes share with the
    # clip's shape in its shape stage (annotate/smplx_fit.py shared_shape_solve, the body moved away
    # with the focal); "search" fits the clip under 3-6 focals (above). "joint" by default from issue
    # 16's truths at 250 frames from the guess 724 px (true 1000; busy 2-core box, load 9-20): talking
    # 1056 px, PA-MPJPE 5.4 mm = 1.08x the known focal's 5.0 (search: 1014 px, 1.00x); beats 857 px,
    # 8.45 mm against 8.5 known (search: 1014 px, 9.3); CPU 0.93-1.0x a plain fit (search: 2.9x):
    # README "The focal fitted inside the fit"
    focal_method: Literal["joint", "search"] = "joint"
    pose_prior: WeightsPath = None  # SMPLify GMM (.pkl); None -> built-in limits + norm
    iterations: int = Field(60, ge=1)  # cap on Gauss-Newton steps per fitting stage (each stops when converged)
    keyframe_stride: int = Field(8, ge=1)  # early stages fit every n-th frame, the temporal solve all
    # a keyframe is added between two where the landmarks leave the straight line between them by
    # more than this (px) and 2x the frame-to-frame noise (annotate/smplx_fit.py motion_keyframes).
    # 3 px splits talking's natural sway (61 keyframes for 33 strided; 77 on its clean landmarks).
    # 10 px measured with benchmarks/smplx_truth at 250 frames (2-core box, load 24-39): talking
    # 61 -> 43 keyframes, 24.2 -> 26.6 frames per CPU-s at the same PA-MPJPE (6.3 mm), toward 27.6
    # -> 29.0 (5.4 mm both), but forearms away 10.4 -> 12.1 mm (flips 2.6 -> 3.0 %), crossed 8.3 ->
    # 8.9, switch 7.8 -> 8.2: kept at 3 (gestures, near, far, noise and drop_keyframe keep all
    # their keyframes at either: their strokes leave the line by tens of px)
    motion_tolerance_px: float = Field(3.0, gt=0)
    # the hands stage on the stride keyframes alone, the keyframes motion_keyframes adds starting the full
    # stage from those fits' hands and face, interpolated (annotate/smplx_fit.py hands_from_stride; the
    # tiers that skipped more, and why they lost accuracy, beside it). OFF: measured with benchmarks/smplx_ab
    # tiers at 854a223 (250 frames, 1 thread, 2-core box at load 1.7-3): off / on CPU, least of 2 interleaved
    # runs, beats 1.23x (21.0 -> 25.8 frames per CPU-s), drop_runs 1.15x, talking 1.10x, far_1px 1.07x,
    # near_1px 1.05x; PA-MPJPE over the 17 scenarios 12.14 -> 12.16 mm mean, no goal lost, but near_4px
    # +1.10 / -0.24 / +0.82 mm at seeds 0-2 (far_4px +0.97 / -0.78 / -0.44): a loss the box cannot yet tell
    # from noise, for a tenth of the CPU, far from the 50 frames per CPU-s goal
    motion_tiers: bool = False
    device: Device = "auto"  # auto | cpu | cuda
    min_visibility: float = Field(0.5, ge=0, le=1)  # pose landmarks below this are weak evidence ...
    # ... kept at this x their visibility (MediaPipe's guess of a cut-off or occluded joint:
    # issue 16's talking heads had elbows at 0.1-0.2 at the frame's bottom; 0 drops them)
    low_visibility_weight: float = Field(0.5, ge=0, le=1)
    # weight of a pose landmark outside the image: the joint is held outside the frame (one-sided)
    border_weight: float = Field(0.25, ge=0, le=1)
    # torch threads inside one fit (restored after it): with 2 on the 2-core box the same
    # 250-frame fit took 3.9-256 s, with 1 it was steady (issue 16); None: torch's own setting
    threads: int | None = Field(1, ge=1)
    # keyframes whose arm bones' depth disagrees with MediaPipe's z solved again from those bones
    # mirrored, picked by cost, z and temporal consistency (annotate/smplx_depth.py). Set from
    # benchmarks/smplx_truth (250 frames, all 17 scenarios, off vs on at b7c5405, 2-core box,
    # load 3-4): forearms held away from the camera PA-MPJPE 40 -> 10 mm, 25 -> 2.8 deg, depth
    # flips 63 -> 2.6 %; switch 15 -> 7.7 mm, flips 4.7 -> 0 %; drop_keyframe 19 -> 11 mm; talking,
    # crossed, toward, near, far, noise within 0.5 mm; worse: outliers 17 -> 24 mm, cut_chest
    # 66 -> 70, beats 7.8 -> 9.0; CPU +5 % over the set (284 -> 297 s)
    depth_restarts: bool = True
    # a torso cut at the chest (hips and elbows each seen in under half the frames): the spine's
    # bends held at this weight per rad^2 on top of the pose prior (annotate/pose_prior.py
    # HeldSpine, hold_spine_if_cut; 0: off). Set from benchmarks/smplx_truth (250 frames):
    # cut_chest's upper arms from hanging down (95th pct) 23.0 -> 18.2 deg at 100 (19.0 at 10),
    # its fitted torso axis 9 deg off the truth's before. On the hips alone it cost beats 8.9 -> 14.6 mm
    held_spine_weight: float = Field(100.0, ge=0)
    # the collars and the spine held at these weights per rad^2 in every clip, on top of the
    # built-in pose prior (not a GMM's: annotate/pose_prior.py hold_torso; 0: off). With the pelvis
    # out of frame the body's pitch is free in 2D and the collars took it up (issue 16's outliers
    # truth: body 15 deg off, collars 14-18 deg back, PA-MPJPE 23.7 mm at a 0.65 px 2D fit); the
    # collars alone held, the spine took it (6-8 deg per joint). benchmarks/smplx_truth (250
    # frames, f528a95's fitter, off -> collars 300 + spine 100): outliers 23.7 -> 13.2 mm, far_4px
    # 38.0 -> 25.4, beats 8.5 -> 6.6, noise_4px 20.3 -> 18.6; but far_1px 19.9 -> 24.6, cut_chest
    # 65.2 -> 70.2, drop_keyframe 11.5 -> 13.3 (spine 0: 12.0), and after edcaf2a's depth unit
    # noise_4px 23.7: OFF until those are understood (README "The torso's unseen pitch"). Collars
    # alone at 300 (a4c4153): far_1px 9.1 -> 24.7 mm is z's unit (held, its fit reads 1.26, over
    # smplx_fit.KAPPA_HELD: not solved again; 13.7 with the free fit's 1.46 forced)
    held_collar_weight: float = Field(0.0, ge=0)
    held_spine_uncut_weight: float = Field(0.0, ge=0)
    # the collars held toward zero at this weight per rad^2 in the shape stage only, where the clip's
    # betas are decided, with the size's prior (beta 0) kept per frame there (annotate/smplx_objective.py
    # StageSpec.collar_weight; 0: off). The fit shrugged: its collars turned 0.4-0.6 rad (the truth's
    # 0.03) in place of the betas (switch betas r 0.71, near_4px 0.79). Set from benchmarks/smplx_truth
    # (250 frames, fc37433's fitter; the size per clip): near_4px r 0.84 at 100, 0.99 at 300 (1000, 3000 no
    # better), but the body 8-14 % small; with the size per frame: README "The collars in the shape stage"
    shape_collar_weight: float = Field(300.0, ge=0)
    # weight of MediaPipe's relative pose z in the fit's objective (annotate/smplx_objective.py
    # DepthTerm, per px^2 of z residual; a 2D residual counts 1 per px^2); 0: off. Set from
    # benchmarks/smplx_truth at 250 frames: 0.05 took talking's PA-MPJPE from 16 to 6 mm (worst
    # group 18 -> 7) and beats' from 34 to 21; 0.1 and 0.2 flipped fewer forearms pointing away
    # (23 %, 16 % against 54 % at 0.05) but bent the body's shape (bones 14-15 % off on talking)
    depth_weight: float = Field(0.05, ge=0)
    # the depth term's robust scale (annotate/smplx_objective.py DEPTH_RHO, 20 px) x (noise / this)^2
    # where the clip's landmark noise (px, annotate/smplx_fit.py landmark_noise_px) is above this
    # (at most x16); 0: fixed. At 4 px z's own noise (~25 px) is past 20 px: the robust loss lets z go
    # and the shoulders sat 15-18 mm off in depth. The noise reads 1.2-1.3 px at 1 px, 2.3 at 2 px,
    # 4.4-4.8 at 4 px (x3.1-3.7 at 2.5; 1-2 px clips keep 20 px, bit-identical). 2.5 by default, from
    # benchmarks/smplx_truth at 250 frames, on caf63dd, 2.5 against 0: PA-MPJPE near_4px 20.4 (22.9)
    # -> 14.9 (16.8) mm, far_4px 19.3 (21.5) -> 14.3 (15.7) (issue 16's 20 mm goal met on both), worst
    # bone 1.2, 2.3 -> 0.5, 2.2 %, but noise_4px (talking) 13.0 (14.1) -> 16.4 (18.4) mm (bone 2.3 ->
    # 0.6 %; still under the goal, and the only 4 px clip that loses); on a1875ee (before the shape
    # stage's collars) 21.5 -> 16.2, 24.2 -> 15.6, 15.3 -> 16.5.
    # Tried at 7bd1ab2: x the temporal weights' noise scale (noise / 1.35) took noise_2px 8.4 (9.0) ->
    # 9.9 (11.0); x its square root near_4px 21.1 (23.8); the depth weight x the noise scale instead:
    # near_4px 17.1-17.6, far_4px 17.4-18.3, noise_2px 10.4-11.5, noise_4px's 3D jitter 1.53x the truth's
    depth_rho_noise_px: float = Field(2.5, ge=0)
    # MediaPipe's hand z (wrist and the fingers' first joints, relative to the wrist) in that term
    # too, each hand centred on its own mean. Off: measured with benchmarks/smplx_truth at 250
    # frames (with depth_restarts), forearms away 12.3 -> 11.2 mm PA-MPJPE (fingers 13.4 -> 11.9,
    # flips 3.0 -> 1.0 %), but the toward/away switch 13.7 -> 14.8 mm and talking 6.0 -> 6.4
    depth_hands: bool = False
    # MediaPipe pose's hand points (17-22: pinky, index, thumb; annotate/correspondences.py POSE_KNUCKLES)
    # x this in the frames where the hand landmarker lost that hand, x knuckle_weight_seen where it has it
    # (0: not used there). Set from benchmarks/smplx_truth at 250 frames on ba65648's fitter, off -> 1 / 0:
    # near_1px PA-MPJPE 10.50 (fingers 12.06) -> 8.67 (9.82) mm, near_4px 14.93 -> 13.94, drop_runs 7.55
    # -> 7.06, but drop_keyframe 8.05 -> 8.44 (c1657e4); 11 of 17 unchanged; 1 / 0.25: drop_runs 7.23,
    # away 8.07 -> 8.33 (README "The pose's hand points")
    knuckle_weight: float = Field(1.0, ge=0, le=1)
    knuckle_weight_seen: float = Field(0.0, ge=0, le=1)
    robust_rho: float = Field(0.05, gt=0)  # Geman-McClure scale, fraction of the image side
    # swapped hands swapped back, a hand off its pose wrist or an elbow/wrist off its track made
    # missing before the fit (annotate/landmark_outliers.py). On: issue 16's outliers scenario
    # (5 % of frames with a hand jumped 40-100 px, an arm point jumped or the hands swapped) had
    # its worst frame 43x the median 2D error; 17 of 17 damaged frames caught, none on 7 clean
    # scenarios (1-4 px noise, 1.5-2.5 m, quick beats)
    reject_outliers: bool = True
    smooth_weight: float = Field(1.0, ge=0)  # temporal terms (x1 = the tuned default)
    # Geman-McClure scales of the temporal solve's smoothness (annotate/smplx_fit.py temporal_solve):
    # a projected point's 2D acceleration, fraction of the image side per frame^2, and a joint
    # rotation's second difference, rad/frame^2; 0 = quadratic. Set from benchmarks/smplx_truth
    # (250 frames): quadratic, beat strokes of 40-100 px/frame^2 were cut by up to 100 px on the
    # wrists; at 0.02 (10 px/frame^2 at 512 px) and 0.05 rad PA-MPJPE beats 20 -> 8 mm, near_1px
    # 32 -> 18, far_1px 50 -> 42, talking 6.1 -> 6.3; worse: noise_4px 24.5 -> 26.5 and outliers'
    # 3D jitter 10x -> 30x the truth's (a one-frame landmark jump goes through too). 0.05 rad
    # against 0: near_1px 18 against 21 mm, noise_4px 26.5 against 26.1
    smooth_rho: float = Field(0.02, ge=0)
    smooth_rho_rad: float = Field(0.05, ge=0)
    # the parameters' temporal weights x (noise / smooth_noise_px)^2 (at least x1, at most x16),
    # noise the clip's landmark noise (px) estimated from the landmarks' own second differences
    # (annotate/smplx_fit.py landmark_noise_px); 0 = off. The weights above were tuned at 1 px,
    # where the estimate reads 1.02-1.30 (the synthetic scenarios: drift and motion count a
    # little), so those clips keep them; 4 px reads 4.4-4.8. benchmarks/smplx_truth, 250 frames
    # (with smooth_torso, against neither): noise_4px PA-MPJPE 24.2 -> 20.3 mm, 3D jitter 7.3x ->
    # 1.8x the truth's; near_4px 33.1 -> 26.8 mm, 2D error 4.30 -> 4.10 px; noise_2px 10.3 -> 9.0
    smooth_noise_px: float = Field(1.35, ge=0)
    # the second differences of the torso's rotations (root, spine, neck, collars, head) x this
    # more than the arms' (2D sees least a torso leaning toward the camera: talking's spine and
    # root wobbled 10x the truth's). 100 against 1 (250 frames): 3D jitter / the truth's talking
    # 2.8 -> 1.9, crossed 5.4 -> 3.4, away 4.2 -> 2.5, PA-MPJPE talking 6.3 -> 6.1 mm, beats
    # 8.9 -> 8.5, 2D error +0.03 px; 30: talking 1.9x, the same PA
    smooth_torso: float = Field(100.0, ge=0)
    # the temporal solve's weight of the body points' depth accelerations (nose, shoulders, elbows,
    # wrists, hips; per (px/frame^2)^2 at the person's distance; annotate/smplx_objective.py
    # DepthSmoothing; 0: off), under Geman-McClure at smooth_depth_rho px/frame^2 (0: quadratic).
    # 2D sees no motion along the line of sight: the joints' error accelerated 3x more in camera z
    # than across the image. Set from benchmarks/smplx_truth (250 frames; 3D jitter / the truth's,
    # PA-MPJPE all (worst group) mm; off: talking 1.87, 6.1 (6.6), crossed 3.36, 8.5 (10.1), beats
    # 1.05, 8.5 (9.4)): 40 at 0.5 px: talking 1.29, 4.9 (5.2), crossed 1.62, 7.6 (10.1), beats 1.04,
    # 8.5 (9.3); 160 at 0.5: talking 1.19, crossed 1.49, beats 8.8 (9.7); 40 at 1 px: beats 9.0 (9.9),
    # at 3: 12.9 (14.3) (a beat's stroke in depth cut). x (noise / smooth_noise_px)^2 as the
    # parameters' (annotate/smplx_fit.py temporal_objective; rho kept), set from the same benchmark
    # (b6904cf -> this): noise_4px 1.54 -> 1.46, 18.6 (20.2) -> 17.1 (18.5), noise_2px 1.39 -> 1.34,
    # near_4px 22.8 (25.4) -> 23.1 (25.7), far_4px 37.8 -> 37.7, talking and beats identical (x1);
    # rho x noise / smooth_noise_px too: noise_4px 16.0 (17.1) but near_4px 28.4 (31.8). 60 (40 before,
    # with the cubic start and unseen_rotations in, 250 frames): talking 1.21 -> 1.17, crossed 1.52 ->
    # 1.45, toward 1.33 -> 1.29, away 1.32 -> 1.25, beats 8.4 (9.2) -> 8.5 (9.3) (the README: jitter)
    smooth_depth: float = Field(60.0, ge=0)
    smooth_depth_rho: float = Field(0.5, ge=0)
    # x on the temporal solve's smoothness of an arm joint's rotation (shoulder, elbow, wrist) over
    # frames in which no landmark sees the joints it moves (out of frame, low visibility: only the
    # prior and the border hold it; annotate/smplx_fit.py unseen_rotations); 1 = as the seen ones'.
    # Its Geman-McClure scale / sqrt(this): a stroke out of frame costs what a seen one does. Set from
    # benchmarks/smplx_truth (250 frames): cut_chest 3D jitter / the truth's 1.63 -> 0.99, PA-MPJPE
    # 65.3 -> 63.2 mm; x1000: 1.00, 60.4 (the scale kept); near_4px 23.1 (25.7) -> 21.8 (24.2)
    smooth_unseen: float = Field(100.0, ge=1)
    # x on the temporal solve's smoothness of the shoulders' small accelerations in every frame: a
    # second Geman-McClure term of (this - 1) x the weight at the scale / sqrt(this - 1), so that a
    # stroke keeps the smoothing it had and costs at most one more cap (annotate/smplx_fit.py
    # shoulder_rotations; 1 = as the other arm joints'). The parameters' 1e4 per rad^2 is a prior sd
    # of 10 mrad/frame^2; x30 puts the shoulders' at 1.8, the truth's own rms in the benchmark's slow
    # scenarios (talking, crossed, toward, away: 0.5-2.4 mrad/frame^2 per axis; beats' and switch's
    # strokes, 5-52, pass the scale). Set from benchmarks/smplx_truth (250 frames, the temporal solve
    # alone re-run in one process; 3D jitter / the truth's, 1 -> 10 / 30): crossed 1.40 -> 1.31 /
    # 1.27, toward 1.31 -> 1.23 / 1.20, noise_4px 1.36 -> 1.20 / 1.17, switch 1.32 -> 1.32 / 1.33,
    # near_1px 1.20 -> 1.18 / 1.20, drop_runs 1.21 -> 1.16 / 1.18; PA-MPJPE within 0.1 mm (README: jitter)
    smooth_shoulders: float = Field(30.0, ge=1)
    # after the temporal solve, the frames where an elbow's depth zig-zags, the part of its depth
    # acceleration that its neighbours' mean does not carry, past this (px/frame^2 at the person's
    # distance) put back on the cubic through the other frames and solved again, taken about them
    # where the landmarks allow it (annotate/smplx_fit.py despiked; 0: off). In a fast change of the
    # forearms toward / away from the camera a keyframe's arm sat 50-120 mm off in depth for a frame or
    # two, which 2D hardly sees and the robust smoothing lets through as a stroke. The truth's elbows
    # read <= 3 px (benchmarks/smplx_truth's scenarios), the fit's on switch up to 95. Set from
    # benchmarks/smooth_ab (250 frames; off -> 30 / 40 / 60 with 4 second-solve steps: 3D jitter / the
    # truth's, PA-MPJPE mm): switch 1.33 -> 1.17 / 1.17 / 1.18, 7.51 -> 7.42 / 7.39 / 7.39; near_1px
    # 1.23 -> 1.20 / 1.22 / 1.14, 8.63 -> 8.62 / 8.63 / 8.53; drop_runs 1.10 -> 1.10 / 1.08 / 1.10,
    # 7.11 -> 7.11 / 7.07 / 7.11; no zig-zag at 40 on the 14 others (the same figures); at 60 with 2
    # steps (DESPIKE_STEPS) switch 1.16, 7.35, near_1px 1.13, 8.54. Judged on all points (wrists too)
    # and taken whole, it cut beats' strokes near the camera (near_1px 8.6 -> 9.8 mm at 40)
    smooth_despike_px: float = Field(60.0, ge=0)
    # quality gates on the fit's pixel scores, as fractions of the face height (smplx.face_px:
    # the face mesh's box), so that one gate fits a 100 px face and a 400 px face alike. Set
    # at about twice the largest score of clips that should pass: 6 good 10 s talking clips
    # at 512 px (faces 172-175 px; benchmarks/curation_cost.py) scored jitter 0.005-0.030
    # and reprojection 0.041-0.043 face heights (the old 5 px jitter gate dropped one of them).
    # A small sample of one synthetic person: re-derive from your own kept clips' scores.
    max_reprojection_face: float = Field(0.10, ge=0)  # mean reprojection error / face height
    max_jitter_face: float = Field(0.06, ge=0)  # mean 2D joint acceleration (px/frame^2) / face height
    min_hand_fraction: float = Field(0.0, ge=0, le=1)
    min_face_fraction: float = Field(0.8, ge=0, le=1)  # frames with the face mesh found
    min_pose_fraction: float = Field(0.8, ge=0, le=1)  # frames with the body found
    # per-frame quality (annotate/smplx_quality.py): gates that COUNT bad frames, since a clip's
    # mean passes with a run of bad frames in it. A frame is bad when nothing was observed in it
    # or its own mean reprojection is above max_frame_reprojection_face face heights; bad frames
    # are stored as smplx.frame_ok 0 and left out of training windows (valid=False).
    # A frame's own mean reprojection / face height: the 3 demo clips (MediaPipe on real faces of
    # 172-175 px, out/demo/store) have frames at 0.040 median and 0.063 at worst; issue 16's bad
    # frames (a face 19-36 px off on a ~77 px face) are 0.25-0.47. Set at 2.4x the worst good frame.
    max_frame_reprojection_face: float = Field(0.15, ge=0)
    # forearm's in-image share (smplx.depth_confidence) below this = depth uncertain: the forearm
    # points within 20 deg of the viewing ray (cos 70 deg = 0.34), where its 2D length is under a
    # third of its length and 2D barely tells toward from away; flagged in smplx.frame_flags, and
    # it makes a frame bad only with depth_gates_frames
    min_depth_confidence: float = Field(0.35, ge=0, le=1)
    depth_gates_frames: bool = False  # a forearm toward the camera is a real pose, not a failure
    # a run of bad frames longer than this rejects the clip: 1 s (25 frames at 25 fps, half the
    # motion model's 2 s window) is a lost track or a wrong pose held, not noise; issue 16's
    # failures ran up to ~10 frames (0.4 s) and such runs are cut (frame_ok 0), not rejected
    max_bad_run_s: float = Field(1.0, gt=0)
    # more bad frames than this share rejects the clip: 4x the 5 % of frames that the
    # drop-out scenario (benchmarks/smplx_truth.py drop_runs) loses, which should still pass
    max_bad_frame_share: float = Field(0.2, ge=0, le=1)


class VadConfig(Section):
    """Silero VAD (weights ship in the silero-vad wheel)."""

    enabled: bool = True
    threshold: float = Field(0.5, ge=0, le=1)  # speech probability per 32 ms window
    min_speech_ms: int = Field(250, ge=0)  # shorter bursts are not speech
    min_silence_ms: int = Field(100, ge=0)  # shorter pauses do not split a segment
    speech_pad_ms: int = Field(30, ge=0)
    min_speech_fraction: float = Field(0.3, ge=0, le=1)  # reject clips with less speech


class DiarizationConfig(Section):
    """pyannote.audio 4 pipeline from a local folder, else Resemblyzer windows + clustering."""

    enabled: bool = True
    pyannote_dir: WeightsPath = None  # local pyannote pipeline folder; None -> Resemblyzer
    min_dominant_share: float = Field(0.8, ge=0, le=1)
    device: Device = "auto"  # auto | cpu | cuda
    # Resemblyzer backend: embedding windows over the VAD segments, then agglomerative
    # clustering (average linkage) cut at a cosine distance.
    window_seconds: float = Field(1.6, gt=0.2, le=10)  # Resemblyzer's own partial length
    hop_seconds: float = Field(0.8, gt=0.05)
    cluster_threshold: float = Field(0.3, gt=0, lt=2)  # cosine distance; higher -> fewer speakers
    # symmetric KL of two units' MFCC Gaussians that counts as another voice: espeak's
    # sentences of one voice measured 3-25 apart, different voices (en vs en+m7/f3/f4) 20-80
    mfcc_threshold: float = Field(22.0, gt=0)
    unit_seconds: float = Field(4.0, gt=0.5)  # longer speech segments are cut into pieces this long
    min_speaker_seconds: float = Field(1.0, ge=0)  # smaller clusters join their nearest one
    # below this the verdict is "cannot tell" (0.1: a merge within 0.05 of the cut; on 10 s
    # espeak clips 3 of 24 one-voice and 7 of 39 two-voice clips measured below it)
    min_confidence: float = Field(0.1, ge=0, le=1)


class AsrConfig(Section):
    """openai-whisper from a local checkpoint; without one, status says "skipped: no weights"."""

    enabled: bool = True
    whisper_model: WeightsPath = None  # a local checkpoint path (or a model name already cached)
    language: str | None = None  # None -> detected per clip
    device: Device = "auto"
    word_timestamps: bool = True
    beam_size: int | None = Field(None, ge=1)  # None -> greedy
    # whisper's fallback: decode again hotter when the text looks like a loop or gibberish
    temperature: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], min_length=1)


class SyncConfig(Section):
    """Weight-free mouth-opening vs speech-envelope sync; SyncNet LSE-D/C when weights are given."""

    enabled: bool = True
    max_offset_frames: int = Field(15, ge=0)  # lags searched each side (SyncNet's vshift is 15)
    min_confidence: float = Field(0.15, ge=0)
    # offsets up to this are corrected (audio re-cut); beyond it: "audio offset N frames > M"
    max_shift_frames: int = Field(10, ge=0)
    syncnet_weights: WeightsPath = None  # syncnet_python's syncnet_v2.model (a state dict)
    device: Device = "auto"
    min_face_fraction: float = Field(0.5, ge=0, le=1)  # frames with lips found, else reject


class AudioFeatureConfig(Section):
    """Log-mel windows per video frame; Whisper encoder features when weights are given."""

    enabled: bool = True
    n_mels: int = Field(80, ge=8)
    window_frames: int = Field(2, ge=0)  # context frames each side of a video frame
    whisper_model: WeightsPath = None  # local Whisper checkpoint -> array "audio.whisper"
    device: Device = "auto"


class AttributeConfig(Section):
    """Perceived attributes (automatic estimates, never identities) and face identity.

    Skin tone: ITA = atan((L* - 50) / b*) in degrees, from the median CIELAB colour of
    well-lit forehead and cheek pixels. Coarse group by ITA (Chardon et al. 1991 categories
    merged): light ITA > ita_light_min (very light + light), dark ITA <= ita_dark_max
    (brown + dark), medium in between (intermediate + tan).
    """

    enabled: bool = True
    # also estimate them on clips the filters rejected, so the audit can tell whether a
    # filter drops one group more often than another
    on_rejected: bool = True
    frames: int = Field(8, ge=1, le=64)  # frames sampled per clip for every face attribute
    min_detection_confidence: float = Field(0.5, ge=0, le=1)  # FaceMesh, when no landmarks array
    # skin pixels kept: L* between these percentiles of the region (drops shadows, highlights)
    skin_low_percentile: float = Field(10.0, ge=0, le=100)
    skin_high_percentile: float = Field(90.0, ge=0, le=100)
    min_skin_pixels: int = Field(50, ge=1)  # per frame, after the L* band
    ita_light_min: float = 41.0
    ita_dark_max: float = 10.0
    age_gender_model: WeightsPath = None  # ONNX classifier; None -> "not estimated"
    # what the classifier's outputs mean (FairFace's classes by default)
    age_labels: list[str] = Field(default_factory=lambda: [
        "0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"])
    gender_labels: list[str] = Field(default_factory=lambda: ["male", "female"])
    classifier_size: int = Field(224, ge=16)  # input side when the model does not fix it
    classifier_mean: list[float] = Field(default_factory=lambda: [0.485, 0.456, 0.406])  # on RGB in [0, 1]
    classifier_std: list[float] = Field(default_factory=lambda: [0.229, 0.224, 0.225])
    classifier_face_margin: float = Field(0.25, ge=0)  # crop = face box grown by this share each way
    face_recognition_model: WeightsPath = None  # ArcFace ONNX; None -> source identity
    # clips whose face embeddings are at least this cosine-similar (average linkage) share an identity
    identity_min_similarity: float = Field(0.4, ge=-1, le=1)

    @model_validator(mode="after")
    def _cuts(self) -> "AttributeConfig":
        if self.ita_light_min <= self.ita_dark_max:
            raise ValueError(f"ita_light_min ({self.ita_light_min}) must be above ita_dark_max ({self.ita_dark_max})")
        if self.skin_low_percentile >= self.skin_high_percentile:
            raise ValueError("skin_low_percentile must be below skin_high_percentile")
        if len(self.classifier_mean) != 3 or len(self.classifier_std) != 3:
            raise ValueError("classifier_mean and classifier_std need 3 values (R, G, B)")
        return self


class AnnotateConfig(Section):
    landmarks: LandmarksConfig = LandmarksConfig()
    smplx: SmplxConfig = SmplxConfig()
    vad: VadConfig = VadConfig()
    diarization: DiarizationConfig = DiarizationConfig()
    asr: AsrConfig = AsrConfig()
    sync: SyncConfig = SyncConfig()
    audio_features: AudioFeatureConfig = AudioFeatureConfig()
    attributes: AttributeConfig = AttributeConfig()


class SplitConfig(Section):
    seed: int = 0
    shares: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    stratify_by: list[str] = Field(default_factory=lambda: ["attr.skin_tone_group"])
    max_hours_per_identity: float | None = None

    @model_validator(mode="after")
    def _shares(self) -> "SplitConfig":
        total = sum(self.shares.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split shares must add up to 1.0, they add up to {total:g}")
        return self


class AuditConfig(Section):
    """The dataset audit (mentor/audit): what is grouped, compared and flagged."""

    # target share of hours per group, e.g. {"attr.skin_tone_group": {"light": .33, ...}}
    targets: dict[str, dict[str, float]] = Field(default_factory=dict)
    max_share_gap: float = Field(0.1, ge=0, le=1)  # flag a group whose share is this far off its target
    # index columns whose values are groups (perceived attributes); absent ones are skipped
    group_by: list[str] = Field(default_factory=lambda: [
        "attr.skin_tone_group", "attr.skin_tone_monk", "attr.perceived_age", "attr.perceived_gender"])
    # numeric columns whose spread is shown per group (absent ones skipped; every score
    # column with "expression" in its name is added)
    spread_columns: list[str] = Field(default_factory=lambda: [
        "duration", "score.filter.body_visibility", "score.filter.yaw_deg", "score.filter.pitch_deg"])
    language_columns: list[str] = Field(default_factory=lambda: ["score.asr.language", "attr.language"])
    confidence: float = Field(0.95, gt=0, lt=1)  # of the Wilson intervals
    alpha: float = Field(0.05, gt=0, lt=1)  # chi-square test level for rejection rates
    min_group_clips: int = Field(10, ge=1)  # groups smaller than this are shown, never flagged
    example_clips: int = Field(3, ge=0)  # example frames per group in the report
    strip_clips: int = Field(3, ge=0)  # clips shown as a strip of frames with landmarks
    strip_frames: int = Field(6, ge=1)


class RayConfig(Section):
    address: str | None = None  # None -> $RAY_ADDRESS, else a local Ray in-process
    num_cpus: int | None = None  # for the local Ray
    prepare_tasks: int = Field(1, ge=1)  # concurrent fetch/probe/shot tasks
    filter_actors: int = Field(1, ge=1)  # actor processes of the track-and-filter + encode stage
    filter_threads: int = Field(2, ge=1)  # clips each filter actor works on at once (one thread each)
    annotate_actors: int = Field(1, ge=1)
    annotate_threads: int = Field(2, ge=1)  # clips each annotate actor works on at once (a model set each)
    annotate_gpus: float = Field(0.0, ge=0)  # GPUs per annotate actor; its models then run on CUDA
    max_task_retries: int = Field(2, ge=0)


class StoreConfig(Section):
    shard_bytes: int = Field(1_000_000_000, ge=1_000)
    # fsspec options for a store on object storage (output / --out s3://bucket/store), e.g.
    # {endpoint_url: "http://minio:9000"}; {} (the default): $MENTOR_STORAGE_OPTIONS, then the
    # AWS_* variables and ~/.aws (mentor/store/fs.py). Keep secrets in the environment.
    storage_options: dict[str, Any] = Field(default_factory=dict)


# `mentor run`'s training and evaluation blocks: every value left unset comes from the
# block's preset. "tiny" trains and judges in minutes on a 2-core CPU (the demo: it shows the
# path works, the models are not useful); "gpu" is a real run, one GPU per Ray Train worker.
RUN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "motion": {
        "tiny": {"steps": 40, "batch_size": 4, "model": "tiny", "lr": 1e-3, "ckpt_every": 10, "workers": 1,
                 "gpu": False, "device": "cpu", "loader_workers": 0, "threads": 1},
        "gpu": {"steps": 100_000, "batch_size": 256, "model": "base", "lr": 2e-4, "ckpt_every": 1000, "workers": 1,
                "gpu": True, "device": "auto", "loader_workers": 4, "threads": 0},
    },
    "video": {
        "tiny": {"size": 64, "channels": [16, 32], "window": 4, "stage1_steps": 16, "stage2_steps": 8, "batch_size": 2,
                 "clip_batch_size": 1, "lr": 1e-3, "ckpt_every": 4, "workers": 1, "gpu": False, "device": "cpu",
                 "loader_workers": 0, "threads": 1},
        "gpu": {"size": 256, "window": 16, "stage1_steps": 100_000, "stage2_steps": 50_000, "batch_size": 32,
                "clip_batch_size": 4, "lr": 1e-4, "ckpt_every": 1000, "workers": 1, "gpu": True, "device": "auto",
                "loader_workers": 4, "threads": 0},
    },
    "eval": {
        "tiny": {"samples": 1, "gen_steps": 4, "face_metrics": False, "fit_3d": False, "bootstrap": 100,
                 "quality_frames": 1, "device": "cpu", "threads": 1,
                 # 3 clips x the first 2 s: the unbounded tiny evaluation generated every frame of every
                 # clip (over 12 min for the demo's 3 clips); this is ~0.34 CPU-s per frame at 64 px
                 "max_clips": 3, "gen_seconds": 2.0},
        "gpu": {"samples": 3, "gen_steps": 25, "face_metrics": True, "fit_3d": True, "bootstrap": 1000,
                "quality_frames": 4, "device": "auto", "threads": 0},
    },
}


class _PresetSection(Section):
    """A block whose unset (None) values come from RUN_PRESETS[_kind][preset]."""

    _kind = ""
    preset: Literal["tiny", "gpu"] = "tiny"

    def resolved(self) -> dict[str, Any]:
        """The preset's values with every value set in the file on top (None: unset)."""
        out = dict(RUN_PRESETS[self._kind][self.preset])
        out.update({k: v for k, v in self.model_dump().items() if v is not None and k != "preset"})
        return out


class MotionTrainSection(_PresetSection):
    """train.motion: the speech-to-motion model (models/motion_train.py) in `mentor run`."""

    _kind = "motion"
    steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)  # global, split over the workers
    model: str | None = None  # tiny | small | base | a JSON file of model settings (relative to this file)
    lr: float | None = Field(None, gt=0)
    ckpt_every: int | None = Field(None, ge=1)  # a killed run resumes from the newest checkpoint
    workers: int | None = Field(None, ge=1)  # Ray Train workers; 1 and no Ray address: in the run's process
    gpu: bool | None = None  # one GPU per worker (nccl), else CPU (gloo)
    device: Device | None = None
    loader_workers: int | None = Field(None, ge=0)
    # torch threads when it runs in mentor run's process (0: torch's default); tiny: 1, as 2 threads
    # on the loaded 2-core box cost ~12x the CPU seconds per generated frame (pipelines/run.py)
    threads: int | None = Field(None, ge=0)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is not None and value not in ("tiny", "small", "base") and not value.endswith(".json"):
            raise ValueError(f"model {value!r} is not tiny, small, base or a .json file of model settings")
        return value


class VideoTrainSection(_PresetSection):
    """train.video: the video diffusion model (models/video_train.py, both stages) in `mentor run`."""

    _kind = "video"
    size: int | None = Field(None, ge=8, multiple_of=8)  # frame width in pixels
    # frame height in pixels; unset: size (square frames, as both presets train). Set it for
    # non-square video (e.g. size 64, height 48 for 4:3): frames are resized to size x height
    height: int | None = Field(None, ge=8, multiple_of=8)
    channels: list[int] | None = Field(None, min_length=1)  # UNet levels of a base trained from scratch
    window: int | None = Field(None, ge=2)  # frames per clip in stage 2 and per generated window
    stage1_steps: int | None = Field(None, ge=1)
    stage2_steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)  # stage 1 frames per step
    clip_batch_size: int | None = Field(None, ge=1)  # stage 2 clips per step
    lr: float | None = Field(None, gt=0)
    ckpt_every: int | None = Field(None, ge=1)
    workers: int | None = Field(None, ge=1)
    gpu: bool | None = None
    device: Device | None = None
    loader_workers: int | None = Field(None, ge=0)
    threads: int | None = Field(None, ge=0)  # torch threads in mentor run's process (0: torch's default)
    unet_dir: WeightsPath = None  # a pretrained UNet2DConditionModel folder for the frozen base
    vae_dir: WeightsPath = None  # an AutoencoderKL folder: train in its latent space


class TrainSection(Section):
    motion: MotionTrainSection = MotionTrainSection()
    video: VideoTrainSection = VideoTrainSection()


class EvalSection(_PresetSection):
    """eval: `mentor run`'s evaluation (models/evaluate.py) of both models on a split."""

    _kind = "eval"
    split: str = "test"  # judged on this split (an empty one falls back to val, then to every clip, with a note)
    samples: int | None = Field(None, ge=1)  # generated samples per clip (best-of-K, stochasticity)
    gen_steps: int | None = Field(None, ge=1)  # denoising steps of the video model
    face_metrics: bool | None = None  # landmark metrics (sync, identity, 3D): MediaPipe on every frame
    fit_3d: bool | None = None  # SMPL-X fit of each generated video (LME, head pose, jitter)
    bootstrap: int | None = Field(None, ge=10)
    quality_frames: int | None = Field(None, ge=1)
    # a light evaluation: at most max_clips clips (spread over the groups) and only the first
    # gen_seconds of each generated and judged (models/evaluate.py; None: all). The tiny preset
    # sets them (3 clips, 2 s), the gpu preset judges every frame of every clip.
    max_clips: int | None = Field(None, ge=1)
    gen_seconds: float | None = Field(None, gt=0)
    device: Device | None = None
    threads: int | None = Field(None, ge=0)  # torch threads (0: torch's default)
    fid_weights: WeightsPath = None
    fvd_weights: WeightsPath = None
    lpips_weights: WeightsPath = None
    syncnet_weights: WeightsPath = None
    arcface_model: WeightsPath = None


class Config(Section):
    version: Literal[1] = 1
    output: str = "out/store"
    sources: list[SourceConfig] = Field(min_length=1)
    clips: ClipConfig = ClipConfig()
    video: VideoConfig = VideoConfig()
    audio: AudioConfig = AudioConfig()
    shots: ShotConfig = ShotConfig()
    fetch: FetchConfig = FetchConfig()
    filters: FilterConfig = FilterConfig()
    annotate: AnnotateConfig = AnnotateConfig()
    split: SplitConfig = SplitConfig()
    audit: AuditConfig = AuditConfig()
    ray: RayConfig = RayConfig()
    store: StoreConfig = StoreConfig()
    train: TrainSection = TrainSection()  # `mentor run` only
    eval: EvalSection = EvalSection()  # `mentor run` only
    # where the file was read from, to resolve relative paths
    base_dir: str = Field(".", exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        seen: dict[str, int] = {}
        for i, src in enumerate(sources):
            if src.name in seen:
                raise ValueError(f"source name {src.name!r} is used by items {seen[src.name]} and {i}; "
                                 "names must be unique (a store records sources by name)")
            seen[src.name] = i
        return sources

    def resolve(self, path: str | None) -> Path | None:
        """A path from the config, relative to the config file's folder."""
        if path is None:
            return None
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def with_resolved_paths(self) -> "Config":
        """A copy whose weight paths are absolute, so annotators built anywhere (a Ray
        worker's own working directory) find them. A bare name with no path separator
        and no suffix (a Whisper model name like "small") is left as it is."""
        annotate = self.annotate.model_copy(deep=True)
        for section in type(annotate).model_fields:
            sec = getattr(annotate, section)
            for key in weight_fields(type(sec)):
                value = getattr(sec, key)
                if value and ("/" in value or "." in value or value.startswith("~")):
                    setattr(sec, key, str(self.resolve(value)))
        out = self.model_copy(update={"annotate": annotate})
        out.base_dir = self.base_dir
        return out


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node on `loc` that exists."""
    line = None
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _check_events(text: str, filename: str) -> None:
    """Walk the YAML's events (no objects built) and refuse what a config never needs:
    custom tags, nesting deeper than MAX_DEPTH, more than MAX_NODES nodes with aliases
    expanded. Raises ConfigError with file:line: key."""
    stack: list[dict] = []  # open collections: kind, key path part, node count, anchor
    sizes: dict[str, int] = {}  # anchor -> expanded node count
    total = 0

    def where(event: Any) -> str:
        parts = [str(f["at"]) for f in stack if f["at"] is not None]
        path = ".".join(parts if len(parts) <= 6 else parts[:3] + ["..."] + parts[-2:]) or "(top level)"
        return f"{filename}:{event.start_mark.line + 1}: {path}"

    def node_done(count: int, anchor: str | None) -> None:
        nonlocal total
        if anchor:
            sizes[anchor] = count
        if stack:
            top = stack[-1]
            top["count"] += count
            if top["kind"] == "map":
                top["want_key"] = not top["want_key"]
            else:
                top["index"] += 1
                top["at"] = top["index"]
        total += count
        if total > MAX_NODES:
            raise ConfigError(f"{filename}: more than {MAX_NODES} values once aliases are expanded "
                              "(an alias bomb?); a config needs a few hundred")

    for event in YAML(typ="rt").parse(text):
        if isinstance(event, (ev.ScalarEvent, ev.MappingStartEvent, ev.SequenceStartEvent)):
            tag = getattr(event, "tag", None)
            tag = getattr(tag, "value", tag)  # ruamel 0.18+ wraps tags in a Tag object
            if tag and tag not in _STANDARD_TAGS and tag != "!":
                raise ConfigError(f"{where(event)}: YAML tag {tag} is not allowed; a config holds plain "
                                  "mappings, lists, strings and numbers")
        if isinstance(event, ev.ScalarEvent):
            if stack and stack[-1]["kind"] == "map" and stack[-1]["want_key"]:
                stack[-1]["at"] = event.value
            node_done(1, event.anchor)
        elif isinstance(event, ev.AliasEvent):
            if stack and stack[-1]["kind"] == "map" and stack[-1]["want_key"]:
                stack[-1]["at"] = f"*{event.anchor}"
            node_done(sizes.get(event.anchor, 1), None)
        elif isinstance(event, (ev.MappingStartEvent, ev.SequenceStartEvent)):
            if len(stack) >= MAX_DEPTH:
                raise ConfigError(f"{where(event)}: nested more than {MAX_DEPTH} levels deep; a config needs a few")
            kind = "map" if isinstance(event, ev.MappingStartEvent) else "seq"
            stack.append({"kind": kind, "at": 0 if kind == "seq" else None, "index": 0, "count": 1,
                          "anchor": event.anchor, "want_key": True})
        elif isinstance(event, (ev.MappingEndEvent, ev.SequenceEndEvent)):
            done = stack.pop()
            node_done(done["count"], done["anchor"])


def parse_config(text: str, filename: str = "<string>", base_dir: str = ".") -> Config:
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{filename}: {len(text)} characters; a config is at most {MAX_BYTES} (is this the right file?)")
    try:
        _check_events(text, filename)
        doc = YAML(typ="rt").load(text)
    except YAMLError as e:
        raise ConfigError(f"{filename}: not valid YAML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{filename}: nested too deeply to read; a config needs a few levels") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{filename}: expected a mapping with at least 'sources:', got {type(doc).__name__}")
    try:
        cfg = Config.model_validate(_plain(doc))
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
            key = ".".join(str(x) for x in loc) or "(top level)"
            line = _line_of(doc, loc)
            where = f"{filename}:{line}" if line else filename
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                parent = Config
                for part in loc[:-1]:
                    ann = getattr(parent, "model_fields", {}).get(part)
                    inner = getattr(ann, "annotation", None)
                    parent = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else parent
                allowed = ", ".join(k for k in getattr(parent, "model_fields", {}) if k != "base_dir")
                msg = f"unknown key; allowed here: {allowed}"
            elif "input" in err and not isinstance(err["input"], (dict, list)):
                msg = f"{msg} (got {err['input']!r})"
            lines.append(f"{where}: {key}: {msg}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None
    cfg.base_dir = base_dir
    return cfg


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a datasets.yaml; raises ConfigError naming file, line and key."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found (pass a datasets.yaml path)")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"{p}:{line}: byte 0x{data[e.start]:02x} at column {col} is not UTF-8 text; "
                          "save the file as UTF-8") from None
    return parse_config(text, str(p), str(p.parent.resolve()))
