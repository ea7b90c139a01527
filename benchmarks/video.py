"""Video model benchmark: control rendering, training throughput, generation with outpainting.

1. Control rendering at --size (256) of the SMPL-X mesh (the body model in use; the synthetic
   stand-in without $MENTOR_SMPLX_DIR), posed over --frames frames: models/render.rasterize
   (face index, depth, barycentrics; batched) and the full controls (dense map, part masks,
   warped reference), against a software OpenGL renderer measured in the same run (moderngl
   on Mesa's llvmpipe through EGL, face index + depth read back per frame) where it starts,
   else against trimesh ray casting (one ray per pixel). Frames/s and the ratio; both sides
   get --threads threads (LP_NUM_THREADS for llvmpipe unless set).
2. Training: samples/s and the share of step time spent waiting for data, stage 1 (frames)
   and stage 2 (clips), on a synthetic store (mentor.synthstore) at --train-size, with CPU
   seconds and the load average beside them; --baseline-loader trains again with torch's
   default loader start (workers spawned at each epoch's first batch) for the ratio.
3. Generation: frames/s with temporal outpainting (50 % overlap) of --gen-frames frames,
   against the same frames generated as independent windows (no overlap) in the same run.
On CUDA (device auto) the same figures run on the GPU and peak memory is printed.

    python benchmarks/video.py [--size 256] [--frames 32] [--train-steps 20] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def posed_frames(body, n: int, seed: int = 0) -> torch.Tensor:
    """(n,V,3) camera-space vertices: random small poses, upper body framed at 2.5 m."""
    from mentor.body import SmplxParams

    g = torch.Generator().manual_seed(seed)
    p = body.zeros(n)
    vals = p.as_dict()
    vals["body_pose"] = torch.randn(n, 63, generator=g) * 0.15
    vals["global_orient"] = torch.tensor([np.pi, 0.0, 0.0]).expand(n, 3).clone()  # y down, z forward
    vals["transl"] = torch.tensor([0.0, 0.35, 2.2]).expand(n, 3).clone()
    with torch.no_grad():
        return body(SmplxParams.from_dict(vals, device=body.device)).vertices


def time_it(fn, repeats: int = 3) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process, all its threads) of fn()."""
    fn()  # warm-up
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return best, best_cpu


class GLRenderer:
    """moderngl off-screen: face index (R32I via gl_PrimitiveID) and depth, read back per frame."""

    def __init__(self, faces: np.ndarray, num_vertices: int, size: int):
        import moderngl

        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.size = size
        prog = self.ctx.program(vertex_shader="""
            #version 330
            uniform vec3 cam;  // f, cx, cy (pixels)
            uniform float size;
            in vec3 pos;
            out float z;
            void main() {
                float u = pos.x / pos.z * cam.x + cam.y, v = pos.y / pos.z * cam.x + cam.z;
                z = pos.z;
                // pixel centres at integers: NDC = (p + 0.5) / size * 2 - 1 (row v lands in texture row v)
                gl_Position = vec4(((u + 0.5) / size * 2.0 - 1.0) * pos.z, ((v + 0.5) / size * 2.0 - 1.0) * pos.z,
                                   (pos.z - 0.02) / 100.0 * pos.z, pos.z);
            }""", fragment_shader="""
            #version 330
            in float z;
            layout(location = 0) out int face;
            layout(location = 1) out float depth;
            void main() { face = gl_PrimitiveID; depth = z; }""")
        self.prog = prog
        self.vbo = self.ctx.buffer(reserve=num_vertices * 12)
        ibo = self.ctx.buffer(np.ascontiguousarray(faces, dtype=np.int32).tobytes())
        self.vao = self.ctx.vertex_array(prog, [(self.vbo, "3f", "pos")], index_buffer=ibo, index_element_size=4)
        self.face_tex = self.ctx.texture((size, size), 1, dtype="i4")
        self.depth_tex = self.ctx.texture((size, size), 1, dtype="f4")
        self.fbo = self.ctx.framebuffer([self.face_tex, self.depth_tex], self.ctx.depth_renderbuffer((size, size)))
        prog["size"].value = float(size)

    def render(self, verts: np.ndarray, cam: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        import moderngl

        self.prog["cam"].value = cam
        self.fbo.use()
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.fbo.clear(depth=1.0)
        self.face_tex.write(np.full((self.size, self.size), -1, np.int32).tobytes())
        self.vbo.write(np.ascontiguousarray(verts, dtype=np.float32).tobytes())
        self.vao.render(moderngl.TRIANGLES)
        face = np.frombuffer(self.face_tex.read(), np.int32).reshape(self.size, self.size)
        depth = np.frombuffer(self.depth_tex.read(), np.float32).reshape(self.size, self.size)
        return face, depth


def bench_render(args, device) -> None:
    from mentor.body import load_body_model
    from models.render import ControlRenderer, rasterize

    body = load_body_model(args.body_model_dir, device=device)
    S = args.size
    verts = posed_frames(body, args.frames).to(device)
    faces = body.faces.to(device)
    f, c = 1.6 * S, (S - 1) / 2
    t_rast, c_rast = time_it(lambda: rasterize(verts, faces, f, c, c, S, S))
    renderer = ControlRenderer.from_body_model(body).to(device)
    ref = torch.rand(S, S, 3, device=device)
    t_ctrl, c_ctrl = time_it(lambda: renderer(verts, f, c, c, S, S, ref_image=ref, ref_verts=verts[0], ref_camera=(f, c, c)))
    n = args.frames
    frags = rasterize(verts, faces, f, c, c, S, S)
    cover = float(frags.mask.float().mean())
    print(f"control rendering at {S}x{S}, {body.num_vertices} vertices, {faces.shape[0]} faces, {n} frames, "
          f"body covers {100 * cover:.0f} % of the pixels ({device}, load average {os.getloadavg()[0]:.1f}):")
    print(f"  torch z-buffer rasterize      {n / t_rast:8.1f} frames/s ({n / c_rast:.1f} per CPU second)")
    print(f"  full controls (dense, parts, warp) {n / t_ctrl:8.1f} frames/s ({n / c_ctrl:.1f} per CPU second)")
    v_np, f_np = verts.cpu().numpy(), faces.cpu().numpy()
    try:
        gl = GLRenderer(f_np, v_np.shape[1], S)
        info = gl.ctx.info["GL_RENDERER"]
    except Exception as e:  # no EGL / Mesa here
        gl, info = None, f"{type(e).__name__}: {e}"
    if gl is not None:
        t_gl, c_gl = time_it(lambda: [gl.render(v, (f, c, c)) for v in v_np])
        face_gl, _ = gl.render(v_np[0], (f, c, c))
        # texture row 0 is NDC y = -1, which the shader maps to pixel row 0: no flip
        agree = float((face_gl == frags.face[0].cpu().numpy()).mean())
        print(f"  OpenGL (moderngl, {info})   {n / t_gl:8.1f} frames/s ({n / c_gl:.1f} per CPU second); face index "
              f"agrees on {100 * agree:.1f} % of pixels")
        print(f"  ratio torch / OpenGL: {t_gl / t_rast:.2f}x wall, {c_gl / c_rast:.2f}x CPU; full controls / OpenGL "
              f"rasterising: {t_gl / t_ctrl:.2f}x wall")
    else:
        import trimesh
        from trimesh.ray.ray_triangle import RayMeshIntersector

        print(f"  (no OpenGL: {info}); baseline: trimesh ray casting on 2 frames")
        ys, xs = np.mgrid[0:S, 0:S]
        dirs = np.stack([(xs - c) / f, (ys - c) / f, np.ones((S, S))], -1).reshape(-1, 3)

        def cast():
            for v in v_np[:2]:
                RayMeshIntersector(trimesh.Trimesh(v, f_np, process=False)).intersects_first(np.zeros_like(dirs), dirs)
        t_tm, c_tm = time_it(cast, repeats=1)
        t_tm, c_tm = t_tm / 2, c_tm / 2
        print(f"  trimesh ray casting          {1 / t_tm:8.2f} frames/s ({1 / c_tm:.2f} per CPU second)")
        print(f"  ratio torch / trimesh: {t_tm / (t_rast / n):.1f}x wall, {c_tm / (c_rast / n):.1f}x CPU")
    if device.type == "cuda":
        print(f"  peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (loader workers)."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def bench_train_and_generate(args, device) -> None:
    from mentor.synthstore import write_synthetic_store
    from models.video_train import train_loop

    tmp = Path(tempfile.mkdtemp(prefix="video_bench_"))
    try:
        t = time.perf_counter()
        store = write_synthetic_store(tmp / "store", n_clips=4, seconds=3.0, fps=25, size=args.train_size,
                                      identities=2, splits=None)
        print(f"synthetic store: 4 clips x 3 s at {args.train_size} px in {time.perf_counter() - t:.0f} s")
        runs = [("workers ahead + persistent", True)] + ([("torch default (spawn at 1st batch)", False)]
                                                         if args.baseline_loader else [])
        waits = {}
        for name, ahead in runs:
            run = tmp / f"run_{int(ahead)}"
            t, c = time.perf_counter(), _cpu_s()
            r = train_loop(dict(store=str(store), run_dir=str(run), where=None, size=args.train_size, window=8,
                                stage1_steps=args.train_steps, stage2_steps=max(2, args.train_steps // 2),
                                batch_size=args.batch_size, clip_batch_size=2, channels=tuple(args.channels),
                                num_workers=args.loader_workers, loader_ahead=ahead, device=str(device),
                                progress=False, log_every=max(1, args.train_steps // 2), ckpt_every=10 ** 6))
            wall, cpu = time.perf_counter() - t, _cpu_s() - c
            print(f"training, loader {name} ({args.loader_workers} workers), {args.train_size} px, "
                  f"{wall:.0f} s wall, {cpu:.0f} CPU s (with finished workers), load average "
                  f"{os.getloadavg()[0]:.1f}:")
            for st, unit in ((1, "frames"), (2, "clips of 8")):
                waits[(ahead, st)] = r[f"stage{st}_data_wait"]
                print(f"  stage {st} ({unit}): {r[f'stage{st}_samples_per_s']:.2f} samples/s, "
                      f"data wait {100 * r[f'stage{st}_data_wait']:.1f} % of step time")
        if args.baseline_loader:
            for st in (1, 2):
                print(f"  stage {st} data wait: {100 * waits[(True, st)]:.1f} % against {100 * waits[(False, st)]:.1f} % "
                      "with torch's default loader start")
        from mentor.media import read_frames
        from mentor.store import Store
        from models.video_sample import VideoGenerator, to_model

        gen = VideoGenerator(tmp / "run_1", device=str(device), steps=args.gen_steps)
        st = Store(store)
        rec = list(st.records([st.clips()["clip_id"].iloc[0]], media_dir=str(tmp)))[0]
        frames = read_frames(rec.files["video"])
        arrays = {k: np.asarray(a.data) for k, a in rec.arrays.items() if k.startswith("smplx.")}
        n = min(args.gen_frames, len(frames))
        t = time.perf_counter()
        controls = gen.controls({k: v[:n] for k, v in arrays.items()}, {k: v[0] for k, v in arrays.items()}, frames[0])
        t_c = time.perf_counter() - t
        ref = to_model(frames[:1], args.train_size)[:, 0]
        timed = {}
        for overlap in (0.5, 0.0):  # the baseline: independent windows, no outpainting
            t, c = time.perf_counter(), time.process_time()
            gen.generate(controls, ref, overlap=overlap)
            timed[overlap] = (time.perf_counter() - t, time.process_time() - c)
        (t_g, c_g), (t_0, c_0) = timed[0.5], timed[0.0]
        print(f"generation: {n} frames, window 8, 50 % overlap, {args.gen_steps} DDIM steps: "
              f"{n / t_g:.2f} frames/s ({n / c_g:.2f} per CPU second; controls {n / t_c:.1f} frames/s), "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"  baseline, independent windows (no overlap, no outpainting): {n / t_0:.2f} frames/s "
              f"({n / c_0:.2f} per CPU second)")
        print(f"  ratio outpainting / independent windows: {t_0 / t_g:.2f}x wall, {c_0 / c_g:.2f}x CPU")
        if device.type == "cuda":
            print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--train-size", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--loader-workers", type=int, default=1)
    ap.add_argument("--gen-frames", type=int, default=24)
    ap.add_argument("--gen-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--body-model-dir", default=None)
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--baseline-loader", action="store_true",
                    help="train a second time with torch's default loader start (workers spawned at each epoch's "
                         "first batch) and print both data waits")
    args = ap.parse_args(argv)
    os.environ.setdefault("LP_NUM_THREADS", str(args.threads))  # llvmpipe gets the threads torch gets
    torch.set_num_threads(args.threads)
    from models.training import resolve_device

    device = resolve_device(args.device)
    bench_render(args, device)
    if not args.skip_training:
        bench_train_and_generate(args, device)


if __name__ == "__main__":
    main()
