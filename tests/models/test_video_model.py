"""The video diffusion model: save -> load -> same output, zero-initialised temporal layers,
training stages, a pretrained base folder, latent space with a VAE folder, window plans."""

from __future__ import annotations

import pytest
import torch

from models.video import VideoDiffusion, conditioning, tiny_base_config
from models.video_sample import window_starts

SIZE = 64
RENDER = 18


def _model(**kw) -> VideoDiffusion:
    torch.manual_seed(0)
    return VideoDiffusion(base_config=tiny_base_config(SIZE, 3, (16, 32)), render_channels=RENDER, **kw)


def _inputs(T=3, B=1, seed=1, size=SIZE, cond_size=None):
    g = torch.Generator().manual_seed(seed)
    cs = cond_size or size
    x = torch.randn(B, T, 3, size, size, generator=g)
    ctrl = torch.rand(B, T, RENDER, cs, cs, generator=g)
    ref = torch.rand(B, 3, cs, cs, generator=g) * 2 - 1
    return x, conditioning(ctrl, ref), ref


def _perturb_controlnet(model):
    # the control branch's output convs start at zero: give them weights so it matters
    with torch.no_grad():
        for p in model.control.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)


def test_save_load_same_output(tmp_path):
    m = _model().eval()
    _perturb_controlnet(m)
    with torch.no_grad():
        for p in m.temporal_parameters():
            p.normal_(0, 0.02)
    x, c, ref = _inputs()
    t = torch.tensor([321])
    with torch.no_grad():
        y = m(x, t, c, ref)
    m.save_pretrained(tmp_path / "m")
    m2 = VideoDiffusion.from_pretrained(tmp_path / "m").eval()
    assert m2.config.render_channels == RENDER and tuple(m2.base.config.block_out_channels) == (16, 32)
    with torch.no_grad():
        y2 = m2(x, t, c, ref)
    assert y.shape == (1, 3, 3, SIZE, SIZE)
    torch.testing.assert_close(y, y2, rtol=0, atol=0)


def test_temporal_layers_start_as_identity_then_mix_frames():
    m = _model().eval()
    x, c, ref = _inputs(T=3)
    t = torch.tensor([500])
    with torch.no_grad():
        clip = m(x, t, c, ref)
        single = torch.cat([m(x[:, k:k + 1], t, c[:, k:k + 1], ref) for k in range(3)], 1)
    torch.testing.assert_close(clip, single, atol=1e-5, rtol=1e-4)  # zero-initialised: per-frame model
    with torch.no_grad():
        for p in m.temporal_parameters():
            p.normal_(0, 0.05)
        clip2 = m(x, t, c, ref)
        x_changed = x.clone()
        x_changed[:, 2] += 1.0
        clip3 = m(x_changed, t, c, ref)
    assert (clip2 - clip).abs().max() > 1e-3
    assert (clip3[:, 1] - clip2[:, 1]).abs().max() > 1e-3  # frame 1 now sees its neighbour, frame 2


def test_control_branch_is_zero_initialised_and_conditions_the_output():
    m = _model().eval()
    x, c, ref = _inputs(T=1)
    t = torch.tensor([100])
    with torch.no_grad():
        a = m(x, t, c, ref)
        b = m(x, t, torch.rand_like(c), ref)
    torch.testing.assert_close(a, b)  # zero convs: the controls do not matter yet
    _perturb_controlnet(m)
    with torch.no_grad():
        a = m(x, t, c, ref)
        b = m(x, t, torch.rand_like(c), ref)
    assert (a - b).abs().max() > 1e-4


def test_stages_select_their_parameters():
    m = _model()
    s1 = {id(p) for p in m.set_stage(1)}
    temporal = {id(p) for p in m.temporal_parameters()}
    control = {id(p) for p in m.control.parameters()}
    assert control <= s1 and not (temporal & s1)
    s2 = {id(p) for p in m.set_stage(2)}
    assert s2 == temporal and len(s2) == 2 * 2 * len(m.base.down_blocks)  # norm + conv, weight + bias
    frozen = _model(freeze_base=True)
    s1f = {id(p) for p in frozen.set_stage(1)}
    assert not ({id(p) for p in frozen.base.parameters()} & s1f)
    with pytest.raises(ValueError, match="stage=3"):
        m.set_stage(3)


def test_pretrained_base_folder_initialises_the_frozen_base(tmp_path):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(5)
    unet = UNet2DConditionModel(**tiny_base_config(SIZE, 3, (16, 32)))
    unet.save_pretrained(tmp_path / "unet")
    m = VideoDiffusion.from_base(tmp_path / "unet", render_channels=RENDER)
    assert m.config.freeze_base
    w = unet.state_dict()["conv_in.weight"]
    torch.testing.assert_close(m.base.conv_in.weight, w)
    torch.testing.assert_close(m.base.down_blocks[0].resnets[0].resnet.conv1.weight,
                               unet.state_dict()["down_blocks.0.resnets.0.conv1.weight"])
    torch.testing.assert_close(m.control.conv_in.weight, w)  # the control branch copies the base encoder
    with pytest.raises(ValueError, match="not a folder"):
        VideoDiffusion.from_base(tmp_path / "nothing")


def test_latent_space_with_a_vae_folder(tmp_path):
    from diffusers import AutoencoderKL

    from models.video_train import VideoTrainConfig, build_model, decode, encode, load_vae

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, sample_size=SIZE)
    vae.save_pretrained(tmp_path / "vae")
    vae = load_vae(str(tmp_path / "vae"), torch.device("cpu"))
    cfg = VideoTrainConfig(store="-", run_dir="-", size=SIZE, channels=(16, 32), vae_dir=str(tmp_path / "vae"))
    m = build_model(cfg, RENDER, vae).eval()
    assert m.config.latent and m.config.pixel_factor == 2 and m.base.config.in_channels == 4
    frames = torch.rand(1, 2, 3, SIZE, SIZE) * 2 - 1
    z = encode(frames, vae)
    assert z.shape == (1, 2, 4, SIZE // 2, SIZE // 2)
    _, c, ref = _inputs(T=2, size=SIZE // 2, cond_size=SIZE)
    with torch.no_grad():
        y = m(z, torch.tensor([10]), c, ref)
    assert y.shape == z.shape
    assert decode(y, vae).shape == frames.shape


def test_window_plan_and_bad_arguments():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(4, 4, 2) == [0]
    assert window_starts(9, 4, 2) == [0, 2, 4, 5]
    with pytest.raises(ValueError, match="overlap"):
        window_starts(10, 4, 4)
    with pytest.raises(ValueError, match="prediction_type"):
        _model(prediction_type="noise")
    with pytest.raises(ValueError, match="pixel_factor"):
        _model(pixel_factor=3)


def test_cli_verbs_refuse_bad_arguments(tmp_path, capsys):
    from mentor.cli import main

    code = main(["generate-video", "--image", str(tmp_path / "none.png"), "--audio", str(tmp_path / "a.wav"),
                 "--model", str(tmp_path), "-o", str(tmp_path / "o.mp4")])
    assert code == 2 and "--motion file.npz or --motion-model" in capsys.readouterr().err
    code = main(["generate-video", "--image", str(tmp_path / "none.png"), "--audio", str(tmp_path / "a.wav"),
                 "--model", str(tmp_path), "--motion", str(tmp_path / "m.npz"), "-o", str(tmp_path / "o.mp4")])
    assert code == 2 and "none.png: not found" in capsys.readouterr().err
    code = main(["edit-video", "--video", str(tmp_path / "v.mp4"), "--region", "mouth", "--model", str(tmp_path),
                 "--audio", str(tmp_path / "a.wav"), "-o", str(tmp_path / "o.mp4")])
    assert code == 2 and "--motion-model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["edit-video", "--video", "v.mp4", "--region", "hair", "--model", "m", "-o", "o.mp4"])
