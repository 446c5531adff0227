"""tutorlib.zoo.unimodal: backbones pretrained on one modality alone, and their cached tokens."""
import pytest
import torch

from tutorlib.core import cache, profiles
from tutorlib.zoo import unimodal
from tutorlib import world


def test_pretraining_learns_from_one_modality_only():
    ds = world.load_world("test", n=64, modalities=("image",), seed=0, two_object_frac=0.0, progress=False)
    tower, heads, hist = unimodal.pretrain("image", ds, progress=False, steps=30, batch_size=32, width=16, depth=1)
    assert set(heads) == set(unimodal.LABELS["image"]) and "motion" not in heads
    assert len(hist["loss"]) == 30 and hist["loss"][-1] < hist["loss"][0]
    assert not tower.training


def test_backbone_is_cached_frozen_and_reports_accuracy(tmp_cache):
    tower, accuracy = unimodal.backbone("audio", progress=False, steps=2, batch_size=8)
    assert all(not p.requires_grad for p in tower.parameters()) and not tower.training
    assert set(accuracy) == set(unimodal.LABELS["audio"])
    assert all(0.0 <= v <= 1.0 for v in accuracy.values())
    again, again_accuracy = unimodal.backbone("audio", progress=False, steps=2, batch_size=8)  # cached
    assert all(torch.equal(a, b) for a, b in zip(tower.state_dict().values(), again.state_dict().values()))
    assert again_accuracy == pytest.approx(accuracy)


def test_token_features_shapes_and_cache(tmp_cache):
    ds = world.load_world("test", n=6, modalities=world.MODALITIES, seed=0, two_object_frac=0.0, progress=False)
    img = unimodal.token_features("image", ds, progress=False, steps=2, batch_size=8)
    assert img["tokens"].shape == (6, 17, 64) and img["tokens"].dtype == torch.float16 and img["mask"] is None
    assert any(p.name.startswith("tokens-image-") for p in cache.cache_dir().iterdir())
    assert torch.equal(unimodal.token_features("image", ds, progress=False, steps=2, batch_size=8)["tokens"], img["tokens"])
    # a backbone whose weights changed (retrained on a GPU, say) gets new token features, not the old ones
    entry = next(p.name for p in cache.cache_dir().iterdir() if p.name.startswith("unimodal-image-")
                 and p.suffix == ".safetensors")
    stored = cache.load_tensors(entry)
    stored["module.patch_embed.weight"] += 0.1
    cache.save_tensors(entry, stored)
    fresh = unimodal.token_features("image", ds, progress=False, steps=2, batch_size=8)
    assert not torch.equal(fresh["tokens"], img["tokens"])
    txt = unimodal.token_features("text", ds, progress=False)
    assert txt["tokens"].shape[::2] == (6, 384) and txt["mask"].dtype == torch.bool
    assert txt["mask"].shape == txt["tokens"].shape[:2] and bool(txt["mask"][:, 0].all())


def test_bad_inputs_say_what_was_wrong():
    with pytest.raises(ValueError, match="modality"):
        unimodal.make_backbone("smell")
    with pytest.raises(ValueError, match="overrides"):
        unimodal.recipe("image", stpes=3)
    with pytest.raises(ValueError, match="texts"):
        unimodal.text_token_features("a red circle")
    ds = world.load_world("test", n=4, modalities=("image",), seed=0, progress=False)
    with pytest.raises(ValueError, match="^ds: has no 'audio' column"):
        unimodal.token_features("audio", ds)
    with pytest.raises(ValueError, match="overrides"):
        unimodal.token_features("text", ds, steps=3)
    with pytest.raises(ValueError, match="ds: has no 'audio' column"):
        unimodal.pretrain("audio", ds, progress=False, steps=1)
    with pytest.raises(ValueError, match="retrain"):
        unimodal.backbone("image", retrain="yes")


@pytest.mark.parametrize("field", ["backbone_width", "backbone_depth", "backbone_steps",
                                   "backbone_batch_size", "modality_train_scenes", "image_size",
                                   "sample_rate", "hop", "video_frames", "patch_size"])
def test_backbone_cache_name_follows_the_profile(field, monkeypatch):
    """A backbone's cache entry reads the profile (its recipe and its world), and is
    computed without building the world."""
    monkeypatch.setenv("TUTORLIB_PROFILE", "quick")
    before = unimodal.recipe("audio").entry()
    monkeypatch.setitem(profiles.PROFILES, "quick",
                        profiles.QUICK.replace(**{field: 2 * getattr(profiles.QUICK, field)}))
    monkeypatch.setattr(world, "load_world", lambda *a, **k: pytest.fail("the key built the world"))
    assert unimodal.recipe("audio").entry() != before
