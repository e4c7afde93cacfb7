"""The FrequencyEncoder of FSDerain: embeds a (masked) amplitude spectrum for the contrastive loss.

Three stride-2 3x3 convolutions 3 -> 32 -> 64 -> 128 with ReLU, a global average pool and a linear 128 -> 128
(109,760 parameters, PyTorch default initialisation). It is trained jointly with the deraining network and
used only by the loss: fine-tuned checkpoints do not contain it.
"""
from __future__ import annotations

import torch
from torch import nn


class FrequencyEncoder(nn.Module):
    """(B, in_channels, H, W) amplitude maps -> (B, out_dim) embeddings (not normalised)."""

    def __init__(self, in_channels: int = 3, out_dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in ((in_channels, 32), (32, 64), (64, 128)):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, out_dim)]
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.float())
