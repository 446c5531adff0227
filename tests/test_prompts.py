"""tutorlib.prompts: CoOp's prompt learner and RESTORE's pieces on a tiny frozen model."""
import pytest
import torch

from tutorlib import models, prompts

CLASSES = ["red circle", "blue square", "large green star"]


@pytest.fixture
def clip(tok):
    torch.manual_seed(0)
    return models.build_mini_clip(embed_dim=16, depth=2, tokenizer=tok).eval()


def test_init_from_words_reproduces_the_hand_made_prompt(tok, clip):
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, init="a photo of a")
    assert learner.n_ctx == 4
    hand = clip.encode_text(tok([f"a photo of a {c}" for c in CLASSES]))
    assert torch.allclose(learner(), hand, atol=1e-5)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("n_ctx", [1, 4, 7])
def test_shapes_for_any_classes_context_and_position(tok, clip, position, n_ctx):
    for classes in (CLASSES[:1], CLASSES):
        learner = prompts.PromptLearner(clip.text_tower, tok, classes, n_ctx=n_ctx, position=position)
        embeds, mask = learner.prompt_embeddings()
        longest = 2 + n_ctx + max(len(c.split()) for c in classes)
        assert embeds.shape == (len(classes), longest, clip.text_tower.width)
        assert mask.sum(1).tolist() == [2 + n_ctx + len(c.split()) for c in classes]
        assert learner().shape == (len(classes), 16)


def test_middle_and_front_place_the_class_name(tok, clip):
    learner = prompts.PromptLearner(clip.text_tower, tok, ["red circle"], n_ctx=4, position="front")
    embeds, _ = learner.prompt_embeddings()
    red = clip.text_tower.token_embedding.weight[tok.encode("red")[0]]
    assert torch.allclose(embeds[0, 1], red) and torch.allclose(embeds[0, 3], learner.ctx[0])
    learner = prompts.PromptLearner(clip.text_tower, tok, ["red circle"], n_ctx=4, position="middle")
    embeds, _ = learner.prompt_embeddings()
    assert torch.allclose(embeds[0, 3], red) and torch.allclose(embeds[0, 5], learner.ctx[2])


def test_only_the_context_learns_and_the_tower_is_unchanged(tok, clip):
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, n_ctx=4)
    assert [n for n, p in learner.named_parameters() if p.requires_grad] == ["ctx"]
    opt = torch.optim.SGD([learner.ctx], lr=1.0)
    images = torch.rand(6, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    ctx0 = learner.ctx.detach().clone()
    for _ in range(3):
        with torch.no_grad():
            img = clip.encode_image(images)
        loss = torch.nn.functional.cross_entropy(prompts.class_logits(img, learner(), clip.logit_scale), labels)
        opt.zero_grad(); loss.backward(); opt.step()
    assert not torch.allclose(learner.ctx, ctx0)
    assert all(torch.equal(v, before[k]) for k, v in clip.state_dict().items())
    assert all(p.grad is None for p in clip.text_tower.parameters())


def test_bad_input(tok, clip):
    with pytest.raises(ValueError, match="classnames"):
        prompts.PromptLearner(clip.text_tower, tok, [])
    with pytest.raises(ValueError, match="n_ctx"):
        prompts.PromptLearner(clip.text_tower, tok, CLASSES, n_ctx=0)
    with pytest.raises(ValueError, match="position"):
        prompts.PromptLearner(clip.text_tower, tok, CLASSES, position="start")
    with pytest.raises(ValueError, match="n_ctx"):
        prompts.PromptLearner(clip.text_tower, tok, CLASSES, n_ctx=39)
    with pytest.raises(ValueError, match="classnames"):
        prompts.PromptLearner(clip.text_tower, tok, ["zzz qqq"])      # no known word
    with pytest.raises(ValueError, match="class_emb"):
        prompts.class_logits(torch.randn(2, 16), torch.randn(3, 8), 1.0)
    with pytest.raises(ValueError, match="templates"):
        prompts.ensemble_class_embeddings(lambda t: torch.randn(len(t), 4), ["no slot"], CLASSES)
    with pytest.raises(ValueError, match="novel"):
        prompts.harmonic_mean(0.5, 1.5)


def test_class_logits_and_harmonic_mean():
    x = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    assert torch.allclose(prompts.class_logits(x, c, torch.tensor(0.0)), torch.tensor([[1.0, 0.0]]))
    assert prompts.harmonic_mean(0.9, 0.6) == pytest.approx(2 * 0.9 * 0.6 / 1.5)
    assert prompts.harmonic_mean(0.0, 0.0) == 0.0


def test_ensemble_is_the_normalised_mean_over_templates(tok, clip):
    enc = lambda texts: clip.encode_text(tok(texts))
    ens = prompts.ensemble_class_embeddings(enc, ["a {}", "a photo of a {}"], CLASSES)
    a = torch.nn.functional.normalize(enc([f"a {c}" for c in CLASSES]), dim=-1)
    b = torch.nn.functional.normalize(enc([f"a photo of a {c}" for c in CLASSES]), dim=-1)
    assert torch.allclose(ens, torch.nn.functional.normalize(a + b, dim=-1), atol=1e-5)


def test_visual_prompts_and_feature_shift(tok, clip):
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, n_ctx=3)
    vp = prompts.VisualPrompts(learner, clip.image_tower.width)
    assert vp().shape == (3, clip.image_tower.width)
    assert [n for n, _ in vp.named_parameters()] == ["proj.weight", "proj.bias"]
    images = torch.rand(4, 3, 32, 32)
    frozen = prompts.encode_image_with_prompts(clip.image_tower, images, None)
    assert torch.allclose(frozen, clip.encode_image(images))
    prompted = prompts.encode_image_with_prompts(clip.image_tower, images, vp())
    assert prompted.shape == frozen.shape and not torch.allclose(prompted, frozen)
    s = prompts.feature_shift(prompted, frozen)
    assert s.ndim == 0 and 0 < s.item() <= 2
    assert prompts.feature_shift(frozen, frozen).item() == pytest.approx(0.0, abs=1e-6)
    s.backward()
    assert learner.ctx.grad is not None and vp.proj.weight.grad is not None   # the shift trains both
    loss = prompts.shift_consistency_loss(torch.tensor(0.3), torch.tensor(0.1))
    assert loss.item() == pytest.approx(0.04)
    with pytest.raises(ValueError, match="prompts"):
        prompts.encode_image_with_prompts(clip.image_tower, images, torch.randn(2, 5))
    with pytest.raises(ValueError, match="frozen"):
        prompts.feature_shift(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="text_shift"):
        prompts.shift_consistency_loss(torch.randn(3), torch.tensor(0.1))
    with pytest.raises(ValueError, match="learner"):
        prompts.VisualPrompts("ctx", 16)


def test_surgery_adapter_starts_as_identity_and_mixes_by_r():
    f = torch.randn(5, 8)
    ad = prompts.SurgeryAdapter(8, r=0.3)
    assert torch.allclose(ad(f), f)
    with torch.no_grad():
        ad.ffn[2].bias.fill_(1.0)
    assert torch.allclose(ad(f), f + 0.3)          # r * (f + 1) + (1 - r) * f
    with pytest.raises(ValueError, match=r"^r:"):
        prompts.SurgeryAdapter(8, r=1.5)
    with pytest.raises(ValueError, match="dim"):
        prompts.SurgeryAdapter(0)


def test_for_classes_shares_the_context(tok, clip):
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, n_ctx=3)
    novel = learner.for_classes(["green star", "blue cross"])
    assert novel.ctx is learner.ctx and novel.classnames == ["green star", "blue cross"]
    with torch.no_grad():
        learner.ctx.add_(1.0)                                  # an update to the base learner ...
    fresh = prompts.PromptLearner(clip.text_tower, tok, ["green star", "blue cross"], n_ctx=3)
    fresh.ctx = learner.ctx
    assert torch.allclose(novel(), fresh())                    # ... is what the novel one sees
    with pytest.raises(ValueError, match="classnames"):
        learner.for_classes([])


def test_visual_prompts_at_a_later_block_and_from_cached_states(clip):
    tower = clip.image_tower
    images, p = torch.rand(4, 3, 32, 32), torch.randn(2, tower.width)
    late = prompts.encode_image_with_prompts(tower, images, p, layer=1)
    cached = prompts.encode_image_with_prompts(tower, None, p, layer=1, states=tower.hidden(images, 1))
    assert torch.allclose(late, cached, atol=1e-6)
    assert not torch.allclose(late, prompts.encode_image_with_prompts(tower, images, p, layer=0))
    assert torch.allclose(prompts.encode_image_with_prompts(tower, images, None, layer=1),
                          clip.encode_image(images), atol=1e-6)
    with pytest.raises(ValueError, match="layer"):
        prompts.encode_image_with_prompts(tower, images, p, layer=2)
    with pytest.raises(ValueError, match="images, states"):
        prompts.encode_image_with_prompts(tower, images, p, states=tower.hidden(images, 0))
    with pytest.raises(ValueError, match="states"):
        prompts.encode_image_with_prompts(tower, None, p, states=torch.randn(4, 3, tower.width))


def test_prompt_gram_shift_is_a_ratio_of_gram_norms():
    p0 = torch.randn(4, 8)
    assert prompts.prompt_gram_shift(p0, p0).item() == pytest.approx(1.0)
    assert prompts.prompt_gram_shift(2 * p0, p0).item() == pytest.approx(4.0)     # ||(2P)^T 2P|| = 4 ||P^T P||
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    assert prompts.prompt_gram_shift(q @ p0, p0).item() == pytest.approx(1.0, rel=1e-4)  # blind to rotations of the tokens
    with pytest.raises(ValueError, match="initial"):
        prompts.prompt_gram_shift(p0, torch.zeros(4, 8))
    with pytest.raises(ValueError, match="prompt, initial"):
        prompts.prompt_gram_shift(p0, torch.randn(3, 8))


def test_multimodal_prompts_pieces_and_restore_loss(tok, clip):
    images, labels = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        frozen_img = clip.encode_image(images)
        frozen_cls = clip.encode_text(tok([f"a photo of a {c}" for c in CLASSES]))
    states = clip.image_tower.hidden(images, 1)
    coop = prompts.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=1, visual=False)
    cls, img = coop(None, frozen_img)
    assert torch.allclose(cls, frozen_cls, atol=1e-5) and img is frozen_img        # starts at the hand-made prompt
    assert coop.adapted(cls, img) == (cls, img)                                    # no adapters: unchanged
    restore = prompts.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=1, r_text=0.2, r_image=0.1)
    cls, img = restore(states, frozen_img)
    assert img.shape == frozen_img.shape and not torch.allclose(img, frozen_img)   # the visual prompts act
    assert restore.adapt_text.r == 0.2 and restore.adapt_image.r == 0.1
    out = prompts.restore_loss(cls, img, labels, frozen_cls, frozen_img, clip.logit_scale, restore.adapted, lam=10.0)
    shift_t, shift_i = prompts.feature_shift(cls, frozen_cls), prompts.feature_shift(img, frozen_img)
    ce = torch.nn.functional.cross_entropy(prompts.class_logits(img, cls, clip.logit_scale), labels)
    assert out["loss"].item() == pytest.approx((ce + 10.0 * (shift_t - shift_i) ** 2).item(), rel=1e-5)
    assert out["text shift"].item() == pytest.approx(shift_t.item())
    plain = prompts.restore_loss(cls, img, labels, frozen_cls, frozen_img, clip.logit_scale, lam=0.0)
    assert plain["loss"].item() == pytest.approx(ce.item(), rel=1e-5)
    image_only = prompts.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=1, visual=False, r_image=0.2)
    assert image_only.adapt_text is None and image_only.adapt_image is not None
    with pytest.raises(ValueError, match="prompt_layer"):
        prompts.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=5)
    with pytest.raises(ValueError, match="states"):
        restore(None, frozen_img)
    with pytest.raises(ValueError, match="lam"):
        prompts.restore_loss(cls, img, labels, frozen_cls, frozen_img, clip.logit_scale, lam=-1.0)


def test_train_multimodal_prompts_moves_only_prompts_and_records_drift(tok, clip):
    images, labels = torch.rand(12, 3, 32, 32), torch.arange(12) % 3
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    with torch.no_grad():
        frozen_img = clip.encode_image(images)
        frozen_cls = clip.encode_text(tok([f"a photo of a {c}" for c in CLASSES]))
        states = clip.image_tower.hidden(images, 1)
    net = prompts.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=1, r_text=0.2, r_image=0.2)
    hist = prompts.train_multimodal_prompts(net, states, frozen_img, labels, frozen_cls, logit_scale=clip.logit_scale,
                                            lam=10.0, steps=5, batch_size=4, lr=1e-2, warmup=0)
    assert len(hist["context drift"]) == 5 and hist["context drift"][0] == 0.0 and hist["context drift"][-1] > 0
    assert {"text shift", "image shift", "cross-entropy"} <= set(hist)
    assert all(torch.equal(v, before[k]) for k, v in clip.state_dict().items())   # the towers did not move
    with pytest.raises(ValueError, match="net"):
        prompts.train_multimodal_prompts("net", states, frozen_img, labels, frozen_cls, logit_scale=clip.logit_scale)
    with pytest.raises(ValueError, match="labels"):
        prompts.train_multimodal_prompts(net, states, frozen_img, labels[:5], frozen_cls, logit_scale=clip.logit_scale)


def test_text_shift_per_block_is_zero_at_the_start_and_ends_at_the_feature_shift(tok, clip):
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, init="a photo of a")
    ids = tok([f"a photo of a {c}" for c in CLASSES])
    per_block = prompts.text_shift_per_block(learner, ids)
    assert per_block.shape == (len(clip.text_tower.encoder.blocks),)
    assert per_block.abs().max().item() < 1e-5                  # the context is the hand-made prompt's words
    with torch.no_grad():
        learner.ctx.add_(0.5 * torch.randn_like(learner.ctx))
    per_block = prompts.text_shift_per_block(learner, ids)
    assert bool((per_block > 0).all())
    with pytest.raises(ValueError, match="frozen_ids"):
        prompts.text_shift_per_block(learner, ids[:2])


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_prompt_embeddings_equal_the_prompts_built_one_by_one(tok, clip, position):
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, n_ctx=5, position=position)
    embeds, mask = learner.prompt_embeddings()
    table = clip.text_tower.token_embedding.weight
    for i, c in enumerate(CLASSES):
        name, ctx = table[tok.encode(c)], learner.ctx
        parts = {"end": [ctx, name], "front": [name, ctx], "middle": [ctx[:2], name, ctx[2:]]}[position]
        row = torch.cat([table[tok.bos_id][None], *parts, table[tok.eos_id][None]])
        assert torch.equal(embeds[i][mask[i]], row) and not embeds[i][~mask[i]].any()
    embeds.sum().backward()
    assert torch.equal(learner.ctx.grad, torch.full_like(learner.ctx, len(CLASSES)))   # each vector once per class
