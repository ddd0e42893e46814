"""SeizureTransformer at its published size, as a factory for :mod:`eeg_assets.lib.model.factory`.

Wu et al. 2025 (arXiv 2504.00336), following docs/tusz.md, "Reference model: SeizureTransformer":

* **encoder**: five blocks of a "same" 1-D convolution and ELU, each followed by max-pooling by 2;
  kernels 11, 9, 7, 7, 5 and channels 32, 64, 128, 256, 512, so a ``(19, 15360)`` window becomes
  ``(32, 15360) -> (64, 7680) -> (128, 3840) -> (256, 1920) -> (512, 960)`` before each pooling
  and ``(512, 480)`` after the last; each block's pre-pooling output is a skip connection;
* **scaling embedding**: 7 residual CNN blocks at ``(512, 480)`` (BatchNorm, ReLU, spatial
  dropout, convolution, twice, around a residual connection; kernels 3, 3, 3, 3, 2, 3, 2, the
  even ones padded on the right as TensorFlow's "same" does), then 8 post-norm transformer encoder
  layers (4 heads, feed-forward 2048, ReLU) over the 480 steps, after sinusoidal position
  encoding; the transformer's output is added to its input (the residual of the authors' code);
* **decoder**: five blocks of nearest upsampling by 2, a "same" convolution and ELU, each plus the
  encoder's skip of that resolution, back to ``(32, 15360)``; kernels 3, 5, 5, 7, 7 (the
  published code takes the encoder's list 11, 9, 7, 7, 5, 5, 3 reversed), channels 512, 256,
  128, 64, 32; then one 1-channel convolution of kernel 11;
* dropout 0.1 everywhere (spatial dropout in the residual blocks, after the position encoding,
  inside the transformer layers).

The paper's network ends in a sigmoid; this one returns the **logits** ``(batch, n_samples)``:
training uses ``BCEWithLogitsLoss`` and validation/inference apply the sigmoid. Unlike
:mod:`eeg_assets.lib.model.network`, the residual blocks use BatchNorm as published, so in
training mode a window's output depends on its batch; evaluation (``eval()``) does not.

Size and speed, measured on the development machine (2-core x86-64 CPU shared with other jobs,
torch 2.13 CPU build; forward: one float32 window ``(1, 19, 15360)`` in ``eval()`` mode under
``torch.no_grad()``, median of 7 passes after one warm-up):

=========================  ===========  =================  ==================
network                    parameters   forward, 1 thread  forward, 2 threads
=========================  ===========  =================  ==================
``seizure_transformer()``  37,848,897   0.33 s / window    0.18 s / window
``network.compact()``         823,153   0.014 s / window   0.010 s / window
=========================  ===========  =================  ==================

The parameter count is that of the authors' published code (the same parameter tensors). A
training step (forward, backward, AdamW) took ~0.75 s per window on 2 threads (batch 4): a CPU
epoch of a few thousand windows is most of an hour, so train this network on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: The published sizes (the defaults of :func:`seizure_transformer`).
ENCODER_CHANNELS = (32, 64, 128, 256, 512)
ENCODER_KERNELS = (11, 9, 7, 7, 5)
DECODER_KERNELS = (3, 5, 5, 7, 7)
RESIDUAL_KERNELS = (3, 3, 3, 3, 2, 3, 2)


def _same_padding(kernel_size: int) -> tuple[int, int]:
    """``(left, right)`` zero padding keeping the length (TensorFlow "same": extra on the right)."""
    return (kernel_size - 1) // 2, kernel_size // 2


class SameConv1d(nn.Module):
    """A stride-1 convolution whose output has its input's length, for odd and even kernels.

    ``(B, in_channels, L) -> (B, out_channels, L)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.padding = _same_padding(kernel_size)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding))


class ResidualConvBlock(nn.Module):
    """``x + conv(drop(relu(bn(conv(drop(relu(bn(x))))))))``: ``(B, C, L) -> (B, C, L)``."""

    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm1d(channels, eps=1e-3),
            nn.ReLU(),
            nn.Dropout1d(dropout),  # spatial dropout: whole channels
            SameConv1d(channels, channels, kernel_size),
            nn.BatchNorm1d(channels, eps=1e-3),
            nn.ReLU(),
            nn.Dropout1d(dropout),
            SameConv1d(channels, channels, kernel_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def sinusoidal_positions(length: int, channels: int, device: torch.device | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The fixed encoding of Vaswani et al.: ``(length, channels)``, sines on even channels,
    cosines on odd ones, wavelengths from 2 pi to 10000 * 2 pi."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, channels, 2, device=device, dtype=torch.float32)
                          * (-math.log(10000.0) / channels))
    table = torch.zeros(length, channels, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : channels // 2]
    return table.to(dtype)


class SeizureTransformer(nn.Module):
    """``(B, in_channels, T)`` z-scored EEG -> ``(B, T)`` seizure logits.

    ``T`` must be a multiple of ``2 ** len(encoder_channels)`` (32 by default; the cache's
    windows are 15360 samples, 480 transformer steps). See the module docstring for the layout
    and :func:`seizure_transformer` for the parameters.
    """

    def __init__(self, in_channels: int = 19,
                 encoder_channels: Sequence[int] = ENCODER_CHANNELS,
                 encoder_kernels: Sequence[int] = ENCODER_KERNELS,
                 decoder_kernels: Sequence[int] = DECODER_KERNELS,
                 residual_kernels: Sequence[int] = RESIDUAL_KERNELS,
                 transformer_layers: int = 8, attention_heads: int = 4,
                 feedforward_channels: int = 2048, output_kernel: int = 11,
                 dropout: float = 0.1):
        super().__init__()
        channels = [int(c) for c in encoder_channels]
        encoder_kernels = [int(k) for k in encoder_kernels]
        decoder_kernels = [int(k) for k in decoder_kernels]
        if not channels or len(encoder_kernels) != len(channels) \
                or len(decoder_kernels) != len(channels):
            raise ValueError(f"encoder_channels {channels}, encoder_kernels {encoder_kernels} "
                             f"and decoder_kernels {decoder_kernels} must be non-empty and of "
                             f"one length (one per level)")
        if min(channels) < 1 or min(encoder_kernels + decoder_kernels) < 1:
            raise ValueError(f"channels and kernel sizes must be positive: {channels}, "
                             f"{encoder_kernels}, {decoder_kernels}")
        width = channels[-1]
        if width % attention_heads or width % 2:
            raise ValueError(f"the bottleneck width {width} must be even and divisible by "
                             f"attention_heads {attention_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.levels = len(channels)

        self.encoder = nn.ModuleList(
            nn.Sequential(SameConv1d(c_in, c_out, k), nn.ELU())
            for c_in, c_out, k in zip([in_channels] + channels[:-1], channels, encoder_kernels))
        self.pool = nn.MaxPool1d(2)
        self.residual = nn.Sequential(
            *(ResidualConvBlock(width, int(k), dropout) for k in residual_kernels))
        self.position_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(width, attention_heads, feedforward_channels, dropout,
                                           batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, transformer_layers,
                                                 enable_nested_tensor=False)
        # Decoder level i upsamples to the resolution of encoder level n-1-i and adds its skip.
        reversed_channels = channels[::-1]
        self.decoder = nn.ModuleList(
            nn.Sequential(SameConv1d(c_in, c_out, k), nn.ELU())
            for c_in, c_out, k in zip([width] + reversed_channels[:-1], reversed_channels,
                                      decoder_kernels))
        self.head = SameConv1d(channels[0], 1, output_kernel)

    @property
    def total_stride(self) -> int:
        """The input length must be a multiple of this."""
        return 2 ** self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Seizure logits per input sample.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, in_channels, T)`` float, ``T`` a multiple of :attr:`total_stride`.

        Returns
        -------
        torch.Tensor
            ``(batch, T)`` logits (apply a sigmoid for probabilities).
        """
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (batch, {self.in_channels}, time), got {tuple(x.shape)}")
        length = x.shape[-1]
        if length % self.total_stride:
            raise ValueError(f"input length {length} is not divisible by 2**{self.levels} = "
                             f"{self.total_stride} (one halving per encoder level)")
        skips = []
        h = x
        for block in self.encoder:                      # (B, c_k, T / 2**k)
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.residual(h)                            # (B, 512, T / 32)
        tokens = h.transpose(1, 2)                      # (B, T / 32, 512)
        positions = sinusoidal_positions(tokens.shape[1], tokens.shape[2], tokens.device,
                                         tokens.dtype)
        tokens = self.transformer(self.position_dropout(tokens + positions))
        h = h + tokens.transpose(1, 2)
        for block, skip in zip(self.decoder, reversed(skips)):
            h = block(F.interpolate(h, scale_factor=2.0, mode="nearest")) + skip
        return self.head(h).squeeze(1)                  # (B, T)


def seizure_transformer(**params) -> SeizureTransformer:
    """The factory ``eeg_assets.lib.model.seizure_transformer:seizure_transformer``.

    Parameters
    ----------
    in_channels : int
        EEG channels of the input (19 in the cache).
    encoder_channels : sequence of int
        Output channels of each encoder level (32, 64, 128, 256, 512); the last is the width of
        the residual blocks and the transformer.
    encoder_kernels, decoder_kernels : sequence of int
        Convolution kernel per encoder level (11, 9, 7, 7, 5) and per decoder level, coarsest
        first (3, 5, 5, 7, 7).
    residual_kernels : sequence of int
        One residual CNN block per entry, of that kernel size (3, 3, 3, 3, 2, 3, 2).
    transformer_layers, attention_heads, feedforward_channels : int
        8 post-norm encoder layers of 4 heads with a 2048-wide feed-forward layer.
    output_kernel : int
        Kernel of the final 1-channel convolution (11).
    dropout : float
        Every dropout layer's rate (0.1).

    Returns
    -------
    SeizureTransformer
        ``(batch, in_channels, T)`` -> ``(batch, T)`` logits, ``T`` a multiple of
        ``2 ** len(encoder_channels)``.
    """
    return SeizureTransformer(**params)


__all__ = ["ResidualConvBlock", "SameConv1d", "SeizureTransformer", "seizure_transformer",
           "sinusoidal_positions"]
