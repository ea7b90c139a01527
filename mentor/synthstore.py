"""A small but real store for tests and demos, made offline from known ground truth.

Each clip is a synthetic SMPL-X body (annotate.smplx_synth motion, the generated body
model) talking with an espeak-ng voice: its jaw opens with the speech envelope, its mesh
is rendered into the mp4 with the camera stored in `smplx.camera`, so that the video
frames, the audio and the parameters of a clip agree frame by frame. The store is
written through `StoreWriter`, exactly as `mentor build` writes one:

    {clip}.mp4    H.264, size x size, `fps`
    {clip}.flac   16 kHz mono speech
    {clip}.json   the ClipRecord: identity, split, perceived attributes, annotations
    {clip}.npz    smplx.* (T rows at the video fps, start 0), smplx.camera (T,3) [f, cx, cy],
                  audio.logmel (annotate.audio_features), synthetic.speech_rms (100 per
                  second, start 0.005 s: a signal at another rate than the video)

Identities share their body shape, voice, skin colour and perceived attributes
(attr.skin_tone_group, attr.perceived_age, attr.perceived_gender vary across identities);
splits are assigned per identity, so they are identity-disjoint.

    from mentor.synthstore import write_synthetic_store
    root = write_synthetic_store("out/synth", n_clips=6, seconds=2.0, size=64)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
RMS_FPS = 100.0  # synthetic.speech_rms rows per second

VOICES = ("en+m3", "en+f4", "en-us", "en+f2", "en-gb-scotland", "en+m1")
# (skin tone group, RGB of the skin in the render, perceived age group, perceived gender)
LOOKS = (
    ("light", (236, 200, 180), "20-29", "female"),
    ("medium", (198, 140, 105), "30-39", "male"),
    ("dark", (110, 72, 52), "40-49", "female"),
    ("medium", (175, 120, 90), "50-59", "male"),
    ("light", (225, 185, 160), "60-69", "male"),
    ("dark", (90, 60, 45), "20-29", "male"),
)
FOCAL_AT_512 = 1000.0  # the camera of annotate.smplx_synth.render_clip, scaled to `size`


def write_synthetic_store(root: str | os.PathLike[str], n_clips: int = 6, seconds: float = 3.0, fps: float = 25,
                          size: int = 64, seed: int = 0, identities: int = 3,
                          splits: tuple[str, ...] | None = ("train", "val", "test"),
                          shard_bytes: int = 150_000, body_model=None) -> Path:
    """Write a store of `n_clips` synthetic talking bodies to `root` (an empty or new folder).

    Clip i belongs to identity i % identities; identity k gets split splits[k % len(splits)]
    (splits=None leaves the split column empty). Deterministic from `seed` (the mp4 bytes
    depend on the installed libx264). `shard_bytes` is small by default so that even a
    small store has several shards. `body_model` (mentor.bodymodel.BodyModel) defaults to
    the generated synthetic SMPL-X model. Returns the store's path.
    """
    from mentor.record import Attribute, ClipRecord, SourceRecord
    from mentor.store.writer import StoreWriter

    if not isinstance(n_clips, int) or n_clips < 1:
        raise ValueError(f"n_clips={n_clips!r}: must be an int >= 1")
    if not isinstance(identities, int) or identities < 1:
        raise ValueError(f"identities={identities!r}: must be an int >= 1")
    if not seconds > 0 or not fps > 0:
        raise ValueError(f"seconds={seconds!r}, fps={fps!r}: both must be > 0")
    if not isinstance(size, int) or size < 16 or size % 2:
        raise ValueError(f"size={size!r}: must be an even int >= 16 (H.264 yuv420p needs even sides)")
    if splits is not None and not len(splits):
        raise ValueError("splits=(): give at least one split name, or None for no splits")
    root = Path(root)
    body = body_model or _default_body_model()
    audio_features = _audio_features()
    T = int(round(seconds * fps))
    with tempfile.TemporaryDirectory(prefix="mentor-synthstore-") as tmp, \
            StoreWriter(root, shard_bytes=shard_bytes, meta={"synthetic": True, "seed": seed}) as writer:
        for i in range(n_clips):
            k = i % identities
            identity = f"synth-{seed}-{k:02d}"
            src = SourceRecord.from_uri(f"synthetic://seed{seed}/clip{i:04d}", dataset="synthetic",
                                        license="CC0", identity=identity, probe={"fps": fps, "width": size,
                                                                                 "height": size, "duration": seconds})
            rec = ClipRecord.for_span(src, 0.0, float(seconds))
            rec.fps, rec.width, rec.height = float(fps), size, size
            rec.split = None if splits is None else splits[k % len(splits)]
            clip = make_clip(body, T, fps, size, seed=seed * 100_003 + i, identity_index=k)
            video = Path(tmp) / f"{rec.id}.mp4"
            audio = Path(tmp) / f"{rec.id}.flac"
            from mentor.media import write_video

            write_video(clip["frames"], video, fps)
            _write_flac(audio, clip["audio"])
            rec.files = {"video": str(video), "audio": str(audio)}
            for name, data in clip["arrays"].items():
                rec.add_array(name, data, fps=fps)
            rms = _rms(clip["audio"])
            rec.add_array("synthetic.speech_rms", rms, fps=RMS_FPS, start=0.5 / RMS_FPS)
            tone, _, age, gender = LOOKS[k % len(LOOKS)]
            how = "synthetic: set by mentor.synthstore, not estimated"
            rec.attributes["skin_tone_group"] = Attribute(value=tone, confidence=1.0, method=how)
            rec.attributes["perceived_age"] = Attribute(value=age, confidence=1.0, method=how)
            rec.attributes["perceived_gender"] = Attribute(value=gender, confidence=1.0, method=how)
            rec.annotations["smplx"] = {"body_model": body.label, "camera": "opencv pinhole",
                                        "num_pca_comps": body.num_pca_comps, "flat_hand_mean": False,
                                        "betas": "shared per clip (rows repeat)", "source": "synthetic ground truth"}
            rec.annotations["synthetic"] = {"text": clip["text"], "voice": clip["voice"], "seed": seed}
            rec.mark("smplx")
            audio_features(rec)
            writer.add(rec)
            writer.add_source(src, "ok", clips=1)
    return root


def make_clip(body, num_frames: int, fps: float, size: int, seed: int = 0, identity_index: int = 0) -> dict:
    """One synthetic clip: {"frames" (T,size,size,3) uint8, "audio" float32 at 16 kHz,
    "arrays" {smplx.<field>: (T,...) float32, "smplx.camera": (T,3)}, "text", "voice"}."""
    import torch

    from annotate.smplx_synth import make_motion
    from mentor.testmedia import DEFAULT_SENTENCES, speech_envelope, speech_samples

    voice = VOICES[identity_index % len(VOICES)]
    text = DEFAULT_SENTENCES[seed % len(DEFAULT_SENTENCES)]
    seconds = num_frames / fps
    audio = speech_samples(text, voice, seconds=seconds, sample_rate=SAMPLE_RATE)
    env = speech_envelope(audio, SAMPLE_RATE, fps, num_frames)
    model = body.model
    motion = make_motion(num_frames, fps, seed=seed, num_betas=model.num_betas,
                         num_expression=model.num_expression_coeffs, num_pca=body.num_pca_comps)
    # one body shape per identity; the jaw opens with the speech
    motion["betas"] = np.random.default_rng(1000 + identity_index).normal(0, 0.7, (1, model.num_betas))
    motion["jaw_pose"][:, 0] = 0.02 + 0.35 * env
    motion["jaw_pose"][:, 1:] = 0.0
    motion["reye_pose"] = motion["leye_pose"]
    params = {k: np.asarray(v, np.float32) for k, v in motion.items()}
    params["betas"] = np.repeat(params["betas"], num_frames, 0)
    with torch.no_grad():
        dev = model.v_template.device
        out = model(**{k: torch.from_numpy(v).to(dev) for k, v in params.items()})
    verts = out.vertices.cpu().numpy()
    camera = np.array([FOCAL_AT_512 * size / 512, size / 2, size / 2], np.float32)
    skin = np.array(LOOKS[identity_index % len(LOOKS)][1], np.float32)
    rng = np.random.default_rng(seed)
    background = rng.uniform(40, 200, 3).astype(np.float32)
    frames = np.stack([render_mesh(v, body.faces, camera, size, size, skin, background) for v in verts])
    arrays = {f"smplx.{k}": v for k, v in params.items()}
    arrays["smplx.camera"] = np.repeat(camera[None], num_frames, 0)
    return {"frames": frames, "audio": audio, "arrays": arrays, "text": text, "voice": voice}


def render_mesh(vertices: np.ndarray, faces: np.ndarray, camera: np.ndarray, width: int, height: int,
                color, background, cull: bool = True) -> np.ndarray:
    """Flat-shaded z-buffered render of a mesh: (V,3) camera-space vertices (OpenCV: +z
    forward, +y down), (F,3) faces, camera [f, cx, cy] -> (height,width,3) uint8.

    Each triangle is sampled on a barycentric grid finer than a pixel and the nearest
    sample wins per pixel (a point z-buffer; exact enough at test resolutions and fast in
    numpy). Shading is Lambert on the face normal, lit from the camera. `cull` drops the
    faces turned away from the camera (which side is outside comes from the sign of the
    mesh's volume, so either winding works).
    """
    f, cx, cy = (float(c) for c in camera)
    img = np.empty((height, width, 3), np.float32)
    img[:] = background
    z = vertices[:, 2]
    front = z > 1e-3
    uv = np.empty((len(vertices), 2), np.float64)
    uv[front] = vertices[front, :2] / z[front, None] * f + (cx, cy)
    uv[~front] = np.nan
    all_faces = faces
    tri = uv[faces]  # (F,3,2)
    ok = np.isfinite(tri).all(axis=(1, 2))
    lo, hi = tri.min(1), tri.max(1)
    ok &= (hi[:, 0] >= 0) & (lo[:, 0] < width) & (hi[:, 1] >= 0) & (lo[:, 1] < height)
    faces, tri = faces[ok], tri[ok]
    if not len(faces):
        return img.astype(np.uint8)
    p = vertices[faces]  # (F,3,3)
    a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    normal = np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                       a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], 1)
    centre = p.sum(1)
    facing = (normal * centre).sum(1)
    if cull:
        # keep faces turned to the camera: normal . centre < 0 for a mesh wound counter-
        # clockwise seen from outside (positive signed volume, as SMPL-X), > 0 otherwise
        outward = _winding(vertices, all_faces)
        front = facing * outward < 0
        faces, tri, p, normal, centre, facing = (x[front] for x in (faces, tri, p, normal, centre, facing))
    cosine = np.abs(facing) / (np.sqrt((normal * normal).sum(1) * (centre * centre).sum(1)) + 1e-12)
    shade = (0.35 + 0.65 * cosine)[:, None] * np.asarray(color, np.float32)[None]
    depth = p[..., 2]  # (F,3)
    edge = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(1)
    steps = np.clip(np.ceil(edge).astype(int), 1, 64)  # samples closer than a pixel
    pix, dep, col = [], [], []
    for n in np.unique(steps):
        sel = np.flatnonzero(steps == n)
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = i + j <= n
        bary = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], 1).astype(np.float64) / n  # (K,3)
        t, d3 = tri[sel], depth[sel]
        x = t[:, None, 0, 0] * bary[:, 0] + t[:, None, 1, 0] * bary[:, 1] + t[:, None, 2, 0] * bary[:, 2]
        y = t[:, None, 0, 1] * bary[:, 0] + t[:, None, 1, 1] * bary[:, 1] + t[:, None, 2, 1] * bary[:, 2]
        d = d3[:, None, 0] * bary[:, 0] + d3[:, None, 1] * bary[:, 1] + d3[:, None, 2] * bary[:, 2]
        x, y = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        pix.append((y * width + x)[inside])
        dep.append(d[inside])
        col.append(np.broadcast_to(sel[:, None], x.shape)[inside])
    pix, dep, col = np.concatenate(pix), np.concatenate(dep), np.concatenate(col)
    # nearest sample per pixel: sort by pixel, then depth (depth scaled into [0, 0.5))
    span = float(dep.max() - dep.min()) or 1.0
    order = np.argsort(pix + (dep - dep.min()) * (0.5 / span), kind="stable")
    first = np.ones(len(order), bool)
    first[1:] = pix[order][1:] != pix[order][:-1]
    win = order[first]
    img.reshape(-1, 3)[pix[win]] = shade[col[win]]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _winding(vertices: np.ndarray, faces: np.ndarray) -> float:
    """+1 when the faces are wound counter-clockwise seen from outside (positive signed
    volume), else -1."""
    p = vertices[faces].astype(np.float64)
    return 1.0 if np.einsum("fi,fi->", p[:, 0], np.cross(p[:, 1], p[:, 2])) >= 0 else -1.0


def _rms(audio: np.ndarray) -> np.ndarray:
    """RMS of each 10 ms of `audio` (16 kHz): (N,) float32, row i centred at (i + 0.5) / 100 s."""
    hop = int(SAMPLE_RATE / RMS_FPS)
    n = len(audio) // hop
    x = np.asarray(audio[:n * hop], np.float64).reshape(n, hop)
    return np.sqrt((x * x).mean(1)).astype(np.float32)


def _write_flac(path: Path, samples: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(samples, -1, 1), SAMPLE_RATE, format="FLAC", subtype="PCM_16")


def _default_body_model():
    from mentor.bodymodel import load_body_model

    return load_body_model()


def _audio_features():
    from annotate.audio_features import AudioFeatures
    from mentor.config import AudioFeatureConfig

    return AudioFeatures(AudioFeatureConfig(device="cpu"))
