"""A mini-CLIP: an image tower and a text tower with a learnable temperature."""
from __future__ import annotations

import math

import torch
from torch import nn


class MiniCLIP(nn.Module):
    """An image tower and a text tower with a learnable ``logit_scale`` (the log of the
    inverse temperature, initialised at ln(1/0.07) as in CLIP)."""

    def __init__(self, image_tower: nn.Module, text_tower: nn.Module,
                 logit_scale: float = math.log(1 / 0.07)):
        super().__init__()
        self.image_tower, self.text_tower = image_tower, text_tower
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_tower(images)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_tower(ids)

    def forward(self, images, ids):
        return self.encode_image(images), self.encode_text(ids), self.logit_scale


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module: got {type(module).__name__}, expected a torch.nn.Module")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

