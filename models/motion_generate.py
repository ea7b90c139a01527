"""`mentor generate-motion`: speech + a reference -> SMPL-X motion files and preview videos.

The reference gives the body shape, the starting pose and the camera:
- an `.npz` of SMPL-X arrays (`smplx.<field>`, one row or T rows: `reference_frame` picks
  one; `smplx.camera` [f, cx, cy] when present), e.g. a generated motion or a store clip's
  arrays;
- an image or a video clip: fitted with the project's own annotators (MediaPipe Holistic
  landmarks, then the clip-batched SMPL-X fitter; the first second of a clip).

Per sample k the output folder gets `motion_<k>.npz` (smplx.* arrays, T rows, with `fps`
and `camera`) and `motion_<k>.mp4` (the posed mesh, rendered with models.render's z-buffer
from the reference's camera, with the speech muxed in), and `generation.json` says what was
asked and how long it took.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.motion_sample import audio_features_for_wav, generate, load_motion_model
from models.motion_train import SMPLX_FIELDS

log = logging.getLogger(__name__)

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_EXT = {".mp4", ".mov", ".mkv", ".avi", ".webm"}


@dataclass
class Reference:
    params: dict[str, np.ndarray]  # one frame: field -> (n,)
    camera: np.ndarray  # [f, cx, cy]
    size: tuple[int, int]  # (width, height) the camera is for
    source: str
    body_model: str  # "synthetic" | "smplx" | "unknown"


def default_camera(size: int = 512) -> np.ndarray:
    """The camera of the synthetic data (annotate.smplx_synth): f = 1000 px at 512, centred."""
    return np.array([1000.0 * size / 512, size / 2, size / 2], np.float32)


def reference_from_npz(path: Path, frame: int = 0) -> Reference:
    with np.load(path) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    missing = [f for f in SMPLX_FIELDS if f"smplx.{f}" not in arrays]
    if missing:
        raise ValueError(f"{path}: no arrays {['smplx.' + m for m in missing]} (an npz of SMPL-X parameters "
                         "named smplx.<field>, as `mentor generate-motion` writes them)")
    def row(a):
        a = np.asarray(a, np.float32)
        if a.ndim == 1:
            return a
        if not -len(a) <= frame < len(a):
            raise ValueError(f"{path}: --reference-frame {frame} but the arrays have {len(a)} rows")
        return a[frame]
    params = {f: row(arrays[f"smplx.{f}"]) for f in SMPLX_FIELDS}
    cam = row(arrays["smplx.camera"]) if "smplx.camera" in arrays else default_camera()
    w = int(round(2 * float(cam[1]))) or 512
    h = int(round(2 * float(cam[2]))) or 512
    return Reference(params, np.asarray(cam, np.float32), (w, h), str(path), str(arrays.get("body_model", "unknown")))


def reference_from_media(path: Path, model, frame: int = 0, seconds: float = 1.0) -> Reference:
    """Fit SMPL-X to an image or the first `seconds` of a clip with the project's annotators."""
    from annotate.landmarks import HolisticLandmarks
    from annotate.smplx_fit import SmplxFitter
    from mentor.config import LandmarksConfig, SmplxConfig
    from mentor.media import probe, read_frames
    from mentor.record import ClipRecord, SourceRecord

    if path.suffix.lower() in IMAGE_EXT:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{path}: not a readable image")
        frames, fps = img[None, :, :, ::-1].copy(), 25.0
    else:
        info = probe(path)
        fps = info.fps or 25.0
        frames = read_frames(path, fps=fps, start=0.0, end=min(info.duration, seconds))
    if not len(frames):
        raise ValueError(f"{path}: no frames decoded")
    h, w = frames.shape[1:3]
    lm = HolisticLandmarks(LandmarksConfig()).process_frames(frames)
    src = SourceRecord.from_uri(f"file://{path.resolve()}")
    rec = ClipRecord.for_span(src, 0.0, len(frames) / fps)
    rec.fps, rec.width, rec.height = fps, w, h
    for k, a in lm.items():
        rec.add_array(f"landmarks.{k}", a, fps)
    if not np.isfinite(lm["pose"][..., 0]).any() and not np.isfinite(lm["face"][..., 0]).any():
        raise ValueError(f"{path}: no person found (MediaPipe saw no body or face): use another reference")
    cfg = SmplxConfig(num_expression=model.layout.num_expression, num_pca_comps=model.layout.num_hand_pca,
                      device="cpu")
    fitter = SmplxFitter(cfg)
    rec = fitter(rec)
    if "smplx" in rec.errors:
        raise ValueError(f"{path}: the SMPL-X fit failed: {rec.errors['smplx']}")
    if rec.rejected:
        log.warning("%s: the reference fit is poor (%s); using it anyway", path, rec.rejected)
    i = min(max(frame, 0), len(frames) - 1)
    params = {f: np.asarray(rec.arrays[f"smplx.{f}"].data[i], np.float32) for f in SMPLX_FIELDS}
    cam = np.asarray(rec.arrays["smplx.camera"].data[i], np.float32)
    return Reference(params, cam, (w, h), str(path), fitter.body.label)


def load_reference(path: str | os.PathLike[str], model, frame: int = 0) -> Reference:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: reference not found (an image, a video clip, or an npz of SMPL-X arrays)")
    ext = p.suffix.lower()
    if ext == ".npz":
        return reference_from_npz(p, frame)
    if ext in IMAGE_EXT or ext in VIDEO_EXT:
        return reference_from_media(p, model, frame)
    raise ValueError(f"{p}: reference of unknown kind {ext!r}: use an image ({', '.join(sorted(IMAGE_EXT))}), "
                     f"a clip ({', '.join(sorted(VIDEO_EXT))}) or an .npz of smplx.* arrays")


def render_motion(params: dict[str, np.ndarray], camera: np.ndarray, size: tuple[int, int], out_size: int = 256,
                  body_model=None, chunk: int = 16) -> np.ndarray:
    """(T,H,W,3) uint8 frames of the posed mesh, flat-shaded, seen from `camera` (scaled to
    out_size on the longer side)."""
    from mentor.body import SmplxParams, load_body_model
    from models.render import rasterize

    body = body_model or load_body_model(num_expression=params["expression"].shape[-1],
                                         num_pca_comps=params["left_hand_pose"].shape[-1])
    sp = SmplxParams.from_dict(params)
    s = out_size / max(size)
    W, H = max(2, int(round(size[0] * s)) // 2 * 2), max(2, int(round(size[1] * s)) // 2 * 2)
    f, cx, cy = (float(c) * s for c in camera)
    faces = body.faces
    frames = []
    with torch.no_grad():
        for a in range(0, sp.num_frames, chunk):
            v = body(sp[a:a + chunk]).vertices.float()
            frags = rasterize(v, faces, f, cx, cy, W, H)
            tri = v[:, faces]  # (B,F,3,3)
            n = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
            shade = (n[..., 2].abs() / n.norm(dim=-1).clamp_min(1e-12))  # (B,F)
            idx = frags.face.clamp_min(0)
            val = torch.gather(shade, 1, idx.flatten(1)).view_as(idx)
            img = torch.full((*idx.shape, 3), 235.0)
            colour = torch.tensor([200.0, 170.0, 140.0])
            fg = frags.face >= 0
            img[fg] = (0.3 + 0.7 * val[fg])[:, None] * colour
            frames.append(img.clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(frames)


def generate_to_folder(model_path: str | os.PathLike[str], audio: str | os.PathLike[str],
                       reference: str | os.PathLike[str], out: str | os.PathLike[str], seconds: float | None = None,
                       seed: int = 0, samples: int = 1, guidance: float | None = None, scheduler: str | None = None,
                       steps: int | None = None, reference_frame: int = 0, preview: bool = True,
                       preview_size: int = 256, whisper_model: str | None = None, device: str = "cpu") -> dict:
    """Everything `mentor generate-motion` does; returns the summary written to generation.json."""
    from mentor.media import write_video
    from mentor.testmedia import _write_wav

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_motion_model(model_path, device)
    ref = load_reference(reference, model, reference_frame)
    feats, wav, fps = audio_features_for_wav(audio, model, seconds=seconds, whisper_model=whisper_model,
                                             device=device)
    t0 = time.perf_counter()
    motion = generate(model, feats, ref.params, num_samples=samples, seed=seed, guidance=guidance,
                      scheduler=scheduler, steps=steps, device=device)
    sample_s = time.perf_counter() - t0
    speech = _write_wav(out / "speech.wav", wav, 16000)
    files = []
    for k in range(samples):
        arrays = {f"smplx.{f}": motion[f][k] for f in SMPLX_FIELDS}
        arrays["smplx.camera"] = np.repeat(ref.camera[None], len(arrays["smplx.transl"]), 0)
        npz = out / f"motion_{k:02d}.npz"
        np.savez(npz, fps=np.float32(fps), body_model=ref.body_model, **arrays)
        entry = {"npz": npz.name}
        if preview:
            frames = render_motion({f: motion[f][k] for f in SMPLX_FIELDS}, ref.camera, ref.size, preview_size)
            mp4 = write_video(frames, out / f"motion_{k:02d}.mp4", fps, audio=speech)
            entry["mp4"] = mp4.name
        files.append(entry)
    c = model.config
    kind = scheduler or c.sample_scheduler
    steps = steps or (c.num_train_timesteps if kind == "ddpm" else c.sample_steps)
    summary = {"model": str(model_path), "audio": str(audio), "reference": ref.source, "seconds": len(wav) / 16000,
               "frames": int(feats.shape[0]), "fps": fps, "samples": samples, "seed": seed,
               "guidance": c.guidance_scale if guidance is None else guidance,
               "scheduler": kind, "steps": steps,
               "sampling_seconds": round(sample_s, 3), "body_model": ref.body_model, "files": files}
    (out / "generation.json").write_text(json.dumps(summary, indent=1))
    return summary
