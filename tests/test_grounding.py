"""tutorlib.evaluation.grounding: which patches a word lands on, scored against the world's object
masks; pointing rates by kind of word; true against swapped captions by every score."""
import pytest
import torch
import torch.nn.functional as F

from tutorlib import models, world
from tutorlib.evaluation import grounding
from tutorlib.objectives import finegrained
from tutorlib.zoo import pretrained
from test_finegrained import _loop_similarity   # FILIP's similarity written as a loop


def test_patch_coverage_and_named_objects():
    sc = world.make_scenes("star", "red", "large", "top left")
    cover = grounding.patch_coverage(world.object_masks(sc), 8)
    assert cover.shape == (1, 2, 16) and cover[0, 1].sum() == 0
    assert set(torch.nonzero(cover[0, 0] > 0)[:, 0].tolist()) <= {0, 1, 4, 5}, "a top-left object outside its 2x2 patches"
    tok = world.Tokenizer()
    pair = world.sample_scenes(200, seed=1, two_object_frac=1.0)
    texts, _ = world.captions(pair)
    ids = tok(texts)
    named, kind = grounding.named_objects(ids, pair, tok)
    for i in range(20):
        words = ["<bos>"] + tok.words(texts[i])
        for r in torch.nonzero(named[i] >= 0)[:, 0].tolist():
            obj, w = int(named[i, r]), words[r]
            attr = pair.colour if kind[i, r] == 1 else pair.shape
            names = world.COLOURS if kind[i, r] == 1 else world.SHAPES
            assert w in world.SYNONYMS[names[int(attr[i, obj])]][0]
    differ = (pair.colour[:, 0] != pair.colour[:, 1]) | (pair.shape[:, 0] != pair.shape[:, 1])
    assert bool((kind > 0).any(1)[differ].all()), "a scene with a distinguishing word has no named word"
    with pytest.raises(ValueError, match="scenes"):
        grounding.named_objects(ids, pair[:3], tok)
    with pytest.raises(ValueError, match="patch_size"):
        grounding.patch_coverage(world.object_masks(sc), 7)


def test_pointing_is_perfect_for_an_oracle_and_chance_for_noise():
    test = world.sample_scenes(300, seed=4, two_object_frac=0.5)
    img = world.render_images(test)
    tok = world.Tokenizer()
    ids = tok(world.captions(test)[0])
    cover = grounding.patch_coverage(world.object_masks(test), 8)
    named, kind = grounding.named_objects(ids, test, tok)
    x = F.avg_pool2d(img - 0.4, 8).flatten(2).transpose(1, 2)                     # a patch's mean colour
    kind_of, value_of = torch.zeros(len(tok), dtype=torch.long), torch.zeros(len(tok), dtype=torch.long)
    for v, name in enumerate(world.COLOURS):
        for w in world.SYNONYMS[name][0]:
            kind_of[tok.index[w]], value_of[tok.index[w]] = 1, v
    y = torch.randn(*ids.shape, 3)
    colour_word = kind_of[ids] == 1
    y[colour_word] = world.RGB[value_of[ids][colour_word]] - 0.4                   # a colour word's colour
    hit, chance = grounding.pointing(grounding.word_patch_similarity(x, y), named, cover)
    colour_hits = hit[kind[named >= 0] == 1]
    assert colour_hits.float().mean() > 0.97
    assert 0.15 < chance.mean() < 0.35
    noise, _ = grounding.pointing(torch.randn(*ids.shape, 16), named, cover)
    assert abs(noise.float().mean() - chance.mean()) < 0.05


def test_coverage_follows_the_towers_patch_order():
    """A tower whose patch embedding averages its pixels sees, at patch p, what coverage calls patch p."""
    tower = models.ImageTower(image_size=32, patch_size=8, embed_dim=8, depth=1)
    with torch.no_grad():
        tower.patch_embed.weight.zero_()
        tower.patch_embed.weight[0, 0] = 1 / 64                    # channel 0: the mean of the patch's red
        tower.patch_embed.bias.zero_()
    sc = world.make_scenes("square", "red", "large", "bottom right")
    img = torch.zeros(1, 3, 32, 32)
    img[0, 0] = world.object_masks(sc)[0, 0].float()              # red exactly where the object is
    torch.testing.assert_close(tower.patchify(img)[0, :, 0], grounding.patch_coverage(world.object_masks(sc), 8)[0, 0])


def test_named_objects_leaves_shared_and_absent_values_out():
    tok = world.Tokenizer()
    sc = world.sample_scenes(400, seed=5, two_object_frac=1.0)
    same = torch.nonzero(sc.colour[:, 0] == sc.colour[:, 1])[:, 0]
    assert len(same)
    sc = sc[same[:1]]
    texts, _ = world.captions(sc)
    ids = tok(texts)
    named, kind = grounding.named_objects(ids, sc, tok)
    colour_tokens = torch.isin(ids[0], torch.tensor([tok.index[w] for c in world.COLOURS for w in world.SYNONYMS[c][0]]))
    assert colour_tokens.any() and bool((named[0][colour_tokens] == -1).all()) and bool((kind[0][colour_tokens] == 0).all())
    lone = world.make_scenes("circle", "blue")
    named, kind = grounding.named_objects(tok(["a blue circle"]), lone, tok)
    assert named[0].tolist()[:4] == [-1, -1, 0, 0] and kind[0].tolist()[:4] == [0, 0, 1, 2]


def test_pointing_rates_split_pointing_by_kind_of_word():
    scenes = world.sample_scenes(60, seed=6, two_object_frac=0.5)
    tok = world.Tokenizer()
    ids = tok(world.captions(scenes)[0])
    cover = grounding.patch_coverage(world.object_masks(scenes), 8)
    named, kind = grounding.named_objects(ids, scenes, tok)
    g = torch.Generator().manual_seed(0)
    L = int((ids != tok.pad_id).any(0).nonzero().max()) + 1                     # the columns not all padding
    x, y = torch.randn(60, cover.shape[-1], 8, generator=g), torch.randn(60, L, 8, generator=g)
    two = scenes.n_objects == 2
    rates = grounding.pointing_rates(x, y, named, kind, cover, two)
    hit, chance = grounding.pointing(grounding.word_patch_similarity(x, y), named[:, :L], cover)
    words = [(i, r) for i in range(60) for r in range(L) if named[i, r] >= 0]      # row-major, as pointing
    mean = lambda sel: sum(float(hit[k]) for k in sel) / len(sel)                 # noqa: E731
    by_kind = {1: [k for k, (i, r) in enumerate(words) if kind[i, r] == 1],
               2: [k for k, (i, r) in enumerate(words) if kind[i, r] == 2]}
    in_two = [k for k, (i, r) in enumerate(words) if two[i]]
    assert rates["all words"] == pytest.approx(mean(range(len(words))))
    assert rates["colour words"] == pytest.approx(mean(by_kind[1]))
    assert rates["shape words"] == pytest.approx(mean(by_kind[2]))
    assert rates["two-object scenes"] == pytest.approx(mean(in_two))
    assert rates["chance (two-object)"] == pytest.approx(sum(float(chance[k]) for k in in_two) / len(in_two))
    with pytest.raises(ValueError, match="naming no word past"):
        grounding.pointing_rates(x, y[:, :2], named, kind, cover, two)


def test_swap_tests_compare_true_and_swapped_captions_by_every_score():
    torch.manual_seed(2)
    tok = world.Tokenizer()
    model = pretrained.build_mini_clip(embed_dim=32, depth=2, tokenizer=tok)
    scenes = world.sample_scenes(30, seed=3, two_object_frac=1.0)
    images = world.images_float(world.render_images(scenes))
    with torch.no_grad():
        e = finegrained.encode(model, images, tok(world.captions(scenes)[0]))
    true, swapped, ok = world.swap_captions(scenes, seed=1, attribute="colour")
    a, b = tok([t for t, v in zip(true, ok) if v]), tok([t for t, v in zip(swapped, ok) if v])
    out = grounding.swap_tests(model, e, {"colour swap": (a, b, ok)})
    assert list(out) == [("colour swap", s) for s in ("cosine", "s^I", "s^T", "pairs")]
    assert out[("colour swap", "pairs")] == int(ok.sum()) > 5
    with torch.no_grad():
        (ya, ma), (yb, mb) = finegrained.text_tokens(model.text_tower, a), finegrained.text_tokens(model.text_tower, b)
        img, ta, tb = F.normalize(e["image"][ok], dim=-1), model.encode_text(a), model.encode_text(b)
    x = e["x"][ok]
    wins = {"cosine": 0, "s^I": 0, "s^T": 0}
    for n in range(len(x)):
        ia, sa = (v[0, 0] for v in _loop_similarity(x[n:n + 1], ya[n:n + 1], ma[n:n + 1]))
        ib, sb = (v[0, 0] for v in _loop_similarity(x[n:n + 1], yb[n:n + 1], mb[n:n + 1]))
        wins["s^I"] += float(ia > ib)
        wins["s^T"] += float(sa > sb)
        wins["cosine"] += float(img[n] @ F.normalize(ta[n], dim=0) > img[n] @ F.normalize(tb[n], dim=0))
    for s, w in wins.items():
        assert out[("colour swap", s)] == pytest.approx(w / len(x))
    with pytest.raises(ValueError, match="swaps: got dict"):
        grounding.swap_tests(model, e, {})
