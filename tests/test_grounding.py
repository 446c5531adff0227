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


def _two_object_world(n=120, seed=7):
    scenes = world.sample_scenes(n, seed=seed, two_object_frac=1.0)
    tok = world.Tokenizer()
    ids = tok(world.captions(scenes)[0])
    cover = grounding.patch_coverage(world.object_masks(scenes), 8)
    named, _ = grounding.named_objects(ids, scenes, tok)
    return tok, ids, cover, named


def test_token_columns_find_the_first_occurrence():
    tok = world.Tokenizer()
    ids = tok(["a red circle", "top-left: tiny crimson disc", "a blue square left of a red star"])
    assert grounding.token_columns(ids, tok.bos_id).tolist() == [0, 0, 0]
    assert grounding.token_columns(ids, tok.index["a"]).tolist() == [1, -1, 1]
    with pytest.raises(ValueError, match="token_id: got -1"):
        grounding.token_columns(ids, -1)
    with pytest.raises(ValueError, match="ids: got a tensor of shape"):
        grounding.token_columns(ids[0], 2)


def test_null_pointing_scores_one_token_against_every_named_object():
    tok, ids, cover, named = _two_object_world()
    sim = torch.randn(*named.shape, cover.shape[-1], generator=torch.Generator().manual_seed(0))
    columns = grounding.token_columns(ids, tok.bos_id)
    columns[:10] = -1                                                     # ten captions without one
    hit, chance = grounding.null_pointing(sim, named, cover, columns)
    rows = torch.nonzero(named >= 0)[:, 0]
    keep = rows >= 10
    assert len(hit) == int(keep.sum())
    for k, (i, r) in enumerate(torch.nonzero(named[10:] >= 0).tolist()):      # loop reference
        i += 10
        obj, p = int(named[i, r]), int(sim[i, 0].argmax())
        assert bool(hit[k]) == bool(cover[i, obj, p] > cover[i, 1 - obj, p])
    _, full_chance = grounding.pointing(sim, named, cover)
    torch.testing.assert_close(chance, full_chance[keep])
    with pytest.raises(ValueError, match="columns: got shape"):
        grounding.null_pointing(sim, named, cover, columns[:5])


def test_named_or_other_is_one_for_an_oracle_and_a_half_for_a_blind_token():
    tok, ids, cover, named = _two_object_world()
    P = cover.shape[-1]
    obj = named.clamp_min(0)
    oracle = cover[torch.arange(len(named))[:, None], obj] - cover[torch.arange(len(named))[:, None], 1 - obj]
    on, other, chance = grounding.named_or_other(oracle, named, cover)     # [N, L, P]: own minus other
    assert bool(on.all()) and not bool(other.any())
    assert 0.4 < chance.mean() < 0.6
    # a token that finds objects but not which one: its best patch is the other object's half the time
    swapped = torch.where(torch.rand(named.shape, generator=torch.Generator().manual_seed(1)) < 0.5, named, 1 - named)
    swapped = torch.where(named >= 0, swapped, -1)
    blind = cover[torch.arange(len(named))[:, None], swapped.clamp_min(0)]
    on, other, _ = grounding.named_or_other(blind, named, cover)
    assert abs(on[on | other].float().mean() - 0.5) < 0.06
    one = world.sample_scenes(30, seed=2, two_object_frac=0.0)
    ids1 = tok(world.captions(one)[0])
    named1, _ = grounding.named_objects(ids1, one, tok)
    c1 = grounding.patch_coverage(world.object_masks(one), 8)
    assert len(grounding.named_or_other(torch.randn(*named1.shape, P), named1, c1)[0]) == 0, \
        "one-object scenes have no other object"
    with pytest.raises(ValueError, match="sim, named, coverage"):
        grounding.named_or_other(oracle[:, :3], named, cover)


def test_matched_patches_draws_the_asked_number_from_the_pool():
    pool = torch.tensor([[1, 1, 1, 0, 1], [0, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    pick = grounding.matched_patches(pool, torch.tensor([2, 3, 0]))
    assert pick.sum(1).tolist() == [2, 1, 0] and not bool((pick & ~pool).any())
    assert torch.equal(pick, grounding.matched_patches(pool, torch.tensor([2, 3, 0])))      # seeded
    with pytest.raises(ValueError, match="counts: got shape"):
        grounding.matched_patches(pool, torch.tensor([1, 1]))


def test_rate_interval():
    p, half, n = grounding.rate_interval(torch.tensor([True] * 60 + [False] * 40))
    assert n == 100 and p == pytest.approx(0.6) and half == pytest.approx(1.96 * (0.6 * 0.4 / 100) ** 0.5)
    with pytest.raises(ValueError, match="hits: got an empty"):
        grounding.rate_interval(torch.zeros(0, dtype=torch.bool))


def test_absent_columns_find_a_word_naming_no_object_of_the_scene():
    tok = world.Tokenizer()
    sc = world.make_scenes("star", "red", "large", "top left")
    ids = tok(["a large blue circle", "a large red star", "a red circle"])
    scenes = world.Scenes(**{f: getattr(sc, f).expand(3, -1) for f in
                             ("shape", "colour", "size", "position", "motion", "seed")})
    cols = grounding.absent_columns(ids, scenes, tok)
    assert cols.tolist() == [3, -1, 3], "blue (column 3) is absent; a red star names only what is there"
    with pytest.raises(ValueError, match="scenes: got"):
        grounding.absent_columns(ids, scenes[:2], tok)


def test_patch_winners_and_their_shares():
    tok = world.Tokenizer()
    ids = tok(["a red star", "a blue circle"])                            # <bos> a red star <eos>
    mask = ids != tok.pad_id
    sim = torch.full((2, ids.shape[1], 3), -1.0)
    sim[:, 0, 0] = 1.0                                                    # <bos> wins patch 0
    sim[:, 4, 1] = 1.0                                                    # <eos> wins patch 1
    sim[:, 3, 2] = 1.0                                                    # the shape word wins patch 2
    win = grounding.patch_winners(sim, mask)
    assert win.tolist() == [[0, 4, 3]] * 2
    shares = grounding.winner_shares(win, ids, tok)
    assert shares == pytest.approx({"<bos>": 1 / 3, "<eos>": 1 / 3, "colour or shape word": 1 / 3, "other word": 0.0})
    ends = torch.isin(ids, torch.tensor([tok.bos_id, tok.eos_id]))
    out = grounding.patch_winners(sim, mask & ~ends)                     # <bos>, <eos> kept out of the max
    assert not bool(torch.isin(ids.gather(1, out), torch.tensor([tok.bos_id, tok.eos_id])).any())
    assert grounding.patch_winners(sim.masked_fill(~mask[..., None], 9.0), mask).tolist() == win.tolist(), \
        "padding never wins"
    with pytest.raises(ValueError, match="allowed: got shape"):
        grounding.patch_winners(sim, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="winners: got shape"):
        grounding.winner_shares(win + ids.shape[1], ids, tok)


def test_own_word_is_one_for_an_oracle_and_chance_for_noise():
    tok, ids, cover, named = _two_object_world()
    mask = ids != tok.pad_id
    P = cover.shape[-1]
    a, b = cover[:, 0], cover[:, 1]
    obj = torch.where(a > b, 0, torch.where(b > a, 1, -1))                  # [N, P]
    # oracle: a patch's max goes to a word naming the object that dominates it, where there is one
    sim = ((named[:, :, None] == obj[:, None]) & (named[:, :, None] >= 0)).float()
    has = ((named[:, :, None] == obj[:, None]).any(1)) & (obj >= 0)
    hit, chance = grounding.own_word(grounding.patch_winners(sim, mask), named, cover, mask)
    assert len(hit) == int((obj >= 0).sum())
    assert hit.float().mean() == pytest.approx(has[obj >= 0].float().mean().item())
    assert bool((chance > 0).any()) and bool((chance < 0.5).all())
    noise, chance = grounding.own_word(grounding.patch_winners(torch.randn(*named.shape, P), mask), named, cover, mask)
    assert abs(noise.float().mean() - chance.mean()) < 0.05
    with pytest.raises(ValueError, match="winners, allowed"):
        grounding.own_word(grounding.patch_winners(sim, mask)[:, :3], named, cover, mask)
