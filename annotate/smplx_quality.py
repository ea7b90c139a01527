"""Per-frame quality of an SMPL-X fit: which frames to trust, and whether the clip is worth keeping.

A clip's mean reprojection and jitter can pass while a run of its frames is badly fitted
(a lost arm, a depth flip, the frames beside a tracker drop-out): the mean hides them. So
each frame is judged on its own and the gates COUNT bad frames:

    quality = frame_quality(reprojection_px, face_px, depth_confidence, cfg)
    quality.flags         (T,) uint8 bit mask: MISSING | REPROJECTION | DEPTH
    quality.frame_ok      (T,) bool: no gating flag (frames not ok become valid=False in
                          training windows, mentor/store/windows.py)
    frame_gates(quality, fps, cfg) -> [(code, detail, value, threshold)]: "bad_run" where the
                          longest run of bad frames is longer than cfg.max_bad_run_s,
                          "bad_frames" where their share is above cfg.max_bad_frame_share

Flags (a frame may have several):
  MISSING       no landmark observed: the parameters are the temporal model's guess
  REPROJECTION  the frame's mean reprojection error above cfg.max_frame_reprojection_face
                face heights (the clip-level gate is on the mean; this one on each frame)
  DEPTH         the fitter's depth confidence (smplx.depth_confidence: the smallest in-image
                share of an observed forearm; low = pointing toward or away from the camera,
                where 2D cannot tell the two apart) below cfg.min_depth_confidence. Stored
                for every frame; it makes a frame not ok only with cfg.depth_gates_frames
                (a forearm toward the camera is a real pose, not a failure)
  BETWEEN_BAD   a frame alone between two bad frames: its own score passed, but a fit that chases
                scattered landmarks (a blurred stretch) can land one frame under the gate by
                chance, and that frame would split the stretch's run in two
The annotator (annotate/smplx_fit.py) writes smplx.reprojection_face, smplx.frame_flags and
smplx.frame_ok beside the parameters, and scores smplx.bad_frame_share and smplx.bad_run_s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MISSING, REPROJECTION, DEPTH, BETWEEN_BAD = 1, 2, 4, 8
FLAG_NAMES = {MISSING: "no landmarks", REPROJECTION: "reprojection", DEPTH: "depth uncertain",
              BETWEEN_BAD: "alone between bad frames"}


@dataclass(frozen=True)
class FrameQuality:
    """Per-frame verdicts of one fit (T frames)."""

    reprojection_face: np.ndarray  # (T,) float32: mean reprojection error / face height, NaN where none observed
    flags: np.ndarray  # (T,) uint8 bit mask of MISSING, REPROJECTION, DEPTH
    frame_ok: np.ndarray  # (T,) bool: no flag that gates frames
    gating: int  # the flags that make a frame not ok

    @property
    def bad_share(self) -> float:
        return float(1 - self.frame_ok.mean()) if len(self.frame_ok) else 0.0

    def longest_bad_run(self) -> tuple[int, int]:
        """(length, first frame) of the longest run of frames not ok; (0, -1) if none."""
        return longest_run(~self.frame_ok)

    def describe(self, t: int) -> str:
        """The flags of frame t in words ("" when none)."""
        return ", ".join(name for bit, name in FLAG_NAMES.items() if self.flags[t] & bit)


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(length, start) of the longest run of True in a (T,) bool array; (0, -1) when none."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return 0, -1
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))
    return int(ends[k] - starts[k]), int(starts[k])


def frame_quality(reprojection_px: np.ndarray, face_px: float, depth_confidence: np.ndarray | None, cfg
                  ) -> FrameQuality:
    """Flag each frame of a fit. reprojection_px (T,) the fit's per-frame mean error (NaN: nothing
    observed), face_px the clip's face height (the pixel scale), depth_confidence (T,) in [0,1] or
    None; cfg: SmplxConfig (max_frame_reprojection_face, min_depth_confidence, depth_gates_frames)."""
    if not face_px > 0:
        raise ValueError(f"face_px={face_px!r}: the face height the pixel errors are scaled by must be > 0")
    error = np.asarray(reprojection_px, np.float64) / face_px
    flags = np.zeros(len(error), np.uint8)
    flags[~np.isfinite(error)] |= MISSING
    flags[np.isfinite(error) & (np.nan_to_num(error) > cfg.max_frame_reprojection_face)] |= REPROJECTION
    if depth_confidence is not None:
        depth = np.asarray(depth_confidence, np.float64)
        if depth.shape != error.shape:
            raise ValueError(f"depth_confidence has shape {depth.shape}, reprojection_px {error.shape}: one value "
                             "per frame each")
        flags[np.nan_to_num(depth, nan=1.0) < cfg.min_depth_confidence] |= DEPTH
    gating = MISSING | REPROJECTION | (DEPTH if cfg.depth_gates_frames else 0)
    bad = (flags & gating) != 0
    flags[1:-1][~bad[1:-1] & bad[:-2] & bad[2:]] |= BETWEEN_BAD
    gating |= BETWEEN_BAD
    return FrameQuality(reprojection_face=error.astype(np.float32), flags=flags, frame_ok=(flags & gating) == 0,
                        gating=gating)


def frame_gates(quality: FrameQuality, fps: float, cfg) -> list[tuple[str, str, float, float]]:
    """The clip gates on counted bad frames, as (code, detail, value, threshold)."""
    failed = []
    run, start = quality.longest_bad_run()
    run_s = run / fps if fps > 0 else float(run)
    if run_s > cfg.max_bad_run_s:
        failed.append(("bad_run", f"{run} bad frames in a row ({run_s:.2f} s from frame {start}: "
                       f"{quality.describe(start)}) > {cfg.max_bad_run_s:g} s", run_s, cfg.max_bad_run_s))
    share = quality.bad_share
    if share > cfg.max_bad_frame_share:
        failed.append(("bad_frames", f"{share:.0%} of frames badly fitted or unobserved > "
                       f"{cfg.max_bad_frame_share:.0%}", share, cfg.max_bad_frame_share))
    return failed
