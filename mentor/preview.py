"""Preview video of a clip's annotations: MediaPipe landmarks and the fitted SMPL-X mesh.

The mesh is posed with the body model's forward pass (mentor.body) from the record's
`smplx.*` arrays, projected with `smplx.camera` (mentor.body.Camera), and drawn as
flat-shaded triangles back to front (painter's algorithm) at half opacity over the frame;
landmarks are dots (pose green, face white, hands orange/blue). A record fitted with the
synthetic body model gets a "SYNTHETIC body model" banner.

Fit quality (annotate/smplx_quality.py): a frame the fit marks bad (smplx.frame_ok 0) gets a
red border and a label with its reasons (smplx.frame_flags: no landmarks, reprojection, depth
uncertain); an upper-body joint no confident landmark supports in that frame (smplx.observed 0:
its place is the prior's guess) is circled in magenta where the fit puts it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mentor.media import write_video

COLORS = {"landmarks.pose": (60, 220, 60), "landmarks.face": (255, 255, 255),
          "landmarks.left_hand": (255, 150, 0), "landmarks.right_hand": (0, 150, 255)}
BAD_FRAME = (255, 40, 40)  # RGB: the border and label of a frame the fit marks bad
UNOBSERVED = (255, 0, 255)  # RGB: rings around joints the fit guessed
# joints whose guess is worth showing: neck, head, collars, shoulders, elbows, wrists
MARKED_JOINTS = (12, 15, 13, 14, 16, 17, 18, 19, 20, 21)


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


def posed_joints(record, body_model, chunk: int = 64) -> np.ndarray | None:
    """(T,55,3) camera-space joints from the record's smplx arrays, or None if not fitted."""
    import torch

    from mentor.body import SmplxParams

    if "smplx.transl" not in record.arrays:
        return None
    params = SmplxParams.from_record(record)
    with torch.no_grad():
        out = [body_model(params[s:s + chunk]).joints.cpu().numpy() for s in range(0, params.num_frames, chunk)]
    return np.concatenate(out)


def draw_quality(img: np.ndarray, record, t: int, joints: np.ndarray | None = None) -> bool:
    """Mark frame t of img (H,W,3 RGB, in place) by the fit's per-frame quality: a red border and the
    reasons when smplx.frame_ok says bad, magenta rings on unobserved upper-body joints (joints: (55,3)
    camera-space joints of this frame, to place them). Returns True when the frame was marked bad."""
    import cv2

    ok = record.arrays.get("smplx.frame_ok")
    bad = ok is not None and t < len(ok.data) and not bool(ok.data[t])
    observed = record.arrays.get("smplx.observed")
    if joints is not None and observed is not None and t < len(observed.data) and "smplx.camera" in record.arrays:
        f, cx, cy = (float(c) for c in record.arrays["smplx.camera"].data[t])
        for j in MARKED_JOINTS:
            if observed.data[t, j] or joints[j, 2] <= 1e-3:
                continue
            u, v = f * joints[j, 0] / joints[j, 2] + cx, f * joints[j, 1] / joints[j, 2] + cy
            if -1e4 < u < 1e4 and -1e4 < v < 1e4:
                cv2.circle(img, (int(round(u)), int(round(v))), 7, UNOBSERVED, 2, cv2.LINE_AA)
    if bad:
        h, w = img.shape[:2]
        cv2.rectangle(img, (0, 0), (w - 1, h - 1), BAD_FRAME, max(2, min(h, w) // 64))
        from annotate.smplx_quality import FLAG_NAMES

        flags = record.arrays.get("smplx.frame_flags")
        bits = int(flags.data[t]) if flags is not None and t < len(flags.data) else 0
        why = ", ".join(name for bit, name in FLAG_NAMES.items() if bits & bit) or "bad fit"
        cv2.putText(img, f"BAD FIT: {why}", (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, BAD_FRAME, 1, cv2.LINE_AA)
    return bad


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
    joints = posed_joints(record, body_model) if verts is not None and "smplx.observed" in record.arrays else None
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
        draw_quality(img, record, t, joints[t] if joints is not None and t < len(joints) else None)
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
