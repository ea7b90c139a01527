"""The video verbs through `mentor` itself, on tiny models built here (untrained weights test
the path, not the quality): generate-video from a real photo (MediaPipe + the SMPL-X fitter),
edit-video for new speech with a motion model (only the region changes), personalize;
non-square frames from rendering to training to generation; the torch CPU crash that
channels-last inputs cause in stage 2's backward."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

WINDOW = 4


def _tiny_run(root, size=64, height=None, seed=0):
    """An untrained 2-level video model saved as `mentor train-video` saves it."""
    from models.controls import load_control_source
    from models.video_train import VideoTrainConfig, build_model, make_scheduler, save_model

    cfg = VideoTrainConfig(store="-", run_dir=str(root), size=size, height=height, window=WINDOW, channels=(16, 32),
                           prediction_type="sample")
    torch.manual_seed(seed)
    model = build_model(cfg, load_control_source().num_channels)
    save_model(model, root, cfg, make_scheduler(cfg))
    return root


def _tiny_motion_model(root):
    """An untrained tiny motion model with small output statistics (models/motion.py format)."""
    from models.motion import MotionDiffusionModel, MotionStatistics, tiny_config

    torch.manual_seed(0)
    mm = MotionDiffusionModel(**tiny_config()).eval()
    L, A, R = mm.layout.dim, mm.audio_dim, mm.layout.reference_dim
    mm.set_statistics(MotionStatistics(np.zeros(L), np.full(L, 0.05), np.zeros(A), np.ones(A), np.zeros(R),
                                       np.ones(R)))
    mm.save_pretrained(root / "model")
    return root


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    return _tiny_run(tmp_path_factory.mktemp("video_cli") / "run")


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory):
    return _tiny_motion_model(tmp_path_factory.mktemp("motion_cli") / "motion")


@pytest.fixture(scope="module")
def first_clip(synthetic_store, tmp_path_factory):
    """Frames (T,64,64,3) and smplx arrays (T,...) of the store's first training clip."""
    from mentor.media import read_frames
    from mentor.store import Store

    store = Store(synthetic_store)
    cid = store.clips("split == 'train'")["clip_id"].iloc[0]
    rec = list(store.records([cid], media_dir=str(tmp_path_factory.mktemp("clip"))))[0]
    return {"id": cid, "record": rec, "frames": read_frames(rec.files["video"]),
            "arrays": {k: np.asarray(a.data, np.float32) for k, a in rec.arrays.items() if k.startswith("smplx.")}}


@pytest.mark.slow
def test_generate_video_from_a_real_photo_through_the_fitter(video_run, motion_run, speech_wav, tmp_path, capsys):
    """`mentor generate-video --image astronaut.jpg --audio speech.wav`: MediaPipe Holistic and
    the SMPL-X fitter fit the photo (its record and fit are kept beside the video), the motion
    model drives it, and the video has the speech's length, 25 fps and the audio muxed in."""
    import skimage.data
    from PIL import Image

    from mentor.cli import main
    from mentor.media import probe, read_frames

    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "ref.jpg", quality=92)
    out = tmp_path / "out.mp4"
    code = main(["generate-video", "--image", str(tmp_path / "ref.jpg"), "--audio", str(speech_wav),
                 "--model", str(video_run), "--motion-model", str(motion_run), "--seconds", "0.4", "--steps", "2",
                 "--device", "cpu", "-o", str(out)])
    assert code == 0
    assert "10 frames at 25 fps" in capsys.readouterr().out
    info = probe(out)
    assert info.has_audio and abs(info.fps - 25) < 1e-3 and info.num_frames == 10
    assert read_frames(out).shape == (10, 64, 64, 3)
    # the fit ran on the photo: its record (landmarks found, fit scores, no error) and its arrays
    rec = json.loads((tmp_path / "out.reference.json").read_text())
    assert rec["source_uri"].endswith("ref.jpg") and rec["width"] == 512 and rec["height"] == 512
    assert "smplx" not in rec["errors"]
    assert any(k.startswith("smplx") for k in rec["scores"]), rec["scores"]
    with np.load(tmp_path / "out.reference.npz") as z:
        cam = z["smplx.camera"][0]
        assert z["smplx.betas"].shape == (1, 10) and np.isfinite(z["smplx.body_pose"]).all()
    assert cam[1] == pytest.approx(256) and cam[2] == pytest.approx(256) and cam[0] > 0
    # the kept fit is a valid --reference-fit: the same video again without fitting
    code = main(["generate-video", "--image", str(tmp_path / "ref.jpg"), "--audio", str(speech_wav),
                 "--model", str(video_run), "--motion-model", str(motion_run), "--seconds", "0.4", "--steps", "2",
                 "--device", "cpu", "--reference-fit", str(tmp_path / "out.reference.npz"), "-o", str(tmp_path / "b.mp4")])
    assert code == 0
    np.testing.assert_array_equal(read_frames(tmp_path / "b.mp4"), read_frames(out))


@pytest.mark.slow
def test_edit_video_for_new_speech_changes_only_the_region(video_run, motion_run, first_clip, speech_wav, tmp_path,
                                                           capsys):
    """`mentor edit-video --audio new.wav --motion-model RUN`: the motion model's jaw and
    expression for the new speech drive the mouth; every pixel outside the region (saved
    beside the output) is the input's own byte, through the file."""
    from mentor.cli import main
    from mentor.media import probe, read_frames
    from models.controls import load_control_source
    from models.video_sample import region_masks, write_video_lossless

    T = 6
    src = first_clip["frames"][:T]
    arrays = {k: v[:T] for k, v in first_clip["arrays"].items()}
    video = write_video_lossless(src, tmp_path / "in.mp4", 25.0)
    np.savez(tmp_path / "fit.npz", **arrays)
    out = tmp_path / "out.mp4"
    code = main(["edit-video", "--video", str(video), "--region", "mouth", "--model", str(video_run),
                 "--audio", str(speech_wav), "--motion-model", str(motion_run), "--fit", str(tmp_path / "fit.npz"),
                 "--steps", "2", "--device", "cpu", "-o", str(out)])
    assert code == 0 and "frames" in capsys.readouterr().out
    got = read_frames(out)
    assert got.shape == src.shape and probe(out).has_audio
    with np.load(tmp_path / "out.region.npz") as z:
        masks = z["masks"]
    assert masks.shape == src.shape[:3] and masks.any(axis=(1, 2)).all() and masks.mean() < 0.2
    np.testing.assert_array_equal(got[~masks], src[~masks])  # exactly
    assert (got[masks] != src[masks]).any()
    # the region is the mouth of this body: inside its head and face as the video's own fit draws them
    head = region_masks(load_control_source(), arrays, "face", 64, 64, dilate=4)
    assert (masks <= head).mean() > 0.98


@pytest.mark.slow
def test_personalize_through_the_cli(video_run, synthetic_store, first_clip, tmp_path, capsys):
    from mentor.cli import main
    from models.video import VideoDiffusion

    ident = first_clip["record"].identity
    out = tmp_path / "p"
    code = main(["personalize", "--store", str(synthetic_store), "--where", f"identity == '{ident}'",
                 "--model", str(video_run), "-o", str(out), "--steps", "1", "--device", "cpu"])
    assert code == 0 and f"personalised model: {out / 'model'}" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["where"] == f"identity == '{ident}'" and cfg["init_model"] == str(video_run / "model")
    assert json.loads((out / "model" / "video.json").read_text())["window"] == WINDOW
    base = VideoDiffusion.from_pretrained(video_run / "model").state_dict()
    tuned = VideoDiffusion.from_pretrained(out / "model").state_dict()
    assert base.keys() == tuned.keys() and any(not torch.equal(base[k], tuned[k]) for k in base)


@pytest.mark.slow
def test_non_square_frames_render_train_and_generate(synthetic_store, first_clip, tmp_path):
    """64x48 frames (the 64x64 clips stretched by the loader): the controls are drawn with the
    stretched camera (fy != fx) so the body lies where the stretched frames show it; both
    stages train; generation by outpainting makes 64x48 frames."""
    from models.video_sample import VideoGenerator, to_model
    from models.video_train import train_loop

    W, H = 64, 48
    run = tmp_path / "run"
    r = train_loop(dict(store=str(synthetic_store), run_dir=str(run), where=f"clip_id == '{first_clip['id']}'",
                        size=W, height=H, window=WINDOW, stage1_steps=2, stage2_steps=1, batch_size=2,
                        clip_batch_size=1, channels=(16, 32), log_every=1, progress=False, device="cpu"))
    assert r["stage1_step"] == 2 and r["stage2_step"] == 1
    assert json.loads((run / "model" / "video.json").read_text())["height"] == H
    gen = VideoGenerator(run, device="cpu", steps=2)
    assert gen.frame_size == (W, H)
    frames, arrays = first_clip["frames"], first_clip["arrays"]
    small = ((to_model(frames[:7], (W, H))[0].permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255)
    small = small.to(torch.uint8).numpy()
    controls = gen.controls({k: v[:7] for k, v in arrays.items()}, {k: v[0] for k, v in arrays.items()}, small[0])
    assert controls.shape[-2:] == (H, W)
    # the drawn silhouette against the stretched frames' foreground (uniform background)
    body = controls[0, :, 3:3 + 16].sum(1) > 0  # part masks
    fg = torch.as_tensor(np.abs(small.astype(np.int16) - small[:, :1, :1].astype(np.int16)).max(-1) > 24)
    iou = float((body & fg).sum() / (body | fg).sum())
    assert iou > 0.8, iou
    out = gen.generate(controls, to_model(small[:1], (W, H))[:, 0])
    assert out.shape == (7, 3, H, W) and torch.isfinite(out).all()


@pytest.mark.slow  # a child process that imports torch and diffusers: ~10 s, minutes on a loaded box
def test_channels_last_stage2_backward_does_not_crash():
    """torch 2.9.1's CPU GroupNorm backward crashes (segmentation fault, in
    GroupNormBackwardKernelImplChannelsLastInternal) on a channels-last input that needs no
    gradient while the norm's weights do: stage 2 exactly (frozen base, trained temporal
    norms), with frames permuted from (B,T,H,W,3) as the loader gives them, at 32 px with
    channels (8, 16). VideoDiffusion makes its inputs contiguous; run in a child process so
    that a crash fails this test instead of killing the session."""
    code = textwrap.dedent("""
        import torch
        torch.set_num_threads(1)
        from models.video import VideoDiffusion, conditioning, tiny_base_config
        torch.manual_seed(0)
        S, T = 32, 4
        m = VideoDiffusion(base_config=tiny_base_config(S, 3, (8, 16)), render_channels=18)
        m.set_stage(2)
        x = torch.randn(1, T, S, S, 3).permute(0, 1, 4, 2, 3)
        assert x.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
        c = conditioning(torch.rand(1, T, S, S, 18).permute(0, 1, 4, 2, 3), torch.rand(1, 3, S, S) * 2 - 1)
        m(x, torch.tensor([10]), c, torch.rand(1, 3, S, S)).pow(2).mean().backward()
        g = [p.grad for p in m.temporal_parameters()]
        assert all(v is not None and torch.isfinite(v).all() for v in g)
        print("backward ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "backward ok" in res.stdout, (res.returncode, res.stderr[-2000:])


@pytest.mark.slow
def test_loader_workers_started_ahead_train_exactly_as_in_process(synthetic_store, first_clip, tmp_path):
    """One spawned loader worker per stage, started before the model is built and kept across
    epochs, feeds the same batches as reading in this process: the same losses, the same
    weights. At 32 px with channels (8, 16), the size that crashed stage 2's backward."""
    from models.training import read_loss_csv
    from models.video import VideoDiffusion
    from models.video_train import train_loop

    runs = {}
    for workers in (0, 1):
        run = tmp_path / f"w{workers}"
        r = train_loop(dict(store=str(synthetic_store), run_dir=str(run), where=f"clip_id == '{first_clip['id']}'",
                            size=32, window=WINDOW, stage1_steps=14, stage2_steps=2, batch_size=4, clip_batch_size=1,
                            channels=(8, 16), log_every=1, progress=False, device="cpu", num_workers=workers))
        assert r["stage1_step"] == 14 and r["stage2_step"] == 2
        runs[workers] = run
    # 50 frames, 4 per batch: stage 1 crossed into its second epoch
    for st in (1, 2):
        a, b = (read_loss_csv(runs[w] / f"stage{st}" / "loss.csv") for w in (0, 1))
        assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa = VideoDiffusion.from_pretrained(runs[0] / "model").state_dict()
    wb = VideoDiffusion.from_pretrained(runs[1] / "model").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_reference_image_is_cropped_to_the_model_aspect():
    from models.video_cli import aspect_crop

    img = np.arange(512 * 640 * 3, dtype=np.uint32).reshape(512, 640, 3)
    crop, cam = aspect_crop(img, np.array([700.0, 320.0, 256.0]))  # square: the middle 512 columns
    assert crop.shape == (512, 512, 3) and (crop == img[:, 64:576]).all()
    np.testing.assert_allclose(cam, [700, 256, 256])
    crop, cam = aspect_crop(img, np.array([700.0, 320.0, 256.0]), 64, 48)  # 4:3 -> 640x480, rows 16..495
    assert crop.shape == (480, 640, 3) and (crop == img[16:496]).all()
    np.testing.assert_allclose(cam, [700, 320, 240])
