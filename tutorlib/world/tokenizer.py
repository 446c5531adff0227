"""The course's word-level tokenizer over the training captions' vocabulary."""
from __future__ import annotations

import re

import torch

from ..core import _validate
from .vocabulary import NOUNS, RELATIONS, SYNONYMS, TEMPLATES

_TOKEN = re.compile(r"[a-z]+")
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")


def _training_words() -> list[str]:
    words = set()
    for train, _ in SYNONYMS.values():
        for w in train:
            words.update(_TOKEN.findall(w))
    for t in TEMPLATES[0]:
        words.update(_TOKEN.findall(t.replace("{obj}", "").replace("{pos}", "")))
    for r in RELATIONS:
        words.update(_TOKEN.findall(r))
    words.update(NOUNS[0])
    words.update(["a", "an", "the", "of", "in", "at", "photo"])
    return sorted(words)


class Tokenizer:
    """Word-level tokenizer over the *training* vocabulary: held-out paraphrase words
    become ``<unk>``, as they would for a model that never saw them.

    ``tok(["a red circle"])`` -> ids ``[N, context_length]`` (``<bos> ... <eos> <pad>...``).
    """

    def __init__(self, context_length: int = 40):
        self.context_length = _validate.positive_int("context_length", context_length)
        self.vocab = list(SPECIALS) + _training_words()
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.vocab)

    def words(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text: got {type(text).__name__}, expected a string")
        return [self.index.get(w, self.unk_id) for w in self.words(text)]

    def __call__(self, texts) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts:
            raise ValueError("texts: expected a non-empty list of strings")
        out = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.bos_id] + self.encode(text) + [self.eos_id]
            if len(ids) > self.context_length:
                raise ValueError(f"texts[{i}]: {len(ids)} tokens with <bos>/<eos>, more than "
                                 f"context_length={self.context_length}")
            out[i, :len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return " ".join(self.vocab[i] for i in ids
                        if i not in (self.pad_id, self.bos_id, self.eos_id))
