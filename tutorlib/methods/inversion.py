"""Modality inversion (Mistretta et al. 2025, "Cross the Gap: Exposing the Intra-modal
Misalignment in CLIP via Modality Inversion"): map one modality into the other by
optimising an *input* of the frozen other tower, never its weights.

    tokens, losses = oti(model.text_tower, tok, image_emb)          # image -> text feature
    text_like = encode_with_pseudo_tokens(model.text_tower, tok, tokens)
    patches, losses = ovi(model.image_tower, text_emb)              # text -> image feature
    image_like = encode_pseudo_patches(model.image_tower, patches)

OTI (optimisation-based textual inversion) learns pseudo-tokens ``w`` placed in a
template ("a photo of {}") so that the text tower's output ``t(w)`` matches an image
embedding ``v``; OVI (visual inversion) learns one pseudo patch embedding, repeated over
every patch position (the official code stretches it by nearest-neighbour interpolation),
so that the image tower's output matches a text embedding. Both minimise ``1 - cos`` with
AdamW (lr 2e-2, weight decay 0.01) on batches of queries at once; the paper runs OTI for
150 steps and OVI for 1,000.

``oti(..., vocab_weight=beta)`` adds a leash that is this course's, not the paper's: a
penalty ``beta * mean_k ||w - e_v||^2`` over the k word embeddings ``e_v`` nearest each
pseudo-token (``vocabulary_distance``), which keeps the token near real words.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import world
from ..core import _validate
from ..evaluation import metrics
from ..models.interface import PromptableImage, PromptableText, require
from ..training import train


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """No gradients into ``module``'s weights for the duration; flags restored after."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def _template_ids(tokenizer, template: str) -> tuple[list[int], list[int]]:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"template: got {template!r}, expected a string with one '{{}}' "
                         "for the pseudo-token(s)")
    before, after = template.split("{}")
    return tokenizer.encode(before), tokenizer.encode(after)


def encode_with_pseudo_tokens(text_tower: nn.Module, tokenizer, tokens: torch.Tensor,
                              template: str = "a photo of {}") -> torch.Tensor:
    """The text tower on ``<bos> template-with-tokens <eos>``: pseudo-tokens ``[N, K, width]``
    (K word embeddings per query, in the slot ``{}``) -> text features ``[N, d]``."""
    require("text_tower", text_tower, PromptableText)
    _validate.tensor("tokens", tokens, 3, finite=False)
    if tokens.shape[2] != text_tower.width:
        raise ValueError(f"tokens: got width {tokens.shape[2]}, expected the text tower's "
                         f"word-embedding width {text_tower.width}")
    pre, post = _template_ids(tokenizer, template)
    length = 2 + len(pre) + tokens.shape[1] + len(post)
    if length > text_tower.context_length:
        raise ValueError(f"tokens: {tokens.shape[1]} pseudo-tokens in {template!r} need {length} "
                         f"positions, more than the tower's {text_tower.context_length}")
    table = text_tower.token_embedding.weight
    fixed = lambda ids: table[torch.tensor(ids, dtype=torch.long,
                                           device=table.device)][None].expand(len(tokens), -1, -1)
    x = torch.cat([fixed([tokenizer.bos_id] + pre), tokens.to(table.dtype),
                   fixed(post + [tokenizer.eos_id])], 1)
    return text_tower(embeds=x)


class _PrefixOnce:
    """``encode_with_pseudo_tokens`` for the course's causal text tower, with the positions
    before the slot (``<bos> a photo of``) run once (``TextTower.prefix_keys``): causal
    attention keeps them blind to the pseudo-token, so their states are the same for every
    query. Each step runs the slot and the tail only (2 of 6 positions), the same function."""

    def __init__(self, text_tower, tokenizer, template: str):
        pre, post = _template_ids(tokenizer, template)
        table = text_tower.token_embedding.weight
        ids = lambda t: torch.tensor(t, dtype=torch.long, device=table.device)
        self.tower, self.post = text_tower, table[ids(post + [tokenizer.eos_id])]
        with torch.no_grad():
            self.keys = text_tower.prefix_keys(table[ids([tokenizer.bos_id] + pre)])

    @staticmethod
    def applies(text_tower) -> bool:
        return getattr(text_tower, "shares_prefixes", False)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        tail = torch.cat([tokens, self.post.expand(len(tokens), -1, -1)], 1)
        return self.tower.from_prefix(self.keys, tail)


def encode_pseudo_patches(image_tower: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """The image tower on pseudo patch embeddings ``[N, K, width]`` stretched over the P patch
    positions in blocks (as nearest-neighbour interpolation does in the official code: K = 1
    is one patch repeated everywhere; K = 2 gives a...a b...b), with the class token and
    position embeddings added as usual -> image features ``[N, d]``."""
    require("image_tower", image_tower, PromptableImage)
    _validate.tensor("patches", patches, 3, finite=False)
    P, K = image_tower.n_patches, patches.shape[1]
    if patches.shape[2] != image_tower.width or not 1 <= K <= P:
        raise ValueError(f"patches: got shape {tuple(patches.shape)}, expected [N, K, "
                         f"{image_tower.width}] with 1 <= K <= {P} (the patch positions)")
    block = torch.arange(P, device=patches.device) * K // P                # position -> token
    return image_tower(patches=patches[:, block])


def _word_ids(tokenizer) -> list[int]:
    """The ids of the vocabulary's real words (special tokens such as ``<bos>`` left out)."""
    return [i for i, w in enumerate(tokenizer.vocab) if not w.startswith("<")]


def _word_table(text_tower: nn.Module, tokenizer) -> torch.Tensor:
    """The embeddings ``[V, width]`` of the vocabulary's real words (special tokens left out)."""
    table = text_tower.token_embedding.weight
    return table[torch.tensor(_word_ids(tokenizer), dtype=torch.long, device=table.device)]


def vocabulary_distance(text_tower: nn.Module, tokenizer, tokens: torch.Tensor,
                        k: int = 1) -> torch.Tensor:
    """How far each pseudo-token is from the vocabulary: for tokens ``[N, K, width]``, the
    squared Euclidean distance to its ``k`` nearest word embeddings, averaged over those k,

        d(w) = (1/k) * sum over the k nearest words v of ||w - e_v||^2      -> [N, K]

    (special tokens left out). Differentiable in ``tokens``: ``oti(vocab_weight=beta)``
    adds ``beta * d(w)`` (its mean) to the loss."""
    require("text_tower", text_tower, PromptableText)
    _validate.tensor("tokens", tokens, 3, finite=False)
    _validate.positive_int("k", k)
    table = _word_table(text_tower, tokenizer).detach()
    if tokens.shape[2] != table.shape[1]:
        raise ValueError(f"tokens: got width {tokens.shape[2]}, expected the text tower's "
                         f"word-embedding width {table.shape[1]}")
    if k > len(table):
        raise ValueError(f"k: got {k}, expected at most the {len(table)} vocabulary words")
    w = tokens.to(table.dtype)
    d2 = (w.pow(2).sum(-1, keepdim=True) - 2 * w @ table.T + table.pow(2).sum(-1))   # [N, K, V]
    return d2.clamp_min(0).topk(k, dim=-1, largest=False).values.mean(-1)


def _invert(encode, target: torch.Tensor, n_tokens: int, width: int, steps: int, lr: float,
            weight_decay: float, batch_size: int, progress: bool, desc: str, penalty=None):
    """Optimise one ``[n_tokens, width]`` input per target row so that ``encode(inputs)``
    points where the target does (loss ``1 - cos``, plus ``penalty(inputs)`` ``[n, K]``
    averaged, when given); batches of queries at once."""
    _validate.positive_int("n_tokens", n_tokens)
    _validate.positive_int("steps", steps)
    _validate.positive_number("lr", lr)
    _validate.positive_int("batch_size", batch_size)
    _validate.non_negative_number("weight_decay", weight_decay)
    target = F.normalize(target.detach(), dim=-1)
    out, losses = [], torch.zeros(steps)
    bar = tqdm(total=steps * -(-len(target) // batch_size), desc=desc, disable=not progress)
    for start in range(0, len(target), batch_size):
        goal = target[start:start + batch_size]
        w = nn.Parameter(0.02 * torch.randn(len(goal), n_tokens, width, device=goal.device))
        opt = torch.optim.AdamW([w], lr=lr, weight_decay=weight_decay)

        def loss_fn(_, w=w, goal=goal):
            loss = (1 - F.cosine_similarity(encode(w), goal, dim=-1)).mean()
            return loss if penalty is None else loss + penalty(w).mean()
        for step in range(steps):                   # constant lr: train.fit's schedule is not OTI's
            _, value = train.step(opt, loss_fn, None, index=step)
            losses[step] += value * len(goal) / len(target)
            bar.update()
        out.append(w.detach())
    bar.close()
    return torch.cat(out), losses


def oti(text_tower: nn.Module, tokenizer, image_emb: torch.Tensor, template: str = "a photo of {}",
        n_tokens: int = 1, steps: int = 150, lr: float = 2e-2, weight_decay: float = 0.01,
        batch_size: int = 256, progress: bool = True, vocab_weight: float = 0.0,
        vocab_k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimisation-based Text Inversion of image embeddings ``[N, d]``: pseudo-tokens
    ``w`` ``[N, n_tokens, width]`` from N(0, 0.02^2) minimising ``1 - cos(t(w), v)`` through
    the frozen text tower. Returns the tokens and the mean loss at each step ``[steps]``.

    ``vocab_weight=beta > 0`` (not in the paper) minimises instead

        1 - cos(t(w), v) + beta * (1/k) * sum over the k nearest words of ||w - e_v||^2

    (``vocabulary_distance`` with ``k = vocab_k``, averaged over the tokens): a leash that
    keeps each pseudo-token near real word embeddings. The returned losses then include it."""
    require("text_tower", text_tower, PromptableText)
    _validate.tensor("image_emb", image_emb, 2)
    _template_ids(tokenizer, template)
    beta = _validate.non_negative_number("vocab_weight", vocab_weight)
    _validate.positive_int("vocab_k", vocab_k)
    n_words = len(_word_table(text_tower, tokenizer))
    if vocab_k > n_words:
        raise ValueError(f"vocab_k: got {vocab_k}, expected at most the {n_words} vocabulary words")
    penalty = None if beta == 0 else (
        lambda w: beta * vocabulary_distance(text_tower, tokenizer, w, vocab_k))
    with _frozen(text_tower):
        encode = (_PrefixOnce(text_tower, tokenizer, template) if _PrefixOnce.applies(text_tower)
                  else lambda w: encode_with_pseudo_tokens(text_tower, tokenizer, w, template))
        return _invert(encode,
                       image_emb, n_tokens, text_tower.width, steps, lr, weight_decay,
                       batch_size, progress, "OTI", penalty)


def ovi(image_tower: nn.Module, text_emb: torch.Tensor, n_tokens: int = 1, steps: int = 150,
        lr: float = 2e-2, weight_decay: float = 0.01, batch_size: int = 256,
        progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimisation-based Visual Inversion of text embeddings ``[N, d]``: pseudo patch
    embeddings ``[N, n_tokens, width]`` from N(0, 0.02^2), stretched over the patch positions,
    minimising ``1 - cos(f_I(u), t)`` through the frozen image tower. Returns the patches
    and the mean loss at each step ``[steps]``."""
    require("image_tower", image_tower, PromptableImage)
    _validate.tensor("text_emb", text_emb, 2)
    _validate.positive_int("n_tokens", n_tokens)
    if n_tokens > image_tower.n_patches:
        raise ValueError(f"n_tokens: got {n_tokens}, expected at most the {image_tower.n_patches} "
                         "patch positions")
    with _frozen(image_tower):
        return _invert(lambda u: encode_pseudo_patches(image_tower, u), text_emb, n_tokens,
                       image_tower.width, steps, lr, weight_decay, batch_size, progress, "OVI")


def nearest_words(text_tower: nn.Module, tokenizer, tokens: torch.Tensor, k: int = 3,
                  cosines: bool = False):
    """The ``k`` vocabulary words whose embeddings have the highest cosine with each
    pseudo-token ``[N, width]`` (special tokens left out): what did the query become?
    A list of N lists of k words; with ``cosines=True`` also their cosines ``[N, k]``
    (largest first: column 0 is each token's cosine to its nearest word)."""
    _validate.tensor("tokens", tokens, 2)
    _validate.positive_int("k", k)
    table = text_tower.token_embedding.weight.detach()
    if tokens.shape[1] != table.shape[1]:
        raise ValueError(f"tokens: got width {tokens.shape[1]}, expected {table.shape[1]}")
    words = _word_ids(tokenizer)
    sim = F.normalize(tokens.to(table), dim=-1) @ F.normalize(table[words], dim=-1).T
    top = sim.topk(min(k, len(words)), dim=1)
    names = [[tokenizer.vocab[words[j]] for j in row] for row in top.indices.tolist()]
    return (names, top.values) if cosines else names


def text_side_queries(model: nn.Module, tokenizer, images: torch.Tensor, captions,
                      steps: int = 150, vocab_weight: float = 0.0,
                      n_tokens: int = 1) -> tuple[dict, dict]:
    """Lesson 04's test of crossing the gap, for a frozen CLIP ``model`` on M pictures
    ``[M, 3, H, W]`` (uint8 or floats in [0, 1]) and their M captions: the image features
    ``v`` ``[M, d]``, the captions' ``t`` ``[M, d]``, and OTI's text-side query ``q`` ``[M, d]``
    for each image (``oti`` with ``n_tokens`` pseudo-words, ``steps`` and ``vocab_weight``,
    drawing its start from the global random state: seed it first for a repeatable run).

    Returns the rows of a retrieval table, query and gallery ``{"image → image": (v, v),
    "caption → image (oracle)": (t, v), "OTI(image) → image": (q, v)}``, and the numbers
    that explain them: OTI's and the captions' mean cosine to their images, the pseudo-words'
    mean distance to the vocabulary (``vocabulary_distance``) and the modality gap."""
    _validate.tensor("images", images, 4, floating=False)
    if not isinstance(captions, (list, tuple)) or len(captions) != len(images):
        got = f"a {type(captions).__name__}" + (f" of {len(captions)}" if isinstance(
            captions, (list, tuple)) else "")
        raise ValueError(f"captions: got {got}, expected a list of one caption per picture "
                         f"({len(images)})")
    device = next(model.parameters()).device
    with torch.no_grad():
        v = model.encode_image(world.images_float(images).to(device))
        t = model.encode_text(tokenizer(list(captions)).to(device))
    w, _ = oti(model.text_tower, tokenizer, v, n_tokens=n_tokens, steps=steps,
               vocab_weight=vocab_weight, progress=False)
    q = encode_with_pseudo_tokens(model.text_tower, tokenizer, w).detach()
    rows = {"image → image": (v, v), "caption → image (oracle)": (t, v),
            "OTI(image) → image": (q, v)}
    return rows, {"OTI cosine to its image": F.cosine_similarity(q, v).mean().item(),
                  "caption cosine": F.cosine_similarity(t, v).mean().item(),
                  "distance to the vocabulary":
                      vocabulary_distance(model.text_tower, tokenizer, w).mean().item(),
                  "modality gap": metrics.modality_gap(v, t)}
