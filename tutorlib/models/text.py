"""The text tower: word embeddings -> causal transformer -> last real token -> projection."""
from __future__ import annotations

import torch
from torch import nn

from ..core import _validate
from ..core.ops import last_real, mean_over_tokens
from .blocks import Encoder


class TextTower(nn.Module):
    """Word embeddings + positions -> transformer -> the last real token -> projection.

    As in CLIP's text tower, attention is causal (each word sees only the words before
    it) and the caption is read off its last token, which has seen every word in order.
    This matters for *binding*: "a red circle and a blue square" and "a blue circle and
    a red square" hold the same words, so a bag of words (``causal=False, pool="mean"``
    with weak positions) cannot tell them apart (lesson 02).

    ``forward(ids)`` with ids ``[N, L]`` (0 = padding), or ``forward(embeds=[N, L, width],
    mask=[N, L] bool, True for real tokens)``. Returns ``[N, embed_dim]``.
    ``return_tokens=True`` also returns the token outputs ``[N, L, width]``.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 128, width: int | None = None,
                 depth: int = 2, heads: int = 4, context_length: int = 40, pad_id: int = 0,
                 causal: bool = True, pool: str = "last"):
        super().__init__()
        _validate.one_of("pool", pool, ("mean", "last"))
        self.pool = pool
        width = embed_dim if width is None else width
        for name, v in (("vocab_size", vocab_size), ("embed_dim", embed_dim), ("width", width),
                        ("depth", depth), ("heads", heads), ("context_length", context_length)):
            _validate.positive_int(name, v)
        self.context_length, self.pad_id, self.width = context_length, pad_id, width
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context_length, width))
        self.encoder = Encoder(width, depth, heads, causal=causal)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, ids: torch.Tensor | None = None, *, embeds: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, return_tokens: bool = False):
        if (ids is None) == (embeds is None):
            raise ValueError("ids, embeds: pass exactly one of them")
        if ids is not None:
            _validate.tensor("ids", ids, 2, floating=False)
            if ids.is_floating_point() or ids.dtype == torch.bool:
                raise ValueError(f"ids: got dtype {ids.dtype}, expected integer token ids")
            if ids.shape[1] > self.context_length:
                raise ValueError(f"ids: got length {ids.shape[1]}, expected at most "
                                 f"context_length={self.context_length}")
            mask = ids != self.pad_id
            # drop all-pad tail
            ids, mask = ids[:, :int(mask.sum(1).max())], mask[:, :int(mask.sum(1).max())]
            embeds = self.token_embedding(ids)
        else:
            _validate.tensor("embeds", embeds, 3, finite=False)
            if embeds.shape[1] > self.context_length or embeds.shape[2] != self.width:
                raise ValueError(f"embeds: got shape {tuple(embeds.shape)}, expected "
                                 f"[N, <= {self.context_length}, {self.width}]")
            if mask is None:
                mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        x = embeds + self.positional_embedding[:embeds.shape[1]]
        return self.from_hidden(x, mask, 0, return_tokens)

    def hidden(self, ids: torch.Tensor, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states before block ``stop`` (after blocks ``0:stop``) ``[N, L, width]``,
        and the mask: precompute them once to fine-tune only blocks ``stop:``."""
        mask = ids != self.pad_id
        keep = int(mask.sum(1).max())
        ids, mask = ids[:, :keep], mask[:, :keep]
        x = self.token_embedding(ids) + self.positional_embedding[:keep]
        return self.encoder(x, ~mask, stop=stop), mask

    def from_hidden(self, x: torch.Tensor, mask: torch.Tensor, start: int,
                    return_tokens: bool = False):
        """Finish the forward pass from the states before block ``start``."""
        x = self.encoder(x, pad_mask=~mask, start=start)
        if self.pool == "last":             # the last real token has seen the whole caption
            last = last_real(mask)
            pooled = x[torch.arange(len(x), device=x.device), last]
        else:
            pooled = mean_over_tokens(x, mask)
        out = self.proj(pooled)
        return (out, x) if return_tokens else out

    def prefix_keys(self, prefix: torch.Tensor) -> list[torch.Tensor]:
        """Run a prefix that every prompt shares, token embeddings ``[p, width]`` (positions
        0..p-1 are added here), once: returns, per block, its normed states ``[1, p, width]``,
        the keys and values every later position attends to. Attention is causal, so the
        prefix never sees what follows and its states are the same in every prompt.
        Differentiable: gradients reach ``prefix`` (CoOp's context) through ``from_prefix``."""
        self._check_prefix_path()
        _validate.tensor("prefix", prefix, 2, finite=False)
        p = len(prefix)
        x = (prefix + self.positional_embedding[:p])[None]
        causal = torch.ones(p, p, dtype=torch.bool, device=x.device).triu(1)
        keys = []
        for block in self.encoder.blocks:
            keys.append(block.ln1(x))
            x = block(x, attn_mask=causal)
        return keys

    def from_prefix(self, keys: list[torch.Tensor], tail: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
        """The rest of each prompt after a shared prefix (``prefix_keys``): token embeddings
        ``[N, t, width]`` (padding after the real tokens, ``mask`` ``[N, t]`` True for real
        ones, None: all real) -> ``[N, embed_dim]``, equal to the tower on the whole prompts
        while running the blocks on the t tail positions only."""
        self._check_prefix_path()
        _validate.tensor("tail", tail, 3, finite=False)
        p, t = keys[0].shape[1], tail.shape[1]
        x = tail + self.positional_embedding[p:p + t]
        causal = torch.ones(p + t, p + t, dtype=torch.bool, device=x.device).triu(1)[p:]
        for k, block in enumerate(self.encoder.blocks):
            h = block.ln1(x)
            kv = torch.cat([keys[k].expand(len(x), -1, -1), h], 1)
            # all real: the last block needs the last position only
            q, x, rows = (h[:, -1:], x[:, -1:], causal[-1:]) \
                if mask is None and k == len(self.encoder.blocks) - 1 else (h, x, causal)
            x = x + block.attn(q, kv, kv, attn_mask=rows, need_weights=False)[0]
            x = x + block.mlp(block.ln2(x))
        last = torch.full((len(x),), x.shape[1] - 1, device=x.device) if mask is None \
            else last_real(mask)
        return self.proj(self.encoder.ln(x[torch.arange(len(x), device=x.device), last]))

    @property
    def shares_prefixes(self) -> bool:
        """True when a prefix's states never depend on what follows it and the output is read
        at the last token (causal attention, ``pool="last"``): ``prefix_keys`` /
        ``from_prefix`` apply."""
        return self.encoder.causal and self.pool == "last"

    def _check_prefix_path(self):
        if not self.shares_prefixes:
            raise ValueError(f"this tower: got causal={self.encoder.causal}, pool={self.pool!r}, "
                             "expected a causal tower pooled at its last token "
                             "(only then is a prefix blind to what follows)")

