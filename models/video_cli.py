"""What the video verbs of `mentor` do (mentor/cli.py parses the arguments and calls these).

    mentor train-video --store S -o RUN [--where Q] [--size 64] [--window 8] [--stage1-steps N] ...
    mentor generate-video --image ref.jpg --audio speech.wav --model RUN [--motion m.npz | --motion-model MRUN] -o out.mp4
    mentor edit-video --video in.mp4 --region mouth|face --model RUN [--audio new.wav --motion-model MRUN] [--fit fit.npz] -o out.mp4
    mentor personalize --store S --where "identity == 'x'" --model RUN -o NEW_RUN [--steps N]
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _body_layout(motion_model=None) -> Any:
    """What models.motion_generate's fitting asks of a motion model: the expression and hand
    PCA sizes (the store's defaults without a motion model)."""
    if motion_model is not None:
        return motion_model
    return SimpleNamespace(layout=SimpleNamespace(num_expression=10, num_hand_pca=12))


def aspect_crop(img: np.ndarray, camera: np.ndarray, width: int = 1, height: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop (H,W,3) to the aspect width:height (square by default); camera [f, cx, cy]
    moved with it (the principal point stays at the crop's centre when it was at the image's)."""
    h, w = img.shape[:2]
    if w * height >= h * width:  # too wide: keep the height
        ch, cw = h, max(1, int(round(h * width / height)))
    else:
        cw, ch = w, max(1, int(round(w * height / width)))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    cam = np.asarray(camera, np.float32).copy()
    cam[1] -= x0
    cam[2] -= y0
    return img[y0:y0 + ch, x0:x0 + cw], cam


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H,W,3) -> size (width, height), area interpolation."""
    import cv2

    return cv2.resize(img, tuple(int(v) for v in size), interpolation=cv2.INTER_AREA)


def fit_frames(frames: np.ndarray, fps: float, motion_model=None) -> dict[str, np.ndarray]:
    """SMPL-X fit of every frame with the project's annotators (MediaPipe Holistic landmarks,
    the clip-batched fitter): smplx.* arrays (T,...) with smplx.camera (T,3)."""
    return fit_record(frames, fps, motion_model)[0]


def fit_record(frames: np.ndarray, fps: float, motion_model=None, uri: str = "file:///generated"):
    """`fit_frames` and the fitted clip record (its scores say how well the fit went; its
    `rejected` says when the fitter's own gates would have dropped the clip)."""
    from annotate.landmarks import HolisticLandmarks
    from annotate.smplx_fit import SmplxFitter
    from mentor.config import LandmarksConfig, SmplxConfig
    from mentor.record import ClipRecord, SourceRecord

    h, w = frames.shape[1:3]
    lm = HolisticLandmarks(LandmarksConfig()).process_frames(frames)
    if not np.isfinite(lm["pose"][..., 0]).any() and not np.isfinite(lm["face"][..., 0]).any():
        raise ValueError(f"{uri}: no person found (MediaPipe saw no body or face in {len(frames)} frame(s))")
    src = SourceRecord.from_uri(uri)
    rec = ClipRecord.for_span(src, 0.0, len(frames) / fps)
    rec.fps, rec.width, rec.height = fps, w, h
    for k, a in lm.items():
        rec.add_array(f"landmarks.{k}", a, fps)
    layout = _body_layout(motion_model).layout
    rec = SmplxFitter(SmplxConfig(num_expression=layout.num_expression, num_pca_comps=layout.num_hand_pca,
                                  device="cpu"))(rec)
    if "smplx" in rec.errors:
        raise ValueError(f"the SMPL-X fit failed: {rec.errors['smplx']}")
    if rec.rejected:
        log.warning("%s: the SMPL-X fit is poor (%s); using it anyway", uri, rec.rejected)
    return {k: np.asarray(a.data, np.float32) for k, a in rec.arrays.items() if k.startswith("smplx.")}, rec


def generate_video(image: str, audio: str, model: str, out: str, motion: str | None = None,
                   motion_model: str | None = None, device: str = "auto", steps: int = 25, overlap: float = 0.5,
                   seed: int = 0, fps: float | None = None, reference_fit: str | None = None,
                   seconds: float | None = None) -> dict[str, Any]:
    """Reference image + speech (+ motion) -> talking video with the speech muxed in.

    The reference image is fitted with the project's annotators (MediaPipe Holistic, the
    SMPL-X fitter), unless `reference_fit` gives its fit (an npz of smplx.* arrays with
    smplx.camera, first row); a fit made here is kept beside the output as
    `<out>.reference.npz` (usable as `reference_fit` next time) and its clip record (scores,
    errors, whether its gates would reject it) as `<out>.reference.json`. The image is
    centre-cropped to the model's aspect. The motion (from --motion or the motion model) is
    rendered with the reference's camera. seconds: generate only the first seconds of the
    speech."""
    from mentor.media import read_audio, write_video
    from models.motion_generate import load_reference
    from models.video_sample import SMPLX_FIELDS, VideoGenerator, read_motion_npz, to_model, to_uint8

    if motion is None and motion_model is None:
        raise ValueError("generate-video needs the motion: --motion file.npz or --motion-model RUN")
    for p, what in ((image, "--image"), (audio, "--audio"), (motion, "--motion"), (reference_fit, "--reference-fit")):
        if p is not None and not Path(p).exists():
            raise FileNotFoundError(f"{what} {p}: not found")
    gen = VideoGenerator(model, device=device, steps=steps)
    mm = None
    if motion_model is not None:
        from models.motion_sample import load_motion_model

        mm = load_motion_model(motion_model, "cpu")
    from PIL import Image, UnidentifiedImageError

    try:
        img = np.asarray(Image.open(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"--image {image}: not a readable image ({e})") from None
    fit_files = {}
    if reference_fit is not None:
        ref = load_reference(reference_fit, _body_layout(mm))
        ref_params, ref_camera = ref.params, ref.camera
    else:  # fit the image itself: MediaPipe Holistic, then the SMPL-X fitter
        t_fit = time.perf_counter()
        fitted, rec = fit_record(img[None], 25.0, mm, uri=Path(image).resolve().as_uri())
        ref_params = {f: fitted[f"smplx.{f}"][0] for f in SMPLX_FIELDS}  # not the fit's quality arrays
        ref_camera = fitted["smplx.camera"][0]
        stem = Path(out).with_suffix("")
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        np.savez(f"{stem}.reference.npz", **{k: v[:1] for k, v in fitted.items()})
        rec_json = json.loads(rec.to_json())
        rec_json.pop("arrays", None)
        rec_json["fit_seconds"] = round(time.perf_counter() - t_fit, 2)
        Path(f"{stem}.reference.json").write_text(json.dumps(rec_json, indent=1, default=str))
        fit_files = {"reference_fit": f"{stem}.reference.npz", "reference_record": f"{stem}.reference.json"}
    Wm, Hm = gen.frame_size
    crop, cam = aspect_crop(img, ref_camera, Wm, Hm)
    ref_small = _resize(crop, (Wm, Hm))
    ref_cam = np.asarray(cam, np.float32)  # for the crop, crop.shape[1] x crop.shape[0] pixels
    ref_arrays = {f"smplx.{k}": np.asarray(v, np.float32) for k, v in ref_params.items()}
    ref_arrays["smplx.camera"] = ref_cam
    if seconds is not None and seconds <= 0:
        raise ValueError(f"seconds={seconds}: must be > 0")
    wav = read_audio(audio, 16000)
    seconds = min(len(wav) / 16000, seconds or float("inf"))
    if motion is not None:
        arrays, mfps = read_motion_npz(motion)
        fps = fps or mfps or 25.0
    else:
        from models.motion_sample import audio_features_for_wav, generate

        feats, _, fps = audio_features_for_wav(audio, mm, seconds=seconds)
        params = generate(mm, feats, ref_params, num_samples=1, seed=seed)
        arrays = {f"smplx.{k}": np.asarray(v[0], np.float32) for k, v in params.items()}
    n = min(len(arrays["smplx.transl"]), max(1, int(round(seconds * fps))))
    arrays = {k: np.asarray(v)[:n] for k, v in arrays.items() if k.startswith("smplx.")}
    arrays["smplx.camera"] = np.repeat(ref_cam[None], n, 0)  # the motion lives in the reference's camera
    t0 = time.perf_counter()
    controls = gen.controls(arrays, ref_arrays, ref_small, src_width=crop.shape[1], src_height=crop.shape[0])
    frames = gen.generate(controls, to_model(ref_small[None], (Wm, Hm))[:, 0], overlap=overlap, seed=seed)
    gen_s = time.perf_counter() - t0
    path = write_video(to_uint8(frames), out, fps, audio=audio)
    return {"out": str(path), "frames": n, "fps": fps, "size": Wm, "height": Hm,
            "seconds_generating": round(gen_s, 2), "frames_per_s": round(n / max(gen_s, 1e-9), 3), **fit_files}


def edit_video(video: str, region: str, model: str, out: str, audio: str | None = None, fit: str | None = None,
               motion_model: str | None = None, device: str = "auto", steps: int = 25, seed: int = 0) -> dict[str, Any]:
    """Regenerate the mouth or face of a video (for its own speech, or new speech with the
    motion model's jaw and expression); every other pixel stays the input's, and the output
    is encoded losslessly so that it does in the file too. The regenerated pixels are saved
    beside it as `<out>.region.npz` ("masks": (T,H,W) bool)."""
    from mentor.media import extract_audio, probe, read_frames
    from models.video_sample import (REGIONS, SMPLX_FIELDS, VideoGenerator, edit_frames, read_motion_npz,
                                     write_video_lossless)

    if audio is not None and motion_model is None:
        raise ValueError("edit-video --audio needs --motion-model RUN (the new mouth motion comes from it)")
    if region not in REGIONS:
        raise ValueError(f"--region {region!r}: use one of {REGIONS}")
    info = probe(video)
    fps = info.fps or 25.0
    frames = read_frames(video)
    mm = None
    if audio is not None:
        from models.motion_sample import load_motion_model

        mm = load_motion_model(motion_model, "cpu")
    if fit is not None:
        arrays, _ = read_motion_npz(fit)
    else:
        arrays = fit_frames(frames, fps, mm)
    T = min(len(frames), len(arrays["smplx.transl"]))
    frames = frames[:T]
    arrays = {k: np.asarray(v)[:T] for k, v in arrays.items()}
    if audio is not None:
        from models.motion_sample import audio_features_for_wav, generate

        feats, _, _ = audio_features_for_wav(audio, mm, fps=fps, seconds=T / fps)
        ref = {f: arrays[f"smplx.{f}"][0] for f in SMPLX_FIELDS}
        new = generate(mm, feats, ref, num_samples=1, seed=seed)
        for k in ("jaw_pose", "expression"):  # the mouth follows the new speech; the body stays
            arrays[f"smplx.{k}"] = np.asarray(new[k][0][:T], np.float32)
    gen = VideoGenerator(model, device=device, steps=steps)
    edited, masks = edit_frames(gen, frames, arrays, region, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        sound = audio
        if sound is None and info.has_audio:
            sound = extract_audio(video, Path(tmp) / "a.wav")
        write_video_lossless(edited, out, fps, audio=sound)
    region_file = f"{Path(out).with_suffix('')}.region.npz"
    np.savez_compressed(region_file, masks=masks)
    return {"out": str(out), "frames": T, "fps": fps, "region": region,
            "region_share": round(float(masks.mean()), 4), "region_masks": region_file}


def personalize(store: str, where: str, model: str, out: str, steps: int = 200, lr: float = 5e-5,
                device: str = "auto", **kw) -> dict[str, Any]:
    """Fine-tune a trained video model on one identity's clips (VLOGGER's personalisation):
    both stages again from the trained weights, on the clips `where` selects."""
    from models.video_sample import model_folder
    from models.video_train import train_video

    src = model_folder(model)
    meta = json.loads((src / "video.json").read_text())
    cfg = dict(store=store, run_dir=out, where=where, size=meta["size"], window=meta["window"], init_model=str(src),
               stage1_steps=steps, stage2_steps=max(1, steps // 2), lr=lr, device=device,
               body_model_dir=meta.get("body_model_dir"), **kw)
    if meta.get("latent"):
        cfg["vae_dir"] = str(src / "vae")
    return train_video(cfg)
