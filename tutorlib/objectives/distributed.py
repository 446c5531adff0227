"""The contrastive loss across processes (lesson 09): every process holds N_local pairs and
the loss must see the global batch's negatives. Three forms, as open_clip writes them
(``src/open_clip/loss.py``), inside processes started by ``launch.run`` or ``torchrun``:

* ``gathered_clip_loss``: all-gather both modalities *with gradient* and compute the whole
  ``[N_global, N_global]`` logit matrix in every process. open_clip gathers with
  ``torch.distributed._functional_collectives.all_gather_tensor_autograd`` and falls back to
  ``torch.distributed.nn.all_gather`` (``loss.py:23-26``, ``_all_gather_with_grad``); this module
  calls the second, public one. Both have the same backward pass: every process's gradient
  of the gathered tensor is summed onto each row's owner (a reduce-scatter);
* ``gathered_clip_loss(..., local_loss=True)``: only this process's rows,
  ``[N_local, N_global]`` each way, labels offset by rank;
* ``siglip_ring_loss``: SigLIP's sigmoid loss with the texts passed around a ring of
  processes (``dist_impl="shift"``), so no process computes more than ``[N_local, N_local]``
  logits at once (autograd keeps each step's block until the backward pass). ``exchange`` is
  the ring's step, public so that a ring of one's own is counted by ``traffic``.

Gradients: each process differentiates its own loss, and the gathers send gradients back to the
rows' owners, so a process's embedding rows receive W times the gradient of the global loss
(W processes). ``DistributedDataParallel`` averages parameter gradients over the W processes,
which makes the update exactly the single-process one.

``with traffic() as t: ...`` counts in ``t["bytes"]`` the bytes this process receives in the
forward pass of these functions inside the block (the backward pass sends the same volume back).

Is a form *the* loss? ``form_gradients`` runs every form inside each process on its rows of
one global batch; ``reference_gradients`` computes the same loss in one process on all of it:

    local = lambda i, t, s, b: gathered_clip_loss(i, t, s, local_loss=True)
    per_rank = launch.run(form_gradients, 2, {"local": local}, batch)    # batch: (img, txt, s, b)
    one = lambda i, t, s, b: clip_loss(i, t, s)                          # on the whole batch
    loss, g_img, g_txt, g_scale_bias = reference_gradients(one, batch)

Training with these losses under ``DistributedDataParallel`` is ``training/data_parallel.py``.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F

from ..core import _validate
from ..training import costs
from . import losses

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
        raise RuntimeError("torch.distributed is not initialised: "
                           "call this inside launch.run(...) or torchrun")
    return dist.get_rank(), dist.get_world_size()


def gather(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Every process's ``[N_local, d]`` rows, concatenated in rank order: ``[W * N_local, d]``.
    ``with_grad=False`` gathers without gradient and puts this process's own rows back in place,
    so that its loss still differentiates through them (open_clip's default, which puts them back
    only when ``local_loss=False``, ``loss.py:47``; here they are always put back)."""
    rank, world = _world()
    _validate.tensor("x", x, 2, finite=False)
    _received((world - 1) * x.numel() * x.element_size())
    if with_grad:
        with warnings.catch_warnings():
            # torch 2.13 marks the autograd-aware all_gather deprecated in favour of a private API
            # (open_clip calls _functional_collectives.all_gather_tensor_autograd where it exists and
            # this one only as its fallback, loss.py:23-26); it is the public way to gather with gradient
            warnings.filterwarnings("ignore",
                                    message=r"torch\.distributed\.nn\.functional\.all_gather")
            return torch.cat(dist_nn.all_gather(x.contiguous()), 0)
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, 0)


def gathered_clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale,
                       local_loss: bool = False, with_grad: bool = True) -> torch.Tensor:
    """CLIP's symmetric loss over the global batch (``losses.clip_loss`` on the concatenation).
    ``local_loss=False``: the whole ``[N_g, N_g]`` matrix in every process. ``True``: this
    process's ``N_l`` rows each way against all ``N_g`` columns, labels ``rank * N_l + i``; its
    loss is the mean over its own rows, and the mean over processes is the global loss.
    ``with_grad=False``: gather without gradient, own rows put back (``gather``); the value is
    the same, but only this process's own rows carry gradient, so after DDP's average every
    gradient is 1/W of the exact one (full loss; with ``local_loss`` it is not even a multiple)."""
    rank, _ = _world()
    _validate.pair(image_emb, text_emb)
    scale = _validate.scalar("logit_scale", logit_scale).exp()
    img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    all_img, all_txt = gather(img, with_grad), gather(txt, with_grad)
    if local_loss:
        labels = torch.arange(len(img), device=img.device) + rank * len(img)
        return (F.cross_entropy(scale * img @ all_txt.T, labels)
                + F.cross_entropy(scale * txt @ all_img.T, labels)) / 2
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


def exchange(x: torch.Tensor, send_to: int, recv_from: int) -> torch.Tensor:
    """One ring step, with gradient (open_clip's ``neighbour_exchange_with_grad``): send ``x`` to
    rank ``send_to``, return the tensor of the same shape received from rank ``recv_from``; the
    backward pass sends the gradient back the other way. Counted by ``traffic`` (the bytes
    received), so a ring written with it reports its bytes like ``siglip_ring_loss``."""
    _, world = _world()
    _validate.tensor("x", x, None, finite=False)
    for name, r in (("send_to", send_to), ("recv_from", recv_from)):
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < world:
            raise ValueError(f"{name}: got {r!r}, expected a rank from 0 to {world - 1}")
    _received(x.numel() * x.element_size())
    return _NeighbourExchange.apply(x, send_to, recv_from)


def _exchange(x: torch.Tensor, send_to: int, recv_from: int) -> torch.Tensor:
    received = torch.empty_like(x)
    ops = [dist.P2POp(dist.isend, x.contiguous(), send_to),
           dist.P2POp(dist.irecv, received, recv_from)]
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


def siglip_ring_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
                     logit_scale, logit_bias) -> torch.Tensor:
    """SigLIP's loss (``losses.siglip_loss``) over the global batch, by a ring (the chunked form
    the SigLIP paper describes; open_clip's ``dist_impl="shift"``, ``loss.py:445-462``): this
    process's images against its own texts (positives on the diagonal), then W - 1 times: pass
    the texts one rank to the right, receive from the left, and add the negatives-only terms.
    Returns this process's share, normalised by ``N_local``: the mean over processes is the
    global loss. (open_clip's default ``"bidir"`` exchanges with both neighbours at once and
    ends, for even W, with one one-way shift: ``loss.py:410-444``, the shift at 432-444.
    big_vision's public SigLIP trainer is not chunked: its docstring says "TODO: implement
    chunked version with shard_map", ``big_vision/trainers/proj/image_text/siglip.py:19``.)"""
    rank, world = _world()
    _validate.pair(image_emb, text_emb)
    scale = _validate.scalar("logit_scale", logit_scale).exp()
    bias = _validate.scalar("logit_bias", logit_bias)
    img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    loss = _sigmoid_terms(img, txt, scale, bias, positives=True)
    right, left = (rank + 1) % world, (rank - 1) % world
    for _ in range(world - 1):
        txt = exchange(txt, right, left)
        loss = loss + _sigmoid_terms(img, txt, scale, bias, positives=False)
    return loss


def _check_batch(batch) -> None:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 4):
        raise ValueError(f"batch: got {type(batch).__name__}, expected (image_emb [N, d], "
                         "text_emb [N, d], logit_scale, logit_bias)")
    _validate.pair(batch[0], batch[1])


def _with_grad(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors]


def _scale_bias_grad(scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``[2]``: the scale's and the bias's gradients (0 for a loss without a bias)."""
    return torch.stack([scale.grad, bias.grad if bias.grad is not None else torch.tensor(0.0)])


def form_gradients(rank: int, world_size: int, forms: dict, batch) -> dict:
    """Inside each process of ``launch.run``: every form ``forms[name](image_emb, text_emb,
    logit_scale, logit_bias)`` on this process's rows of the global ``batch`` (``[N_g, d]``
    images and texts, a log-scale and a bias, the same in every process; rank r holds rows
    ``r N_g / W`` to ``(r + 1) N_g / W``). Returns ``{name: (loss, this process's image and
    text gradients [N_l, d], [scale gradient, bias gradient])}``."""
    if not isinstance(forms, dict) or not forms or not all(callable(f) for f in forms.values()):
        raise ValueError(f"forms: got {type(forms).__name__}, expected a dict {{name: loss}}")
    _check_batch(batch)
    img, txt, scale, bias = batch
    rows = slice(rank * len(img) // world_size, (rank + 1) * len(img) // world_size)
    out = {}
    for name, form in forms.items():
        i, t, s, b = _with_grad(img[rows], txt[rows], scale, bias)
        loss = form(i, t, s, b)
        loss.backward()
        out[name] = (loss.detach(), i.grad, t.grad, _scale_bias_grad(s, b))
    return out


def reference_gradients(loss_fn, batch) -> tuple:
    """One process on the whole ``batch`` (as in ``form_gradients``): ``loss_fn(image_emb,
    text_emb, logit_scale, logit_bias)`` and its gradients, ``(loss, image gradient [N_g, d],
    text gradient [N_g, d], [scale gradient, bias gradient])``."""
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: got {type(loss_fn).__name__}, expected a loss function")
    _check_batch(batch)
    img, txt, scale, bias = _with_grad(*batch)
    loss = loss_fn(img, txt, scale, bias)
    loss.backward()
    return loss.detach(), img.grad, txt.grad, _scale_bias_grad(scale, bias)


def _form_cost(form, img, txt) -> dict:
    """One distributed loss form's costs on this process's embeddings (scale 2, bias -5)."""
    def loss():
        return form(img, txt, torch.tensor(2.0), torch.tensor(-5.0))
    with traffic() as received:
        largest = costs.largest_allocation(lambda: loss().backward())
    kept = costs.saved_for_backward(loss)
    return {"largest block (KiB)": largest / 1024, "kept for backward (KiB)": kept / 1024,
            "received (KiB)": received["bytes"] / 1024}


def distributed_costs(rank: int, world_size: int, forms: dict, sizes, width: int) -> dict:
    """Inside each process of ``launch.run``: for every global batch size in ``sizes`` and every
    form ``forms[name](image_emb, text_emb, logit_scale, logit_bias)`` (a loss across
    processes), on this process's ``[size / world_size, width]`` random embeddings (seeded by
    the rank), the largest block the loss's forward and backward allocate, what autograd keeps
    for the backward pass and the bytes received in the forward pass (``traffic``),
    all in KiB, keyed ``(name, size)``."""
    if not isinstance(forms, dict) or not forms or not all(callable(f) for f in forms.values()):
        raise ValueError(f"forms: got {type(forms).__name__}, expected a dict {{name: loss}}")
    _validate.positive_int("width", width)
    sizes = list(sizes)
    if not sizes or not all(isinstance(n, int) and n >= world_size for n in sizes):
        raise ValueError(f"sizes: got {sizes!r}, expected global batch sizes of at least "
                         f"world_size={world_size} pairs")
    out = {}
    for n_global in sizes:
        n_local = n_global // world_size
        g = torch.Generator().manual_seed(rank)
        img = torch.randn(n_local, width, generator=g, requires_grad=True)
        txt = torch.randn(n_local, width, generator=g, requires_grad=True)
        for name, form in forms.items():
            out[(name, n_global)] = _form_cost(form, img, txt)
    return out
