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


def square_crop(img: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop (H,W,3) to a square; camera [f, cx, cy] moved with it (principal point kept
    at the square's centre when it was at the image's)."""
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    cam = np.asarray(camera, np.float32).copy()
    cam[1] -= x0
    cam[2] -= y0
    return img[y0:y0 + s, x0:x0 + s], cam


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def fit_frames(frames: np.ndarray, fps: float, motion_model=None) -> dict[str, np.ndarray]:
    """SMPL-X fit of every frame with the project's annotators (MediaPipe Holistic landmarks,
    the clip-batched fitter): smplx.* arrays (T,...) with smplx.camera (T,3)."""
    from annotate.landmarks import HolisticLandmarks
    from annotate.smplx_fit import SmplxFitter
    from mentor.config import LandmarksConfig, SmplxConfig
    from mentor.record import ClipRecord, SourceRecord

    h, w = frames.shape[1:3]
    lm = HolisticLandmarks(LandmarksConfig()).process_frames(frames)
    src = SourceRecord.from_uri("file:///generated")
    rec = ClipRecord.for_span(src, 0.0, len(frames) / fps)
    rec.fps, rec.width, rec.height = fps, w, h
    for k, a in lm.items():
        rec.add_array(f"landmarks.{k}", a, fps)
    layout = _body_layout(motion_model).layout
    rec = SmplxFitter(SmplxConfig(num_expression=layout.num_expression, num_pca_comps=layout.num_hand_pca,
                                  device="cpu"))(rec)
    if "smplx" in rec.errors:
        raise ValueError(f"the SMPL-X fit failed: {rec.errors['smplx']}")
    return {k: np.asarray(a.data, np.float32) for k, a in rec.arrays.items() if k.startswith("smplx.")}


def generate_video(image: str, audio: str, model: str, out: str, motion: str | None = None,
                   motion_model: str | None = None, device: str = "auto", steps: int = 25, overlap: float = 0.5,
                   seed: int = 0, fps: float | None = None, reference_fit: str | None = None,
                   seconds: float | None = None) -> dict[str, Any]:
    """Reference image + speech (+ motion) -> talking video with the speech muxed in.

    The reference image is fitted with the project's annotators (MediaPipe Holistic, the
    SMPL-X fitter), unless `reference_fit` gives its fit (an npz of smplx.* arrays with
    smplx.camera, first row). The motion (from --motion or the motion model) is rendered
    with the reference's camera. seconds: generate only the first seconds of the speech."""
    from mentor.media import read_audio, write_video
    from models.motion_generate import load_reference
    from models.video_sample import VideoGenerator, read_motion_npz, to_model, to_uint8

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
    ref = load_reference(reference_fit or image, _body_layout(mm))
    crop, cam = square_crop(img, ref.camera)
    S = gen.size
    ref_small = _resize(crop, S)
    ref_cam = np.asarray(cam, np.float32)  # for the square crop, crop.shape[0] pixels wide
    ref_arrays = {f"smplx.{k}": np.asarray(v, np.float32) for k, v in ref.params.items()}
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
        params = generate(mm, feats, ref.params, num_samples=1, seed=seed)
        arrays = {f"smplx.{k}": np.asarray(v[0], np.float32) for k, v in params.items()}
    n = min(len(arrays["smplx.transl"]), max(1, int(round(seconds * fps))))
    arrays = {k: np.asarray(v)[:n] for k, v in arrays.items() if k.startswith("smplx.")}
    arrays["smplx.camera"] = np.repeat(ref_cam[None], n, 0)  # the motion lives in the reference's camera
    t0 = time.perf_counter()
    controls = gen.controls(arrays, ref_arrays, ref_small, src_width=crop.shape[0])
    frames = gen.generate(controls, to_model(ref_small[None], S)[:, 0], overlap=overlap, seed=seed)
    gen_s = time.perf_counter() - t0
    path = write_video(to_uint8(frames), out, fps, audio=audio)
    return {"out": str(path), "frames": n, "fps": fps, "size": S, "seconds_generating": round(gen_s, 2),
            "frames_per_s": round(n / max(gen_s, 1e-9), 3)}


def edit_video(video: str, region: str, model: str, out: str, audio: str | None = None, fit: str | None = None,
               motion_model: str | None = None, device: str = "auto", steps: int = 25, seed: int = 0) -> dict[str, Any]:
    """Regenerate the mouth or face of a video (for its own speech, or new speech with the
    motion model's jaw and expression); every other pixel stays the input's, and the output
    is encoded losslessly so that it does in the file too."""
    from mentor.media import extract_audio, probe, read_frames
    from models.video_sample import REGIONS, VideoGenerator, edit_frames, read_motion_npz, write_video_lossless

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
        ref = {k[len("smplx."):]: v[0] for k, v in arrays.items() if k != "smplx.camera"}
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
    return {"out": str(out), "frames": T, "fps": fps, "region": region,
            "region_share": round(float(masks.mean()), 4)}


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
