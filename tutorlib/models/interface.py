"""What a tower must provide for the lessons that reach inside it.

CoOp's context vectors and OTI's pseudo-words (``prompts``, ``inversion``) are fed to a
text tower as token embeddings; visual prompts and OVI's pseudo-patches go into an
image tower as patch embeddings; ``pretrained.finetune`` runs the frozen early blocks
once and trains the last ones; RESTORE's per-block text shift (``restore``) adds the
positions to a prompt's embeddings itself; FILIP (``finegrained``, lesson 07) reads every
token's output (``return_tokens=True``) and projects it with ``proj``. A tower works with
those lessons when it has these attributes: ``TextTower`` and ``ImageTower`` have them, and
so does ``models.hf_clip``'s adapter around a Hugging Face CLIP.
``isinstance(tower, PromptableText)`` checks the names.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class PromptableText(Protocol):
    """A text tower that takes token embeddings as well as ids."""
    width: int                      # token embedding width
    context_length: int             # longest sequence, in tokens
    pad_id: int                     # the padding token's id
    token_embedding: nn.Embedding   # ids -> [N, L, width]
    positional_embedding: torch.Tensor  # [context_length, width], added to the token embeddings
    # encoder: has .blocks (a ModuleList), .ln; run as encoder(x, pad_mask, start, stop)
    encoder: nn.Module
    proj: nn.Module                 # pooled [N, width] -> [N, embed_dim]

    def __call__(self, ids: torch.Tensor | None = None, *, embeds: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, return_tokens: bool = False):
        """ids ``[N, L]`` or embeds ``[N, L, width]`` (+ mask, True = real) -> ``[N, embed_dim]``;
        with ``return_tokens`` also the token outputs ``[N, L', width]`` (``L'``: the columns
        up to the longest real caption)."""

    def hidden(self, ids: torch.Tensor, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states before block ``stop`` ``[N, L, width]`` and the mask ``[N, L]``."""

    def from_hidden(self, x: torch.Tensor, mask: torch.Tensor, start: int,
                    return_tokens: bool = False):
        """Finish the forward pass from the states before block ``start`` (and the token
        outputs)."""


@runtime_checkable
class PromptableImage(Protocol):
    """An image tower that takes patch embeddings as well as pixels."""
    width: int                      # patch embedding width
    n_patches: int                  # patches per image
    encoder: nn.Module              # has .blocks (a ModuleList), .ln
    proj: nn.Module                 # class token [N, width] -> [N, embed_dim]

    def __call__(self, images: torch.Tensor | None = None, *,
                 patches: torch.Tensor | None = None, return_tokens: bool = False):
        """images ``[N, 3, H, W]`` or patches ``[N, n_patches, width]`` -> ``[N, embed_dim]``;
        with ``return_tokens`` also the token outputs ``[N, 1 + n_patches, width]``
        (class first)."""

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> patch embeddings ``[N, n_patches, width]``."""

    def hidden(self, images: torch.Tensor, stop: int) -> torch.Tensor:
        """Token states before block ``stop`` ``[N, 1 + n_patches, width]``."""

    def from_hidden(self, x: torch.Tensor, start: int, return_tokens: bool = False):
        """Finish the forward pass from the states before block ``start`` (and the token
        outputs)."""


def require(name: str, tower, protocol) -> None:
    """Fail with a message naming the argument and what it lacks, if ``tower`` does not
    provide ``protocol``'s attributes (``PromptableText`` or ``PromptableImage``)."""
    members = [m for m in protocol.__annotations__] + \
        [m for m in ("hidden", "from_hidden", "patchify") if hasattr(protocol, m)]
    lacking = [m for m in members if not hasattr(tower, m)]
    if lacking:
        raise ValueError(f"{name}: got a {type(tower).__name__} without {lacking}, "
                         f"expected a tower that provides models.interface.{protocol.__name__}")
