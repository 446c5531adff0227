"""tutorlib.models: tower shapes, the embeds/patches entry points, the declared interface."""
import math

import pytest
import torch

from tutorlib import models, world
from tutorlib.zoo import pretrained


@pytest.fixture
def text_tower(tok):
    torch.manual_seed(0)
    return models.TextTower(len(tok), embed_dim=32, width=48, depth=1, heads=4).eval()


@pytest.fixture
def image_tower():
    torch.manual_seed(0)
    return models.ImageTower(32, embed_dim=24, width=32, depth=1, heads=2).eval()


# --------------------------------------------------------------------------- text
def test_text_tower_shapes(tok, text_tower):
    ids = tok(["a red circle", "a large blue square left of a small red star", "star"])
    out = text_tower(ids)
    assert out.shape == (3, 32)
    out2, tokens = text_tower(ids, return_tokens=True)
    assert torch.allclose(out, out2)
    longest = int((ids != 0).sum(1).max())
    assert tokens.shape == (3, longest, 48)


def test_text_tower_embeds_path_equals_ids_path(tok, text_tower):
    ids = tok(["a red circle", "a large blue square left of a small red star", "a tiny dot"])
    via_ids = text_tower(ids)
    via_embeds = text_tower(embeds=text_tower.token_embedding(ids), mask=ids != tok.pad_id)
    assert torch.allclose(via_ids, via_embeds, atol=1e-5)


def test_text_tower_padding_does_not_matter(tok, text_tower):
    one = tok(["a red circle"])
    batch = tok(["a red circle", "a large blue square left of a small red star"])
    assert torch.allclose(text_tower(one)[0], text_tower(batch)[0], atol=1e-5)


def test_text_tower_sees_word_order_and_words(tok, text_tower):
    ids = tok(["a red circle", "a blue circle", "circle red a"])
    out = text_tower(ids)
    assert not torch.allclose(out[0], out[1], atol=1e-4)
    assert not torch.allclose(out[0], out[2], atol=1e-4)   # positions matter


def test_text_tower_is_causal_and_reads_the_last_token(tok, text_tower):
    # causal: a word's state depends only on the words before it
    ids = tok(["a red circle and a blue square", "a red circle and a green star"])
    _, tokens = text_tower(ids, return_tokens=True)
    assert torch.allclose(tokens[0, :4], tokens[1, :4], atol=1e-5)
    assert not torch.allclose(tokens[0, 5:], tokens[1, 5:], atol=1e-4)
    # last-token pooling: the output is the projection of the last real token's state
    n = int((ids[0] != 0).sum())
    assert torch.allclose(text_tower(ids)[0], text_tower.proj(tokens[0, n - 1]), atol=1e-5)


def test_text_tower_separates_swapped_bindings(tok, text_tower):
    ids = tok(["a red circle and a blue square", "a blue circle and a red square"])
    out = text_tower(ids)
    assert not torch.allclose(out[0], out[1], atol=1e-4)          # same words, other binding
    bag = models.TextTower(len(tok), embed_dim=32, width=48, depth=1, heads=4, causal=False, pool="mean").eval()
    with torch.no_grad():
        bag.positional_embedding.zero_()                          # no positions: a bag of words
    out = bag(ids)
    assert torch.allclose(out[0], out[1], atol=1e-5)


def test_text_tower_bad_input(tok, text_tower):
    ids = tok(["a red circle"])
    with pytest.raises(ValueError, match="ids"):
        text_tower(ids, embeds=text_tower.token_embedding(ids))
    with pytest.raises(ValueError, match="ids"):
        text_tower()
    with pytest.raises(ValueError, match="ids"):
        text_tower(ids[0])                                     # 1-D
    with pytest.raises(ValueError, match="ids"):
        text_tower(torch.ones(1, 41, dtype=torch.long))       # longer than the context
    with pytest.raises(ValueError, match="embeds"):
        text_tower(embeds=torch.randn(1, 5, 47))             # wrong width
    with pytest.raises(ValueError, match="embeds"):
        text_tower(embeds=torch.randn(5, 48))
    # values are not read in the forward pass (it runs inside training steps): a NaN
    # reaches the loss, which train.fit checks every step
    assert torch.isnan(text_tower(embeds=torch.full((1, 5, 48), float("nan")))).all()
    with pytest.raises(ValueError, match="vocab_size"):
        models.TextTower(0)
    with pytest.raises(ValueError, match="depth"):
        models.TextTower(10, depth=0)



@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_text_tower_rejects_float_or_bool_ids(tok, text_tower, dtype):
    ids = tok(["a red circle", "a blue square"]).to(dtype)
    with pytest.raises(ValueError, match="ids"):
        text_tower(ids)


def test_text_tower_embeds_path_equals_trimmed_ids_path(tok, text_tower):
    ids = tok(["a red circle", "a large blue square left of a small red star", "a tiny dot"])
    mask = ids != tok.pad_id
    longest = int(mask.sum(1).max())
    assert longest < ids.shape[1]                     # there is an all-pad tail to trim
    out_ids, tok_ids = text_tower(ids, return_tokens=True)
    trimmed = ids[:, :longest]
    out_emb, tok_emb = text_tower(embeds=text_tower.token_embedding(trimmed),
                                  mask=mask[:, :longest], return_tokens=True)
    assert torch.allclose(out_ids, out_emb, atol=1e-5)
    assert tok_ids.shape == tok_emb.shape == (3, longest, 48)
    assert torch.allclose(tok_ids, tok_emb, atol=1e-5)


def test_text_tower_return_tokens_shape(tok, text_tower):
    ids = tok(["a red circle", "star"])                      # 5 and 3 tokens with <bos>/<eos>
    out, tokens = text_tower(ids, return_tokens=True)
    assert out.shape == (2, 32)
    assert tokens.shape == (2, 5, 48)
    emb = torch.randn(4, 7, 48)
    out, tokens = text_tower(embeds=emb, return_tokens=True)
    assert out.shape == (4, 32)
    assert tokens.shape == (4, 7, 48)


def test_context_length_leaves_room_beyond_longest_caption(tok):
    scenes = world.sample_scenes(500, seed=0)
    texts = []
    for style in ("full", "partial"):
        for held_out in (False, True):
            texts += world.captions(scenes, seed=1, style=style, held_out=held_out)[0]
    texts += world.captions(scenes, style="canonical")[0]
    lengths = [len(tok.encode(t)) + 2 for t in texts]            # with <bos> and <eos>
    longest = max(lengths)
    assert longest + 16 <= tok.context_length, (longest, tok.context_length)
    ids = tok(texts)                                             # tokenises without error
    assert int((ids != tok.pad_id).sum(1).max()) == longest


# --------------------------------------------------------------------------- image
def test_image_tower_shapes(image_tower):
    x = torch.rand(3, 3, 32, 32)
    out = image_tower(x)
    assert out.shape == (3, 24)
    out2, tokens = image_tower(x, return_tokens=True)
    assert torch.allclose(out, out2, atol=1e-5)     # the fast path computes only the CLS row
    assert image_tower.n_patches == 16
    assert tokens.shape == (3, 1 + 16, 32)


def test_image_tower_patches_path_equals_images_path(image_tower):
    x = torch.rand(2, 3, 32, 32)
    patches = image_tower.patchify(x)
    assert patches.shape == (2, 16, 32)
    assert torch.allclose(image_tower(patches=patches), image_tower(x), atol=1e-5)
    _, t1 = image_tower(x, return_tokens=True)
    _, t2 = image_tower(patches=patches, return_tokens=True)
    assert torch.allclose(t1, t2, atol=1e-5)


def test_image_tower_cls_only_last_block_is_exact(image_tower):
    images = torch.rand(4, 3, 32, 32)
    fast = image_tower(images)                                   # last block: CLS row only
    full, tokens = image_tower(images, return_tokens=True)       # every row
    assert torch.allclose(fast, full, atol=1e-5)
    assert tokens.shape == (4, 1 + image_tower.n_patches, 32)


def test_causal_encoder_rejects_first_only():
    enc = models.Encoder(16, 1, 2, causal=True)
    with pytest.raises(ValueError, match="first_only"):
        enc(torch.randn(2, 3, 16), first_only=True)


def test_text_tower_bad_pool(tok):
    with pytest.raises(ValueError, match="pool"):
        models.TextTower(len(tok), pool="max")


def test_image_tower_bad_input(image_tower):
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="images"):
        image_tower(torch.rand(2, 3, 16, 16))                 # wrong image size
    with pytest.raises(ValueError, match="images"):
        image_tower(torch.rand(2, 3, 32, 24))
    with pytest.raises(ValueError, match="patches"):
        image_tower(patches=torch.randn(2, 16, 31))           # wrong patch width
    with pytest.raises(ValueError, match="patches"):
        image_tower(patches=torch.randn(2, 15, 32))           # wrong patch count
    with pytest.raises(ValueError, match="patches"):
        image_tower(x, patches=image_tower.patchify(x))       # both
    with pytest.raises(ValueError, match="images"):
        image_tower()                                         # neither
    with pytest.raises(ValueError, match="image_size"):
        models.ImageTower(30, patch_size=8)                   # not a multiple of patch_size
    with pytest.raises(ValueError, match="patch_size"):
        models.ImageTower(32, patch_size=0)


# --------------------------------------------------------------------------- audio, video
def test_audio_tower_shapes_and_bad_mel():
    torch.manual_seed(0)
    tower = models.AudioTower().eval()
    assert tower.n_mels == 32
    assert tower(torch.randn(3, 32, 32)).shape == (3, 128)
    with pytest.raises(ValueError, match="mel"):
        tower(torch.randn(3, 16, 32))                         # wrong n_mels
    with pytest.raises(ValueError, match="mel"):
        tower(torch.randn(3, 32, 33))                         # more frames than the tower has
    with pytest.raises(ValueError, match="mel"):
        tower(torch.randn(32, 32))                            # 2-D


def test_video_tower_shapes_and_bad_video():
    torch.manual_seed(0)
    tower = models.VideoTower().eval()
    assert tower(torch.rand(2, 4, 3, 32, 32)).shape == (2, 128)
    with pytest.raises(ValueError, match="video"):
        tower(torch.rand(2, 3, 3, 32, 32))                    # wrong frame count
    with pytest.raises(ValueError, match="video"):
        tower(torch.rand(2, 4, 3, 16, 16))                    # wrong frame size
    with pytest.raises(ValueError, match="video"):
        tower(torch.rand(4, 3, 32, 32))                       # 4-D


# --------------------------------------------------------------------------- mini-CLIP
def test_mini_clip_shapes_and_logit_scale(tok):
    torch.manual_seed(0)
    clip = pretrained.build_mini_clip().eval()
    img = clip.encode_image(torch.rand(3, 3, 32, 32))
    txt = clip.encode_text(tok(["a red circle", "a blue square", "a green star in the top"]))
    assert img.shape == (3, 128)
    assert txt.shape == (3, 128)
    assert clip.logit_scale.requires_grad
    assert clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)
    i2, t2, scale = clip(torch.rand(2, 3, 32, 32), tok(["a red circle", "star"]))
    assert i2.shape == t2.shape == (2, 128)
    assert scale is clip.logit_scale


def test_count_parameters_trainable_only_by_default():
    torch.manual_seed(0)
    clip = pretrained.build_mini_clip()
    total = models.count_parameters(clip)
    assert total == sum(p.numel() for p in clip.parameters())
    image_count = models.count_parameters(clip.image_tower)
    text_count = models.count_parameters(clip.text_tower)
    assert image_count > 0 and text_count > 0
    assert total == image_count + text_count + 1                 # + logit_scale
    clip.image_tower.requires_grad_(False)
    assert models.count_parameters(clip) == total - image_count
    assert models.count_parameters(clip, trainable_only=False) == total
    assert models.count_parameters(clip.image_tower) == 0
    with pytest.raises(ValueError, match="module"):
        models.count_parameters([torch.zeros(3)])
    with pytest.raises(ValueError, match="module"):
        models.count_parameters(torch.zeros(3))


def test_towers_provide_the_declared_interface():
    from tutorlib.models import interface
    tok = world.Tokenizer()
    text, image = models.TextTower(len(tok), embed_dim=16, depth=1), models.ImageTower(32, embed_dim=16, depth=1)
    assert isinstance(text, models.PromptableText) and isinstance(image, models.PromptableImage)
    interface.require("text_tower", text, models.PromptableText)
    interface.require("image_tower", image, models.PromptableImage)
    with pytest.raises(ValueError, match="text_tower.*token_embedding"):
        interface.require("text_tower", image, models.PromptableText)
    with pytest.raises(ValueError, match="image_tower.*patchify"):
        interface.require("image_tower", text, models.PromptableImage)


def test_prompt_and_inversion_entry_points_name_a_tower_without_the_interface():
    from tutorlib.methods import inversion, prompts
    tok = world.Tokenizer()
    audio = models.AudioTower(embed_dim=16, depth=1)
    with pytest.raises(ValueError, match="text_tower"):
        prompts.PromptLearner(audio, tok, ["circle"])
    with pytest.raises(ValueError, match="image_tower"):
        inversion.encode_pseudo_patches(audio, torch.randn(2, 1, 16))


@pytest.mark.parametrize("depth", [1, 3])
def test_text_tower_shared_prefix_path_equals_the_whole_prompts(tok, depth):
    torch.manual_seed(0)
    tower = models.TextTower(len(tok), embed_dim=32, width=48, depth=depth, heads=4).eval()
    prefix = torch.randn(5, 48, requires_grad=True)                    # shared by every prompt
    tails, lengths = torch.randn(4, 3, 48), torch.tensor([3, 1, 2, 3])
    mask = torch.arange(3)[None] < lengths[:, None]                    # padding after the real tokens
    whole = torch.cat([prefix.expand(4, -1, -1), tails], 1)
    ref = tower(embeds=whole, mask=torch.cat([torch.ones(4, 5, dtype=torch.bool), mask], 1))
    fast = tower.from_prefix(tower.prefix_keys(prefix), tails, mask)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)
    g_fast, = torch.autograd.grad(fast.square().sum(), prefix)
    g_ref, = torch.autograd.grad(ref.square().sum(), prefix)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-4, rtol=1e-3)
    full_rows = tower.from_prefix(tower.prefix_keys(prefix), tails[[0, 3]])   # no mask: the last position alone
    torch.testing.assert_close(full_rows, ref[[0, 3]], atol=1e-5, rtol=1e-4)


def test_text_tower_prefix_path_needs_a_causal_tower_read_at_its_last_token(tok):
    tower = models.TextTower(len(tok), embed_dim=32, width=48, depth=1, heads=4, causal=False, pool="mean")
    with pytest.raises(ValueError, match="causal"):
        tower.prefix_keys(torch.randn(3, 48))
