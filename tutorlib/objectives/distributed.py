"""The contrastive loss across processes (lesson 09): every process holds N_local pairs and
the loss must see the global batch's negatives. Three forms, as open_clip writes them
(``src/open_clip/loss.py``), inside processes started by ``launch.run`` or ``torchrun``:

* ``gathered_clip_loss``: all-gather both modalities *with gradient*
  (``torch.distributed.nn.functional.all_gather``) and compute the whole
  ``[N_global, N_global]`` logit matrix in every process;
* ``gathered_clip_loss(..., local_loss=True)``: only this process's rows,
  ``[N_local, N_global]`` each way, labels offset by rank;
* ``siglip_ring_loss``: SigLIP's sigmoid loss with the texts passed around a ring of
  processes (``dist_impl="shift"``), so no process computes more than ``[N_local, N_local]``
  logits at once (autograd keeps each step's block until the backward pass).

Gradients: each process differentiates its own loss, and the gathers send gradients back to the
rows' owners, so a process's embedding rows receive W times the gradient of the global loss
(W processes). ``DistributedDataParallel`` averages parameter gradients over the W processes,
which makes the update exactly the single-process one.

``with traffic() as t: ...`` counts in ``t["bytes"]`` the bytes this process receives in the
forward pass of these functions inside the block (the backward pass sends the same volume back).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F

from ..core import _validate

_COUNTERS: list[dict] = []         # the open traffic() blocks of this process


@contextmanager
def traffic():
    """Count the bytes this process receives inside the block: ``with traffic() as t: ...``,
    then ``t["bytes"]`` (blocks may nest; each counts what happened inside it)."""
    counter = {"bytes": 0}
    _COUNTERS.append(counter)
    try:
        yield counter
    finally:
        _COUNTERS.remove(counter)


def _received(n_bytes: int) -> None:
    for counter in _COUNTERS:
        counter["bytes"] += n_bytes


def _world() -> tuple[int, int]:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialised: call this inside launch.run(...) or torchrun")
    return dist.get_rank(), dist.get_world_size()


def gather(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Every process's ``[N_local, d]`` rows, concatenated in rank order: ``[W * N_local, d]``.
    ``with_grad=False`` gathers without gradient and puts this process's own rows back in place,
    so that its loss still differentiates through them (open_clip's default)."""
    rank, world = _world()
    _validate.tensor("x", x, 2, finite=False)
    _received((world - 1) * x.numel() * x.element_size())
    if with_grad:
        with warnings.catch_warnings():
            # torch 2.13 marks the autograd-aware all_gather deprecated in favour of a private API;
            # open_clip still calls it, and it is the public way to gather with gradient
            warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather")
            return torch.cat(dist_nn.all_gather(x.contiguous()), 0)
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, 0)


def gathered_clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale,
                       local_loss: bool = False) -> torch.Tensor:
    """CLIP's symmetric loss over the global batch (``losses.clip_loss`` on the concatenation).
    ``local_loss=False``: the whole ``[N_g, N_g]`` matrix in every process. ``True``: this
    process's ``N_l`` rows each way against all ``N_g`` columns, labels ``rank * N_l + i``; its
    loss is the mean over its own rows, and the mean over processes is the global loss."""
    rank, _ = _world()
    _validate.pair(image_emb, text_emb)
    scale = _validate.scalar("logit_scale", logit_scale).exp()
    img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    all_img, all_txt = gather(img), gather(txt)
    if local_loss:
        labels = torch.arange(len(img), device=img.device) + rank * len(img)
        return (F.cross_entropy(scale * img @ all_txt.T, labels) + F.cross_entropy(scale * txt @ all_img.T, labels)) / 2
    logits = scale * all_img @ all_txt.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class _NeighbourExchange(torch.autograd.Function):
    """Send a tensor to the next rank and receive the previous rank's; the gradient goes back
    the other way round the ring."""

    @staticmethod
    def forward(ctx, x, send_to: int, recv_from: int):
        ctx.send_to, ctx.recv_from = send_to, recv_from
        return _exchange(x, send_to, recv_from)

    @staticmethod
    def backward(ctx, grad):
        return _NeighbourExchange.apply(grad, ctx.recv_from, ctx.send_to), None, None


def _exchange(x: torch.Tensor, send_to: int, recv_from: int) -> torch.Tensor:
    received = torch.empty_like(x)
    ops = [dist.P2POp(dist.isend, x.contiguous(), send_to), dist.P2POp(dist.irecv, received, recv_from)]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    return received


def _sigmoid_terms(img, txt, scale, bias, positives: bool) -> torch.Tensor:
    """-Σ log σ(z_ij l_ij) / N_local with z = -1 off the diagonal (and +1 on it for ``positives``),
    written as softplus(l) - [diagonal] l, so that no [N, N] label matrix is made."""
    logits = scale * img @ txt.T + bias
    loss = F.softplus(logits).sum()
    if positives:
        loss = loss - logits.diagonal().sum()
    return loss / len(img)


def siglip_ring_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale, logit_bias) -> torch.Tensor:
    """SigLIP's loss (``losses.siglip_loss``) over the global batch, by a ring (SigLIP's chunked
    form; open_clip's ``dist_impl="shift"``): this process's images against its own texts
    (positives on the diagonal), then W - 1 times: pass the texts one rank to the right, receive
    from the left, and add the negatives-only terms. Returns this process's share, normalised
    by ``N_local``: the mean over processes is the global loss."""
    rank, world = _world()
    _validate.pair(image_emb, text_emb)
    scale = _validate.scalar("logit_scale", logit_scale).exp()
    bias = _validate.scalar("logit_bias", logit_bias)
    img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    loss = _sigmoid_terms(img, txt, scale, bias, positives=True)
    right, left = (rank + 1) % world, (rank - 1) % world
    for _ in range(world - 1):
        _received(txt.numel() * txt.element_size())
        txt = _NeighbourExchange.apply(txt, right, left)
        loss = loss + _sigmoid_terms(img, txt, scale, bias, positives=False)
    return loss
