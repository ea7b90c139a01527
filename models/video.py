"""The control-conditioned temporal video diffusion UNet (VLOGGER stage 2, arXiv 2403.08764 s. 3.2).

Built from diffusers blocks:

- **base**: a `UNet2DConditionModel` (pixel space at small sizes; latent space when a VAE is
  used, see `models.video_sample`), frozen when it comes from a pretrained folder
  (`VideoDiffusion.from_base(unet_dir)`); a base made from scratch (tests, toy runs) trains
  in stage 1 with the control branch, since a random frozen base cannot denoise anything.
- **control branch**: `ControlNetModel.from_unet(base)`, a trainable copy of the base's
  encoder with zero-initialised output convolutions, fed with the conditioning image:
  the rendered controls (dense template map, part masks, warped reference and its mask,
  `models.render`), the reference frame, and the frames already known (the previous frames
  during temporal outpainting) with their 0/1 mask. Its residuals are added to the base's
  skip connections.
- **temporal layers**: a zero-initialised 1-D convolution over time (GroupNorm, SiLU,
  Conv1d k=3), added as a residual after the first ResNet layer of each down block of the
  base; the identity at initialisation, trained in stage 2 on clips.
- **reference embedding** instead of a text encoder: a small conv encoder turns the
  reference frame into `ref_tokens` tokens passed as `encoder_hidden_states`.

Shapes: sample (B,T,C,H,W); controls (B,T,Ccond,H',W') where H' is the pixel size (H' = H in
pixel space, 8 H with a VAE); timesteps (B,). `save_pretrained` / `from_pretrained` round-trip
the whole model with its config (ModelMixin + ConfigMixin).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def tiny_base_config(sample_size: int = 64, in_channels: int = 3, channels: tuple[int, ...] = (32, 64),
                     cross_attention_dim: int = 32) -> dict[str, Any]:
    """A small UNet2DConditionModel config: len(channels) levels, one ResNet per level,
    attention (self + cross to the reference tokens, 2 heads) in the middle block only
    (attention at full resolution costs too much in pixel space)."""
    n = len(channels)
    if n < 2:
        raise ValueError(f"channels={channels}: a UNet needs at least 2 levels")
    return dict(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
        down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
        block_out_channels=tuple(channels), layers_per_block=1, cross_attention_dim=cross_attention_dim,
        attention_head_dim=2, norm_num_groups=8,
    )


class TemporalConv(nn.Module):
    """x + Conv1d_time(SiLU(GN(x))) on (B*T,C,H,W) frames; zero-initialised (identity at start)."""

    def __init__(self, channels: int, groups: int = 8, kernel: int = 3):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, channels), channels)
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.num_frames = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = self.num_frames
        if T <= 1:
            return x
        x = x.contiguous()
        BT, C, H, W = x.shape
        if BT % T:
            raise ValueError(f"temporal layer got {BT} frames, not a multiple of num_frames={T}")
        h = torch.nn.functional.silu(self.norm(x))
        h = h.view(BT // T, T, C, H, W).permute(0, 3, 4, 2, 1).reshape(-1, C, T)
        h = self.conv(h).view(BT // T, H, W, C, T).permute(0, 4, 3, 1, 2).reshape(BT, C, H, W)
        return x + h


class ResnetWithTemporal(nn.Module):
    """A diffusers ResNet block followed by a TemporalConv."""

    def __init__(self, resnet: nn.Module, channels: int, groups: int):
        super().__init__()
        self.resnet = resnet
        self.temporal = TemporalConv(channels, groups)

    def forward(self, hidden_states, temb=None, *args, **kwargs):
        return self.temporal(self.resnet(hidden_states, temb, *args, **kwargs))


class ReferenceEncoder(nn.Module):
    """Reference frame (B,3,H,W) in [-1,1] -> (B, tokens, dim) for cross-attention."""

    def __init__(self, dim: int, tokens_side: int = 4, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(width, dim, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(tokens_side),
        )
        self.pos = nn.Parameter(torch.zeros(1, tokens_side * tokens_side, dim))

    def forward(self, ref: torch.Tensor) -> torch.Tensor:
        return self.net(ref).flatten(2).transpose(1, 2) + self.pos


class VideoDiffusion(ModelMixin, ConfigMixin):
    """Frozen-or-trainable base UNet + ControlNet-style control branch + temporal layers.

    base_config: a UNet2DConditionModel config dict; render_channels: channels of the rendered
    controls (`models.render.num_control_channels(len(PART_NAMES))`); freeze_base: keep the
    base's own weights frozen (True for a pretrained base); latent: the sample lives in a
    VAE's latent space (then the conditioning image is `pixel_factor` times larger);
    prediction_type: what the network predicts ("epsilon", "v_prediction" or "sample"),
    as the scheduler is told.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(self, base_config: dict | None = None, render_channels: int = 18, freeze_base: bool = False,
                 latent: bool = False, pixel_factor: int = 1, ref_tokens_side: int = 4,
                 prediction_type: str = "epsilon", conditioning_channels: tuple[int, ...] | None = None):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"prediction_type={prediction_type!r}: use 'epsilon', 'v_prediction' or 'sample'")
        if pixel_factor < 1 or pixel_factor & (pixel_factor - 1):
            raise ValueError(f"pixel_factor={pixel_factor}: must be a power of two (8 for an SD-style VAE)")
        base_config = dict(base_config or tiny_base_config())
        self.base = UNet2DConditionModel.from_config(base_config)
        groups = self.base.config.norm_num_groups
        # temporal 1-D convolutions after the first layer of each down block
        for block in self.base.down_blocks:
            first = block.resnets[0]
            block.resnets[0] = ResnetWithTemporal(first, first.out_channels, groups)
        cond_in = render_channels + 3 + 3 + 1  # controls, reference, known frame, known mask
        levels = pixel_factor.bit_length()  # 1 -> 1 level (no downsampling), 8 -> 4
        emb = tuple(conditioning_channels) if conditioning_channels else tuple(16 * 2 ** i for i in range(levels))
        if len(emb) != levels:
            raise ValueError(f"conditioning_channels={emb}: need {levels} entries for pixel_factor={pixel_factor}")
        self.control = ControlNetModel.from_unet(self._plain_unet(), conditioning_channels=cond_in,
                                                 conditioning_embedding_out_channels=emb, load_weights_from_unet=True)
        self.ref_encoder = ReferenceEncoder(self.base.config.cross_attention_dim, ref_tokens_side)

    def _plain_unet(self) -> UNet2DConditionModel:
        """A base-shaped UNet without the temporal wrappers (ControlNetModel.from_unet copies weights)."""
        plain = UNet2DConditionModel.from_config(self.base.config)
        sd = {k.replace("resnets.0.resnet.", "resnets.0."): v for k, v in self.base.state_dict().items()
              if ".temporal." not in k}
        plain.load_state_dict(sd)
        return plain

    @classmethod
    def from_base(cls, unet_dir: str | os.PathLike[str], freeze_base: bool = True, **kw) -> "VideoDiffusion":
        """Initialise the base (and the control branch's copy) from a pretrained
        UNet2DConditionModel folder (`save_pretrained` layout)."""
        if not os.path.isdir(unet_dir):
            raise ValueError(f"{unet_dir}: not a folder; give a UNet2DConditionModel folder (config.json + weights)")
        base = UNet2DConditionModel.from_pretrained(unet_dir, low_cpu_mem_usage=False)
        model = cls(base_config=dict(base.config), freeze_base=freeze_base, **kw)
        sd = {}
        for k, v in base.state_dict().items():
            for i in range(len(model.base.down_blocks)):
                pre = f"down_blocks.{i}.resnets.0."
                if k.startswith(pre):
                    k = f"down_blocks.{i}.resnets.0.resnet." + k[len(pre):]
            sd[k] = v
        missing, unexpected = model.base.load_state_dict(sd, strict=False)
        if unexpected or any(".temporal." not in m for m in missing):
            raise ValueError(f"{unet_dir}: weights do not fit the UNet config (unexpected {unexpected[:3]}, "
                             f"missing {[m for m in missing if '.temporal.' not in m][:3]})")
        model.control = ControlNetModel.from_unet(model._plain_unet(), conditioning_channels=model.control.config.conditioning_channels,
                                                  conditioning_embedding_out_channels=model.control.config.conditioning_embedding_out_channels)
        return model

    # ------------------------------------------------------------------- stages

    def temporal_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if ".temporal." in n]

    def set_stage(self, stage: int) -> list[nn.Parameter]:
        """Set requires_grad for a training stage and return the trainable parameters.
        Stage 1 (single frames): control branch + reference encoder (+ the base unless frozen);
        stage 2 (clips): the temporal layers only."""
        if stage not in (1, 2):
            raise ValueError(f"stage={stage}: the video model trains in stage 1 (frames) or 2 (clips)")
        for p in self.parameters():
            p.requires_grad_(False)
        if stage == 1:
            mods = [self.control, self.ref_encoder] + ([] if self.config.freeze_base else [self.base])
            for m in mods:
                for p in m.parameters():
                    p.requires_grad_(True)
            for p in self.temporal_parameters():
                p.requires_grad_(False)
        else:
            for p in self.temporal_parameters():
                p.requires_grad_(True)
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ forward

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor,
                reference: torch.Tensor) -> torch.Tensor:
        """sample (B,T,C,H,W) noisy frames; timestep (B,) or scalar; cond (B,T,Ccond,H',W')
        conditioning image (see `conditioning`); reference (B,3,H',W') in [-1,1].
        Returns the prediction (B,T,C,H,W)."""
        if sample.ndim != 5 or cond.ndim != 5:
            raise ValueError(f"sample and cond must be (B,T,C,H,W), got {tuple(sample.shape)} and {tuple(cond.shape)}")
        B, T = sample.shape[:2]
        # contiguous: a VAE's latents come channels-last, and backward through the temporal
        # layers on such strides crashes torch 2.9 on the CPU (segmentation fault)
        x = sample.reshape(B * T, *sample.shape[2:]).contiguous()
        c = cond.reshape(B * T, *cond.shape[2:]).to(x.dtype).contiguous()
        t = torch.as_tensor(timestep, device=x.device)
        t = (t.expand(B) if t.ndim == 0 else t).repeat_interleave(T)
        tokens = self.ref_encoder(reference.to(x.dtype)).repeat_interleave(T, 0)
        for block in self.base.down_blocks:
            block.resnets[0].temporal.num_frames = T
        down, mid = self.control(x, t, encoder_hidden_states=tokens, controlnet_cond=c, return_dict=False)
        out = self.base(x, t, encoder_hidden_states=tokens, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid, return_dict=False)[0]
        return out.view(B, T, *out.shape[1:])


def conditioning(controls: torch.Tensor, reference: torch.Tensor, known: torch.Tensor | None = None,
                 known_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The control branch's input (B,T,Ccond,H,W): controls (B,T,Cr,H,W) in [0,1], reference
    (B,3,H,W) in [-1,1] (repeated per frame), known frames (B,T,3,H,W) in [-1,1] with their
    mask (B,T) (1 where the frame is given: the previous frames when outpainting)."""
    B, T, _, H, W = controls.shape
    ref = reference[:, None].expand(B, T, *reference.shape[1:])
    if known is None:
        known = torch.zeros(B, T, 3, H, W, device=controls.device, dtype=controls.dtype)
        known_mask = torch.zeros(B, T, device=controls.device, dtype=controls.dtype)
    m = known_mask.to(controls.dtype)[:, :, None, None, None]
    return torch.cat([controls, ref.to(controls.dtype), known.to(controls.dtype) * m, m.expand(B, T, 1, H, W)], 2)
