"""tutorlib.world.dataset (the world as cached datasets: splits, configs and keys, columns as tensors)."""
import pytest
import torch

from tutorlib.core import cache
from tutorlib import world


@pytest.fixture(scope="module")
def world_cache(tmp_path_factory):
    """One cache folder for the whole module (load_world is the slow part)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("world-cache")
    mp.setenv("TUTORLIB_CACHE", str(path))
    yield path
    mp.undo()


def test_split_compositions_and_train(world_cache):
    comp = world.tensors(world.load_world("compositions", n=200, progress=False))
    pairs0 = set(zip(comp["shape"].tolist(), comp["colour"].tolist()))
    assert pairs0 <= set(world.NOVEL_PAIRS)
    assert len(pairs0) == len(world.NOVEL_PAIRS)
    train = world.tensors(world.load_world("train", n=500, progress=False))
    novel = set(world.NOVEL_PAIRS)
    for s, c in (("shape", "colour"), ("shape2", "colour2")):
        got = set(zip(train[s].tolist(), train[c].tolist()))
        assert not got & novel
    assert (train["n_objects"] == 2).any()


@pytest.mark.parametrize("split, shapes", [("base", world.BASE_SHAPES), ("novel", world.NOVEL_SHAPES)])
def test_split_base_novel(world_cache, split, shapes):
    t = world.tensors(world.load_world(split, n=150, progress=False))
    assert set(t["shape"].tolist()) == set(shapes)
    assert (t["shape2"] == -1).all() and (t["n_objects"] == 1).all()


def test_split_paraphrase_uses_held_out_words(world_cache, training_synonyms):
    t = world.tensors(world.load_world("paraphrase", n=100, progress=False), ["caption", "partial"])
    tok = world.Tokenizer()
    banned = training_synonyms
    for text in t["caption"] + t["partial"]:
        assert not set(tok.words(text)) & banned, text


def test_splits_are_disjoint(world_cache):
    seeds = {s: set(world.tensors(world.load_world(s, n=200, progress=False), "scene_seed")
                    ["scene_seed"].tolist()) for s in ("val", "test")}
    assert not seeds["val"] & seeds["test"]


def _entries(folder, prefix):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(prefix) and p.is_dir())


def test_load_world_caches_and_tensors(world_cache):
    before = _entries(world_cache, "world-val-")
    ds = world.load_world("val", n=300, seed=1, progress=False)
    ds2 = world.load_world("val", n=300, seed=1, progress=False)   # the same entry, read back
    assert len(_entries(world_cache, "world-val-")) == len(before) + 1
    a, b = world.tensors(ds), world.tensors(ds2)
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], list):
            assert a[k] == b[k]
        else:
            assert torch.equal(a[k], b[k])
    assert a["image"].shape == (300, 3, 32, 32) and a["image"].dtype == torch.uint8
    assert a["caption_spec"].shape == (300, 9) and a["caption_spec"].dtype == torch.int64
    assert a["shape"].shape == (300,)
    assert isinstance(a["caption"], list) and isinstance(a["caption"][0], str)
    assert world.config_of(ds)["n"] == 300
    # a different seed is a different dataset
    other = world.tensors(world.load_world("val", n=300, seed=2, progress=False), "image")["image"]
    assert not torch.equal(other, a["image"])


def test_load_world_all_modalities(world_cache):
    ds = world.load_world("test", n=40, modalities=("image", "text", "audio", "video"), progress=False)
    t = world.tensors(ds)
    assert t["image"].shape == (40, 3, 32, 32) and t["image"].dtype == torch.uint8
    assert t["audio"].shape == (40, 2000) and t["audio"].dtype == torch.float32
    assert t["mel"].shape == (40, 32, 1 + 2000 // 64) and torch.isfinite(t["mel"]).all()
    assert t["video"].shape == (40, 4, 3, 32, 32) and t["video"].dtype == torch.uint8
    sc = world.scenes_of(ds)
    assert torch.equal(world.render_audio(sc), t["audio"])
    assert torch.equal((world.render_video(sc) * 255).round().to(torch.uint8), t["video"])
    assert torch.equal(t["video"][:, 0], t["image"])


def test_scenes_of_rerenders_identical_images(world_cache):
    ds = world.load_world("train", n=500, progress=False)
    t = world.tensors(ds)
    sc = world.scenes_of(ds)
    assert len(sc) == 500
    again = (world.render_images(sc) * 255).round().to(torch.uint8)
    assert torch.equal(again, t["image"])
    texts, spec = world.captions(sc, world.SPLIT_SEEDS["train"], style="full")
    assert texts == t["caption"] and torch.equal(spec, t["caption_spec"])
    assert world.matches(world.scene_attributes(sc), t["partial_spec"]).diagonal().all()


def test_images_float():
    x = torch.tensor([[0, 255], [51, 102]], dtype=torch.uint8)
    assert torch.allclose(world.images_float(x), torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    f = torch.rand(2, 3)
    assert torch.equal(world.images_float(f), f)


def test_images_float_of_dataset_rows(world_cache):
    ds = world.load_world("train", n=500, progress=False)
    batch = world.images_float(ds[:8]["image"])
    assert float(batch.max()) <= 1.0
    assert torch.allclose(batch, world.images_float(world.tensors(ds, "image")["image"][:8]))


def test_load_world_bad_input(world_cache):
    with pytest.raises(ValueError, match=r"^split:"):
        world.load_world("training", n=10)
    with pytest.raises(ValueError, match=r"^modalities:"):
        world.load_world("train", n=10, modalities=("image", "smell"))
    with pytest.raises(ValueError, match=r"^modalities:"):
        world.load_world("train", n=10, modalities=())
    for n in (0, -5, 2.5):
        with pytest.raises(ValueError, match=r"^n: got .*, expected a positive integer"):
            world.load_world("train", n=n)
    with pytest.raises(ValueError, match=r"^image_size:"):
        world.load_world("train", n=10, image_size=0)
    with pytest.raises(ValueError, match=r"^ds:"):
        world.config_of([1, 2, 3])
    ds = world.load_world("val", n=20, progress=False)
    with pytest.raises(ValueError, match=r"^columns:"):
        world.tensors(ds, ["image", "pixels"])
    with pytest.raises(ValueError, match=r"^ds:"):
        world.tensors({"image": [1]})


def _world_key():
    return cache.key(world.world_config("train", 100, world.MODALITIES, 0))


@pytest.mark.parametrize("setting, value", [
    ("image_size", 40), ("sample_rate", 4000), ("duration", 0.3), ("hop", 32), ("n_fft", 128),
    ("video_frames", 3), ("n_mels", 16)])
def test_dataset_cache_key_changes_with_every_world_setting(quick_profile, setting, value):
    base = _world_key()
    assert base == _world_key()
    quick_profile(**{setting: value})
    assert world.world_config("train", 100, world.MODALITIES, 0)[
        "frames" if setting == "video_frames" else setting] == value
    assert _world_key() != base, setting


def test_dataset_cache_key_ignores_the_model_settings(quick_profile):
    base = _world_key()
    quick_profile(embed_dim=64, clip_steps=10, backbone_width=16)
    assert _world_key() == base


def test_build_columns_follows_the_config_not_the_profile(quick_profile):
    quick_profile(hop=32, n_fft=128, n_mels=16)
    cfg = world.world_config("test", 3, ("audio",), 0)
    quick_profile()                                    # back to the quick settings
    cols = world.build_columns(cfg)
    assert cols["mel"].shape == (3, 16, 1 + 2000 // 32)
    wave = torch.from_numpy(cols["audio"])
    assert torch.equal(torch.from_numpy(cols["mel"]), world.log_mel(wave, 8000, 16, 128, 32))


def test_load_world_default_sizes_come_from_the_profile(world_cache, quick_profile):
    quick_profile(train_scenes=24, eval_scenes=12)
    assert len(world.load_world("train", progress=False)) == 24
    assert len(world.load_world("val", progress=False)) == 12
    assert world.config_of(world.load_world("base", progress=False))["n"] == 12
