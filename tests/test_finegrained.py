"""tutorlib.objectives.finegrained: FILIP's token-wise similarity and loss, token dropping, its
objective and cost (lesson 07), against loop implementations written from the paper's equations
(word-to-patch grounding: test_grounding.py)."""
import math

import pytest
import torch
import torch.nn.functional as F

from tutorlib.training import costs
from tutorlib.objectives import finegrained, losses
from tutorlib.objectives.objective import Batch, Objective
from tutorlib import world
from tutorlib.zoo import pretrained


def _loop_similarity(x, y, mask):
    """s^I and s^T by the paper's sums, one pair and one token at a time."""
    xn, yn = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    N, M = len(x), len(y)
    s_i, s_t = torch.zeros(N, M), torch.zeros(N, M)
    for i in range(N):
        for j in range(M):
            words = [yn[j, r] for r in range(y.shape[1]) if mask[j, r]]
            s_i[i, j] = sum(max(float(xn[i, k] @ w) for w in words) for k in range(x.shape[1])) / x.shape[1]
            s_t[i, j] = sum(max(float(xn[i, k] @ w) for k in range(x.shape[1])) for w in words) / len(words)
    return s_i, s_t


def _ragged(seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    return torch.randn(5, 4, 8, generator=g), torch.randn(4, 6, 8, generator=g), mask


def test_token_similarity_matches_the_loop_with_captions_of_different_lengths():
    x, y, mask = _ragged()
    s_i, s_t = finegrained.token_similarity(x, y, mask)
    ref_i, ref_t = _loop_similarity(x, y, mask)
    assert s_i.shape == s_t.shape == (5, 4)
    torch.testing.assert_close(s_i, ref_i, atol=1e-5, rtol=0)
    torch.testing.assert_close(s_t, ref_t, atol=1e-5, rtol=0)


def test_padding_never_counts_whatever_it_holds():
    x, y, mask = _ragged(1)
    junk = y.clone()
    junk[~mask] = 1000 * torch.randn(int((~mask).sum()), 8)
    for a, b in zip(finegrained.token_similarity(x, junk, mask), finegrained.token_similarity(x, y, mask)):
        torch.testing.assert_close(a, b)


def test_the_two_directions_are_not_transposes():
    x, y, mask = _ragged(2)
    s_i, s_t = finegrained.token_similarity(x, y, mask)
    assert not torch.allclose(s_i, s_t)
    # with every token real, s^T of (images, captions) is s^I of (captions as images, images as captions)
    full = torch.ones(4, 6, dtype=torch.bool)
    _, s_t_full = finegrained.token_similarity(x, y, full)
    s_i_back, _ = finegrained.token_similarity(y, x, torch.ones(5, 4, dtype=torch.bool))
    torch.testing.assert_close(s_t_full, s_i_back.T)


def test_paired_scores_are_the_diagonal():
    x, y, mask = _ragged(3)
    x = x[:4]
    s_i, s_t = finegrained.token_similarity(x, y, mask)
    p_i, p_t = finegrained.paired_scores(x, y, mask)
    torch.testing.assert_close(p_i, s_i.diagonal())
    torch.testing.assert_close(p_t, s_t.diagonal())


def test_scores_in_chunks_equal_one_shot():
    x, y, mask = _ragged(4)
    for a, b in zip(finegrained.scores(x, y, mask, chunk=2), finegrained.token_similarity(x, y, mask)):
        torch.testing.assert_close(a, b)


def test_filip_loss_equals_its_formula_and_reaches_every_token():
    x, y, mask = _ragged(5)
    x = x[:4].requires_grad_(True)
    y = y.requires_grad_(True)
    scale = torch.tensor(math.log(20.0), requires_grad=True)
    loss = finegrained.filip_loss(x, y, mask, scale)
    ref_i, ref_t = _loop_similarity(x.detach(), y.detach(), mask)
    n, eps = 4, 0.1
    target = (1 - eps) * torch.eye(n) + eps / n
    ce = lambda logits: -(target * logits.log_softmax(1)).sum(1).mean()   # noqa: E731
    ref = (ce(20 * ref_i) + ce(20 * ref_t.T)) / 2
    torch.testing.assert_close(loss.detach(), ref, atol=1e-5, rtol=0)
    loss.backward()
    assert x.grad.abs().sum() > 0 and scale.grad is not None and scale.grad != 0
    assert torch.all(y.grad[~mask] == 0), "padding received gradient"
    assert y.grad[mask].abs().sum() > 0


def test_no_smoothing_is_plain_cross_entropy():
    x, y, mask = _ragged(6)
    x = x[:4]
    s_i, s_t = finegrained.token_similarity(x, y, mask)
    labels = torch.arange(4)
    ref = (F.cross_entropy(10 * s_i, labels) + F.cross_entropy(10 * s_t.T, labels)) / 2
    torch.testing.assert_close(finegrained.filip_loss(x, y, mask, math.log(10), label_smoothing=0.0), ref)


def test_bad_inputs_get_clear_errors():
    x, y, mask = _ragged()
    with pytest.raises(ValueError, match="mask"):
        finegrained.token_similarity(x, y, torch.zeros_like(mask))          # all-padding captions
    with pytest.raises(ValueError, match="mask"):
        finegrained.token_similarity(x, y, mask[:, :3])
    with pytest.raises(ValueError, match="text_mask"):
        finegrained.token_similarity(x, y, None)
    with pytest.raises(ValueError, match="widths"):
        finegrained.token_similarity(x, y[..., :4], mask)
    with pytest.raises(ValueError, match="image_tokens"):
        finegrained.token_similarity(x[0], y, mask)
    with pytest.raises(ValueError, match="rows"):
        finegrained.filip_loss(x, y, mask, 1.0)                            # 5 images, 4 captions
    with pytest.raises(ValueError, match="label_smoothing"):
        finegrained.filip_loss(x[:4], y, mask, 1.0, label_smoothing=1.5)
    with pytest.raises(ValueError, match="keep"):
        finegrained.select_tokens(x, y, mask, keep=0)
    with pytest.raises(ValueError, match="chunk"):
        finegrained.scores(x, y, mask, chunk=0)
    with pytest.raises(ValueError, match="image_tower"):
        finegrained.image_tokens(torch.nn.Linear(2, 2), torch.zeros(1, 3, 32, 32))


def test_select_tokens_keeps_the_best_matched_tokens():
    x, y, mask = _ragged(7)
    xi, yt, mt = finegrained.select_tokens(x, y, mask, keep=0.5)
    assert xi.shape == (5, 2, 8) and yt.shape == (4, 3, 8) and mt.shape == (4, 3)
    xn, yn = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    best = torch.einsum("npd,mld->npml", xn, yn).masked_fill(~mask[None, None], -2).flatten(2).amax(2)   # [N, P]
    for n in range(5):
        kept = {tuple(v.tolist()) for v in xi[n]}
        top = best[n].topk(2).indices
        assert kept == {tuple(x[n, k].tolist()) for k in top.tolist()}
    # a caption with one real token keeps it (and masked padding), never a padding slot as real
    assert mt[2].sum() == 1 and mt.any(1).all()
    assert finegrained.select_tokens(x, y, mask, keep=1.0)[0].shape == x.shape


def test_tower_tokens_agree_with_the_pooled_path():
    torch.manual_seed(0)
    tok = world.Tokenizer()
    model = pretrained.build_mini_clip(embed_dim=32, depth=2, tokenizer=tok)
    images = world.images_float(world.render_images(world.sample_scenes(3)))
    ids = tok(["a red circle", "a big blue square left of a small green star", "a star"])
    x = finegrained.image_tokens(model.image_tower, images)
    y, mask = finegrained.text_tokens(model.text_tower, ids)
    assert x.shape == (3, model.image_tower.n_patches, 32)
    assert y.shape[:2] == mask.shape and mask.sum(1).tolist() == [5, 12, 4]
    # the text tower pools its last real token: the same vector as that token's projection
    last = mask.long().cumsum(1).argmax(1)
    torch.testing.assert_close(y[torch.arange(3), last], model.encode_text(ids), atol=1e-5, rtol=0)
    # one pass gives both: the pooled embedding of encode_text and the tokens of text_tokens
    e = finegrained.encode_text(model.text_tower, ids)
    assert torch.equal(e["text"], model.encode_text(ids))
    assert torch.equal(e["y"], y) and torch.equal(e["mask"], mask)
    with pytest.raises(ValueError, match="text_tower: got a ImageTower"):
        finegrained.encode_text(model.image_tower, ids)


def test_largest_allocation_sees_filip_s_token_pairs():
    x, y = torch.randn(16, 16, 32), torch.randn(16, 10, 32)
    mask = torch.ones(16, 10, dtype=torch.bool)
    big = costs.largest_allocation(lambda: finegrained.token_similarity(x, y, mask))
    small = costs.largest_allocation(lambda: F.normalize(x[:, 0], dim=-1) @ F.normalize(y[:, 0], dim=-1).T)
    assert big >= 16 * 16 * 16 * 10 * 4 and small < big / 50
    with pytest.raises(ValueError, match="fn"):
        costs.largest_allocation(3)


def test_finetune_passes_tokens_to_the_objective():
    data = pretrained.training_data("val", n=64)
    tok = world.Tokenizer()
    model = pretrained.build_mini_clip(embed_dim=32, depth=2, tokenizer=tok)
    seen = {}

    def loss(b):
        seen.update(x=b.image_tokens.shape, y=b.text_tokens.shape, mask=b.text_mask.shape)
        return finegrained.filip_loss(b.image_tokens, b.text_tokens, b.text_mask, b.logit_scale)
    _, history = pretrained.finetune(model, data, Objective(loss, tokens=True), steps=2, batch_size=8,
                                     text_blocks=0, progress=False)
    assert seen["x"] == (8, 16, 32) and seen["y"][0] == 8 and seen["mask"] == seen["y"][:2]
    assert len(history["loss"]) == 2
    _, same = pretrained.finetune(model, data, finegrained.filip_objective(), steps=2, batch_size=8,
                                  text_blocks=0, progress=False)
    assert same["loss"] == history["loss"]                  # the library's objective is that loss
    with pytest.raises(ValueError, match="image_blocks"):
        pretrained.finetune(model, data, Objective(loss, tokens=True), steps=1, image_blocks=0,
                            progress=False)


def test_left_padding_and_text_side_dropping():
    x, y, mask = _ragged(8)
    left = torch.flip(mask, [1])                                  # padding first, real tokens last
    s_i, s_t = finegrained.token_similarity(x, y, left)
    ref_i, ref_t = _loop_similarity(x, y, left)
    torch.testing.assert_close(s_i, ref_i, atol=1e-5, rtol=0)
    torch.testing.assert_close(s_t, ref_t, atol=1e-5, rtol=0)
    x = x.requires_grad_(True)
    y = y.requires_grad_(True)
    xi, yt, mt = finegrained.select_tokens(x, y, mask, keep=0.5)
    xn, yn = F.normalize(x.detach(), dim=-1), F.normalize(y.detach(), dim=-1)
    best_word = torch.einsum("mld,npd->mlnp", yn, xn).flatten(2).amax(2).masked_fill(~mask, -2)   # [M, L]
    for m in range(4):
        top = best_word[m].topk(3).indices.tolist()
        assert {tuple(v.tolist()) for v in yt[m].detach()} == {tuple(y[m, r].detach().tolist()) for r in top}
        assert mt[m].tolist() == mask[m, top].tolist()
    (xi.sum() + yt.sum()).backward()
    assert int((x.grad.abs().sum(-1) > 0).sum()) == 5 * 2, "gradient reached a dropped patch"
    assert int((y.grad.abs().sum(-1) > 0).sum()) == 4 * 3, "gradient reached a dropped word"


def test_encode_is_one_pass_of_the_token_functions():
    torch.manual_seed(1)
    tok = world.Tokenizer()
    model = pretrained.build_mini_clip(embed_dim=32, depth=2, tokenizer=tok)
    images = world.images_float(world.render_images(world.sample_scenes(4)))
    ids = tok(world.captions(world.sample_scenes(4))[0])
    e = finegrained.encode(model, images, ids)
    y, mask = finegrained.text_tokens(model.text_tower, ids)
    torch.testing.assert_close(e["x"], finegrained.image_tokens(model.image_tower, images))
    torch.testing.assert_close(e["y"], y)
    assert torch.equal(e["mask"], mask)
    torch.testing.assert_close(e["image"], model.encode_image(images))
    torch.testing.assert_close(e["text"], model.encode_text(ids))
    with pytest.raises(ValueError, match="model.image_tower"):
        finegrained.encode(torch.nn.Linear(2, 2), images, ids)


def _paired(seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(6, 7, generator=g) < 0.7
    mask[:, 0] = True
    return torch.randn(6, 5, 8, generator=g), torch.randn(6, 7, 8, generator=g), mask


def test_filip_objective_is_filip_loss_after_token_dropping():
    x, y, mask = _paired()
    scale = torch.tensor(2.0)
    batch = Batch(None, None, scale, image_tokens=x, text_tokens=y, text_mask=mask)
    assert finegrained.filip_objective().tokens                         # the loop computes the tokens
    every = finegrained.filip_objective().loss(batch)
    assert torch.equal(every, finegrained.filip_loss(x, y, mask, scale))
    half = finegrained.filip_objective(keep=0.5).loss(batch)
    assert torch.equal(half, finegrained.filip_loss(*finegrained.select_tokens(x, y, mask, 0.5), scale))
    with pytest.raises(ValueError, match="keep: got 0"):
        finegrained.filip_objective(keep=0)
    plain = finegrained.filip_objective(label_smoothing=0.0).loss(batch)   # the smoothing reaches the loss
    assert torch.equal(plain, finegrained.filip_loss(x, y, mask, scale, label_smoothing=0.0))
    assert not torch.equal(plain, every)
    with pytest.raises(ValueError, match="label_smoothing: got 1"):
        finegrained.filip_objective(label_smoothing=1.0)


def test_encoding_scores_are_each_model_s_own_score():
    x, y, mask = _ragged(4)
    e = {"image": torch.randn(5, 8), "text": torch.randn(4, 8), "x": x, "y": y, "mask": mask}
    for got, want in zip(finegrained.encoding_scores(e, chunk=2), _loop_similarity(x, y, mask)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    s_i, s_t = finegrained.encoding_scores(e, token_wise=False)
    cos = F.normalize(e["image"], dim=-1) @ F.normalize(e["text"], dim=-1).T
    torch.testing.assert_close(s_i, cos) and torch.testing.assert_close(s_t, cos)
    with pytest.raises(ValueError, match="encoding: got tuple"):
        finegrained.encoding_scores((x, y, mask))


def test_patch_scores_are_s_i_before_the_mean_over_patches():
    x, y, mask = _ragged(5)
    votes = finegrained.patch_scores(x, y, mask, chunk=2)                       # [N, P, M]
    xn, yn = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    loop = torch.tensor([[[max(float(xn[i, p] @ yn[m, r]) for r in range(y.shape[1]) if mask[m, r])
                           for m in range(len(y))] for p in range(x.shape[1])] for i in range(len(x))])
    torch.testing.assert_close(votes, loop, atol=1e-5, rtol=0)
    s_i, _ = finegrained.token_similarity(x, y, mask)
    torch.testing.assert_close(votes.mean(1), s_i, atol=1e-6, rtol=0)
    left = torch.flip(mask, [1])                                               # padding first
    torch.testing.assert_close(finegrained.patch_scores(x, y, left).mean(1),
                               finegrained.token_similarity(x, y, left)[0], atol=1e-6, rtol=0)


def test_patch_group_scores_average_the_chosen_patches():
    votes = torch.randn(3, 4, 5)
    every = torch.ones(3, 4, dtype=torch.bool)
    torch.testing.assert_close(finegrained.patch_group_scores(votes, every), votes.mean(1))
    group = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    got = finegrained.patch_group_scores(votes, group)
    torch.testing.assert_close(got[0], (votes[0, 0] + votes[0, 3]) / 2)
    torch.testing.assert_close(got[1], votes[1, 1])
    assert torch.equal(got[2], torch.zeros(5))                                  # no patch in the group: 0
    with pytest.raises(ValueError, match=r"patches: got shape \(3, 5\)"):
        finegrained.patch_group_scores(votes, torch.ones(3, 5, dtype=torch.bool))


def test_loss_cost_times_each_loss_and_sees_filip_s_token_pairs():
    filip = finegrained.loss_cost("FILIP", 8, patches=4, tokens=6, dim=8)
    assert set(filip) == {"time (ms)", "largest block (KiB)"} and filip["time (ms)"] > 0
    assert filip["largest block (KiB)"] == 8 * 8 * 4 * 6 * 4 / 1024           # [N, M, P, L] float32 cosines
    half = finegrained.loss_cost("FILIP", 8, patches=4, tokens=6, dim=8, keep=0.5)
    assert half["largest block (KiB)"] == filip["largest block (KiB)"]         # the selection ranks every pair once
    clip = finegrained.loss_cost("CLIP", 8, patches=4, tokens=6, dim=8)
    assert 0 < clip["largest block (KiB)"] < filip["largest block (KiB)"] / 4
    with pytest.raises(ValueError, match="form: got 'SigLIP'"):
        finegrained.loss_cost("SigLIP", 8, 4, 6, 8)
    with pytest.raises(ValueError, match="patches: got 0"):
        finegrained.loss_cost("CLIP", 8, 0, 6, 8)


def test_clip_objective_is_clip_loss_with_filip_s_smoothing():
    g = torch.Generator().manual_seed(3)
    image, text, scale = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), torch.tensor(2.5)
    b = Batch(image, text, scale)
    plain = finegrained.clip_objective(label_smoothing=0.0).loss(b)
    torch.testing.assert_close(plain, losses.clip_loss(image, text, scale))
    logits = scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    target = 0.9 * torch.eye(6) + 0.1 / 6                                 # the port's SoftCrossEntropyLoss
    by_hand = (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.T.log_softmax(1)).sum(1).mean()) / 2
    torch.testing.assert_close(finegrained.clip_objective().loss(b), by_hand)
    assert not finegrained.clip_objective().tokens, "CLIP's loss reads the pooled vectors only"
    with pytest.raises(ValueError, match="label_smoothing: got 1.0"):
        finegrained.clip_objective(1.0)
