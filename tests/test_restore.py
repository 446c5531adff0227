"""tutorlib.methods.restore: RESTORE's pieces, on CoOp's prompt learner and a tiny frozen model."""
import pytest
import torch

from test_prompts import CLASSES, clip  # noqa: F401  (the same tiny model and classes as CoOp's tests)
from tutorlib.methods import prompts, restore


def test_visual_prompts_and_feature_shift(tok, clip):
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, n_ctx=3)
    vp = restore.VisualPrompts(learner, clip.image_tower.width)
    assert vp().shape == (3, clip.image_tower.width)
    assert [n for n, _ in vp.named_parameters()] == ["proj.weight", "proj.bias"]
    images = torch.rand(4, 3, 32, 32)
    frozen = restore.encode_image_with_prompts(clip.image_tower, images, None)
    assert torch.allclose(frozen, clip.encode_image(images))
    prompted = restore.encode_image_with_prompts(clip.image_tower, images, vp())
    assert prompted.shape == frozen.shape and not torch.allclose(prompted, frozen)
    s = restore.feature_shift(prompted, frozen)
    assert s.ndim == 0 and 0 < s.item() <= 2
    assert restore.feature_shift(frozen, frozen).item() == pytest.approx(0.0, abs=1e-6)
    s.backward()
    assert learner.ctx.grad is not None and vp.proj.weight.grad is not None   # the shift trains both
    loss = restore.shift_consistency_loss(torch.tensor(0.3), torch.tensor(0.1))
    assert loss.item() == pytest.approx(0.04)
    with pytest.raises(ValueError, match="prompts"):
        restore.encode_image_with_prompts(clip.image_tower, images, torch.randn(2, 5))
    with pytest.raises(ValueError, match="frozen"):
        restore.feature_shift(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="text_shift"):
        restore.shift_consistency_loss(torch.randn(3), torch.tensor(0.1))
    with pytest.raises(ValueError, match="learner"):
        restore.VisualPrompts("ctx", 16)


def test_surgery_adapter_starts_as_identity_and_mixes_by_r():
    f = torch.randn(5, 8)
    ad = restore.SurgeryAdapter(8, r=0.3)
    assert torch.allclose(ad(f), f)
    with torch.no_grad():
        ad.ffn[2].bias.fill_(1.0)
    assert torch.allclose(ad(f), f + 0.3)          # r * (f + 1) + (1 - r) * f
    with pytest.raises(ValueError, match=r"^r:"):
        restore.SurgeryAdapter(8, r=1.5)
    with pytest.raises(ValueError, match="dim"):
        restore.SurgeryAdapter(0)


def test_visual_prompts_at_a_later_block_and_from_cached_states(clip):
    tower = clip.image_tower
    images, p = torch.rand(4, 3, 32, 32), torch.randn(2, tower.width)
    late = restore.encode_image_with_prompts(tower, images, p, layer=1)
    cached = restore.encode_image_with_prompts(tower, None, p, layer=1, states=tower.hidden(images, 1))
    assert torch.allclose(late, cached, atol=1e-6)
    assert not torch.allclose(late, restore.encode_image_with_prompts(tower, images, p, layer=0))
    assert torch.allclose(restore.encode_image_with_prompts(tower, images, None, layer=1),
                          clip.encode_image(images), atol=1e-6)
    with pytest.raises(ValueError, match="layer"):
        restore.encode_image_with_prompts(tower, images, p, layer=2)
    with pytest.raises(ValueError, match="images, states"):
        restore.encode_image_with_prompts(tower, images, p, states=tower.hidden(images, 0))
    with pytest.raises(ValueError, match="states"):
        restore.encode_image_with_prompts(tower, None, p, states=torch.randn(4, 3, tower.width))


def test_prompt_gram_shift_is_a_ratio_of_gram_norms():
    p0 = torch.randn(4, 8)
    assert restore.prompt_gram_shift(p0, p0).item() == pytest.approx(1.0)
    assert restore.prompt_gram_shift(2 * p0, p0).item() == pytest.approx(4.0)     # ||(2P)^T 2P|| = 4 ||P^T P||
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    assert restore.prompt_gram_shift(q @ p0, p0).item() == pytest.approx(1.0, rel=1e-4)  # blind to rotations of the tokens
    with pytest.raises(ValueError, match="initial"):
        restore.prompt_gram_shift(p0, torch.zeros(4, 8))
    with pytest.raises(ValueError, match="prompt, initial"):
        restore.prompt_gram_shift(p0, torch.randn(3, 8))


def test_multimodal_prompts_pieces_and_restore_loss(tok, clip):
    images, labels = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        frozen_img = clip.encode_image(images)
        frozen_cls = clip.encode_text(tok([f"a photo of a {c}" for c in CLASSES]))
    states = clip.image_tower.hidden(images, 1)
    coop = restore.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=1, visual=False)
    cls, img = coop(None, frozen_img)
    assert torch.allclose(cls, frozen_cls, atol=1e-5) and img is frozen_img        # starts at the hand-made prompt
    assert coop.adapted(cls, img) == (cls, img)                                    # no adapters: unchanged
    full = restore.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=1, r_text=0.2, r_image=0.1)
    cls, img = full(states, frozen_img)
    assert img.shape == frozen_img.shape and not torch.allclose(img, frozen_img)   # the visual prompts act
    assert full.adapt_text.r == 0.2 and full.adapt_image.r == 0.1
    out = restore.restore_loss(cls, img, labels, frozen_cls, frozen_img, clip.logit_scale, full.adapted, lam=10.0)
    shift_t, shift_i = restore.feature_shift(cls, frozen_cls), restore.feature_shift(img, frozen_img)
    ce = torch.nn.functional.cross_entropy(prompts.class_logits(img, cls, clip.logit_scale), labels)
    assert out["loss"].item() == pytest.approx((ce + 10.0 * (shift_t - shift_i) ** 2).item(), rel=1e-5)
    assert out["text shift"].item() == pytest.approx(shift_t.item())
    plain = restore.restore_loss(cls, img, labels, frozen_cls, frozen_img, clip.logit_scale, lam=0.0)
    assert plain["loss"].item() == pytest.approx(ce.item(), rel=1e-5)
    image_only = restore.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=1, visual=False, r_image=0.2)
    assert image_only.adapt_text is None and image_only.adapt_image is not None
    with pytest.raises(ValueError, match="prompt_layer"):
        restore.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=5)
    with pytest.raises(ValueError, match="states"):
        full(None, frozen_img)
    with pytest.raises(ValueError, match="lam"):
        restore.restore_loss(cls, img, labels, frozen_cls, frozen_img, clip.logit_scale, lam=-1.0)


def test_train_multimodal_prompts_moves_only_prompts_and_records_drift(tok, clip):
    images, labels = torch.rand(12, 3, 32, 32), torch.arange(12) % 3
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    with torch.no_grad():
        frozen_img = clip.encode_image(images)
        frozen_cls = clip.encode_text(tok([f"a photo of a {c}" for c in CLASSES]))
        states = clip.image_tower.hidden(images, 1)
    net = restore.MultimodalPrompts(clip, tok, CLASSES, prompt_layer=1, r_text=0.2, r_image=0.2)
    hist = restore.train_multimodal_prompts(net, states, frozen_img, labels, frozen_cls, logit_scale=clip.logit_scale,
                                            lam=10.0, steps=5, batch_size=4, lr=1e-2, warmup=0)
    assert len(hist["context drift"]) == 5 and hist["context drift"][0] == 0.0 and hist["context drift"][-1] > 0
    assert {"text shift", "image shift", "cross-entropy"} <= set(hist)
    assert all(torch.equal(v, before[k]) for k, v in clip.state_dict().items())   # the towers did not move
    with pytest.raises(ValueError, match="net"):
        restore.train_multimodal_prompts("net", states, frozen_img, labels, frozen_cls, logit_scale=clip.logit_scale)
    with pytest.raises(ValueError, match="labels"):
        restore.train_multimodal_prompts(net, states, frozen_img, labels[:5], frozen_cls, logit_scale=clip.logit_scale)


def test_text_shift_per_block_is_zero_at_the_start_and_ends_at_the_feature_shift(tok, clip):
    learner = prompts.PromptLearner(clip.text_tower, tok, CLASSES, init="a photo of a")
    ids = tok([f"a photo of a {c}" for c in CLASSES])
    per_block = restore.text_shift_per_block(learner, ids)
    assert per_block.shape == (len(clip.text_tower.encoder.blocks),)
    assert per_block.abs().max().item() < 1e-5                  # the context is the hand-made prompt's words
    with torch.no_grad():
        learner.ctx.add_(0.5 * torch.randn_like(learner.ctx))
    per_block = restore.text_shift_per_block(learner, ids)
    assert bool((per_block > 0).all())
    with pytest.raises(ValueError, match="frozen_ids"):
        restore.text_shift_per_block(learner, ids[:2])
