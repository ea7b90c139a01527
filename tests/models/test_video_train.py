"""The video model trained on the synthetic store, end to end: both stages with falling
loss, resume, overfitting one clip (generated frames beat the reference image alone),
temporal outpainting into a video file with audio, editing that keeps every pixel outside
the region, personalisation. One short training (one clip) is shared by the tests."""

from __future__ import annotations

import json
import shutil
import tempfile

import numpy as np
import pytest
import torch

from models.video_train import VideoTrainConfig, build_model, diffusion_loss, make_scheduler, prepare, train_loop

pytestmark = pytest.mark.slow  # ~2-3 min on 2 busy cores, most of it the shared training

WINDOW = 4


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.fixture(scope="module")
def clip(synthetic_store):
    """The first clip of the store: id, frames (T,64,64,3), smplx arrays (T,...), media dir."""
    from mentor.media import read_frames
    from mentor.store import Store

    store = Store(synthetic_store)
    cid = store.clips("split == 'train'")["clip_id"].iloc[0]
    tmp = tempfile.mkdtemp()
    rec = list(store.records([cid], media_dir=tmp))[0]
    frames = read_frames(rec.files["video"])
    arrays = {k: np.asarray(a.data, np.float32) for k, a in rec.arrays.items() if k.startswith("smplx.")}
    yield {"id": cid, "frames": frames, "arrays": arrays, "record": rec, "dir": tmp}
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(synthetic_store, clip, tmp_path_factory):
    run = tmp_path_factory.mktemp("video") / "run"
    conf = dict(store=str(synthetic_store), run_dir=str(run), where=f"clip_id == '{clip['id']}'", size=64,
                window=WINDOW, stage1_steps=40, stage2_steps=8, batch_size=4, clip_batch_size=1, channels=(16, 32),
                lr=2e-3, lr_temporal=5e-3, prediction_type="sample", log_every=4, ckpt_every=20, progress=False,
                min_reference_gap_s=1.0, seed=0)
    result = train_loop(conf)
    return {"run": run, "conf": conf, "result": result}


@pytest.fixture(scope="module")
def generator(trained):
    from models.video_sample import VideoGenerator

    return VideoGenerator(trained["run"], device="cpu", steps=8)


def _eval_loss(model, cfg, source, frames: int, repeats: int = 3) -> float:
    """Mean loss over fixed windows, noise and timesteps (the same for every model)."""
    from models.video_train import _loader

    loader = _loader(cfg, frames, batch_size=4 if frames == 1 else 2)
    loader.dataset.set_epoch(123)
    data = prepare(next(iter(loader)), source, cfg.size)
    sched = make_scheduler(cfg)
    model.eval()
    with torch.no_grad():
        losses = [float(diffusion_loss(model, sched, data, generator=torch.Generator().manual_seed(k))[0])
                  for k in range(repeats)]
    return sum(losses) / len(losses)


def test_two_stages_train_with_falling_loss_and_resume(trained, generator, tmp_path):
    from models.training import read_loss_csv, seed_everything
    from models.video import VideoDiffusion

    run, conf, result = trained["run"], trained["conf"], trained["result"]
    assert result["stage1_step"] == 40 and result["stage2_step"] == 8
    assert 0 <= result["stage1_data_wait"] < 1
    cfg = VideoTrainConfig(**conf)
    source = generator.source
    seed_everything(cfg.seed)
    initial = build_model(cfg, source.num_channels)
    after1 = VideoDiffusion.from_pretrained(run / "stage1" / "model")
    final = VideoDiffusion.from_pretrained(run / "model")
    l0, l1 = _eval_loss(initial, cfg, source, 1), _eval_loss(after1, cfg, source, 1)
    c1, c2 = _eval_loss(after1, cfg, source, WINDOW), _eval_loss(final, cfg, source, WINDOW)
    print(f"stage 1 (frames): {l0:.4f} -> {l1:.4f}; stage 2 (clips): {c1:.4f} -> {c2:.4f}")
    assert l1 < 0.5 * l0
    assert c2 < c1
    rows = read_loss_csv(run / "stage1" / "loss.csv")
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    # stage 2 trained the temporal layers only; stage 1 left them at zero
    s1, s2 = after1.state_dict(), final.state_dict()
    changed = {k for k in s1 if not torch.equal(s1[k], s2[k])}
    assert changed and all(".temporal." in k for k in changed)
    assert all(not s1[k].any() for k in s1 if ".temporal.conv." in k)
    meta = json.loads((run / "model" / "video.json").read_text())
    assert meta["size"] == 64 and meta["window"] == WINDOW

    # a copy re-run with more steps: stage 1 is done, stage 2 resumes from its last checkpoint
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result2 = train_loop(dict(conf, run_dir=str(copy), stage2_steps=10))
    assert result2["stage2_resumed_from"] == 8 and result2["stage2_step"] == 10
    assert "stage1_step" not in result2
    assert [r["step"] for r in read_loss_csv(copy / "stage2" / "loss.csv")] == [4, 8, 10]


def test_overfit_clip_beats_the_reference_and_outpainting_is_continuous(generator, clip):
    from models.video_sample import to_model, to_uint8, window_starts

    frames, arrays = clip["frames"], clip["arrays"]
    ref_i, sel = 0, slice(30, 40)  # >= 1 s from the reference, as in training
    ref_arrays = {k: v[ref_i] for k, v in arrays.items()}
    controls = generator.controls({k: v[sel] for k, v in arrays.items()}, ref_arrays, frames[ref_i])
    out = to_uint8(generator.generate(controls, to_model(frames[ref_i:ref_i + 1], 64)[:, 0], overlap=0.5))
    real = frames[sel]
    assert out.shape == real.shape
    p_gen = _psnr(out, real)
    p_ref = _psnr(np.repeat(frames[ref_i:ref_i + 1], len(real), 0), real)
    print(f"PSNR generated {p_gen:.2f} dB, reference image alone {p_ref:.2f} dB")
    assert p_gen > p_ref + 3.0
    # continuity: the jump into each window's first new frame against the jumps inside windows
    n = len(real)
    starts = window_starts(n, WINDOW, WINDOW // 2)
    assert len(starts) >= 3
    jump = np.abs(np.diff(out.astype(np.float64), axis=0)).mean((1, 2, 3))  # jump[k]: frame k -> k+1
    joins = [s + WINDOW // 2 - 1 for s in starts[1:-1]] + [starts[-2] + WINDOW - 1]
    inside = [k for k in range(n - 1) if k not in joins]
    print(f"mean |frame difference| at joins {np.round(jump[joins], 2)}, inside windows {np.round(jump[inside], 2)}")
    assert jump[joins].max() <= 1.25 * jump[inside].max()


def test_generate_video_file_longer_than_the_window(generator, trained, clip, tmp_path, speech_wav):
    from PIL import Image

    from mentor.media import probe, read_frames
    from models.video_cli import generate_video

    frames, arrays = clip["frames"], clip["arrays"]
    Image.fromarray(frames[0]).save(tmp_path / "ref.png")
    np.savez(tmp_path / "ref.npz", **{k: v[:1] for k, v in arrays.items()})
    np.savez(tmp_path / "motion.npz", fps=np.float32(25), **{k: v[20:31] for k, v in arrays.items()})
    r = generate_video(str(tmp_path / "ref.png"), str(speech_wav), str(trained["run"]), str(tmp_path / "out.mp4"),
                       motion=str(tmp_path / "motion.npz"), reference_fit=str(tmp_path / "ref.npz"), device="cpu",
                       steps=4)
    assert r["frames"] == 11 > WINDOW
    info = probe(tmp_path / "out.mp4")
    assert info.has_audio and abs(info.fps - 25) < 1e-3
    got = read_frames(tmp_path / "out.mp4")
    assert got.shape == (11, 64, 64, 3)
    assert abs(info.duration - 11 / 25) < 0.1  # audio cut to the video (-shortest)


@pytest.mark.parametrize("region", ["mouth", "face"])
def test_edit_keeps_every_pixel_outside_the_region(generator, trained, clip, tmp_path, region):
    from mentor.media import read_frames
    from models.video_cli import edit_video
    from models.video_sample import region_masks, write_video_lossless

    T = 6
    src = clip["frames"][:T]
    video = write_video_lossless(src, tmp_path / "in.mp4", 25.0)
    np.savez(tmp_path / "fit.npz", **{k: v[:T] for k, v in clip["arrays"].items()})
    r = edit_video(str(video), region, str(trained["run"]), str(tmp_path / "out.mp4"), fit=str(tmp_path / "fit.npz"),
                   device="cpu", steps=4)
    assert r["frames"] == T and 0 < r["region_share"] < 0.5
    got = read_frames(tmp_path / "out.mp4")
    masks = region_masks(generator.source, {k: v[:T] for k, v in clip["arrays"].items()}, region, 64, 64)
    assert masks.any(axis=(1, 2)).all()
    outside = ~masks
    np.testing.assert_array_equal(got[outside], src[outside])  # exactly, through the file
    assert (got[masks] != src[masks]).any()


def test_personalize_fine_tunes_from_the_trained_model(trained, synthetic_store, clip, tmp_path):
    from models.video import VideoDiffusion
    from models.video_cli import personalize

    ident = clip["record"].identity
    r = personalize(str(synthetic_store), f"identity == '{ident}'", str(trained["run"]), str(tmp_path / "p"),
                    steps=2, lr=1e-4, device="cpu", batch_size=2, clip_batch_size=1, progress=False, ckpt_every=5)
    assert r["stage1_step"] == 2 and r["stage1_resumed_from"] == 0
    base = VideoDiffusion.from_pretrained(trained["run"] / "model").state_dict()
    tuned = VideoDiffusion.from_pretrained(tmp_path / "p" / "model").state_dict()
    assert base.keys() == tuned.keys()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="size=60"):
        VideoTrainConfig(store="s", run_dir="r", size=60)
    with pytest.raises(ValueError, match="stages"):
        VideoTrainConfig(store="s", run_dir="r", stages=(3,))


def test_generate_video_with_motion_from_the_motion_model(trained, clip, tmp_path, speech_wav):
    """The motion model's path: speech -> SMPL-X motion (an untrained tiny motion model with
    unit statistics: the wiring, not the motion's quality) -> controls -> video with audio."""
    from PIL import Image

    from mentor.media import probe
    from models.motion import MotionDiffusionModel, MotionStatistics, tiny_config
    from models.video_cli import generate_video

    torch.manual_seed(0)
    mm = MotionDiffusionModel(**tiny_config()).eval()
    L, A, R = mm.layout.dim, mm.audio_dim, mm.layout.reference_dim
    mm.set_statistics(MotionStatistics(np.zeros(L), np.full(L, 0.05), np.zeros(A), np.ones(A), np.zeros(R),
                                       np.ones(R)))
    mm.save_pretrained(tmp_path / "motion" / "model")
    Image.fromarray(clip["frames"][0]).save(tmp_path / "ref.png")
    np.savez(tmp_path / "ref.npz", **{k: v[:1] for k, v in clip["arrays"].items()})
    r = generate_video(str(tmp_path / "ref.png"), str(speech_wav), str(trained["run"]), str(tmp_path / "out.mp4"),
                       motion_model=str(tmp_path / "motion"), reference_fit=str(tmp_path / "ref.npz"), device="cpu",
                       steps=3, seconds=0.6)
    info = probe(tmp_path / "out.mp4")
    assert r["frames"] == 15 == info.num_frames and info.has_audio and abs(info.fps - 25) < 1e-3


def test_latent_space_training_and_generation_with_a_vae_folder(synthetic_store, clip, tmp_path):
    """A user's AutoencoderKL folder: training runs in its latent space (both stages; the
    VAE's latents come channels-last, which once crashed stage 2's backward), the run keeps
    the VAE, and generation decodes back to frames."""
    from diffusers import AutoencoderKL

    from models.video_sample import VideoGenerator, to_model

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                  norm_num_groups=4, sample_size=64).save_pretrained(tmp_path / "vae")
    run = tmp_path / "run"
    r = train_loop(dict(store=str(synthetic_store), run_dir=str(run), where=f"clip_id == '{clip['id']}'", size=64,
                        window=WINDOW, stage1_steps=2, stage2_steps=1, batch_size=2, clip_batch_size=1,
                        channels=(16, 32), vae_dir=str(tmp_path / "vae"), log_every=1, progress=False))
    assert r["stage1_step"] == 2 and r["stage2_step"] == 1
    assert (run / "model" / "vae" / "config.json").exists()
    gen = VideoGenerator(run, device="cpu", steps=2)
    assert gen.vae is not None and gen.model.config.latent and gen.model.base.config.sample_size == 32
    arrays = clip["arrays"]
    controls = gen.controls({k: v[:5] for k, v in arrays.items()}, {k: v[0] for k, v in arrays.items()},
                            clip["frames"][0])
    out = gen.generate(controls, to_model(clip["frames"][:1], 64)[:, 0])
    assert out.shape == (5, 3, 64, 64) and torch.isfinite(out).all()
