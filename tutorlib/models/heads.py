"""The course's one small MLP head: ``Linear -> activation -> Linear``.

A projection head on top of a frozen or trained feature (SimCLR's g, the few-pairs projectors,
LiT's text head, RESTORE's adapter block) is this module, so that "an MLP head" means one
thing. It is an ``nn.Sequential`` (its weights are named ``0.*`` and ``2.*``), imported on its
own so that the towers' code, and the cache keys of the models trained with them, do not
follow it.
"""
from __future__ import annotations

from torch import nn

from ..core import _validate


def mlp(in_dim: int, hidden: int, out_dim: int,
        activation: type[nn.Module] = nn.GELU) -> nn.Sequential:
    """``[*, in_dim]`` -> ``Linear(in_dim, hidden)``, ``activation()``, ``Linear(hidden, out_dim)``
    -> ``[*, out_dim]`` (the layers built in that order, so a seed gives the same weights as the
    same three layers written out)."""
    for name, v in (("in_dim", in_dim), ("hidden", hidden), ("out_dim", out_dim)):
        _validate.positive_int(name, v)
    if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
        raise ValueError(f"activation: got {activation!r}, expected an nn.Module class such as "
                         "nn.GELU")
    return nn.Sequential(nn.Linear(in_dim, hidden), activation(), nn.Linear(hidden, out_dim))
