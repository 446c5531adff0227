"""A Hugging Face ``transformers.CLIPModel`` behind the course's tower protocol.

    clip = hf_clip.from_pretrained("openai/clip-vit-base-patch32")    # online, on request only
    learner = prompts.PromptLearner(clip.text_tower, clip.tokenizer, ["cat", "dog"])

``HFTextTower`` / ``HFImageTower`` share the model's modules (no copy), provide
``models.interface.PromptableText`` / ``PromptableImage`` and equal ``get_text_features`` /
``get_image_features``. Images come as the course's: floats in ``[0, 1]`` ``[N, 3, H, W]``.
``transformers`` is imported only inside the functions that need it.
"""
from __future__ import annotations

import inspect
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..core import _validate
from ..core.ops import check_mask, last_real
from .clip import MiniCLIP

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _check_clip(name: str, model):
    from transformers import CLIPModel
    if not isinstance(model, CLIPModel):
        raise ValueError(f"{name}: got {type(model).__name__}, expected a transformers.CLIPModel")
    impl = {getattr(c, "_attn_implementation", None) for c in (model.config.text_config,
                                                              model.config.vision_config)}
    if not impl <= {None, "eager", "sdpa"}:
        raise ValueError(f"{name}: got attention {impl}, expected 'eager' or 'sdpa' (the "
                         "adapter passes an additive float mask)")


class _Encoder(nn.Module):
    """HF encoder layers as the course's ``Encoder``: ``.blocks``, ``.ln``, and
    ``encoder(x [N, L, width], pad_mask [N, L] True = padding, start, stop)`` runs blocks
    ``start:stop``, the final LayerNorm only when running to the end."""

    def __init__(self, layers: nn.ModuleList, ln: nn.LayerNorm, causal: bool):
        super().__init__()
        self.blocks, self.ln, self.causal = layers, ln, causal
        params = inspect.signature(layers[0].forward).parameters if len(layers) else {}
        self._legacy = "causal_attention_mask" in params      # transformers 4: a third argument

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None, start: int = 0,
                stop: int | None = None) -> torch.Tensor:
        depth, (N, L) = len(self.blocks), x.shape[:2]
        if not isinstance(start, int) or not 0 <= start <= depth:
            raise ValueError(f"start: got {start!r}, expected an integer from 0 to {depth}")
        if stop is not None and (not isinstance(stop, int) or not start <= stop <= depth):
            raise ValueError(f"stop: got {stop!r}, expected None or an integer {start}..{depth}")
        mask = None
        if self.causal or pad_mask is not None:     # additive [N, 1, L, L]: min = may not attend
            blocked = torch.ones(1, 1, L, L, dtype=torch.bool, device=x.device).triu(
                1 if self.causal else L)
            if pad_mask is not None:
                blocked = blocked | pad_mask[:, None, None, :].to(x.device)
            mask = torch.zeros(blocked.shape, dtype=x.dtype, device=x.device).masked_fill(
                blocked, torch.finfo(x.dtype).min).expand(N, 1, L, L)
        for block in self.blocks[start:stop]:
            x = block(x, mask, None)[0] if self._legacy else block(x, mask)
        return self.ln(x) if stop is None else x


class HFTextTower(nn.Module):
    """A ``CLIPModel``'s text side as a ``PromptableText``: token embeddings + positions ->
    causal encoder (+ padding mask) -> ``final_layer_norm`` -> the last real token (where
    ``<eos>`` sits) -> ``text_projection``. ``pad_id`` / ``eos_id``: the tokenizer's (default:
    the config's); when they are equal (OpenAI's pads with ``<eos>``) a row's real tokens run
    to its first ``<eos>``."""

    def __init__(self, model, pad_id: int | None = None, eos_id: int | None = None):
        super().__init__()
        _check_clip("model", model)
        cfg, tm = model.config.text_config, model.text_model
        self.pad_id = cfg.pad_token_id if pad_id is None else pad_id
        self.eos_id = cfg.eos_token_id if eos_id is None else eos_id
        for name, v in (("pad_id", self.pad_id), ("eos_id", self.eos_id)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < cfg.vocab_size:
                raise ValueError(f"{name}: got {v!r}, expected an id below {cfg.vocab_size}")
        self.width, self.context_length = cfg.hidden_size, cfg.max_position_embeddings
        self.token_embedding = tm.embeddings.token_embedding
        self.position_embedding = tm.embeddings.position_embedding
        self.encoder = _Encoder(tm.encoder.layers, tm.final_layer_norm, causal=True)
        self.proj = model.text_projection

    @property
    def positional_embedding(self) -> torch.Tensor:
        """``[context_length, width]``, as ``TextTower`` has it (``restore`` reads it)."""
        return self.position_embedding.weight

    def real_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[N, L]`` -> ``[N, L]`` True for real tokens (a tokenizer's attention mask)."""
        if self.pad_id != self.eos_id:
            return ids != self.pad_id
        eos = (ids == self.eos_id).long()
        return eos.cumsum(1) - eos == 0

    def _ids(self, ids) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked ids and their mask, the columns that are padding in every row dropped."""
        _validate.tensor("ids", ids, 2, floating=False)
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise ValueError(f"ids: got dtype {ids.dtype}, expected integer token ids")
        mask = self.real_tokens(ids)
        if not bool(mask.any(1).all()):
            raise ValueError("ids: got a row with no real token, expected at least one per row")
        keep = int(mask.any(0).nonzero().max()) + 1
        if keep > self.context_length:
            raise ValueError(f"ids: got {keep} tokens, expected at most {self.context_length}")
        return ids[:, :keep], mask[:, :keep]

    def forward(self, ids: torch.Tensor | None = None, *, embeds: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, return_tokens: bool = False):
        """ids ``[N, L]`` or embeds ``[N, L, width]`` (before positions; ``mask`` ``[N, L]``
        True = real, None: all) -> ``[N, embed_dim]`` (and the tokens ``[N, L', width]``)."""
        if (ids is None) == (embeds is None):
            raise ValueError("ids, embeds: pass exactly one of them")
        if ids is not None:
            if mask is not None:
                raise ValueError("mask: got a mask with ids, expected it with embeds only")
            ids, mask = self._ids(ids)
            embeds = self.token_embedding(ids)
        else:
            _validate.tensor("embeds", embeds, 3, finite=False)
            if embeds.shape[1] > self.context_length or embeds.shape[2] != self.width:
                raise ValueError(f"embeds: got shape {tuple(embeds.shape)}, expected "
                                 f"[N, <= {self.context_length}, {self.width}]")
            if mask is None:
                mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
            check_mask(mask, embeds.shape[:2])
        x = embeds + self.positional_embedding[:embeds.shape[1]]
        return self.from_hidden(x, mask, 0, return_tokens)

    def hidden(self, ids: torch.Tensor, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states before block ``stop`` ``[N, L, width]`` and the mask ``[N, L]``."""
        ids, mask = self._ids(ids)
        x = self.token_embedding(ids) + self.positional_embedding[:ids.shape[1]]
        return self.encoder(x, ~mask, stop=stop), mask

    def from_hidden(self, x: torch.Tensor, mask: torch.Tensor, start: int,
                    return_tokens: bool = False):
        """States before block ``start`` ``[N, L, width]`` -> ``[N, embed_dim]``, pooled at
        each row's last real token (and the normed tokens ``[N, L, width]``)."""
        x = self.encoder(x, ~mask, start=start)
        last = last_real(mask)
        out = self.proj(x[torch.arange(len(x), device=x.device), last])
        return (out, x) if return_tokens else out


class HFImageTower(nn.Module):
    """A ``CLIPModel``'s vision side as a ``PromptableImage``: images in ``[0, 1]``, resized
    and normalised -> patch conv -> [CLS] + patches + positions -> ``pre_layrnorm`` ->
    encoder -> ``post_layernorm`` -> CLS -> ``visual_projection``. ``hidden(images, 0)``
    is after ``pre_layrnorm``; ``patches`` are before the class token and positions."""

    def __init__(self, model, mean=OPENAI_MEAN, std=OPENAI_STD):
        super().__init__()
        _check_clip("model", model)
        cfg, vm = model.config.vision_config, model.vision_model
        for name, v in (("mean", mean), ("std", std)):
            if not isinstance(v, (list, tuple)) or len(v) != cfg.num_channels or \
                    (name == "std" and min(v) <= 0):
                raise ValueError(f"{name}: got {v!r}, expected {cfg.num_channels} numbers"
                                 + (" > 0" if name == "std" else ""))
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.width, self.image_size, self.channels = (cfg.hidden_size, cfg.image_size,
                                                      cfg.num_channels)
        self.embeddings, self.pre_layrnorm = vm.embeddings, vm.pre_layrnorm
        self.n_patches = self.embeddings.num_patches
        self.encoder = _Encoder(vm.encoder.layers, vm.post_layernorm, causal=False)
        self.proj = model.visual_projection

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in ``[0, 1]`` -> resized to ``image_size`` (bicubic), normalised
        (CLIP's ``pixel_values``) -> patch embeddings ``[N, n_patches, width]``."""
        _validate.tensor("images", images, 4, finite=False)
        if images.shape[1] != self.channels:
            raise ValueError(f"images: got shape {tuple(images.shape)}, expected "
                             f"[N, {self.channels}, H, W]")
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size),
                                   mode="bicubic", align_corners=False)
        x = ((images - self.mean.to(images)) / self.std.to(images))
        x = self.embeddings.patch_embedding(x.to(self.embeddings.patch_embedding.weight.dtype))
        return x.flatten(2).transpose(1, 2)

    def _embed(self, patches: torch.Tensor) -> torch.Tensor:
        cls = self.embeddings.class_embedding.expand(len(patches), 1, -1)
        pos = self.embeddings.position_embedding.weight
        return self.pre_layrnorm(torch.cat([cls, patches], 1) + pos)

    def forward(self, images: torch.Tensor | None = None, *,
                patches: torch.Tensor | None = None, return_tokens: bool = False):
        """images ``[N, 3, H, W]`` or patches ``[N, n_patches, width]`` -> ``[N, embed_dim]``
        (and the tokens ``[N, 1 + n_patches, width]``, class first)."""
        if (images is None) == (patches is None):
            raise ValueError("images, patches: pass exactly one of them")
        if patches is None:
            patches = self.patchify(images)
        else:
            _validate.tensor("patches", patches, 3, finite=False)
            if patches.shape[1:] != (self.n_patches, self.width):
                raise ValueError(f"patches: got shape {tuple(patches.shape)}, expected "
                                 f"[N, {self.n_patches}, {self.width}]")
        return self.from_hidden(self._embed(patches), 0, return_tokens)

    def hidden(self, images: torch.Tensor, stop: int) -> torch.Tensor:
        """Token states before block ``stop`` ``[N, 1 + n_patches, width]``."""
        return self.encoder(self._embed(self.patchify(images)), stop=stop)

    def from_hidden(self, x: torch.Tensor, start: int, return_tokens: bool = False):
        """States before block ``start`` -> ``[N, embed_dim]`` (and the normed tokens)."""
        x = self.encoder(x, start=start)
        out = self.proj(x[:, 0])
        return (out, x) if return_tokens else out


class HFTokenizer:
    """A transformers CLIP tokenizer with the course tokenizer's interface, for ``prompts``
    and ``inversion``: ``encode(text)`` (no specials), ``bos_id``, ``eos_id``, ``pad_id``,
    ``unk_id``, ``vocab`` (by id), ``tok(texts)`` -> ids ``[N, L]``."""

    def __init__(self, tokenizer, context_length: int | None = None):
        if not all(hasattr(tokenizer, a) for a in ("bos_token_id", "eos_token_id", "get_vocab")):
            raise ValueError(f"tokenizer: got {type(tokenizer).__name__}, expected a transformers "
                             "CLIP tokenizer")
        self.hf, self.bos_id, self.eos_id = tokenizer, tokenizer.bos_token_id, \
            tokenizer.eos_token_id
        self.pad_id = self.eos_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
        self.unk_id = self.eos_id if tokenizer.unk_token_id is None else tokenizer.unk_token_id
        self.context_length = _validate.positive_int(
            "context_length", context_length or min(tokenizer.model_max_length, 77))
        vocab = tokenizer.get_vocab()
        self.vocab = sorted(vocab, key=vocab.get)         # CLIP's ids run 0..V-1: word by id

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text: got {type(text).__name__}, expected a string")
        return self.hf(text, add_special_tokens=False)["input_ids"]

    def __call__(self, texts) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, (list, tuple)) or not texts or \
                not all(isinstance(t, str) for t in texts):
            raise ValueError(f"texts: got {texts!r}, expected a non-empty list of strings")
        return self.hf(list(texts), padding=True, truncation=True, max_length=self.context_length,
                       return_tensors="pt")["input_ids"]


class HFCLIP(MiniCLIP):
    """A ``MiniCLIP`` over a ``CLIPModel``: ``image_tower``, ``text_tower`` and ``logit_scale``
    (the model's parameter) are the adapters' and the model's, ``encode_image``, ``encode_text``
    and ``forward`` are MiniCLIP's.
    ``tokenizer``: a course-style one (with ``bos_id``) or a transformers one (wrapped in
    ``HFTokenizer``); its pad and eos ids set the text tower's."""

    def __init__(self, model, tokenizer=None, mean=OPENAI_MEAN, std=OPENAI_STD):
        nn.Module.__init__(self)                    # MiniCLIP's own temperature is not made
        if tokenizer is not None and not hasattr(tokenizer, "bos_id"):
            tokenizer = HFTokenizer(tokenizer)
        self.tokenizer = tokenizer
        ids = {} if tokenizer is None else {"pad_id": tokenizer.pad_id, "eos_id": tokenizer.eos_id}
        self.text_tower = HFTextTower(model, **ids)
        self.image_tower = HFImageTower(model, mean, std)
        self.logit_scale = model.logit_scale

    def tokenize(self, texts) -> torch.Tensor:
        """Captions -> ids ``[N, L]`` with the tokenizer given at construction."""
        if self.tokenizer is None:
            raise ValueError("tokenizer: got None at construction, expected one to tokenize with")
        return self.tokenizer(texts)


def from_pretrained(name_or_path, **kwargs) -> HFCLIP:
    """``CLIPModel.from_pretrained(name_or_path, **kwargs)`` in eval mode, with its fast
    tokenizer, as an ``HFCLIP``. Downloads the checkpoint when online and not cached."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ValueError(f"name_or_path: got {name_or_path!r}, expected a checkpoint's name "
                         "or folder")
    from transformers import CLIPModel, CLIPTokenizerFast
    model = CLIPModel.from_pretrained(name_or_path, **kwargs).eval()
    return HFCLIP(model, CLIPTokenizerFast.from_pretrained(name_or_path))
