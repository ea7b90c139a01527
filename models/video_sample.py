"""Video generation with the trained video model: temporal outpainting, editing, the CLI verbs.

`VideoGenerator(run_or_model_dir)` loads `RUN/model` (VideoDiffusion + its scheduler, the
VAE when latent, video.json). `generate(controls, reference)` makes any number of frames:
a first window of `window` frames, then windows that start `overlap` frames (50 % by
default) before the end of what is already made, conditioned on those frames (they enter
the control branch as known frames, and their noised versions replace the sample's at every
denoising step, so the overlap stays exactly what was made); the new frames are appended.
`region` restricts the generation to a per-pixel mask (edit mode): outside it every sample
step is replaced by the source frames noised, and the result is composited so that every
pixel outside the region is the source's own byte.

Verbs (mentor/cli.py): generate-video (reference image + speech -> talking video, motion
from the motion model or an npz), edit-video (regenerate the mouth or face of a video,
optionally for new speech), personalize (fine-tune a trained model on one identity).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

SMPLX_FIELDS = ("betas", "expression", "global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
                "left_hand_pose", "right_hand_pose", "transl")
MOUTH_LANDMARKS = slice(48, 68)  # of the 68 face landmarks (iBUG layout)
REGIONS = ("mouth", "face")


def model_folder(path: str | os.PathLike[str]) -> Path:
    """A run folder or its model/ folder -> the model folder."""
    p = Path(path)
    if (p / "model" / "video.json").exists():
        return p / "model"
    if (p / "video.json").exists():
        return p
    raise FileNotFoundError(f"{p}: no trained video model (expected RUN/model/video.json from `mentor train-video`)")


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """Starts of the windows covering num_frames: 0, then each `window - overlap` later; the last
    one is moved back to end at num_frames (its known part is then longer)."""
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"window={window}, overlap={overlap}: need window >= 1 and 0 <= overlap < window")
    starts = [0]
    while starts[-1] + window < num_frames:
        starts.append(min(starts[-1] + window - overlap, num_frames - window))
    return starts


class VideoGenerator:
    """A trained video model ready to sample; device "auto" picks CUDA when there is one."""

    def __init__(self, model_dir: str | os.PathLike[str], device: str = "auto", steps: int = 25,
                 body_model_dir: str | None = None):
        from diffusers import DDIMScheduler

        from models.training import resolve_device
        from models.video import VideoDiffusion
        from models.video_train import load_vae

        folder = model_folder(model_dir)
        self.folder = folder
        self.meta = json.loads((folder / "video.json").read_text())
        self.device = resolve_device(device)
        self.model = VideoDiffusion.from_pretrained(folder, low_cpu_mem_usage=False).to(self.device).eval()
        self.scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
        if steps < 1 or steps > self.scheduler.config.num_train_timesteps:
            raise ValueError(f"steps={steps}: use 1..{self.scheduler.config.num_train_timesteps}")
        self.steps = steps
        self.vae = load_vae(str(folder / "vae"), self.device) if self.meta.get("latent") else None
        self.size = int(self.meta["size"])  # frame width
        self.height = int(self.meta.get("height") or self.size)
        self.window = int(self.meta["window"])
        self.body_model_dir = body_model_dir or self.meta.get("body_model_dir")
        self._source = None

    @property
    def source(self):
        if self._source is None:
            from models.controls import load_control_source

            self._source = load_control_source(self.body_model_dir, self.device)
        return self._source

    # ---------------------------------------------------------------- controls

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames the model makes."""
        return self.size, self.height

    def controls(self, arrays: dict[str, Any], ref_arrays: dict[str, Any], ref_image: np.ndarray,
                 src_width: float | None = None, src_height: float | None = None) -> torch.Tensor:
        """Per-frame smplx.* arrays (T,...) with smplx.camera (T,3), the reference frame's arrays
        (...), and the reference image (H,W,3) uint8 at the model's size -> (1,T,C,H,W).
        src_width, src_height: size of the frames the cameras are for (default 2 cx by 2 cy;
        src_height defaults to src_width when only that is given)."""
        a = {k: torch.as_tensor(np.asarray(v, np.float32))[None] for k, v in arrays.items() if k.startswith("smplx.")}
        r = {k: torch.as_tensor(np.asarray(v, np.float32))[None] for k, v in ref_arrays.items() if k.startswith("smplx.")}
        img = torch.as_tensor(np.asarray(ref_image))[None]
        with torch.no_grad():
            c, _ = self.source.render(a, r, img, self.frame_size, src_width, src_height)
        return c

    # ---------------------------------------------------------------- sampling

    @torch.no_grad()
    def sample_window(self, controls: torch.Tensor, reference: torch.Tensor, known: torch.Tensor | None,
                      known_mask: torch.Tensor | None, region: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """One window: controls (1,T,C,H,W), reference (1,3,H,W) in [-1,1], known frames
        (1,T,3,H,W) in [-1,1] with mask (1,T); region (1,T,1,H,W) bool (edit mode: only there
        is anything generated; `known` holds the source frames). Returns (1,T,3,H,W)."""
        from models.video import conditioning
        from models.video_train import decode, encode

        dev = self.device
        controls, reference = controls.to(dev), reference.to(dev)
        B, T = controls.shape[:2]
        if known is None:
            known = torch.zeros(B, T, 3, self.height, self.size, device=dev)
            known_mask = torch.zeros(B, T, device=dev)
        known, known_mask = known.to(dev), known_mask.to(dev)
        cond_known = known_mask if region is None else torch.zeros_like(known_mask)
        cond = conditioning(controls, reference, known, cond_known)
        x0_known = encode(known, self.vae)
        shape = x0_known.shape
        # where the sample is fixed: whole known frames, or outside the region
        fixed = known_mask.view(B, T, 1, 1, 1).expand(shape).bool()
        if region is not None:
            r = region.to(dev).float()
            if self.vae is not None:
                r = torch.nn.functional.adaptive_max_pool2d(r.flatten(0, 1), shape[-2:]).view(B, T, 1, *shape[-2:])
            fixed = fixed | (r < 0.5).expand(shape)
        x = torch.randn(shape, device=dev, generator=generator)
        noise = torch.randn(shape, device=dev, generator=generator)
        self.scheduler.set_timesteps(self.steps, device=dev)
        for t in self.scheduler.timesteps:
            if fixed.any():
                x = torch.where(fixed, self.scheduler.add_noise(x0_known, noise, t.view(1)), x)
            pred = self.model(x, t.expand(B), cond, reference)
            x = torch.stack([self.scheduler.step(pred[:, k], t, x[:, k]).prev_sample for k in range(T)], 1)
        x = torch.where(fixed, x0_known, x)
        return decode(x, self.vae)

    @torch.no_grad()
    def generate(self, controls: torch.Tensor, reference: torch.Tensor, overlap: float = 0.5,
                 source: torch.Tensor | None = None, region: torch.Tensor | None = None, seed: int = 0,
                 progress: bool = False) -> torch.Tensor:
        """controls (1,N,C,H,W) for N frames (any N), reference (1,3,H,W) in [-1,1] ->
        (N,3,H,W) in [-1,1] by temporal outpainting. Edit mode: source (1,N,3,H,W) in [-1,1]
        and region (1,N,1,H,W) bool."""
        N = controls.shape[1]
        W = min(self.window, N)
        ov = int(round(overlap * W))
        if not 0 <= ov < W:
            raise ValueError(f"overlap={overlap}: must leave at least one new frame per window (0 <= overlap < 1)")
        g = torch.Generator(device=self.device).manual_seed(seed)
        out = torch.zeros(1, N, 3, self.height, self.size, device=self.device)
        made = 0
        for s in window_starts(N, W, ov):
            sl = slice(s, s + W)
            n_known = max(0, made - s)
            if region is None:
                known = out[:, sl].clone()
                mask = torch.zeros(1, W, device=self.device)
                mask[:, :n_known] = 1
                frames = self.sample_window(controls[:, sl], reference, known, mask, generator=g)
            else:
                known = source[:, sl].to(self.device).clone()
                known[:, :n_known] = out[:, s:s + n_known]
                frames = self.sample_window(controls[:, sl], reference, known, torch.zeros(1, W, device=self.device),
                                            region=region[:, sl], generator=g)
            out[:, made:s + W] = frames[:, made - s:]
            made = s + W
            if progress:
                log.info("frames %d/%d", made, N)
        return out[0]


# ------------------------------------------------------------------------ helpers

def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(N,3,H,W) in [-1,1] -> (N,H,W,3) uint8."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_model(frames: np.ndarray, size: int | tuple[int, int]) -> torch.Tensor:
    """(N,H,W,3) uint8 at any size -> (1,N,3,h,w) in [-1,1] (area resize) for size (w, h)
    or an int side."""
    from models.controls import frame_size

    w, h = frame_size(size)
    x = torch.as_tensor(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if x.shape[-1] != w or x.shape[-2] != h:
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="area")
    return (x / 127.5 - 1)[None]


def write_video_lossless(frames: np.ndarray, dst: str | Path, fps: float, audio: str | Path | None = None) -> Path:
    """Encode (T,H,W,3) uint8 RGB losslessly (H.264 RGB, qp 0): decoding gives back the exact
    bytes (edit mode keeps every pixel outside the region)."""
    from mentor.media import MediaError

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", f"{fps:g}", "-i", "-"]
    if audio is not None:
        cmd += ["-i", str(audio), "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264rgb", "-qp", "0", "-preset", "veryfast", "-pix_fmt", "rgb24", str(dst)]
    res = subprocess.run(cmd, input=np.ascontiguousarray(frames, dtype=np.uint8).tobytes(), capture_output=True,
                         timeout=600)
    if res.returncode != 0:
        raise MediaError(f"{dst}: encoding failed ({res.stderr.decode(errors='replace').strip()[-300:]})")
    return dst


def region_masks(source, arrays: dict[str, np.ndarray], region: str, height: int, width: int,
                 dilate: int = 2) -> np.ndarray:
    """(T,H,W) bool masks of `region` ("mouth" | "face") at the video's own size, from the
    fitted body: "face" is the rendered face part (mentor.body's PART_NAMES "face"), grown by
    `dilate` pixels; "mouth" is the box around the projected mouth landmarks (48-67), grown by
    half its size, within the body's head and face."""
    from mentor.body import PART_NAMES
    from models.render import rasterize

    if region not in REGIONS:
        raise ValueError(f"region={region!r}: use one of {REGIONS}")
    T = len(arrays["smplx.transl"])
    a = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in arrays.items() if k.startswith("smplx.")}
    verts, _ = source.vertices(a, (T,))
    cam = torch.nan_to_num(a["smplx.camera"].to(source.device))
    f, cx, cy, fy = source.scaled_camera(cam, (width, height))  # the camera is for 2 cx by 2 cy pixels
    frags = rasterize(verts, source.renderer.faces, f, cx, cy, width, height, focal_y=fy)
    parts = source.renderer.face_parts[frags.face.clamp_min(0)]
    face = (parts == PART_NAMES.index("face")) & frags.mask
    if region == "face":
        m = face.float()[:, None]
        m = torch.nn.functional.max_pool2d(m, 2 * dilate + 1, 1, dilate)[:, 0] > 0
        return m.cpu().numpy()
    from mentor.body import SmplxParams

    vals = {n: torch.nan_to_num(a[f"smplx.{n}"].reshape(T, -1)).to(source.device) for n in SMPLX_FIELDS}
    with torch.no_grad():
        lm = source.body(SmplxParams.from_dict(vals, device=source.device)).landmarks[:, MOUTH_LANDMARKS]
    z = lm[..., 2].clamp_min(1e-6)
    u = lm[..., 0] / z * f[:, None] + cx[:, None]
    v = lm[..., 1] / z * fy[:, None] + cy[:, None]
    out = np.zeros((T, height, width), bool)
    head = ((parts == PART_NAMES.index("face")) | (parts == PART_NAMES.index("head"))) & frags.mask
    head = torch.nn.functional.max_pool2d(head.float()[:, None], 2 * dilate + 1, 1, dilate)[:, 0] > 0
    for t in range(T):  # one box per frame
        x0, x1, y0, y1 = float(u[t].min()), float(u[t].max()), float(v[t].min()), float(v[t].max())
        gx, gy = 0.5 * (x1 - x0) + dilate, 0.5 * (y1 - y0) + dilate
        xa, xb = int(np.floor(max(0, x0 - gx))), int(np.ceil(min(width - 1, x1 + gx)))
        ya, yb = int(np.floor(max(0, y0 - gy))), int(np.ceil(min(height - 1, y1 + gy)))
        if xb >= xa and yb >= ya:
            out[t, ya:yb + 1, xa:xb + 1] = True
    return out & head.cpu().numpy()


def edit_frames(gen: VideoGenerator, frames: np.ndarray, arrays: dict[str, np.ndarray], region: str,
                ref_index: int = 0, seed: int = 0, overlap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Regenerate `region` of frames (T,H,W,3) uint8 driven by the per-frame smplx.* arrays
    (T,...) (the video's own fit, or new motion for new speech). Returns (edited frames, masks
    (T,H,W)); every pixel outside the masks is the input's own byte."""
    T, H, W = frames.shape[:3]
    for k in ("smplx.transl", "smplx.camera"):
        if k not in arrays or len(arrays[k]) != T:
            raise ValueError(f"edit needs per-frame {k} for all {T} frames (got {None if k not in arrays else len(arrays[k])})")
    masks = region_masks(gen.source, arrays, region, H, W)
    Wm, Hm = gen.frame_size
    small = to_model(frames, (Wm, Hm)).to(gen.device)
    ref_img = ((small[0, ref_index].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    ref_arrays = {k: np.asarray(v)[ref_index] for k, v in arrays.items() if k.startswith("smplx.")}
    controls = gen.controls(arrays, ref_arrays, ref_img)
    reg = torch.as_tensor(masks[:, None].astype(np.float32))
    reg_s = torch.nn.functional.adaptive_max_pool2d(reg, (Hm, Wm)) > 0
    out = gen.generate(controls, small[:, ref_index], overlap=overlap, source=small, region=reg_s[None], seed=seed)
    up = torch.nn.functional.interpolate(out.cpu(), size=(H, W), mode="bilinear", align_corners=False)
    gen_u8 = to_uint8(up)
    edited = np.where(masks[..., None], gen_u8, frames)
    return edited.astype(np.uint8), masks


def read_motion_npz(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], float | None]:
    """smplx.* arrays (T rows) and fps from an npz (as `mentor generate-motion` writes them)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: np.asarray(z[k], np.float32) for k in z.files if k.startswith("smplx.")}
        fps = float(z["fps"]) if "fps" in z.files else None
    missing = [f for f in SMPLX_FIELDS if f"smplx.{f}" not in arrays]
    if missing:
        raise ValueError(f"{path}: no arrays {['smplx.' + m for m in missing]} (an npz of smplx.<field> arrays)")
    T = len(arrays["smplx.transl"])
    for k, v in list(arrays.items()):
        if v.ndim == 1 or (k == "smplx.betas" and len(v) == 1):
            arrays[k] = np.repeat(v.reshape(1, -1), T, 0)
    return arrays, fps
