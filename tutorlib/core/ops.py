"""Small operations that several modules share: pooling over real tokens, and running a
function over a long input in chunks.

    ops.masked_mean(tokens, mask)                   # [N, L, d] -> [N, d]
    ops.last_real(mask)                             # [N, L] -> [N]: where a text tower pools
    ops.in_chunks(model.encode_text, ids, 1000)     # fn over rows 0:1000, 1000:2000, ...
"""
from __future__ import annotations

import torch

from . import _validate


def check_mask(mask, shape) -> None:
    """``mask`` is None or a bool ``[N, L]`` tensor of ``shape`` with a real token per row."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != shape:
        got = (f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor)
               else type(mask).__name__)
        raise ValueError(f"mask: got {got}, expected a bool tensor of shape {tuple(shape)}")
    if not bool(mask.any(1).all()):
        raise ValueError(f"mask: got {int((~mask.any(1)).sum())} rows with no real token, expected "
                         "at least one True per row (an all-padding row has no mean)")


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over tokens ``[N, L, d]`` -> ``[N, d]``; ``mask`` ``[N, L]`` True marks real tokens
    (None: every token is real). The pooling of MiniLM's sentence embedding."""
    _validate.tensor("x", x, 3, finite=False)
    check_mask(mask, x.shape[:2])
    return mean_over_tokens(x, mask)


def mean_over_tokens(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``masked_mean`` without the checks, for a forward pass that has checked already."""
    if keep is None:
        return x.mean(1)
    keep = keep.to(x.dtype)[..., None]
    return (x * keep).sum(1) / keep.sum(1).clamp_min(1)


def last_real(mask: torch.Tensor) -> torch.Tensor:
    """The index of each row's last real token: ``mask`` ``[N, L]`` (True = real) -> ``[N]``
    (the position of the cumulative count's first maximum, so padding inside a row is skipped).
    Where a causal text tower pools: that token has seen the whole caption."""
    return mask.long().cumsum(1).argmax(1)


def in_chunks(fn, items, size: int = 1000, *, desc: str | None = None,
              progress: bool = False) -> torch.Tensor:
    """``fn`` over consecutive chunks of ``size`` rows of ``items`` (a tensor or a list),
    concatenated along the first dimension; a progress bar named ``desc`` if ``progress``."""
    from tqdm.auto import tqdm
    if not callable(fn):
        raise ValueError(f"fn: got {type(fn).__name__}, expected a callable")
    _validate.positive_int("size", size)
    if len(items) == 0:
        raise ValueError("items: got 0 rows, expected at least one")
    starts = range(0, len(items), size)
    return torch.cat([fn(items[lo:lo + size])
                      for lo in tqdm(starts, desc=desc, disable=not progress)])
