"""tutorlib.models.hf_clip: a tiny random transformers.CLIPModel behind the tower protocol,
checked against the model's own get_text_features / get_image_features and run through the
lessons' methods (CoOp, OTI/OVI, FILIP, the modality gap). Offline: nothing is downloaded."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from tutorlib.objectives import finegrained
from tutorlib.methods import inversion, prompts, restore
from tutorlib.evaluation import metrics
from tutorlib import world
from tutorlib.models import hf_clip  # noqa: E402
from tutorlib.models.hf_clip import HFCLIP, HFImageTower, HFTextTower   # noqa: E402
from tutorlib.models.interface import PromptableImage, PromptableText, require   # noqa: E402

CONTEXT = 16


@pytest.fixture(scope="module")
def tok():
    # the course's word-level tokenizer drives CoOp and OTI here, so the tiny CLIP's vocabulary
    # is that tokenizer's (vocab_size = len(tok), pad/bos/eos = its 0/2/3): its ids are then
    # valid rows of the token embedding, and HF pools at the first eos_token_id, our <eos>
    return world.Tokenizer(context_length=CONTEXT)


@pytest.fixture(scope="module")
def hf(tok):
    torch.manual_seed(0)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=CONTEXT, pad_token_id=tok.pad_id,
                bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)
    cfg = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    return transformers.CLIPModel(cfg).eval()


@pytest.fixture(scope="module")
def clip(hf, tok):
    return HFCLIP(hf, tok)


def _features(out):
    """transformers >= 5 returns a ModelOutput whose pooler_output is the projected feature."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


CAPTIONS = ["a red circle", "a large blue square above a small green star", "star"]


def test_towers_provide_the_protocol(clip):
    assert isinstance(clip.text_tower, PromptableText)
    assert isinstance(clip.image_tower, PromptableImage)
    require("text_tower", clip.text_tower, PromptableText)
    require("image_tower", clip.image_tower, PromptableImage)
    assert (clip.text_tower.width, clip.text_tower.context_length) == (32, CONTEXT)
    assert (clip.image_tower.width, clip.image_tower.n_patches) == (32, 16)
    assert len(clip.text_tower.encoder.blocks) == len(clip.image_tower.encoder.blocks) == 2


def test_the_wrapper_is_a_mini_clip_with_the_model_s_temperature(hf, clip, tok):
    from tutorlib.models import MiniCLIP
    assert isinstance(clip, MiniCLIP) and clip.logit_scale is hf.logit_scale
    images, ids = torch.rand(2, 3, 32, 32), clip.tokenize(CAPTIONS[:2])
    img, txt, scale = clip(images, ids)
    assert scale is hf.logit_scale
    assert torch.equal(img, clip.image_tower(images)) and torch.equal(txt, clip.text_tower(ids))


def test_text_equals_hf_by_ids_and_by_embeddings(hf, clip, tok):
    ids = tok(CAPTIONS)
    with torch.no_grad():
        mask = ids != tok.pad_id
        ref = _features(hf.get_text_features(input_ids=ids, attention_mask=mask.long()))
        got, tokens = clip.text_tower(ids, return_tokens=True)
        via_embeds = clip.text_tower(embeds=clip.text_tower.token_embedding(ids), mask=mask)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(via_embeds, ref, atol=1e-5, rtol=0)
    assert tokens.shape == (3, int(mask.sum(1).max()), 32)       # all-padding columns dropped
    torch.testing.assert_close(clip.encode_text(ids), ref, atol=1e-5, rtol=0)


def test_pad_equal_to_eos_marks_tokens_up_to_the_first_eos(hf):
    """OpenAI's tokenizer pads with <eos>: the real tokens run to each row's first <eos>."""
    tower = HFTextTower(hf, pad_id=3, eos_id=3)
    ids = torch.tensor([[2, 10, 11, 3, 3, 3], [2, 12, 3, 3, 3, 3]])
    mask = tower.real_tokens(ids)
    assert mask.sum(1).tolist() == [4, 3]
    with torch.no_grad():
        ref = _features(hf.get_text_features(input_ids=ids, attention_mask=mask.long()))
        torch.testing.assert_close(tower(ids), ref, atol=1e-5, rtol=0)


def test_image_equals_hf_and_resizes_other_sizes(hf, clip):
    torch.manual_seed(1)
    images = torch.rand(4, 3, 32, 32)
    pixels = (images - torch.tensor(hf_clip.OPENAI_MEAN)[:, None, None]) \
        / torch.tensor(hf_clip.OPENAI_STD)[:, None, None]
    with torch.no_grad():
        ref = _features(hf.get_image_features(pixel_values=pixels))
        got, tokens = clip.image_tower(images, return_tokens=True)
        via_patches = clip.image_tower(patches=clip.image_tower.patchify(images))
        big = clip.image_tower(torch.rand(2, 3, 64, 64))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(via_patches, ref, atol=1e-5, rtol=0)
    assert tokens.shape == (4, 17, 32) and big.shape == (2, 16)


def test_hidden_then_from_hidden_is_the_full_pass(clip, tok):
    ids, images = tok(CAPTIONS), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        text, image = clip.text_tower(ids), clip.image_tower(images)
        for k in range(3):
            x, mask = clip.text_tower.hidden(ids, k)
            torch.testing.assert_close(clip.text_tower.from_hidden(x, mask, k), text,
                                       atol=1e-5, rtol=0)
            h = clip.image_tower.hidden(images, k)
            assert h.shape == (2, 17, 32)
            torch.testing.assert_close(clip.image_tower.from_hidden(h, k), image,
                                       atol=1e-5, rtol=0)


def test_coop_prompt_learner_runs_and_trains_the_context(clip, tok):
    learner = prompts.PromptLearner(clip.text_tower, tok, ["red circle", "blue square", "star"],
                                    n_ctx=4)
    class_emb = learner()
    assert class_emb.shape == (3, 16) and bool(torch.isfinite(class_emb).all())
    class_emb.pow(2).sum().backward()
    assert learner.ctx.grad is not None and bool(learner.ctx.grad.abs().sum() > 0)
    hand = prompts.PromptLearner(clip.text_tower, tok, ["red circle"], init="a photo of a")
    with torch.no_grad():          # the context initialised from words is the hand-made prompt
        torch.testing.assert_close(hand(), clip.encode_text(tok(["a photo of a red circle"])),
                                   atol=1e-5, rtol=0)
    clip.requires_grad_(True)


def test_restore_pieces_run(clip, tok):
    """RESTORE reads ``positional_embedding`` and runs ``encoder`` block by block (undeclared
    by the protocol: the adapter provides them) and appends visual prompts to hidden states."""
    classes = ["red circle", "star"]
    learner = prompts.PromptLearner(clip.text_tower, tok, classes, n_ctx=2)
    with torch.no_grad():
        shift = restore.text_shift_per_block(learner, tok([f"a photo of a {c}" for c in classes]))
        img = restore.encode_image_with_prompts(clip.image_tower, torch.rand(2, 3, 32, 32),
                                                torch.zeros(3, 32), layer=1)
    assert shift.shape == (2,) and bool(torch.isfinite(shift).all()) and img.shape == (2, 16)
    clip.requires_grad_(True)


def test_oti_and_ovi_run(clip, tok):
    with torch.no_grad():
        image_emb = clip.encode_image(torch.rand(3, 3, 32, 32))
        text_emb = clip.encode_text(tok(CAPTIONS))
    tokens, losses = inversion.oti(clip.text_tower, tok, image_emb, steps=3, progress=False)
    assert tokens.shape == (3, 1, 32) and losses.shape == (3,)
    assert bool(torch.isfinite(tokens).all() and torch.isfinite(losses).all())
    assert inversion.encode_with_pseudo_tokens(clip.text_tower, tok, tokens).shape == (3, 16)
    patches, losses = inversion.ovi(clip.image_tower, text_emb, n_tokens=2, steps=3,
                                    progress=False)
    assert patches.shape == (3, 2, 32) and bool(torch.isfinite(losses).all())
    assert all(p.grad is None for p in clip.parameters())


def test_modality_gap_and_filip_tokens(clip, tok):
    ids, images = tok(CAPTIONS), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        image_emb = clip.encode_image(torch.rand(3, 3, 32, 32))
        gap = metrics.modality_gap(image_emb, clip.encode_text(ids))
        x = finegrained.image_tokens(clip.image_tower, images)
        y, mask = finegrained.text_tokens(clip.text_tower, ids)
        s_i, s_t = finegrained.token_similarity(x, y, mask)
        enc = finegrained.encode(clip, images, ids)
    assert 0 <= gap < 2
    assert x.shape == (2, 16, 16) and y.shape == (3, mask.shape[1], 16)
    assert s_i.shape == s_t.shape == (2, 3)
    assert all(bool(torch.isfinite(t).all()) for t in (x, y, s_i, s_t, enc["x"], enc["y"]))


def test_bad_inputs_name_the_argument(hf, clip, tok):
    ids = tok(CAPTIONS)
    cases = [(lambda: clip.text_tower(ids, embeds=torch.zeros(3, 4, 32)), "ids, embeds"),
             (lambda: clip.text_tower(ids.float()), "ids"),
             (lambda: clip.text_tower(embeds=torch.zeros(3, 4, 8)), "embeds"),
             (lambda: clip.text_tower(embeds=torch.zeros(3, 4, 32), mask=torch.ones(3, 4)),
              "mask"),
             (lambda: clip.text_tower(torch.full((2, 20), 5)), "ids"),
             (lambda: clip.text_tower.hidden(ids, 3), "stop"),
             (lambda: clip.image_tower(torch.rand(2, 1, 32, 32)), "images"),
             (lambda: clip.image_tower(patches=torch.zeros(2, 9, 32)), "patches"),
             (lambda: HFTextTower(torch.nn.Linear(2, 2)), "model"),
             (lambda: HFImageTower(hf, std=(1.0, 0.0, 1.0)), "std"),
             (lambda: HFTextTower(hf, pad_id=10_000), "pad_id"),
             (lambda: HFCLIP(hf).tokenize(["a"]), "tokenizer"),
             (lambda: hf_clip.HFTokenizer(object()), "tokenizer"),
             (lambda: hf_clip.from_pretrained(""), "name_or_path")]
    for call, name in cases:
        with pytest.raises(ValueError, match=f"^{name}"):
            call()


def test_hf_tokenizer_gives_the_course_interface(tmp_path, hf):
    """A real CLIPTokenizer over a tiny character vocabulary written here (no download)."""
    import json
    chars = "abcdefghij"                    # 22 ids, valid rows of the tiny model's 53
    vocab = {w: i for i, w in enumerate([*chars, *(c + "</w>" for c in chars),
                                         "<|startoftext|>", "<|endoftext|>"])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    hf_tok = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    tok = hf_clip.HFTokenizer(hf_tok, context_length=CONTEXT)
    assert tok.encode("ab c") == [0, 11, 12] and tok.vocab[20] == "<|startoftext|>"
    ids = tok(["ab c", "d"])
    assert ids.tolist()[1] == [20, 13, 21, 21, 21] and tok.pad_id == tok.eos_id == 21
    model = HFCLIP(hf, hf_tok)      # wrapped; pad == eos: real tokens run to the first <eos>
    assert model.text_tower.real_tokens(ids).sum(1).tolist() == [5, 3]
    assert model.tokenize("d").shape == (1, 3)


def test_importing_the_models_leaves_transformers_unimported():
    import subprocess
    import sys
    code = "import sys, tutorlib.models; assert 'transformers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
