"""A compact 1-D U-Net with an attention bottleneck that predicts a seizure logit per sample.

The shape follows SeizureTransformer (convolutional encoder, global attention over a coarse time
axis, convolutional decoder, one output per input time step) but is sized for CPU training:

* a strided stem takes the 256 Hz input to ``256 / stem_stride`` Hz (64 Hz by default) before
  anything else runs, so no layer ever touches the full-rate signal except that one convolution;
* each encoder stage halves the rate and doubles the channels, dilated residual blocks and one
  transformer layer work at the coarsest rate (8 Hz by default: 480 tokens for a 60 s window);
* the decoder mirrors the encoder with skip connections and stops at the stem rate; the logits are
  linearly interpolated back to the input rate, which is ample for boundaries annotated to ~0.1 s.

GroupNorm (not BatchNorm) is used throughout so that a window's output never depends on the other
windows of its batch: evaluation with any batch size reproduces the same probabilities.

:func:`compact` is the default model factory (``eeg_assets.lib.model.network:compact``, see
:mod:`eeg_assets.lib.model.factory`). At its default size it has 823,153 parameters and a forward
pass of one ``(1, 19, 15360)`` window took 0.014 s on 1 CPU thread and 0.010 s on 2 (torch 2.13
CPU build, shared 2-core x86-64 machine, ``eval()`` under ``no_grad``; median of 7) against
0.33 s and 0.18 s for the published-size SeizureTransformer
(:mod:`eeg_assets.lib.model.seizure_transformer`, 37,848,897 parameters).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`SeizureUNet`; every field changes the learned function."""

    in_channels: int = 19
    #: Channels after the stem; stage ``k`` of the encoder has ``base_channels * 2**k``.
    base_channels: int = 16
    #: Encoder stages after the stem, each halving the time axis.
    depth: int = 3
    kernel_size: int = 7
    #: Downsampling of the stem convolution (256 Hz / 4 = 64 Hz).
    stem_stride: int = 4
    #: Dilated residual blocks at the coarsest rate (dilations 1, 2, 4, ...).
    bottleneck_blocks: int = 2
    attention: bool = True
    attention_heads: int = 4
    dropout: float = 0.1

    @property
    def total_stride(self) -> int:
        """The input length must be a multiple of this."""
        return self.stem_stride * 2**self.depth

    @property
    def bottleneck_channels(self) -> int:
        return self.base_channels * 2**self.depth

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**data)

    def validate(self) -> None:
        if self.kernel_size % 2 != 1:
            raise ValueError(
                f"kernel_size must be odd to keep lengths exact, got {self.kernel_size}")
        if self.stem_stride < 1 or self.depth < 0 or self.base_channels < 1:
            raise ValueError(f"invalid model size: {self}")
        if self.attention and self.bottleneck_channels % self.attention_heads:
            raise ValueError(
                f"bottleneck channels {self.bottleneck_channels} are not divisible by "
                f"attention_heads {self.attention_heads}")


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResidualBlock(nn.Module):
    """Pre-activation residual block of two same-length convolutions."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.body = nn.Sequential(
            _group_norm(channels),
            nn.GELU(),
            nn.Conv1d(channels, channels, kernel_size, padding=padding, dilation=dilation),
            _group_norm(channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(channels, channels, kernel_size, padding=padding, dilation=dilation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AttentionBlock(nn.Module):
    """One pre-norm transformer encoder layer over the time axis of ``(B, C, L)`` features.

    Written out instead of ``nn.TransformerEncoderLayer`` so that dropout acts on the residual
    branches only: dropout on the ``L x L`` attention weights drew a Bernoulli mask per weight and
    cost ~15% of a CPU training step. No positional encoding: the convolutions before it already
    encode local order, and seizure evidence should not depend on where in the window it appears.
    """

    def __init__(self, channels: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.projection = nn.Linear(channels, channels)
        self.feedforward = nn.Sequential(
            nn.LayerNorm(channels),
            nn.Linear(channels, 2 * channels),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * channels, channels),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        batch, length, _channels = h.shape
        qkv = self.qkv(self.attention_norm(h)).view(batch, length, 3, self.heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(query, key, value)
        h = h + self.dropout(self.projection(attended.transpose(1, 2).reshape(h.shape)))
        h = h + self.dropout(self.feedforward(h))
        return h.transpose(1, 2)


class SeizureUNet(nn.Module):
    """``(B, in_channels, T)`` z-scored EEG -> ``(B, T)`` seizure logits."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        config.validate()
        self.config = config
        base, k, p = config.base_channels, config.kernel_size, config.dropout
        stride = config.stem_stride
        # kernel 2s+1 with padding s maps length L to exactly L/s for L divisible by s.
        self.stem = nn.Conv1d(config.in_channels, base, 2 * stride + 1, stride=stride,
                              padding=stride)
        widths = [base * 2**level for level in range(config.depth + 1)]
        self.encoder_blocks = nn.ModuleList(
            ResidualBlock(widths[level], k, 1, p) for level in range(config.depth))
        self.downsamplers = nn.ModuleList(
            nn.Conv1d(widths[level], widths[level + 1], 4, stride=2, padding=1)
            for level in range(config.depth))
        self.bottleneck = nn.Sequential(*(
            ResidualBlock(widths[-1], k, 2**i, p) for i in range(config.bottleneck_blocks)))
        self.attention = (AttentionBlock(widths[-1], config.attention_heads, p)
                          if config.attention else nn.Identity())
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose1d(widths[level + 1], widths[level], 2, stride=2)
            for level in range(config.depth))
        self.merges = nn.ModuleList(
            nn.Conv1d(2 * widths[level], widths[level], 1) for level in range(config.depth))
        self.decoder_blocks = nn.ModuleList(
            ResidualBlock(widths[level], k, 1, p) for level in range(config.depth))
        self.head = nn.Sequential(_group_norm(base), nn.GELU(), nn.Conv1d(base, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected input (batch, {self.config.in_channels}, time), got {tuple(x.shape)}")
        length = x.shape[-1]
        if length % self.config.total_stride:
            raise ValueError(
                f"input length {length} is not divisible by the model's total stride "
                f"{self.config.total_stride} (stem_stride {self.config.stem_stride} x "
                f"2**depth {2**self.config.depth}); crop or pad the windows")
        h = self.stem(x)
        skips = []
        for block, down in zip(self.encoder_blocks, self.downsamplers):
            h = block(h)
            skips.append(h)
            h = down(h)
        h = self.attention(self.bottleneck(h))
        for level in reversed(range(self.config.depth)):
            h = self.upsamplers[level](h)
            h = self.merges[level](torch.cat([h, skips[level]], dim=1))
            h = self.decoder_blocks[level](h)
        logits = self.head(h)
        logits = F.interpolate(logits, size=length, mode="linear", align_corners=False)
        return logits.squeeze(1)


def compact(**params) -> SeizureUNet:
    """The default factory (``eeg_assets.lib.model.network:compact``): ``SeizureUNet`` of
    ``ModelConfig(**params)``; no params gives the default network.

    Parameters
    ----------
    **params
        Fields of :class:`ModelConfig` (``base_channels``, ``depth``, ``attention``, ...).

    Returns
    -------
    SeizureUNet
        ``(batch, in_channels, T)`` -> ``(batch, T)`` logits, ``T`` a multiple of
        ``ModelConfig.total_stride`` (32 by default).
    """
    return SeizureUNet(ModelConfig(**params))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["AttentionBlock", "ModelConfig", "ResidualBlock", "SeizureUNet", "compact",
           "count_parameters"]
