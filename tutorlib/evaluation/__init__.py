"""How an aligned space is scored: ``metrics`` (retrieval, zero-shot, alignment and
uniformity, the modality gap), ``retrieval`` (positives between modalities and tables of
recall@k), ``representations`` (CKA, mutual k-NN), ``grounding`` (word-to-patch maps
against the world's masks, swap tests) and ``mismatch`` (tuples with one member swapped)."""
