"""The image tower: a tiny ViT over square patches (8x8 by default), pooled at its class token."""
from __future__ import annotations

import torch
from torch import nn

from ..core import _validate
from ..core.runtime import settings
from .blocks import Encoder


class ImageTower(nn.Module):
    """A tiny ViT: square patches (``settings().patch_size``, 8) -> [CLS] + patches + positions
    -> transformer -> CLS -> projection.

    ``forward(images [N, 3, H, W])`` or ``forward(patches=[N, P, width])`` (patch
    embeddings before the class token and positions are added, the space where visual
    prompts and inversion's pseudo-patches live). ``return_tokens=True`` also returns
    the token outputs ``[N, 1 + P, width]``.
    """

    def __init__(self, image_size: int | None = None, patch_size: int | None = None,
                 embed_dim: int = 128, width: int | None = None, depth: int = 2, heads: int = 4,
                 channels: int = 3):
        super().__init__()
        image_size = settings().image_size if image_size is None else image_size
        patch_size = settings().patch_size if patch_size is None else patch_size
        width = embed_dim if width is None else width
        for name, v in (("image_size", image_size), ("patch_size", patch_size),
                        ("embed_dim", embed_dim), ("width", width), ("depth", depth),
                        ("heads", heads), ("channels", channels)):
            _validate.positive_int(name, v)
        if image_size % patch_size:
            raise ValueError(f"image_size: got {image_size}, expected a multiple of "
                             f"patch_size={patch_size}")
        self.image_size, self.patch_size, self.width = image_size, patch_size, width
        self.n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(channels, width, patch_size, patch_size)
        self.cls = nn.Parameter(0.02 * torch.randn(width))
        self.positional_embedding = nn.Parameter(0.02 * torch.randn(1 + self.n_patches, width))
        self.encoder = Encoder(width, depth, heads)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> patch embeddings ``[N, P, width]``."""
        # pixels: the loss is checked, not every input
        _validate.tensor("images", images, 4, finite=False)
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise ValueError(f"images: got shape {tuple(images.shape)}, expected "
                             f"[N, 3, {self.image_size}, {self.image_size}]")
        return self.patch_embed(images).flatten(2).transpose(1, 2)

    def forward(self, images: torch.Tensor | None = None, *, patches: torch.Tensor | None = None,
                return_tokens: bool = False):
        if (images is None) == (patches is None):
            raise ValueError("images, patches: pass exactly one of them")
        if patches is None:
            patches = self.patchify(images)
        else:
            _validate.tensor("patches", patches, 3, finite=False)
            if patches.shape[1:] != (self.n_patches, self.width):
                raise ValueError(f"patches: got shape {tuple(patches.shape)}, expected "
                                 f"[N, {self.n_patches}, {self.width}]")
        cls = self.cls.expand(patches.shape[0], 1, -1)
        x = torch.cat([cls, patches], 1) + self.positional_embedding
        return self.from_hidden(x, 0, return_tokens)

    def hidden(self, images: torch.Tensor, stop: int) -> torch.Tensor:
        """Token states before block ``stop`` (after blocks ``0:stop``) ``[N, 1 + P, width]``."""
        patches = self.patchify(images)
        x = (torch.cat([self.cls.expand(len(patches), 1, -1), patches], 1)
             + self.positional_embedding)
        return self.encoder(x, stop=stop)

    def from_hidden(self, x: torch.Tensor, start: int, return_tokens: bool = False):
        """Finish the forward pass from the states before block ``start``."""
        x = self.encoder(x, start=start, first_only=not return_tokens)   # only CLS is pooled
        out = self.proj(x[:, 0])
        return (out, x) if return_tokens else out

