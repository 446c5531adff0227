"""tutorlib.methods.progressive: the Universal Projection, its stages, and what stays frozen;
and tutorlib.methods.stages, lesson 05's bench around them."""
import pytest
import torch
import torch.nn.functional as F

from tutorlib.objectives import losses
from tutorlib.evaluation import metrics
from tutorlib.methods import progressive, stages

WIDTHS = {"image": 16, "text": 24, "audio": 12, "video": 16}
LENGTHS = {"image": 5, "text": 7, "audio": 6, "video": 9}


def feats(modality, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, LENGTHS[modality], WIDTHS[modality], generator=g)
    mask = None
    if modality == "text":
        mask = torch.arange(LENGTHS["text"])[None] < torch.randint(2, LENGTHS["text"] + 1, (n, 1), generator=g)
    return {"tokens": tokens, "mask": mask}


def stage1_model(dim=16):
    torch.manual_seed(0)
    return progressive.OneEncoder(dim, attn_heads=4, token_dim=8, dropout=0.0) \
        .add_modality("image", WIDTHS["image"]).add_modality("text", WIDTHS["text"])


def test_shapes_and_unit_norm_for_every_modality():
    model = stage1_model()
    model.add_modality("audio", WIDTHS["audio"], freeze=True).add_modality("video", WIDTHS["video"], freeze=True)
    model.eval()
    for m in WIDTHS:
        f = feats(m)
        y, u = model.encode(m, f["tokens"], f["mask"], return_tokens=True)
        assert y.shape == (12, 16) and u.shape == (12, LENGTHS[m], 16)
        assert torch.allclose(y.norm(dim=-1), torch.ones(12), atol=1e-5)
    assert isinstance(model.heads["audio"], progressive.AlignmentLayer)
    assert not isinstance(model.heads["image"], progressive.AlignmentLayer)
    assert model.modality_tokens["audio"]().shape == (1, 16)


def test_universal_projection_is_the_equation():
    up = progressive.UniversalProjection(16, attn_heads=4, dropout=0.0).eval()
    h, t = torch.randn(3, 5, 16), torch.randn(1, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    z = h + t
    u = z + up.layer(up.norm(z), src_key_padding_mask=~mask)
    want = torch.stack([F.normalize(u[i, mask[i]].mean(0), dim=0) for i in range(3)])
    assert torch.allclose(up(h, t, mask), want, atol=1e-5)


def test_padding_does_not_change_the_embedding():
    model = stage1_model().eval()
    f = feats("text")
    noisy = f["tokens"].clone()
    noisy[~f["mask"]] = 100.0
    assert torch.allclose(model.encode("text", f["tokens"], f["mask"]), model.encode("text", noisy, f["mask"]), atol=1e-5)


def test_projection_head_layer_order():
    head = progressive.ProjectionHead(8, 6, dropout=0.0).eval()
    lin1, _, lin2, _, ln = head.net
    x = torch.randn(2, 3, 8)
    assert torch.allclose(head(x), ln(lin2(F.gelu(lin1(x)))), atol=1e-6)


def test_later_stage_leaves_stage1_bit_identical_and_gets_no_gradient():
    model = stage1_model()
    hist = progressive.fit_pairs(model, ("image", feats("image")), ("text", feats("text")), steps=5,
                                 batch_size=8, progress=False)
    assert len(hist["loss"]) == 5
    before = {k: v.clone() for k, v in model.state_dict().items()}
    img_before = progressive.embed(model, "image", feats("image", seed=3))
    stage1_count = sum(p.numel() for p in model.parameters())
    model.add_modality("audio", WIDTHS["audio"], freeze=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("heads.audio.", "modality_tokens.audio.")) for n in trainable)
    # one backward: only the audio pieces receive a gradient
    targets = progressive.embed(model, "image", feats("image"))
    losses.clip_loss(model.encode("audio", feats("audio")["tokens"]), targets, torch.tensor(2.5)).backward()
    assert all((p.grad is not None) == p.requires_grad for p in model.parameters())
    model.zero_grad(set_to_none=True)
    audio_before = {k: v.clone() for k, v in model.state_dict().items() if ".audio." in k}
    progressive.fit_pairs(model, ("audio", feats("audio")), ("image", feats("image")), steps=5,
                          batch_size=8, progress=False)
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in before.items())
    assert any(not torch.equal(v, state[k]) for k, v in audio_before.items())     # audio did train
    assert torch.equal(progressive.embed(model, "image", feats("image", seed=3)), img_before)
    new = sum(p.numel() for m in (model.heads["audio"], model.modality_tokens["audio"]) for p in m.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == new < stage1_count


def test_fit_pairs_learns_a_pairing():
    torch.manual_seed(0)
    model = progressive.OneEncoder(16, attn_heads=4, token_dim=8, dropout=0.0) \
        .add_modality("image", 16).add_modality("audio", 12)
    a = torch.randn(64, 4, 16)
    b = {"tokens": a[:, :, :12] * 2 + 0.05 * torch.randn(64, 4, 12), "mask": None}
    hist = progressive.fit_pairs(model, ("image", {"tokens": a, "mask": None}), ("audio", b), steps=60,
                                 batch_size=32, lr=3e-3, progress=False)
    assert sum(hist["loss"][-5:]) / 5 < 0.6 * sum(hist["loss"][:5]) / 5
    assert not model.training and next(model.parameters()).device.type == "cpu"


def test_embed_keeps_training_mode_and_batches():
    model = stage1_model().train()
    f = feats("text", n=10)
    whole = progressive.embed(model, "text", f, batch_size=100)
    assert model.training
    assert torch.allclose(progressive.embed(model, "text", f, batch_size=3), whole, atol=1e-6)


def test_bad_inputs_say_what_was_wrong():
    model = stage1_model()
    with pytest.raises(ValueError, match="modality.*'smell'"):
        model.encode("smell", torch.randn(2, 3, 16))
    with pytest.raises(ValueError, match="tokens: got width 15 for modality 'image', expected 16"):
        model.encode("image", torch.randn(2, 3, 15))
    with pytest.raises(ValueError, match="mask"):
        model.encode("text", torch.randn(2, 3, 24), torch.ones(2, 3))
    with pytest.raises(ValueError, match="tokens"):
        model.encode("image", torch.randn(3, 16))
    with pytest.raises(ValueError, match=r"^name: got 'image', expected a new modality"):
        model.add_modality("image", 16)
    with pytest.raises(ValueError, match="attn_heads"):
        progressive.UniversalProjection(10, attn_heads=4)
    with pytest.raises(ValueError, match="in_dim"):
        model.add_modality("audio", 0)
    with pytest.raises(ValueError, match="b's tokens"):
        progressive.fit_pairs(model, ("image", feats("image", n=4)), ("text", feats("text", n=5)), steps=1)
    with pytest.raises(ValueError, match=r"^a: got Tensor, expected a dict with 'tokens'"):
        progressive.fit_pairs(model, ("image", torch.randn(4, 5, 16)), ("text", feats("text", n=4)), steps=1)
    with pytest.raises(ValueError, match="modality.*'smell'"):
        progressive.fit_pairs(model, ("smell", feats("image")), ("text", feats("text")), steps=1)
    empty_mask = torch.ones(2, 3, dtype=torch.bool)
    empty_mask[1] = False
    with pytest.raises(ValueError, match="mask: got 1 rows with no real token"):
        model.encode("text", torch.randn(2, 3, 24), empty_mask)
    with pytest.raises(ValueError, match="mask: got torch.bool of shape \\(2, 3, 1\\)"):
        progressive.masked_mean(torch.randn(2, 3, 4), torch.ones(2, 3, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask: got torch.float32"):     # checked before the layer uses it
        progressive.UniversalProjection(16).eval()(torch.randn(2, 3, 16), torch.randn(1, 16), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask: got list"):
        model.encode("text", torch.randn(2, 3, 24), [[True] * 3] * 2)
    with pytest.raises(ValueError, match="freeze: got True for the first modality"):
        progressive.OneEncoder(16).add_modality("image", 16, freeze=True)
    with pytest.raises(ValueError, match="dropout"):
        progressive.OneEncoder(16, dropout=1.5)
    with pytest.raises(ValueError, match="hidden"):
        progressive.ModalityToken(16, hidden=(64,))
    with pytest.raises(ValueError, match="a: got Tensor, expected a \\(modality name, features\\) pair"):
        progressive.fit_pairs(model, torch.randn(3), ("text", feats("text")), steps=1)
    with pytest.raises(ValueError, match="steps"):
        progressive.fit_pairs(model, ("image", feats("image")), ("text", feats("text")), steps=0)
    with pytest.raises(ValueError, match="feats: got 0 rows"):
        progressive.embed(model, "image", {"tokens": torch.randn(0, 5, 16), "mask": None})
    with pytest.raises(ValueError, match=r"^after_step: got int, expected a callable"):
        progressive.fit_pairs(model, ("image", feats("image")), ("text", feats("text")), steps=1, after_step=3)
    model.add_modality("audio", WIDTHS["audio"], freeze=True)
    with pytest.raises(ValueError, match="^a, b: got modalities .* both frozen.*trainable now: \\['audio'\\]"):
        progressive.fit_pairs(model, ("image", feats("image")), ("text", feats("text")), steps=1)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="^model: got no trainable parameters"):
        progressive.fit_pairs(model, ("image", feats("image")), ("text", feats("text")), steps=1)
    with pytest.raises(ValueError, match="model"):
        progressive.embed(torch.nn.Linear(2, 2), "image", feats("image"))


def test_modality_token_is_three_numbers_through_an_mlp_as_in_the_official_code():
    token = progressive.ModalityToken(16)
    assert token.token.shape == (1, 3)
    assert [m.out_features for m in token.mlp if isinstance(m, torch.nn.Linear)] == [64, 128, 16]
    assert progressive.OneEncoder(16).token_dim == 3


def test_a_trainable_up_in_a_later_stage_moves_the_earlier_modalities():
    model = stage1_model()
    progressive.fit_pairs(model, ("image", feats("image")), ("text", feats("text")), steps=5, batch_size=8, progress=False)
    img_before, txt_before = (progressive.embed(model, m, feats(m, seed=3)) for m in ("image", "text"))
    frozen_head = {k: v.clone() for k, v in model.heads["image"].state_dict().items()}
    up_before = {k: v.clone() for k, v in model.up.state_dict().items()}
    model.add_modality("audio", WIDTHS["audio"], freeze=True)
    model.up.requires_grad_(True)                           # the ablation: the UP is left trainable
    seen = []
    progressive.fit_pairs(model, ("audio", feats("audio")), ("image", feats("image")), steps=4, batch_size=8,
                          progress=False, after_step=lambda step: seen.append((step, model.up.training)))
    assert [s for s, _ in seen] == [0, 1, 2, 3] and all(training for _, training in seen)   # the UP trains
    assert all(torch.equal(v, model.heads["image"].state_dict()[k]) for k, v in frozen_head.items())
    assert any(not torch.equal(v, model.up.state_dict()[k]) for k, v in up_before.items())
    assert not torch.allclose(progressive.embed(model, "image", feats("image", seed=3)), img_before)
    assert not torch.allclose(progressive.embed(model, "text", feats("text", seed=3)), txt_before)


def test_cosine_tracker_records_the_mean_paired_cosine():
    model = stage1_model()
    model.add_modality("audio", WIDTHS["audio"], freeze=True)
    probe = feats("audio", n=6, seed=4)
    img = progressive.embed(model, "image", feats("image", n=6, seed=5))
    tracker = progressive.CosineTracker(model, "audio", probe, {"image": 3 * img, "minus": -img}, every=2, steps=5)
    progressive.fit_pairs(model, ("audio", feats("audio")), ("image", feats("image")), steps=5, batch_size=8,
                          progress=False, after_step=tracker)
    assert tracker.history["step"] == [1, 2, 4, 5]
    y = progressive.embed(model, "audio", probe)
    want = (y * img).sum(-1).mean().item()                  # targets are normalised: 3 * img counts as img
    assert tracker.history["image"][-1] == pytest.approx(want, abs=1e-5)
    assert tracker.history["minus"][-1] == pytest.approx(-want, abs=1e-5)
    assert len(set(tracker.history["image"])) > 1          # it moved while training
    with pytest.raises(ValueError, match=r"targets\['image'\]: got shape \(5, 16\), expected \(6, 16\)"):
        progressive.CosineTracker(model, "audio", probe, {"image": img[:5]})
    with pytest.raises(ValueError, match="name.*'smell'"):
        progressive.CosineTracker(model, "smell", probe, {"image": img})
    with pytest.raises(ValueError, match="targets: got dict, expected a non-empty dict"):
        progressive.CosineTracker(model, "audio", probe, {})
    with pytest.raises(ValueError, match="every"):
        progressive.CosineTracker(model, "audio", probe, {"image": img}, every=0)


# ---- lesson 05's bench (tutorlib.methods.stages) --------------------------------------
def test_rows_are_the_same_dict_cut_to_a_range():
    f = feats("text")
    part = stages.rows(f, range(3, 8))
    assert torch.equal(part["tokens"], f["tokens"][3:8]) and torch.equal(part["mask"], f["mask"][3:8])
    assert stages.rows(feats("image"), range(0, 4))["mask"] is None
    with pytest.raises(ValueError, match="r: got range"):
        stages.rows(f, range(0, 8, 2))
    with pytest.raises(ValueError, match="feats: got Tensor"):
        stages.rows(f["tokens"], range(0, 2))


def test_zero_shot_scores_each_attribute_against_the_prompts_text_embeddings():
    model = stage1_model().eval()
    emb = progressive.embed(model, "image", feats("image"))
    prompt_feats = {"shape": feats("text", n=6, seed=1), "colour": feats("text", n=3, seed=2)}
    g = torch.Generator().manual_seed(0)
    labels = {"shape": torch.randint(6, (12,), generator=g), "colour": torch.randint(3, (12,), generator=g)}
    got = stages.zero_shot(model, emb, prompt_feats, labels)
    assert list(got) == ["shape", "colour"]
    for a in got:
        assert got[a] == metrics.zero_shot_accuracy(emb, progressive.embed(model, "text", prompt_feats[a]), labels[a])
    with pytest.raises(ValueError, match="prompt_feats, labels"):
        stages.zero_shot(model, emb, prompt_feats, {"shape": labels["shape"]})


def test_step_times_time_both_steps_and_leave_minilm_frozen():
    from tutorlib import world
    from tutorlib.zoo import unimodal
    from tutorlib.zoo.minilm import load_minilm
    minilm = load_minilm()
    images = world.images_float(world.render_images(world.sample_scenes(4)))
    torch.manual_seed(0)
    width = unimodal.make_backbone("image")(images, return_tokens=True)[1].shape[-1]
    model = progressive.OneEncoder(16, token_dim=8, dropout=0.0).add_modality("image", width).add_modality("text", 384)
    image_feats = {"tokens": torch.randn(6, 5, width), "mask": None}
    text_feats = {"tokens": torch.randn(6, 7, 384), "mask": torch.ones(6, 7, dtype=torch.bool)}
    t_e2e, t_stage1 = stages.step_times(model, minilm, ["a red circle"] * 4, images, image_feats, text_feats)
    assert t_e2e > 0 and t_stage1 > 0
    assert not minilm.model.training and not any(p.requires_grad for p in minilm.model.parameters())
    assert all(p.grad is None for p in model.parameters())                    # a copy trained, not the model
    with pytest.raises(ValueError, match="images: got 4, expected one per caption"):
        stages.step_times(model, minilm, ["a red circle"] * 3, images, image_feats, text_feats)
    with pytest.raises(ValueError, match="stage1_model: got Linear"):
        stages.step_times(torch.nn.Linear(2, 2), minilm, ["a"] * 4, images, image_feats, text_feats)
