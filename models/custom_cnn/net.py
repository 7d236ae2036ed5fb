"""The from-scratch CIFAR-10 network and the one preprocessing function training and serving share.

Design (after the public airbench / hlb-CIFAR10 write-ups, re-implemented here):
- a frozen 2x2 "whitening" convolution whose filters are the eigenvectors of the training patches'
  covariance (and their negatives), so the first layer starts decorrelated without learning it;
- three conv groups (conv -> maxpool -> BN -> act -> conv -> BN -> act) of widths 64/256/256, act = GELU or SiLU;
- BatchNorm with a frozen scale (only the shift is learned) and identity-initialised convs;
- a global max pool and a bias-free linear head with unit-variance weights, scaled by 1/width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Per-channel statistics of the CIFAR-10 training images (RGB, in [0, 1]).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
INPUT_SIZE = 32


def preprocess(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) RGB -> normalised float32 (N, 3, 32, 32) in channels_last memory."""
    x = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) images, got {tuple(x.shape)} {x.dtype}")
    x = x.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm that learns only its shift, its scale fixed at 1 (as in airbench: one parameter fewer per channel)."""

    def __init__(self, channels: int, momentum: float = 0.4):
        super().__init__(channels, eps=1e-12, momentum=momentum)
        self.weight.requires_grad_(False)


class IdentityInitConv(nn.Conv2d):
    """3x3 'same' conv whose first in_channels filters start as the identity (an implicit residual)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__(channels_in, channels_out, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        weight = self.weight.data
        nn.init.dirac_(weight[: weight.size(1)])


ACTIVATIONS = {"gelu": nn.GELU, "silu": nn.SiLU}


class ConvGroup(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, activation: str = "gelu"):
        super().__init__()
        self.conv1 = IdentityInitConv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = FrozenScaleBatchNorm(channels_out)
        self.conv2 = IdentityInitConv(channels_out, channels_out)
        self.norm2 = FrozenScaleBatchNorm(channels_out)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        return self.activation(self.norm2(self.conv2(x)))


class CifarNet(nn.Module):
    def __init__(self, widths: Sequence[int] = (64, 256, 256), whiten_kernel: int = 2, activation: str = "gelu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        whiten_width = 2 * 3 * whiten_kernel**2
        self.whiten = nn.Conv2d(3, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.groups = nn.Sequential(
            ConvGroup(whiten_width, widths[0], activation),
            ConvGroup(widths[0], widths[1], activation),
            ConvGroup(widths[1], widths[2], activation),
        )
        self.head = nn.Linear(widths[2], 10, bias=False)
        with torch.no_grad():
            self.head.weight.div_(self.head.weight.std())
        self.head_scale = 1 / widths[2]

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from the patch covariance of preprocessed training images."""
        c, (h, w) = images.shape[1], self.whiten.weight.shape[2:]
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = eigenvectors.T.reshape(-1, c, h, w) / torch.sqrt(eigenvalues.view(-1, 1, 1, 1) + eps)
        self.whiten.weight.copy_(torch.cat((filters, -filters)))
        self.whiten.bias.zero_()

    def forward(self, x: torch.Tensor, whiten_bias_grad: bool = True) -> torch.Tensor:
        bias = self.whiten.bias if whiten_bias_grad else self.whiten.bias.detach()
        x = F.gelu(F.conv2d(x, self.whiten.weight, bias))
        x = self.groups(x)
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.head_scale


def tta_views(x: torch.Tensor, level: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(all test-time views stacked along the batch, their weights): 0 = the image, 1 = + its mirror,
    2 = + the mirrors of its 1-px shifts up-left and down-right (6 views; the shifts weigh half)."""
    if level == 0:
        return x, torch.ones(1)
    views = [x, x.flip(-1)]
    weights = [0.5, 0.5]
    if level >= 2:
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        size = x.shape[-1]
        for shifted in (padded[:, :, :size, :size], padded[:, :, 2:, 2:]):
            views += [shifted, shifted.flip(-1)]
        weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    return torch.cat(views).contiguous(memory_format=torch.channels_last), torch.tensor(weights)


def tta_logits(model: nn.Module, x: torch.Tensor, level: int = 2) -> torch.Tensor:
    """Logits averaged over the test-time views, computed in one forward pass (one batch of n x views:
    far faster than a pass per view when n is small, as it is for a web request)."""
    views, weights = tta_views(x, level)
    logits = model(views).float().view(len(weights), len(x), -1)
    return (logits * weights.to(logits.device).view(-1, 1, 1)).sum(0)


def bf16_supported() -> bool:
    """True when this CPU runs bf16 autocast convolutions (checked once with a tiny op)."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            F.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1))
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (RuntimeError, AttributeError):
        return False
