"""Prompt learning on a frozen dual encoder: CoOp's context vectors (Zhou et al. 2022,
"Learning to Prompt for Vision-Language Models"), the hand-made baselines it is compared
with, and the base-to-novel summary. RESTORE's pieces are in ``tutorlib.methods.restore``.

    learner = PromptLearner(model.text_tower, tok, ["red circle", ...], n_ctx=4)
    class_emb = learner()                                   # [C, d]; only the context learns
    novel_emb = learner.for_classes(["green star", ...])()  # the same context, other classes
    logits = class_logits(image_emb, class_emb, model.logit_scale)

The towers stay frozen: only the context receives gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import _validate
from ..models.interface import PromptableText, require

CLASS_POSITIONS = ("end", "middle", "front")   # where the class name sits among the context


class PromptLearner(nn.Module):
    """CoOp's prompt: ``n_ctx`` learnable context vectors shared by every class, placed
    around each class name's word embeddings (the paper's Eq. 2, unified context):

        end:    <bos> [V]_1 ... [V]_M  CLASS  <eos>
        middle: <bos> [V]_1 ... [V]_M/2  CLASS  [V]_M/2+1 ... [V]_M  <eos>
        front:  <bos> CLASS  [V]_1 ... [V]_M  <eos>

    ``init="a photo of a"`` starts the context from those words' embeddings (then
    ``n_ctx`` is their number); ``init=None`` from N(0, 0.02^2), as in the official code.
    ``forward()`` returns the class embeddings ``[C, embed_dim]`` from the frozen tower.
    """

    def __init__(self, text_tower: nn.Module, tokenizer, classnames, n_ctx: int = 4,
                 init: str | None = None, position: str = "end"):
        super().__init__()
        if not isinstance(classnames, (list, tuple)) or not classnames or \
                not all(isinstance(c, str) and c.strip() for c in classnames):
            raise ValueError(f"classnames: got {classnames!r}, "
                             "expected a non-empty list of class names")
        _validate.one_of("position", position, CLASS_POSITIONS)
        require("text_tower", text_tower, PromptableText)
        width = text_tower.token_embedding.weight.shape[1]
        embed = text_tower.token_embedding.weight.detach()
        if init is not None:
            ids = tokenizer.encode(init)
            if not ids:
                raise ValueError(f"init: got {init!r}, expected at least one word")
            ctx = embed[ids].clone()
        else:
            _validate.positive_int("n_ctx", n_ctx)
            ctx = 0.02 * torch.randn(n_ctx, width)
        self.ctx = nn.Parameter(ctx)                                       # [M, width]
        self.position, self.classnames = position, list(classnames)
        self.text_tower, self.tokenizer = text_tower, tokenizer            # frozen, not owned
        for p in text_tower.parameters():
            p.requires_grad_(False)
        names = [torch.tensor(tokenizer.encode(c)) for c in self.classnames]
        unknown = [c for c, n in zip(self.classnames, names) if bool((n == tokenizer.unk_id).all())]
        if unknown:
            raise ValueError(f"classnames: got {unknown!r} with no word the tokenizer knows, "
                             "expected names in the model's vocabulary")
        length = 2 + len(ctx) + max(len(n) for n in names)
        if length > text_tower.context_length:
            raise ValueError(f"n_ctx: {len(ctx)} context vectors and the longest class name need "
                             f"{length} tokens, more than the tower's {text_tower.context_length}")
        # fixed pieces, as buffers: the frozen embeddings of <bos>, each name, <eos>
        self.register_buffer("bos", embed[tokenizer.bos_id].clone(), persistent=False)
        self.register_buffer("eos", embed[tokenizer.eos_id].clone(), persistent=False)
        self.register_buffer("name_emb", torch.zeros(len(names), max(len(n) for n in names), width),
                             persistent=False)
        self.register_buffer("name_len", torch.tensor([len(n) for n in names]), persistent=False)
        for i, n in enumerate(names):
            self.name_emb[i, :len(n)] = embed[n]

    @property
    def n_ctx(self) -> int:
        return self.ctx.shape[0]

    def for_classes(self, classnames) -> "PromptLearner":
        """The same context around other class names (base-to-novel evaluation): a new
        learner that *shares* this one's ``ctx`` parameter, so it sees every update."""
        with torch.random.fork_rng(devices=[]):           # its throwaway init draws nothing
            other = PromptLearner(self.text_tower, self.tokenizer, classnames,
                                  n_ctx=self.n_ctx, position=self.position)
        other.to(self.ctx.device)
        other.ctx = self.ctx
        return other

    def _layout(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fixed words of every prompt ``[C, L, width]`` (zeros where a context vector
        goes), a one-hot map ``[C, L, M]`` of where context vector m goes, and the mask
        ``[C, L]``: built once, since they depend only on the names and the position."""
        if getattr(self, "_cached_layout", None) is None:
            C, M, W, half = len(self.classnames), self.n_ctx, self.ctx.shape[1], self.n_ctx // 2
            before, after = {"end": (range(M), []), "front": ([], range(M)),
                             "middle": (range(half), range(half, M))}[self.position]
            rows = [[self.bos, *before, *self.name_emb[i, :int(self.name_len[i])], *after, self.eos]
                    for i in range(C)]  # an int is a context slot, a tensor a fixed word
            L = max(len(r) for r in rows)
            fixed = torch.zeros(C, L, W, device=self.name_emb.device)
            where = torch.zeros(C, L, M, device=self.name_emb.device)
            mask = torch.zeros(C, L, dtype=torch.bool, device=self.name_emb.device)
            for i, row in enumerate(rows):
                mask[i, :len(row)] = True
                for j, v in enumerate(row):
                    if isinstance(v, int):
                        where[i, j, v] = 1.0
                    else:
                        fixed[i, j] = v
            self._cached_layout = (fixed, where, mask)
        return self._cached_layout

    def _apply(self, fn, *args, **kwargs):                    # .to(device) rebuilds the layout
        self._cached_layout = self._cached_tails = None
        return super()._apply(fn, *args, **kwargs)

    def prompt_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings ``[C, L, width]`` and mask ``[C, L]`` of every class's prompt:
        the fixed words plus each context vector at its places (one matmul, so a training
        step builds all prompts at once)."""
        fixed, where, mask = self._layout()
        return fixed + where @ self.ctx, mask

    def _tails(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each class's words after the context, ``CLASS <eos>``, padded ``[C, T, width]``, and
        their mask ``[C, T]`` (class token at the end only)."""
        if getattr(self, "_cached_tails", None) is None:
            C, T = len(self.classnames), self.name_emb.shape[1] + 1
            tails = torch.cat([self.name_emb, torch.zeros_like(self.name_emb[:, :1])], 1)
            tails[torch.arange(C), self.name_len] = self.eos
            mask = torch.arange(T, device=tails.device)[None] <= self.name_len[:, None]
            self._cached_tails = (tails, mask)
        return self._cached_tails

    def forward(self) -> torch.Tensor:
        tower = self.text_tower
        if self.position == "end" and getattr(tower, "shares_prefixes", False):
            # <bos> and the context are the same in every prompt and, the attention being causal,
            # never see the class name: run them once, then each class's name and <eos>
            keys = tower.prefix_keys(torch.cat([self.bos[None], self.ctx]))
            return tower.from_prefix(keys, *self._tails())
        embeds, mask = self.prompt_embeddings()
        return tower(embeds=embeds, mask=mask)


def word_embeddings(text_tower: nn.Module, tokenizer, text: str) -> torch.Tensor:
    """The frozen word embeddings ``[n_words, width]`` of ``text``'s words, in order: what a
    context initialised from ``text`` (``PromptLearner(init=text)``) starts as."""
    require("text_tower", text_tower, PromptableText)
    ids = tokenizer.encode(text) if isinstance(text, str) else []
    if not ids:
        raise ValueError(f"text: got {text!r}, expected a string of at least one word")
    table = text_tower.token_embedding.weight
    return table[torch.tensor(ids, device=table.device)].detach()


def n_blocks(tower: nn.Module) -> int:
    """The number of transformer blocks of a text or image tower (``PromptableText`` or
    ``PromptableImage``): where a prompt can enter is a block index in ``0 .. n - 1``."""
    blocks = getattr(getattr(tower, "encoder", None), "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"tower: got a {type(tower).__name__} without encoder.blocks, expected a "
                         "tower that provides models.interface.PromptableText or PromptableImage")
    return len(blocks)


def class_logits(image_emb: torch.Tensor, class_emb: torch.Tensor, logit_scale) -> torch.Tensor:
    """``exp(logit_scale) * cos(image_i, class_c)`` ``[N, C]``: CoOp's classifier, at the
    frozen model's scale."""
    _validate.tensor("image_emb", image_emb, 2, finite=False)
    _validate.tensor("class_emb", class_emb, 2, finite=False)
    _validate.same_width("image_emb", image_emb, "class_emb", class_emb)
    scale = torch.as_tensor(logit_scale).exp()
    return scale * F.normalize(image_emb, dim=-1) @ F.normalize(class_emb, dim=-1).T


def ensemble_class_embeddings(encode_text, templates, classnames) -> torch.Tensor:
    """Hand-made prompt ensemble (CLIP, Radford et al. 2021): for each class, the mean of
    its normalised embeddings under every template ("a {} ...") -> ``[C, d]``."""
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ValueError(f"templates: got {templates!r}, "
                         "expected strings with a '{}' for the class name")
    if not classnames:
        raise ValueError("classnames: got an empty list, expected class names")
    embs = torch.stack([F.normalize(encode_text([t.format(c) for c in classnames]), dim=-1)
                        for t in templates])                                  # [T, C, d]
    return F.normalize(embs.mean(0), dim=-1)


def harmonic_mean(base: float, novel: float) -> float:
    """H = 2 B N / (B + N), the base-to-novel protocol's summary (0 if both are 0)."""
    for name, v in (("base", base), ("novel", novel)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name}: got {v!r}, expected an accuracy in [0, 1]")
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)
