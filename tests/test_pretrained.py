"""The cached course mini-CLIP: data, batches, recipe, caching, evaluation."""
import math

import pytest
import torch

from tutorlib.core import cache, profiles
from tutorlib.zoo import pretrained
from tutorlib import world
from tutorlib.zoo.pretrained import finetuning
from tutorlib.objectives import losses, objective
from tutorlib.objectives.objective import Objective


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    import os
    old = os.environ.get("TUTORLIB_CACHE")
    os.environ["TUTORLIB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield pretrained.training_data("val", n=300)
    finally:
        if old is None:
            os.environ.pop("TUTORLIB_CACHE")
        else:
            os.environ["TUTORLIB_CACHE"] = old


def test_training_data_shapes(small):
    assert small["image"].shape == (300, 3, 32, 32) and small["image"].dtype == torch.uint8
    assert small["full_ids"].shape[0] == 300 and small["attrs"].shape == (300, 2, 4)
    assert len(small["caption"]) == 300


def test_training_data_scenes_are_the_images_scenes(small, monkeypatch):
    assert torch.equal(world.scene_attributes(small["scenes"]), small["attrs"])
    texts, specs = world.captions(small["scenes"], 0)
    assert world.matches(small["attrs"], specs).diagonal().all()     # captions of these scenes hold
    monkeypatch.setenv("TUTORLIB_SEED", "1")                         # the course seed does not move the world
    again = pretrained.training_data("val", n=300)
    assert torch.equal(again["image"], small["image"])


def test_batches_targets_are_the_truth_table(small):
    images, ids, targets = pretrained.clip_batches(small, batch_size=32, seed=1)(0)
    assert images.shape == (32, 3, 32, 32) and images.dtype == torch.float32
    assert float(images.max()) <= 1.0
    assert targets.shape == (32, 32) and bool(targets.diagonal().all())
    tok = world.Tokenizer()
    # the i-th caption in the batch is the full or partial caption of the i-th scene
    texts = [tok.decode(row) for row in ids]
    assert any(t.count(" ") < 3 for t in texts), "expected some short partial captions"


def test_batches_are_deterministic(small):
    a = pretrained.clip_batches(small, 16, seed=3)(0)
    b = pretrained.clip_batches(small, 16, seed=3)(0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_plain_batches_have_no_partial_captions(small):
    _, ids, _ = pretrained.clip_batches(small, 64, partial_frac=0.0, seed=0)(0)
    full = {tuple(r.tolist()) for r in small["full_ids"]}
    assert all(tuple(r.tolist()) in full for r in ids)


def test_recipe_rejects_unknown_names():
    with pytest.raises(ValueError, match="overrides"):
        pretrained.recipe(stpes=3)
    with pytest.raises(ValueError, match="batch_size"):
        pretrained.clip_batches({"image": torch.zeros(1)}, batch_size=0)
    with pytest.raises(ValueError, match=r"^loss:"):
        pretrained.train_mini_clip(data={}, loss="hinge", steps=1, progress=False)


def test_recipe_seed_follows_environment(monkeypatch):
    monkeypatch.setenv("TUTORLIB_SEED", "7")
    assert pretrained.recipe()["seed"] == 7
    assert pretrained.recipe(seed=2)["seed"] == 2


def test_training_reduces_the_loss_and_fixed_temperature_stays(small):
    model, hist = pretrained.train_mini_clip(small, progress=False, steps=40, warmup=5,
                                             batch_size=32, embed_dim=32, depth=1)
    assert sum(hist["loss"][-5:]) < sum(hist["loss"][:5])
    model, hist = pretrained.train_mini_clip(small, progress=False, steps=5, warmup=1, batch_size=16,
                                             embed_dim=32, depth=1, loss="plain", temperature=0.1)
    assert abs(model.logit_scale.item() - torch.log(torch.tensor(10.0)).item()) < 1e-6
    assert not model.logit_scale.requires_grad


def test_mini_clip_is_cached_and_rebuilt_when_damaged(small, tmp_cache, monkeypatch):
    from tutorlib.zoo.pretrained import training
    calls = []
    real = training.train_mini_clip

    def counting(*a, **k):
        calls.append(1)
        return real(small, *a[1:], **k)
    monkeypatch.setattr(training, "train_mini_clip", counting)
    kw = dict(steps=3, warmup=1, batch_size=8, embed_dim=16, depth=1, progress=False)
    a, a_history = pretrained.mini_clip(**kw)
    b, b_history = pretrained.mini_clip(**kw)
    assert len(calls) == 1, "the second call should load from the cache"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert b_history["loss"] == pytest.approx(a_history["loss"])
    entry = next(p for p in tmp_cache.iterdir() if p.name.startswith("mini-clip-") and p.suffix == ".safetensors")
    entry.write_bytes(b"not a safetensors file")
    pretrained.mini_clip(**kw)
    assert len(calls) == 2, "a damaged entry must be rebuilt, not trusted"
    assert cache.load_tensors(entry.name) is not None


def test_evaluate_reports_everything(small):
    model, _ = pretrained.train_mini_clip(small, progress=False, steps=2, warmup=1, batch_size=8,
                                          embed_dim=16, depth=1)
    r = pretrained.evaluate(model, small)
    for k in ("i2t@1", "t2i@1", "i2t@5", "t2i@5", "chance@1", "shape", "colour", "size", "position", "gap"):
        assert k in r and 0.0 <= r[k] <= 2.0
    assert 0 < r["chance@1"] < 0.1


@pytest.fixture(scope="module")
def tiny_model(small):
    model, _ = pretrained.train_mini_clip(small, progress=False, steps=2, warmup=1, batch_size=8,
                                          embed_dim=16, depth=2)
    return model


def _changed(before, after):
    return {k for k, v in before.state_dict().items() if not torch.equal(v, after.state_dict()[k])}


@pytest.mark.parametrize("image_blocks, text_blocks", [(1, 1), (0, 2)])
def test_finetune_trains_only_what_it_says(small, tiny_model, image_blocks, text_blocks):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    tuned, history = pretrained.finetune(tiny_model, small, steps=3, batch_size=8, n_scenes=64,
                                         image_blocks=image_blocks, text_blocks=text_blocks, progress=False)
    assert len(history["loss"]) == 3
    changed = _changed(tiny_model, tuned)
    frozen_image = {f"image_tower.encoder.blocks.{b}." for b in range(2 - image_blocks)}
    frozen_text = {f"text_tower.encoder.blocks.{b}." for b in range(2 - text_blocks)}
    for k in changed:
        assert not k.startswith(("image_tower.patch_embed", "image_tower.positional", "text_tower.token_embedding"))
        assert not any(k.startswith(p) for p in frozen_image | frozen_text), k
    assert any(k.startswith("text_tower.encoder.blocks.0.") for k in changed) == (text_blocks == 2)
    assert any(k.startswith("image_tower.encoder.blocks.1.") for k in changed) == (image_blocks == 1)
    assert "image_tower.proj.weight" in changed and "text_tower.proj.weight" in changed
    assert all(not p.requires_grad for p in tuned.parameters())
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())   # a copy was tuned


def test_finetune_passes_the_batch_negatives(small, tiny_model):
    ids = pretrained.training_data("val", n=300)["full_ids"].flip(0)
    valid = torch.arange(300) % 2 == 0
    seen = []

    def loss(b):
        seen.append(None if b.negatives is None else b.negatives.shape)
        return ((b.image - b.text) ** 2).mean() + (0 if b.negatives is None else b.negatives.mean() * 0)
    pretrained.finetune(tiny_model, small, Objective(loss, negatives=(ids, valid)), steps=2, batch_size=8,
                        n_scenes=64, progress=False)
    assert len(seen) == 2 and all(s is not None and s[1] == 16 and s[0] <= 8 for s in seen)
    with pytest.raises(ValueError, match="negatives"):
        Objective(loss, negatives=(ids, valid[:5]))


def test_finetune_bad_blocks(small, tiny_model):
    with pytest.raises(ValueError, match="text_blocks"):
        pretrained.finetune(tiny_model, small, steps=1, text_blocks=3, progress=False)
    with pytest.raises(ValueError, match="image_blocks"):
        pretrained.finetune(tiny_model, small, steps=1, image_blocks=-1, progress=False)


def test_finetune_intra_modal_term_adds_to_the_loss(small, tiny_model):
    """SLIP-style views: the intra term is added (a zero objective leaves only it), and
    views keep the class token plus the asked fraction of patches."""
    def zero(b):
        return (b.image * 0).sum() + (b.text * 0).sum()

    def zero_plus_views(b):                       # what objective.slip adds, on a zero base loss
        return zero(b) + 1.0 * losses.clip_loss(*b.views, math.log(10.0))
    _, plain = pretrained.finetune(tiny_model, small, Objective(zero), steps=2, batch_size=8, n_scenes=64,
                                   progress=False)
    _, slip = pretrained.finetune(tiny_model, small, Objective(zero_plus_views, keep_patches=0.5), steps=2,
                                  batch_size=8, n_scenes=64, progress=False)
    _, slip_lib = pretrained.finetune(tiny_model, small, objective.slip(1.0), steps=2, batch_size=8,
                                      n_scenes=64, progress=False)
    _, clip_only = pretrained.finetune(tiny_model, small, None, steps=2, batch_size=8, n_scenes=64,
                                       progress=False)
    assert plain["loss"] == [0.0, 0.0] and all(v > 0 for v in slip["loss"])
    assert objective.slip(0.0) == Objective()                       # no term: CLIP's loss, no view drawn
    assert all(a > b for a, b in zip(slip_lib["loss"], clip_only["loss"]))
    h = torch.randn(3, 17, 4)
    view = finetuning._keep_tokens(h, 0.25, torch.Generator().manual_seed(0))
    assert view.shape == (3, 5, 4) and torch.equal(view[:, 0], h[:, 0])
    with pytest.raises(ValueError, match="^weight"):
        objective.slip(-1)
    with pytest.raises(ValueError, match="^keep_patches"):
        objective.slip(1, keep_patches=1.5)
    with pytest.raises(ValueError, match="^image_blocks"):
        pretrained.finetune(tiny_model, small, objective.slip(1.0), steps=1, image_blocks=0, progress=False)
    with pytest.raises(ValueError, match="^objective"):
        pretrained.finetune(tiny_model, small, lambda b: 0, steps=1, progress=False)


SETTINGS_OF_THE_MINI_CLIP = ("image_size", "train_scenes", "embed_dim", "depth", "clip_steps",
                             "clip_batch_size", "patch_size")


@pytest.mark.parametrize("field", SETTINGS_OF_THE_MINI_CLIP)
def test_cache_name_follows_every_profile_setting_it_depends_on(field, monkeypatch):
    """The cached mini-CLIP's entry reads the profile: change a setting, get a new entry
    (a stale model is never served after a change of world or recipe)."""
    monkeypatch.setenv("TUTORLIB_PROFILE", "quick")
    before = pretrained.recipe().entry()
    changed = profiles.QUICK.replace(**{field: 2 * getattr(profiles.QUICK, field)})
    monkeypatch.setitem(profiles.PROFILES, "quick", changed)
    assert pretrained.recipe().entry() != before
    assert pretrained.recipe()["steps"] == changed.clip_steps


def test_cache_name_ignores_settings_it_does_not_use(monkeypatch):
    monkeypatch.setenv("TUTORLIB_PROFILE", "quick")
    before = pretrained.recipe().entry()
    monkeypatch.setitem(profiles.PROFILES, "quick", profiles.QUICK.replace(backbone_steps=7))
    assert pretrained.recipe().entry() == before


def test_finetune_soft_targets_are_the_batch_matches(small, tiny_model):
    """soft_targets=True hands the objective world.matches of the batch: a scene's own
    caption and every other caption it satisfies are targets."""
    seen = []

    def loss(b):
        seen.append(b.targets)
        return ((b.image - b.text) ** 2).mean()
    pretrained.finetune(tiny_model, small, Objective(loss, soft_targets=True), steps=2, batch_size=8,
                        n_scenes=64, progress=False)
    assert len(seen) == 2 and all(t is not None and t.shape == (8, 8) and bool(t.diagonal().all())
                                  for t in seen)
    with pytest.raises(ValueError, match="full_spec"):
        pretrained.finetune(tiny_model, {k: v for k, v in small.items() if k != "full_spec"},
                            Objective(soft_targets=True), steps=1, n_scenes=64, progress=False)


def test_finetune_reuses_frozen_states_only_while_the_inputs_are_unchanged(small, tiny_model, monkeypatch):
    calls = []
    real = finetuning._frozen_states
    monkeypatch.setattr(finetuning, "_frozen_states", lambda *a: calls.append(1) or real(*a))
    finetuning.LAST_STATES.clear()
    run = lambda model, data: pretrained.finetune(model, data, steps=2, batch_size=8, n_scenes=64, seed=0,
                                                  progress=False)[1]["loss"]
    first, again = run(tiny_model, small), run(tiny_model, small)
    assert len(calls) == 1 and first == again                     # the second run read the cache
    edited = {**small, "full_ids": small["full_ids"].clone()}
    edited["full_ids"][:, 1] = small["full_ids"][:, 2]             # other captions: computed again
    run(tiny_model, edited)
    assert len(calls) == 2
    weight = tiny_model.image_tower.encoder.blocks[0].mlp[0].weight
    saved = weight.detach().clone()
    with torch.no_grad():                                          # the model changed in place: computed again
        weight.mul_(1.5)
    try:
        changed = run(tiny_model, small)
        assert len(calls) == 3 and changed != first
        finetuning.LAST_STATES.clear()
        assert run(tiny_model, small) == changed                  # the same as computed from scratch
    finally:
        with torch.no_grad():
            weight.copy_(saved)
