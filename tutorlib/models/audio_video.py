"""The audio tower (log-mel frames as tokens) and the video tower (patches of every frame)."""
from __future__ import annotations

import torch
from torch import nn

from ..core import _validate
from ..core.runtime import settings
from .blocks import Encoder


class AudioTower(nn.Module):
    """Log-mel frames as tokens: ``[N, M, T]`` -> Linear(M -> width) + positions ->
    transformer -> mean over time -> projection ``[N, embed_dim]``."""

    def __init__(self, n_mels: int | None = None, n_frames: int | None = None, embed_dim: int = 128,
                 width: int | None = None, depth: int = 2, heads: int = 4):
        super().__init__()
        n_frames = settings().audio_frames if n_frames is None else n_frames
        n_mels = settings().n_mels if n_mels is None else n_mels
        width = embed_dim if width is None else width
        for name, v in (("n_mels", n_mels), ("n_frames", n_frames), ("embed_dim", embed_dim),
                        ("width", width), ("depth", depth), ("heads", heads)):
            _validate.positive_int(name, v)
        self.n_mels, self.n_frames, self.width = n_mels, n_frames, width
        self.norm = nn.BatchNorm1d(n_mels, affine=False)   # log-mel scales vary a lot
        self.frame_embed = nn.Linear(n_mels, width)
        self.positional_embedding = nn.Parameter(0.02 * torch.randn(n_frames, width))
        self.encoder = Encoder(width, depth, heads)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, mel: torch.Tensor, return_tokens: bool = False):
        _validate.tensor("mel", mel, 3, finite=False)
        if mel.shape[1] != self.n_mels or mel.shape[2] > self.n_frames:
            raise ValueError(f"mel: got shape {tuple(mel.shape)}, expected "
                             f"[N, {self.n_mels}, <= {self.n_frames}]")
        x = self.frame_embed(self.norm(mel).transpose(1, 2))
        x = self.encoder(x + self.positional_embedding[:x.shape[1]])
        out = self.proj(x.mean(1))
        return (out, x) if return_tokens else out


class VideoTower(nn.Module):
    """Patches of every frame, with spatial and temporal positions, through one
    transformer, mean-pooled: ``[N, T, 3, H, W]`` -> ``[N, embed_dim]``."""

    def __init__(self, image_size: int | None = None, frames: int | None = None,
                 patch_size: int | None = None, embed_dim: int = 128, width: int | None = None,
                 depth: int = 2, heads: int = 4):
        super().__init__()
        image_size = settings().image_size if image_size is None else image_size
        patch_size = settings().patch_size if patch_size is None else patch_size
        frames = settings().video_frames if frames is None else frames
        width = embed_dim if width is None else width
        for name, v in (("image_size", image_size), ("frames", frames), ("patch_size", patch_size),
                        ("embed_dim", embed_dim), ("width", width), ("depth", depth),
                        ("heads", heads)):
            _validate.positive_int(name, v)
        if image_size % patch_size:
            raise ValueError(f"image_size: got {image_size}, expected a multiple of "
                             f"patch_size={patch_size}")
        self.image_size, self.frames, self.width = image_size, frames, width
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, width, patch_size, patch_size)
        self.space = nn.Parameter(0.02 * torch.randn(n_patches, width))
        self.time = nn.Parameter(0.02 * torch.randn(frames, width))
        self.encoder = Encoder(width, depth, heads)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, video: torch.Tensor, return_tokens: bool = False):
        _validate.tensor("video", video, 5, finite=False)
        n, t = video.shape[:2]
        if t != self.frames or video.shape[2:] != (3, self.image_size, self.image_size):
            raise ValueError(f"video: got shape {tuple(video.shape)}, expected "
                             f"[N, {self.frames}, 3, {self.image_size}, {self.image_size}]")
        x = self.patch_embed(video.flatten(0, 1)).flatten(2).transpose(1, 2)    # [N*T, P, w]
        x = (x + self.space).view(n, t, -1, self.width) + self.time[:, None]
        x = self.encoder(x.flatten(1, 2))
        out = self.proj(x.mean(1))
        return (out, x) if return_tokens else out

