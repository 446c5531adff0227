"""Transformer blocks shared by every tower: a pre-norm block and a stack of them."""
from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """A pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width))

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, first_only: bool = False) -> torch.Tensor:
        """``[N, L, width]`` -> ``[N, L, width]``, or ``[N, 1, width]`` with ``first_only``:
        only the first token's output (all a CLS-pooled tower keeps from its last block)."""
        h = self.ln1(x)
        q, x = (h[:, :1], x[:, :1]) if first_only else (h, x)
        x = x + self.attn(q, h, h, key_padding_mask=pad_mask, attn_mask=attn_mask,
                          need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class Encoder(nn.Module):
    """A stack of ``depth`` blocks and a final LayerNorm. ``causal=True`` lets each
    token attend only to itself and the tokens before it (as in CLIP's text tower)."""

    def __init__(self, width: int, depth: int, heads: int, causal: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln = nn.LayerNorm(width)
        self.causal = causal

    def forward(self, x, pad_mask=None, start: int = 0, stop: int | None = None,
                first_only: bool = False):
        """Run blocks ``start:stop``; the final LayerNorm only when running to the end.
        ``first_only``: the last block computes only the first token ``[N, 1, width]``."""
        attn_mask = None
        if self.causal:                     # True above the diagonal = may not attend
            if first_only:
                raise ValueError("first_only: got True, expected False for a causal encoder")
            L = x.shape[1]
            attn_mask = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
        blocks = self.blocks[start:stop]
        for k, block in enumerate(blocks):
            x = block(x, pad_mask, attn_mask, first_only=first_only and k == len(blocks) - 1)
        return self.ln(x) if stop is None else x

