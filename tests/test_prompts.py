"""tutorlib.methods.prompts: CoOp's prompt learner on a tiny frozen model."""
import pytest
import torch

from tutorlib import models
from tutorlib.zoo import pretrained
from tutorlib.methods import prompts

CLASSES = ["red circle", "blue square", "large green star"]


@pytest.fixture
def clip(tok):
    torch.manual_seed(0)
    return pretrained.build_mini_clip(embed_dim=16, depth=2, tokenizer=tok).eval()


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


@pytest.mark.parametrize("n_ctx, init", [(4, None), (0, "a photo of a")])
def test_end_prompts_run_the_shared_context_once_and_equal_the_whole_prompts(tok, clip, n_ctx, init):
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, n_ctx=n_ctx or 4, init=init)
    fast = learner()
    embeds, mask = learner.prompt_embeddings()
    ref = clip.text_tower(embeds=embeds, mask=mask)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)
    g_fast, = torch.autograd.grad(fast.square().sum(), learner.ctx)
    g_ref, = torch.autograd.grad(ref.square().sum(), learner.ctx)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-4, rtol=1e-3)


def test_word_embeddings_and_n_blocks(tok, clip):
    words = prompts.word_embeddings(clip.text_tower, tok, "a photo of a")
    table = clip.text_tower.token_embedding.weight
    assert words.shape == (4, clip.text_tower.width) and not words.requires_grad
    assert torch.equal(words, table[tok.encode("a photo of a")])
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, init="a photo of a")
    assert torch.equal(learner.ctx.detach(), words)                        # where CoOp's context starts
    assert prompts.n_blocks(clip.text_tower) == prompts.n_blocks(clip.image_tower) == 2
    with pytest.raises(ValueError, match="text"):
        prompts.word_embeddings(clip.text_tower, tok, "")
    with pytest.raises(ValueError, match="text_tower"):
        prompts.word_embeddings(torch.nn.Linear(2, 2), tok, "a photo")
    with pytest.raises(ValueError, match="tower"):
        prompts.n_blocks(torch.nn.Linear(2, 2))
