"""tutorlib.world.tokenizer (the word-level tokenizer)."""
import pytest
import torch

from tutorlib import world


def test_tokenizer_unknowns_and_round_trip():
    tok = world.Tokenizer()
    assert tok.encode("scarlet")[0] == tok.unk_id
    assert tok.encode("pentagram lavender")[0] == tok.unk_id
    for w in ("red", "crimson", "circle", "left", "of", "photo", "an"):
        assert tok.encode(w) != [tok.unk_id], w
    ids = tok(["a red circle", "a large blue square left of a small red star"])
    assert ids.shape == (2, tok.context_length) and ids.dtype == torch.long
    assert ids[0, 0] == tok.bos_id and ids[0, 4] == tok.eos_id and (ids[0, 5:] == tok.pad_id).all()
    assert tok.decode(ids[1]) == "a large blue square left of a small red star"
    assert tok.decode(tok(["A Scarlet Dot"])[0]) == "a <unk> <unk>"


def test_tokenizer_bad_input():
    tok = world.Tokenizer(context_length=5)
    with pytest.raises(ValueError, match=r"^texts\[0\]:"):
        tok(["one two three four five six"])
    with pytest.raises(ValueError, match=r"^texts:"):
        tok([])
    with pytest.raises(ValueError, match=r"^text:"):
        tok.encode(3)
    with pytest.raises(ValueError, match=r"^context_length:"):
        world.Tokenizer(context_length=0)
