"""How an aligned space is scored: ``metrics`` (retrieval, zero-shot, alignment and
uniformity, the modality gap), ``representations`` (CKA, mutual k-NN) and ``grounding``
(word-to-patch maps against the world's masks)."""
