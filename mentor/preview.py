"""Preview video of a clip's annotations: MediaPipe landmarks and the fitted SMPL-X mesh.

The mesh is posed with the body model's forward pass (mentor.body) from the record's
`smplx.*` arrays, projected with `smplx.camera` (mentor.body.Camera), and drawn as
flat-shaded triangles back to front (painter's algorithm) at half opacity over the frame;
landmarks are dots (pose green, face white, hands orange/blue). A record fitted with the
synthetic body model gets a "SYNTHETIC body model" banner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mentor.media import write_video

COLORS = {"landmarks.pose": (60, 220, 60), "landmarks.face": (255, 255, 255),
          "landmarks.left_hand": (255, 150, 0), "landmarks.right_hand": (0, 150, 255)}


def posed_vertices(record, body_model, chunk: int = 64) -> np.ndarray | None:
    """(T,V,3) camera-space vertices from the record's smplx arrays, or None if not fitted."""
    import torch

    from mentor.body import SmplxParams

    if "smplx.transl" not in record.arrays:
        return None
    params = SmplxParams.from_record(record)
    with torch.no_grad():
        out = [body_model(params[s:s + chunk]).vertices.cpu().numpy() for s in range(0, params.num_frames, chunk)]
    return np.concatenate(out)


def draw_mesh(img: np.ndarray, verts: np.ndarray, faces: np.ndarray, camera: np.ndarray, alpha: float = 0.5) -> None:
    """Draw camera-space vertices (V,3) as shaded triangles into img (H,W,3 uint8), in place.

    faces (F,3) vertex indices; camera: the store's [f, cx, cy] row.
    """
    import cv2
    import torch

    from mentor.body import Camera

    uv = Camera.from_array(camera).project(torch.as_tensor(verts, dtype=torch.float32)).numpy()
    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    facing = n[:, 2] < 0  # towards the camera (OpenCV: camera looks along +z)
    shade = np.abs(n[:, 2])
    order = np.argsort(-tri[:, :, 2].mean(1))  # far first
    layer = img.copy()
    pts = np.round(uv[faces] * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    for i in order:
        if not facing[i] and shade[i] > 0.2:
            continue
        c = int(60 + 170 * shade[i])
        cv2.fillConvexPoly(layer, pts[i], (c, int(c * 0.85), int(c * 0.7)), lineType=cv2.LINE_AA, shift=4)
    img[:] = (alpha * layer + (1 - alpha) * img).astype(np.uint8)


def render_preview(frames: np.ndarray, record, body_model, out_path: str | Path, draw_landmarks: bool = True) -> Path:
    """Write an mp4 of `frames` (T,H,W,3 RGB) with the record's landmarks and fitted mesh."""
    import cv2

    frames = np.array(frames, dtype=np.uint8, copy=True)
    verts = posed_vertices(record, body_model) if body_model is not None else None
    faces = body_model.faces.cpu().numpy() if verts is not None else None
    synthetic = record.annotations.get("smplx", {}).get("body_model") == "synthetic"
    for t in range(len(frames)):
        img = frames[t]
        if verts is not None and t < len(verts):
            draw_mesh(img, verts[t], faces, record.arrays["smplx.camera"].data[t])
        if draw_landmarks:
            for name, color in COLORS.items():
                a = record.arrays.get(name)
                if a is None or t >= len(a.data):
                    continue
                for x, y in a.data[t][:, :2]:
                    if np.isfinite(x) and np.isfinite(y):
                        cv2.circle(img, (int(round(x)), int(round(y))), 1 if name == "landmarks.face" else 3,
                                   color, -1, cv2.LINE_AA)
        if synthetic:
            cv2.putText(img, "SYNTHETIC body model", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 80, 80), 1,
                        cv2.LINE_AA)
    fps = record.fps or 25.0
    return write_video(frames, out_path, fps=fps)


# -- hook: the mesh overlay rasterised with the video model's z-buffer (models/render.py):
# exact per-pixel occlusion instead of the painter's order above, batched in torch.
# `draw_mesh` keeps its signature; the painter's version stays as `draw_mesh_painter`.

def draw_mesh_zbuffer(img: np.ndarray, verts: np.ndarray, faces: np.ndarray, camera: np.ndarray,
                      alpha: float = 0.5) -> None:
    """draw_mesh with models.render.rasterize: flat |n.z| shading, blended at `alpha`, in place."""
    import torch

    from models.render import rasterize

    f, cx, cy = (float(c) for c in camera)
    v = torch.as_tensor(verts, dtype=torch.float32)
    fc = torch.as_tensor(faces, dtype=torch.long)
    frags = rasterize(v, fc, f, cx, cy, img.shape[1], img.shape[0])
    tri = v[fc]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    shade = (n[:, 2].abs() / n.norm(dim=1).clamp_min(1e-12)).numpy()
    face = frags.face[0].numpy()
    fg = face >= 0
    c = 60 + 170 * shade[face[fg]]
    layer = np.stack([c, c * 0.85, c * 0.7], -1)
    img[fg] = (alpha * layer + (1 - alpha) * img[fg]).astype(np.uint8)


draw_mesh_painter = draw_mesh
draw_mesh = draw_mesh_zbuffer
