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
    small store has several shards. `body_model` (mentor.body.BodyModel) defaults to the
    generated synthetic SMPL-X model. Returns the store's path.
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
    from mentor.body import Camera, SmplxParams
    from mentor.testmedia import DEFAULT_SENTENCES, speech_envelope, speech_samples

    voice = VOICES[identity_index % len(VOICES)]
    text = DEFAULT_SENTENCES[seed % len(DEFAULT_SENTENCES)]
    seconds = num_frames / fps
    audio = speech_samples(text, voice, seconds=seconds, sample_rate=SAMPLE_RATE)
    env = speech_envelope(audio, SAMPLE_RATE, fps, num_frames)
    motion = make_motion(num_frames, fps, seed=seed, num_betas=body.num_betas,
                         num_expression=body.num_expression, num_pca=body.num_pca_comps)
    # one body shape per identity; the jaw opens with the speech
    motion["betas"] = np.random.default_rng(1000 + identity_index).normal(0, 0.7, (1, body.num_betas))
    motion["jaw_pose"][:, 0] = 0.02 + 0.35 * env
    motion["jaw_pose"][:, 1:] = 0.0
    motion["reye_pose"] = motion["leye_pose"]
    params = {k: np.asarray(v, np.float32) for k, v in motion.items()}
    params["betas"] = np.repeat(params["betas"], num_frames, 0)
    camera = Camera.centered(FOCAL_AT_512 * size / 512, size, size)
    with torch.no_grad():
        out = body(SmplxParams.from_dict(params)).vertices
        pixels = camera.to(out.device).project(out).cpu().numpy()
        verts = out.cpu().numpy()
    faces = body.faces.cpu().numpy()
    skin = np.array(LOOKS[identity_index % len(LOOKS)][1], np.float32)
    rng = np.random.default_rng(seed)
    background = rng.uniform(40, 200, 3).astype(np.float32)
    winding = mesh_winding(verts[0], faces)
    frames = np.stack([render_mesh(v, uv, faces, size, size, skin, background, winding)
                       for v, uv in zip(verts, pixels)])
    cam = camera.to_array()
    arrays = {f"smplx.{k}": v for k, v in params.items()}
    arrays["smplx.camera"] = np.repeat(cam[None], num_frames, 0)
    return {"frames": frames, "audio": audio, "arrays": arrays, "text": text, "voice": voice}


def render_mesh(vertices: np.ndarray, pixels: np.ndarray, faces: np.ndarray, width: int, height: int,
                color, background, winding: float | None = None) -> np.ndarray:
    """Flat-shaded z-buffered render of a mesh: (V,3) camera-space vertices (OpenCV: +z
    forward, +y down), their (V,2) pixels (mentor.body.Camera.project), (F,3) faces ->
    (height,width,3) uint8.

    A point z-buffer, fast in numpy at test resolutions: faces smaller than a pixel are
    drawn by their vertices and centroid, bigger ones by a barycentric grid finer than a
    pixel; the nearest point wins each pixel. Faces turned away from the camera are
    dropped (`winding`: +1 for faces wound counter-clockwise seen from outside, as
    SMPL-X's, -1 for the other way; None works it out from the mesh's signed volume).
    Shading is Lambert on the face normal, lit from the camera.
    """
    img = np.empty((height, width, 3), np.float32)
    img[:] = background
    if winding is None:
        winding = mesh_winding(vertices, faces)
    uv = np.asarray(pixels, np.float64)
    p = vertices[faces]  # (F,3,3)
    a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    normal = np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                       a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], 1)
    centre = p.sum(1)
    facing = (normal * centre).sum(1) * winding
    tri = uv[faces]  # (F,3,2)
    lo, hi = tri.min(1), tri.max(1)
    keep = ((facing < 0) & (p[..., 2] > 1e-3).all(1) & (hi[:, 0] >= 0) & (lo[:, 0] < width)
            & (hi[:, 1] >= 0) & (lo[:, 1] < height))
    if not keep.any():
        return np.clip(np.round(img), 0, 255).astype(np.uint8)
    faces, tri, p, normal, centre, facing = (x[keep] for x in (faces, tri, p, normal, centre, facing))
    cosine = -facing / (np.sqrt((normal * normal).sum(1) * (centre * centre).sum(1)) + 1e-12)
    shade = (0.35 + 0.65 * np.clip(cosine, 0, 1))[:, None] * np.asarray(color, np.float32)[None]
    depth = p[..., 2]  # (F,3)
    edge = np.sqrt(((tri - tri[:, [1, 2, 0]]) ** 2).sum(2)).max(1)
    steps = np.clip(np.ceil(edge).astype(int), 1, 64)  # grid points closer than a pixel
    small = steps == 1
    # small faces: each vertex once (the shade of one of its faces) and each centroid
    owner = np.full(len(vertices), -1, np.int64)
    owner[faces[small].ravel()] = np.repeat(np.flatnonzero(small), 3)
    vid = np.flatnonzero(owner >= 0)
    xs, ys, ds, cs = [uv[vid, 0]], [uv[vid, 1]], [vertices[vid, 2]], [owner[vid]]
    xs.append(tri[small, :, 0].mean(1))
    ys.append(tri[small, :, 1].mean(1))
    ds.append(depth[small].mean(1))
    cs.append(np.flatnonzero(small))
    for n in np.unique(steps[~small]):
        sel = np.flatnonzero(steps == n)
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        grid = i + j <= n
        bary = np.stack([i[grid], j[grid], n - i[grid] - j[grid]], 1).astype(np.float64) / n  # (K,3)
        t, d3 = tri[sel], depth[sel]
        xs.append((t[:, None, :, 0] * bary).sum(2).ravel())
        ys.append((t[:, None, :, 1] * bary).sum(2).ravel())
        ds.append((d3[:, None, :] * bary).sum(2).ravel())
        cs.append(np.repeat(sel, len(bary)))
    x = np.floor(np.concatenate(xs)).astype(np.int64)
    y = np.floor(np.concatenate(ys)).astype(np.int64)
    dep, col = np.concatenate(ds), np.concatenate(cs)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    pix, dep, col = (y * width + x)[inside], dep[inside], col[inside]
    # nearest point per pixel: sort by pixel, then depth (depth scaled into [0, 0.5))
    span = float(dep.max() - dep.min()) or 1.0
    order = np.argsort(pix + (dep - dep.min()) * (0.5 / span))
    first = np.ones(len(order), bool)
    first[1:] = pix[order][1:] != pix[order][:-1]
    win = order[first]
    img.reshape(-1, 3)[pix[win]] = shade[col[win]]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def mesh_winding(vertices: np.ndarray, faces: np.ndarray) -> float:
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
    from mentor.body import load_body_model

    return load_body_model()


def _audio_features():
    from annotate.audio_features import AudioFeatures
    from mentor.config import AudioFeatureConfig

    return AudioFeatures(AudioFeatureConfig(device="cpu"))
