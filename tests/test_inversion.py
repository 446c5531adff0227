"""tutorlib.methods.inversion: OTI (image -> pseudo-words) and OVI (text -> pseudo-patches)."""
import pytest
import torch
import torch.nn.functional as F

from tutorlib.methods import inversion
from tutorlib import models
from tutorlib.zoo import pretrained


@pytest.fixture
def clip(tok):
    torch.manual_seed(0)
    return pretrained.build_mini_clip(embed_dim=16, depth=2, tokenizer=tok).eval()


def test_oti_loss_falls_and_towers_stay_frozen(tok, clip):
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    flags = [p.requires_grad for p in clip.parameters()]
    # targets the tower can reach (an untrained toy model's image cone may lie out of reach)
    target = clip.encode_text(tok([f"a photo of {w}" for w in ("red", "circle", "star", "big", "left")])).detach()
    tokens, losses = inversion.oti(clip.text_tower, tok, target, steps=60, batch_size=3, progress=False)
    assert tokens.shape == (5, 1, clip.text_tower.width) and losses.shape == (60,)
    assert losses[-1] < 0.5 * losses[0]
    text_like = inversion.encode_with_pseudo_tokens(clip.text_tower, tok, tokens)
    cos = F.cosine_similarity(text_like, target).mean().item()
    assert cos == pytest.approx(1 - losses[-1].item(), abs=0.05)
    assert all(torch.equal(v, before[k]) for k, v in clip.state_dict().items())
    assert [p.requires_grad for p in clip.parameters()] == flags          # flags restored
    assert all(p.grad is None for p in clip.parameters())


def test_template_slot_holds_real_words(tok, clip):
    """A pseudo-token equal to a word's embedding reproduces that caption's feature."""
    ids = tok.encode("red circle")
    words = clip.text_tower.token_embedding.weight[ids][None]          # [1, 2, width]
    got = inversion.encode_with_pseudo_tokens(clip.text_tower, tok, words, "a photo of {}")
    assert torch.allclose(got, clip.encode_text(tok(["a photo of red circle"])), atol=1e-5)


def test_oti_of_a_caption_recovers_a_caption_like_feature(tok, clip):
    text = clip.encode_text(tok(["a red circle", "a blue star"])).detach()
    tokens, _ = inversion.oti(clip.text_tower, tok, text, template="a {}", steps=150, progress=False)
    inv = inversion.encode_with_pseudo_tokens(clip.text_tower, tok, tokens, "a {}")
    assert (F.cosine_similarity(inv, text) > 0.9).all()


def test_ovi_loss_falls_and_shapes(tok, clip):
    text = clip.encode_text(tok(["a red circle", "a green square", "a star"])).detach()
    patches, losses = inversion.ovi(clip.image_tower, text, steps=60, progress=False)
    assert patches.shape == (3, 1, clip.image_tower.width)
    assert losses[-1] < 0.5 * losses[0]
    assert inversion.encode_pseudo_patches(clip.image_tower, patches).shape == (3, 16)
    assert all(p.grad is None for p in clip.parameters())


def test_nearest_words_of_real_embeddings(tok, clip):
    table = clip.text_tower.token_embedding.weight.detach()
    ids = tok.encode("red star")
    assert [w[0] for w in inversion.nearest_words(clip.text_tower, tok, table[ids])] == ["red", "star"]


def test_bad_input(tok, clip):
    img = torch.randn(2, 16)
    with pytest.raises(ValueError, match="template"):
        inversion.oti(clip.text_tower, tok, img, template="a photo of", progress=False)
    with pytest.raises(ValueError, match="steps"):
        inversion.oti(clip.text_tower, tok, img, steps=0, progress=False)
    with pytest.raises(ValueError, match="image_emb"):
        inversion.oti(clip.text_tower, tok, torch.randn(2, 3, 16), progress=False)
    with pytest.raises(ValueError, match="tokens"):
        inversion.encode_with_pseudo_tokens(clip.text_tower, tok, torch.randn(2, 1, 5))
    with pytest.raises(ValueError, match="tokens"):
        inversion.encode_with_pseudo_tokens(clip.text_tower, tok, torch.randn(2, 40, clip.text_tower.width))
    with pytest.raises(ValueError, match="n_tokens"):
        inversion.ovi(clip.image_tower, img, n_tokens=17, progress=False)
    with pytest.raises(ValueError, match="patches"):
        inversion.encode_pseudo_patches(clip.image_tower, torch.randn(2, 1, 7))
    with pytest.raises(ValueError, match="weight_decay"):
        inversion.ovi(clip.image_tower, img, weight_decay=-1, progress=False)


def test_pseudo_patches_are_stretched_in_blocks(clip):
    tower = clip.image_tower
    a, b = torch.randn(tower.width), torch.randn(tower.width)
    two = torch.stack([a, b])[None]                                     # [1, 2, width]
    blocks = torch.stack([a] * 8 + [b] * 8)[None]                       # a...a b...b over 16 patches
    assert torch.allclose(inversion.encode_pseudo_patches(tower, two), tower(patches=blocks), atol=1e-6)
    three = torch.randn(1, 3, tower.width)                              # K need not divide P
    assert inversion.encode_pseudo_patches(tower, three).shape == (1, 16)


def test_vocabulary_distance_against_a_loop(tok, clip):
    table = clip.text_tower.token_embedding.weight.detach()
    words = [i for i, w in enumerate(tok.vocab) if not w.startswith("<")]
    torch.manual_seed(1)
    tokens = torch.randn(3, 2, clip.text_tower.width)
    got = inversion.vocabulary_distance(clip.text_tower, tok, tokens, k=2)
    assert got.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            d2 = sorted(((tokens[i, j] - table[v]) ** 2).sum().item() for v in words)
            assert got[i, j].item() == pytest.approx((d2[0] + d2[1]) / 2, rel=1e-4)
    on_word = table[tok.encode("red star")][None]                      # real words: distance 0
    assert torch.allclose(inversion.vocabulary_distance(clip.text_tower, tok, on_word), torch.zeros(1, 2), atol=1e-4)


def test_vocab_weight_keeps_the_token_near_the_words(tok, clip):
    """A larger leash gives pseudo-tokens nearer the vocabulary; weight 0 is plain OTI."""
    target = clip.encode_text(tok(["a small red circle in the top left", "a large blue star", "a green square",
                                   "a tiny yellow triangle at the bottom"])).detach()
    dist = []
    for beta in (0.0, 0.3, 3.0):
        torch.manual_seed(0)
        w, losses = inversion.oti(clip.text_tower, tok, target, steps=60, vocab_weight=beta, progress=False)
        dist.append(inversion.vocabulary_distance(clip.text_tower, tok, w).mean().item())
    assert dist[0] > dist[1] > dist[2], dist
    torch.manual_seed(0)
    plain, _ = inversion.oti(clip.text_tower, tok, target, steps=5, progress=False)
    torch.manual_seed(0)
    zero, _ = inversion.oti(clip.text_tower, tok, target, steps=5, vocab_weight=0.0, progress=False)
    assert torch.equal(plain, zero)


def test_vocab_weight_bad_input(tok, clip):
    img = torch.randn(2, 16)
    with pytest.raises(ValueError, match="vocab_weight"):
        inversion.oti(clip.text_tower, tok, img, vocab_weight=-1.0, progress=False)
    with pytest.raises(ValueError, match="vocab_k"):
        inversion.oti(clip.text_tower, tok, img, vocab_weight=1.0, vocab_k=0, progress=False)
    with pytest.raises(ValueError, match="vocab_k"):
        inversion.oti(clip.text_tower, tok, img, vocab_weight=1.0, vocab_k=10 ** 6, progress=False)
    with pytest.raises(ValueError, match="tokens"):
        inversion.vocabulary_distance(clip.text_tower, tok, torch.randn(2, 1, 5))
    with pytest.raises(ValueError, match="k"):
        inversion.vocabulary_distance(clip.text_tower, tok, torch.randn(2, 1, clip.text_tower.width), k=0)


@pytest.mark.parametrize("template", ["a photo of {}", "{} here", "a {} in the center"])
def test_oti_runs_the_template_prefix_once_and_gets_the_same_tokens(tok, clip, template, monkeypatch):
    w = torch.randn(6, 2, clip.text_tower.width)
    with torch.no_grad():
        fast = inversion._PrefixOnce(clip.text_tower, tok, template)(w)
        ref = inversion.encode_with_pseudo_tokens(clip.text_tower, tok, w, template)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)
    v = torch.randn(5, clip.text_tower.proj.out_features)
    torch.manual_seed(0)
    got, _ = inversion.oti(clip.text_tower, tok, v, template, steps=5, progress=False)
    monkeypatch.setattr(inversion._PrefixOnce, "applies", staticmethod(lambda tower: False))
    torch.manual_seed(0)
    want, _ = inversion.oti(clip.text_tower, tok, v, template, steps=5, progress=False)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)


def test_nearest_words_with_cosines(tok, clip):
    table = clip.text_tower.token_embedding.weight.detach()
    ids = tok.encode("red circle star")
    tokens = table[ids] + 0.01 * torch.randn(3, table.shape[1])
    words, cos = inversion.nearest_words(clip.text_tower, tok, tokens, k=4, cosines=True)
    assert words == inversion.nearest_words(clip.text_tower, tok, tokens, k=4)
    assert cos.shape == (3, 4) and bool((cos[:, :-1] >= cos[:, 1:]).all())      # largest first
    real = [j for j, w in enumerate(tok.vocab) if not w.startswith("<")]
    best = (F.normalize(tokens, dim=-1) @ F.normalize(table[real], dim=-1).T).max(1).values
    assert torch.allclose(cos[:, 0], best)
    assert [w[0] for w in words] == ["red", "circle", "star"]


def test_text_side_queries(tok, clip):
    images = (torch.rand(5, 3, 32, 32) * 255).to(torch.uint8)
    captions = ["a red circle", "a blue square", "a green star", "a small cross", "a large disc"]
    torch.manual_seed(0)
    rows, stats = inversion.text_side_queries(clip, tok, images, captions, steps=5)
    assert list(rows) == ["image → image", "caption → image (oracle)", "OTI(image) → image"]
    v = clip.encode_image(images.float() / 255).detach()
    t = clip.encode_text(tok(captions)).detach()
    assert torch.allclose(rows["image → image"][0], v, atol=1e-6) and rows["image → image"][1] is rows["image → image"][0]
    assert torch.allclose(rows["caption → image (oracle)"][0], t, atol=1e-6)
    q, gallery = rows["OTI(image) → image"]
    assert q.shape == v.shape and not q.requires_grad and gallery is rows["image → image"][0]
    torch.manual_seed(0)
    w, _ = inversion.oti(clip.text_tower, tok, v, steps=5, progress=False)        # the same start, the same query
    assert torch.allclose(q, inversion.encode_with_pseudo_tokens(clip.text_tower, tok, w), atol=1e-6)
    assert set(stats) == {"OTI cosine to its image", "caption cosine", "distance to the vocabulary", "modality gap"}
    assert stats["OTI cosine to its image"] == pytest.approx(F.cosine_similarity(q, v).mean().item())
    torch.manual_seed(0)
    rows4, _ = inversion.text_side_queries(clip, tok, images, captions, steps=2, n_tokens=4)
    torch.manual_seed(0)
    w4, _ = inversion.oti(clip.text_tower, tok, v, n_tokens=4, steps=2, progress=False)
    assert w4.shape[1] == 4 and torch.allclose(
        rows4["OTI(image) → image"][0], inversion.encode_with_pseudo_tokens(clip.text_tower, tok, w4),
        atol=1e-6)
    with pytest.raises(ValueError, match="captions: got a list of 3"):
        inversion.text_side_queries(clip, tok, images, captions[:3], steps=2)
    with pytest.raises(ValueError, match="captions: got a str, expected"):
        inversion.text_side_queries(clip, tok, images, "a red circle", steps=2)
    with pytest.raises(ValueError, match="images"):
        inversion.text_side_queries(clip, tok, images[0], captions, steps=2)
