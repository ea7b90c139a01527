"""Two-stage training of the video model on the synthetic store: the loss on fixed batches
falls in each stage, stage 2 changes only the temporal layers, a re-run resumes."""

from __future__ import annotations

import json

import pytest
import torch

from models.video_train import VideoTrainConfig, build_model, diffusion_loss, make_scheduler, prepare, train_loop

pytestmark = pytest.mark.slow  # ~1 min of training on 2 busy cores


def _eval_loss(model, cfg, source, frames: int, repeats: int = 3) -> float:
    """Mean loss over fixed windows, noise and timesteps (the same for every model)."""
    from models.video_train import _loader

    loader = _loader(cfg, frames, batch_size=4 if frames == 1 else 2)
    loader.dataset.set_epoch(123)
    batch = next(iter(loader))
    data = prepare(batch, source, cfg.size)
    sched = make_scheduler(cfg)
    model.eval()
    with torch.no_grad():
        losses = [float(diffusion_loss(model, sched, data, generator=torch.Generator().manual_seed(k))[0])
                  for k in range(repeats)]
    return sum(losses) / len(losses)


def test_two_stages_train_with_falling_loss_and_resume(synthetic_store, tmp_path):
    from mentor.body import load_body_model
    from models.controls import ControlSource
    from models.training import read_loss_csv, seed_everything
    from models.video import VideoDiffusion

    run = tmp_path / "run"
    conf = dict(store=str(synthetic_store), run_dir=str(run), where="split == 'train'", size=64, window=4,
                stage1_steps=14, stage2_steps=6, batch_size=4, clip_batch_size=1, channels=(16, 32), lr=2e-3,
                lr_temporal=5e-3, log_every=2, ckpt_every=7, progress=False, min_reference_gap_s=0.5, seed=0)
    result = train_loop(conf)
    assert result["stage1_step"] == 14 and result["stage2_step"] == 6
    assert 0 <= result["stage1_data_wait"] < 1

    cfg = VideoTrainConfig(**conf)
    source = ControlSource(load_body_model())
    seed_everything(cfg.seed)
    initial = build_model(cfg, source.num_channels)
    after1 = VideoDiffusion.from_pretrained(run / "stage1" / "model")
    final = VideoDiffusion.from_pretrained(run / "model")
    l0, l1 = _eval_loss(initial, cfg, source, 1), _eval_loss(after1, cfg, source, 1)
    c1, c2 = _eval_loss(after1, cfg, source, 4), _eval_loss(final, cfg, source, 4)
    print(f"stage 1 (frames): {l0:.4f} -> {l1:.4f}; stage 2 (clips): {c1:.4f} -> {c2:.4f}")
    assert l1 < 0.7 * l0
    assert c2 < c1
    # the logged training loss falls too
    rows = read_loss_csv(run / "stage1" / "loss.csv")
    assert rows[-1]["loss"] < rows[0]["loss"]
    # stage 2 trained the temporal layers only
    s1, s2 = after1.state_dict(), final.state_dict()
    changed = {k for k in s1 if not torch.equal(s1[k], s2[k])}
    assert changed and all(".temporal." in k for k in changed)
    assert all(not s1[k].any() for k in s1 if ".temporal.conv." in k)  # stage 1 left them at zero
    meta = json.loads((run / "model" / "video.json").read_text())
    assert meta["size"] == 64 and meta["window"] == 4

    # re-run with more steps: stage 1 is done, stage 2 resumes from its last checkpoint
    result2 = train_loop(dict(conf, stage2_steps=8))
    assert result2["stage2_resumed_from"] == 6 and result2["stage2_step"] == 8
    assert "stage1_step" not in result2
    assert [r["step"] for r in read_loss_csv(run / "stage2" / "loss.csv")] == [2, 4, 6, 8]


def test_bad_config_raises():
    with pytest.raises(ValueError, match="size=60"):
        VideoTrainConfig(store="s", run_dir="r", size=60)
    with pytest.raises(ValueError, match="stages"):
        VideoTrainConfig(store="s", run_dir="r", stages=(3,))
