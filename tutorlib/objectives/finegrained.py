"""Fine-grained alignment (lesson 07): FILIP's token-wise late interaction (Yao et al., ICLR 2022).

CLIP compares one vector per image with one per caption. FILIP compares every patch token
with every word token and lets each token vote with its best match:

    s^I_ij = 1/n1 sum_k max_r <x_ik, y_jr>      (image i -> text j: each patch finds its word)
    s^T_ij = 1/n2 sum_r max_k <y_jr, x_ik>      (text j -> image i: each real word finds its patch)

with L2-normalised tokens, the image's class token dropped and padding masked (n2 counts the
caption's real tokens). s^I gives the image->text logits and s^T the text->image logits of the
usual symmetric InfoNCE, with label smoothing 0.1 as in the MindSpore port.

    x = image_tokens(model.image_tower, images)          # [N, P, d] projected patch tokens (tokens.py)
    y, mask = text_tokens(model.text_tower, ids)         # [M, L, d], [M, L] True = real token
    s_i, s_t = token_similarity(x, y, mask)              # [N, M] each, image rows, text columns
    loss = filip_loss(x, y, mask, logit_scale)           # x, y paired row by row (N = M)
    x, y, mask = select_tokens(x, y, mask, keep=0.25)    # the paper's token dropping
    s_i, s_t = paired_scores(x, y, mask)                 # [N] each: image i with caption i only
    objective = filip_objective(keep=0.25)               # for pretrained.finetune
    baseline = clip_objective()                          # CLIP's loss, the same smoothing
    s_i, s_t = encoding_scores(encode(model, images, ids))   # [N, M] each, the model's own score
    votes = patch_scores(x, y, mask)                     # [N, P, M]: s^I before its mean
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate
from . import losses
from .objective import Batch, Objective
from ..training import costs
from ..core.ops import check_mask
from .tokens import encode, encode_text, image_tokens, text_tokens  # noqa: F401  (lesson 07 reads them here)


def _check_tokens(image_tokens, text_tokens, text_mask) -> None:
    _validate.tensor("image_tokens", image_tokens, 3)
    _validate.tensor("text_tokens", text_tokens, 3)
    if image_tokens.shape[2] != text_tokens.shape[2]:
        raise ValueError(f"image_tokens, text_tokens: got widths {image_tokens.shape[2]} and "
                         f"{text_tokens.shape[2]}, expected the same joint width d")
    if text_mask is None:
        raise ValueError("text_mask: got None, expected a bool [M, L] tensor (True = real token)")
    check_mask(text_mask, text_tokens.shape[:2])


def token_similarity(image_tokens: torch.Tensor, text_tokens: torch.Tensor,
                     text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FILIP's two late-interaction similarities of ``N`` images and ``M`` captions:
    ``image_tokens`` ``[N, P, d]``, ``text_tokens`` ``[M, L, d]``, ``text_mask`` ``[M, L]``.

    Returns ``(s_i, s_t)``, both ``[N, M]`` (row = image, column = caption): s_i averages over
    the patches each patch's best real word, s_t averages over the real words each word's
    best patch. Holds the ``[N, M, P, L]`` token-pair cosines at once: chunk the images
    (``scores``) for a large N x M."""
    _check_tokens(image_tokens, text_tokens, text_mask)
    return _similarities(image_tokens, text_tokens, text_mask)


def _unit_words(text_tokens, text_mask) -> torch.Tensor:
    """Unit text tokens ``[M, L, d]`` whose padding slots hold a copy of the caption's first real
    token: a max over words is then blind to them without a masked copy of the ``[N, P, M, L]``
    cosines (and the gradient a copy receives goes to the real token it copies)."""
    y = F.normalize(text_tokens, dim=-1)
    first = y[torch.arange(len(y), device=y.device), text_mask.long().argmax(1)][:, None]
    return torch.where(text_mask[..., None], y, first)


def _similarities(image_tokens, text_tokens, text_mask) -> tuple[torch.Tensor, torch.Tensor]:
    (N, P, d), (M, L, _) = image_tokens.shape, text_tokens.shape
    x, y = F.normalize(image_tokens, dim=-1), _unit_words(text_tokens, text_mask)
    sim = (x.reshape(N * P, d) @ y.reshape(M * L, d).T).view(N, P, M, L)
    s_i = sim.max(3).values.mean(1)                                        # best word per patch
    best_patch = sim.max(1).values                                          # [N, M, L]
    s_t = (best_patch * text_mask[None]).sum(2) / text_mask.sum(1).to(sim.dtype)[None]
    return s_i, s_t


def filip_loss(image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor,
               logit_scale, label_smoothing: float = 0.1) -> torch.Tensor:
    """FILIP's contrastive loss on ``N`` paired images and captions (row i with row i):

        L = 1/2 [ CE(s * S^I, I) + CE(s * (S^T)^T, I) ],   s = exp(logit_scale)

    with ``S^I``, ``S^T`` from ``token_similarity`` and cross-entropies smoothed by
    ``label_smoothing`` (the port's 0.1: the target is 0.9 on the pair plus 0.1 / N everywhere)."""
    logit_scale = _validate.scalar("logit_scale", logit_scale)
    _check_smoothing(label_smoothing)
    _validate.same_rows("image_tokens", image_tokens, "text_tokens", text_tokens)
    s_i, s_t = token_similarity(image_tokens, text_tokens, text_mask)
    scale = logit_scale.exp()
    return _symmetric_ce(scale * s_i, scale * s_t.T, label_smoothing)


def _check_smoothing(label_smoothing) -> None:
    if not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"label_smoothing: got {label_smoothing!r}, expected a number in [0, 1)")


def _symmetric_ce(logits_i: torch.Tensor, logits_t: torch.Tensor, label_smoothing: float):
    """(CE(logits_i, I) + CE(logits_t, I)) / 2, both ``[N, N]``, smoothed: the pair on the diagonal."""
    labels = torch.arange(len(logits_i), device=logits_i.device)
    return (F.cross_entropy(logits_i, labels, label_smoothing=label_smoothing)
            + F.cross_entropy(logits_t, labels, label_smoothing=label_smoothing)) / 2


@torch.no_grad()
def _top_tokens(tokens: torch.Tensor, others: torch.Tensor, others_mask, k: int,
                mask=None) -> torch.Tensor:
    """Indices ``[B, k]`` of each row's ``k`` tokens with the highest cosine to any real token
    of ``others`` ``[M, L, d]`` (padding of ``tokens`` itself ranks last)."""
    x, o = F.normalize(tokens, dim=-1), F.normalize(others, dim=-1)
    sim = torch.einsum("bpd,mld->bpml", x, o)
    if others_mask is not None:
        sim = sim.masked_fill(~others_mask[None, None], float("-inf"))
    best = sim.flatten(2).amax(2)                                           # [B, P]
    if mask is not None:
        best = best.masked_fill(~mask, float("-inf"))
    return best.topk(k, dim=1).indices


def select_tokens(image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor,
                  keep: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FILIP's token dropping (Sec. 3.1.2): keep the ``keep`` fraction of each image's patch
    tokens, and of each caption's token slots, whose best cosine to any token of the other
    modality in the batch is highest. Indices are chosen without gradient; the kept tokens
    carry it. Returns ``(image_tokens [N, k_i, d], text_tokens [M, k_t, d], text_mask [M, k_t])``
    with ``k = max(1, int(keep * n))``; a caption with fewer real tokens than ``k_t`` keeps
    them all and some padding (still masked)."""
    _check_tokens(image_tokens, text_tokens, text_mask)
    if not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"keep: got {keep!r}, expected a fraction in (0, 1]")
    k_i = max(1, int(keep * image_tokens.shape[1]))
    k_t = max(1, int(keep * text_tokens.shape[1]))
    i_idx = _top_tokens(image_tokens, text_tokens, text_mask, k_i)
    t_idx = _top_tokens(text_tokens, image_tokens, None, k_t, mask=text_mask)
    take = lambda t, idx: t.gather(1, idx[..., None].expand(-1, -1, t.shape[2]))  # noqa: E731
    return take(image_tokens, i_idx), take(text_tokens, t_idx), text_mask.gather(1, t_idx)


@torch.no_grad()
def scores(image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor,
           chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_similarity`` for many images, for evaluation (no gradient), ``chunk`` images at
    a time (memory ``chunk x M x P x L`` instead of ``N x M x P x L``): ``(s_i, s_t)``, both
    ``[N, M]``. The same values as ``token_similarity``; its maxima are ``amax``, which skips
    the indices a backward pass would need (about a third of the time at retrieval sizes)."""
    _validate.positive_int("chunk", chunk)
    _check_tokens(image_tokens, text_tokens, text_mask)
    (M, L, d), P = text_tokens.shape, image_tokens.shape[1]
    x, words = F.normalize(image_tokens, dim=-1), _unit_words(text_tokens, text_mask).reshape(M * L, d).T
    n_words = text_mask.sum(1).to(words.dtype)
    s_i, s_t = [], []
    for lo in range(0, len(x), chunk):
        sim = (x[lo:lo + chunk].reshape(-1, d) @ words).view(-1, P, M, L)   # [chunk, P, M, L]
        s_i.append(sim.amax(3).mean(1))                                      # best word per patch
        s_t.append((sim.amax(1) * text_mask[None]).sum(2) / n_words[None])   # best patch per word
    return torch.cat(s_i), torch.cat(s_t)


def paired_scores(image_tokens: torch.Tensor, text_tokens: torch.Tensor,
                  text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The diagonal of ``token_similarity``, image i with caption i only, without the rest:
    ``(s_i, s_t)``, both ``[N]``, for ``[N, P, d]``, ``[N, L, d]`` and ``[N, L]``. The score a
    binding test compares between a true and a swapped caption."""
    _check_tokens(image_tokens, text_tokens, text_mask)
    _validate.same_rows("image_tokens", image_tokens, "text_tokens", text_tokens)
    x, y = F.normalize(image_tokens, dim=-1), F.normalize(text_tokens, dim=-1)
    sim = x @ y.transpose(1, 2)                                             # [N, P, L]
    s_i = sim.masked_fill(~text_mask[:, None], float("-inf")).max(2).values.mean(1)
    s_t = (sim.max(1).values * text_mask).sum(1) / text_mask.sum(1).to(sim.dtype)
    return s_i, s_t


def filip_objective(keep: float = 1.0, label_smoothing: float = 0.1) -> Objective:
    """FILIP's loss as ``pretrained.finetune``'s objective: it reads the batch's token outputs
    ``image_tokens`` ``[B, P, d]``, ``text_tokens`` ``[B, L, d]`` and ``text_mask`` ``[B, L]``
    and returns ``filip_loss`` smoothed by ``label_smoothing``, after ``select_tokens(..., keep)``
    when ``keep < 1``."""
    if not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"keep: got {keep!r}, expected a fraction in (0, 1]")
    _check_smoothing(label_smoothing)

    def filip(b: Batch) -> torch.Tensor:
        tokens = (b.image_tokens, b.text_tokens, b.text_mask)
        if keep < 1:
            tokens = select_tokens(*tokens, keep)
        return filip_loss(*tokens, b.logit_scale, label_smoothing)
    return Objective(filip, tokens=True)


def clip_objective(label_smoothing: float = 0.1) -> Objective:
    """The baseline for ``filip_objective``: CLIP's symmetric loss on the pooled embeddings,
    ``(CE(s * C, I) + CE(s * C^T, I)) / 2`` with ``C`` their cosines, smoothed by
    ``label_smoothing`` as ``filip_loss`` is (so that only the similarity differs);
    ``label_smoothing=0`` is ``losses.clip_loss``, lesson 01's loss."""
    _check_smoothing(label_smoothing)

    def clip(b: Batch) -> torch.Tensor:
        logits = b.logit_scale.exp() * losses.similarity(b.image, b.text)
        return _symmetric_ce(logits, logits.T, label_smoothing)
    return Objective(clip)


def encoding_scores(encoding: dict, token_wise: bool = True,
                    chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The retrieval scores ``(s_i, s_t)``, both ``[N, M]`` (image rows, caption columns), of an
    ``encode`` dict: FILIP's token-wise ``scores`` of its ``x``, ``y`` and ``mask``, or, with
    ``token_wise=False``, CLIP's cosine of the pooled ``image`` and ``text`` both ways."""
    if not isinstance(encoding, dict):
        raise ValueError(f"encoding: got {type(encoding).__name__}, expected the dict of encode()")
    if not token_wise:
        s = losses.similarity(encoding["image"], encoding["text"])
        return s, s
    return scores(encoding["x"], encoding["y"], encoding["mask"], chunk)


@torch.no_grad()
def patch_scores(image_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor,
                 chunk: int = 200) -> torch.Tensor:
    """Each patch's best real-word cosine with every caption, ``[N, P, M]``: ``s^I`` before its
    mean over patches (so a subset of the patches can vote alone), for ``[N, P, d]`` images,
    ``[M, L, d]`` captions and their ``[M, L]`` mask, ``chunk`` images at a time."""
    _check_tokens(image_tokens, text_tokens, text_mask)
    _validate.positive_int("chunk", chunk)
    if not bool(text_mask.any(1).all()):
        raise ValueError("text_mask: every caption needs at least one real token")
    x, y = F.normalize(image_tokens, dim=-1), _unit_words(text_tokens, text_mask)
    (N, P, d), (M, L, _) = x.shape, y.shape
    words = y.reshape(M * L, d).T
    return torch.cat([(x[lo:lo + chunk].reshape(-1, d) @ words).view(-1, P, M, L).amax(3)
                      for lo in range(0, N, chunk)])


def patch_group_scores(votes: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """``s^I`` restricted to a group of each image's patches: the mean of ``votes``
    ``[N, P, M]`` (``patch_scores``) over the patches where ``patches`` ``[N, P]`` bool is True,
    ``[N, M]`` (0 for an image with no such patch)."""
    _validate.tensor("votes", votes, 3, finite=False)
    _validate.tensor("patches", patches, 2, floating=False)
    if patches.shape != votes.shape[:2]:
        raise ValueError(f"patches: got shape {tuple(patches.shape)}, expected "
                         f"{tuple(votes.shape[:2])} (an image and a patch per row of votes)")
    w = patches.float()[..., None]
    return (votes * w).sum(1) / w.sum(1).clamp_min(1)


def _random_tokens(n: int, patches: int, tokens: int, dim: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, patches, dim, generator=g, requires_grad=True)
    y = torch.randn(n, tokens, dim, generator=g, requires_grad=True)
    return x, y, torch.ones(n, tokens, dtype=torch.bool), torch.tensor(3.0)


def loss_cost(form: str, n: int, patches: int, tokens: int, dim: int, keep: float = 1.0) -> dict:
    """What one contrastive loss costs on ``n`` random images of ``patches`` tokens and ``n``
    captions of ``tokens`` tokens, width ``dim`` (seed 0): ``form`` "CLIP" (the first patch
    against the last word, ``losses.clip_loss``) or "FILIP" (``filip_loss``, after
    ``select_tokens(..., keep)`` when ``keep < 1``). Returns the time of one forward and
    backward pass (``costs.step_time``, in ms) and the largest block its similarity allocates
    (``costs.largest_allocation``, in KiB: FILIP's ``[N, M, P, L]``, CLIP's ``[N, d]`` or
    ``[N, M]``)."""
    _validate.one_of("form", form, ("CLIP", "FILIP"))
    for name, v in (("n", n), ("patches", patches), ("tokens", tokens), ("dim", dim)):
        _validate.positive_int(name, v)
    x, y, mask, scale = _random_tokens(n, patches, tokens, dim)
    if form == "CLIP":
        step = lambda: losses.clip_loss(x[:, 0], y[:, -1], scale).backward()         # noqa: E731
        sim = lambda: losses.similarity(x[:, 0].detach(), y[:, -1].detach())         # noqa: E731
    else:
        def chosen():
            return select_tokens(x, y, mask, keep) if keep < 1 else (x, y, mask)
        step = lambda: filip_loss(*chosen(), scale).backward()           # noqa: E731
        sim = lambda: token_similarity(*[t.detach() for t in chosen()])  # noqa: E731
    return {"time (ms)": 1000 * costs.step_time(step),
            "largest block (KiB)": costs.largest_allocation(sim) / 1024}
